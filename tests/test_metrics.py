import json

import numpy as np
import pytest
import torch

from srlib.metrics import SegmentationMetrics

IGNORE = 255


def scores_of(pred, target, parts=None, num_classes=3, **kwargs):
    metrics = SegmentationMetrics(num_classes, **kwargs)
    metrics.update(torch.as_tensor(pred), torch.as_tensor(target), None if parts is None else torch.as_tensor(parts))
    return metrics


# ---- hand-computed values ---------------------------------------------------------------------

def test_hand_computed_confusion_iou_accuracy_and_absent_class():
    # class 3 appears in neither target nor prediction; the ignore pixel's prediction (0) is dropped
    target = [[[0, 0, 1, 1], [2, 2, IGNORE, 1]]]
    pred = [[[0, 1, 1, 1], [2, 0, 0, 2]]]
    metrics = scores_of(pred, target, num_classes=4)
    # (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,0) (1,2)
    assert metrics.confusion.tolist() == [[1, 1, 0, 0], [0, 2, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert metrics.confusion.dtype == torch.int64
    scores = metrics.compute()
    # IoU = TP / (GT + PRED - TP): 1/(2+2-1), 2/(3+3-2), 1/(2+2-1); class 3 absent -> None, not in the mean
    assert scores["iou_per_class"] == pytest.approx([1 / 3, 1 / 2, 1 / 3, None])
    assert scores["miou"] == pytest.approx(7 / 18)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 7)
    assert scores["mean_class_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert scores["hallucination_rate"] == 0.0
    # no parts given -> thin/body not computable; 8 px image has no component below 1 % -> None
    for key in ("thin_part_iou", "thin_part_iou_per_class", "body_iou", "body_iou_per_class",
                "small_object_iou"):
        assert scores[key] is None
    json.dumps(scores, allow_nan=False)


def test_class_only_predicted_counts_as_zero_iou():
    scores = scores_of([[[0, 0, 1, 1]]], [[[0, 0, 0, 0]]]).compute()
    assert scores["iou_per_class"] == [0.5, 0.0, None]
    assert scores["miou"] == 0.25
    assert scores["mean_class_accuracy"] == 0.5  # over classes present in the ground truth only


def test_hallucination_is_per_image_and_pixel_weighted():
    target = [[[0, 0], [1, 1]], [[2, 2], [IGNORE, 0]]]
    pred = [[[0, 2], [1, 1]], [[2, 1], [1, 0]]]
    # image 1: class 2 is absent from its ground truth (present in image 2's) -> 1 of 4 valid pixels
    # image 2: class 1 is absent -> 1 of 3 valid pixels (the ignore pixel predicted 1 does not count)
    assert scores_of(pred, target).compute()["hallucination_rate"] == pytest.approx(2 / 7)


def test_thin_part_and_body_iou_hand_computed():
    target = [[[0, 1, 1, 1],
               [0, 1, 2, 2],
               [0, 0, 2, 2]]]
    parts = [[[False, False, False, True],
              [False, False, False, True],
              [False, False, False, True]]]
    pred = [[[0, 1, 1, 0],
             [0, 1, 2, 2],
             [0, 0, 1, 2]]]
    scores = scores_of(pred, target, parts, background_index=0).compute()
    # parts: (gt 1, pred 0), (2, 2), (2, 2) -> IoU1 = 0/1, IoU2 = 2/2; background excluded
    assert scores["thin_part_iou_per_class"] == [None, 0.0, 1.0]
    assert scores["thin_part_iou"] == 0.5
    # body = foreground outside parts: (1,1) x3, (2,2), (2,1) -> IoU1 = 3/(3+4-3), IoU2 = 1/(2+1-1)
    assert scores["body_iou_per_class"] == [None, 0.75, 0.5]
    assert scores["body_iou"] == 0.625
    # without a background class, the body region includes class 0's pixels: 4 of them, all correct
    assert scores_of(pred, target, parts).compute()["body_iou_per_class"] == [1.0, 0.75, 0.5]


def test_small_object_iou_hand_computed():
    # 20 x 20 images: small = area < 1 % = 4 px
    target = np.zeros((2, 20, 20), dtype=np.int64)
    pred = np.zeros_like(target)
    target[1] = pred[1] = 1  # image 2: one large class-1 component around 2 background pixels predicted 1,
    target[1, 0, :2] = 0  # which are not part of any small component (background is skipped)
    target[0, :5, :5] = pred[0, :5, :5] = 1  # 25 px: not small
    target[0, 10, 10] = pred[0, 10, 10] = 1  # 1 px: small, correct
    target[0, 5, 15], pred[0, 5, 15] = 2, 1  # 1 px: small, predicted as class 1
    for i in range(15, 19):  # diagonal chain: one 8-connected component of exactly 4 px: not small
        target[0, i, i] = pred[0, i, i] = 2
    scores = scores_of(pred, target, background_index=0).compute()
    # small pixels: (gt 1, pred 1), (gt 2, pred 1) -> IoU1 = 1/(1+2-1), IoU2 = 0/(1+0-0)
    assert scores["small_object_iou_per_class"] == [None, 0.5, 0.0]
    assert scores["small_object_iou"] == 0.25


def test_many_classes_small_object():
    # class ids above 254 take the wide-integer path of the component labelling
    target = np.zeros((1, 20, 20), dtype=np.int64)
    target[0, 3, 3] = 299
    scores = scores_of(target, target, num_classes=300, ignore_index=-1).compute()
    assert scores["small_object_iou_per_class"][299] == 1.0
    assert scores["small_object_iou"] == 1.0 and scores["miou"] == 1.0


def test_ignore_pixels_change_nothing_and_all_ignore_is_not_computable():
    target = torch.tensor([[[0, 1, 2, IGNORE]]])
    base = scores_of([[[0, 1, 1, 0]]], target).compute()
    assert base == scores_of([[[0, 1, 1, 2]]], target).compute()
    assert base["pixel_accuracy"] == 2 / 3
    empty = scores_of([[[0, 1]]], [[[IGNORE, IGNORE]]]).compute()
    assert empty["miou"] is None and empty["pixel_accuracy"] is None and empty["hallucination_rate"] is None
    assert empty["iou_per_class"] == [None, None, None]


# ---- accumulation and an independent slow implementation ------------------------------------

NUM_CLASSES = 7  # random labels use 0..5 only: class 6 is absent from the whole split


def random_split(seed=0, images=8, size=32):
    rng = np.random.default_rng(seed)
    # each image holds 3 of the classes 0..5 (so a noisy prediction hallucinates the others)
    own = np.stack([rng.choice(NUM_CLASSES - 1, 3, replace=False) for _ in range(images)])

    def pick(shape):
        return np.take_along_axis(own, rng.integers(0, 3, (images, shape[1] * shape[2])), 1).reshape(shape)

    target = np.kron(pick((images, 4, 4)), np.ones((size // 4, size // 4), dtype=np.int64))
    flips = rng.random(target.shape) < 0.05  # single pixels and specks: small components
    target[flips] = pick(target.shape)[flips]
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, NUM_CLASSES - 1, target.shape))
    target[rng.random(target.shape) < 0.1] = IGNORE
    parts = rng.random(target.shape) < 0.2
    return pred, target, parts


def reference_small_pixels(target, background, fraction):
    """Pixels (y, x) of 8-connected same-class components below fraction * H * W, by flood fill."""
    height, width = len(target), len(target[0])
    seen, small = set(), set()
    for y in range(height):
        for x in range(width):
            cls = target[y][x]
            if cls in (IGNORE, background) or (y, x) in seen:
                continue
            component, stack = [], [(y, x)]
            seen.add((y, x))
            while stack:
                cy, cx = stack.pop()
                component.append((cy, cx))
                for ny in (cy - 1, cy, cy + 1):
                    for nx in (cx - 1, cx, cx + 1):
                        if 0 <= ny < height and 0 <= nx < width and (ny, nx) not in seen and target[ny][nx] == cls:
                            seen.add((ny, nx))
                            stack.append((ny, nx))
            if len(component) < fraction * height * width:
                small.update(component)
    return small


def reference_iou(conf, keep):
    out = []
    for c in range(NUM_CLASSES):
        union = sum(conf[c]) + sum(row[c] for row in conf) - conf[c][c]
        out.append(conf[c][c] / union if keep(c, conf) and union else None)
    return out


def reference_mean(values):
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def reference_scores(pred, target, parts, background):
    """Pixel-by-pixel loops over Python lists; shares no code with srlib.metrics."""
    names = ("all", "thin_part", "body", "small_object")
    conf = {name: [[0] * NUM_CLASSES for _ in range(NUM_CLASSES)] for name in names}
    hallucinated = valid = 0
    for p_img, t_img, part_img in zip(pred.tolist(), target.tolist(), parts.tolist()):
        present = {v for row in t_img for v in row if v != IGNORE}
        small = reference_small_pixels(t_img, background, 0.01)
        for y, (p_row, t_row) in enumerate(zip(p_img, t_img)):
            for x, (p, t) in enumerate(zip(p_row, t_row)):
                if t == IGNORE:
                    continue
                valid += 1
                hallucinated += p not in present
                conf["all"][t][p] += 1
                if part_img[y][x]:
                    conf["thin_part"][t][p] += 1
                elif t != background:
                    conf["body"][t][p] += 1
                if (y, x) in small:
                    conf["small_object"][t][p] += 1
    correct = sum(conf["all"][c][c] for c in range(NUM_CLASSES))
    iou = reference_iou(conf["all"], lambda c, m: True)
    scores = {"confusion": conf["all"], "iou_per_class": iou, "miou": reference_mean(iou),
              "pixel_accuracy": correct / valid, "hallucination_rate": hallucinated / valid}
    for name in names[1:]:
        per_class = reference_iou(conf[name], lambda c, m: c != background and sum(m[c]) > 0)
        scores[f"{name}_iou_per_class"] = per_class
        scores[f"{name}_iou"] = reference_mean(per_class)
    return scores


@pytest.mark.parametrize("background", [None, 0])
def test_matches_slow_reference_on_random_data(background):
    pred, target, parts = random_split()
    metrics = SegmentationMetrics(NUM_CLASSES, background_index=background)
    metrics.update(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(parts))
    scores = metrics.compute()
    expected = reference_scores(pred, target, parts, background)
    assert metrics.confusion.tolist() == expected.pop("confusion")
    assert scores["iou_per_class"][-1] is None  # class absent from the split
    assert scores["small_object_iou"] is not None and scores["hallucination_rate"] > 0
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value), key


def test_accumulating_batches_equals_one_update_on_the_concatenation():
    pred, target, parts = (torch.from_numpy(a) for a in random_split(seed=1))
    whole = SegmentationMetrics(NUM_CLASSES, background_index=0)
    whole.update(pred, target, parts)
    batched = SegmentationMetrics(NUM_CLASSES, background_index=0)
    for start, stop in ((0, 1), (1, 5), (5, 8)):
        batched.update(pred[start:stop], target[start:stop], parts[start:stop])
    assert torch.equal(batched.confusion, whole.confusion)
    assert batched.compute() == whole.compute()
    batched.reset()
    assert batched.confusion.sum() == 0 and batched.compute()["miou"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_give_the_cpu_result():
    pred, target, parts = (torch.from_numpy(a) for a in random_split(seed=2))
    on_cpu, on_gpu = SegmentationMetrics(NUM_CLASSES), SegmentationMetrics(NUM_CLASSES)
    on_cpu.update(pred, target, parts)
    on_gpu.update(pred.cuda(), target.cuda(), parts.cuda())
    assert on_gpu.confusion.device.type == "cpu"
    assert on_gpu.compute() == on_cpu.compute()


# ---- bad input ----------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors():
    metrics = SegmentationMetrics(4)
    ok = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"target holds values \[-1, 7\]"):
        metrics.update(ok, torch.tensor([[[0, 7], [-1, IGNORE]]]))
    with pytest.raises(ValueError, match=r"pred holds values \[4, 255\]"):
        metrics.update(torch.tensor([[[0, 4], [255, 1]]]), ok)
    with pytest.raises(ValueError, match="integer class ids"):
        metrics.update(ok.float(), ok)
    with pytest.raises(ValueError, match="B x H x W"):
        metrics.update(ok[0], ok[0])
    with pytest.raises(ValueError, match="bool"):
        metrics.update(ok, ok, ok)
    metrics.update(ok, ok)
    with pytest.raises(ValueError, match="every batch"):
        metrics.update(ok, ok, ok.bool())
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationMetrics(1)
    with pytest.raises(ValueError, match="ignore_index 2"):
        SegmentationMetrics(4, ignore_index=2)
    with pytest.raises(ValueError, match="background_index 5"):
        SegmentationMetrics(4, background_index=5)
