"""The per-pixel steps every exit's logits go through in a multi-exit loss, done cheaper than the plain torch ops.

Each gives the values of its plain counterpart (to float rounding); ``srlib.losses.self_regulation`` uses them:

- ``resize_bilinear``: ``F.interpolate(mode="bilinear", align_corners=False)``. On the CPU a small map goes through
  two matrix products with the interpolation matrices (the same two taps and weights per output pixel), faster
  forward + backward than torch's kernel for 8-32 px maps upsampled to 128 px.
- ``nll_terms``: several cross-entropies of one logits map (the ground-truth label and a pseudo-label) from one
  log-softmax, with one fused backward pass instead of one dense gradient per label map.
- ``class_argmax``: ``torch.argmax(dim=1)`` (the first largest class; NaN counts as largest).
"""

import functools

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

# The two matrix products cost in_w + in_h * in_w / out_w multiply-adds per output pixel; below this they beat
# torch's CPU kernel forward + backward (one thread, 8 x 10 classes: 8, 16 and 32 px to 128 px yes, 64 px no).
MATMUL_MACS_PER_PIXEL = 48


@functools.lru_cache(maxsize=64)
def interpolation_matrix(n_in: int, n_out: int, device: str = "cpu") -> Tensor:
    """n_out x n_in float32: row j holds the weights of output j's two taps, as torch's bilinear interpolation
    with align_corners=False computes them (source j' = (j + 0.5) * n_in / n_out - 0.5, clamped at 0)."""
    source = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp_min(0)
    low = source.floor().long().clamp_max(n_in - 1)
    high = (low + 1).clamp_max(n_in - 1)
    frac = source - low
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    matrix.index_put_((rows, low), 1 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix.float().to(device)


def resize_bilinear(x: Tensor, size) -> Tensor:
    """Bilinear resize (align_corners=False) of B x C x h x w ``x`` to ``size`` (H, W); ``x`` itself when equal."""
    (h, w), (out_h, out_w) = x.shape[-2:], tuple(size)
    if (h, w) == (out_h, out_w):
        return x
    if x.device.type != "cpu" or w + h * w / out_w > MATMUL_MACS_PER_PIXEL:
        return F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)
    device = str(x.device)
    columns = F.linear(x.transpose(-1, -2), interpolation_matrix(h, out_h, device))  # B x C x w x H
    return F.linear(columns.transpose(-1, -2), interpolation_matrix(w, out_w, device))  # B x C x H x W


class _NLLTerms(torch.autograd.Function):
    """Mean negative log-likelihoods of one logits map against several label maps; see ``nll_terms``."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: tuple) -> Tensor:
        log_probs = F.log_softmax(logits, dim=1)
        ctx.save_for_backward(log_probs)
        ctx.targets = targets
        return torch.stack([F.nll_loss(log_probs, labels, ignore_index=ignore, reduction="sum") / denominator
                            for labels, ignore, denominator in targets])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        (log_probs,) = ctx.saved_tensors
        weights = [(labels != ignore) * (grad[k] / denominator)  # B x H x W: d loss / d log p at the label
                   for k, (labels, ignore, denominator) in enumerate(ctx.targets)]
        # softmax x each pixel's total weight, in place of the saved log-probabilities (a fresh map-sized
        # tensor costs more than the arithmetic); a second backward through the graph then fails autograd's
        # saved-tensor version check
        grad_logits = log_probs.exp_().mul_(sum(weights)[:, None])
        for (labels, _, _), weight in zip(ctx.targets, weights):
            grad_logits.scatter_add_(1, labels.masked_fill(weight == 0, 0)[:, None], -weight[:, None])
        return grad_logits, None


def nll_terms(logits: Tensor, targets: list[tuple[Tensor, int, Tensor | int]]) -> list[Tensor]:
    """Cross-entropies of ``logits`` (B x C x H x W, float) against each (labels B x H x W, ignore index,
    denominator) in ``targets``: ``F.nll_loss(F.log_softmax(logits, 1), labels, ignore_index=ignore,
    reduction="sum") / denominator``. One log-softmax serves all, and the backward pass is one fused pass
    (softmax times each pixel's summed weight, minus the weights at the labels) instead of a dense gradient per
    label map plus a log-softmax backward. Returns one scalar per target; the graph supports one backward pass."""
    return list(_NLLTerms.apply(logits, tuple(targets)).unbind())


def class_argmax(logits: Tensor) -> Tensor:
    """``logits.argmax(dim=1)`` of B x C x H x W logits: the first class holding the maximum (or a NaN), as
    ``torch.max(dim=1)``'s indices, which torch computes ~10x faster than argmax over dim 1 on the CPU."""
    return logits.max(dim=1).indices
