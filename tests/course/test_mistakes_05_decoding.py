"""Tests of Chapter 5's exercise tests: plausible wrong solutions must be caught with a diagnosis naming them."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "05_decoding"
LTRB_TO_XYXY = "torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), dim=-1)"
XYXY_TO_LTRB = "torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), dim=-1)"

# (exercise, mistake in words, diagnosis regex, {definition: wrong version})
MISTAKES = [
    # 5.1 make_points
    ("5.1", "meshgrid with indexing='xy'", r"axis-order slip of torch\.meshgrid",
     {"make_points": edit('indexing="ij"', 'indexing="xy"')}),
    ("5.1", "meshgrid inputs swapped", r"the grid is transposed",
     {"make_points": edit("torch.meshgrid(ys, xs,", "torch.meshgrid(xs, ys,")}),
    ("5.1", "points stacked as (y, x)", r"the points are \(y, x\)",
     {"make_points": edit("torch.stack((grid_x, grid_y), dim=-1)", "torch.stack((grid_y, grid_x), dim=-1)")}),
    ("5.1", "points at the cell corners, i·s", r"i·s instead of \(i \+ 0\.5\)·s",
     {"make_points": (edit("+ 0.5) * stride  # [W]", ") * stride  # [W]"),
                      edit("+ 0.5) * stride  # [H]", ") * stride  # [H]"))}),
    # 5.2 ltrb_to_xyxy
    ("5.2", "signs swapped", r"the signs are swapped",
     {"ltrb_to_xyxy": edit(LTRB_TO_XYXY, "torch.cat((points + ltrb[..., :2], points - ltrb[..., 2:]), dim=-1)")}),
    ("5.2", "axis 1 indexed instead of the last axis", r"works on \[N, 4\] only",
     {"ltrb_to_xyxy": edit(LTRB_TO_XYXY, "torch.cat((points - ltrb[:, :2], points + ltrb[:, 2:]), dim=-1)")}),
    # 5.3 xyxy_to_ltrb
    ("5.3", "box minus point instead of point minus box", r"every distance has the wrong sign",
     {"xyxy_to_ltrb": edit(XYXY_TO_LTRB, "torch.cat((boxes[..., :2] - points, points - boxes[..., 2:]), dim=-1)")}),
    ("5.3", "negative distances clamped", r"negative distances were clamped",
     {"xyxy_to_ltrb": edit(XYXY_TO_LTRB, XYXY_TO_LTRB + ".clamp(min=0)")}),
    # 5.4 decode_boxes
    ("5.4", "maps reshaped without permuting", r"reshaped straight from \[B, 4, H, W\]",
     {"decode_boxes": edit("m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, 4)", "m.reshape(m.shape[0], -1, 4)")}),
    ("5.4", "distances left in stride units", r"multiply by each point's stride",
     {"decode_boxes": edit("ltrb * point_strides[:, None]", "ltrb")}),
    ("5.4", "the finest stride for every level", r"multiplied by stride 8: .* its own level's stride",
     {"decode_boxes": edit("ltrb * point_strides[:, None]", "ltrb * strides[0]")}),
    ("5.4", "levels concatenated coarse first", r"concatenated coarse first",
     {"decode_boxes": edit("for m in box_maps], dim=1)", "for m in box_maps[::-1]], dim=1)")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exercise_id", "mistake", "diagnosis", "wrong"), MISTAKES, ids=[m[1] for m in MISTAKES]
)
def test_mistake_is_caught_with_its_diagnosis(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
