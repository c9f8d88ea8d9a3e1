"""Segmentation metrics accumulated over a whole split.

``SegmentationMetrics`` accumulates integer pixel counts batch by batch (confusion matrices by
``torch.bincount``) and turns them into scores once, in ``compute()``, so every score is pooled
over the split's pixels, not averaged over images or batches.

Scores (``compute()`` keys; every value is a Python float, a list of floats / ``None``, or ``None``):

- ``iou_per_class``: IoU_c = TP_c / (TP_c + FP_c + FN_c) over the split. A class absent from both the
  ground truth and the prediction of the whole split (union 0) has no IoU: ``None``.
- ``miou``: mean of ``iou_per_class`` over the classes that have one, i.e. classes present in the
  ground truth *or* the prediction somewhere in the split. A class that is only predicted counts
  with IoU 0; a class absent from both is left out (it is not counted as 0 or 1).
- ``pixel_accuracy``: correct pixels / valid pixels (valid = target is not the ignore index).
- ``mean_class_accuracy``: mean over classes present in the ground truth of TP_c / GT_c.
- ``hallucination_rate``: share of valid pixels predicted as a class that is absent from the
  ground truth of *their own image*; hallucinated pixels and valid pixels are summed over the split
  (pixel-weighted, not a mean of per-image rates).
- Failure-1 region scores, each an IoU computed on a confusion matrix restricted to a
  ground-truth-defined pixel region, with a ``*_per_class`` list:
  ``thin_part_iou`` (pixels where the ``parts`` mask is True), ``body_iou`` (foreground pixels
  outside the parts mask; compare with ``thin_part_iou``), ``small_object_iou`` (pixels of
  ground-truth connected components, per class, 8-connectivity, whose area is below
  ``small_fraction`` of the label map's H x W). Because the region is defined by the ground
  truth, a class counts in a region score only where it has ground-truth pixels in that region;
  the mean is over those classes, ``background_index`` excluded.

``None`` means "not computable": ``miou``/``pixel_accuracy``/``hallucination_rate`` before any
valid pixel; ``thin_part_iou``/``body_iou`` (and their lists) when ``update`` got no ``parts``;
``small_object_iou`` when the split has no small component. No NaN is ever returned, so the dict
passes ``json.dumps(..., allow_nan=False)``.
"""

import numpy as np
import torch
from scipy import ndimage

from srlib.config import IGNORE_INDEX

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_REGIONS = ("thin_part", "body", "small_object")


def _ratios(num: torch.Tensor, den: torch.Tensor, keep: torch.Tensor) -> list:
    """Per-class num / den as floats where ``keep`` is True, else None."""
    return [float(n / d) if k else None for n, d, k in zip(num.tolist(), den.tolist(), keep.tolist())]


