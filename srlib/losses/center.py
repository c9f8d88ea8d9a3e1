"""Center loss (Wen et al., ECCV 2016) on decoder features, the LAL paper's other counterpart.

``CenterLoss(num_classes, feat_dim, alpha)`` keeps one centre c_j per class as a buffer (no
gradient; zeros at the start, saved in ``state_dict`` as ``centers``). ``forward(features,
target)`` takes features B x F x h x w (the head's features before its last 1x1 classifier),
downsamples the label (nearest) to h x w, and returns the mean over valid positions of
``0.5 * ||f_i - c_(y_i)||^2``. In training mode it then moves the centres by Wen et al.'s rule
on the batch, ``delta c_j = sum_(i: y_i = j) (c_j - f_i) / (1 + n_j)``, ``c_j -= alpha delta c_j``.
The weight lambda (paper 3e-4, the run config's ``loss.w_center``) is applied by ``srlib.losses.RunLoss``; the
update rate alpha defaults to ``loss.center_alpha`` (``srlib.config.DEFAULTS``).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srlib.config import DEFAULTS, IGNORE_INDEX

DEFAULT_ALPHA = DEFAULTS["loss"]["center_alpha"]


class CenterLoss(nn.Module):
    def __init__(self, num_classes: int, feat_dim: int, alpha: float = DEFAULT_ALPHA,
                 ignore_index: int = IGNORE_INDEX):
        super().__init__()
        for name, value in (("num_classes", num_classes), ("feat_dim", feat_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"center loss {name} must be an integer >= 1, got {value!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(f"center loss alpha must be a number in [0, 1], got {alpha!r}")
        self.num_classes, self.alpha, self.ignore_index = num_classes, alpha, ignore_index
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))

    def forward(self, features: Tensor, target: Tensor) -> Tensor:
        if features.dim() != 4 or features.shape[1] != self.centers.shape[1] or target.dim() != 3:
            raise ValueError(
                f"center loss needs features B x {self.centers.shape[1]} x h x w and target B x H x W, "
                f"got {tuple(features.shape)} and {tuple(target.shape)}"
            )
        labels = F.interpolate(target[:, None].float(), size=features.shape[2:], mode="nearest")[:, 0].long()
        valid = labels != self.ignore_index
        feats = features.permute(0, 2, 3, 1)[valid]  # (n, F)
        labels = labels[valid]
        if labels.numel() == 0:
            return features.sum() * 0.0
        loss = 0.5 * (feats - self.centers[labels].to(feats.dtype)).square().sum(1).mean()
        if self.training:
            self._update(feats.detach(), labels)
        return loss

    @torch.no_grad()
    def _update(self, feats: Tensor, labels: Tensor) -> None:
        counts = torch.bincount(labels, minlength=self.num_classes).to(self.centers.dtype)[:, None]
        sums = torch.zeros_like(self.centers).index_add_(0, labels, feats.to(self.centers.dtype))
        self.centers.sub_(self.alpha * (counts * self.centers - sums) / (1 + counts))
