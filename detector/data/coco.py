"""Roboflow COCO exports: parsing, validation and a ``torch`` dataset (Chapter 1).

A Roboflow export holds one folder per split (``train/``, ``valid/``, ``test/``), each with the images and
``_annotations.coco.json``. COCO boxes are ``[x, y, w, h]`` in pixels (top-left corner plus size); the
dataset returns ``boxes`` as ``xyxy`` pixels and ``labels`` as contiguous ``0..C-1``.

Roboflow adds a placeholder category to every export (id 0, no boxes, the ``supercategory`` of all the
others, e.g. ``"pieces"``); it is dropped. Category ids are remapped in id order, so a class without boxes in
one split keeps its index. Annotations are validated when the dataset is built (JSON only); images are
decoded lazily in ``__getitem__``. Nothing is skipped silently: what was dropped or clipped is in
``dataset.report`` and announced once with a warning.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image

ANNOTATIONS_FILE = "_annotations.coco.json"
REQUIRED_KEYS = ("images", "annotations", "categories")
MAX_LISTED_IDS = 5  # record ids quoted in a warning or an error before "..."

Transforms = Callable[[Tensor, dict[str, Any]], tuple[Tensor, dict[str, Any]]]


@dataclass
class DatasetReport:
    """What loading a split kept, dropped and changed.

    ``dropped`` maps a reason (``"degenerate"``: zero or negative width/height; ``"outside"``: no overlap
    with the image; ``"placeholder"``: labelled with the placeholder category) to the annotation ids.
    ``clipped`` lists the annotation ids of boxes that reached outside the image and were clipped to it.
    """

    source: str
    num_images: int = 0
    num_boxes: int = 0
    num_negatives: int = 0
    placeholder: str | None = None
    dropped: dict[str, list[Any]] = field(default_factory=dict)
    clipped: list[Any] = field(default_factory=list)

    @property
    def num_dropped(self) -> int:
        return sum(len(ids) for ids in self.dropped.values())

    def summary(self) -> str:
        """One line: kept images/boxes, negatives, dropped boxes by reason, clipped boxes."""
        parts = [
            f"{self.source}: {self.num_images} images, {self.num_boxes} boxes, {self.num_negatives} negatives"
        ]
        for reason, ids in self.dropped.items():
            parts.append(f"dropped {len(ids)} {reason} boxes (annotation ids {_quote_ids(ids)})")
        if self.clipped:
            parts.append(f"clipped {len(self.clipped)} boxes to the image (ids {_quote_ids(self.clipped)})")
        return "; ".join(parts)

    def warn_if_changed(self) -> None:
        """One warning per split when boxes were dropped or clipped."""
        if self.dropped or self.clipped:
            warnings.warn(self.summary(), UserWarning, stacklevel=3)


def _quote_ids(ids: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in ids[:MAX_LISTED_IDS])
    return shown + (", ..." if len(ids) > MAX_LISTED_IDS else "")


def find_placeholder(categories: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Roboflow's placeholder: the lowest-id category whose name is the supercategory of all the others."""
    if len(categories) < 2:
        return None
    first = min(categories, key=lambda c: c["id"])
    others = [c for c in categories if c is not first]
    return first if all(c.get("supercategory") == first["name"] for c in others) else None


def category_mapping(categories: Sequence[dict[str, Any]]) -> tuple[list[str], dict[int, int], str | None]:
    """Class names, ``category id -> label`` (contiguous, in id order) and the dropped placeholder's name."""
    placeholder = find_placeholder(categories)
    kept = sorted((c for c in categories if c is not placeholder), key=lambda c: c["id"])
    names = [str(c["name"]) for c in kept]
    return names, {int(c["id"]): label for label, c in enumerate(kept)}, placeholder and placeholder["name"]


