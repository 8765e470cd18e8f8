"""Chapter 6 (Task-Aligned Assigner): reference implementations in the exercises' one-image signatures.

Each function runs the package's batched assigner (``detector.assigner``) on a batch of one image, so the check
cells fall back to the code that trains the detector, never to a copy of the answer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from detector.assigner import TOOD_ALPHA, TOOD_BETA, TOOD_TOPK, TaskAlignedAssigner, _select_topk
from detector.assigner import candidate_mask as _candidate_mask_batched
from detector.boxes import aligned_box_iou, xyxy_to_ltrb

RESULT_KEYS = ("labels", "boxes", "scores", "fg_mask", "gt_index")


def _all_real(num_gts: int) -> Tensor:
    """``gt_mask [1, M]`` of one image whose GTs are all real (no padding)."""
    return torch.ones(1, num_gts, dtype=torch.bool)


def candidate_mask(
    points: Tensor, strides: Tensor, gt_boxes: Tensor, center_radius: float | None = None, eps: float = 1e-9
) -> Tensor:
    """Exercise 6.1: ``[M, N]`` bool, points strictly inside each GT (and near its centre with ``center_radius``)."""
    return _candidate_mask_batched(
        points, gt_boxes[None], _all_real(len(gt_boxes)), strides, center_radius, eps
    )[0]


def alignment_metric(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    alpha: float = TOOD_ALPHA,
    beta: float = TOOD_BETA,
) -> tuple[Tensor, Tensor]:
    """Exercise 6.2: ``metric [M, N]`` (``s^alpha · IoU^beta``) and ``iou [M, N]``, without gradient."""
    with torch.no_grad():
        iou = aligned_box_iou(gt_boxes[:, None, :], pred_boxes[None, :, :]).clamp(min=0)
        return pred_scores[:, gt_labels].T.pow(alpha) * iou.pow(beta), iou


def select_topk(metric: Tensor, candidates: Tensor, topk: int = TOOD_TOPK) -> Tensor:
    """Exercise 6.3: ``[M, N]`` bool, each GT's ``min(topk, #candidates)`` candidates of largest metric."""
    return _select_topk(torch.where(candidates, metric, -1.0)[None], topk)[0]


def resolve_conflicts(positives: Tensor, metric: Tensor, iou: Tensor) -> Tensor:
    """Exercise 6.4: ``gt_index [N]``, the selecting GT of highest IoU (lower index on ties), ``-1`` for none."""
    del metric  # TOOD's rule decides by IoU; the argument is part of the exercise's signature
    num_gts, num_points = positives.shape
    if num_gts == 0:
        return torch.full((num_points,), -1, dtype=torch.int64)
    best = torch.where(positives, iou, -1.0).argmax(0)
    return torch.where(positives.any(0), best, -1)


def soft_targets(
    gt_index: Tensor, metric: Tensor, iou: Tensor, gt_labels: Tensor, num_classes: int, eps: float = 1e-9
) -> Tensor:
    """Exercise 6.5: ``[N, C]``, ``t · max IoU / (max t + eps)`` over each GT's final positives, at its class."""
    num_gts = metric.shape[0]
    final = gt_index[None, :] == torch.arange(num_gts)[:, None]  # [M, N]
    best_iou = torch.where(final, iou, 0.0).amax(1, keepdim=True) if num_gts else iou.new_zeros(0, 1)
    best_metric = torch.where(final, metric, 0.0).amax(1, keepdim=True) if num_gts else iou.new_zeros(0, 1)
    score = torch.where(final, metric * best_iou / (best_metric + eps), 0.0).sum(0)  # [N]
    out = torch.zeros(len(gt_index), num_classes)
    foreground = gt_index >= 0
    out[foreground, gt_labels[gt_index[foreground]]] = score[foreground]
    return out


