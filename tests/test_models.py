"""Multi-exit segmentors: every backbone family builds and trains, the inference model is the baseline."""

import pytest
import torch
import torch.nn.functional as F

from srlib.compat import import_timm
from srlib.cost import count_flops, count_parameters
from srlib.models import EXITS, HEADS, PRESETS, build_preset, build_segmentor, upsample

NUM_CLASSES = 3
SIZE = 64
SWIN = "swin_tiny_patch4_window7_224"
TINY_SWIN = {"img_size": SIZE, "embed_dim": 24, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}

# (backbone, head, exit type, output stride, timm kwargs, reductions of the exits and the head)
FAMILIES = [
    ("test_resnet", "deeplabv2", "official", 8, {}, [2, 4, 8, 8, 8]),
    ("test_resnet", "deeplabv3", "light", 16, {}, [2, 4, 8, 16, 16]),
    ("mobilenetv2_100", "fcn", "light", 16, {}, [2, 4, 8, 16, 16]),
    ("test_efficientnet", "deeplabv3", "official", 8, {}, [2, 4, 8, 8, 8]),
    ("test_convnext", "fcn", "official", 16, {}, [4, 8, 16, 16]),
    (SWIN, "deeplabv3", "light", 32, TINY_SWIN, [4, 8, 16, 32]),  # NHWC features, cannot dilate
]


def batch(seed: int = 0, n: int = 2):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, SIZE, SIZE, generator=generator)
    masks = torch.randint(0, NUM_CLASSES, (n, SIZE, SIZE), generator=generator)
    masks[:, :4] = 255
    return images, masks


def multi_exit_loss(out: dict, masks: torch.Tensor) -> torch.Tensor:
    """CE on every exit plus BCE of every exit's class logits against class presence."""
    present = torch.stack([(masks == c).flatten(1).any(1) for c in range(NUM_CLASSES)], dim=1).float()
    seg = sum(F.cross_entropy(upsample(z, masks.shape[-2:]), masks, ignore_index=255) for z in out["seg"])
    cls = sum(F.binary_cross_entropy_with_logits(c, present) for c in out["cls"])
    return seg + cls + out["head_feats"].pow(2).mean() + sum(f.pow(2).mean() for f in out["feats"])


@pytest.mark.parametrize("backbone,head,exit_type,stride,kwargs,reductions", FAMILIES,
                         ids=[f"{f[0]}-{f[1]}-os{f[3]}" for f in FAMILIES])
