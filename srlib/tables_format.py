FAILURE_METRICS = {
    "thin_part_iou": "thin-part IoU",
    "body_iou": "body IoU",
    "small_object_iou": "small-object IoU",
    "hallucination_rate": "hallucinated-class rate",
}
METRIC_NAMES = {"miou": "mIoU", "pixel_accuracy": "pixel accuracy", **FAILURE_METRICS}  # display names of record metrics