def assign_image(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    points: Tensor,
    strides: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    num_classes: int,
    topk: int = TOOD_TOPK,
    alpha: float = TOOD_ALPHA,
    beta: float = TOOD_BETA,
    center_radius: float | None = None,
) -> dict[str, Tensor]:
    """Exercise 6.6: the package's :class:`TaskAlignedAssigner` on one image, as a dict of ``[N, ...]`` targets."""
    assigner = TaskAlignedAssigner(
        num_classes, topk=topk, alpha=alpha, beta=beta, center_radius=center_radius
    )
    out = assigner(
        pred_scores[None], pred_boxes[None], points, gt_labels[None], gt_boxes[None], _all_real(len(gt_labels)),
        strides,
    )  # fmt: skip
    return {name: getattr(out, name)[0] for name in RESULT_KEYS}


def assign_batched(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    points: Tensor,
    strides: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    gt_mask: Tensor,
    num_classes: int,
    topk: int = TOOD_TOPK,
    alpha: float = TOOD_ALPHA,
    beta: float = TOOD_BETA,
    center_radius: float | None = None,
    eps: float = 1e-9,
) -> dict[str, Tensor]:
    """Rules 1-5 densely on ``[B, M, N]`` (images × GTs × points), the bridge between Exercise 6.6 and the package.

    Read it after solving Chapter 6: every rule of ``assign_image`` becomes one tensor operation over the points
    axis (rules 1-3, 5) or the GT axis (rule 4). Padded GTs (``gt_mask [B, M]`` False) are masked out.

    Returns:
        ``assign_image``'s dict with a leading ``B`` axis: ``labels [B, N]``, ``boxes [B, N, 4]``,
        ``scores [B, N, C]``, ``fg_mask [B, N]``, ``gt_index [B, N]``.
    """
    batch, num_points, _ = pred_scores.shape
    num_gts = gt_labels.shape[1]
    if num_gts == 0:
        return {
            "labels": torch.full((batch, num_points), num_classes),
            "boxes": torch.zeros(batch, num_points, 4),
            "scores": torch.zeros(batch, num_points, num_classes),
            "fg_mask": torch.zeros(batch, num_points, dtype=torch.bool),
            "gt_index": torch.full((batch, num_points), -1),
        }
    # rule 1: [B, M, N, 4] distances to the sides → [B, M, N] candidates of real GTs
    ltrb = xyxy_to_ltrb(points[None, None], gt_boxes[:, :, None, :])
    candidates = (ltrb.amin(-1) > eps) & gt_mask[:, :, None]
    if center_radius is not None:
        centres = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2
        candidates &= (points[None, None] - centres[:, :, None]).abs().amax(-1) < center_radius * strides
    # rule 2: IoU [B, M, N] and the probability of each GT's class at each point, gathered to [B, M, N]
    iou = aligned_box_iou(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :]).clamp(min=0)
    labels_safe = gt_labels.clamp(0, num_classes - 1)  # padded GTs may hold any label
    class_prob = pred_scores.gather(2, labels_safe[:, None, :].expand(-1, num_points, -1)).transpose(1, 2)
    metric = class_prob.pow(alpha) * iou.pow(beta)
    # rule 3: top-k along the points axis, among candidates only
    key = torch.where(candidates, metric, -1.0)
    best = key.topk(min(topk, num_points), dim=2).indices
    positives = torch.zeros_like(candidates).scatter_(2, best, True) & candidates
    # rule 4: along the GT axis, among the GTs that selected the point
    best_gt = torch.where(positives, iou, -1.0).argmax(1)  # [B, N]
    fg_mask = positives.any(1)
    final = positives & (torch.arange(num_gts)[None, :, None] == best_gt[:, None, :])
    # rule 5: per-GT maxima along the points axis
    t, u = metric * final, iou * final
    point_score = (t * u.amax(2, keepdim=True) / (t.amax(2, keepdim=True) + eps)).sum(1)  # [B, N]
    labels = torch.where(fg_mask, gt_labels.gather(1, best_gt), num_classes)
    boxes = gt_boxes.gather(1, best_gt[..., None].expand(-1, -1, 4)) * fg_mask[..., None]
    scores = torch.zeros(batch, num_points, num_classes + 1)
    scores.scatter_(2, labels[..., None], (point_score * fg_mask)[..., None])
    return {
        "labels": labels,
        "boxes": boxes,
        "scores": scores[..., :num_classes],
        "fg_mask": fg_mask,
        "gt_index": torch.where(fg_mask, best_gt, -1),
    }
