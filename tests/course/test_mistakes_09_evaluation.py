"""Plausible wrong solutions of Chapter 9, each caught by the exercise tests with a diagnosis that names it."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "09_evaluation"
FIRST_GT_WINS = "best = torch.where(allowed, iou[k], torch.full_like(iou[k], -1.0)).argmax()"
CASES = [
    ("9.1", "intersection not clamped at 0", r"clamp the intersection",
     {"box_iou": edit(".clamp(min=0)", "")}),
    ("9.1", "union without subtracting the intersection", r"union = area1 \+ area2 - intersection",
     {"box_iou": edit("area1[:, None] + area2[None, :] - inter", "area1[:, None] + area2[None, :]")}),
    ("9.2", "suppression at IoU equal to the threshold", r"suppress only IoU > threshold",
     {"nms": edit("overlap <= iou_threshold", "overlap < iou_threshold")}),
    ("9.2", "kept indices returned in input order", r"wrong order: return them best first",
     {"nms": edit("torch.stack(keep) if keep", "torch.stack(keep).sort().values if keep")}),
    ("9.3", "the first GT wins an exact IoU tie (argmax)", r"LATER GT",
     {"match_detections": edit("best = (allowed & (iou[k] == best_iou)).nonzero()[-1, 0]", FIRST_GT_WINS)}),
    ("9.3", "a crowd region used up by its first detection", r"crowd region may absorb",
     {"match_detections": edit("(~taken | crowd)", "~taken")}),
    ("9.3", "no preference for normal GTs over ignored ones", r"prefer the normal GT",
     {"match_detections": edit("(free & ~gt_ignore, free & gt_ignore)", "(free,)")}),
    ("9.3", "a GT may be matched twice", r"a GT can be matched only once",
     {"match_detections": edit("matched_gt[k], taken[best] = best, True", "matched_gt[k] = best")}),
    ("9.4", "no sorting by score", r"sort first",
     {"precision_recall": edit("is_tp[order]", "is_tp")}),
    ("9.4", "precision and recall swapped", r"precision_k = TP_k / k",
     {"precision_recall": edit("true_positives / seen, true_positives / num_gt",
                               "true_positives / num_gt, true_positives / seen")}),
    ("9.5", "raw precision sampled, no envelope", r"raw precision was sampled",
     {"interpolated_ap": edit("envelope = precision.flip(0).cummax(0).values.flip(0)", "envelope = precision")}),
    ("9.5", "unreached recall thresholds not counted as 0", r"contribute precision 0",
     {"interpolated_ap": edit("reached, envelope[index.clamp(max=len(recall) - 1)], torch.zeros_like(RECALL_THRESHOLDS)",
                              "reached, envelope[index.clamp(max=len(recall) - 1)], envelope[-1].expand(101)")}),
    ("9.6", "no cap of 100 detections per image", r"keep only the 100 best",
     {"coco_map": edit(".indices[:MAX_DETECTIONS]", ".indices")}),
    ("9.6", "unmatched detections outside a size range count as false positives", r"only the size ranges differ",
     {"coco_map": edit("ignored = ignored | ((matched < 0) & ((det_area < low) | (det_area > high)))", "pass")}),
    ("9.6", "first GT wins ties inside coco_map's matching", r"LATER GT",
     {"match_detections": edit("best = (allowed & (iou[k] == best_iou)).nonzero()[-1, 0]", FIRST_GT_WINS)}),
]  # fmt: skip


@pytest.mark.parametrize(("exercise_id", "mistake", "diagnosis", "wrong"), CASES, ids=[c[1] for c in CASES])
def test_mistake_is_caught(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
