"""The whole detector: backbone → FPN+PAN neck → decoupled head, plus grid points (Chapters 2–5).

``Detector.forward`` takes raw images (uint8 or float in ``[0, 1]``) and does the backbone's normalisation
itself, so data pipelines, notebooks and the CLI never need to know the backbone's mean/std.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from detector.boxes import make_points
from detector.config import Config, ConfigError, ModelConfig, config_from_dict
from detector.model.backbone import Backbone
from detector.model.head import DecoupledHead
from detector.model.neck import FpnPan
from detector.model.transfer import init_from_checkpoint

UINT8_MAX = 255.0
MAX_CACHED_SIZES = 16  # distinct (H, W, device, dtype) point grids kept; multi-scale training uses a few


class DetectorOutput(NamedTuple):
    """Raw predictions for every point (float32).

    cls_logits: ``[B, N, C]`` class logits (sigmoid, not softmax).
    box_ltrb: ``[B, N, 4]`` distances ≥ 0 from each point to its box's sides, in input pixels.
    obj_logits: ``[B, N, 1]`` objectness/IoU logits.
    points: ``[N, 2]`` cell centres ``(x, y)`` in input pixels (see :func:`detector.boxes.make_points`).
    strides: ``[N]`` stride of each point's level.
    """

    cls_logits: Tensor
    box_ltrb: Tensor
    obj_logits: Tensor
    points: Tensor
    strides: Tensor


class Detector(nn.Module):
    """Backbone + neck + head.

    Args:
        backbone: the feature extractor; its ``mean``/``std`` become the buffers used for normalisation.
        neck: maps the backbone levels to ``width``-channel maps of the same sizes.
        head: predictions for every point of every level; its strides must equal the backbone's.
    """

    def __init__(self, backbone: Backbone, neck: FpnPan, head: DecoupledHead) -> None:
        super().__init__()
        if list(head.strides) != list(backbone.strides):
            raise ValueError(f"head strides {head.strides} differ from backbone strides {backbone.strides}")
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.num_classes = head.num_classes
        self.strides = list(backbone.strides)
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1), persistent=False)
        self._points_cache: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 ``[0, 255]`` (divided by 255) or float ``[0, 1]`` images → ``(x - mean) / std``.

        Keeps the memory format (channels_last in, channels_last out) and uses the buffers' dtype.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {list(images.shape)}")
        x = images.to(self.mean.dtype)
        if images.dtype == torch.uint8:
            x = x / UINT8_MAX
        return (x - self.mean) / self.std

    def points_for(
        self, feature_sizes: list[tuple[int, int]], image_size: tuple[int, int], device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """``(points [N, 2], strides [N])`` float32 for these feature sizes, cached per input size."""
        key = (*image_size, device, torch.float32)
        if key not in self._points_cache:
            if len(self._points_cache) >= MAX_CACHED_SIZES:
                self._points_cache.clear()
            self._points_cache[key] = make_points(
                feature_sizes, self.strides, device=device, dtype=torch.float32
            )
        return self._points_cache[key]

    def forward(self, images: Tensor) -> DetectorOutput:
        """``images [B, 3, H, W]`` uint8 or float in ``[0, 1]`` → :class:`DetectorOutput`.

        ``H`` and ``W`` need not be multiples of the largest stride: a level then has ``ceil(H / s)`` rows
        and its last points lie beyond the image border (they are simply never assigned a GT).
        """
        features = self.neck(self.backbone(self.normalize(images)))
        cls_logits, box_ltrb, obj_logits = self.head(features)
        sizes = [(f.shape[-2], f.shape[-1]) for f in features]
        points, strides = self.points_for(sizes, (images.shape[-2], images.shape[-1]), images.device)
        return DetectorOutput(cls_logits, box_ltrb, obj_logits, points, strides)

    @torch.no_grad()
    def predict(
        self,
        images: Tensor,
        score_mode: str = "cls_obj_sqrt",
        score_thresh: float = 0.05,
        pre_nms_topk: int = 1000,
        nms_iou: float = 0.6,
        max_det: int = 100,
    ) -> list[dict[str, Tensor]]:
        """Detections per image, in input-pixel coordinates: ``[{"boxes" [K, 4] xyxy, "scores" [K],
        "labels" [K] int64}, ...]`` after score filtering, top-k and class-aware NMS.

        Runs in eval mode (restoring the previous mode afterwards) and without gradients; the arguments are
        those of :func:`detector.postprocess.postprocess`.
        """
        from detector.postprocess import postprocess  # noqa: PLC0415 (keeps the model importable on its own)

        was_training = self.training
        self.eval()
        try:
            outputs = self(images)
        finally:
            self.train(was_training)
        return postprocess(
            outputs,
            score_mode=score_mode,
            score_thresh=score_thresh,
            pre_nms_topk=pre_nms_topk,
            nms_iou=nms_iou,
            max_det=max_det,
        )


def _model_config(config: ModelConfig | Config | dict[str, Any]) -> ModelConfig:
    if isinstance(config, Config):
        return config.model
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, dict):
        values = config if isinstance(config.get("model"), dict) else {"model": config}
        return config_from_dict(values, source="build_detector(dict)").model
    raise TypeError(f"build_detector expects a ModelConfig, Config or dict, got {type(config).__name__}")


def build_detector(config: ModelConfig | Config | dict[str, Any], num_classes: int | None = None) -> Detector:
    """Build the detector described by a config's ``model`` section.

    Args:
        config: a :class:`ModelConfig`, a whole :class:`Config`, or a dict of either (validated).
        num_classes: ``C``; taken from ``model.num_classes`` when not given (one of the two must be set,
            and they must agree when both are).
    """
    model_config = _model_config(config)
    if num_classes is None:
        num_classes = model_config.num_classes
    elif model_config.num_classes is not None and model_config.num_classes != num_classes:
        raise ConfigError(
            f"model.num_classes={model_config.num_classes} but build_detector got num_classes={num_classes}: "
            "remove model.num_classes from the config or make them agree"
        )
    if num_classes is None or num_classes < 1:
        raise ConfigError(
            f"num_classes={num_classes}: set model.num_classes or pass build_detector(config, "
            "num_classes=len(dataset.class_names))"
        )
    backbone = Backbone(
        model_config.backbone,
        out_indices=tuple(model_config.out_indices),
        pretrained=model_config.pretrained,
        freeze=model_config.freeze,
    )
    neck = FpnPan(backbone.channels, model_config.neck_width)
    head = DecoupledHead(
        model_config.neck_width,
        num_classes,
        num_levels=len(backbone.channels),
        num_convs=model_config.head_convs,
        prior_prob=model_config.prior_prob,
        strides=backbone.strides,
    )
    detector = Detector(backbone, neck, head)
    if model_config.init_from is not None:
        init_from_checkpoint(detector, model_config.init_from)
    return detector
