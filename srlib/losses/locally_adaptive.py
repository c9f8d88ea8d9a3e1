"""Locally Adaptive Loss (Guo et al., "Locally Adaptive Learning Loss for Semantic Image
Segmentation", arXiv 1802.08290), as defined below.

For every valid pixel p (label y_p != ignore) of a logit map ``z`` (B x C x H x W):

1. Standard-score normalisation over channels: ``zn = (z - mean_c z) / sqrt(var_c z + eps)``
   (population variance, eps = 1e-5). These are the "normalised predictions" of the paper; they
   stay logits, not probabilities.
2. Selective pooling over the w x w window around p (w in 3, 5, 7), keeping only positions q
   inside the image whose label equals y_p (p itself always counts), each weighted by
   ``2^(1 - D8(q - p))`` (D8 = chessboard distance: centre 2, ring 1 weight 1, ring 2 1/2, ...):
   ``v_p = sum_q w_q zn_q / m_p`` with m_p = the *unweighted* number of such positions.
3. Cross-entropy of v_p against y_p: ``L_p = logsumexp_c v_p - v_p[y_p]`` (v_p goes through a
   log-softmax like logits do).
4. Minkowski pooling over the valid pixels of the batch: ``(mean_p L_p^k)^(1/k)`` (paper: k = 3).

Consequence of step 1 worth knowing: v_p is an average of unit-variance vectors, so its logit
gaps are bounded (|v_c| <= 2 sqrt(C-1)) and L_p never reaches 0; the loss has a floor that
depends on C and w. Ignore pixels take part neither as centres nor as neighbours; positions
outside the image are left out of the sum and of m_p. With no valid pixel the loss is 0.

Cost. A naive version unfolds the map into every window: w^2 copies (25x at w = 5). Here the
pooling is a linear map A (A_pq = w_(q-p) [y_q = y_p], zero rows for ignore pixels), applied as
a depthwise convolution with the window weights (right wherever the whole window shares one
label) minus a sparse CSR correction at pixels near a label boundary; where labels are so
fragmented that A itself has fewer entries than that correction, as A alone (sparse). A is
symmetric, so the backward pass applies the same A to the gradient, and a custom autograd
function keeps two map-sized tensors (the normalised map and exp of the pooled logits, which the
backward then overwrites) and allocates one more in the backward, which becomes the gradient.
The convolution runs channels-last, so channels-first logits pay one transposing pass each way. Time grows
with the share of boundary pixels; ``benchmarks/perf/lal_cost.py`` measures time and peak memory against cross-entropy.
"""

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from srlib.config import DEFAULTS, IGNORE_INDEX

WINDOWS = (3, 5, 7)
DEFAULT_WINDOW, DEFAULT_K = DEFAULTS["loss"]["lal"]["window"], DEFAULTS["loss"]["lal"]["k"]
EPS = 1e-5
_BUILD_ROWS = 1 << 16  # pixels per step while gathering label windows (bounds temporaries)
# |v_c| <= 2 sqrt(C - 1) after normalisation, so exp(v) cannot overflow float32 below ~1900 classes.
_NO_SHIFT_MAX_CHANNELS = 1000
_OUTSIDE, _VOID = -2, -1  # label codes of padding and of ignore pixels in the padded label map


def check_params(window: int, k: float) -> None:
    """Raise ValueError naming a window outside WINDOWS or an exponent k that is not a finite k > 0."""
    if isinstance(window, bool) or window not in WINDOWS:
        raise ValueError(f"LAL window must be one of {WINDOWS}, got {window!r}")
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not math.isfinite(k) or k <= 0:
        raise ValueError(f"LAL exponent k must be a finite number > 0, got {k!r}")


def window_weights(window: int) -> Tensor:
    """``window x window`` float64 tensor of 2^(1 - D8): 2 at the centre, halving ring by ring."""
    d = torch.arange(window) - window // 2
    d8 = torch.maximum(d.abs()[:, None], d.abs()[None, :])
    return torch.pow(2.0, 1.0 - d8.double())


