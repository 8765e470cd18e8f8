"""Exercise tests of Chapter 5 (anchor-free decoding). Run against your notebook with ``make check CH=5``.

References: hand-computed points and boxes, the package's ``make_points``, ``ltrb_to_xyxy`` and
``xyxy_to_ltrb``, and round trips.
"""

from __future__ import annotations

import torch

from course.checks import CheckFailure, exercise, expect, expect_close, expect_shape
from detector.boxes import ltrb_to_xyxy, make_points, xyxy_to_ltrb

CHAPTER = "05_decoding"
SIZES, STRIDES = [(2, 3), (1, 2)], [8, 16]  # non-square maps, so that swapped axes show


AXIS_ORDER_SLIP = (
    "the points come column by column — the axis-order slip of torch.meshgrid: with indexing='xy' (or the "
    "inputs swapped) the grid is [W, H]; with meshgrid(ys, xs, indexing='ij') rows come first, k = i · W + j"
)


def _column_major(sizes: list[tuple[int, int]], strides: list[int]) -> torch.Tensor:
    """The right points, listed column by column within each level (what a meshgrid axis slip gives)."""
    return torch.cat(
        [make_points([(w, h)], [s])[0].flip(-1) for (h, w), s in zip(sizes, strides, strict=True)]
    )


def _diagnose_points(
    got: torch.Tensor,
    expected: torch.Tensor,
    point_strides: torch.Tensor,
    what: str,
    column_major: torch.Tensor,
) -> None:
    """Name the classic mistakes before the generic comparison."""
    expect_shape(got, tuple(expected.shape), what, hint="points are [N, 2] with N = Σ H_l · W_l")
    expect(not torch.allclose(got, column_major), f"{what}: {AXIS_ORDER_SLIP}")
    expect(
        not torch.allclose(got, column_major.flip(-1)),
        f"{what}: the grid is transposed — these are the points of a map with rows and columns swapped; an "
        "axis-order slip in torch.meshgrid or in unpacking its outputs (a point is (x, y) = (column, row))",
    )
    if torch.allclose(got, expected - point_strides[:, None] / 2):
        expect(False, f"{what}: looks like i·s instead of (i + 0.5)·s: every point is off by half a cell")
    if torch.allclose(got, expected.flip(-1)):
        expect(False, f"{what}: the points are (y, x); the convention is (x, y) — x is the column coordinate")
    expect_close(
        got, expected, what, hint="points[k] = ((j + 0.5)·s, (i + 0.5)·s), row-major, levels in order"
    )


# Exercise 5.1 · make_points -------------------------------------------------------------------------------
@exercise("5.1")
def test_make_points_hand_computed_2x3(impl):
    """A map that is not square, so that an axis-order slip and (y, x) points look different."""
    points, point_strides = impl.make_points([(2, 3)], [8])
    expected = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0], [12.0, 12.0], [20.0, 12.0]])
    what = "points of a 2 × 3 map (2 rows, 3 columns) of stride 8"
    _diagnose_points(points, expected, torch.full((6,), 8.0), what, _column_major([(2, 3)], [8]))
    expect_close(point_strides, torch.full((6,), 8.0), "strides of a 2 × 3 map of stride 8")


@exercise("5.1")
def test_make_points_two_levels_against_the_package(impl):
    points, point_strides = impl.make_points(SIZES, STRIDES)
    expected, expected_strides = make_points(SIZES, STRIDES)
    _diagnose_points(
        points,
        expected,
        expected_strides,
        "points of a 2 × 3 map (stride 8) and a 1 × 2 map (stride 16)",
        _column_major(SIZES, STRIDES),
    )
    expect_close(
        point_strides, expected_strides, "per-point strides", hint="one stride per point, levels in order"
    )
    expect(points.dtype == torch.float32, f"points must be float32 by default, got {points.dtype}")


@exercise("5.1")
def test_make_points_dtype(impl):
    points, point_strides = impl.make_points(SIZES, STRIDES, dtype=torch.float64)
    expect(
        points.dtype == torch.float64 and point_strides.dtype == torch.float64,
        f"dtype=torch.float64 was asked for, got {points.dtype} and {point_strides.dtype}",
    )


# Exercise 5.2 · ltrb_to_xyxy ------------------------------------------------------------------------------
@exercise("5.2")
def test_ltrb_to_xyxy_hand_computed(impl):
    points = torch.tensor([[10.0, 20.0], [4.0, 4.0]])
    ltrb = torch.tensor([[1.0, 2.0, 3.0, 4.0], [4.0, 4.0, 4.0, 4.0]])
    got = impl.ltrb_to_xyxy(points, ltrb)
    expected = torch.tensor([[9.0, 18.0, 13.0, 24.0], [0.0, 0.0, 8.0, 8.0]])
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        expect(
            not torch.allclose(got[0], torch.tensor([11.0, 22.0, 7.0, 16.0])),
            "the signs are swapped: left and top go BACK from the point (x - l, y - t), right and bottom forward "
            "(x + r, y + b)",
        )
    expect_close(got, expected, "boxes from (l, t, r, b)", hint="(x - l, y - t, x + r, y + b)")


