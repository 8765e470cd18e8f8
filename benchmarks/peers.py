"""The contenders: our detector and torchvision's FCOS ResNet-18-FPN behind one small interface.

Both take a batch of letterboxed ``images uint8 [B, 3, S, S]`` and per-image targets (``boxes [K, 4]`` xyxy
pixels, ``labels [K]`` int64 in ``0..C-1``) as the arena loader yields them:

- :meth:`prepare` turns the targets into what the model's loss wants (padded tensors for ours, a list of dicts
  for FCOS), outside the timed step;
- :meth:`loss` runs forward + loss (the total, a 0-dim tensor);
- :meth:`forward` is the inference forward without post-processing; :meth:`predict` adds it (input pixels).

torchvision has no ``fcos_resnet18_fpn``; :func:`build_fcos` builds it the way ``fcos_resnet50_fpn`` is
built, with ResNet-18: ``resnet_fpn_backbone("resnet18", weights=None, trainable_layers=5,
returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(w, w))`` (levels P3–P7), the FCOS head (4 convs per
tower, GroupNorm) and ``min_size = max_size = S`` so that its transform does not resize a 320-px batch to
800 px. Two choices differ from torchvision's defaults, both for a fair from-scratch comparison:

- ``norm_layer=nn.BatchNorm2d`` in the ResNet: torchvision's default ``FrozenBatchNorm2d`` is meant for
  pretrained weights; from scratch it freezes mean 0 / variance 1, i.e. a ResNet without normalisation;
- the FPN/head width ``w`` is a parameter (``resnet_fpn_backbone`` hard-codes 256), with GroupNorm groups of
  8 channels (torchvision: ``GroupNorm(32, 256)``), so that a head as narrow as ours can be compared.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn
from torchvision.models import resnet18
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detector.config import Config, EvalConfig, TrainConfig, load_config
from detector.data.collate import pad_targets
from detector.device import cpu_has_native_bf16
from detector.inference import predict_batch
from detector.losses import DetectionLoss
from detector.model import Detector, build_detector

DEFAULT_CONFIG = "arena_cpu"  # the `make train` demo: resnet10t, 320 px, neck width 64
FCOS_WIDTH = 256  # torchvision's FPN and FCOS head width
FCOS_HEAD_CONVS = 4  # torchvision FCOSHead(num_convs=4)
GN_CHANNELS_PER_GROUP = 8  # torchvision FCOS: GroupNorm(32, 256) = 8 channels per group
FCOS_RETURNED_LAYERS = {"layer2": "0", "layer3": "1", "layer4": "2"}  # strides 8/16/32 (+ P6, P7)
RESNET18_CHANNELS = [128, 256, 512]  # layer2..layer4 output channels
ARENA_GTS_PER_IMAGE = 6  # mean boxes per arena image (data/arena train split)
BATCH_SEED = 0


def ours_config(recipe: str = "default", overrides: list[str] | None = None) -> Config:
    """The ``arena_cpu`` config, with the loss section of the shipped ``seed`` config for ``recipe="seed"``."""
    config = load_config(DEFAULT_CONFIG, overrides)
    if recipe == "seed":
        config.loss = load_config("seed").loss
    return config


CURVE_KEYS = ("train.eval_every", "train.out_dir", "name")  # what :func:`train_curve` sets in every run
CURVE_CLOCK = "training"  # what :func:`train_curve`'s clock counts (a result's settings["clock"])


def train_curve(
    config: str | Config, overrides: dict[str, Any], out_dir: Path, name: str
) -> tuple[list[dict[str, Any]], Path]:
    """Run ``detector.train`` (validation after every epoch); its learning curve and run directory.

    The run's clock pauses while it evaluates (``budget_counts_evaluation=False``): ``train.max_minutes`` and
    each point's ``train_seconds`` count training (steps, loading, checkpoints) only, as a peer's clock does
    when it does not validate while it trains (``val=False`` in ultralytics), so that curves meet at equal
    training time. Results written before :data:`CURVE_CLOCK` was recorded counted the evaluations too.

    Returns:
        the curve, one point per epoch: ``epoch``, ``train_seconds`` (the run's clock, evaluations excluded)
        and the validation metrics (``map``, ``map_50``, …); and the run directory (``last.pt``, ``best.pt``,
        logs).
    """
    from detector.api import train

    settings = {**overrides, "train.eval_every": 1, "train.out_dir": str(out_dir), "name": name}
    result = train(config, settings, budget_counts_evaluation=False)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [
        {"epoch": r["epoch"], "train_seconds": r["elapsed_seconds"],
         **{key.removeprefix("val_"): value for key, value in r.items() if key.startswith("val_")}}
        for r in records if "val_map" in r
    ]  # fmt: skip
    return curve, result.run_dir


def amp_dtype_for(device: torch.device, train: TrainConfig | None = None) -> torch.dtype | None:
    """The autocast dtype the runner would use, for every contender alike (``None``: fp32).

    CUDA: bf16 where the GPU supports it (fp16 needs a grad scaler: left out). CPU: bf16 when the config
    asks for it (``train.cpu_bf16``) and oneDNN has native bf16 kernels (AVX512-BF16/AMX), as the runner does.
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if getattr(train, "cpu_bf16", False) and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def build_fcos(
    num_classes: int, image_size: int, width: int = FCOS_WIDTH, score_thresh: float = 0.05
) -> FCOS:
    """torchvision FCOS with a ResNet-18-FPN (P3–P7) of ``width`` channels, from scratch (module docstring).

    Args:
        num_classes: ``C`` (FCOS uses sigmoid classification: labels ``0..C-1``, no background class).
        image_size: ``S``; the transform's ``min_size = max_size = S`` keeps an ``S``-px batch at ``S`` px.
        width: FPN and head channels; must be a multiple of :data:`GN_CHANNELS_PER_GROUP`.
        score_thresh: detections kept above this score (torchvision's default is 0.2; ours 0.05).
    """
    if width % GN_CHANNELS_PER_GROUP:
        raise ValueError(
            f"FCOS width {width} must be a multiple of {GN_CHANNELS_PER_GROUP} (GroupNorm groups)"
        )
    body = resnet18(weights=None, norm_layer=nn.BatchNorm2d)
    backbone = BackboneWithFPN(
        body, FCOS_RETURNED_LAYERS, RESNET18_CHANNELS, width, extra_blocks=LastLevelP6P7(width, width)
    )
    norm = functools.partial(nn.GroupNorm, width // GN_CHANNELS_PER_GROUP)
    head = FCOSHead(width, num_anchors=1, num_classes=num_classes, num_convs=FCOS_HEAD_CONVS)
    head.classification_head = FCOSClassificationHead(width, 1, num_classes, FCOS_HEAD_CONVS, norm_layer=norm)
    head.regression_head = FCOSRegressionHead(width, 1, FCOS_HEAD_CONVS, norm_layer=norm)
    return FCOS(
        backbone, num_classes, min_size=image_size, max_size=image_size, head=head, score_thresh=score_thresh
    )


def build_backbone_floor(name: str = "resnet18", out_indices: tuple[int, ...] = (2, 3, 4)) -> nn.Module:
    """The bare timm backbone (``features_only``) whose forward+backward is the floor of a training step."""
    return timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class OursContender:
    """``detector``: ``build_detector`` + ``DetectionLoss`` of a config (default or seed recipe)."""

    def __init__(self, config: Config, num_classes: int, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.model: Detector = build_detector(config.model, num_classes).to(device)
        self.criterion = DetectionLoss(num_classes, config.loss)

    def prepare(self, targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        return pad_targets(targets, device=self.device)

    def loss(self, images: Tensor, prepared: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        return self.criterion(self.model(images), *prepared).total

    def forward(self, images: Tensor) -> Any:
        return self.model(images)

    def predict(
        self, model: nn.Module, images: Tensor, eval_config: EvalConfig, amp_dtype: torch.dtype | None = None
    ) -> list[dict[str, Tensor]]:
        """Detections (CPU tensors, input pixels) of ``model`` (e.g. the EMA copy) in eval mode, under
        autocast to ``amp_dtype`` (``predict_batch`` sets autocast itself: an outer one is overridden)."""
        return predict_batch(model, images, eval_config, amp_dtype=amp_dtype)


class FcosContender:
    """torchvision FCOS (:func:`build_fcos`) with its own losses (focal, GIoU, centerness)."""

    def __init__(
        self, num_classes: int, image_size: int, device: torch.device, width: int = FCOS_WIDTH
    ) -> None:
        self.device = device
        self.width = width
        self.model: FCOS = build_fcos(num_classes, image_size, width).to(device)
        # float32 head outputs, so that under autocast FCOS's losses and post-processing run in float32 like ours
        self.model.head.register_forward_hook(
            lambda module, inputs, outputs: {k: v.float() for k, v in outputs.items()}
        )

    def prepare(self, targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """FCOS's target dicts on the device; boxes without area dropped (FCOS rejects them)."""
        prepared = []
        for target in targets:
            boxes = target["boxes"].float()
            keep = (boxes[:, 2:] > boxes[:, :2]).all(dim=1)
            prepared.append(
                {"boxes": boxes[keep].to(self.device), "labels": target["labels"][keep].to(self.device)}
            )
        return prepared

    @staticmethod
    def to_float(images: Tensor) -> list[Tensor]:
        """uint8 ``[B, 3, S, S]`` → FCOS's input, a list of float ``[3, S, S]`` in ``[0, 1]``."""
        return list(images.float().div_(255.0))

    def loss(self, images: Tensor, prepared: list[dict[str, Tensor]]) -> Tensor:
        losses = self.model(self.to_float(images), prepared)
        return losses["classification"] + losses["bbox_regression"] + losses["bbox_ctrness"]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """FCOS's forward without post-processing: transform, backbone + FPN, head, anchors."""
        model = self.model
        image_list, _ = model.transform(self.to_float(images))
        features = list(model.backbone(image_list.tensors).values())
        outputs = model.head(features)
        model.anchor_generator(image_list, features)
        return outputs

    def predict(
        self, model: nn.Module, images: Tensor, eval_config: EvalConfig, amp_dtype: torch.dtype | None = None
    ) -> list[dict[str, Tensor]]:
        """Detections (CPU tensors, input pixels) of ``model`` in eval mode (its own post-processing), under
        autocast to ``amp_dtype``; ``eval_config`` is unused (FCOS keeps its own thresholds)."""
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad(), autocast(images.device, amp_dtype):
                detections = model(self.to_float(images))
        finally:
            model.train(was_training)
        return [{key: value.cpu() for key, value in d.items()} for d in detections]


def synthetic_batch(
    batch: int,
    image_size: int,
    num_classes: int,
    gts_per_image: int = ARENA_GTS_PER_IMAGE,
    seed: int = BATCH_SEED,
) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Random ``images uint8 [B, 3, S, S]`` and ``gts_per_image`` GTs per image (sides log-uniform in
    ``8 .. S/3`` px), the input of the speed rows (no data set needed; timing does not depend on pixels)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    targets = []
    for _ in range(batch):
        log_side = torch.empty(gts_per_image, 2).uniform_(
            math.log(8), math.log(image_size / 3), generator=generator
        )
        side = log_side.exp()
        corner = torch.rand(gts_per_image, 2, generator=generator) * (image_size - side)
        labels = torch.randint(0, num_classes, (gts_per_image,), generator=generator)
        targets.append({"boxes": torch.cat((corner, corner + side), dim=1), "labels": labels})
    return images, targets
