"""Pixel losses: LAL against a per-pixel loop, focal against CE, center-loss updates, registry errors."""

import pytest
import torch
import torch.nn.functional as F

from srlib.config import DEFAULTS
from srlib.losses import PIXEL_LOSSES, build_pixel_loss
from srlib.losses.center import CenterLoss
from srlib.losses.locally_adaptive import (
    _gathered_window_matches,
    _SameLabelPooling,
    _window_matches,
    locally_adaptive_loss,
)

IGNORE = 255


def loop_lal(logits, target, window, ks, eps=1e-5):
    """LAL written out pixel by pixel, straight from the definition; one value per k in ``ks``."""
    batch, channels, height, width = logits.shape
    r = window // 2
    centred = logits - logits.mean(1, keepdim=True)
    normed = centred / torch.sqrt((centred**2).mean(1, keepdim=True) + eps)
    labels = target.tolist()
    losses = []
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                label = labels[b][i][j]
                if label == IGNORE:
                    continue
                pooled, count = torch.zeros(channels, dtype=logits.dtype), 0
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        qi, qj = i + di, j + dj
                        if 0 <= qi < height and 0 <= qj < width and labels[b][qi][qj] == label:
                            pooled = pooled + 2.0 ** (1 - max(abs(di), abs(dj))) * normed[b, :, qi, qj]
                            count += 1
                losses.append(-torch.log_softmax(pooled / count, 0)[label])
    losses = torch.stack(losses)
    return [losses.pow(k).mean().pow(1 / k) for k in ks]


def blocky_labels(batch, height, width, classes, seed):
    """3 x 3 blocks of one class (interior pixels), 10 % relabelled at random, 15 % void."""
    generator = torch.Generator().manual_seed(seed)
    blocks = torch.randint(0, classes, (batch, -(-height // 3), -(-width // 3)), generator=generator)
    labels = blocks.repeat_interleave(3, 1).repeat_interleave(3, 2)[:, :height, :width].clone()
    noise = torch.rand(labels.shape, generator=generator)
    labels[noise < 0.10] = torch.randint(0, classes, labels.shape, generator=generator)[noise < 0.10]
    labels[noise > 0.85] = IGNORE
    return labels


def halves(batch, height, width):
    """Class 0 left, class 1 right, two void pixels: mostly interior pixels even at w = 7."""
    labels = (torch.arange(width) >= width // 2).long().expand(batch, height, width).clone()
    labels[:, 1, 2] = labels[:, -2, -3] = IGNORE
    return labels


@pytest.mark.parametrize("window", [3, 5, 7])
@pytest.mark.parametrize("shape, labels", [((2, 3, 9, 9), "blocky"), ((1, 4, 5, 4), "blocky"),
                                           ((1, 3, 12, 16), "halves")])
def test_lal_matches_the_pixel_loop_in_value_and_gradient(window, shape, labels):
    torch.manual_seed(window)
    logits = (3 * torch.randn(shape, dtype=torch.float64)).requires_grad_()
    if labels == "blocky":  # (1, 4, 5, 4) is narrower than the 7 x 7 window
        target = blocky_labels(shape[0], shape[2], shape[3], shape[1], seed=window)
    else:
        target = halves(shape[0], shape[2], shape[3])
    ks = (1.0, 2.0, 3.0)
    expected = loop_lal(logits, target, window, ks)
    for k, want in zip(ks, expected):
        (grad_want,) = torch.autograd.grad(want, logits, retain_graph=True)
        for layout in (torch.contiguous_format, torch.channels_last):  # the convolution runs channels-last
            arranged = logits.detach().contiguous(memory_format=layout).requires_grad_()
            got = locally_adaptive_loss(arranged, target, window=window, k=k)
            (grad_got,) = torch.autograd.grad(got, arranged)
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(grad_got, grad_want, rtol=1e-8, atol=1e-12)
            assert grad_got.is_contiguous(memory_format=layout)


def test_lal_reference_cases_cover_both_pooling_forms():
    """The loop test's labels exercise convolution-plus-correction and the sparse-only form."""
    forms = set()
    for window in (3, 5, 7):
        for target in (blocky_labels(2, 9, 9, 3, seed=window), blocky_labels(1, 5, 4, 4, seed=window),
                       halves(1, 12, 16)):
            forms.add(_SameLabelPooling(target, window, IGNORE, torch.float64).sparse_only)
    assert forms == {False, True}


def test_lal_label_windows_gathered_or_compared_slot_by_slot_agree():
    """Windows of few pixels are gathered, of many compared map against shifted map: same masks."""
    target = blocky_labels(2, 9, 11, 4, seed=5)
    labels = torch.where(target != IGNORE, target, -1).to(torch.int32)
    few = torch.arange(0, target.numel(), 9)
    for window in (3, 5, 7):
        for compared, gathered in zip(_window_matches(labels, window), _gathered_window_matches(labels, few, window)):
            assert torch.equal(compared[few], gathered)


def test_lal_float32_and_registry_entry_agree_with_float64():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 16, 16)
    target = blocky_labels(2, 16, 16, 5, seed=1)
    loss = build_pixel_loss("lal", window=5, k=3)
    assert loss(logits, target).dtype == torch.float32
    torch.testing.assert_close(loss(logits, target).double(), loss(logits.double(), target), rtol=1e-5, atol=0)


def test_lal_ignores_void_pixels_and_is_zero_without_valid_ones():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 8, 8, requires_grad=True)
    target = blocky_labels(1, 8, 8, 3, seed=2)
    (grad,) = torch.autograd.grad(locally_adaptive_loss(logits, target), logits)
    assert torch.all(grad.permute(1, 0, 2, 3)[:, target == IGNORE] == 0)  # void logits play no part
    assert torch.all(grad.permute(1, 0, 2, 3)[:, target != IGNORE].abs().sum(0) > 0)
    void = torch.full_like(target, IGNORE)
    loss = locally_adaptive_loss(logits, void)
    (grad,) = torch.autograd.grad(loss, logits)
    assert loss.item() == 0 and torch.all(grad == 0)


def test_lal_graph_supports_one_backward_only():
    logits = torch.randn(1, 3, 6, 6, requires_grad=True)
    loss = locally_adaptive_loss(logits, torch.zeros(1, 6, 6, dtype=torch.long))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_lal_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"got \(1, 3, 6, 6\) and \(1, 5, 6\)"):
        locally_adaptive_loss(torch.randn(1, 3, 6, 6), torch.zeros(1, 5, 6, dtype=torch.long))


def test_cross_entropy_entry_matches_torch_and_is_zero_on_void():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 6, 6), blocky_labels(2, 6, 6, 4, seed=3)
    ce = build_pixel_loss("ce")
    torch.testing.assert_close(ce(logits, target), F.cross_entropy(logits, target, ignore_index=IGNORE))
    assert ce(logits, torch.full_like(target, IGNORE)).item() == 0


