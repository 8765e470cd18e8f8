"""Exercise tests of Chapter 10 (visualisation and error analysis). Run with ``make check CH=10``.

References: pixel colours from ``detector.visualize.PALETTE``, the learner's own ``draw_boxes`` for the panel, the
package's loss assignment (``DetectionLoss(...).assignment``), ``detector.visualize.error_breakdown`` and
``confusion_matrix``, and hand-built cases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from matplotlib import colors as mcolors

from course.checks import exercise, expect, expect_shape
from detector.boxes import make_points
from detector.data import pad_targets
from detector.losses import DetectionLoss
from detector.model import DetectorOutput
from detector.visualize import PALETTE, confusion_matrix, error_breakdown

CHAPTER = "10_visualization"
FP_TYPES = ("wrong_class", "localization", "duplicate", "background")


@contextlib.contextmanager
def closing_figures() -> Iterator[None]:
    """Close the pyplot figures a test creates (a notebook would display them all at the end of the cell)."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)


def _rgb(color: str) -> list[int]:
    return [round(255 * c) for c in mcolors.to_rgb(color)]


# Exercise 10.1 · draw_boxes --------------------------------------------------------------------------------
@exercise("10.1")
def test_draw_boxes_class_colours_on_the_outline(impl):
    image = torch.full((3, 100, 100), 128, dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 10.0, 90.0, 90.0], [30.0, 40.0, 60.0, 80.0]])
    labels = torch.tensor([2, 13])  # 13 wraps around the palette: 13 % 10 = 3
    original = image.clone()
    drawn = impl.draw_boxes(
        image, boxes, labels, torch.tensor([0.9, 0.5]), ["a", "b", "c"] + [str(i) for i in range(3, 14)]
    )
    expect_shape(drawn, (3, 100, 100), "drawn image")
    expect(drawn.dtype == torch.uint8, f"return a uint8 image, got {drawn.dtype}")
    expect(torch.equal(image, original), "the input image was modified: return a new image")
    left_edge = drawn[:, 75, 10].tolist()  # the middle of the left side, below the caption
    expect(left_edge == _rgb(PALETTE[2]),
           f"the outline of a class-2 box should be PALETTE[2] = {PALETTE[2]} {_rgb(PALETTE[2])}, got {left_edge}")  # fmt: skip
    bottom_edge = drawn[:, 79, 45].tolist()
    expect(bottom_edge == _rgb(PALETTE[3]),
           f"label 13 should cycle to PALETTE[13 % len(PALETTE)] = {_rgb(PALETTE[3])}, got {bottom_edge}")  # fmt: skip
    expect(drawn[:, 60, 80].tolist() == [128, 128, 128], "the inside of a box must stay unchanged (no fill)")


