"""Anchor-free box geometry: grid points at cell centres and the ltrb ↔ xyxy maps (Chapter 5).

Vocabulary: ``points [N, 2]`` are cell centres ``(x, y)`` in input pixels over all levels (row-major per
level, levels in order), ``strides [N]`` their level's stride, ``ltrb [..., N, 4]`` the non-negative
distances from a point to the left, top, right and bottom sides of its box, ``boxes`` are ``xyxy`` pixels.
IoU-family functions come from :mod:`torchvision.ops`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def make_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Cell centres of every level, concatenated.

    Args:
        feature_sizes: ``(H_l, W_l)`` of each level's feature map.
        strides: the stride ``s_l`` of each level, in input pixels.

    Returns:
        ``points [N, 2]`` with ``points[k] = ((j + 0.5)·s, (i + 0.5)·s)`` for cell row ``i`` and column
        ``j`` (row-major within a level, levels in order), and ``strides [N]``; ``N = Σ H_l·W_l``.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(f"{len(feature_sizes)} feature sizes but {len(strides)} strides")
    all_points, all_strides = [], []
    for (height, width), stride in zip(feature_sizes, strides, strict=True):
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        all_points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))
        all_strides.append(torch.full((height * width,), float(stride), device=device, dtype=dtype))
    return torch.cat(all_points), torch.cat(all_strides)


def ltrb_to_xyxy(points: Tensor, ltrb: Tensor) -> Tensor:
    """Distances to box sides → corners.

    Args:
        points: ``[..., N, 2]`` (broadcast against ``ltrb``), ``(x, y)``.
        ltrb: ``[..., N, 4]`` distances ``(l, t, r, b)``.

    Returns:
        ``[..., N, 4]`` boxes ``(x - l, y - t, x + r, y + b)``.
    """
    left_top, right_bottom = ltrb[..., :2], ltrb[..., 2:]
    return torch.cat((points - left_top, points + right_bottom), dim=-1)


def xyxy_to_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """Corners → distances from each point to the box sides; the exact inverse of :func:`ltrb_to_xyxy`.

    Args:
        points: ``[..., N, 2]`` (broadcast against ``boxes``).
        boxes: ``[..., N, 4]`` xyxy.

    Returns:
        ``[..., N, 4]`` ``(x - x1, y - y1, x2 - x, y2 - y)``; negative where a point lies outside its box.
    """
    return torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), dim=-1)


def aligned_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-9) -> Tensor:
    """IoU of corresponding boxes (not all pairs).

    ``torchvision.ops.box_iou`` is pairwise ``[N, M]``; the assigner and the losses need the IoU of the
    ``k``-th box with the ``k``-th box over broadcast leading dims, without building ``N×M``.

    Args:
        boxes1, boxes2: ``[..., 4]`` xyxy, broadcastable.

    Returns:
        ``[...]`` IoU in ``[0, 1]`` in the inputs' dtype; 0 for degenerate pairs (also in float16, where
        ``eps`` underflows to 0: the denominator is kept at least the dtype's smallest normal number).
        float16 areas overflow above 65504 px² (a 256×256 box): pass float32 boxes for real images.
    """
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    union = area1 + area2 - inter + eps  # float even for integer boxes
    return inter / union.clamp(min=torch.finfo(union.dtype).tiny)
