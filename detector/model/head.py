"""Decoupled detection head shared across levels (Chapter 4).

Two towers of ``num_convs`` 3×3 conv-BN-SiLU blocks (YOLOX, Ge et al. 2021): the *classification* tower
feeds the class logits, the *regression* tower feeds the box distances and the objectness/IoU logit (the
predicted IoU of the point's own box, as in YOLOv8/PP-YOLOE's quality branches). Conv weights are shared by
all levels; each level has its own BatchNorm (EfficientDet, Tan et al. 2020), because a BatchNorm shared by
levels would normalise each level with its own batch statistics in training but with a running average of
all levels in eval mode.

Box distances: ``ltrb = softplus(scale_l · x) · stride_l`` in pixels, with a learnable ``scale_l`` per level
(FCOS, Tian et al. 2019). FCOS/YOLOX use ``exp``; ``exp`` overflows float16 for ``x > 11.1`` (and bf16
rounding makes large exponents coarse), while softplus is non-negative, grows linearly and cannot overflow;
it is evaluated in float32 anyway. The class and objectness biases start at ``-log((1 - π) / π)`` so every
initial probability is ``π = prior_prob`` (RetinaNet, Lin et al. 2017): with thousands of background points
per image the focal loss is not swamped by easy negatives in the first steps.

All outputs are float32 (also under autocast), flattened over levels in the order of
:func:`detector.boxes.make_points`: level by level, row-major within a level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PRED_INIT_STD = 0.01  # std of the prediction convs' weights (RetinaNet/FCOS)


class _SharedTower(nn.Module):
    """``num_convs`` 3×3 convs with weights shared by all levels, BatchNorm per level, SiLU."""

    def __init__(self, width: int, num_convs: int, num_levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(num_convs)
        )
        self.norms = nn.ModuleList(
            nn.ModuleList(nn.BatchNorm2d(width) for _ in range(num_convs)) for _ in range(num_levels)
        )
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor, level: int) -> Tensor:
        for conv, norm in zip(self.convs, self.norms[level], strict=True):
            x = self.act(norm(conv(x)))
        return x


def _flatten(maps: Sequence[Tensor]) -> Tensor:
    """``L`` maps ``[B, K, H_l, W_l]`` → ``[B, Σ H_l·W_l, K]``: levels in order, row-major within a level."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)


class DecoupledHead(nn.Module):
    """Classification, box and objectness predictions for every point of every level.

    Args:
        width: channels of the neck's maps.
        num_classes: ``C``.
        num_levels: ``L``, number of neck levels.
        num_convs: convs per tower (`model.head_convs`; 1 in the CPU demo).
        prior_prob: initial probability ``π`` of every class and of objectness (0.01, RetinaNet).
        strides: stride of each level in pixels; default ``8·2^l`` (P3, P4, P5, …).

    ``forward(features)``: ``L`` maps ``[B, width, H_l, W_l]`` → ``(cls_logits [B, N, C],
    box_ltrb [B, N, 4] ≥ 0 in pixels, obj_logits [B, N, 1])``, float32, ``N = Σ H_l·W_l``.
    """

    def __init__(
        self,
        width: int,
        num_classes: int,
        num_levels: int,
        num_convs: int = 2,
        prior_prob: float = 0.01,
        strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        if strides is None:
            strides = [8 * 2**level for level in range(num_levels)]
        if len(strides) != num_levels:
            raise ValueError(f"{num_levels} levels but {len(strides)} strides ({list(strides)})")
        self.num_classes = num_classes
        self.strides = [int(s) for s in strides]
        self.cls_tower = _SharedTower(width, num_convs, num_levels)
        self.reg_tower = _SharedTower(width, num_convs, num_levels)
        self.cls_pred = nn.Conv2d(width, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(width, 4, 3, padding=1)
        self.obj_pred = nn.Conv2d(width, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        prior_bias = -math.log((1.0 - prior_prob) / prior_prob)
        for conv in (self.cls_pred, self.box_pred, self.obj_pred):
            nn.init.normal_(conv.weight, std=PRED_INIT_STD)
        nn.init.constant_(self.cls_pred.bias, prior_bias)
        nn.init.constant_(self.obj_pred.bias, prior_bias)
        nn.init.zeros_(self.box_pred.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if len(features) != len(self.strides):
            raise ValueError(
                f"DecoupledHead was built for {len(self.strides)} levels, got {len(features)} maps"
            )
        cls_maps, box_maps, obj_maps = [], [], []
        for level, x in enumerate(features):
            cls_feat = self.cls_tower(x, level)
            reg_feat = self.reg_tower(x, level)
            cls_maps.append(self.cls_pred(cls_feat).float())
            raw = self.box_pred(reg_feat).float() * self.scales[level].float()
            box_maps.append(F.softplus(raw) * self.strides[level])
            obj_maps.append(self.obj_pred(reg_feat).float())
        return _flatten(cls_maps), _flatten(box_maps), _flatten(obj_maps)