def _mean(values: list) -> float | None:
    """Mean of the non-None entries; None if there are none."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _small_object_mask(codes: np.ndarray, small_fraction: float, background_index: int | None) -> np.ndarray:
    """Pixels of small ground-truth components, as a bool array B x H x W.

    codes: int array B x H x W holding class id + 1, and 0 for ignore pixels. For every class of an
    image except the background, label its 8-connected components (inside the class's bounding
    box); a component is small when its area in pixels is below ``small_fraction * H * W``.
    """
    _, height, width = codes.shape
    limit = small_fraction * height * width
    mask = np.zeros(codes.shape, dtype=bool)
    for image, out in zip(codes, mask):
        for cls, box in enumerate(ndimage.find_objects(image)):
            if box is None or cls == background_index:
                continue
            components, _ = ndimage.label(image[box] == cls + 1, structure=_EIGHT_CONNECTED)
            small = np.bincount(components.ravel()) < limit
            small[0] = False  # label 0 = pixels of other classes
            if small.any():
                out[box] |= small[components]
    return mask



class ExitAgreement:
    """Per-exit mIoU and how the head relates to SR-F's teacher, accumulated over a split: the mechanism
    behind an SR-F result, measured on the same pixels as the scores.

    ``update(preds, target)``: preds = N integer B x H x W maps, exit 1 (SR-F's teacher) first, the head
    last; target B x H x W with ``ignore_index`` for void. ``compute()`` -> {"exit<k>_miou" for k = 1..N
    (mIoU as ``SegmentationMetrics``: classes present in ground truth or prediction), "teacher_agreement"
    (share of valid pixels where the head's class equals exit 1's), "head_accuracy_teacher_wrong" (share
    of the valid pixels exit 1 gets wrong that the head gets right; None when exit 1 is never wrong)}.
    """

    def __init__(self, num_classes: int, exits: int, ignore_index: int = IGNORE_INDEX):
        if exits < 2:
            raise ValueError(f"ExitAgreement needs at least 2 exits (a teacher and the head), got {exits}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusions = torch.zeros(exits, num_classes * num_classes, dtype=torch.int64)
        self.counts = {"valid": 0, "agree": 0, "teacher_wrong": 0, "head_right_teacher_wrong": 0}

    def update(self, preds: list[torch.Tensor], target: torch.Tensor) -> None:
        if len(preds) != len(self.confusions):
            raise ValueError(f"expected {len(self.confusions)} exit predictions, got {len(preds)}")
        valid = target != self.ignore_index
        truth = target[valid].long()
        for k, pred in enumerate(preds):
            index = truth * self.num_classes + pred[valid].long()
            self.confusions[k] += torch.bincount(index, minlength=self.num_classes**2).cpu()
        teacher, head = preds[0][valid], preds[-1][valid]
        teacher_wrong = teacher != truth
        self.counts["valid"] += int(valid.sum())
        self.counts["agree"] += int((head == teacher).sum())
        self.counts["teacher_wrong"] += int(teacher_wrong.sum())
        self.counts["head_right_teacher_wrong"] += int(((head == truth) & teacher_wrong).sum())

    def compute(self) -> dict:
        size = (self.num_classes, self.num_classes)
        scores = {f"exit{k + 1}_miou": iou_scores(conf.reshape(size))[1] for k, conf in enumerate(self.confusions)}
        counts = self.counts
        scores["teacher_agreement"] = counts["agree"] / counts["valid"] if counts["valid"] else None
        scores["head_accuracy_teacher_wrong"] = (counts["head_right_teacher_wrong"] / counts["teacher_wrong"]
                                                 if counts["teacher_wrong"] else None)
        return scores


def iou_scores(confusion: torch.Tensor) -> tuple[list, float | None]:
    """(per-class IoU, mIoU) of a C x C confusion matrix (rows ground truth): IoU None for a class absent from
    both ground truth and prediction, mIoU over the others (None when there are none)."""
    tp, gt, pr = confusion.diag(), confusion.sum(1), confusion.sum(0)
    union = gt + pr - tp
    iou = _ratios(tp, union, union > 0)
    return iou, _mean(iou)


class SegmentationMetrics:
    """Confusion-matrix metrics and failure-mode scores for one split (see the module docstring).

    num_classes: C >= 2, class ids 0..C-1. ignore_index: target value excluded everywhere (``IGNORE_INDEX``).
    background_index: the background class id, excluded from the foreground-only scores (body,
    thin-part and small-object IoU); ``None`` (default) for datasets without a background class,
    where every class is foreground. Pass 0 for datasets whose class 0 is background (generated,
    VOC). small_fraction: area threshold of a small component, as a share of the image (0.01).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, *, background_index: int | None = None,
                 small_fraction: float = 0.01):
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class id (0..{num_classes - 1})")
        if background_index is not None and not 0 <= background_index < num_classes:
            raise ValueError(f"background_index {background_index} is neither a class id "
                             f"(0..{num_classes - 1}) nor None")
        if not 0 < small_fraction <= 1:
            raise ValueError(f"small_fraction must be in (0, 1], got {small_fraction!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.background_index = background_index
        self.small_fraction = small_fraction
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        size = (self.num_classes, self.num_classes)
        self._confusion = torch.zeros(size, dtype=torch.int64)
        self._regions = {name: torch.zeros(size, dtype=torch.int64) for name in _REGIONS}
        self._hallucinated = 0
        self._valid = 0
        self._with_parts = None  # set by the first update: were parts masks given?

    @property
    def confusion(self) -> torch.Tensor:
        """C x C int64 CPU tensor of pixel counts, rows = ground truth, cols = prediction (a copy)."""
        return self._confusion.clone()

    def update(self, pred: torch.Tensor, target: torch.Tensor, parts: torch.Tensor | None = None) -> None:
        """Add one batch.

        pred: integer B x H x W predicted class ids (the argmax of the logits at label size).
        target: integer B x H x W ground truth, ``ignore_index`` for void. parts: bool B x H x W
        thin-part mask or None; give it for every batch of a split or for none.
        Tensors may live on any device; the counts are kept on the CPU.
        """
        pred, target, parts = self._checked(pred, target, parts)
        num_classes, valid = self.num_classes, target != self.ignore_index
        self._count_hallucinations(pred, target, valid)

        # One bincount over the index (region, small, gt, pred): region 1 = thin part, 2 = body,
        # 0 = the rest (everything when no parts mask); small 1 = in a small ground-truth component.
        codes = torch.where(valid, target + 1, 0)
        codes = codes.to(torch.uint8 if num_classes < 255 else torch.int32).cpu().numpy()
        small = torch.from_numpy(_small_object_mask(codes, self.small_fraction, self.background_index))
        region = small.to(target.device, torch.int32)
        if parts is not None:
            body = ~parts if self.background_index is None else ~parts & (target != self.background_index)
            region += 2 * parts + 4 * body
        dump = 6 * num_classes * num_classes  # bin of the ignore pixels, dropped
        index = torch.where(valid, (region * num_classes + target) * num_classes + pred, dump)
        counts = torch.bincount(index.flatten(), minlength=dump + 1)[:dump].cpu()
        counts = counts.reshape(3, 2, num_classes, num_classes)
        self._confusion += counts.sum((0, 1))
        self._regions["small_object"] += counts[:, 1].sum(0)
        self._regions["thin_part"] += counts[1].sum(0)
        self._regions["body"] += counts[2].sum(0)

    def _count_hallucinations(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        """Count valid pixels whose predicted class has no ground-truth pixel in the same image."""
        batch, num_classes = target.shape[0], self.num_classes
        offset = (torch.arange(batch, device=target.device) * num_classes).view(batch, 1, 1)
        dump = batch * num_classes
        image_class = torch.where(valid, offset + target, dump)
        present = torch.bincount(image_class.flatten(), minlength=dump + 1)[:dump] > 0
        self._hallucinated += int((~present[offset + pred] & valid).sum())
        self._valid += int(valid.sum())

    def _checked(self, pred, target, parts):
        """Validate shapes, dtypes and values; return int32 pred/target and bool parts on pred's device."""
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        for name, x in (("pred", pred), ("target", target)):
            if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
                raise ValueError(f"{name} must hold integer class ids (the argmax of the logits), "
                                 f"got dtype {x.dtype}")
        if pred.ndim != 3 or pred.shape != target.shape:
            raise ValueError(f"pred and target must both be B x H x W, "
                             f"got {tuple(pred.shape)} and {tuple(target.shape)}")
        target = target.to(pred.device)
        if (self._with_parts is not None) and (parts is not None) != self._with_parts:
            raise ValueError("parts must be given for every batch of a split or for none "
                             "(call reset() between splits)")
        if parts is not None:
            parts = torch.as_tensor(parts)
            if parts.dtype != torch.bool or parts.shape != target.shape:
                raise ValueError(f"parts must be a bool B x H x W mask like target {tuple(target.shape)}, "
                                 f"got {parts.dtype} {tuple(parts.shape)}")
            parts = parts.to(pred.device)
        num_classes = self.num_classes
        bad = (target != self.ignore_index) & ((target < 0) | (target >= num_classes))
        if bad.any():
            raise ValueError(f"target holds values {torch.unique(target[bad]).tolist()} that are neither class ids "
                             f"0..{num_classes - 1} nor the ignore index {self.ignore_index}")
        bad = (pred < 0) | (pred >= num_classes)
        if bad.any():
            raise ValueError(f"pred holds values {torch.unique(pred[bad]).tolist()} "
                             f"outside the class ids 0..{num_classes - 1}")
        self._with_parts = parts is not None
        return pred.int(), target.int(), parts

    def _region_iou(self, confusion: torch.Tensor) -> list:
        """Per-class IoU of a region confusion; None for background and classes without ground truth there."""
        tp, gt, pr = confusion.diag(), confusion.sum(1), confusion.sum(0)
        keep = gt > 0
        if self.background_index is not None:
            keep[self.background_index] = False
        return _ratios(tp, gt + pr - tp, keep)

    def compute(self) -> dict:
        """Scores over everything accumulated since construction / reset() (keys: module docstring)."""
        conf = self._confusion
        tp, gt = conf.diag(), conf.sum(1)
        iou, miou = iou_scores(conf)
        valid = int(gt.sum())
        scores = {
            "miou": miou,
            "iou_per_class": iou,
            "pixel_accuracy": int(tp.sum()) / valid if valid else None,
            "mean_class_accuracy": _mean(_ratios(tp, gt, gt > 0)),
            "hallucination_rate": self._hallucinated / self._valid if self._valid else None,
        }
        for name in _REGIONS:
            computable = name == "small_object" or self._with_parts
            per_class = self._region_iou(self._regions[name]) if computable else None
            scores[f"{name}_iou"] = _mean(per_class) if per_class else None
            scores[f"{name}_iou_per_class"] = per_class
        return scores
