"""The fallbacks of chapters 6-7 (``course/reference/ch06.py``, ``ch07.py`` and the package functions the check
cells import) pass their own exercises' tests: a learner who skips an exercise continues with a correct version."""

from __future__ import annotations

import types

import pytest
import torch

from course.checks import run_exercise_tests
from course.reference import ch06, ch07
from detector.assigner import TaskAlignedAssigner
from detector.boxes import make_points
from detector.losses import quality_focal_loss

NAMESPACES = {
    6: types.SimpleNamespace(**vars(ch06)),
    7: types.SimpleNamespace(**vars(ch07), quality_focal_loss_=quality_focal_loss),
}
EXERCISES = [f"6.{k}" for k in range(1, 7)] + [f"7.{k}" for k in range(1, 7)]


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_reference_passes_the_exercise_tests(exercise_id):
    results = run_exercise_tests(exercise_id, NAMESPACES[int(exercise_id.split(".")[0])])
    failures = [f"{name}: {detail}" for name, status, detail in results if status != "pass"]
    assert not failures, "\n".join(failures)


def test_dense_batched_assigner_equals_the_package():
    """``ch06.assign_batched`` (the bridge the chapter points to) agrees with ``TaskAlignedAssigner`` on a batch."""
    generator = torch.Generator().manual_seed(0)
    points, strides = make_points([(16, 16), (8, 8)], (8, 16))
    centres = torch.rand(3, 5, 2, generator=generator) * 128
    half = torch.rand(3, 5, 2, generator=generator) * 20 + 3
    gt_boxes = torch.cat((centres - half, centres + half), -1).clamp(0, 128)
    gt_labels = torch.randint(0, 4, (3, 5), generator=generator)
    gt_mask = torch.arange(5)[None] < torch.tensor([[5], [2], [0]])
    ltrb = strides[:, None] * (0.3 + 3 * torch.rand(3, len(points), 4, generator=generator))
    pred_boxes = torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), -1)
    pred_scores = torch.rand(3, len(points), 4, generator=generator)
    ours = ch06.assign_batched(pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes, gt_mask, 4)
    theirs = TaskAlignedAssigner(4)(pred_scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask, strides)
    for name in ("labels", "fg_mask", "gt_index"):
        assert torch.equal(ours[name], getattr(theirs, name)), name
    assert torch.allclose(ours["scores"], theirs.scores, atol=1e-6)
    assert torch.allclose(ours["boxes"], theirs.boxes)
