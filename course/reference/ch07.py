"""Chapter 7 (losses): reference implementations in the exercises' signatures, built on the package.

The focal, GIoU and DIoU losses are ``torchvision.ops`` and the Quality Focal Loss is
``detector.losses.quality_focal_loss``; what lives here adapts them where the exercise's signature or its
edge cases differ (the mean of an empty tensor, the IoU together with the union, the aggregator on a given
assignment).
"""

from __future__ import annotations

from torch import Tensor
from torchvision.ops import distance_box_iou_loss, generalized_box_iou_loss
from torchvision.ops import sigmoid_focal_loss as _torchvision_focal

from detector.assigner import AssignResult
from detector.boxes import aligned_box_iou
from detector.config import LossConfig
from detector.losses import DetectionLoss

# RetinaNet, Lin et al. 2017, Sec. 5.1.
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
EPS = 1e-7  # torchvision's eps in its IoU-family losses


def sigmoid_focal_loss_(
    logits: Tensor,
    targets: Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    reduction: str = "none",
) -> Tensor:
    """Exercise 7.1: torchvision's focal loss, with the mean of an empty tensor defined as 0 (in the graph)."""
    if reduction == "mean" and logits.numel() == 0:
        return 0.0 * logits.sum()
    return _torchvision_focal(logits, targets, alpha, gamma, reduction)


# Exercises 7.4 and 7.5: torchvision's losses have the exercises' signatures (the package uses them too).
giou_loss = generalized_box_iou_loss
diou_loss = distance_box_iou_loss


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def iou_and_union(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Exercise 7.3: elementwise ``iou [...]`` and ``union [...]`` of ``[..., 4]`` xyxy boxes, via ``aligned_box_iou``."""
    iou = aligned_box_iou(boxes1, boxes2, eps=0.0).nan_to_num(0.0)
    areas = _area(boxes1) + _area(boxes2)
    inter = iou * areas / (1 + iou)  # iou = inter / (areas - inter)
    union = areas - inter
    return inter / (union + eps), union


def detection_loss(
    cls_logits: Tensor,
    pred_boxes: Tensor,
    obj_logits: Tensor,
    assigned: AssignResult,
    weights: dict[str, float] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Exercise 7.6: the package's ``DetectionLoss`` terms (QFL / DIoU / BCE) on a given assignment.

    ``weights``: ``{"cls", "box", "obj"}``; the package's default weights when not given.
    """
    if weights is None:
        defaults = LossConfig()
        weights = {"cls": defaults.cls_weight, "box": defaults.box_weight, "obj": defaults.obj_weight}
    config = LossConfig(cls="qfl", box="diou", obj="bce", cls_weight=weights["cls"], box_weight=weights["box"],
                        obj_weight=weights["obj"])  # fmt: skip
    loss = DetectionLoss(cls_logits.shape[-1], config)
    fg_mask = assigned.fg_mask
    normaliser = assigned.scores.sum().clamp(min=1.0)
    terms = {
        "cls": loss.cls_loss(cls_logits, assigned),
        "box": loss.box_loss(pred_boxes[fg_mask], assigned.boxes[fg_mask], assigned.scores[fg_mask].sum(-1)),
        "obj": loss.obj_loss(obj_logits, pred_boxes, assigned),
    }
    terms = {name: weights[name] * value / normaliser for name, value in terms.items()}
    return terms["cls"] + terms["box"] + terms["obj"], terms