def test_family_builds_and_trains_a_step(backbone, head, exit_type, stride, kwargs, reductions):
    torch.manual_seed(0)
    model = build_segmentor(backbone, head, NUM_CLASSES, exit_type=exit_type, output_stride=stride,
                            classify=True, feature_proj_dim=8, backbone_kwargs=kwargs)
    images, masks = batch()
    out = model(images)

    assert [tuple(z.shape) for z in out["seg"]] == [(2, NUM_CLASSES, SIZE // r, SIZE // r) for r in reductions]
    assert [tuple(c.shape) for c in out["cls"]] == [(2, NUM_CLASSES)] * len(reductions)
    assert [tuple(f.shape) for f in out["feats"]] == [(2, 8, SIZE // r, SIZE // r) for r in reductions]
    assert out["head_feats"].shape[-2:] == out["seg"][-1].shape[-2:]

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = multi_exit_loss(out, masks)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    changed = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(before[name], p)}
    assert changed == {"backbone", "head", "exits", "classifiers", "projections"}
    assert model.inference_model()(images).shape == (2, NUM_CLASSES, SIZE, SIZE)


def test_outputs_without_exits_or_extras():
    model = build_segmentor("test_resnet", "fcn", NUM_CLASSES)
    out = model(batch()[0])
    assert len(out["seg"]) == 1 and out["cls"] == [] and out["feats"] == []


@pytest.mark.parametrize("head", sorted(HEADS))
def test_inference_model_is_exactly_the_baseline(head):
    torch.manual_seed(0)
    multi = build_segmentor("test_resnet", head, NUM_CLASSES, exit_type="official", output_stride=8,
                            classify=True, feature_proj_dim=8)
    torch.manual_seed(1)
    baseline = build_segmentor("test_resnet", head, NUM_CLASSES, output_stride=8)
    inference = multi.inference_model()

    assert count_parameters(multi) > count_parameters(inference) == count_parameters(baseline)
    shape = (1, 3, SIZE, SIZE)
    assert count_flops(multi, shape)["flops"] > count_flops(inference, shape)["flops"]
    assert count_flops(inference, shape) == count_flops(baseline.inference_model(), shape)

    baseline.load_state_dict(inference.state_dict(), strict=True)
    images = batch()[0]
    multi.eval()
    baseline.eval()
    with torch.no_grad():
        expected = inference(images)
        assert torch.equal(expected, baseline.inference_model()(images))
        assert torch.equal(expected, upsample(baseline(images)["seg"][-1], (SIZE, SIZE)))
        assert torch.equal(multi(images)["seg"][-1], baseline(images)["seg"][-1])


@pytest.mark.parametrize("stride,rates", [(8, [12, 24, 36]), (16, [6, 12, 18])])
def test_deeplabv3_rates_follow_the_output_stride(stride, rates):
    head = HEADS["deeplabv3"](32, NUM_CLASSES, stride)
    assert [branch[0].dilation[0] for branch in head.branches[1:4]] == rates


@pytest.mark.parametrize("head,feat_channels", [("fcn", 96 // 4), ("deeplabv2", 96), ("deeplabv3", 256)])
def test_head_feats_enter_the_final_classifier(head, feat_channels):
    model = build_segmentor("test_resnet", head, NUM_CLASSES)  # last stage: 96 channels
    out = model(batch()[0])
    assert out["head_feats"].shape == (2, feat_channels, SIZE // 16, SIZE // 16)
    if head == "deeplabv2":
        assert [b.dilation[0] for b in model.head.branches] == [6, 12, 18, 24]


def test_inference_model_shares_weights():
    model = build_segmentor("test_resnet", "fcn", NUM_CLASSES, exit_type="light")
    inference = model.inference_model()
    assert all(a is b for a, b in zip(inference.parameters(), [*model.backbone.parameters(), *model.head.parameters()]))


def test_param_groups_split_backbone_from_the_rest():
    model = build_segmentor("test_resnet", "deeplabv3", NUM_CLASSES, exit_type="light", classify=True)
    groups = model.param_groups()
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in model.backbone.parameters()}
    assert len(groups["backbone"]) + len(groups["head"]) == len(list(model.parameters()))
    assert {id(p) for p in groups["head"]} >= {id(p) for p in model.exits.parameters()}


@pytest.mark.parametrize("kwargs,message", [
    ({"backbone": "resnet_18"}, "Close matches.*resnet18"),
    ({"head": "pspnet"}, r"pspnet.*\['deeplabv2', 'deeplabv3', 'fcn', 'fpn', 'ocr', 'unet'\]"),
    ({"exit_type": "heavy"}, r"heavy.*'light', 'official'"),
    ({"num_classes": 1}, "num_classes=1"),
    ({"output_stride": 12}, "output_stride=12"),
    ({"backbone": SWIN, "output_stride": 16, "backbone_kwargs": TINY_SWIN}, f"{SWIN}.*output_stride=16.*32"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    args = {"backbone": "test_resnet", "head": "fcn", "num_classes": NUM_CLASSES, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_segmentor(**args)


def test_presets():
    timm = import_timm()
    assert {"deeplabv2_resnet101", "deeplabv3_resnet101", "deeplabv3_resnet18", "fcn_mobilenetv2_100"} <= set(PRESETS)
    for preset in PRESETS.values():
        assert timm.is_model(preset["backbone"]) and preset["head"] in HEADS
    with pytest.raises(ValueError, match="unknown preset 'nope'.*fcn_mobilenetv2_100"):
        build_preset("nope", NUM_CLASSES)
    assert set(EXITS) == {"official", "light"}


def test_preset_overrides():
    model = build_preset("fcn_mobilenetv2_100", NUM_CLASSES, exit_type="light", output_stride=16)
    assert model.backbone.output_stride == 16 and len(model.exits) == 4


def _exit_taps(model) -> list[tuple[int, int]]:
    """(stride, input channels) of every exit, exit 1 first."""
    body = model.backbone
    taps = list(zip(body.reductions, body.channels))[: len(body.channels) - 1]
    return taps[len(taps) - len(model.exits):]


def test_exits_tap_the_stages_the_authors_tap():
    """SR-SS (lib/models/resnet.py, deeplab.py) taps the stem after conv1-bn1-relu (stride 2, 64 channels),
    then layer1..layer3 of ResNet-101 (256, 512, 1024 channels, layer3 dilated to stride 8); exit 1 is the stem."""
    with torch.device("meta"):
        model = build_preset("deeplabv2_resnet101", 21, exit_type="official")
    assert _exit_taps(model) == [(2, 64), (4, 256), (8, 512), (8, 1024)]
    assert [exit_[0][0].in_channels for exit_ in model.exits] == [64, 256, 512, 1024]
    assert model.backbone.channels[-1] == 2048


def test_min_exit_stride_skips_the_stem():
    with torch.device("meta"):
        model = build_preset("deeplabv2_resnet101", 21, exit_type="light", min_exit_stride=4)
    assert _exit_taps(model) == [(4, 256), (8, 512), (8, 1024)]


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrained_backbone_state_dict_loads(tmp_path):
    torch.manual_seed(0)
    source = build_segmentor("test_resnet", "fcn", NUM_CLASSES).backbone.body
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    loaded = build_segmentor("test_resnet", "fcn", NUM_CLASSES, pretrained=str(path)).backbone.body
    assert _equal_states(loaded.state_dict(), source.state_dict())


def test_pretrained_classification_checkpoint_loads(tmp_path):
    """A full timm model file (classifier included, DataParallel-wrapped) fits the features model."""
    timm = import_timm()
    torch.manual_seed(0)
    full = timm.create_model("test_convnext", pretrained=False)
    path = tmp_path / "convnext.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in full.state_dict().items()}}, path)
    model = build_segmentor("test_convnext", "fcn", NUM_CLASSES, pretrained=str(path))
    assert torch.equal(model.backbone.body.stem_0.weight, full.stem[0].weight)  # stem.0 -> stem_0
    assert torch.equal(model.backbone.body.stages_3.blocks[0].mlp.fc1.weight, full.stages[3].blocks[0].mlp.fc1.weight)


def test_pretrained_mismatch_names_file_and_keys(tmp_path):
    state = build_segmentor("test_resnet", "fcn", NUM_CLASSES).backbone.body.state_dict()
    state.pop("layer1.0.conv1.weight")
    state["decoder.extra.weight"] = torch.zeros(1)
    path = tmp_path / "wrong.pth"
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match=r"wrong\.pth.*missing keys \(1\).*layer1\.0\.conv1\.weight.*"
                                         r"unexpected keys \(1\).*decoder\.extra\.weight"):
        build_segmentor("test_resnet", "fcn", NUM_CLASSES, pretrained=str(path))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        build_segmentor("test_resnet", "fcn", NUM_CLASSES, pretrained=str(tmp_path / "absent.pth"))
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(ValueError, match=r"notes\.txt' is not a state dict torch\.load can read"):
        build_segmentor("test_resnet", "fcn", NUM_CLASSES, pretrained=str(tmp_path / "notes.txt"))


def test_backbone_kwargs_a_backbone_does_not_take_name_the_key():
    with pytest.raises(ValueError, match=r"model\.backbone_kwargs \{'drop_ratee': 0\.1\}.*drop_ratee"):
        build_segmentor("test_resnet", "fcn", NUM_CLASSES, backbone_kwargs={"drop_ratee": 0.1})


def test_frozen_bn_keeps_the_backbone_statistics():
    """The authors train with net.eval(): backbone BatchNorm statistics stay fixed, affine parameters train."""
    model = build_segmentor("test_resnet", "deeplabv3", NUM_CLASSES, exit_type="official", frozen_bn=True).train()
    backbone_bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = [bn.running_mean.clone() for bn in backbone_bns]
    images, masks = batch()
    multi_exit_loss(model(images), masks).backward()
    assert backbone_bns and not any(bn.training for bn in backbone_bns)
    assert all(torch.equal(a, bn.running_mean) for a, bn in zip(before, backbone_bns))
    assert all(bn.weight.grad is not None for bn in backbone_bns)
    assert all(m.training for m in model.head.modules())  # the decoder and exits train as usual
    unfrozen = build_segmentor("test_resnet", "deeplabv3", NUM_CLASSES).train()
    assert all(m.training for m in unfrozen.backbone.modules())
