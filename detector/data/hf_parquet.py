"""The Hugging Face parquet layout of Roboflow 100 data sets (``Francesco/halo-infinite-angel-videogame``).

One row per image: ``image_id`` (int), ``image`` (struct ``{bytes, path}``: the encoded JPEG/PNG),
``width``, ``height`` and ``objects`` (struct of lists ``{id, area, bbox, category}``, ``bbox`` in COCO
``[x, y, w, h]`` pixels). Category 0 is Roboflow's placeholder; categories ``1..C`` become labels ``0..C-1``.

The class names come from the ``class_names`` argument (``data.class_names``) or else from the file: the
Hugging Face ``datasets`` library stores the features in the parquet schema metadata (key ``huggingface``),
where ``objects.category`` is a ``ClassLabel`` whose ``names`` list categories ``0..C`` (placeholder first).
A file with neither is an error rather than a guess. ``area`` travels to ``target["area"]`` (the box area
when absent); the layout has no crowd flag, so ``target["iscrowd"]`` is all 0.
Read with ``pyarrow``; annotations are validated at construction, images decoded lazily.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor
from torch.utils.data import Dataset

from detector.data.coco import DatasetReport, Transforms, apply_transforms, clean_box
from detector.data.images import read_image
from detector.errors import DataError, MissingPathError

COLUMNS = ("image_id", "image", "width", "height", "objects")
OBJECT_FIELDS = ("id", "bbox", "category")
HF_METADATA_KEY = b"huggingface"  # schema metadata written by the Hugging Face ``datasets`` library


def _class_label_names(feature: Any) -> list[str] | None:
    """``names`` of a ``ClassLabel`` feature dict, looking through ``Sequence``/``List`` wrappers."""
    while isinstance(feature, dict) and "feature" in feature and feature.get("_type") != "ClassLabel":
        feature = feature["feature"]
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names"):
        return [str(name) for name in feature["names"]]
    return None


def metadata_category_names(schema: Any) -> list[str] | None:
    """Names of categories ``0..C`` (0: the placeholder) from the ``datasets`` metadata of a parquet schema.

    ``objects`` is either a sequence of structs (``{"feature": {"category": ClassLabel, ...}}``) or a struct
    of sequences (``{"category": {"feature": ClassLabel}, ...}``); both are read. ``None`` without metadata.
    """
    raw = (schema.metadata or {}).get(HF_METADATA_KEY)
    if not raw:
        return None
    objects = json.loads(raw).get("info", {}).get("features", {}).get("objects", {})
    while isinstance(objects, dict) and "category" not in objects and "feature" in objects:
        objects = objects["feature"]
    return _class_label_names(objects.get("category")) if isinstance(objects, dict) else None


class HFParquetDetection(Dataset):
    """A parquet file of the Hugging Face Roboflow-100 layout, with :class:`CocoDetection`'s sample format.

    Args:
        parquet_path: the ``.parquet`` file (one split).
        transforms: ``(image, target) -> (image, target)``, e.g. :func:`~detector.data.transforms.eval_transforms`.
        class_names: names of categories ``1..C`` (default: the file's Hugging Face metadata).

    Raises:
        MissingPathError: no such file. DataError: columns missing, no class names, a bad object record.
    """

    def __init__(
        self,
        parquet_path: str | Path,
        transforms: Transforms | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(parquet_path)
        if not self.path.is_file():
            raise MissingPathError(f"{self.path} not found: give a .parquet file of the Hugging Face layout")
        try:
            self.table = pq.read_table(self.path)
        except (pa.ArrowException, OSError) as error:
            raise DataError(
                f"{self.path}: not a readable parquet file ({error}); download the split again"
            ) from None
        missing = [c for c in COLUMNS if c not in self.table.column_names]
        if missing:
            raise DataError(
                f"{self.path}: columns {missing} missing (found {self.table.column_names}); "
                f"expected the Hugging Face Roboflow-100 layout {list(COLUMNS)}"
            )
        categories = metadata_category_names(self.table.schema)
        names = class_names or (categories and categories[1:])
        if not names:
            raise DataError(
                f"{self.path}: no class names: the file has no Hugging Face metadata naming 'objects.category' "
                "(a ClassLabel); give them with data.class_names (names of categories 1..C, 0 being Roboflow's "
                "placeholder)"
            )
        self.class_names = [str(name) for name in names]
        if self.table.num_rows == 0:
            raise DataError(f"{self.path}: the split has no rows (images); choose another split file")
        self.transforms = transforms
        self.report = DatasetReport(
            source=str(self.path),
            num_images=self.table.num_rows,
            placeholder=categories[0] if categories else "category 0",
        )
        columns = {
            name: self.table.column(name).to_pylist() for name in ("image_id", "width", "height", "objects")
        }
        self.image_ids = [int(i) for i in columns["image_id"]]
        self.sizes = list(zip(columns["height"], columns["width"], strict=True))
        self.annotations = [
            self._parse_objects(row, objects, width, height)
            for row, (objects, width, height) in enumerate(
                zip(columns["objects"], columns["width"], columns["height"], strict=True)
            )
        ]
        self.report.num_boxes = sum(len(a["labels"]) for a in self.annotations)
        self.report.num_negatives = sum(1 for a in self.annotations if len(a["labels"]) == 0)
        self.report.warn_if_changed()

    @property
    def targets(self) -> list[tuple[Tensor, Tensor]]:
        """``(boxes [K, 4], labels [K])`` of every row, in order."""
        return [(a["boxes"], a["labels"]) for a in self.annotations]

    def _parse_objects(
        self, row: int, objects: dict[str, Any] | None, width: int, height: int
    ) -> dict[str, Tensor]:
        """One row's ``objects`` → ``boxes [K, 4]`` xyxy, ``labels [K]``, ``iscrowd [K]`` (0), ``area [K]``."""
        where = f"{self.path}: row {row} (image_id {self.image_ids[row]})"
        objects = objects or {}
        missing = [f for f in OBJECT_FIELDS if f not in objects]
        if missing:
            raise DataError(
                f"{where}: 'objects' lacks {missing}; expected a struct of lists {list(OBJECT_FIELDS)}"
            )
        boxes, labels, areas = [], [], []
        given_areas = objects.get("area") or [None] * len(objects["id"])
        for ann_id, bbox, category, area in zip(
            objects["id"], objects["bbox"], objects["category"], given_areas, strict=True
        ):
            if category == 0:
                self.report.dropped.setdefault("placeholder", []).append(ann_id)
                continue
            if not 1 <= category <= len(self.class_names):
                raise DataError(
                    f"{where}, object id {ann_id}: category {category} outside 1..{len(self.class_names)}; "
                    f"pass class_names for all categories (got {self.class_names})"
                )
            if bbox is None or len(bbox) != 4:
                raise DataError(f"{where}, object id {ann_id}: bbox must be [x, y, w, h], got {bbox!r}")
            box = clean_box(bbox, width, height, ann_id, self.report)
            if box is not None:
                boxes.append(box)
                labels.append(category - 1)
                areas.append((box[2] - box[0]) * (box[3] - box[1]) if area is None else float(area))
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
            "area": torch.tensor(areas, dtype=torch.float32),
        }

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return self.table.num_rows

    def _image_source(self, index: int) -> Path | bytes:
        cell = self.table.column("image")[index].as_py() or {}
        if cell.get("bytes"):
            return cell["bytes"]
        if cell.get("path"):
            return self.path.parent / cell["path"]
        raise DataError(f"{self.path}: row {index} has neither image bytes nor an image path")

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        name = f"{self.path}: row {index} (image_id {self.image_ids[index]})"
        image = read_image(self._image_source(index), name, self.sizes[index])
        target = {key: value.clone() for key, value in self.annotations[index].items()}
        target["image_id"] = self.image_ids[index]
        return apply_transforms(self.transforms, image, target)
