"""The Python API: ``detector.load(weights).predict(images)`` and ``detector.train(config, **overrides)``.

Example::

    import detector

    run = detector.train("arena_cpu", train__epochs=1)       # or {"train.epochs": 1}; returns a TrainResult
    model = detector.load(run.best)                           # or "runs/arena_cpu/best.pt"
    for result in model.predict(["a.jpg", "photos/"], conf=0.3):
        print(result.path, result.boxes, result.scores, result.names)

``predict`` runs in batches and returns one :class:`Detections` per image, with boxes in the ORIGINAL image's
pixels (the letterbox is undone).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from detector.config import Config, load_config
from detector.errors import UserError
from detector.inference import expand_sources, load_detector, predict_images
from detector.loaders import resolve_device
from detector.model import Detector

DEFAULT_CONF = 0.25  # an operating point for pictures; mAP uses eval.score_thresh (0.05)


@dataclass
class Detections:
    """The detections of one image, in its original pixels.

    Attributes:
        boxes: ``float32 [K, 4]`` xyxy; scores: ``float32 [K]`` descending; labels: ``int64 [K]``.
        names: the class name of each detection (``K`` strings).
        image_size: the original ``(H, W)``; path: the image file, or ``None`` for an in-memory image.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    names: list[str]
    image_size: tuple[int, int]
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.boxes)


def _as_image(image: Any) -> Tensor:
    """A uint8 RGB image as ``[3, H, W]``: a tensor ``[3, H, W]``, an ``[H, W, 3]`` array or a PIL image."""
    if isinstance(image, Tensor):
        tensor = image
    else:
        array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1) if array.ndim == 3 else None
    if tensor is None or tensor.dtype != torch.uint8 or tensor.ndim != 3 or tensor.shape[0] != 3:
        raise UserError(
            "predict takes image paths, folders, globs, uint8 tensors [3, H, W] or [B, 3, H, W], uint8 "
            f"arrays [H, W, 3] or PIL images; got {type(image).__name__} "
            f"{getattr(image, 'dtype', '')} {list(getattr(image, 'shape', []))}"
        )
    return tensor


def _sources(images: Any) -> tuple[list[Path | None], Iterable[Tensor]]:
    """Paths (``None`` for in-memory images) and a lazy stream of uint8 ``[3, H, W]`` images."""
    from detector.data.coco import read_image

    if isinstance(images, Tensor) and images.ndim == 4:
        images = list(images)
    if isinstance(images, (str, Path)) or (
        isinstance(images, Sequence) and images and all(isinstance(i, (str, Path)) for i in images)
    ):
        paths = expand_sources(images)
        return list(paths), (read_image(path, str(path)) for path in paths)
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    return [None] * len(items), [_as_image(item) for item in items]


