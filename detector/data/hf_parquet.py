"""The Hugging Face parquet layout of Roboflow 100 data sets (``Francesco/halo-infinite-angel-videogame``).

One row per image: ``image_id`` (int), ``image`` (struct ``{bytes, path}``: the encoded JPEG/PNG),
``width``, ``height`` and ``objects`` (struct of lists ``{id, area, bbox, category}``, ``bbox`` in COCO
``[x, y, w, h]`` pixels). Category 0 is Roboflow's placeholder; categories ``1..C`` become labels ``0..C-1``.
Read with ``pyarrow``; annotations are validated at construction, images decoded lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from torch import Tensor
from torch.utils.data import Dataset

from detector.data.arena_scene import ARENA_CLASSES
from detector.data.coco import DatasetReport, Transforms, apply_transforms, clean_box, read_image

HALO_CLASSES = ARENA_CLASSES  # categories 1..4 of halo-infinite-angel-videogame (0 is the placeholder)
COLUMNS = ("image_id", "image", "width", "height", "objects")
OBJECT_FIELDS = ("id", "bbox", "category")


class HFParquetDetection(Dataset):
    """A parquet file of the Hugging Face Roboflow-100 layout, with :class:`CocoDetection`'s sample format.

    Args:
        parquet_path: the ``.parquet`` file (one split).
        transforms: ``(image, target) -> (image, target)``, e.g. :func:`~detector.data.transforms.eval_transforms`.
        class_names: names of categories ``1..C`` (default: the halo classes).
    """

    def __init__(
        self,
        parquet_path: str | Path,
        transforms: Transforms | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(parquet_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} not found: give a .parquet file of the Hugging Face layout")
        self.table = pq.read_table(self.path)
        missing = [c for c in COLUMNS if c not in self.table.column_names]
        if missing:
            raise ValueError(
                f"{self.path}: columns {missing} missing (found {self.table.column_names}); "
                f"expected the Hugging Face Roboflow-100 layout {list(COLUMNS)}"
            )
        self.class_names = list(class_names or HALO_CLASSES)
        self.transforms = transforms
        self.report = DatasetReport(
            source=str(self.path), num_images=self.table.num_rows, placeholder="category 0"
        )
        columns = {
            name: self.table.column(name).to_pylist() for name in ("image_id", "width", "height", "objects")
        }
        self.image_ids = [int(i) for i in columns["image_id"]]
        self.sizes = list(zip(columns["height"], columns["width"], strict=True))
        self.targets = [
            self._parse_objects(row, objects, width, height)
            for row, (objects, width, height) in enumerate(
                zip(columns["objects"], columns["width"], columns["height"], strict=True)
            )
        ]
        self.report.num_boxes = sum(len(labels) for _, labels in self.targets)
        self.report.num_negatives = sum(1 for _, labels in self.targets if len(labels) == 0)
        self.report.warn_if_changed()

    def _parse_objects(
        self, row: int, objects: dict[str, Any] | None, width: int, height: int
    ) -> tuple[Tensor, Tensor]:
        where = f"{self.path}: row {row} (image_id {self.image_ids[row]})"
        objects = objects or {}
        missing = [f for f in OBJECT_FIELDS if f not in objects]
        if missing:
            raise ValueError(
                f"{where}: 'objects' lacks {missing}; expected a struct of lists {list(OBJECT_FIELDS)}"
            )
        boxes, labels = [], []
        for ann_id, bbox, category in zip(objects["id"], objects["bbox"], objects["category"], strict=True):
            if category == 0:
                self.report.dropped.setdefault("placeholder", []).append(ann_id)
                continue
            if not 1 <= category <= len(self.class_names):
                raise ValueError(
                    f"{where}, object id {ann_id}: category {category} outside 1..{len(self.class_names)}; "
                    f"pass class_names for all categories (got {self.class_names})"
                )
            if bbox is None or len(bbox) != 4:
                raise ValueError(f"{where}, object id {ann_id}: bbox must be [x, y, w, h], got {bbox!r}")
            box = clean_box(bbox, width, height, ann_id, self.report)
            if box is not None:
                boxes.append(box)
                labels.append(category - 1)
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(
            labels, dtype=torch.int64
        )

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
        raise ValueError(f"{self.path}: row {index} has neither image bytes nor an image path")

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        name = f"{self.path}: row {index} (image_id {self.image_ids[index]})"
        image = read_image(self._image_source(index), name, self.sizes[index])
        boxes, labels = self.targets[index]
        target = {"boxes": boxes.clone(), "labels": labels.clone(), "image_id": self.image_ids[index]}
        return apply_transforms(self.transforms, image, target)
