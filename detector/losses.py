"""The training signal: classification, box and objectness/IoU losses on assigned targets (Chapter 7).

:class:`DetectionLoss` runs the assigner on the model's (detached) predictions, then sums three terms, each
normalised by the sum of the soft target scores (clamped at 1, as in YOLOv8/PP-YOLOE):

- ``cls``: a loss of ``cls_logits`` towards the soft targets over all points: ``varifocal`` (Zhang et al. 2021,
  the default: the best of the three calibrated losses in ``benchmarks/bench_loss.py``), ``qfl`` (Quality Focal
  Loss, Li et al. 2020), plain ``bce`` — the three whose per-element minimum is at the soft target — or
  ``focal`` (Lin et al. 2017, torchvision's ``sigmoid_focal_loss``), whose minimum is not: with γ = 2,
  α = 0.25 a target of 0.3 is best met by p ≈ 0.12 (Chapter 7 tabulates it);
- ``box``: an IoU-family loss (DIoU default; GIoU, CIoU) between a positive's predicted box and its GT,
  weighted by its target score;
- ``obj``: BCE (or focal) of ``obj_logits`` towards the detached IoU of each positive's predicted box with its
  GT, and 0 for negatives: the head learns to predict the quality of its own box.

The IoU-family and focal losses are :mod:`torchvision.ops`. Everything is computed in float32 with autocast
off, so AMP training sees the same numbers.

``cls: bce_positives`` is the first notebook implementation's choice: BCE on the one-hot classes of the
positives only (negatives teach nothing about classes). The shipped config ``seed`` (``detector/configs/seed.yaml``)
holds that implementation's whole recipe: the per-level (FCOS) assigner, ``bce_positives``, DIoU, focal
objectness, weights cls/box/obj = 1/1/5.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from detector.assigner import AssignResult, PerLevelAssigner, TaskAlignedAssigner
from detector.boxes import aligned_box_iou, ltrb_to_xyxy, xyxy_to_ltrb
from detector.config import AssignerConfig, LossConfig
from detector.postprocess import HeadOutputs

# VarifocalNet, Zhang et al. 2021, Sec. 3.2: negatives are down-weighted by alpha · p^gamma, alpha = 0.75.
VARIFOCAL_ALPHA = 0.75
# Generalized Focal Loss, Li et al. 2020, Sec. 3.2: QFL's modulating exponent, beta = 2 (their best setting).
QFL_BETA = 2.0
BOX_LOSSES = {"diou": distance_box_iou_loss, "giou": generalized_box_iou_loss, "ciou": complete_box_iou_loss}
# Smallest predicted side distance the box loss sees, in pixels. softplus can underflow to exactly 0, and
# CIoU's aspect term atan(w / h) is NaN (value and gradient) at w = h = 0; far below any real box.
MIN_SIDE_PX = 1e-3


class LossOutput(NamedTuple):
    """Result of :class:`DetectionLoss`.

    Attributes:
        total: 0-dim float32, ``sum(components.values())``; backpropagate this.
        components: ``{"cls", "box", "obj"}`` weighted terms, detached (for logging).
        num_positives: 0-dim int64, positive points in the batch.
        num_unassigned_gts: 0-dim int64, real GTs that got no positive point.
        assignment: the assigner's result (targets per point), e.g. for assignment maps.
    """

    total: Tensor
    components: dict[str, Tensor]
    num_positives: Tensor
    num_unassigned_gts: Tensor
    assignment: AssignResult


def build_assigner(
    num_classes: int, config: LossConfig | AssignerConfig
) -> TaskAlignedAssigner | PerLevelAssigner:
    """The assigner (its ``kind``) of a loss config or of an assigner config."""
    assigner_config = config.assigner if isinstance(config, LossConfig) else config
    if assigner_config.kind == "per_level":
        return PerLevelAssigner(
            num_classes,
            center_radius=assigner_config.center_radius,
            memory_budget_mb=assigner_config.memory_budget_mb,
        )
    return TaskAlignedAssigner(
        num_classes,
        topk=assigner_config.topk,
        alpha=assigner_config.alpha,
        beta=assigner_config.beta,
        center_radius=assigner_config.center_radius,
        memory_budget_mb=assigner_config.memory_budget_mb,
    )


def varifocal_loss(
    logits: Tensor, targets: Tensor, alpha: float = VARIFOCAL_ALPHA, gamma: float = 2.0
) -> Tensor:
    """Varifocal loss (Zhang et al. 2021), elementwise.

    Args:
        logits: ``[...]`` float32 class logits.
        targets: ``[...]`` soft targets ``q`` in ``[0, 1]`` (the IoU-aware score; 0 for negatives).

    Returns:
        ``[...]``: ``BCE(p, q) · q`` where ``q > 0``, ``BCE(p, 0) · alpha · p^gamma`` elsewhere.
    """
    prob = logits.sigmoid()
    weight = torch.where(targets > 0, targets, alpha * prob.pow(gamma))
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight


def quality_focal_loss(
    logits: Tensor, targets: Tensor, beta: float = QFL_BETA, reduction: str = "none"
) -> Tensor:
    """Quality Focal Loss (Li et al. 2020, Generalized Focal Loss, Eq. 5), elementwise: ``|t - p|^beta · BCE(p, t)``.

    ``p = sigmoid(logits)``. The modulating factor vanishes exactly at ``p = t`` while ``BCE(p, t) > 0``, so the
    per-element minimum is at the soft target: the score learns the target, calibrated (unlike the focal loss).
    Negatives (``t = 0``) get ``p^beta · BCE(p, 0)``, the focal loss's down-weighting of easy negatives.

    Args:
        logits: ``[...]`` class logits (computed in float32 by the caller).
        targets: ``[...]`` soft targets in ``[0, 1]`` (0 for negatives).
        beta: the modulating exponent.
        reduction: ``"none"`` (``[...]``), ``"sum"`` or ``"mean"`` (``[]``).
    """
    modulation = (targets - logits.sigmoid()).abs().pow(beta)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * modulation
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    if reduction != "none":
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    return loss


def _positive_boxes_around_points(outputs: HeadOutputs, assigned: AssignResult) -> tuple[Tensor, Tensor]:
    """Predicted and target boxes ``[P, 4]`` of the positives, xyxy relative to each positive's point.

    IoU-family losses are translation invariant, so they are evaluated in each point's own frame: a box's
    width is ``l + r`` exactly, where in image coordinates ``(x + r) - (x - l)`` cancels to 0 for distances
    below the float32 spacing at ``x`` (3e-5 px at 300 px). Sides are clamped at :data:`MIN_SIDE_PX`.
    """
    fg_mask = assigned.fg_mask
    points = outputs.points.float().expand(fg_mask.shape[0], -1, -1)[fg_mask]  # [P, 2]
    origin = points.new_zeros(2)
    pred_ltrb = outputs.box_ltrb.float()[fg_mask].clamp(min=MIN_SIDE_PX)
    target_ltrb = xyxy_to_ltrb(points, assigned.boxes[fg_mask])
    return ltrb_to_xyxy(origin, pred_ltrb), ltrb_to_xyxy(origin, target_ltrb)


def _without_ignored(values: Tensor, assigned: AssignResult) -> Tensor:
    """``values [B, N, ...]`` without the points of crowd regions: ``[P, ...]``; as given when none is ignored."""
    return values if assigned.ignore_mask is None else values[~assigned.ignore_mask]


class DetectionLoss(nn.Module):
    """Assign targets, then ``total = w_cls · cls + w_box · box + w_obj · obj`` (Chapter 7).

    The assigner sees ``pred_scores = sigmoid(cls_logits)`` (objectness is not folded in; it is trained to
    predict IoU, not to rank the assignment) and the decoded boxes, both detached.

    Args:
        num_classes: ``C``.
        config: the loss section of the config.
    """

    def __init__(self, num_classes: int, config: LossConfig | None = None) -> None:
        super().__init__()
        config = config or LossConfig()
        self.num_classes = num_classes
        self.config = config
        self.assigner = build_assigner(num_classes, config)

    def forward(
        self, outputs: HeadOutputs, gt_labels: Tensor, gt_boxes: Tensor, gt_mask: Tensor
    ) -> LossOutput:
        """Loss of a batch.

        Args:
            outputs: ``cls_logits [B, N, C]``, ``box_ltrb [B, N, 4]`` (pixels), ``obj_logits [B, N, 1]``,
                ``points [N, 2]``, ``strides [N]`` (the model's ``DetectorOutput``); any float dtype.
            gt_labels: ``[B, M]`` int64.
            gt_boxes: ``[B, M, 4]`` xyxy pixels.
            gt_mask: ``[B, M]`` bool, False for padding.

        Returns:
            :class:`LossOutput`; finite and connected to the graph even when the batch has no positive.
        """
        with torch.autocast(device_type=outputs.cls_logits.device.type, enabled=False):
            cls_logits = outputs.cls_logits.float()
            obj_logits = outputs.obj_logits.float().squeeze(-1)  # [B, N]
            pred_boxes = ltrb_to_xyxy(outputs.points.float(), outputs.box_ltrb.float())  # [B, N, 4]
            assigned = self.assigner(
                cls_logits.detach().sigmoid(), pred_boxes.detach(), outputs.points.float(),
                gt_labels, gt_boxes.float(), gt_mask, outputs.strides.float(),
            )  # fmt: skip
            target_scores = assigned.scores  # [B, N, C]
            normaliser = target_scores.sum().clamp(min=1.0)
            fg_mask = assigned.fg_mask
            pred_local, target_local = _positive_boxes_around_points(outputs, assigned)
            terms = {
                "cls": self.cls_loss(cls_logits, assigned),
                "box": self.box_loss(pred_local, target_local, target_scores[fg_mask].sum(-1)),
                "obj": self.obj_loss(obj_logits, pred_boxes, assigned),
            }
            weights = {
                "cls": self.config.cls_weight,
                "box": self.config.box_weight,
                "obj": self.config.obj_weight,
            }
            weighted = {name: weights[name] * term / normaliser for name, term in terms.items()}
            total = weighted["cls"] + weighted["box"] + weighted["obj"]
        return LossOutput(
            total=total,
            components={name: value.detach() for name, value in weighted.items()},
            num_positives=fg_mask.sum(),
            num_unassigned_gts=assigned.num_unassigned_gts,
            assignment=assigned,
        )

    def cls_loss(self, cls_logits: Tensor, assigned: AssignResult) -> Tensor:
        """Summed classification loss ``[]`` of ``cls_logits [B, N, C]`` against ``assigned.scores``.

        Points of crowd regions (``assigned.ignore_mask``) are left out: neither positive nor negative.
        """
        config = self.config
        if config.cls == "bce_positives":  # seed: one-hot classes of the positives only
            fg_mask = assigned.fg_mask
            one_hot = F.one_hot(assigned.labels[fg_mask], self.num_classes + 1)[:, : self.num_classes].float()
            return F.binary_cross_entropy_with_logits(cls_logits[fg_mask], one_hot, reduction="sum")
        cls_logits, scores = (
            _without_ignored(cls_logits, assigned),
            _without_ignored(assigned.scores, assigned),
        )
        if config.cls == "focal":
            return sigmoid_focal_loss(
                cls_logits, scores, alpha=config.focal_alpha, gamma=config.focal_gamma, reduction="sum"
            )
        if config.cls == "qfl":
            return quality_focal_loss(cls_logits, scores, reduction="sum")
        if config.cls == "varifocal":
            return varifocal_loss(cls_logits, scores, gamma=config.focal_gamma).sum()
        return F.binary_cross_entropy_with_logits(cls_logits, scores, reduction="sum")  # "bce"

    def box_loss(self, pred_boxes: Tensor, target_boxes: Tensor, weights: Tensor) -> Tensor:
        """Summed IoU-family loss ``[]`` of the positives' ``pred_boxes [P, 4]`` vs ``target_boxes [P, 4]``.

        Both xyxy in one frame per row (:meth:`forward` passes them relative to each positive's point). Each term is weighted by the positive's target score ``weights [P]``; 0 (still in the graph) for
        ``P = 0``.
        """
        losses = BOX_LOSSES[self.config.box](pred_boxes, target_boxes, reduction="none")
        return (losses * weights).sum()

    def obj_loss(self, obj_logits: Tensor, pred_boxes: Tensor, assigned: AssignResult) -> Tensor:
        """Summed objectness loss ``[]``: ``obj_logits [B, N]`` towards the detached IoU of positives, 0 elsewhere."""
        with torch.no_grad():
            iou_targets = aligned_box_iou(pred_boxes, assigned.boxes) * assigned.fg_mask  # [B, N]
        obj_logits, iou_targets = (
            _without_ignored(obj_logits, assigned),
            _without_ignored(iou_targets, assigned),
        )
        if self.config.obj == "focal":
            return sigmoid_focal_loss(
                obj_logits,
                iou_targets,
                alpha=self.config.focal_alpha,
                gamma=self.config.focal_gamma,
                reduction="sum",
            )
        return F.binary_cross_entropy_with_logits(obj_logits, iou_targets, reduction="sum")
