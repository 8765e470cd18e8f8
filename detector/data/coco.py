"""Roboflow COCO exports: parsing, validation and a ``torch`` dataset (Chapter 1).

A Roboflow export holds one folder per split (``train/``, ``valid/``, ``test/``), each with the images and
``_annotations.coco.json``. COCO boxes are ``[x, y, w, h]`` in pixels (top-left corner plus size); the
dataset returns ``boxes`` as ``xyxy`` pixels and ``labels`` as contiguous ``0..C-1``.

Roboflow adds a placeholder category to every export (id 0, no boxes, the ``supercategory`` of all the
others, e.g. ``"pieces"``; with one class it has that class's name); it is dropped. Category ids may have gaps
(``1, 3, 7``): they are remapped in id order to ``0..C-1`` (``dataset.category_ids[label]`` is the source id),
so a class without boxes in one split keeps its index. Two kept categories with one name are an error.

COCO's ``iscrowd`` and ``area`` travel with each box: ``target["iscrowd"]`` (crowd regions are ignored by the
assigner and by evaluation, as pycocotools does) and ``target["area"]`` (original-image pixels², decides
small/medium/large in evaluation; the box area when the record has none).

Annotations are validated when the dataset is built, and every image file's header is checked then
(:func:`~detector.data.images.scan_images`: missing and truncated files, sizes, EXIF orientation, colour modes); images are
decoded lazily in ``__getitem__``. Nothing is skipped silently: what was dropped, clipped or read unrotated is
in ``dataset.report`` and announced once with a warning.
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

from detector.data.images import read_image, scan_images
from detector.errors import DataError, MissingPathError

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
    ``num_crowd`` counts the kept boxes with ``iscrowd=1``. ``images`` maps what the header scan found to
    image ids: ``"exif_rotated"`` (read rotated by their EXIF tag, the normal case), ``"exif_ignored"`` (their
    records give the unrotated size, so they are read unrotated: warned) and each non-RGB colour mode
    converted to RGB (``"16-bit"``, ``"palette"``, ``"grayscale"``, ``"RGBA"``, ...).
    """

    source: str
    num_images: int = 0
    num_boxes: int = 0
    num_negatives: int = 0
    num_crowd: int = 0
    placeholder: str | None = None
    dropped: dict[str, list[Any]] = field(default_factory=dict)
    clipped: list[Any] = field(default_factory=list)
    images: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def num_dropped(self) -> int:
        return sum(len(ids) for ids in self.dropped.values())

    def summary(self) -> str:
        """One line: kept images/boxes, negatives, the placeholder, crowd regions, dropped boxes by reason, clipped
        boxes, and what the image scan found."""
        parts = [
            f"{self.source}: {self.num_images} images, {self.num_boxes} boxes, {self.num_negatives} negatives"
        ]
        if self.placeholder is not None:
            parts.append(f"placeholder category {self.placeholder!r} left out of the classes")
        if self.num_crowd:
            parts.append(f"{self.num_crowd} of the boxes are crowd regions (iscrowd=1, ignored)")
        for reason, ids in self.dropped.items():
            parts.append(f"dropped {len(ids)} {reason} boxes (annotation ids {_quote_ids(ids)})")
        if self.clipped:
            parts.append(f"clipped {len(self.clipped)} boxes to the image (ids {_quote_ids(self.clipped)})")
        ignored = self.images.get("exif_ignored", [])
        if ignored:
            parts.append(
                f"{len(ignored)} images read WITHOUT their EXIF rotation because their records give the stored "
                f"size (image ids {_quote_ids(ignored)}); check their boxes with 'detector' pictures"
            )
        for what, ids in self.images.items():
            if what != "exif_ignored":
                parts.append(f"{len(ids)} {what.replace('_', ' ')} images (ids {_quote_ids(ids)})")
        return "; ".join(parts)

    def warn_if_changed(self) -> None:
        """One warning per split when boxes were dropped or clipped or images read without their rotation."""
        if self.dropped or self.clipped or self.images.get("exif_ignored"):
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


