"""Running a trained detector: COCO evaluation over a loader, loading weights, predicting on image files.

Evaluation follows COCO's rules: detections are compared with the ground truth **in the original image
coordinates** — the letterboxed predictions are mapped back with ``unletterbox_boxes`` (each eval target
carries its ``letterbox`` record), and so are the letterboxed GT boxes (an exact inverse, up to float
rounding) — then :func:`detector.metrics.coco_evaluate` computes the 12 COCO numbers and per-class AP.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from detector import distributed
from detector.checkpoint import load_checkpoint
from detector.config import Config, EvalConfig, config_from_dict
from detector.data.coco import read_image
from detector.data.transforms import eval_transforms, unletterbox_boxes
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
) -> list[dict[str, Tensor]]:
    """Detections for ``images uint8 [B, 3, S, S]`` on the model's device, as CPU tensors.

    With ``letterboxes`` (the eval targets' ``letterbox`` records) the boxes are mapped back to each
    original image; otherwise they stay in input pixels.
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
    )
    results = []
    for index, detection in enumerate(detections):
        detection = {key: value.cpu() for key, value in detection.items()}
        if letterboxes is not None:
            detection["boxes"] = unletterbox_boxes(detection["boxes"], **letterboxes[index])
        results.append(detection)
    return results


def _original_target(target: dict[str, Any]) -> dict[str, Tensor]:
    """An eval target in original image coordinates, for COCO evaluation."""
    return {
        "boxes": unletterbox_boxes(target["boxes"].float(), **target["letterbox"]),
        "labels": target["labels"],
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
    """A trained model from a ``last.pt``/``best.pt`` (EMA weights when present), with its config and classes."""
    state = load_checkpoint(weights, map_location="cpu")
    missing = [key for key in ("config", "class_names", "model") if key not in state]
    if missing:
        raise ValueError(
            f"{weights}: not a detector checkpoint (missing {missing}); give a last.pt or best.pt"
        )
    config = config_from_dict(state["config"], source=f"{weights} (config)")
    class_names = list(state["class_names"])
    model = build_detector(config.model, len(class_names))
    model.load_state_dict(state["ema"]["module"] if state.get("ema") else state["model"])
    return model.to(device).eval(), config, class_names


def expand_sources(source: str) -> list[Path]:
    """An image file, a folder (its images, sorted) or a glob pattern → image paths."""
    path = Path(source)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
        paths = [path]
    else:
        paths = sorted(
            Path(p) for p in glob.glob(source, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES
        )
    if not paths:
        raise FileNotFoundError(
            f"no images found at {source!r}: give an image file, a folder or a glob (e.g. 'photos/*.jpg') "
            f"with suffixes {list(IMAGE_SUFFIXES)}"
        )
    return paths


@torch.no_grad()
def predict_files(
    model: Detector, paths: list[Path], image_size: int, eval_config: EvalConfig, device: torch.device
) -> Iterable[tuple[Path, Tensor, dict[str, Tensor]]]:
    """Yield ``(path, original image uint8 [3, H, W], detections in original pixels)`` per file."""
    transform = eval_transforms(image_size)
    for path in paths:
        image = read_image(path, str(path))
        letterboxed, target = transform(image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)})
        (detection,) = predict_batch(model, letterboxed[None].to(device), eval_config, [target["letterbox"]])
        yield path, image, detection


def coco_results(
    records: list[tuple[Path, dict[str, Tensor]]], class_names: list[str]
) -> list[dict[str, Any]]:
    """COCO results JSON entries (``bbox`` xywh; ``category_id = label + 1`` as in a Roboflow export)."""
    results = []
    for image_id, (path, detection) in enumerate(records):
        columns = (detection["boxes"].tolist(), detection["scores"].tolist(), detection["labels"].tolist())
        for box, score, label in zip(*columns, strict=True):
            x1, y1, x2, y2 = box
            results.append({
                "image_id": image_id, "file_name": path.name, "category_id": label + 1,
                "category_name": class_names[label], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score,
            })  # fmt: skip
    return results


def write_json(data: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


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