def test_focal_with_gamma_0_and_alpha_1_is_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    target = blocky_labels(2, 6, 6, 4, seed=4)
    focal = build_pixel_loss("focal", alpha=1.0, gamma=0.0)(logits, target)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(focal, ce)
    torch.testing.assert_close(torch.autograd.grad(focal, logits)[0], torch.autograd.grad(ce, logits)[0])


def test_focal_down_weights_easy_pixels_and_alpha_scales():
    easy = torch.tensor([5.0, 0.0, 0.0]).view(1, 3, 1, 1)  # label 0, p_t ~ 0.99
    hard = torch.tensor([0.0, 5.0, 0.0]).view(1, 3, 1, 1)  # label 0, p_t ~ 0.007
    label = torch.zeros(1, 1, 1, dtype=torch.long)
    focal = build_pixel_loss("focal", alpha=1.0, gamma=2.0)
    ratio = {name: (focal(x, label) / F.cross_entropy(x, label)).item() for name, x in (("easy", easy), ("hard", hard))}
    assert ratio["easy"] < 1e-3 and ratio["hard"] > 0.98
    torch.testing.assert_close(build_pixel_loss("focal")(hard, label), 0.25 * focal(hard, label))


def test_center_loss_value_and_labels_downsampled_nearest():
    center = CenterLoss(num_classes=2, feat_dim=2).eval()
    center.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    features = torch.tensor([[3.0, 0.0], [1.0, 2.0]]).T.reshape(1, 2, 1, 2).requires_grad_()
    target = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])  # 2 x 4 -> 1 x 2: labels 0, 1
    loss = center(features, target)
    torch.testing.assert_close(loss, torch.tensor((0.5 * 9 + 0.5 * 1) / 2))
    loss.backward()
    torch.testing.assert_close(features.grad.reshape(2, 2).T, torch.tensor([[3.0, 0.0], [0.0, 1.0]]) / 2)
    assert not center.centers.requires_grad
    target[0, :, 2:] = IGNORE  # the second position is void now
    torch.testing.assert_close(center(features, target), torch.tensor(4.5))