def category_mapping(
    categories: Sequence[dict[str, Any]], source: str | Path = "the annotation file"
) -> tuple[list[str], dict[int, int], str | None]:
    """Class names, ``category id -> label`` (contiguous, in id order) and the dropped placeholder's name.

    Raises:
        DataError: naming ``source``, when two kept categories share an id or a name.
    """
    placeholder = find_placeholder(categories)
    kept = sorted((c for c in categories if c is not placeholder), key=lambda c: c["id"])
    for what, key in (("an id", lambda c: int(c["id"])), ("a name", lambda c: str(c["name"]))):
        values = [key(c) for c in kept]
        repeated = {v for v in values if values.count(v) > 1}
        if repeated:
            listed = ", ".join(f"{c['id']}: {c['name']!r}" for c in kept if key(c) in repeated)
            raise DataError(
                f"{source}: categories share {what} ({listed}); each class needs its own id and name. Rename or "
                "merge them (a Roboflow placeholder is the lowest-id category whose name is every other "
                "category's supercategory)"
            )
    names = [str(c["name"]) for c in kept]
    ids = [int(c["id"]) for c in kept]
    return names, dict(zip(ids, range(len(ids)), strict=True)), placeholder and placeholder["name"]


def clean_box(
    bbox_xywh: Sequence[float], width: float, height: float, record: Any, report: DatasetReport
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
        raise DataError(
            f"{where}: 'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}; fix the record"
        )


def _check_records(data: Any, path: Path) -> None:
    """Raise a ``DataError`` naming the file and record when ``data`` is not a COCO detection export."""
    fix = "expected a COCO detection export (e.g. Roboflow 'COCO JSON' format)"
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in REQUIRED_KEYS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{path}: not a COCO export: needs lists {list(REQUIRED_KEYS)}, found {found}; {fix}")
    needed = {"images": ("id", "file_name", "width", "height"), "categories": ("id", "name")}
    needed["annotations"] = ("image_id", "category_id", "bbox")
    for key, fields in needed.items():
        for index, record in enumerate(data[key]):
            missing = [f for f in fields if not isinstance(record, dict) or f not in record]
            if missing:
                raise DataError(f"{path}: {key}[{index}] lacks {missing}; {fix}")


def _number(record: dict[str, Any], key: str, default: float, where: str) -> float:
    """``record[key]`` as a finite number ``>= 0`` (``default`` when absent); a ``DataError`` otherwise."""
    value = record.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise DataError(f"{where}: {key!r} must be a number >= 0, got {value!r}; fix the record")
    return float(value)


def _image_index(images: Sequence[dict[str, Any]], path: Path) -> dict[Any, int]:
    """``image id -> position``; duplicate ids and unusable sizes are errors naming the record."""
    index_of: dict[Any, int] = {}
    for index, image in enumerate(images):
        if image["id"] in index_of:
            raise DataError(
                f"{path}: image id {image['id']} appears twice (images[{index}]); ids must be unique"
            )
        for key in ("width", "height"):
            if _number(image, key, 0, f"{path}: image id {image['id']}") == 0:
                raise DataError(f"{path}: image id {image['id']} has {key} 0; re-export the data set")
        index_of[image["id"]] = index
    return index_of


def parse_coco(
    data: dict[str, Any], path: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Tensor]], list[str], DatasetReport]:
    """Validate a COCO dict and turn it into one annotation dict per image.

    Returns ``(images, annotations, class_names, report)``; ``images`` are the image records in file order,
    ``annotations[i]`` holds ``boxes`` (``float32 [K, 4]`` xyxy), ``labels`` (``int64 [K]``), ``iscrowd``
    (``int64 [K]``, 0/1) and ``area`` (``float32 [K]``, the record's ``area``, else the clipped box's).
    Errors (:class:`~detector.errors.DataError`) name ``path`` and the record (image id, annotation id).
    """
    _check_records(data, path)
    names, label_of, placeholder = category_mapping(data["categories"], path)
    placeholder_ids = {c["id"] for c in data["categories"]} - set(label_of)
    images = data["images"]
    index_of = _image_index(images, path)
    report = DatasetReport(source=str(path), num_images=len(images), placeholder=placeholder)
    columns: list[dict[str, list]] = [{"boxes": [], "labels": [], "iscrowd": [], "area": []} for _ in images]
    for index, ann in enumerate(data["annotations"]):
        record = ann.get("id", f"annotations[{index}]")
        where = f"{path}: annotation id {record}"
        if ann["image_id"] not in index_of:
            raise DataError(
                f"{where} points to unknown image_id {ann['image_id']}; fix or delete the annotation"
            )
        if ann["category_id"] in placeholder_ids:
            report.dropped.setdefault("placeholder", []).append(record)
            continue
        if ann["category_id"] not in label_of:
            raise DataError(
                f"{where} has unknown category_id {ann['category_id']} (known: {sorted(label_of)}); "
                "fix the annotation or add the category"
            )
        _check_bbox(ann["bbox"], where)
        crowd = _number(ann, "iscrowd", 0, where)
        if crowd not in (0, 1):
            raise DataError(f"{where}: 'iscrowd' must be 0 or 1, got {ann['iscrowd']!r}; fix the record")
        image = images[index_of[ann["image_id"]]]
        box = clean_box(ann["bbox"], image["width"], image["height"], record, report)
        if box is not None:
            box_area = (box[2] - box[0]) * (box[3] - box[1])
            column = columns[index_of[ann["image_id"]]]
            column["boxes"].append(box)
            column["labels"].append(label_of[ann["category_id"]])
            column["iscrowd"].append(int(crowd))
            column["area"].append(_number(ann, "area", box_area, where))
    annotations = [_as_tensors(column) for column in columns]
    report.num_boxes = sum(len(a["labels"]) for a in annotations)
    report.num_negatives = sum(1 for a in annotations if len(a["labels"]) == 0)
    report.num_crowd = sum(int(a["iscrowd"].sum()) for a in annotations)
    return images, annotations, names, report