class DetectorModel:
    """A trained detector ready to predict: what :func:`load` returns.

    Attributes:
        model: the :class:`~detector.model.Detector` (eval mode); config: its training config;
        class_names: one name per label; device: where it runs.
    """

    def __init__(self, model: Detector, config: Config, class_names: list[str], device: torch.device):
        self.model, self.config, self.class_names, self.device = model, config, class_names, device

    def predict(
        self,
        images: Any,
        conf: float = DEFAULT_CONF,
        iou: float | None = None,
        max_det: int | None = None,
        imgsz: int | None = None,
        batch_size: int = 8,
        half: bool = False,
        agnostic_nms: bool = False,
    ) -> list[Detections]:
        """Detect objects in ``images``; one :class:`Detections` per image, in input order.

        Args:
            images: a path, folder or glob (or a list of them); a uint8 tensor ``[3, H, W]`` or
                ``[B, 3, H, W]``; an ``[H, W, 3]`` uint8 array or PIL image; or a list of images.
            conf: keep detections scoring above this; iou: NMS IoU threshold (default: the config's
                ``eval.nms_iou``); max_det: detections kept per image (default ``eval.max_det``).
            imgsz: the letterbox side the model sees (default: the training ``data.image_size``).
            batch_size: images per forward pass.
            half: fp16 autocast (CUDA only); agnostic_nms: one NMS over all classes.
        """
        settings = dict(conf=conf, iou=iou, max_det=max_det, imgsz=imgsz, batch_size=batch_size, half=half,
                        agnostic_nms=agnostic_nms)  # fmt: skip
        return [detections for _, detections in self.stream(images, **settings)]

    def stream(self, images: Any, **settings: Any) -> Iterator[tuple[Tensor, Detections]]:
        """Like :meth:`predict` (same arguments), but yields ``(image uint8 [3, H, W], Detections)`` one
        image at a time: for folders too large to hold every result, or to draw each image."""
        conf, iou, max_det = settings.get("conf", DEFAULT_CONF), settings.get("iou"), settings.get("max_det")
        half = settings.get("half", False)
        if half and self.device.type != "cuda":
            raise UserError(f"half precision needs a CUDA device; this model runs on {self.device}")
        eval_config = dataclasses.replace(
            self.config.eval,
            score_thresh=conf,
            nms_iou=self.config.eval.nms_iou if iou is None else iou,
            max_det=self.config.eval.max_det if max_det is None else max_det,
        )
        paths, stream = _sources(images)
        outputs = predict_images(
            self.model, stream, settings.get("imgsz") or self.config.data.image_size, eval_config,
            settings.get("batch_size", 8), torch.float16 if half else None, settings.get("agnostic_nms", False),
        )  # fmt: skip
        for path, (image, detection) in zip(paths, outputs, strict=True):
            yield image, Detections(
                boxes=detection["boxes"], scores=detection["scores"], labels=detection["labels"],
                names=[self.class_names[label] for label in detection["labels"].tolist()],
                image_size=(image.shape[-2], image.shape[-1]), path=path,
            )  # fmt: skip

    def export(self, path: str | Path, format: str = "onnx", imgsz: int | None = None) -> Path:
        """Write the model as ONNX or TorchScript (see :mod:`detector.export`); returns the file."""
        from detector.export import export_model

        return export_model(self.model, path, format, imgsz or self.config.data.image_size, self.config)


def load(weights: str | Path, device: str | torch.device = "auto") -> DetectorModel:
    """A trained detector from a ``best.pt``/``last.pt`` written by ``detector train`` (EMA weights)."""
    resolved = resolve_device(device) if isinstance(device, str) else torch.device(device)
    model, config, class_names = load_detector(weights, resolved)
    return DetectorModel(model, config, class_names, resolved)


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder and the final validation metrics."""

    run_dir: Path
    metrics: dict[str, Any]

    @property
    def best(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last(self) -> Path:
        return self.run_dir / "last.pt"


def override_list(overrides: Mapping[str, Any]) -> list[str]:
    """``{"train.epochs": 1, "data__root": "x"}`` → ``["train.epochs=1", "data.root=x"]`` (values as YAML).

    A double underscore stands for a dot, so that keyword arguments can name nested keys.
    """
    import yaml

    def as_yaml(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()

    return [f"{key.replace('__', '.')}={as_yaml(value)}" for key, value in overrides.items()]


def train(
    config: str | Path | Config = "arena_cpu",
    overrides: Mapping[str, Any] | None = None,
    resume: str | Path | bool | None = None,
    *,
    budget_counts_evaluation: bool = True,
    **kwargs: Any,
) -> TrainResult:
    """Train a detector, as ``detector train`` does; returns the run folder and final metrics.

    Args:
        config: a shipped config's name (``arena_cpu``, ``halo_r50``, ``roboflow``), a YAML path, or a
            :class:`~detector.config.Config`.
        overrides: dotted keys → values, e.g. ``{"train.epochs": 1, "data.root": "path/to/export"}``.
        resume: continue from a ``last.pt`` (``True``: ``runs/<name>/last.pt``).
        budget_counts_evaluation: ``False``: ``train.max_minutes`` and the logged ``elapsed_seconds`` count
            training only, the clock pausing while the run evaluates (:class:`~detector.engine.Runner`).
        **kwargs: more overrides, ``__`` for the dot: ``train__epochs=1``.
    """
    from detector import distributed
    from detector.engine import Runner

    texts = override_list({**(overrides or {}), **kwargs})
    if isinstance(config, Config):
        from detector.config import config_from_dict

        config = config_from_dict(config.to_dict(), texts, source="detector.train(Config)")
    else:
        config = load_config(config, texts)
    try:
        runner = Runner(config, resume=resume, budget_counts_evaluation=budget_counts_evaluation)
        metrics = runner.fit()
    finally:
        distributed.cleanup()
    return TrainResult(Path(runner.run_dir), metrics)
