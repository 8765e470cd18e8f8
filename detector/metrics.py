"""COCO box mAP through faster-coco-eval, equal to pycocotools' ``COCOeval`` (Chapter 9).

Predictions and targets are lists with one dict per image, in the same order:

- prediction: ``boxes`` ``[K, 4]`` xyxy pixels, ``scores`` ``[K]``, ``labels`` ``[K]`` int64 in ``[0, C)``;
- target: ``boxes`` ``[M, 4]`` xyxy pixels, ``labels`` ``[M]`` int64, optional ``iscrowd`` ``[M]`` (0/1;
  crowd GTs are "ignore" regions: matching one is neither a TP nor an FP) and optional ``area`` ``[M]``
  (the area that decides small/medium/large; default: the box area ``w·h``).

Tensors, numpy arrays or lists are accepted. The COCO dicts are built in memory: image ids ``1..B`` in list
order, category id ``label + 1`` (COCO ids are 1-based), boxes converted to ``[x, y, w, h]`` in float64.
The category list is every label seen in the predictions or targets (``range(num_classes)`` when it is
given); a category without GT gets no AP (pycocotools' ``-1``), exactly as in pycocotools.

Why faster-coco-eval: its C++ ``COCOeval_faster`` gives pycocotools' numbers (``tests/package/test_metrics.py``
checks agreement to 1e-6) several times faster. From tensors to the 12 numbers, 500 images × 100 detections
on our 2-core CPU: pycocotools 1.9 s, this module 0.28 s (idle machine); 5000 images on a loaded machine:
70 s vs 16 s, faster-coco-eval's own ``loadRes`` route 23 s (``benchmarks/bench_eval.py``,
``benchmarks/results/eval.json``). The conversion is vectorised and pauses the garbage collector.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from faster_coco_eval.core import COCO, COCOeval_faster

# The 12 numbers of COCOeval.summarize() for boxes, in its order (pycocotools cocoeval.py, _summarizeDets).
METRIC_KEYS: tuple[str, ...] = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
# Index of IoU 0.50 in COCO's thresholds 0.50:0.05:0.95; area index 0 = "all", maxDets index -1 = 100.
IOU50_INDEX, AREA_ALL_INDEX, MAXDET_LAST_INDEX = 0, 0, -1


def _silent(*args: Any, **kwargs: Any) -> None:
    """A print function that prints nothing (faster-coco-eval logs every step and prints the summary)."""


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building ~10⁵ small dicts (they hold no cycles).

    Each allocation burst triggers full collections that scan all of them again: on 5000 images × 100
    detections this was most of the conversion time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _field(record: Mapping[str, Any], key: str, dtype: type) -> np.ndarray | None:
    """``record[key]`` (tensor, array or list) as a flat numpy array of ``dtype``, or None when absent."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=dtype)
    return array.reshape(-1, 4) if key == "boxes" else array.reshape(-1)


def _stack(
    records: Sequence[Mapping[str, Any]], what: str, keys: dict[str, type], optional: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Concatenate ``keys`` over all records plus ``image_index``; checks presence and lengths."""
    columns: dict[str, list[np.ndarray]] = {key: [] for key in [*keys, "image_index"]}
    for index, record in enumerate(records):
        arrays = {key: _field(record, key, dtype) for key, dtype in keys.items()}
        missing = [key for key, array in arrays.items() if array is None and key not in optional]
        if missing:
            raise KeyError(
                f"{what}[{index}] has no {missing}; expected keys {list(keys)} (optional: {optional})"
            )
        count = len(arrays["boxes"])
        for key, array in arrays.items():
            if array is not None and len(array) != count:
                raise ValueError(f"{what}[{index}]: {len(array)} {key!r} for {count} boxes; give one per box")
            columns[key].append(array if array is not None else np.full(count, np.nan))
        columns["image_index"].append(np.full(count, index, dtype=np.int64))
    return {
        key: np.concatenate(arrays) if arrays else np.zeros((0, 4) if key == "boxes" else 0)
        for key, arrays in columns.items()
    }


def _xywh(boxes: np.ndarray) -> np.ndarray:
    """``[K, 4]`` xyxy → COCO ``[x, y, w, h]``, in float64 like pycocotools' C IoU."""
    return np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), axis=1)


