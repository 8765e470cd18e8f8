"""Tests of Chapter 7's exercise tests: plausible wrong solutions must be caught with a diagnosis naming them."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "07_losses"
NAIVE_BCE = "-(targets * logits.sigmoid().log() + (1 - targets) * (1 - logits.sigmoid()).log())"

# (exercise, mistake in words, diagnosis regex, {definition: wrong version})
MISTAKES = [
    # 7.1 sigmoid_focal_loss_
    ("7.1", "plain BCE, no modulating factor", r"plain BCE",
     {"sigmoid_focal_loss_": (edit("loss = ce * (1 - p_t) ** gamma", "loss = ce"),
                              edit("if alpha >= 0:", "if False:"))}),
    ("7.1", "(1 - p) instead of (1 - p_t)", r"\(1 - p_t\)",
     {"sigmoid_focal_loss_": edit("loss = ce * (1 - p_t) ** gamma", "loss = ce * (1 - prob) ** gamma")}),
    ("7.1", "alpha weighting forgotten", r"α weighting is missing",
     {"sigmoid_focal_loss_": edit("if alpha >= 0:", "if False:")}),
    ("7.1", "alpha on the negative side", r"α weights the positive side",
     {"sigmoid_focal_loss_": edit("(alpha * targets + (1 - alpha) * (1 - targets))",
                                  "((1 - alpha) * targets + alpha * (1 - targets))")}),
    ("7.1", "BCE as log(sigmoid(x))", r"log\(sigmoid\(x\)\)",
     {"sigmoid_focal_loss_": edit('F.binary_cross_entropy_with_logits(logits, targets, reduction="none")', NAIVE_BCE)}),
    # 7.2 quality_focal_loss_
    ("7.2", "signed (t - p)^beta", r"ABSOLUTE distance",
     {"quality_focal_loss_": edit("(targets - logits.sigmoid()).abs().pow(beta)", "(targets - logits.sigmoid()).pow(beta)")}),
    ("7.2", "the focal loss's factor", r"focal loss's factor",
     {"quality_focal_loss_": edit(
         "(targets - logits.sigmoid()).abs().pow(beta)",
         "(1 - (logits.sigmoid() * targets + (1 - logits.sigmoid()) * (1 - targets))).pow(beta)")}),
    ("7.2", "BCE against the hard label", r"hard label",
     {"quality_focal_loss_": edit("F.binary_cross_entropy_with_logits(logits, targets,",
                                  "F.binary_cross_entropy_with_logits(logits, (targets > 0).float(),")}),
    ("7.2", "the negatives' factor p^beta for every target", r"negative \(t = 0\) only",
     {"quality_focal_loss_": edit("(targets - logits.sigmoid()).abs().pow(beta)", "logits.sigmoid().pow(beta)")}),
    ("7.2", "beta fixed at 2", r"beta argument",
     {"quality_focal_loss_": edit(".abs().pow(beta)", ".abs().pow(2.0)")}),
    ("7.2", "BCE as log(sigmoid(x))", r"log\(sigmoid\(x\)\)",
     {"quality_focal_loss_": edit('F.binary_cross_entropy_with_logits(logits, targets, reduction="none")', NAIVE_BCE)}),
    # 7.3 iou_and_union
    ("7.3", "overlap sides multiplied before clamping", r"clamp the overlap width and height",
     {"iou_and_union": edit("overlap.clamp(min=0).prod(dim=-1)", "overlap.prod(dim=-1).clamp(min=0)")}),
    ("7.3", "union counts the overlap twice", r"union counts the overlap twice",
     {"iou_and_union": edit("union = area1 + area2 - inter", "union = area1 + area2")}),
    ("7.3", "no eps in the division", r"NaN IoU",
     {"iou_and_union": edit("inter / (union + eps)", "inter / union")}),
    ("7.3", "pairwise instead of elementwise", r"elementwise",
     {"iou_and_union": "def iou_and_union(boxes1, boxes2, eps=EPS):\n"
                       "    iou = box_iou(boxes1.reshape(-1, 4), boxes2.reshape(-1, 4))\n"
                       "    return iou, iou\n"}),
    # 7.4 giou_loss
    ("7.4", "plain IoU loss", r"plain IoU loss",
     {"giou_loss": edit("1 - iou + (area_c - union) / (area_c + eps)", "1 - iou")}),
    ("7.4", "enclosing box built like the intersection", r"enclosing box",
     {"giou_loss": edit("enclosing = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(\n"
                        "        boxes1[..., :2], boxes2[..., :2]\n    )",
                        "enclosing = torch.minimum(boxes1[..., 2:], boxes2[..., 2:]) - torch.maximum(\n"
                        "        boxes1[..., :2], boxes2[..., :2]\n    )")}),
    ("7.4", "penalty divided by the union", r"divided by \|C\|",
     {"giou_loss": edit("(area_c - union) / (area_c + eps)", "(area_c - union) / (union + eps)")}),
    # 7.5 diou_loss
    ("7.5", "distance over diagonal, not squared", r"SQUARED",
     {"diou_loss": edit("centre_offset.pow(2).sum(dim=-1) / diagonal_sq",
                        "centre_offset.pow(2).sum(dim=-1).sqrt() / diagonal_sq.sqrt()")}),
    ("7.5", "half sizes instead of centres", r"centre of a box",
     {"diou_loss": edit("(boxes1[..., :2] + boxes1[..., 2:]) / 2 - (boxes2[..., :2] + boxes2[..., 2:]) / 2",
                        "(boxes1[..., 2:] - boxes1[..., :2]) / 2 - (boxes2[..., 2:] - boxes2[..., :2]) / 2")}),
    ("7.5", "diagonal of the first box instead of the enclosing one", r"enclosing BOTH",
     {"diou_loss": edit("diagonal_sq = enclosing.pow(2).sum(dim=-1) + eps",
                        "diagonal_sq = (boxes1[..., 2:] - boxes1[..., :2]).pow(2).sum(dim=-1) + eps")}),
    # 7.6 detection_loss
    ("7.6", "normalised by the number of positives", r"number of positives",
     {"detection_loss": edit("normaliser = scores.sum().clamp(min=1.0)", "normaliser = fg_mask.sum().clamp(min=1)")}),
    ("7.6", "not normalised", r"not normalised",
     {"detection_loss": edit("normaliser = scores.sum().clamp(min=1.0)", "normaliser = 1.0")}),
    ("7.6", "box loss not weighted by the target score", r"box loss is not weighted",
     {"detection_loss": edit(") * box_weight", ")")}),
    ("7.6", "objectness target not detached", r"detached",
     {"detection_loss": edit("with torch.no_grad():", "if True:")}),
    ("7.6", "objectness target 1 instead of the IoU", r"objectness target",
     {"detection_loss": edit("aligned_box_iou(pred_boxes, assigned.boxes) * fg_mask", "fg_mask.float()")}),
    ("7.6", "objectness loss over the positives only", r"obj_logits at the negatives",
     {"detection_loss": edit('F.binary_cross_entropy_with_logits(obj_logits, iou_target, reduction="sum")',
                             'F.binary_cross_entropy_with_logits(obj_logits[fg_mask], iou_target[fg_mask], reduction="sum")')}),
    ("7.6", "classification loss over the positives only", r"cls_logits at the negatives",
     {"detection_loss": edit('quality_focal_loss_(cls_logits, scores, reduction="sum")',
                             'quality_focal_loss_(cls_logits[fg_mask], scores[fg_mask], reduction="sum")')}),
    ("7.6", "focal loss instead of QFL", r"Quality Focal Loss",
     {"detection_loss": edit('quality_focal_loss_(cls_logits, scores, reduction="sum")',
                             'sigmoid_focal_loss_(cls_logits, scores, reduction="sum")')}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exercise_id", "mistake", "diagnosis", "wrong"),
    MISTAKES,
    ids=[f"{m[0]}-{m[1][:40]}" for m in MISTAKES],
)
def test_mistake_is_caught(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
