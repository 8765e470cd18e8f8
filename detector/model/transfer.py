"""Fine-tuning a trained detector on a new data set: ``model.init_from: runs/x/best.pt``.

Every weight of the freshly built detector is replaced by the checkpoint's (its EMA weights when it has them:
the ones it was evaluated with). When the new data set has another number of classes, only the classification
prediction layer (``head.cls_pred``: ``[C, width, 3, 3]`` and ``[C]``) keeps its fresh initialisation (the
prior-probability bias of Chapter 4); any other difference means another architecture and is an error.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from detector.checkpoint import load_checkpoint
from detector.config import ConfigError

# The only layer whose shape depends on the number of classes.
CLASS_LAYER_PREFIX = "head.cls_pred."
MAX_LISTED_KEYS = 5


def detector_weights(state: dict) -> dict[str, Tensor]:
    """The detector weights a checkpoint holds: the EMA module when present, else the trained model."""
    ema = state.get("ema")
    if isinstance(ema, dict) and isinstance(ema.get("module"), dict):
        return ema["module"]
    if isinstance(state.get("model"), dict):
        return state["model"]
    raise ConfigError("the checkpoint holds no detector weights (no 'ema' module and no 'model' state)")


def init_from_checkpoint(model: nn.Module, path: str | Path) -> list[str]:
    """Load ``path``'s detector weights into ``model``; returns the keys left at their fresh initialisation.

    Raises:
        ConfigError: the checkpoint's detector is another architecture (keys or shapes beyond the class layer
            differ), naming the first differing keys.
    """
    try:
        weights = detector_weights(load_checkpoint(path))
    except ConfigError as error:
        raise ConfigError(f"model.init_from={str(path)!r}: {error}") from None
    own = model.state_dict()
    kept_fresh = [
        key
        for key, value in own.items()
        if key.startswith(CLASS_LAYER_PREFIX) and key in weights and weights[key].shape != value.shape
    ]
    mismatched = [
        f"{key} {tuple(weights[key].shape)} vs {tuple(value.shape)}"
        for key, value in own.items()
        if key in weights and key not in kept_fresh and weights[key].shape != value.shape
    ]
    missing = [key for key in own if key not in weights]
    unexpected = [key for key in weights if key not in own]
    problems = [
        f"{label}: {items[:MAX_LISTED_KEYS]}{' …' if len(items) > MAX_LISTED_KEYS else ''}"
        for label, items in (("shape", mismatched), ("missing", missing), ("unexpected", unexpected))
        if items
    ]
    if problems:
        raise ConfigError(
            f"model.init_from={str(path)!r} is a detector of another architecture ({'; '.join(problems)}): "
            "use the same model.backbone, out_indices, neck_width and head_convs as the run that wrote it"
        )
    model.load_state_dict({key: (own[key] if key in kept_fresh else weights[key]) for key in own})
    return kept_fresh
