"""srlib.losses.pixel_ops give the plain torch ops' values and gradients (to float rounding)."""

import pytest
import torch
import torch.nn.functional as F

from srlib.losses.pixel_ops import class_argmax, nll_terms, resize_bilinear


def values_and_grad(fn, x):
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # a gradient that is not uniform
    (out * weights).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("shape, size", [((2, 3, 4, 5), (32, 24)), ((1, 2, 16, 16), (128, 128)),
                                         ((1, 2, 64, 64), (128, 128)), ((1, 2, 9, 7), (4, 3))])
def test_resize_bilinear_is_torch_interpolate(shape, size):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    got = values_and_grad(lambda t: resize_bilinear(t, size), x)
    expected = values_and_grad(lambda t: F.interpolate(t, size=size, mode="bilinear", align_corners=False), x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert resize_bilinear(x, shape[-2:]) is x


def test_nll_terms_are_torch_cross_entropies_with_their_gradient():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, generator=generator)
    labels = torch.randint(0, 5, (2, 6, 7), generator=generator)
    labels[0, :2] = 255
    pseudo = torch.randint(0, 5, (2, 6, 7), generator=generator)
    targets = [(labels, 255, 40), (pseudo, -100, pseudo.numel())]

    def plain(t):
        log_probs = F.log_softmax(t, 1)
        return torch.stack([F.nll_loss(log_probs, y, ignore_index=i, reduction="sum") / d for y, i, d in targets])

    got = values_and_grad(lambda t: torch.stack(nll_terms(t, targets)), logits)
    for a, b in zip(got, values_and_grad(plain, logits)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_nll_terms_of_all_ignored_pixels_are_zero_with_zero_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    (value,) = nll_terms(logits, [(torch.full((1, 2, 2), 255), 255, 1)])
    value.backward()
    assert value.item() == 0 and not logits.grad.any()


def test_class_argmax_takes_the_first_maximum_and_nan_as_torch_argmax_does():
    logits = torch.tensor([[1.0, 3.0, 3.0], [2.0, float("nan"), 5.0], [0.0, 0.0, -1.0]]).T.reshape(1, 3, 1, 3)
    assert class_argmax(logits).tolist() == logits.argmax(dim=1).tolist() == [[[1, 1, 0]]]
