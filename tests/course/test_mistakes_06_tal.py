"""Tests of Chapter 6's exercise tests: plausible wrong solutions must be caught with a diagnosis naming them."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "06_tal"

# (exercise, mistake in words, diagnosis regex, {definition: wrong version})
MISTAKES = [
    # 6.1 candidate_mask
    ("6.1", "a point on a side counts as inside", r"STRICTLY inside",
     {"candidate_mask": edit("ltrb.amin(dim=-1) > eps", "ltrb.amin(dim=-1) >= 0")}),
    ("6.1", "Euclidean distance for centre sampling", r"max-norm",
     {"candidate_mask": edit(".abs().amax(dim=-1)", ".pow(2).sum(dim=-1).sqrt()")}),
    ("6.1", "inside OR near the centre", r"&, not \|",
     {"candidate_mask": edit("return inside & (offset", "return inside | (offset")}),
    ("6.1", "radius in pixels, not strides", r"in strides",
     {"candidate_mask": edit("offset < center_radius * strides[None, :]", "offset < center_radius")}),
    ("6.1", "points first, GTs second", r"GTs first, points second",
     {"candidate_mask": edit("xyxy_to_ltrb(points[None, :, :], gt_boxes[:, None, :])",
                             "xyxy_to_ltrb(points[:, None, :], gt_boxes[None, :, :])")}),
    # 6.2 alignment_metric
    ("6.2", "exponents swapped", r"exponents are swapped",
     {"alignment_metric": edit("class_prob.pow(alpha) * iou.pow(beta)", "class_prob.pow(beta) * iou.pow(alpha)")}),
    ("6.2", "best class score instead of the GT's class", r"THE GT's class",
     {"alignment_metric": edit("pred_scores[:, gt_labels].T", "pred_scores.amax(1)[None].expand(len(gt_labels), -1)")}),
    ("6.2", "metric computed with gradient", r"gradients flow through the metric",
     {"alignment_metric": edit("with torch.no_grad():", "if True:")}),
    ("6.2", "IoU table transposed to [N, M]", r"\[M, N\]",
     {"alignment_metric": edit("box_iou(gt_boxes, pred_boxes)", "box_iou(pred_boxes, gt_boxes)")}),
    # 6.3 select_topk
    ("6.3", "top-k over all points, then filtered (mmdetection's order)", r"top-k ran over ALL points",
     {"select_topk": edit("key = torch.where(candidates, metric, -1.0)", "key = metric")}),
    ("6.3", "non-candidates kept when a GT has fewer than k", r"positives outside the GT",
     {"select_topk": edit("return chosen & candidates", "return chosen")}),
    ("6.3", "top-k along the GT axis", r"points axis",
     {"select_topk": edit("key.topk(k, dim=1)", "key.topk(k, dim=0)")}),
    ("6.3", "k not capped at the number of points", r"cannot exceed the number of points",
     {"select_topk": edit("k = min(topk, metric.shape[1])", "k = topk")}),
    # 6.4 resolve_conflicts
    ("6.4", "conflicts decided by the metric", r"resolved by metric instead of IoU",
     {"resolve_conflicts": edit("torch.where(positives, iou, -1.0)", "torch.where(positives, metric, -1.0)")}),
    ("6.4", "highest IoU over all GTs (YOLOv8/PP-YOLOE's convention)", r"did not select it",
     {"resolve_conflicts": edit("torch.where(positives, iou, -1.0).argmax(dim=0)", "iou.argmax(dim=0)")}),
    ("6.4", "no -1 for background", r"background: -1",
     {"resolve_conflicts": edit("return torch.where(positives.any(dim=0), best_gt, -1)", "return best_gt")}),
    ("6.4", "argmax over the points axis", r"GT axis",
     {"resolve_conflicts": edit("argmax(dim=0)", "argmax(dim=1)")}),
    # 6.5 soft_targets
    ("6.5", "raw metric, not normalised", r"not normalised",
     {"soft_targets": edit("point_score = (t * scale).sum(dim=0)", "point_score = t.sum(dim=0)")}),
    ("6.5", "normalised by the global maximum, not per GT", r"per GT",
     {"soft_targets": (edit("u.amax(dim=1, keepdim=True)", "u.amax()"), edit("t.amax(dim=1, keepdim=True)", "t.amax()"))}),
    ("6.5", "maxima over the whole row, not the final positives", r"final positives only",
     {"soft_targets": (edit("u.amax(dim=1", "iou.amax(dim=1"), edit("t.amax(dim=1", "metric.amax(dim=1"))}),
    ("6.5", "each positive's own IoU as its target", r"its own IoU",
     {"soft_targets": edit("point_score = (t * scale).sum(dim=0)", "point_score = u.sum(dim=0)")}),
    ("6.5", "best positive gets 1, not the GT's best IoU", r"best positive of each GT got 1",
     {"soft_targets": edit("scale = u.amax(dim=1, keepdim=True) /", "scale = 1.0 /")}),
    # 6.6 assign_image
    ("6.6", "background label -1 instead of num_classes", r"background label",
     {"assign_image": edit("labels = torch.full((len(points),), num_classes,", "labels = torch.full((len(points),), -1,")}),
    ("6.6", "center_radius not passed on", r"center_radius.*not passed on",
     {"assign_image": edit("candidate_mask(points, strides, gt_boxes, center_radius)",
                           "candidate_mask(points, strides, gt_boxes)")}),
    ("6.6", "alpha and beta not passed on", r"alpha.*not passed on",
     {"assign_image": edit("alignment_metric(pred_scores, pred_boxes, gt_labels, gt_boxes, alpha, beta)",
                           "alignment_metric(pred_scores, pred_boxes, gt_labels, gt_boxes)")}),
    ("6.6", "background points get GT 0's box", r"zeros for background",
     {"assign_image": edit("boxes = torch.zeros(len(points), 4)\n    boxes[fg_mask] = gt_boxes[gt_index[fg_mask]].float()",
                           "boxes = gt_boxes[gt_index.clamp(min=0)].float()")}),
    ("6.6", "topk not passed on", r"topk.*not passed on",
     {"assign_image": edit("select_topk(metric, candidates, topk)", "select_topk(metric, candidates)")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exercise_id", "mistake", "diagnosis", "wrong"),
    MISTAKES,
    ids=[f"{m[0]}-{m[1][:40]}" for m in MISTAKES],
)
def test_mistake_is_caught(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
