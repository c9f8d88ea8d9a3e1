"""Named baselines: keyword arguments for :func:`build_segmentor`.

The paper's baselines run at output stride 8, as DeepLab-v2 and torchvision's DeepLab-v3 / FCN do;
the small CPU presets keep that stride so their feature maps stay usable on 64 px images.
ResNets are timm's (same layer names as torchvision's, so torchvision checkpoints load). MobileNetV2-1.0
and EfficientNet-Lite0 (presets with every head: FCN, DeepLab-v3, OCR, UNet, FPN) have ImageNet weights that
installed packages ship (``model.pretrained: imagenet``, ``srlib.models.pretrained``); the others take a local
checkpoint.
"""

from srlib.models.segmentor import Segmentor, build_segmentor

PRESETS: dict[str, dict] = {
    # The paper's baselines.
    "deeplabv2_resnet101": {"backbone": "resnet101", "head": "deeplabv2", "output_stride": 8},
    "deeplabv3_resnet101": {"backbone": "resnet101", "head": "deeplabv3", "output_stride": 8},
    # Small ones that train on a CPU.
    "deeplabv3_resnet18": {"backbone": "resnet18", "head": "deeplabv3", "output_stride": 8},
    # Backbones with ImageNet weights shipped in installed packages (model.pretrained: imagenet).
    "fcn_mobilenetv2_100": {"backbone": "mobilenetv2_100", "head": "fcn", "output_stride": 8},
    "deeplabv3_mobilenetv2_100": {"backbone": "mobilenetv2_100", "head": "deeplabv3", "output_stride": 8},
    "fcn_efficientnet_lite0": {"backbone": "tf_efficientnet_lite0", "head": "fcn", "output_stride": 8},
    "deeplabv3_efficientnet_lite0": {"backbone": "tf_efficientnet_lite0", "head": "deeplabv3", "output_stride": 8},
    # Half-width MobileNetV2: the default benchmark's model (~0.1 s per 8 x 64 x 64 step on one CPU thread).
    "fcn_mobilenetv2_050": {"backbone": "mobilenetv2_050", "head": "fcn", "output_stride": 8},
    # Others.
    "fcn_resnet50": {"backbone": "resnet50", "head": "fcn", "output_stride": 8},
    "deeplabv3_resnet50": {"backbone": "resnet50", "head": "deeplabv3", "output_stride": 8},
    "deeplabv3_convnext_tiny": {"backbone": "convnext_tiny", "head": "deeplabv3", "output_stride": 16},
    # U-shape decoders (srlib.models.ushape) recover the resolution from the skips: undilated encoders, as in smp.
    "unet_mobilenetv2_100": {"backbone": "mobilenetv2_100", "head": "unet", "output_stride": 32},
    "unet_efficientnet_lite0": {"backbone": "tf_efficientnet_lite0", "head": "unet", "output_stride": 32},
    "fpn_mobilenetv2_100": {"backbone": "mobilenetv2_100", "head": "fpn", "output_stride": 32},
    "fpn_efficientnet_lite0": {"backbone": "tf_efficientnet_lite0", "head": "fpn", "output_stride": 32},
    # OCRNet's head (srlib.models.ocr) at OCRNet's output stride.
    "ocr_mobilenetv2_100": {"backbone": "mobilenetv2_100", "head": "ocr", "output_stride": 8},
    "ocr_efficientnet_lite0": {"backbone": "tf_efficientnet_lite0", "head": "ocr", "output_stride": 8},
}


def build_preset(name: str, num_classes: int, **overrides) -> Segmentor:
    """build_segmentor(**PRESETS[name], num_classes=..., **overrides); overrides win (exit_type, classify, ...)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    return build_segmentor(**{**PRESETS[name], "num_classes": num_classes, **overrides})
