"""Full-image and sliding-window prediction for evaluation (sliding windows for large images, e.g. Cityscapes)."""

import torch


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one side: every ``stride`` pixels, the last one flush with the far edge."""
    if size <= window:
        return [0]
    return list(range(0, size - window, stride)) + [size - window]


@torch.no_grad()
def predict_logits(model, images: torch.Tensor, window: int | None = None, stride: int | None = None) -> torch.Tensor:
    """Logits B x C x H x W for ``images`` B x 3 x H x W; ``model(x)`` must return logits at the size of ``x``.

    ``window`` None: one forward pass over the whole image. Otherwise square ``window`` x ``window`` tiles
    every ``stride`` pixels (default 2/3 of the window, as mmsegmentation's Cityscapes configs use), the last
    tile of each row and column flush with the image edge, and the logits of overlapping tiles averaged.
    Where the image is smaller than the window along a side, the tile spans that whole side, unpadded (as in
    mmsegmentation), so a window at least as large as the image is exactly one forward pass.
    """
    if window is None:
        return model(images)
    stride = max(1, 2 * window // 3) if stride is None else stride
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 1 and 1 <= stride <= window, got window={window}, stride={stride}")
    height, width = images.shape[-2:]
    logits = counts = None
    for top in _starts(height, window, stride):
        for left in _starts(width, window, stride):
            tile = images[..., top:top + window, left:left + window]
            out = model(tile)
            if out.shape[-2:] != tile.shape[-2:]:
                raise ValueError(f"model returned logits of size {tuple(out.shape[-2:])} for a tile of size "
                                 f"{tuple(tile.shape[-2:])}; it must return full-resolution logits")
            if logits is None:
                logits = out.new_zeros(*out.shape[:2], height, width)
                counts = out.new_zeros(1, 1, height, width)
            logits[..., top:top + window, left:left + window] += out
            counts[..., top:top + window, left:left + window] += 1
    return logits / counts