@exercise("10.1")
def test_draw_boxes_without_boxes_or_scores(impl):
    image = torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    empty = impl.draw_boxes(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    expect(
        isinstance(empty, torch.Tensor) and torch.equal(empty, image),
        "no boxes: the image comes back unchanged",
    )
    drawn = impl.draw_boxes(image, torch.tensor([[5.0, 5.0, 30.0, 35.0]]), torch.tensor([0]))
    expect(
        drawn[:, 30, 5].tolist() == _rgb(PALETTE[0]),
        "without scores and names, boxes are still drawn in class colour",
    )


# Exercise 10.2 · gt_vs_prediction_panel -------------------------------------------------------------------
@exercise("10.2")
def test_panel_shows_gt_left_and_confident_predictions_right(impl):
    image = torch.full((3, 80, 80), 90, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 70.0]]), "labels": torch.tensor([0])}
    prediction = {
        "boxes": torch.tensor([[12.0, 8.0, 52.0, 68.0], [40.0, 40.0, 75.0, 75.0]]),
        "scores": torch.tensor([0.8, 0.1]),
        "labels": torch.tensor([0, 1]),
    }
    names = ["enemy", "enemy-head"]
    with closing_figures():
        fig = impl.gt_vs_prediction_panel(image, prediction, target, names, 0.25)
        axes = [ax for ax in fig.axes if ax.get_images()]
        expect(len(axes) == 2, f"two panels with an image each, found {len(axes)}")
        left, right = (np.asarray(ax.get_images()[0].get_array()) for ax in axes)
    expected_left = (
        impl.draw_boxes(image, target["boxes"], target["labels"], None, names).permute(1, 2, 0).numpy()
    )
    keep = torch.tensor([True, False])
    expected_right = impl.draw_boxes(image, prediction["boxes"][keep], prediction["labels"][keep],
                                     prediction["scores"][keep], names).permute(1, 2, 0).numpy()  # fmt: skip
    everything = impl.draw_boxes(
        image, prediction["boxes"], prediction["labels"], prediction["scores"], names
    )
    expect(
        left.shape == (80, 80, 3), f"show the image as [H, W, 3] (image.permute(1, 2, 0)), got {left.shape}"
    )
    expect(
        np.array_equal(left, expected_left),
        "left panel: draw_boxes(image, GT boxes, GT labels, None, class_names)",
    )
    expect(not np.array_equal(right, everything.permute(1, 2, 0).numpy()),
           "the right panel shows a prediction with score 0.1: keep only scores > score_thresh")  # fmt: skip
    expect(np.array_equal(right, expected_right),
           "right panel: draw_boxes of the predictions with score > score_thresh, with their scores")  # fmt: skip