def _as_tensors(column: dict[str, list]) -> dict[str, Tensor]:
    """Per-image lists → ``boxes float32 [K, 4]``, ``labels``/``iscrowd`` ``int64 [K]``, ``area float32 [K]``."""
    return {
        "boxes": torch.tensor(column["boxes"], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(column["labels"], dtype=torch.int64),
        "iscrowd": torch.tensor(column["iscrowd"], dtype=torch.int64),
        "area": torch.tensor(column["area"], dtype=torch.float32),
    }


def apply_transforms(
    transforms: Transforms | None, image: Tensor, target: dict[str, Any]
) -> tuple[Tensor, dict]:
    """Run ``transforms(image, target)`` with ``target["boxes"]`` as ``tv_tensors.BoundingBoxes`` (xyxy).

    Works with the transforms of :mod:`detector.data.transforms` and with any ``torchvision.transforms.v2``
    pipeline; the returned image and boxes are plain tensors again. A pipeline that removes boxes
    (``v2.SanitizeBoundingBoxes``) must remove the per-box ``labels``, ``iscrowd`` and ``area`` with them
    (its ``labels_getter``).
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

    ``image, target = ds[i]``: without transforms ``image`` is ``uint8 [3, H, W]`` RGB at the original size
    (EXIF orientation applied, see :mod:`detector.data.images`) and ``target`` holds ``boxes`` (``float32
    [K, 4]`` xyxy pixels), ``labels`` (``int64 [K]`` in ``0..C-1``), ``iscrowd`` (``int64 [K]``), ``area``
    (``float32 [K]``, original pixels²) and ``image_id`` (int). ``ds.class_names[label]`` names a label,
    ``ds.category_ids[label]`` is its id in the annotation file; ``ds.report`` says what was dropped.

    Args:
        split_dir: folder with ``_annotations.coco.json`` and the images.
        transforms: ``(image, target) -> (image, target)``, e.g. :func:`~detector.data.transforms.train_transforms`.

    Raises:
        MissingPathError: the annotation file or image files are missing.
        DataError: the export cannot be used as it is (the message names the file, the record and the fix);
            an empty split is one.
    """

    def __init__(self, split_dir: str | Path, transforms: Transforms | None = None) -> None:
        self.root = Path(split_dir)
        path = self.root / ANNOTATIONS_FILE
        if not path.is_file():
            raise MissingPathError(
                f"{path} not found: give a split folder of a Roboflow COCO export (with {ANNOTATIONS_FILE})"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not valid JSON ({error}); re-download the export") from None
        self.images, self.annotations, self.class_names, self.report = parse_coco(data, path)
        if not self.images:
            raise DataError(
                f"{path}: the split has no images; add images to it in the export, or choose another split "
                "(data.train_split / data.val_split)"
            )
        _, label_of, _ = category_mapping(data["categories"], path)
        self.category_ids = sorted(label_of)  # labels are given in id order
        self.files, self.apply_exif, self.report.images = scan_images(self.root, self.images, str(path))
        self.transforms = transforms
        self.report.warn_if_changed()

    @property
    def targets(self) -> list[tuple[Tensor, Tensor]]:
        """``(boxes [K, 4], labels [K])`` of every image, in order (crowd regions included)."""
        return [(a["boxes"], a["labels"]) for a in self.annotations]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        record = self.images[index]
        name = f"{self.files[index]} (image id {record['id']})"
        image = read_image(
            self.files[index], name, (record["height"], record["width"]), self.apply_exif[index]
        )
        target = {key: value.clone() for key, value in self.annotations[index].items()}
        target["image_id"] = int(record["id"])
        return apply_transforms(self.transforms, image, target)
