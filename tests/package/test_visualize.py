"""visualize: drawing shapes/dtypes, error breakdown and confusion matrix on hand-built cases."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.figure import Figure

from detector.visualize import (
    FP_TYPES,
    batch_grid,
    caption_layout,
    confusion_matrix,
    confusion_matrix_chart,
    draw_detections,
    drawing_sizes,
    error_breakdown,
    error_breakdown_chart,
    per_class_ap_chart,
    predictions_grid,
)

T = torch.tensor


def prediction(boxes: list, labels: list, scores: list | None = None) -> dict:
    scores = scores if scores is not None else [0.9 - 0.01 * i for i in range(len(labels))]
    return {
        "boxes": T(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": T(labels).long(),
        "scores": T(scores),
    }


def target(boxes: list, labels: list, **extra) -> dict:
    return {"boxes": T(boxes, dtype=torch.float32).reshape(-1, 4), "labels": T(labels).long(), **extra}


def test_draw_detections_shape_dtype_and_pixels() -> None:
    image = torch.zeros(3, 64, 96, dtype=torch.uint8)
    drawn = draw_detections(image, T([[10.0, 10, 40, 50]]), T([1]), T([0.87]), class_names=["a", "b"])
    assert drawn.shape == (3, 64, 96) and drawn.dtype == torch.uint8
    assert drawn.sum() > 0 and image.sum() == 0, "draws on a copy"
    assert drawn[:, 30, 10].tolist() == [255, 127, 14], "box edge in class 1's palette colour (#ff7f0e)"
    untouched = draw_detections(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert torch.equal(untouched, image)
    with pytest.raises(ValueError, match="uint8"):
        draw_detections(image.float(), T([[1.0, 1, 5, 5]]), T([0]))


def test_batch_grid_tiles_each_image_with_its_own_boxes() -> None:
    images = torch.zeros(5, 3, 40, 40, dtype=torch.uint8)
    images[1] = 100
    targets = [target([[4, 4, 20, 20]], [0]), target([], []), target([], []), target([], []), target([], [])]
    grid = batch_grid(images, targets, class_names=["a"], max_images=4, ncols=2)
    assert grid.dtype == torch.uint8 and grid.shape == (3, 2 + 2 * 42, 2 + 2 * 42), "2x2 tiles, 2 px apart"
    first, second = grid[:, 2:42, 2:42], grid[:, 2:42, 44:84]
    assert torch.equal(first[:, 20, 4], T([31, 119, 180], dtype=torch.uint8)), "box edge in class 0's colour"
    assert torch.equal(second, images[1]), "an image without boxes is tiled as it is"
    assert (grid[:, 1, :] == 255).all(), "white padding between tiles"


def test_figures() -> None:
    images = torch.randint(0, 255, (3, 3, 48, 64), dtype=torch.uint8)
    preds = [prediction([[5, 5, 30, 30]], [0]), prediction([], []), prediction([[1, 1, 9, 9]], [2], [0.1])]
    targets = [target([[6, 6, 30, 31]], [0]), target([[2, 2, 20, 20]], [1]), target([], [])]
    assert isinstance(predictions_grid(images, preds, targets, class_names=["a", "b", "c"], ncols=2), Figure)
    assert isinstance(
        per_class_ap_chart({"ap": [0.5, math.nan], "ap50": [0.8, math.nan]}, ["a", "b"]), Figure
    )
    breakdown = error_breakdown(preds, targets, num_classes=3)
    assert isinstance(error_breakdown_chart(breakdown, ["a", "b", "c"]), Figure)
    assert isinstance(confusion_matrix_chart(confusion_matrix(preds, targets, 3), ["a", "b", "c"]), Figure)


def fp_counts(breakdown: dict) -> dict[str, int]:
    return {kind: breakdown["fp"][kind]["total"] for kind in FP_TYPES}


def test_error_breakdown_one_case_per_fp_type() -> None:
    """GTs: class 0 at A (large) and class 1 at B (medium). Predictions, best score first:
    TP on A; duplicate on A; class 0 on B (wrong class); class 1 shifted on B (IoU 1/3: localisation);
    class 0 far away (background, small); and one below the score threshold (not counted)."""
    box_a, box_b = [0, 0, 100, 100], [200, 200, 250, 250]
    targets = [target([box_a, box_b], [0, 1])]
    preds = [
        prediction(
            [box_a, [0, 0, 100, 95], box_b, [225, 200, 275, 250], [400, 400, 410, 410], [0, 0, 5, 5]],
            [0, 0, 0, 1, 0, 1],
            [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],
        )
    ]
    result = error_breakdown(preds, targets, num_classes=2)
    assert result["tp"] == 1 and result["num_gt"] == 2
    assert fp_counts(result) == {"wrong_class": 1, "localization": 1, "duplicate": 1, "background": 1}
    assert result["fp"]["duplicate"]["by_size"] == {"small": 0, "medium": 0, "large": 1}
    assert result["fp"]["wrong_class"]["by_class"] == [1, 0], "counted under the predicted class"
    assert result["fp"]["localization"]["by_class"] == [0, 1]
    assert result["fp"]["background"]["by_size"] == {"small": 1, "medium": 0, "large": 0}
    assert result["fn"]["total"] == 1 and result["fn"]["by_class"] == [0, 1]  # B was never matched
    assert result["fn"]["by_size"] == {"small": 0, "medium": 1, "large": 0}


def test_error_breakdown_one_missed_gt_per_size_and_crowd() -> None:
    """No predictions: every non-crowd GT is missed, sized by "area" when given; crowd GTs are not."""
    boxes = [[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 200, 200], [0, 0, 300, 300]]
    targets = [target(boxes, [0, 1, 2, 2], iscrowd=T([0, 0, 0, 1]))]
    result = error_breakdown([prediction([], [])], targets, num_classes=3)
    assert result["fn"]["by_size"] == {"small": 1, "medium": 1, "large": 1}
    assert result["fn"]["by_class"] == [1, 1, 1] and result["num_gt"] == 3
    with_area = [target(boxes[:1], [0], area=T([5000.0]))]  # a 10×10 box whose area says "medium"
    assert error_breakdown([prediction([], [])], with_area)["fn"]["by_size"]["medium"] == 1
    on_crowd = [prediction([[10, 10, 60, 60]], [2])]  # inside the crowd region of its class: ignored
    assert sum(fp_counts(error_breakdown(on_crowd, targets, num_classes=3)).values()) == 0


def test_confusion_matrix_hand_built() -> None:
    """Two images. Matches: GT0→pred0 (correct), GT1→pred2 (confused); GT class 1 missed; one background FP."""
    targets = [
        target([[0, 0, 100, 100], [200, 200, 260, 260]], [0, 1]),
        target([[0, 0, 40, 40]], [1]),
    ]
    preds = [
        prediction([[0, 0, 100, 98], [200, 200, 258, 260], [300, 0, 320, 20]], [0, 2, 1]),
        prediction([[0, 0, 40, 40]], [0], [0.1]),  # below the score threshold: dropped
    ]
    expected = torch.zeros(4, 4, dtype=torch.int64)
    expected[0, 0] = 1  # class 0 detected as 0
    expected[1, 2] = 1  # class 1 detected as 2
    expected[3, 1] = 1  # a class-1 prediction on background
    expected[1, 3] = 1  # the class-1 GT of image 2 missed
    assert torch.equal(confusion_matrix(preds, targets, num_classes=3), expected)


def test_drawing_scales_with_the_image_size() -> None:
    assert drawing_sizes(320, 320) == (2, 10)  # the minimum line and font of a small image
    assert drawing_sizes(3000, 4000) == (round(4000 / 320), round(4000 / 80))
    image = torch.zeros(3, 3000, 4000, dtype=torch.uint8)
    drawn = draw_detections(image, T([[1000.0, 1000, 2000, 2000]]), T([0]), T([0.9]))
    line = drawing_sizes(3000, 4000)[0]
    row = drawn[:, 1500, 990:1040].sum(0) > 0
    assert int(row.sum()) == line, "the box edge is as wide as drawing_sizes says"


def test_captions_never_overlap_and_the_best_keep_theirs() -> None:
    # 200 crowded boxes: captions of 40 x 12 px would cover each other
    torch.manual_seed(0)
    corners = torch.rand(200, 2) * 300
    boxes = torch.cat([corners, corners + 20], 1).tolist()
    layout = caption_layout(boxes, [(40, 12)] * len(boxes), (320, 320))
    rects = [rect for _, rect in layout]
    assert 0 < len(rects) < len(boxes) and layout[0][0] == 0, "the first (best) box keeps its caption"
    for i, a in enumerate(rects):
        assert a[0] >= 0 and a[2] <= 320 and a[1] >= 0 and a[3] <= 320, "inside the image"
        for b in rects[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"{a} overlaps {b}"
    # room above the box: the caption sits on top of it; none (box at the top edge): inside it
    assert caption_layout([[50, 30, 90, 60]], [(40, 12)], (100, 100)) == [(0, (50, 18, 90, 30))]
    assert caption_layout([[50, 0, 90, 60]], [(40, 12)], (100, 100)) == [(0, (50, 0, 90, 12))]
    assert caption_layout([[90, 30, 99, 60]], [(40, 12)], (100, 100)) == [(0, (60, 18, 100, 30))]