def clean_box(
    bbox_xywh: Sequence[float], width: int, height: int, record: Any, report: DatasetReport
) -> list[float] | None:
    """``[x, y, w, h]`` → xyxy clipped to the image, or ``None`` (recorded in ``report``) when unusable."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    if w <= 0 or h <= 0:
        report.dropped.setdefault("degenerate", []).append(record)
        return None
    box = [
        min(max(x, 0.0), width),
        min(max(y, 0.0), height),
        min(max(x + w, 0.0), width),
        min(max(y + h, 0.0), height),
    ]
    if box[2] <= box[0] or box[3] <= box[1]:
        report.dropped.setdefault("outside", []).append(record)
        return None
    if box != [x, y, x + w, y + h]:
        report.clipped.append(record)
    return box


def _check_bbox(bbox: Any, where: str) -> None:
    ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4
    ok = ok and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox
    )
    if not ok:
        raise ValueError(
            f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}; fix the record"
        )


def _check_records(data: Any, path: Path) -> None:
    """Raise a ``ValueError`` naming the file and record when ``data`` is not a COCO detection export."""
    fix = "expected a COCO detection export (e.g. Roboflow 'COCO JSON' format)"
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in REQUIRED_KEYS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{path}: not a COCO export: needs lists {list(REQUIRED_KEYS)}, found {found}; {fix}"
        )
    needed = {"images": ("id", "file_name", "width", "height"), "categories": ("id", "name")}
    needed["annotations"] = ("image_id", "category_id", "bbox")
    for key, fields in needed.items():
        for index, record in enumerate(data[key]):
            missing = [f for f in fields if not isinstance(record, dict) or f not in record]
            if missing:
                raise ValueError(f"{path}: {key}[{index}] lacks {missing}; {fix}")


def parse_coco(
    data: dict[str, Any], path: Path
) -> tuple[list[dict[str, Any]], list[tuple[Tensor, Tensor]], list[str], DatasetReport]:
    """Validate a COCO dict and turn it into per-image ``(boxes float32 [K, 4] xyxy, labels int64 [K])``.

    Returns ``(images, targets, class_names, report)``; ``images`` are the image records in file order.
    Errors name ``path`` and the record (image id, annotation id).
    """
    _check_records(data, path)
    names, label_of, placeholder = category_mapping(data["categories"])
    placeholder_ids = {c["id"] for c in data["categories"]} - set(label_of)
    images = data["images"]
    index_of: dict[Any, int] = {}
    for index, image in enumerate(images):
        if image["id"] in index_of:
            raise ValueError(
                f"{path}: image id {image['id']} appears twice (images[{index}]); ids must be unique"
            )
        index_of[image["id"]] = index
    report = DatasetReport(source=str(path), num_images=len(images), placeholder=placeholder)
    boxes: list[list[list[float]]] = [[] for _ in images]
    labels: list[list[int]] = [[] for _ in images]
    for index, ann in enumerate(data["annotations"]):
        record = ann.get("id", f"annotations[{index}]")
        where = f"{path}: annotation id {record}"
        if ann["image_id"] not in index_of:
            raise ValueError(
                f"{where} points to unknown image_id {ann['image_id']}; fix or delete the annotation"
            )
        if ann["category_id"] in placeholder_ids:
            report.dropped.setdefault("placeholder", []).append(record)
            continue
        if ann["category_id"] not in label_of:
            raise ValueError(
                f"{where} has unknown category_id {ann['category_id']} (known: {sorted(label_of)}); "
                "fix the annotation or add the category"
            )
        _check_bbox(ann["bbox"], where)
        image = images[index_of[ann["image_id"]]]
        box = clean_box(ann["bbox"], image["width"], image["height"], record, report)
        if box is not None:
            boxes[index_of[ann["image_id"]]].append(box)
            labels[index_of[ann["image_id"]]].append(label_of[ann["category_id"]])
    targets = [
        (torch.tensor(b, dtype=torch.float32).reshape(-1, 4), torch.tensor(lab, dtype=torch.int64))
        for b, lab in zip(boxes, labels, strict=True)
    ]
    report.num_boxes = sum(len(b) for b in boxes)
    report.num_negatives = sum(1 for b in boxes if not b)
    return images, targets, names, report


def read_image(source: Path | bytes, name: str, expected_hw: tuple[int, int] | None = None) -> Tensor:
    """Decode a JPEG/PNG file or bytes to ``uint8 [3, H, W]`` RGB (EXIF orientation applied).

    Raises ``FileNotFoundError`` / ``ValueError`` naming ``name`` when the file is missing, cannot be
    decoded, or its size differs from ``expected_hw`` (the annotation's ``(height, width)``).
    """
    if isinstance(source, Path):
        if not source.is_file():
            raise FileNotFoundError(
                f"{name}: image file is missing; re-export the data set or delete its record"
            )
        source = source.read_bytes()
    try:
        data = torch.frombuffer(bytearray(source), dtype=torch.uint8)
        image = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"{name}: cannot decode the image ({error}); replace the file or delete its record"
        ) from None
    if expected_hw is not None and tuple(image.shape[-2:]) != tuple(expected_hw):
        raise ValueError(
            f"{name}: decoded size (H, W) = {tuple(image.shape[-2:])} but the annotations say {tuple(expected_hw)}; "
            "the boxes would not match: re-export the data set"
        )
    return image


def apply_transforms(
    transforms: Transforms | None, image: Tensor, target: dict[str, Any]
) -> tuple[Tensor, dict]:
    """Run ``transforms(image, target)`` with ``target["boxes"]`` as ``tv_tensors.BoundingBoxes`` (xyxy).

    Works with the transforms of :mod:`detector.data.transforms` and with any ``torchvision.transforms.v2``
    pipeline; the returned image and boxes are plain tensors again.
    """
    if transforms is None:
        return image, target
    target = dict(target)
    target["boxes"] = tv_tensors.BoundingBoxes(
        target["boxes"], format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=tuple(image.shape[-2:])
    )
    image, target = transforms(tv_tensors.Image(image), target)
    target["boxes"] = target["boxes"].as_subclass(Tensor)
    return image.as_subclass(Tensor), target


class CocoDetection(Dataset):
    """One split of a Roboflow COCO export.

    ``image, target = ds[i]``: without transforms ``image`` is ``uint8 [3, H, W]`` at the original size and
    ``target`` holds ``boxes`` (``float32 [K, 4]`` xyxy pixels), ``labels`` (``int64 [K]`` in ``0..C-1``) and
    ``image_id`` (int). ``ds.class_names[label]`` names a label; ``ds.report`` says what was dropped.

    Args:
        split_dir: folder with ``_annotations.coco.json`` and the images.
        transforms: ``(image, target) -> (image, target)``, e.g. :func:`~detector.data.transforms.train_transforms`.
    """

    def __init__(self, split_dir: str | Path, transforms: Transforms | None = None) -> None:
        self.root = Path(split_dir)
        path = self.root / ANNOTATIONS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: give a split folder of a Roboflow COCO export (with {ANNOTATIONS_FILE})"
            )
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error}); re-download the export") from None
        self.images, self.targets, self.class_names, self.report = parse_coco(data, path)
        missing = [im for im in self.images if not (self.root / im["file_name"]).is_file()]
        if missing:
            listed = ", ".join(f"{im['file_name']} (image id {im['id']})" for im in missing[:MAX_LISTED_IDS])
            raise FileNotFoundError(
                f"{path}: {len(missing)} image files are missing in {self.root}: {listed}; "
                "re-export the data set or delete those image records and their annotations"
            )
        self.transforms = transforms
        self.report.warn_if_changed()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        record = self.images[index]
        file = self.root / record["file_name"]
        image = read_image(file, f"{file} (image id {record['id']})", (record["height"], record["width"]))
        boxes, labels = self.targets[index]
        target = {"boxes": boxes.clone(), "labels": labels.clone(), "image_id": int(record["id"])}
        return apply_transforms(self.transforms, image, target)
