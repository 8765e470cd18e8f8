"""Running a trained detector: COCO evaluation over a loader, loading weights, predicting on image files.

Evaluation follows COCO's rules: detections are compared with the ground truth **in the original image
coordinates** — the letterboxed predictions are mapped back with ``unletterbox_boxes`` (each eval target
carries its ``letterbox`` record), and so are the letterboxed GT boxes (an exact inverse, up to float
rounding) — then :func:`detector.metrics.coco_evaluate` computes the 12 COCO numbers and per-class AP.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detector import distributed
from detector.checkpoint import check_format, load_checkpoint
from detector.config import Config, EvalConfig, config_from_dict
from detector.data.transforms import eval_transforms, unletterbox_boxes
from detector.errors import CheckpointError, DataError, MissingPathError
from detector.metrics import coco_evaluate
from detector.model import Detector, build_detector
from detector.postprocess import postprocess

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PREDICTION_GRID_IMAGES = 8  # validation images shown in predictions.png


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


@torch.no_grad()
def predict_batch(
    model: nn.Module,
    images: Tensor,
    eval_config: EvalConfig,
    letterboxes: list[dict[str, Any]] | None = None,
    amp_dtype: torch.dtype | None = None,
    agnostic_nms: bool = False,
) -> list[dict[str, Tensor]]:
    """Detections for ``images uint8 [B, 3, S, S]`` on the model's device, as CPU tensors.

    With ``letterboxes`` (the eval targets' ``letterbox`` records) the boxes are mapped back to each
    original image; otherwise they stay in input pixels. ``agnostic_nms``: one NMS over all classes.
    """
    was_training = model.training
    model.eval()
    try:
        with _autocast(images.device, amp_dtype):
            outputs = model(images)
    finally:
        model.train(was_training)
    detections = postprocess(
        outputs,
        score_mode=eval_config.score_mode,
        score_thresh=eval_config.score_thresh,
        pre_nms_topk=eval_config.pre_nms_topk,
        nms_iou=eval_config.nms_iou,
        max_det=eval_config.max_det,
        image_size=tuple(images.shape[-2:]),
        agnostic_nms=agnostic_nms,
    )
    results = []
    for index, detection in enumerate(detections):
        detection = {key: value.cpu() for key, value in detection.items()}
        if letterboxes is not None:
            detection["boxes"] = unletterbox_boxes(detection["boxes"], **letterboxes[index])
        results.append(detection)
    return results


def _original_target(target: dict[str, Any]) -> dict[str, Tensor]:
    """An eval target in original image coordinates, for COCO evaluation (``iscrowd``/``area`` kept if given)."""
    kept = {key: target[key] for key in ("iscrowd", "area") if key in target}
    return {
        "boxes": unletterbox_boxes(target["boxes"].float(), **target["letterbox"]),
        "labels": target["labels"],
        **kept,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, list[dict[str, Any]]]],
    device: torch.device,
    eval_config: EvalConfig,
    num_classes: int,
    amp_dtype: torch.dtype | None = None,
) -> dict[str, Any]:
    """COCO metrics of ``model`` on ``loader`` (eval transforms), gathered over all processes.

    Returns:
        The 12 keys of :data:`detector.metrics.METRIC_KEYS` plus ``per_class_ap`` and ``per_class_ap50``
        (lists of ``C`` floats, ``nan`` for a class without GT) and ``num_images``; identical on every rank.
    """
    predictions: list[dict[str, Tensor]] = []
    targets: list[dict[str, Tensor]] = []
    for images, batch_targets in loader:
        images = images.to(device, non_blocking=True)
        letterboxes = [target["letterbox"] for target in batch_targets]
        predictions += predict_batch(model, images, eval_config, letterboxes, amp_dtype)
        targets += [_original_target(target) for target in batch_targets]
    gathered = distributed.gather_to_main((predictions, targets))
    result = None
    if gathered is not None:
        all_predictions = [p for part, _ in gathered for p in part]
        all_targets = [t for _, part in gathered for t in part]
        stats, per_class = coco_evaluate(all_predictions, all_targets, num_classes)
        result = {**stats, "per_class_ap": per_class["ap"], "per_class_ap50": per_class["ap50"]}
        result["num_images"] = len(all_targets)
    return distributed.broadcast_from_main(result)


def load_detector(
    weights: str | Path, device: torch.device | str = "cpu"
) -> tuple[Detector, Config, list[str]]:
    """A trained model from a ``last.pt``/``best.pt`` (EMA weights when present), with its config and classes.

    The checkpoint holds every weight, so the model is built without ``model.pretrained``: a checkpoint
    trained from a local backbone weights file loads on a machine that does not have that file. A file of
    another checkpoint format (:data:`~detector.checkpoint.CHECKPOINT_FORMAT`) is a :class:`CheckpointError`.
    """
    state = load_checkpoint(weights, map_location="cpu")
    missing = [key for key in ("config", "class_names", "model") if key not in state]
    if missing:
        raise CheckpointError(
            f"{weights}: not a detector checkpoint (missing {missing}); give a last.pt or best.pt"
        )
    check_format(state, weights)
    config = config_from_dict(state["config"], source=f"{weights} (config)")
    class_names = list(state["class_names"])
    model = build_detector(dataclasses.replace(config.model, pretrained=None), len(class_names))
    model.load_state_dict(state["ema"]["module"] if state.get("ema") else state["model"])
    return model.to(device).eval(), config, class_names


def _expand_one(source: str | Path) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file():
        return [path]
    return sorted(
        Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES
    )


def expand_sources(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Image files, folders (their images, sorted) and glob patterns → image paths (each once, in order)."""
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    paths = list(dict.fromkeys(path for source in sources for path in _expand_one(source)))
    if not paths:
        raise MissingPathError(
            f"no images found at {', '.join(map(repr, map(str, sources)))}: give an image file, a folder or a "
            f"glob (e.g. 'photos/*.jpg') with suffixes {list(IMAGE_SUFFIXES)}"
        )
    return paths


def output_names(paths: Sequence[Path], suffix: str = ".jpg") -> list[str]:
    """One distinct output file name per input path: ``a.jpg``, or ``a_png.jpg`` next to ``a.jpg`` → ``a_jpg.jpg``.

    The stem alone when it is unique among ``paths``; the stem and the source suffix when stems collide
    (``a.png`` and ``a.jpg``); then ``_2``, ``_3``… for the same name in different folders.
    """
    stems = Counter(path.stem for path in paths)
    names: list[str] = []
    taken: set[str] = set()
    for path in paths:
        base = path.stem if stems[path.stem] == 1 else f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        name, copy = f"{base}{suffix}", 1
        while name in taken:
            copy += 1
            name = f"{base}_{copy}{suffix}"
        taken.add(name)
        names.append(name)
    return names


@torch.no_grad()
def predict_images(
    model: nn.Module,
    images: Iterable[Tensor],
    image_size: int,
    eval_config: EvalConfig,
    batch_size: int = 8,
    amp_dtype: torch.dtype | None = None,
    agnostic_nms: bool = False,
) -> Iterator[tuple[Tensor, dict[str, Tensor]]]:
    """Yield ``(image, detections in the image's own pixels)`` per image, running the model in batches.

    Args:
        model: a detector in eval mode; images go to its device.
        images: uint8 ``[3, H, W]`` RGB images of any sizes (read lazily, ``batch_size`` at a time).
        image_size: the letterbox side ``S`` the model sees.
    """
    device = next(model.parameters()).device
    transform = eval_transforms(image_size)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    iterator = iter(images)
    while batch := list(itertools.islice(iterator, batch_size)):
        letterboxed = [transform(image, dict(empty)) for image in batch]
        inputs = torch.stack([image for image, _ in letterboxed]).to(device)
        letterboxes = [target["letterbox"] for _, target in letterboxed]
        detections = predict_batch(model, inputs, eval_config, letterboxes, amp_dtype, agnostic_nms)
        yield from zip(batch, detections, strict=True)


def annotation_ids(
    annotations: str | Path, paths: Sequence[Path], class_names: Sequence[str]
) -> tuple[list[Any], list[Any]]:
    """The ids a COCO annotation file gives ``paths`` (by file name) and the classes (by the export's order).

    Returns:
        ``(image_ids, category_ids)``: one image id per path and one category id per label.

    Raises:
        DataError: the file's classes differ from the model's, or an image is not listed in it.
    """
    from detector.data.coco import category_mapping

    path = Path(annotations)
    if not path.is_file():
        raise MissingPathError(f"annotation file {str(path)!r} not found: give a COCO JSON (--annotations)")
    try:
        data = json.loads(path.read_text())
        names, label_of, _ = category_mapping(data["categories"])
        image_records = data["images"]
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a COCO annotation file ({error!r}); give the export's JSON") from None
    if names != list(class_names):
        raise DataError(
            f"{path} has classes {names}, the weights {list(class_names)}: give the annotation file of the "
            "data set the model was trained on"
        )
    id_of = {Path(str(image["file_name"])).name: image["id"] for image in image_records}
    unknown = [p.name for p in paths if p.name not in id_of]
    if unknown:
        raise DataError(
            f"{path} lists no image named {unknown[:5]} ({len(unknown)} of {len(paths)} images): predict on "
            "that data set's images or leave out --annotations"
        )
    category_of = {label: category_id for category_id, label in label_of.items()}
    return [id_of[p.name] for p in paths], [category_of[label] for label in range(len(names))]


def coco_results(
    detections: Sequence[dict[str, Tensor]],
    class_names: Sequence[str],
    image_ids: Sequence[Any] | None = None,
    category_ids: Sequence[Any] | None = None,
    file_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """COCO results JSON entries, one per detection (``bbox`` ``[x, y, w, h]`` in original pixels).

    Args:
        detections: per image, ``boxes [K, 4]`` xyxy, ``scores [K]``, ``labels [K]``.
        image_ids, category_ids: from :func:`annotation_ids`; default the image's index and ``label + 1``
            (a Roboflow export's ids when its placeholder category is 0).
        file_names: added to each entry as ``file_name`` when given.
    """
    results = []
    for index, detection in enumerate(detections):
        image_id = index if image_ids is None else image_ids[index]
        columns = (detection["boxes"].tolist(), detection["scores"].tolist(), detection["labels"].tolist())
        for (x1, y1, x2, y2), score, label in zip(*columns, strict=True):
            entry = {
                "image_id": image_id,
                "category_id": label + 1 if category_ids is None else category_ids[label],
                "category_name": class_names[label],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": score,
            }
            if file_names is not None:
                entry["file_name"] = file_names[index]
            results.append(entry)
    return results


def strict_json(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, ±inf) replaced by ``None`` (JSON ``null``)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: strict_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(value) for value in data]
    return data


def write_json(data: Any, path: Path) -> None:
    """Write strict JSON (``null`` where a value is NaN or infinite, never the non-standard ``NaN``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict_json(data), indent=1, allow_nan=False))


def save_predictions_figure(
    model: nn.Module,
    dataset: Any,
    class_names: list[str],
    eval_config: EvalConfig,
    device: torch.device,
    path: Path,
    count: int = PREDICTION_GRID_IMAGES,
) -> None:
    """``predictions.png``: the first ``count`` images of ``dataset`` (eval transforms) with GT and predictions."""
    from detector.visualize import predictions_grid

    samples = [dataset[index] for index in range(min(count, len(dataset)))]
    images = torch.stack([image for image, _ in samples])
    predictions = predict_batch(model, images.to(device), eval_config)
    targets = [{"boxes": target["boxes"], "labels": target["labels"]} for _, target in samples]
    figure = predictions_grid(images, predictions, targets, class_names=class_names)
    figure.savefig(path, dpi=120)
