"""Chapter 10 (visualisation and error analysis): reference implementations in the exercises' signatures.

Drawing and the confusion matrix are ``detector.visualize``'s own functions (same signatures); these wrap the
package where the exercise's signature or return value differs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from torch import Tensor

from detector.data import pad_targets
from detector.losses import DetectionLoss
from detector.visualize import FP_TYPES, draw_detections
from detector.visualize import error_breakdown as package_error_breakdown


def gt_vs_prediction_panel(
    image: Tensor, prediction: dict, target: dict, class_names: list[str], score_thresh: float = 0.25
) -> Figure:
    """Exercise 10.2: GT (left) and predictions with score > ``score_thresh`` (right), drawn with the package's
    ``draw_detections``; ``image uint8 [3, H, W]``."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
    keep = prediction["scores"] > score_thresh
    gt_drawn = draw_detections(image, target["boxes"], target["labels"], None, class_names)
    drawn = draw_detections(
        image, prediction["boxes"][keep], prediction["labels"][keep], prediction["scores"][keep], class_names
    )
    for ax, picture in ((left, gt_drawn), (right, drawn)):
        ax.imshow(picture.permute(1, 2, 0).numpy())
        ax.set_axis_off()
    return fig


def assigned_points(outputs, target: dict, assigner) -> tuple[Tensor, Tensor, Tensor]:
    """Exercise 10.3: the positive points of one image as the package's loss assigns them with ``assigner``
    (``LossOutput.assignment``): ``points [P, 2]``, ``gt_index [P]``, ``strides [P]``."""
    criterion = DetectionLoss(outputs.cls_logits.shape[-1])
    criterion.assigner = assigner
    assignment = criterion(outputs, *pad_targets([target])).assignment
    positive = assignment.fg_mask[0]
    return outputs.points[positive], assignment.gt_index[0, positive], outputs.strides[positive]


def error_breakdown(
    predictions: list[dict], targets: list[dict], iou_thresh: float = 0.5, score_thresh: float = 0.25
) -> dict:
    """Exercise 10.4: ``detector.visualize.error_breakdown`` reduced to the exercise's totals
    ``{"tp": int, "fp": {type: int}, "fn": {size: int}}``."""
    num_classes = 1 + max(
        (int(t["labels"].max()) for t in [*predictions, *targets] if len(t["labels"])), default=0
    )
    full = package_error_breakdown(predictions, targets, iou_thresh, score_thresh, num_classes=num_classes)
    return {
        "tp": full["tp"],
        "fp": {kind: full["fp"][kind]["total"] for kind in FP_TYPES},
        "fn": dict(full["fn"]["by_size"]),
    }
