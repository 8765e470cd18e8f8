"""FPN top-down + PAN bottom-up neck (Chapter 3).

FPN (Lin et al. 2017) brings semantics down to the fine levels: a 1×1 *lateral* conv maps each backbone
level to ``width`` channels, the coarser merged map is upsampled ×2 (nearest) and added, and a 3×3 *output*
conv smooths the sum. PAN (Liu et al. 2018) then brings localisation detail back up: a 3×3 stride-2 conv
downsamples the finer PAN map, it is added to the FPN map of the next level and a 3×3 output conv follows.

Every conv is a conv-BatchNorm-SiLU block (as in YOLOv5/YOLOX/YOLOv8). BatchNorm rather than GroupNorm:
with the CPU demo's batch of 4 images at 320 px each BatchNorm sees ``4·80·80`` values per channel on P2 and
``4·20·20`` on P4 — enough for stable statistics —, it trains from scratch quickly, and it folds into the conv
at inference. GroupNorm (FCOS) is batch-independent but costs about as much as the conv itself on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class ConvBnAct(nn.Sequential):
    """``Conv2d(k, stride, padding=k//2, bias=False) → BatchNorm2d → SiLU``: ``[B, c_in, H, W] → [B, c_out, H', W']``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.SiLU(inplace=True),
        )


def _resize_to(x: Tensor, reference: Tensor) -> Tensor:
    """Nearest-resize ``x`` to ``reference``'s spatial size; a no-op when they already agree.

    Top-down: ×2 nearest upsampling, written with ``size=`` so that odd sizes (a 13×13 map under a 7×7 one
    when the input is not a multiple of 32) work. Bottom-up: a stride-2 conv gives ``ceil(H/2)``, which
    matches ResNet-style backbones; this only resizes for backbones that round differently.
    """
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="nearest")


class FpnPan(nn.Module):
    """FPN + PAN over ``L`` backbone levels, fine to coarse (e.g. strides 8/16/32).

    Args:
        in_channels: channels of each backbone level, fine to coarse (``Backbone.channels``).
        width: channels of every output level (``model.neck_width`` in the config).

    ``forward(features)``: ``L`` maps ``[B, in_channels[l], H_l, W_l]`` → ``L`` maps ``[B, width, H_l, W_l]``
    (P3…P5 for three levels), same sizes and order as the input.
    """

    def __init__(self, in_channels: Sequence[int], width: int) -> None:
        super().__init__()
        if len(in_channels) < 1:
            raise ValueError("FpnPan needs at least one input level, got in_channels=[]")
        levels = len(in_channels)
        self.in_channels = list(in_channels)
        self.width = width
        self.lateral = nn.ModuleList(ConvBnAct(c, width, kernel_size=1) for c in in_channels)
        self.fpn_out = nn.ModuleList(ConvBnAct(width, width, kernel_size=3) for _ in range(levels))
        self.downsample = nn.ModuleList(
            ConvBnAct(width, width, kernel_size=3, stride=2) for _ in range(levels - 1)
        )
        self.pan_out = nn.ModuleList(ConvBnAct(width, width, kernel_size=3) for _ in range(levels - 1))

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.lateral):
            raise ValueError(
                f"FpnPan was built for {len(self.lateral)} levels, got {len(features)} feature maps"
            )
        laterals = [conv(x) for conv, x in zip(self.lateral, features, strict=True)]
        # Top-down (FPN): coarsest first, each finer level adds the upsampled merged map above it.
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):
            merged.insert(0, lateral + _resize_to(merged[0], lateral))
        fpn = [conv(x) for conv, x in zip(self.fpn_out, merged, strict=True)]
        # Bottom-up (PAN): finest first, each coarser level adds the downsampled PAN map below it.
        outputs = [fpn[0]]
        for level in range(1, len(fpn)):
            down = _resize_to(self.downsample[level - 1](outputs[-1]), fpn[level])
            outputs.append(self.pan_out[level - 1](fpn[level] + down))
        return outputs