def _gt_annotations(targets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """COCO ground-truth annotations (ids from 1: faster-coco-eval reserves id 0 for "unmatched")."""
    keys = {"boxes": np.float64, "labels": np.int64, "iscrowd": np.float64, "area": np.float64}
    data = _stack(targets, "targets", keys, optional=("iscrowd", "area"))
    boxes_xywh = _xywh(data["boxes"])
    box_area = boxes_xywh[:, 2] * boxes_xywh[:, 3]
    area = np.where(np.isnan(data["area"]), box_area, data["area"])
    iscrowd = np.nan_to_num(data["iscrowd"]).astype(np.int64)
    rows = zip(
        (data["image_index"] + 1).tolist(),
        (data["labels"] + 1).tolist(),
        boxes_xywh.tolist(),
        area.tolist(),
        iscrowd.tolist(),
        strict=True,
    )
    return [
        dict(id=k + 1, image_id=image_id, category_id=category_id, bbox=box, area=box_area, iscrowd=crowd)
        for k, (image_id, category_id, box, box_area, crowd) in enumerate(rows)
    ]


def _dt_annotations(predictions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """COCO result annotations with the fields ``COCO.loadRes`` adds for boxes (area = w·h, iscrowd 0)."""
    keys = {"boxes": np.float64, "labels": np.int64, "scores": np.float64}
    data = _stack(predictions, "predictions", keys)
    boxes_xywh = _xywh(data["boxes"])
    rows = zip(
        (data["image_index"] + 1).tolist(),
        (data["labels"] + 1).tolist(),
        boxes_xywh.tolist(),
        data["scores"].tolist(),
        (boxes_xywh[:, 2] * boxes_xywh[:, 3]).tolist(),
        strict=True,
    )
    return [
        dict(
            id=k + 1, image_id=image_id, category_id=category_id, bbox=box, score=score, area=area, iscrowd=0
        )
        for k, (image_id, category_id, box, score, area) in enumerate(rows)
    ]


def _run_cocoeval(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int | None = None,
) -> COCOeval_faster:
    """Evaluate, accumulate and summarise (silently); returns the evaluator (``.stats``, ``.eval``)."""
    if len(predictions) != len(targets):
        raise ValueError(
            f"{len(predictions)} prediction dicts but {len(targets)} target dicts: give one of each per image, "
            "in the same order (an image without detections gets empty tensors)"
        )
    with _gc_paused():
        gt_annotations = _gt_annotations(targets)
        dt_annotations = _dt_annotations(predictions)
        category_ids = {a["category_id"] for a in gt_annotations} | {a["category_id"] for a in dt_annotations}
        if num_classes is not None:
            outside = sorted(c - 1 for c in category_ids if not 1 <= c <= num_classes)
            if outside:
                raise ValueError(f"labels {outside[:5]} are outside [0, num_classes={num_classes})")
            category_ids = set(range(1, num_classes + 1))
        images = [dict(id=index + 1) for index in range(len(targets))]
        categories = [dict(id=category_id, name=str(category_id - 1)) for category_id in sorted(category_ids)]

        coco_gt = COCO(print_function=_silent)
        coco_gt.dataset = dict(images=images, annotations=gt_annotations, categories=categories)
        coco_gt.createIndex()
        coco_dt = COCO(print_function=_silent)
        coco_dt.dataset = dict(images=images, annotations=dt_annotations, categories=categories)
        coco_dt.createIndex()

        evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=_silent)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _stats_dict(evaluator: COCOeval_faster) -> dict[str, float]:
    return {
        key: float(value) for key, value in zip(METRIC_KEYS, evaluator.stats[: len(METRIC_KEYS)], strict=True)
    }


def _per_class(evaluator: COCOeval_faster, num_classes: int) -> dict[str, list[float]]:
    """Per-class AP@[.5:.95] and AP50 from ``precision [T, R, K, A, M]`` (area all, 100 dets)."""
    precision = evaluator.eval["precision"][:, :, :, AREA_ALL_INDEX, MAXDET_LAST_INDEX]  # [T, R, K]
    ap, ap50 = [float("nan")] * num_classes, [float("nan")] * num_classes
    for k, category_id in enumerate(evaluator.params.catIds):
        label = int(category_id) - 1
        if not 0 <= label < num_classes:
            continue
        values = precision[:, :, k]
        if (values > -1).any():
            ap[label] = float(values[values > -1].mean())
            ap50[label] = float(values[IOU50_INDEX][values[IOU50_INDEX] > -1].mean())
    return {"ap": ap, "ap50": ap50}


def coco_evaluate(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """:func:`coco_map` and :func:`per_class_ap` from one evaluation (half the time of calling both)."""
    evaluator = _run_cocoeval(predictions, targets, num_classes)
    return _stats_dict(evaluator), _per_class(evaluator, num_classes)


def coco_map(
    predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """The 12 COCO box metrics, equal to pycocotools ``COCOeval(iouType="bbox")`` on the same input.

    Args:
        predictions: one dict per image: ``boxes [K, 4]`` xyxy, ``scores [K]``, ``labels [K]`` int.
        targets: one dict per image: ``boxes [M, 4]`` xyxy, ``labels [M]``, optional ``iscrowd [M]`` and
            ``area [M]``.

    Returns:
        ``{key: float}`` for the keys :data:`METRIC_KEYS` (``map`` = AP@[.5:.95], ``map_50``, ``map_75``,
        ``map_small/medium/large``, ``mar_1/10/100``, ``mar_small/medium/large``). As in pycocotools a
        number is ``-1.0`` where no category has a GT in that area range (e.g. ``map_small`` without small
        objects, or everything when there is no GT at all); a category with GT but no detection counts
        as AP 0. Each image keeps its 100 best detections per category (COCO's maxDets).
    """
    return _stats_dict(_run_cocoeval(predictions, targets))


def per_class_ap(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int,
) -> dict[str, list[float]]:
    """Per-class AP from the same COCO evaluation as :func:`coco_map` (area "all", 100 detections).

    Returns:
        ``{"ap": [C floats], "ap50": [C floats]}``: AP@[.5:.95] and AP@0.5 of class ``c`` at index ``c``;
        ``nan`` for a class without (non-crowd) GT, where AP is undefined.
    """
    return _per_class(_run_cocoeval(predictions, targets, num_classes), num_classes)
