"""Letterbox, flip and colour jitter on ``torchvision.transforms.v2`` (Chapter 1).

*Letterboxing* resizes an image so that its longer side is ``S`` (aspect ratio kept) and pads it to a square
``S × S`` canvas, centred, with grey 114 (YOLOv5's padding value, ultralytics ``LetterBox``). The box geometry
(resize, pad, flip) is done by ``torchvision.transforms.v2`` on ``tv_tensors.BoundingBoxes``.

Every transform here is called as ``transform(image, target) -> (image, target)`` with ``image`` a
``uint8 [3, H, W]`` tensor and ``target["boxes"]`` ``float32 [K, 4]`` xyxy pixels (plain or ``BoundingBoxes``);
it returns ``uint8 [3, S, S]`` and the boxes in the letterboxed frame. The evaluation transform adds
``target["letterbox"] = dict(scale, pad=(left, top), orig_size=(H, W))`` so that
:func:`unletterbox_boxes` maps predictions back to the original image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

PAD_VALUE = 114  # grey padding of YOLOv5/ultralytics letterboxing
HUE_FRACTION = (
    0.1  # hue jitter = color_jitter × this: team colour is the class cue (red/blue), keep hue shifts small
)


def letterbox_params(orig_size: tuple[int, int], size: int) -> tuple[float, int, int, int, int]:
    """``(scale, new_h, new_w, left, top)`` for an image of ``orig_size = (H, W)`` letterboxed into ``size``.

    ``scale = size / max(H, W)``; the resized image is ``new_h = round(H·scale)`` × ``new_w = round(W·scale)``
    and sits at ``(left, top)`` = half the padding (rounded down).
    """
    height, width = orig_size
    scale = size / max(height, width)
    new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
    return scale, new_h, new_w, (size - new_w) // 2, (size - new_h) // 2


class Letterbox(v2.Transform):
    """Resize the longer side to ``size`` (aspect kept) and pad to ``size × size`` with ``fill`` (v2 kernels)."""

    def __init__(self, size: int, fill: int = PAD_VALUE) -> None:
        super().__init__()
        self.size = size
        self.fill = fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        images = [x for x in flat_inputs if isinstance(x, tv_tensors.Image)]
        if not images:
            raise TypeError("Letterbox needs a tv_tensors.Image among its inputs (see apply_transforms)")
        _, new_h, new_w, left, top = letterbox_params(tuple(images[0].shape[-2:]), self.size)
        padding = [left, top, self.size - new_w - left, self.size - new_h - top]
        return {"new_size": [new_h, new_w], "padding": padding}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        resized = self._call_kernel(F.resize, inpt, size=params["new_size"], antialias=True)
        return self._call_kernel(F.pad, resized, padding=params["padding"], fill=self.fill)


class DetectionTransform:
    """Wrap a v2 pipeline so it takes and returns plain tensors; optionally record the letterbox.

    Args:
        pipeline: a ``v2`` transform applied to ``(tv_tensors.Image, target with BoundingBoxes)``.
        size: the letterbox size ``S``; with ``record_letterbox`` the target gets ``letterbox``.
    """

    def __init__(self, pipeline: v2.Transform, size: int, record_letterbox: bool) -> None:
        self.pipeline = pipeline
        self.size = size
        self.record_letterbox = record_letterbox

    def __call__(self, image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        orig_size = (int(image.shape[-2]), int(image.shape[-1]))
        boxes = target["boxes"]
        if not isinstance(boxes, tv_tensors.BoundingBoxes):
            boxes = tv_tensors.BoundingBoxes(
                boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=orig_size
            )
        image_out, target_out = self.pipeline(tv_tensors.Image(image), {**target, "boxes": boxes})
        target_out["boxes"] = target_out["boxes"].as_subclass(Tensor).to(torch.float32)
        if self.record_letterbox:
            scale, _, _, left, top = letterbox_params(orig_size, self.size)
            target_out["letterbox"] = {
                "scale": scale,
                "pad": (float(left), float(top)),
                "orig_size": orig_size,
            }
        return image_out.as_subclass(Tensor), target_out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


def train_transforms(image_size: int, hflip: float = 0.5, color_jitter: float = 0.2) -> DetectionTransform:
    """Letterbox to ``image_size``, flip horizontally with probability ``hflip``, jitter colours.

    ``color_jitter`` is the brightness, contrast and saturation strength (``0`` turns jitter off); the hue
    strength is ``color_jitter × HUE_FRACTION``.
    """
    steps: list[v2.Transform] = [Letterbox(image_size)]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    if color_jitter > 0:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, color_jitter * HUE_FRACTION))
    return DetectionTransform(v2.Compose(steps), image_size, record_letterbox=False)


def eval_transforms(image_size: int) -> DetectionTransform:
    """Letterbox only; the target gets ``letterbox = dict(scale, pad=(left, top), orig_size=(H, W))``."""
    return DetectionTransform(Letterbox(image_size), image_size, record_letterbox=True)


def unletterbox_boxes(
    boxes: Tensor, scale: float, pad: tuple[float, float], orig_size: tuple[int, int]
) -> Tensor:
    """Map ``boxes [K, 4]`` (xyxy, letterboxed frame) back to the original image, clipped to it.

    Exactly inverts :class:`Letterbox`: the resized image is ``round(W·scale) × round(H·scale)`` pixels, so
    each axis is divided by its own exact ratio ``round(W·scale) / W`` (within half a pixel of ``scale``).

    Args:
        boxes: ``[K, 4]`` xyxy pixels in the ``S × S`` letterboxed input.
        scale, pad, orig_size: ``target["letterbox"]`` of :func:`eval_transforms` (``pad = (left, top)``,
            ``orig_size = (H, W)``).
    """
    height, width = orig_size
    ratio_x, ratio_y = max(1, round(width * scale)) / width, max(1, round(height * scale)) / height
    offset = boxes.new_tensor([pad[0], pad[1], pad[0], pad[1]])
    ratio = boxes.new_tensor([ratio_x, ratio_y, ratio_x, ratio_y])
    mapped = (boxes - offset) / ratio
    limits = boxes.new_tensor([width, height, width, height])
    return torch.minimum(mapped.clamp(min=0), limits)
