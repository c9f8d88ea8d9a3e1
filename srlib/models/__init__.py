"""Multi-exit segmentors on any timm backbone: backbone taps, exits, decoder heads, presets."""

from srlib.models.backbone import Backbone, build_backbone, load_backbone_checkpoint
from srlib.models.exits import EXITS
from srlib.models.heads import HEADS
from srlib.models.presets import PRESETS, build_preset
from srlib.models.segmentor import InferenceModel, Segmentor, build_segmentor, upsample

__all__ = [
    "EXITS", "HEADS", "PRESETS", "Backbone", "InferenceModel", "Segmentor",
    "build_backbone", "build_preset", "build_segmentor", "load_backbone_checkpoint", "upsample",
]