# Exercise 10.3 · assigned_points ---------------------------------------------------------------------------
def _outputs(seed: int = 0, size: int = 64, num_classes: int = 2) -> DetectorOutput:
    generator = torch.Generator().manual_seed(seed)
    points, strides = make_points([(size // s, size // s) for s in (8, 16, 32)], [8, 16, 32])
    n = len(points)
    return DetectorOutput(
        cls_logits=torch.randn(1, n, num_classes, generator=generator),
        box_ltrb=torch.rand(1, n, 4, generator=generator) * 24 + 2,
        obj_logits=torch.randn(1, n, 1, generator=generator),
        points=points,
        strides=strides,
    )


@exercise("10.3")
def test_assigned_points_match_the_loss_assignment(impl):
    from detector.assigner import TaskAlignedAssigner

    outputs = _outputs()
    target = {
        "boxes": torch.tensor([[4.0, 6.0, 40.0, 58.0], [36.0, 2.0, 62.0, 30.0]]),
        "labels": torch.tensor([0, 1]),
    }
    points, gt_index, strides = impl.assigned_points(outputs, target, TaskAlignedAssigner(2))
    assignment = DetectionLoss(2)(outputs, *pad_targets([target])).assignment
    positive = assignment.fg_mask[0]
    expect(isinstance(points, torch.Tensor) and points.ndim == 2 and points.shape[1] == 2,
           f"points: a [P, 2] tensor, got {getattr(points, 'shape', type(points))}")  # fmt: skip
    boxes = target["boxes"][gt_index]
    inside = (
        (points[:, 0] > boxes[:, 0])
        & (points[:, 0] < boxes[:, 2])
        & (points[:, 1] > boxes[:, 1])
        & (points[:, 1] < boxes[:, 3])
    )
    expect(bool(inside.all()), "some positive points lie outside the GT they are assigned to: return the points of "
                               "fg_mask and the gt_index of the same points")  # fmt: skip
    expect(len(points) == int(positive.sum()),
           f"{len(points)} positives, the loss's assignment has {int(positive.sum())}: pred_scores must be "
           "sigmoid(cls_logits) and pred_boxes the decoded xyxy boxes ltrb_to_xyxy(points, box_ltrb)")  # fmt: skip
    expect(torch.equal(points, outputs.points[positive]) and torch.equal(gt_index, assignment.gt_index[0, positive]),
           "the positive points or their GT indices differ from DetectionLoss(...).assignment: the assigner wants "
           "what the loss gives it, class probabilities sigmoid(cls_logits) and decoded boxes "
           "ltrb_to_xyxy(points, box_ltrb), both detached")  # fmt: skip
    expect(torch.equal(strides, outputs.strides[positive]), "strides: the strides of the positive points")


@exercise("10.3")
def test_assigned_points_of_an_image_without_gt(impl):
    from detector.assigner import TaskAlignedAssigner

    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    points, gt_index, strides = impl.assigned_points(_outputs(seed=1), empty, TaskAlignedAssigner(2))
    expect_shape(points, (0, 2), "positive points of an image without GT")
    expect_shape(gt_index, (0,), "GT indices of an image without GT")


# Exercise 10.4 · error_breakdown ---------------------------------------------------------------------------
def _hand_built() -> tuple[list[dict], list[dict]]:
    """GT: a large enemy (0), a small head (1). Detections by score: TP on the enemy; a duplicate of it; a head
    on the enemy's box (wrong class); a loose head box (IoU ~0.25, localisation); a box on nothing (background);
    one below the score threshold."""
    targets = [
        {
            "boxes": torch.tensor([[10.0, 10.0, 110.0, 210.0], [150.0, 20.0, 160.0, 30.0]]),
            "labels": torch.tensor([0, 1]),
        }
    ]
    predictions = [
        {
            "boxes": torch.tensor(
                [
                    [12.0, 12.0, 110.0, 208.0],
                    [8.0, 10.0, 112.0, 212.0],
                    [10.0, 12.0, 108.0, 210.0],
                    [148.0, 18.0, 168.0, 38.0],
                    [250.0, 250.0, 290.0, 290.0],
                    [150.0, 20.0, 160.0, 30.0],
                ]
            ),  # fmt: skip
            "scores": torch.tensor([0.95, 0.9, 0.8, 0.7, 0.6, 0.1]),
            "labels": torch.tensor([0, 0, 1, 1, 0, 1]),
        }
    ]
    return predictions, targets


@exercise("10.4")
def test_error_breakdown_hand_built(impl):
    predictions, targets = _hand_built()
    got = impl.error_breakdown(predictions, targets, 0.5, 0.25)
    expect(
        isinstance(got, dict) and {"tp", "fp", "fn"} <= set(got),
        f"return a dict with tp, fp, fn; got {got!r}",
    )
    expect(got["tp"] != 2 or got["fn"].get("small") != 0,
           "the exact head box has score 0.1 < 0.25: only detections with score > score_thresh count")  # fmt: skip
    expect(got["tp"] == 1, f"one true positive (the first enemy box), got {got['tp']}")
    expect(got["fp"].get("duplicate") == 1,
           f"the second enemy box overlaps the already matched enemy: a duplicate; got {got['fp']}")  # fmt: skip
    expect(
        got["fp"].get("wrong_class") == 1,
        f"a head box on the enemy (IoU ≥ 0.5, other class): wrong_class; got {got['fp']}",
    )
    expect(
        got["fp"].get("localization") == 1,
        f"the loose head box (IoU 0.25 with the head): localization; got {got['fp']}",
    )
    expect(got["fp"].get("background") == 1, f"the box on nothing: background; got {got['fp']}")
    expect(got["fn"] == {"small": 1, "medium": 0, "large": 0},
           f"the 10 × 10 head is missed (the exact box has score 0.1 < 0.25): fn small 1; got {got['fn']}")  # fmt: skip


def _random_case(seed: int) -> tuple[list[dict], list[dict]]:
    generator = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for _ in range(5):
        count = int(torch.randint(0, 6, (1,), generator=generator))
        corner = torch.rand(count, 2, generator=generator) * 250
        side = torch.exp(torch.rand(count, 1, generator=generator) * 4.0 + 1.5)
        boxes = torch.cat((corner, corner + side), 1)
        labels = torch.randint(0, 3, (count,), generator=generator)
        jitter = boxes.repeat(3, 1) + torch.randn(3 * count, 4, generator=generator) * side.repeat(3, 1) * 0.2
        jitter = torch.cat((jitter[:, :2], jitter[:, 2:].maximum(jitter[:, :2] + 1)), 1)
        pred_labels = torch.where(
            torch.rand(3 * count, generator=generator) < 0.3,
            torch.randint(0, 3, (3 * count,), generator=generator),
            labels.repeat(3),
        )
        background = torch.rand(2, 2, generator=generator) * 250
        pred_boxes = torch.cat((jitter, torch.cat((background, background + 20), 1)))
        predictions.append({"boxes": pred_boxes, "scores": torch.rand(len(pred_boxes), generator=generator),
                            "labels": torch.cat((pred_labels, torch.randint(0, 3, (2,), generator=generator)))})  # fmt: skip
        targets.append({"boxes": boxes, "labels": labels})
    return predictions, targets


@exercise("10.4")
def test_error_breakdown_matches_the_package(impl):
    for seed in range(4):
        predictions, targets = _random_case(seed)
        got = impl.error_breakdown(predictions, targets, 0.5, 0.25)
        full = error_breakdown(predictions, targets, 0.5, 0.25, num_classes=3)
        expected = {
            "tp": full["tp"],
            "fp": {k: full["fp"][k]["total"] for k in FP_TYPES},
            "fn": dict(full["fn"]["by_size"]),
        }
        expect(got == expected, f"random case {seed}:\n  expected {expected}\n  got      {got}")


# Exercise 10.5 · confusion_matrix --------------------------------------------------------------------------
@exercise("10.5")
def test_confusion_matrix_hand_built(impl):
    predictions, targets = _hand_built()
    got = impl.confusion_matrix(predictions, targets, 2, 0.5, 0.25)
    expect_shape(
        got,
        (3, 3),
        "confusion matrix of 2 classes",
        hint="[C + 1, C + 1]: the last row and column are background",
    )
    # Class-agnostic, by decreasing IoU: the head box on the enemy has the highest IoU (0.97) and takes the enemy GT
    # (row enemy, column head); the two enemy boxes on it (0.96, 0.95) and the box on nothing are background
    # detections of class enemy (row 2); the loose head box (IoU 0.25) is a background head; the head GT is missed.
    expected = torch.tensor([[0, 1, 0], [0, 0, 1], [3, 1, 0]])
    lone = impl.confusion_matrix([{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "scores": torch.tensor([0.9]),
                                   "labels": torch.tensor([1])}], [{"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
                                   "labels": torch.tensor([0])}], 2, 0.5, 0.25)  # fmt: skip
    expect(int(lone[0, 1]) == 1,
           "match regardless of class: a head box exactly on an enemy GT is a confusion (row enemy, column head), "
           f"not a background detection plus a missed GT; got\n{lone}")  # fmt: skip
    expect(int(got[0, 0]) != 1 or int(got[0, 1]) != 0,
           "the enemy GT was paired with the first enemy box: visit the (detection, GT) pairs by decreasing IoU, "
           f"not in score order (the head box overlaps it most); got\n{got}")  # fmt: skip
    expect(torch.equal(got.long(), expected), f"expected\n{expected}\ngot\n{got}")


@exercise("10.5")
def test_confusion_matrix_matches_the_package(impl):
    for seed in range(4):
        predictions, targets = _random_case(seed)
        got = impl.confusion_matrix(predictions, targets, 3, 0.5, 0.25)
        expected = confusion_matrix(predictions, targets, 3, 0.5, 0.25)
        expect_shape(got, (4, 4), "confusion matrix of 3 classes")
        expect(torch.equal(got.long(), expected),
               f"random case {seed}: rows GT class, columns predicted class, matched by decreasing IoU regardless of "
               f"class\n  expected\n{expected}\n  got\n{got}")  # fmt: skip
