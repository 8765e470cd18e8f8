"""Chapter 5 (decoding): reference implementations in the exercises' signatures, built on the package."""

from __future__ import annotations

from torch import Tensor

from detector.boxes import ltrb_to_xyxy, make_points
from detector.model.head import _flatten


def decode_boxes(box_maps: list[Tensor], strides: list[int]) -> tuple[Tensor, Tensor]:
    """Exercise 5.4: ``L`` maps ``[B, 4, H_l, W_l]`` in stride units → ``(boxes [B, N, 4] xyxy px, points [N, 2])``."""
    sizes = [(m.shape[-2], m.shape[-1]) for m in box_maps]
    points, point_strides = make_points(sizes, strides, device=box_maps[0].device, dtype=box_maps[0].dtype)
    return ltrb_to_xyxy(points, _flatten(box_maps) * point_strides[:, None]), points