class _SameLabelPooling:
    """The symmetric pooling matrix A of one label batch (B x H x W) and its product with maps.

    Two exact forms, whichever stores fewer sparse entries. Usually ``A = V (K - D)``: K is the
    depthwise convolution with the window weights (zero padding); D holds, for the valid pixels
    whose window is not all one label ("boundary rows"), the weights of the in-image neighbours
    whose label differs (ignore neighbours included); V zeroes the rows of ignore pixels (left to
    the caller). Where most windows are mixed (fragmented labels), A itself (the same-label
    entries) is smaller than D, and ``sparse_only`` applies it without the convolution. The sparse
    matrix is CSR (its rows x pixels), built once per batch and used by the forward and the
    backward pass. Maps are pixel-major (N, C), N = B*H*W pixels in (b, i, j) order. Attributes:
    ``inv_count`` (N,) 1 / m_p, 0 at ignore pixels; ``valid`` (N,) bool.
    """

    def __init__(self, target: Tensor, window: int, ignore_index: int, dtype: torch.dtype):
        batch, height, width = target.shape
        device = target.device
        self.shape, self.window = (batch, height, width), window
        self.weights = window_weights(window).to(dtype=dtype, device=device)
        valid = target != ignore_index
        self.valid = valid.reshape(-1)
        labels = torch.where(valid, target.to(torch.int32), _VOID)
        offsets = torch.arange(-(window // 2), window // 2 + 1, device=device)
        rows_inside = _inside(torch.arange(height, device=device), offsets, height).sum(1)
        cols_inside = _inside(torch.arange(width, device=device), offsets, width).sum(1)
        in_image = (rows_inside[:, None] * cols_inside).to(dtype)  # (H, W) window positions inside
        count = in_image.expand(batch, height, width).reshape(-1).clone()  # m_p, exact off the boundary rows
        self.rows = (valid & _mixed_windows(labels, window)).reshape(-1).nonzero().squeeze(1)
        every = None  # the window masks of every pixel, when most pixels need theirs
        if len(self.rows) * 8 > labels.numel():
            every = _window_matches(labels, window)
            same, differs = every[0][self.rows], every[1][self.rows]
        else:
            same, differs = _gathered_window_matches(labels, self.rows, window)
        count[self.rows] = same.sum(1, dtype=dtype)
        self.inv_count = self.valid / count
        # The sparse form with fewer entries: D (differing neighbours of boundary rows) or A itself.
        self.sparse_only = float(count @ self.valid.to(dtype)) < float(differs.sum())
        if self.sparse_only:  # rows for every pixel (none for void ones), so that A @ map is (N, C)
            self.rows = torch.arange(self.valid.numel(), device=device)
            differs = (every or _window_matches(labels, window))[0] & self.valid[:, None]  # same-label entries
        self.matrix = self._csr(differs)

    def _csr(self, entries: Tensor) -> Tensor:
        """CSR (len(rows) x N) of the window weights at ``entries`` (len(rows) x slots bool): row p
        holds w_s at pixel p + s where entries[p, s]."""
        width, r, device = self.shape[2], self.window // 2, entries.device
        offsets = torch.arange(-r, r + 1, device=device, dtype=torch.int32)
        step = (offsets[:, None] * width + offsets).view(-1)  # pixel-index step of each slot
        crow = torch.zeros(len(self.rows) + 1, dtype=torch.int32, device=device)
        torch.cumsum(entries.sum(1, dtype=torch.int32), 0, out=crow[1:])
        row, slot = entries.nonzero(as_tuple=True)  # row-major: by pixel, then by slot, as CSR wants
        with warnings.catch_warnings():  # "sparse CSR support is in beta" (once per process)
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                crow, self.rows.to(torch.int32)[row] + step[slot], self.weights.view(-1)[slot],
                size=(len(self.rows), self.valid.numel()), check_invariants=False,
            )

    def apply(self, pixels: Tensor) -> Tensor:
        """A @ map up to ignore rows: pixel-major (N, C) map -> new (N, C); rows of ignore pixels are not zeroed."""
        if self.sparse_only:
            return self._sparse_product(pixels)
        batch, height, width = self.shape
        channels = pixels.shape[1]
        image = pixels.view(batch, height, width, channels).permute(0, 3, 1, 2)  # channels-last B x C x H x W
        kernel = self.weights.expand(channels, 1, self.window, self.window)
        out = F.conv2d(image, kernel, padding=self.window // 2, groups=channels)
        out = out.permute(0, 2, 3, 1).reshape(-1, channels)  # a view when conv2d keeps channels-last
        if len(self.rows):
            out.index_put_((self.rows,), self._sparse_product(pixels).neg_(), accumulate=True)
        return out

    def _sparse_product(self, pixels: Tensor) -> Tensor:
        """matrix @ map -> (len(rows), C). addmm, not @: on CPU it takes the faster sparse kernel."""
        out = pixels.new_empty(len(self.rows), pixels.shape[1])
        return torch.addmm(out, self.matrix, pixels, beta=0, out=out)


def _inside(index: Tensor, offsets: Tensor, size: int) -> Tensor:
    """(len(index), len(offsets)) bool: index + offset lies in [0, size)."""
    moved = index[:, None] + offsets
    return (moved >= 0) & (moved < size)


def _mixed_windows(labels: Tensor, window: int) -> Tensor:
    """(B, H, W) bool: the in-image window around the pixel holds more than one label (void is one).

    Separable: a window is mixed iff one of its rows differs along itself (``row_mixed`` at the
    window's centre column) or its centre-column label differs from the pixel's."""
    row_mixed = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    for d in range(1, window // 2 + 1):
        differs = labels[:, :, d:] != labels[:, :, :-d]
        row_mixed[:, :, d:] |= differs
        row_mixed[:, :, :-d] |= differs
    mixed = row_mixed.clone()
    for d in range(1, window // 2 + 1):
        differs = labels[:, d:] != labels[:, :-d]
        mixed[:, d:] |= differs | row_mixed[:, :-d]
        mixed[:, :-d] |= differs | row_mixed[:, d:]
    return mixed


def _window_matches(labels: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """For every pixel of a (B, H, W) label map, void = _VOID: two (N, window^2) bool masks over
    the window slots, row-major: ``same`` (in-image, same label; the centre included) and
    ``differs`` (in-image, another label or void). Compares the map with each shifted copy."""
    height, width = labels.shape[1:]
    r = window // 2
    padded = F.pad(labels, (r, r, r, r), value=_OUTSIDE)
    neighbours = torch.stack([padded[:, dy : dy + height, dx : dx + width]
                              for dy in range(window) for dx in range(window)])
    same = (neighbours == labels).view(window * window, -1)
    return same.t(), ((neighbours != _OUTSIDE).view(window * window, -1) & ~same).t()


def _gathered_window_matches(labels: Tensor, rows: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """_window_matches for the pixels ``rows`` (flat indices) only, by gathering their windows,
    _BUILD_ROWS at a time: cheaper when they are few."""
    batch, height, width = labels.shape
    r = window // 2
    padded = F.pad(labels, (r, r, r, r), value=_OUTSIDE).view(-1)
    pad_w = width + 2 * r
    offsets = torch.arange(-r, r + 1, device=labels.device)
    step = (offsets[:, None] * pad_w + offsets).view(-1)
    empty = torch.zeros(0, window * window, dtype=torch.bool, device=labels.device)
    same, differs = [empty], [empty]
    for chunk in rows.split(_BUILD_ROWS):
        image, pixel = chunk.div(height * width, rounding_mode="floor"), chunk.remainder(height * width)
        row, col = pixel.div(width, rounding_mode="floor"), pixel.remainder(width)
        centre = (image * (height + 2 * r) + row + r) * pad_w + col + r  # index in the padded map
        neighbours = padded[centre[:, None] + step]
        same.append(neighbours == padded[centre, None])
        differs.append((neighbours != _OUTSIDE) & ~same[-1])
    return torch.cat(same), torch.cat(differs)


def _channel_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-pixel sum_c a_c b_c of two (N, C) maps -> (N,), without a map-sized temporary."""
    channels = a.shape[1]
    return torch.bmm(a.view(-1, 1, channels), b.view(-1, channels, 1)).view(-1)


class _LocallyAdaptiveLoss(torch.autograd.Function):
    """The scalar loss with a hand-written backward.

    Shortcut, exact in arithmetic: sum_c dL/dv_pc = 0 (softmax minus one-hot) and A acts on every
    channel alike, so the gradient reaching zn has zero channel mean and the mean term of the
    standard-score backward drops out. Channel sums are matrix-vector or batched (1 x C)(C x 1)
    products: on pixel-major maps they beat reductions over a short inner dimension.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, window: int, k: float, ignore_index: int) -> Tensor:
        batch, channels, height, width = logits.shape
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        with torch.autocast(logits.device.type, enabled=False):
            pooling = _SameLabelPooling(target, window, ignore_index, dtype)
            # Pixel-major copy, centred: one pass (a transposing one for channels-first logits).
            pixel_major = logits.permute(0, 2, 3, 1).to(dtype)
            if pixel_major.is_contiguous():  # channels-last logits: the channel mean is a gemv
                mean = pixel_major.reshape(-1, channels) @ logits.new_full((channels,), 1.0 / channels, dtype=dtype)
            else:
                mean = logits.mean(1, dtype=dtype).view(-1)
            normed = torch.empty(batch * height * width, channels, dtype=dtype, device=logits.device)
            torch.sub(pixel_major, mean.view(batch, height, width, 1), out=normed.view(batch, height, width, channels))
            inv_std = _channel_dot(normed, normed).div_(channels).add_(EPS).rsqrt_()
            normed.mul_(inv_std[:, None])
            pooled = pooling.apply(normed).mul_(pooling.inv_count[:, None])  # ignore rows -> 0
            if channels > _NO_SHIFT_MAX_CHANNELS:
                pooled.sub_(pooled.amax(1, keepdim=True))
            label = torch.where(pooling.valid, target.reshape(-1).long(), 0)
            losses = -pooled.gather(1, label[:, None]).squeeze(1)
            exp = pooled.exp_()
            sum_exp = exp @ torch.ones(channels, dtype=dtype, device=exp.device)
            losses = losses.add_(sum_exp.log()).masked_fill_(~pooling.valid, 0.0)
            count = pooling.valid.sum()
            mean_power = losses.pow(k).sum() / count.clamp_min(1)
            loss = mean_power.pow(1.0 / k)
        ctx.save_for_backward(normed, exp, sum_exp, inv_std, losses, mean_power, count)
        ctx.pooling, ctx.label, ctx.k = pooling, label, k
        ctx.input_spec = (logits.dtype, logits.is_contiguous(memory_format=torch.channels_last))
        return loss.to(logits.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        normed, exp, sum_exp, inv_std, losses, mean_power, count = ctx.saved_tensors
        pooling, label, k = ctx.pooling, ctx.label, ctx.k
        batch, height, width = pooling.shape
        channels = exp.shape[1]
        with torch.autocast(grad.device.type, enabled=False):
            # d loss / d L_p = mean_power^(1/k - 1) L_p^(k-1) / count at valid pixels, else 0.
            outer = grad.to(exp.dtype) * mean_power.pow(1.0 / k - 1.0) / count.clamp_min(1)
            tiny = torch.finfo(exp.dtype).tiny
            scale = torch.where(pooling.valid, losses.clamp_min(tiny).pow(k - 1.0) * outer, 0.0)
            scale.mul_(pooling.inv_count)
            # d L_p / d v_p = softmax(v_p) - onehot(y_p), v_p = (A zn)_p / m_p. It overwrites exp:
            # a second backward through the graph then fails autograd's saved-tensor version check.
            grad_pooled = exp.mul_((scale / sum_exp)[:, None])
            grad_pooled.scatter_add_(1, label[:, None], -scale[:, None])
            grad_normed = pooling.apply(grad_pooled)  # A is symmetric: A^T g = A g
            # Standard-score backward: (g - mean_c g - zn mean_c(g zn)) / std, with mean_c g = 0.
            along = _channel_dot(grad_normed, normed).div_(channels)
            grad_normed.addcmul_(normed, along[:, None], value=-1)
            # The gradient goes into a map already allocated (a fresh one costs page faults): the
            # pixel-major result itself for channels-last logits, else the spent exp buffer.
            dtype, channels_last = ctx.input_spec
            std_scale = (inv_std * pooling.valid).view(batch, 1, height, width)
            grad_image = grad_normed.view(batch, height, width, channels).permute(0, 3, 1, 2)
            if dtype != exp.dtype:
                memory_format = torch.channels_last if channels_last else torch.contiguous_format
                grad_logits = (grad_image * std_scale).to(dtype, memory_format=memory_format)
            elif channels_last:
                grad_logits = grad_image.mul_(std_scale)
            else:
                grad_logits = torch.mul(grad_image, std_scale, out=exp.view(batch, channels, height, width))
        return grad_logits, None, None, None, None


def locally_adaptive_loss(
    logits: Tensor, target: Tensor, window: int = DEFAULT_WINDOW, k: float = DEFAULT_K,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Scalar LAL of ``logits`` (B x C x H x W) against ``target`` (B x H x W int, ``ignore_index``
    = void), in the logits' dtype (computed in float32, float64 for float64 logits); 0 when no
    pixel is valid. The graph supports one backward pass."""
    check_params(window, k)
    if logits.dim() != 4 or target.shape != (logits.shape[0],) + logits.shape[2:]:
        raise ValueError(
            f"LAL needs logits B x C x H x W and target B x H x W, got {tuple(logits.shape)} and {tuple(target.shape)}"
        )
    return _LocallyAdaptiveLoss.apply(logits, target, window, float(k), ignore_index)


def make_locally_adaptive_loss(window: int = DEFAULT_WINDOW, k: float = DEFAULT_K, ignore_index: int = IGNORE_INDEX):
    """Factory for the ``"lal"`` registry entry: validated ``(logits, target) -> scalar``."""
    check_params(window, k)
    return functools.partial(locally_adaptive_loss, window=window, k=k, ignore_index=ignore_index)