@exercise("5.2")
def test_ltrb_to_xyxy_broadcasts_over_a_batch(impl):
    points, _ = make_points(SIZES, STRIDES)  # [N, 2]
    ltrb = torch.rand(3, len(points), 4, generator=torch.Generator().manual_seed(0)) * 20  # [B, N, 4]
    fixed_axis = "works on [N, 4] only: index the last axis ([..., :2], [..., 2:]), not axis 1"
    try:
        got = impl.ltrb_to_xyxy(points, ltrb)
    except NotImplementedError:
        raise  # a stub stays a stub
    except (RuntimeError, IndexError) as error:
        raise CheckFailure(
            f"points [N, 2] with ltrb [B, N, 4] raised {type(error).__name__}: {fixed_axis}"
        ) from None
    if isinstance(got, torch.Tensor) and got.shape != ltrb.shape:
        expect(False, f"points [N, 2] with ltrb [B, N, 4] gave shape {list(got.shape)}: {fixed_axis}")
    expect_close(
        got,
        ltrb_to_xyxy(points, ltrb),
        "points [N, 2] with ltrb [B, N, 4]",
        hint="work on [..., :2] and [..., 2:]",
    )


# Exercise 5.3 · xyxy_to_ltrb ------------------------------------------------------------------------------
@exercise("5.3")
def test_xyxy_to_ltrb_hand_computed_and_negative_outside(impl):
    points = torch.tensor([[10.0, 20.0], [30.0, 5.0]])
    boxes = torch.tensor([[9.0, 18.0, 13.0, 24.0], [0.0, 0.0, 8.0, 8.0]])  # the second point is outside
    got = impl.xyxy_to_ltrb(points, boxes)
    expected = torch.tensor([[1.0, 2.0, 3.0, 4.0], [30.0, 5.0, -22.0, 3.0]])
    if (
        isinstance(got, torch.Tensor)
        and got.shape == expected.shape
        and torch.allclose(got, expected.clamp(min=0))
    ):
        expect(False, "negative distances were clamped: a point outside the box must get a negative distance")
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        expect(
            not torch.allclose(got, -expected),
            "every distance has the wrong sign: l = x - x1 and t = y - y1 (point minus the left/top side), "
            "r = x2 - x and b = y2 - y (right/bottom side minus the point)",
        )
    expect_close(got, expected, "distances (l, t, r, b)", hint="(x - x1, y - y1, x2 - x, y2 - y)")


@exercise("5.3")
def test_xyxy_to_ltrb_round_trip_and_gt_by_point_broadcasting(impl):
    generator = torch.Generator().manual_seed(1)
    points, _ = make_points(SIZES, STRIDES)  # [N, 2]
    corners = torch.rand(2, 3, 2, generator=generator) * 20
    boxes = torch.cat(
        (corners, corners + 1 + torch.rand(2, 3, 2, generator=generator) * 20), dim=-1
    )  # [B, M, 4]
    got = impl.xyxy_to_ltrb(points, boxes[:, :, None, :])  # every GT against every point: [B, M, N, 4]
    expected = xyxy_to_ltrb(points, boxes[:, :, None, :])
    expect_close(got, expected, "GTs [B, M, 1, 4] against points [N, 2] → [B, M, N, 4]")
    back = ltrb_to_xyxy(points, got)
    expect_close(
        back,
        boxes[:, :, None, :].expand_as(back),
        "ltrb_to_xyxy(points, xyxy_to_ltrb(points, boxes))",
        atol=1e-4,
    )


# Exercise 5.4 · decode_boxes ------------------------------------------------------------------------------
@exercise("5.4")
def test_decode_boxes_against_package_functions(impl):
    generator = torch.Generator().manual_seed(2)
    box_maps = [torch.rand(2, 4, h, w, generator=generator) * 3 for h, w in SIZES]
    got_boxes, got_points = impl.decode_boxes(box_maps, STRIDES)
    points, point_strides = make_points(SIZES, STRIDES)
    flat = torch.cat([m.permute(0, 2, 3, 1).reshape(2, -1, 4) for m in box_maps], dim=1)  # [B, N, 4]
    expected = ltrb_to_xyxy(points, flat * point_strides[:, None])
    expect_close(got_points, points, "the points returned with the boxes")
    expect_shape(got_boxes, tuple(expected.shape), "decoded boxes [B, N, 4]")
    no_permute = torch.cat([m.reshape(2, -1, 4) for m in box_maps], dim=1)
    if torch.allclose(got_boxes, ltrb_to_xyxy(points, no_permute * point_strides[:, None])):
        expect(
            False,
            "the maps were reshaped straight from [B, 4, H, W]: channels and positions get mixed; "
            "permute(0, 2, 3, 1) first, so each row holds one cell's four distances",
        )
    if torch.allclose(got_boxes, ltrb_to_xyxy(points, flat)):
        expect(
            False, "the distances are in units of the stride: multiply by each point's stride before decoding"
        )
    for stride in STRIDES:
        if torch.allclose(got_boxes, ltrb_to_xyxy(points, flat * stride)):
            expect(
                False,
                f"every level's distances were multiplied by stride {stride}: each point's distances are in units "
                f"of its own level's stride ({STRIDES}), so use the per-point strides that make_points returns",
            )
    coarse_first = torch.cat([m.permute(0, 2, 3, 1).reshape(2, -1, 4) for m in box_maps[::-1]], dim=1)
    if torch.allclose(got_boxes, ltrb_to_xyxy(points, coarse_first * point_strides[:, None])):
        expect(
            False,
            "the levels were concatenated coarse first: rows must follow the points, whose finest level comes first",
        )
    expect_close(
        got_boxes,
        expected,
        "decoded boxes (pixels)",
        hint="rows in make_points order (level by level, row by row), each point's distances × its own stride",
    )