def test_center_loss_centres_move_toward_class_means_in_training_only():
    generator = torch.Generator().manual_seed(0)
    means = torch.tensor([[2.0, -1.0, 0.0], [-3.0, 1.0, 4.0]])
    target = torch.randint(0, 2, (4, 8, 8), generator=generator)
    target[:, :, :2] = IGNORE
    center = CenterLoss(num_classes=2, feat_dim=3, alpha=0.5)
    distances = []
    for _ in range(6):
        features = means[target.clamp(max=1)].permute(0, 3, 1, 2) + 0.1 * torch.randn(4, 3, 8, 8, generator=generator)
        center(features, target)
        distances.append((center.centers - means).norm(dim=1))
    distances = torch.stack(distances)
    assert torch.all(distances[1:] < distances[:-1]) and torch.all(distances[-1] < 0.15)
    center.eval()
    before = center.centers.clone()
    center(features, target)
    assert torch.equal(center.centers, before)
    assert DEFAULTS["loss"]["w_center"] == 3e-4  # the paper's lambda


@pytest.mark.parametrize("name", PIXEL_LOSSES)
def test_every_registered_loss_is_a_differentiable_scalar_and_zero_on_void(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 7, requires_grad=True)
    target = torch.randint(0, 3, (2, 6, 7))
    target[0, :2] = 255
    loss = build_pixel_loss(name)
    value = loss(logits, target)
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert torch.isfinite(logits.grad).all() and not logits.grad[0, :, :2].any()  # void pixels get nothing
    assert loss(logits, torch.full_like(target, 255)).item() == 0


def test_registry_names_and_errors():
    with pytest.raises(ValueError, match=f"valid names: {', '.join(PIXEL_LOSSES)}"):
        build_pixel_loss("dice")
    with pytest.raises(ValueError, match="loss.center"):
        build_pixel_loss("ce+center")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['beta'\]; valid: \['alpha', 'gamma'\]"):
        build_pixel_loss("focal", beta=1)
    bad = [
        ("lal", {"window": 4}, "window must be one of \\(3, 5, 7\\), got 4"),
        ("lal", {"k": 0}, "k must be a finite number > 0, got 0"),
        ("lal", {"k": -2.0}, "got -2.0"),
        ("focal", {"gamma": -0.5}, "gamma must be a finite number >= 0, got -0.5"),
        ("focal", {"alpha": 1.5}, r"alpha must be a number in \[0, 1\], got 1.5"),
    ]
    for name, params, message in bad:
        with pytest.raises(ValueError, match=message):
            build_pixel_loss(name, **params)
    with pytest.raises(ValueError, match="alpha must be a number in \\[0, 1\\], got -1"):
        CenterLoss(3, 8, alpha=-1)
    with pytest.raises(ValueError, match="feat_dim must be an integer >= 1, got 0"):
        CenterLoss(3, 0)


def test_run_loss_adds_the_center_loss_to_any_pixel_loss_and_keeps_its_centres():
    from srlib.losses import RunLoss

    info = {"num_classes": 3, "background_index": 0}
    cfg = {**DEFAULTS["loss"], "pixel": "focal", "center": True, "w_center": 0.5}
    loss = RunLoss(cfg, info)
    assert loss.needs == {"exits": False, "classify": False, "feature_proj": False}
    out = {"seg": [torch.randn(2, 3, 4, 4)], "head_feats": torch.randn(2, 5, 4, 4)}
    target = torch.randint(0, 3, (2, 8, 8))
    terms = loss(out, target)
    assert set(terms) == {"seg", "seg_head", "center", "total"}
    torch.testing.assert_close(terms["total"], terms["seg"] + 0.5 * terms["center"])
    resumed = RunLoss(cfg, info)
    resumed.load_state_dict(loss.state_dict(), "cpu")
    assert torch.equal(resumed.center.centers, loss.center.centers) and loss.center.centers.abs().sum() > 0
    assert RunLoss({**cfg, "center": False}, info).state_dict() is None
