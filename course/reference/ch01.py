"""Chapter 1 (dataset): reference implementations in the exercises' signatures, built on the package."""

from __future__ import annotations

from torch import Tensor
from torchvision.ops import box_convert

from detector.data import eval_transforms
from detector.data.coco import category_mapping


def xywh_to_xyxy(boxes_xywh: Tensor) -> Tensor:
    """Exercise 1.1: ``[..., 4]`` COCO ``[x, y, w, h]`` → ``[..., 4]`` xyxy (torchvision's ``box_convert``)."""
    return box_convert(boxes_xywh, "xywh", "xyxy")


def contiguous_labels(categories: list[dict]) -> tuple[list[str], dict[int, int]]:
    """Exercise 1.2: ``(class_names, {category_id: label})`` from the package's ``category_mapping``."""
    class_names, id_to_label, _ = category_mapping(categories)
    return class_names, id_to_label


def letterbox(image: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor, float, tuple[int, int]]:
    """Exercise 1.3: the package's letterbox (torchvision v2 transforms).

    ``image uint8 [3, H, W]``, ``boxes [K, 4]`` xyxy → ``(image [3, S, S], boxes [K, 4], scale, (left, top))``.
    """
    out_image, target = eval_transforms(size)(image, {"boxes": boxes})
    info = target["letterbox"]
    return out_image, target["boxes"], info["scale"], tuple(int(p) for p in info["pad"])
