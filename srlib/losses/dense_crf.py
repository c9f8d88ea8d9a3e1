"""Regularized losses for weak (scribble) supervision: the DenseCRF loss of Tang et al. ("On Regularized
Losses for Weakly-supervised CNN Segmentation", ECCV 2018) and a DFR-style variant whose kernel also compares
the network's own deep features (after "Dynamic Feature Regularized Loss", Zhang et al. 2021).

For softmax probabilities S (B x K x h x w) on a grid of h x w pixels, per image::

    E(S) = sum_k S_k^T W (1 - S_k),   W_ij = exp(-|p_i - p_j|^2 / (2 sigma_xy^2) - |I_i - I_j|^2 / (2 sigma_rgb^2))

p = pixel position on the grid, I = RGB in 0..255 (not the normalised network input). ``densecrf_loss``
returns ``sum_b E(S_b) / (B h w)``: the per-pixel mean, so the weight does not depend on the image size.
The DFR variant multiplies W by ``exp(-|f_i - f_j|^2 / (2 sigma_feat^2))`` with f the detached, per-pixel
L2-normalised deep features, reduced to their leading principal components (``feat_dims``) and resized
to the grid.

How it is computed here (pure PyTorch, CPU or CUDA, no compiled extension; the authors' code needs a
hand-built C++ permutohedral-lattice extension):

- on a grid downsampled by ``scale`` (image: bilinear; probabilities: bilinear; sigma_xy in pixels of the
  full-size image, divided by the scale factor as the reference does);
- W is truncated to a (2 radius + 1)^2 window (``radius`` grid pixels, default 2 sigma_xy on the grid), so
  the value is exact for images within the window and a truncation otherwise; pixels outside the image
  contribute nothing; ``stride`` > 1 samples the window every ``stride`` pixels, each sample weighing
  stride^2 (W stays symmetric; stride^2 fewer neighbours to visit);
- since sum_k S_k = 1, W 1 = sum_k W S_k, so one filtering pass gives E = sum_i sum_k S_ik ((W1)_i - (W S)_ik);
  a custom autograd function keeps only W S (B x K x h x w) and W 1 (B x h x w) and returns the gradient
  dE/dS_k = W 1 - 2 W S_k (W is symmetric; W 1 is constant along the simplex, which the softmax's Jacobian
  projects out);
- the window is filtered one row of offsets at a time: each row is an ``unfold`` view of the padded maps, so
  the largest temporary is K x (2 radius + 1) times the grid, not times the whole window.

Applied to all pixels of the (downsampled) image, labelled or not; ignore pixels matter only to the partial
cross-entropy. ``benchmarks/perf/rloss_cost.py`` measures time and memory against cross-entropy.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_filter(values: Tensor, guide: Tensor, sigma_xy: float, radius: int, stride: int = 1) -> Tensor:
    """W @ values per image: values B x K x h x w, guide B x G x h x w (already divided by its sigmas, so the
    guide term of W is exp(-|g_i - g_j|^2 / 2)); sigma_xy, radius and stride in grid pixels. Returns B x K x h x w.

    W_ij = stride^2 exp(-|p_i - p_j|^2 / (2 sigma_xy^2) - |g_i - g_j|^2 / 2) for offsets p_j - p_i whose
    coordinates are multiples of ``stride`` within +-radius (radius a multiple of stride), else 0: the window
    sampled every ``stride`` pixels, each sample standing for stride^2 neighbours. W is symmetric.
    """
    if radius % stride:
        raise ValueError(f"radius {radius} must be a multiple of stride {stride}")
    b, k, h, w = values.shape
    d = torch.arange(-radius, radius + 1, stride, device=values.device, dtype=torch.float32)
    spatial = -(d[:, None] ** 2 + d[None, :] ** 2) / (2 * sigma_xy**2) + 2 * math.log(stride)  # (dy, dx)
    n = len(d)
    pad = (radius, radius, radius, radius)
    vp, gp = F.pad(values, pad), F.pad(guide, pad)  # zero values outside the image: they add nothing
    out = torch.zeros_like(values)
    for row in range(n):
        dy = row * stride
        g_row = gp[:, :, dy:dy + h].unfold(3, w, stride)  # B x G x h x n x w: neighbours (dy, dx) for every dx
        dist = (g_row - guide[:, :, :, None, :]).square_().sum(1)  # B x h x n x w
        weight = (spatial[row].view(1, 1, n, 1) - dist / 2).exp_()
        v_row = vp[:, :, dy:dy + h].unfold(3, w, stride)  # B x K x h x n x w
        out += (v_row * weight[:, None]).sum(3)
    return out


class _DenseCRF(torch.autograd.Function):
    """E = sum S * (W1 - WS), summed over everything; gradient (W1 - 2 WS) * grad. W carries no gradient."""

    @staticmethod
    def forward(ctx, probs: Tensor, guide: Tensor, sigma_xy: float, radius: int, stride: int) -> Tensor:
        filtered = gaussian_filter(probs, guide, sigma_xy, radius, stride)
        row_sum = filtered.sum(1, keepdim=True)  # W 1, since the probabilities sum to 1 over classes
        ctx.save_for_backward(filtered, row_sum)
        return (probs * (row_sum - filtered)).sum()

    @staticmethod
    def backward(ctx, grad: Tensor):
        filtered, row_sum = ctx.saved_tensors
        return grad * (row_sum - 2 * filtered), None, None, None, None


def _features_guide(feats: Tensor, size: tuple[int, int], dims: int, sigma: float) -> Tensor:
    """Detached deep features B x D x h' x w' -> B x dims x h x w guide: L2-normalised per pixel, projected on
    the batch's ``dims`` leading principal components (orthonormal, so distances within that subspace are
    kept), resized bilinearly to the grid (projecting first: it is linear, and D is large), divided by ``sigma``."""
    f = F.normalize(feats.detach().float(), dim=1)
    b, d, h, w = f.shape
    flat = f.permute(0, 2, 3, 1).reshape(-1, d)
    centred = flat - flat.mean(0, keepdim=True)
    q = min(dims, d)
    # Principal axes from the D x D covariance (eigh is deterministic, unlike a randomised low-rank SVD).
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    projected = (centred @ vectors[:, -q:]).reshape(b, h, w, q).permute(0, 3, 1, 2)
    return F.interpolate(projected, size=size, mode="bilinear", align_corners=False) / sigma


def densecrf_loss(
    logits: Tensor,
    rgb: Tensor,
    *,
    sigma_rgb: float = 15.0,
    sigma_xy: float = 80.0,
    scale: float = 0.5,
    radius: int | None = None,
    stride: int = 1,
    feats: Tensor | None = None,
    sigma_feat: float = 0.5,
    feat_dims: int = 8,
) -> Tensor:
    """The DenseCRF loss (the DFR variant when ``feats`` is given), per-pixel mean over the batch.

    logits: B x K x H x W (any resolution; upsampled bilinearly to the image first), rgb: B x 3 x H_img x
    W_img un-normalised image in 0..255, sigma_xy in full-size pixels, scale: grid size / image size,
    radius: window half-width on the grid (default 2 sigma_xy * scale rounded up to a multiple of ``stride``),
    stride: sample the window every ``stride`` grid pixels (see ``gaussian_filter``). feats: B x D x h' x w' deep
    features (detached here). Returns a scalar (float32), differentiable with respect to ``logits``.
    """
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must be B x 3 x H x W (0..255), got shape {tuple(rgb.shape)}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale!r}")
    height, width = rgb.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    sigma_grid = sigma_xy * scale
    if radius is None:
        radius = stride * math.ceil(2 * sigma_grid / stride)
    probs = F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False).softmax(1)
    guide = F.interpolate(rgb.float(), size=size, mode="bilinear", align_corners=False) / sigma_rgb
    if feats is not None:
        guide = torch.cat([guide, _features_guide(feats, size, feat_dims, sigma_feat)], 1)
    energy = _DenseCRF.apply(probs, guide.contiguous(), sigma_grid, int(radius), int(stride))
    return energy / (probs.shape[0] * size[0] * size[1])
