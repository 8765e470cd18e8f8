"""Chapter 3 (neck): reference implementations in the exercises' signatures, built on the package."""

from __future__ import annotations

from torch import Tensor

from detector.model.neck import _resize_to


def upsample_add(coarse: Tensor, lateral: Tensor) -> Tensor:
    """Exercise 3.1: ``[B, C, h, w]``, ``[B, C, H, W]`` → ``[B, C, H, W]``, the package's top-down merge."""
    return lateral + _resize_to(coarse, lateral)
