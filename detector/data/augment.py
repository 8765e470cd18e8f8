"""The augmentations modern one-stage detectors train with: mosaic, random affine, mixup, HSV, flip, multi-scale.

:class:`AugmentedDataset` wraps a data set that returns images at their original size (``transforms=None``) and
produces ``S × S`` training samples the YOLOv5/v8 way (ultralytics ``Mosaic``, ``RandomPerspective``,
``MixUp``), with the geometry on ``torchvision.transforms.v2`` kernels and ``tv_tensors.BoundingBoxes``:

1. *mosaic* (probability ``mosaic``): four images, each letterboxed to ``S``, tiled 2 × 2 around a random centre
   of a ``2S × 2S`` canvas; otherwise one letterboxed image on an ``S × S`` canvas;
2. *random affine* about the canvas centre (scale ``1 ± scale``, translation ``± translate`` of ``S``, rotation
   ``± degrees``), then the central ``S × S`` crop; a rotated box becomes the box around its rotated corners;
3. *mixup* (probability ``mixup``): the pixel blend of two such samples, with both sets of boxes;
4. horizontal flip and colour (HSV) jitter — brightness, saturation and a small hue shift.

Boxes cut by the border are clipped to the image; a box left with a side under ``min_side`` pixels or with less
than ``min_visible`` of its area (the area it had before clipping) is dropped, and ``target["dropped_boxes"]``
counts them. Per-box fields (``labels``, ``iscrowd``) follow their boxes; ``area`` becomes the box's area in the
augmented image. "Close mosaic": :meth:`AugmentedDataset.set_epoch` turns mosaic and mixup off for the last
``close_mosaic`` epochs, so that training ends on images that look like the test images.

Multi-scale training resizes whole batches (:func:`rescale_batch`) to a size drawn by :func:`draw_batch_size`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from detector.data.transforms import HUE_FRACTION, PAD_VALUE, letterbox_params

# YOLOv5/v8 (ultralytics RandomPerspective.box_candidates): keep boxes with sides > 2 px and > 10% of their area.
MIN_SIDE_PX = 2.0
MIN_VISIBLE = 0.1
# ultralytics MixUp: the blend ratio ~ Beta(32, 32) (centred on 0.5).
MIXUP_BETA = 32.0
PER_BOX_KEYS = ("labels", "iscrowd")


@dataclass(frozen=True)
class AugmentSettings:
    """What :class:`AugmentedDataset` does; every field is a ``data.*`` config key of the same name."""

    image_size: int
    mosaic: float = 0.0
    mixup: float = 0.0
    scale: float = 0.0
    translate: float = 0.0
    degrees: float = 0.0
    hflip: float = 0.5
    color_jitter: float = 0.2
    close_mosaic: int = 0
    min_side: float = MIN_SIDE_PX
    min_visible: float = MIN_VISIBLE


def _boxes(boxes: Tensor, canvas: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    return tv_tensors.BoundingBoxes(boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=canvas)


def sanitize_boxes(
    boxes: Tensor, unclipped_area: Tensor, size: tuple[int, int], min_side: float, min_visible: float
) -> tuple[Tensor, Tensor]:
    """Clip ``boxes [K, 4]`` (xyxy) to an image of ``size = (H, W)``; which survive.

    Returns:
        ``(clipped boxes [K, 4], keep [K] bool)``: a box is kept when both clipped sides are ``>= min_side`` and
        its clipped area is ``>= min_visible ×`` ``unclipped_area [K]`` (its area before clipping).
    """
    height, width = size
    limits = boxes.new_tensor([width, height, width, height])
    clipped = torch.minimum(boxes.clamp(min=0), limits)
    sides = clipped[:, 2:] - clipped[:, :2]
    area = sides.prod(dim=1)
    keep = (sides >= min_side).all(dim=1) & (area >= min_visible * unclipped_area.clamp(min=1e-9))
    return clipped, keep


def random_affine(
    image: Tensor,
    boxes: Tensor,
    out_size: int,
    scale: float,
    translate: float,
    degrees: float,
    generator: random.Random,
) -> tuple[Tensor, Tensor]:
    """Scale, translate and rotate ``image [3, H, W]`` about its centre, then crop its central ``out_size`` square.

    Args:
        boxes: ``[K, 4]`` xyxy pixels on ``image``.
        scale, translate, degrees: the ranges ``1 ± scale``, ``± translate · out_size`` pixels, ``± degrees``.

    Returns:
        ``(image [3, out_size, out_size], boxes [K, 4])``, boxes not yet clipped (the box around each box's four
        transformed corners, in the cropped frame).
    """
    factor = generator.uniform(1 - scale, 1 + scale)
    shift = [round(generator.uniform(-translate, translate) * out_size) for _ in range(2)]
    angle = generator.uniform(-degrees, degrees)
    canvas = (int(image.shape[-2]), int(image.shape[-1]))
    params = dict(angle=angle, translate=shift, scale=factor, shear=[0.0, 0.0])
    moved = F.affine(tv_tensors.Image(image), **params, fill=PAD_VALUE)
    moved_boxes = F.affine(_boxes(boxes, canvas), **params)
    crop = [out_size, out_size]
    return (
        F.center_crop(moved, crop).as_subclass(Tensor),
        _to_crop_frame(moved_boxes.as_subclass(Tensor), canvas, out_size),
    )


def _to_crop_frame(boxes: Tensor, canvas: tuple[int, int], out_size: int) -> Tensor:
    """Boxes in the frame of the central ``out_size`` crop of ``canvas`` (torchvision's centre-crop offsets)."""
    top = int(round((canvas[0] - out_size) / 2.0))
    left = int(round((canvas[1] - out_size) / 2.0))
    return boxes - boxes.new_tensor([left, top, left, top])


def _letterboxed(image: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``image`` resized so its longer side is ``size`` (no padding yet) and its boxes."""
    scale, new_h, new_w, _, _ = letterbox_params((int(image.shape[-2]), int(image.shape[-1])), size)
    resized = F.resize(tv_tensors.Image(image), [new_h, new_w], antialias=True).as_subclass(Tensor)
    ratio = boxes.new_tensor([new_w / image.shape[-1], new_h / image.shape[-2]] * 2)
    return resized, boxes * ratio


def mosaic(
    samples: list[tuple[Tensor, dict[str, Any]]], size: int, generator: random.Random
) -> tuple[Tensor, dict]:
    """Tile four samples (original sizes) into a ``2S × 2S`` canvas around a random centre (ultralytics ``Mosaic``).

    Image ``i`` is letterboxed to ``S`` and placed in quadrant ``i`` (top-left, top-right, bottom-left,
    bottom-right) so that its inner corner touches the centre ``(xc, yc)``, drawn in ``[S/2, 3S/2]``; parts that
    fall off the canvas are cut.

    Returns:
        ``(image uint8 [3, 2S, 2S], target)`` with the four targets' per-box fields concatenated, boxes unclipped.
    """
    canvas = torch.full((3, 2 * size, 2 * size), PAD_VALUE, dtype=torch.uint8)
    xc, yc = (round(generator.uniform(size / 2, 3 * size / 2)) for _ in range(2))
    all_boxes, fields = [], {key: [] for key in PER_BOX_KEYS}
    for quadrant, (image, target) in enumerate(samples):
        tile, boxes = _letterboxed(image, target["boxes"].float(), size)
        h, w = tile.shape[-2:]
        x0 = xc - w if quadrant in (0, 2) else xc
        y0 = yc - h if quadrant in (0, 1) else yc
        # the part of the tile inside the canvas
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, 2 * size), min(y0 + h, 2 * size)
        canvas[:, cy0:cy1, cx0:cx1] = tile[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        all_boxes.append(boxes + boxes.new_tensor([x0, y0, x0, y0]))
        for key in PER_BOX_KEYS:
            fields[key].append(_per_box(target, key, len(boxes)))
    target = {"boxes": torch.cat(all_boxes), **{key: torch.cat(values) for key, values in fields.items()}}
    target["image_id"] = samples[0][1].get("image_id", -1)
    return canvas, target


def _per_box(target: dict[str, Any], key: str, count: int) -> Tensor:
    value = target.get(key)
    return (
        torch.as_tensor(value, dtype=torch.int64)
        if value is not None
        else torch.zeros(count, dtype=torch.int64)
    )


def hflip(image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror ``image [3, H, W]`` and its ``boxes [K, 4]`` (xyxy) left to right (v2 kernels)."""
    canvas = (int(image.shape[-2]), int(image.shape[-1]))
    flipped = F.horizontal_flip(_boxes(boxes, canvas)).as_subclass(Tensor)
    return F.horizontal_flip(tv_tensors.Image(image)).as_subclass(Tensor), flipped


def rescale_batch(images: Tensor, targets: list[dict[str, Any]], size: int) -> tuple[Tensor, list[dict]]:
    """Multi-scale training: resize a batch ``images [B, 3, S, S]`` to ``[B, 3, size, size]``, boxes alike."""
    current = images.shape[-1]
    if size == current:
        return images, targets
    dtype = images.dtype
    resized = nnf.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    if dtype == torch.uint8:
        resized = resized.round().clamp(0, 255).to(torch.uint8)
    ratio = size / current
    scaled = [{**target, "boxes": target["boxes"] * ratio} for target in targets]
    return resized, scaled


def draw_batch_size(image_size: int, multiscale: float, stride: int, generator: random.Random) -> int:
    """A size in ``image_size · (1 ± multiscale)``, rounded to a multiple of ``stride`` (the largest one)."""
    low = max(stride, math.floor(image_size * (1 - multiscale) / stride) * stride)
    high = max(low, math.ceil(image_size * (1 + multiscale) / stride) * stride)
    return generator.randrange(low, high + 1, stride)


class AugmentedDataset(Dataset):
    """Training samples of ``base`` (original-size images) with mosaic, affine, mixup, flip and HSV jitter.

    ``image, target = ds[i]``: ``image`` ``uint8 [3, S, S]``; ``target`` has ``boxes`` (clipped, xyxy pixels),
    the per-box fields, ``area`` (of the augmented boxes), ``image_id`` and ``dropped_boxes`` (int). The random
    draws use Python's ``random`` (seeded per loader worker by :func:`detector.data.collate.seed_worker`).
    """

    def __init__(self, base: Dataset, settings: AugmentSettings) -> None:
        self.base = base
        self.settings = settings
        self.mosaic_on = settings.mosaic > 0
        jitter = settings.color_jitter
        self.color = (
            v2.ColorJitter(brightness=jitter, saturation=jitter, hue=jitter * HUE_FRACTION)
            if jitter
            else None
        )

    def __getattr__(self, name: str) -> Any:  # class_names, num_classes, report, … of the base data set
        if name in ("base", "settings"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Mosaic (and mixup) on for epochs ``0 … epochs - close_mosaic - 1``, off for the last ``close_mosaic``."""
        self.mosaic_on = self.settings.mosaic > 0 and epoch < epochs - self.settings.close_mosaic

    def _geometric(self, index: int, rng: random.Random) -> tuple[Tensor, dict[str, Any]]:
        """One mosaic or letterboxed sample after the random affine: ``[3, S, S]``, boxes clipped and filtered."""
        s, size = self.settings, self.settings.image_size
        if self.mosaic_on and rng.random() < s.mosaic:
            others = [rng.randrange(len(self.base)) for _ in range(3)]
            canvas, target = mosaic([self.base[i] for i in (index, *others)], size, rng)
        else:
            image, target = self.base[index]
            tile, boxes = _letterboxed(image, target["boxes"].float(), size)
            _, new_h, new_w, left, top = letterbox_params(tuple(image.shape[-2:]), size)
            canvas = torch.full((3, size, size), PAD_VALUE, dtype=torch.uint8)
            canvas[:, top : top + new_h, left : left + new_w] = tile
            fields = {key: _per_box(target, key, len(boxes)) for key in PER_BOX_KEYS}
            target = {**fields, "boxes": boxes + boxes.new_tensor([left, top, left, top]),
                      "image_id": target.get("image_id", -1)}  # fmt: skip
        image, boxes = random_affine(canvas, target["boxes"], size, s.scale, s.translate, s.degrees, rng)
        unclipped_area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
        boxes, keep = sanitize_boxes(boxes, unclipped_area, (size, size), s.min_side, s.min_visible)
        out = {key: target[key][keep] for key in PER_BOX_KEYS}
        out.update(boxes=boxes[keep], image_id=target["image_id"], dropped_boxes=int((~keep).sum()))
        return image, out

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        rng = random.Random(random.getrandbits(64))
        image, target = self._geometric(index, rng)
        if self.mosaic_on and rng.random() < self.settings.mixup:
            other, other_target = self._geometric(rng.randrange(len(self.base)), rng)
            ratio = rng.betavariate(MIXUP_BETA, MIXUP_BETA)
            image = (image.float() * ratio + other.float() * (1 - ratio)).round().to(torch.uint8)
            target = {
                **{key: torch.cat((target[key], other_target[key])) for key in (*PER_BOX_KEYS, "boxes")},
                "image_id": target["image_id"],
                "dropped_boxes": target["dropped_boxes"] + other_target["dropped_boxes"],
            }
        if rng.random() < self.settings.hflip:
            image, target["boxes"] = hflip(image, target["boxes"])
        if self.color is not None:
            image = self.color(tv_tensors.Image(image)).as_subclass(Tensor)
        target["area"] = (target["boxes"][:, 2:] - target["boxes"][:, :2]).prod(dim=1)
        return image, target
