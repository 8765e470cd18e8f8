"""Anchor-free decoding (detector.boxes): hand-computed grids, ltrb ↔ xyxy round trips, aligned IoU."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from detector.boxes import aligned_box_iou, ltrb_to_xyxy, make_points, xyxy_to_ltrb


def test_make_points_hand_computed_grid():
    """Two levels: a 2×3 grid at stride 8, then a 1×2 grid at stride 16; row-major, levels in order."""
    points, strides = make_points([(2, 3), (1, 2)], [8, 16])
    expected = [
        [4.0, 4.0], [12.0, 4.0], [20.0, 4.0],  # row 0 of level 0: x varies fastest
        [4.0, 12.0], [12.0, 12.0], [20.0, 12.0],  # row 1
        [8.0, 8.0], [24.0, 8.0],  # level 1
    ]  # fmt: skip
    assert points.tolist() == expected
    assert strides.tolist() == [8.0] * 6 + [16.0] * 2
    assert points.dtype == strides.dtype == torch.float32


def test_make_points_dtype_device_and_errors():
    points, strides = make_points([(4, 4)], [32], device="cpu", dtype=torch.float64)
    assert points.dtype == strides.dtype == torch.float64 and points.shape == (16, 2)
    assert points[-1].tolist() == [112.0, 112.0]
    with pytest.raises(ValueError, match="strides"):
        make_points([(2, 2)], [8, 16])


def test_ltrb_xyxy_hand_computed_and_round_trips():
    points = torch.tensor([[10.0, 20.0], [4.0, 4.0]])
    ltrb = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 0.5, 0.0, 8.0]])
    boxes = ltrb_to_xyxy(points, ltrb)
    assert boxes.tolist() == [[9.0, 18.0, 13.0, 24.0], [0.0, 3.5, 4.0, 12.0]]
    assert torch.equal(xyxy_to_ltrb(points, boxes), ltrb)  # exact on these dyadic values
    # Random values: inverse in both directions to float32 rounding.
    generator = torch.Generator().manual_seed(0)
    points = torch.rand(50, 2, generator=generator) * 640
    ltrb = torch.rand(50, 4, generator=generator) * 200
    torch.testing.assert_close(xyxy_to_ltrb(points, ltrb_to_xyxy(points, ltrb)), ltrb, rtol=0, atol=1e-4)
    boxes = ltrb_to_xyxy(points, ltrb)
    torch.testing.assert_close(ltrb_to_xyxy(points, xyxy_to_ltrb(points, boxes)), boxes, rtol=0, atol=1e-4)


def test_ltrb_broadcasts_over_batch_and_signs_outside_points():
    points = torch.tensor([[10.0, 10.0], [50.0, 50.0]])  # [N, 2], shared by the batch
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0]] * 2, [[30.0, 30.0, 40.0, 40.0]] * 2])  # [B=2, N=2, 4]
    ltrb = xyxy_to_ltrb(points, boxes)
    assert ltrb.shape == (2, 2, 4)
    assert ltrb[0, 0].tolist() == [10.0, 10.0, 10.0, 10.0]
    assert ltrb[1, 1].tolist() == [20.0, 20.0, -10.0, -10.0]  # point right of / below the box: negative
    assert torch.equal(ltrb_to_xyxy(points, ltrb), boxes)
    # One GT against every point: [M, 1, 4] boxes with [N, 2] points give [M, N, 4].
    gts = torch.tensor([[[0.0, 0.0, 20.0, 20.0]], [[0.0, 0.0, 60.0, 60.0]]])
    inside = xyxy_to_ltrb(points, gts).amin(-1) > 0
    assert inside.tolist() == [[True, False], [True, True]]


def test_aligned_box_iou_is_the_diagonal_of_torchvision_box_iou():
    generator = torch.Generator().manual_seed(1)
    corners = torch.rand(2, 40, 2, generator=generator) * 40
    sizes = 10 + torch.rand(2, 40, 2, generator=generator) * 50
    boxes1, boxes2 = (
        torch.cat((corners[0], corners[0] + sizes[0]), -1),
        torch.cat((corners[1], corners[1] + sizes[1]), -1),
    )
    expected = box_iou(boxes1, boxes2).diagonal()
    assert (expected > 0).sum() > 20  # some overlap, so the test is not all zeros
    torch.testing.assert_close(aligned_box_iou(boxes1, boxes2), expected)
    batched = aligned_box_iou(boxes1.view(2, 20, 4), boxes2.view(2, 20, 4))
    torch.testing.assert_close(batched, expected.view(2, 20))
    half = torch.tensor([0.0, 0.0, 10.0, 10.0]), torch.tensor([5.0, 0.0, 15.0, 10.0])  # 50 / 150
    assert aligned_box_iou(*half).item() == pytest.approx(1 / 3)


def test_aligned_box_iou_degenerate_boxes_give_zero_not_nan():
    point_box = torch.tensor([[5.0, 5.0, 5.0, 5.0]])
    inverted = torch.tensor([[10.0, 10.0, 0.0, 0.0]])
    assert aligned_box_iou(point_box, point_box).tolist() == [0.0]
    assert aligned_box_iou(inverted, torch.tensor([[0.0, 0.0, 10.0, 10.0]])).tolist() == [0.0]
    for dtype in (torch.float16, torch.bfloat16):
        iou = aligned_box_iou(point_box.to(dtype), point_box.to(dtype))
        assert torch.isfinite(iou).all()
