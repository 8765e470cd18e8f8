"""Plausible wrong solutions of Chapter 10, each caught by the exercise tests with a diagnosis that names it."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "10_visualization"
CASES = [
    ("10.1", "colours by box index instead of class", r"class-2 box should be PALETTE\[2\]",
     {"draw_boxes": edit("colors = [PALETTE[int(label) % len(PALETTE)] for label in labels]",
                         "colors = [PALETTE[i % len(PALETTE)] for i in range(len(labels))]")}),
    ("10.1", "filled boxes", r"no fill",
     {"draw_boxes": edit("colors, width=2)", "colors, width=2, fill=True)")}),
    ("10.2", "every prediction shown, threshold ignored", r"keep only scores > score_thresh",
     {"gt_vs_prediction_panel": edit('keep = prediction["scores"] > score_thresh', 'keep = prediction["scores"] >= 0')}),
    ("10.2", "panels swapped", r"left panel",
     {"gt_vs_prediction_panel": edit("fig, (left, right) = plt.subplots", "fig, (right, left) = plt.subplots")}),
    ("10.3", "logits given to the assigner", r"sigmoid\(cls_logits\)",
     {"assigned_points": edit(".float().sigmoid()", ".float()")}),
    ("10.3", "distances given to the assigner instead of boxes", r"ltrb_to_xyxy",
     {"assigned_points": edit("ltrb_to_xyxy(outputs.points, outputs.box_ltrb.detach().float())",
                              "outputs.box_ltrb.detach().float()")}),
    ("10.4", "score threshold not applied", r"score 0\.1 < 0\.25",
     {"error_breakdown": edit('keep = prediction["scores"] > score_thresh', 'keep = prediction["scores"] >= 0')}),
    ("10.4", "a true positive of any class", r"wrong_class",
     {"error_breakdown": edit("same_class[k] & ~matched", "~matched")}),
    ("10.5", "pairs visited in score order, not by IoU", r"by decreasing IoU",
     {"confusion_matrix": edit("order = iou[pred_index, gt_index].argsort(descending=True, stable=True)",
                               "order = torch.arange(len(pred_index))")}),
    ("10.5", "class-aware matching", r"match regardless of class",
     {"confusion_matrix": edit("pred_index, gt_index = (iou >= iou_thresh).nonzero(as_tuple=True)",
                               "pred_index, gt_index = ((iou >= iou_thresh) & (labels[:, None] == gt_labels[None]))"
                               ".nonzero(as_tuple=True)")}),
]  # fmt: skip


@pytest.mark.parametrize(("exercise_id", "mistake", "diagnosis", "wrong"), CASES, ids=[c[1] for c in CASES])
def test_mistake_is_caught(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
