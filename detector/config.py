"""Typed configuration: YAML files and ``key=value`` overrides into nested dataclasses.

A config is four sections plus a name and a seed::

    name: arena_cpu
    seed: 0
    data:  {...}    # DataConfig
    model: {...}    # ModelConfig
    loss:  {...}    # LossConfig (holds the assigner's settings too)
    train: {...}    # TrainConfig
    eval:  {...}    # EvalConfig

Every key is checked: an unknown key, a value outside a key's choices or a number outside its range
(``batch_size >= 1``, ``lr > 0``, ``0 <= min_lr_ratio <= 1``, …) raises :class:`ConfigError` naming the key,
the file and what is valid. The shipped configs live in ``detector/configs/``
and are addressed by their stem (``arena_cpu``) or a path.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from detector.errors import UserError

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the schema."""


def bounds(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> dict[str, Any]:
    """Field metadata: the range a number must lie in (closed unless ``*_open``); checked when a config is built."""
    return {"bounds": (low, high, low_open, high_open)}


def _check_bounds(value: Any, spec: tuple, key: str, source: str) -> None:
    """Raise :class:`ConfigError` unless the number ``value`` (``None``: unset, allowed) lies in ``spec``."""
    low, high, low_open, high_open = spec
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if high is None:
            wanted = f"{'>' if low_open else '>='} {low}"
        elif low is None:
            wanted = f"{'<' if high_open else '<='} {high}"
        else:
            wanted = f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{source}: '{key}' = {value!r} is out of range: it must be {wanted}")


@dataclass
class ArenaConfig:
    """Sizes of the built-in arena data set, generated when ``data.root`` does not exist."""

    n_train: int = field(default=1200, metadata=bounds(low=1))
    n_valid: int = field(default=200, metadata=bounds(low=1))
    n_test: int = field(default=200, metadata=bounds(low=0))
    image_size: int = field(default=320, metadata=bounds(low=32))
    seed: int = 0


@dataclass
class DataConfig:
    """Where the images come from and how they are batched."""

    root: str = "data/arena"
    format: Literal["coco", "hf_parquet"] = "coco"
    train_split: str = "train"
    val_split: str = "valid"
    image_size: int = field(default=320, metadata=bounds(low=32))
    batch_size: int = field(default=8, metadata=bounds(low=1))
    workers: int = field(default=2, metadata=bounds(low=0))
    hflip: float = field(default=0.5, metadata=bounds(0.0, 1.0))
    # HSV jitter: brightness and saturation ± color_jitter, hue ± color_jitter / 10
    color_jitter: float = field(default=0.2, metadata=bounds(0.0, 1.0))
    # detector.data.augment (YOLOv5/v8-style; all off by default): mosaic and mixup probabilities, random affine
    # (scale 1 ± scale, translation ± translate of the image, rotation ± degrees), mosaic and mixup off for the
    # last close_mosaic epochs, batches resized to image_size · (1 ± multiscale) in steps of the largest stride
    mosaic: float = field(default=0.0, metadata=bounds(0.0, 1.0))
    mixup: float = field(default=0.0, metadata=bounds(0.0, 1.0))
    scale: float = field(default=0.0, metadata=bounds(0.0, 0.9))
    translate: float = field(default=0.0, metadata=bounds(0.0, 0.5))
    degrees: float = field(default=0.0, metadata=bounds(0.0, 180.0))
    close_mosaic: int = field(default=0, metadata=bounds(low=0))
    multiscale: float = field(default=0.0, metadata=bounds(0.0, 0.5))
    # hf_parquet: names of categories 1..C (default: the file's Hugging Face metadata); coco: checked against
    # the export's categories when given.
    class_names: list[str] | None = None
    arena: ArenaConfig | None = None


@dataclass
class ModelConfig:
    """Backbone, neck and head (Chapters 2–4)."""

    backbone: str = "resnet18"
    # null: random init; "timm": ImageNet weights through timm's hub (downloads); else a local weights file
    pretrained: str | None = None
    # a trained detector's checkpoint (runs/x/best.pt) to fine-tune from; another class count keeps all but cls_pred
    init_from: str | None = None
    out_indices: list[int] = field(default_factory=lambda: [2, 3, 4])
    freeze: Literal["none", "all"] | int = "none"
    neck_width: int = field(default=96, metadata=bounds(low=1))
    head_convs: int = field(default=2, metadata=bounds(low=0))
    prior_prob: float = field(default=0.01, metadata=bounds(0.0, 1.0, low_open=True, high_open=True))
    num_classes: int | None = field(default=None, metadata=bounds(low=1))


@dataclass
class AssignerConfig:
    """Task-Aligned Assigner (Chapter 6); defaults from TOOD, Feng et al. 2021."""

    kind: Literal["tal", "per_level"] = "tal"
    topk: int = field(default=13, metadata=bounds(low=1))
    alpha: float = field(default=1.0, metadata=bounds(low=0.0))
    beta: float = field(default=6.0, metadata=bounds(low=0.0))
    center_radius: float | None = field(default=None, metadata=bounds(low=0.0, low_open=True))
    memory_budget_mb: int = field(default=1024, metadata=bounds(low=1))


@dataclass
class LossConfig:
    """Loss recipe (Chapter 7). The shipped config ``seed`` holds the first notebook implementation's."""

    # qfl, varifocal, bce: minimum at the soft target; focal: not (Chapter 7); bce_positives: the seed's one-hot
    # BCE on the positives only. bce: the best calibrated loss of the ablation on arena_cpu (arena and chess, two
    # seeds each); the Benchmarks page holds the current ranking (benchmarks/bench_loss.py) and says when the
    # default differs from its best.
    cls: Literal["qfl", "varifocal", "bce", "focal", "bce_positives"] = "bce"
    box: Literal["diou", "giou", "ciou"] = "diou"
    obj: Literal["bce", "focal"] = "bce"
    cls_weight: float = field(default=1.0, metadata=bounds(low=0.0))
    box_weight: float = field(default=2.5, metadata=bounds(low=0.0))
    obj_weight: float = field(default=1.0, metadata=bounds(low=0.0))
    focal_gamma: float = field(default=2.0, metadata=bounds(low=0.0))
    focal_alpha: float = field(default=0.25, metadata=bounds(0.0, 1.0))
    assigner: AssignerConfig = field(default_factory=AssignerConfig)


@dataclass
class TrainConfig:
    """The runner (Chapter 8)."""

    epochs: int = field(default=12, metadata=bounds(low=1))
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = field(default=2e-3, metadata=bounds(low=0.0, low_open=True))
    weight_decay: float = field(default=5e-4, metadata=bounds(low=0.0))
    momentum: float = field(default=0.9, metadata=bounds(0.0, 1.0, high_open=True))
    warmup_steps: int = field(default=200, metadata=bounds(low=0))
    min_lr_ratio: float = field(default=0.05, metadata=bounds(0.0, 1.0))
    # the share of the post-warmup steps the cosine decays over; < 1 holds the peak lr before it (WSD, Chapter 8)
    decay_fraction: float = field(default=1.0, metadata=bounds(0.0, 1.0, low_open=True))
    grad_clip: float | None = field(default=10.0, metadata=bounds(low=0.0, low_open=True))
    amp: bool = True  # CUDA: bf16 where supported, else fp16 with a grad scaler
    cpu_bf16: bool = False  # CPU: bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX), ~2x faster
    ema: bool = True
    ema_decay: float = field(default=0.999, metadata=bounds(0.0, 1.0, high_open=True))
    ema_warmup_steps: int = field(default=500, metadata=bounds(low=0))
    channels_last: bool = False
    compile: bool = False
    device: str = "auto"
    out_dir: str = "runs"
    eval_every: int = field(default=1, metadata=bounds(low=1))
    max_minutes: float | None = field(default=None, metadata=bounds(low=0.0, low_open=True))
    # GPU: deterministic kernels and no cuDNN autotuning (slower); see detector.device
    deterministic: bool = False
    # steps between host syncs: step log, NaN check, time budget (detector.monitor)
    log_every: int = field(default=10, metadata=bounds(low=1))
    # fp16: this many overflowed (skipped) steps in a row stop the run
    max_skipped_steps: int = field(default=50, metadata=bounds(low=1))


@dataclass
class EvalConfig:
    """Post-processing and evaluation (Chapter 9)."""

    score_mode: Literal["cls", "cls_obj_sqrt", "cls_obj"] = "cls_obj_sqrt"
    score_thresh: float = field(default=0.05, metadata=bounds(0.0, 1.0))
    pre_nms_topk: int = field(default=1000, metadata=bounds(low=1))
    nms_iou: float = field(default=0.6, metadata=bounds(0.0, 1.0))
    max_det: int = field(default=100, metadata=bounds(low=1))


@dataclass
class Config:
    """Everything a run needs; saved as ``runs/<name>/config.yaml``."""

    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _valid_keys(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (dicts into dataclasses)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key, source)
            except ConfigError as error:
                errors.append(str(error).split(": ", 1)[-1])
        raise ConfigError(f"{source}: '{key}' = {value!r} fits none of: {'; '.join(errors)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{source}: '{key}' expected null")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        raise ConfigError(f"{source}: '{key}' = {value!r} is not one of {list(choices)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{key}' expected a mapping with keys {_valid_keys(tp)}")
        return _build(tp, value, key, source)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: '{key}' = {value!r} should be of type {getattr(tp, '__name__', tp)}")


def _build(cls: type, values: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in hints:
            valid = _valid_keys(cls)
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{source}: unknown key '{key}'{hint}; valid keys: {valid}")
        kwargs[name] = _convert(value, hints[name], key, source)
        spec = fields[name].metadata.get("bounds")
        if spec is not None:
            _check_bounds(kwargs[name], spec, key, source)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``"train.epochs=5"`` → ``{"train": {"epochs": 5}}`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw.strip() else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A shipped config's stem (``arena_cpu``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = CONFIG_DIR / f"{path.stem if path.suffix else path.name}.yaml"
    if shipped.exists() and not path.exists():
        return shipped
    if path.exists():
        return path
    choices = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(name_or_path)!r} not found: give a YAML path or one of {choices}")


def config_from_dict(
    values: dict[str, Any], overrides: list[str] | None = None, source: str = "a dict"
) -> Config:
    """Validate plain values (a parsed YAML file, a checkpoint's saved config) plus ``key=value`` overrides."""
    for text in overrides or []:
        values = _merge(values, parse_override(text))
    if overrides:
        source = f"{source} + overrides"
    return _build(Config, values, "", source)


def load_config(name_or_path: str | Path | None = "arena_cpu", overrides: list[str] | None = None) -> Config:
    """Load a YAML config (shipped stem or path), apply ``key=value`` overrides, validate."""
    values: dict[str, Any] = {}
    source = "defaults"
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        source = str(path)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        values = loaded
    return config_from_dict(values, overrides, source)


def config_fingerprint(config: Config, ignore: Sequence[str] = ()) -> str:
    """A short hash of every resolved value of ``config`` (defaults included): equal iff the configs are equal.

    ``ignore``: dotted keys left out (``"loss.cls"``), for a benchmark that sets them itself in every run.
    """
    values = config.to_dict()
    for dotted in ignore:
        section, _, key = dotted.rpartition(".")
        (values.get(section, {}) if section else values).pop(key, None)
    canonical = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
