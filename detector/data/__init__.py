"""Data layer: Roboflow COCO exports, the Hugging Face parquet layout, the generated arena, transforms, batching.

Every data set returns ``image, target`` with ``image`` ``uint8 [3, H, W]`` RGB and ``target`` holding ``boxes``
(``float32 [K, 4]`` xyxy pixels), ``labels`` (``int64 [K]`` in ``0..C-1``), ``iscrowd`` (``int64 [K]``, 1 for
a crowd region), ``area`` (``float32 [K]``, original pixels²: COCO's size buckets) and ``image_id`` (int).
"""

from detector.data.arena_scene import ARENA_CLASSES
from detector.data.coco import CocoDetection, DatasetReport
from detector.data.collate import build_dataloader, collate, pad_targets
from detector.data.hf_parquet import HFParquetDetection
from detector.data.transforms import eval_transforms, train_transforms, unletterbox_boxes

__all__ = [
    "ARENA_CLASSES",
    "CocoDetection",
    "DatasetReport",
    "HFParquetDetection",
    "build_dataloader",
    "collate",
    "ensure_arena",
    "eval_transforms",
    "generate_arena",
    "pad_targets",
    "train_transforms",
    "unletterbox_boxes",
]


def __getattr__(name: str):
    """``generate_arena`` / ``ensure_arena`` are imported on first use, so that ``python -m detector.data.arena``
    does not find its own module already imported by this package."""
    if name in ("generate_arena", "ensure_arena"):
        from detector.data import arena

        return getattr(arena, name)
    raise AttributeError(f"module 'detector.data' has no attribute {name!r}")
