"""Atomic checkpoint files and the random-number state they carry (Chapter 8).

A checkpoint is written to a temporary file in the same directory, flushed to disk (``fsync``) and then
renamed over the target with :func:`os.replace`, which is atomic on POSIX and Windows: a crash or a kill at
any moment leaves either the previous file or the new one, never a truncated mix.

Everything stored is loadable with ``torch.load(..., weights_only=True)`` (tensors, numbers, strings,
lists, tuples, dicts), so a checkpoint from an untrusted source cannot run code when it is opened.

A training run writes two files (format :data:`CHECKPOINT_FORMAT`, in the ``format`` key):

- ``last.pt``, everything to continue the run exactly: weights, EMA, optimiser, schedule, grad scaler, RNG
  states, progress, config and class names (the per-step log stays in the run directory's ``steps.jsonl``);
- ``best.pt``, what is needed to *use* the best weights: the EMA weights (the raw ones without EMA) as
  ``model``, the config, the class names and the epoch/step/mAP they come from — about half of ``last.pt``'s
  size (no optimiser moments, no second copy of the weights).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.config import ConfigError, config_from_dict
from detector.errors import CheckpointError, MissingPathError

CHECKPOINT_FORMAT = 2  # 2: best.pt holds the EMA weights only; the per-step log left the checkpoints
RESUMABLE = "last"  # the ``kind`` of a checkpoint that can continue a run (best.pt's is "weights")
# Config keys a resumed run may change: where and how fast it runs, not what it computes.
RESUME_MAY_CHANGE = (
    "name", "data.root", "data.arena", "data.workers", "train.device", "train.out_dir", "train.compile",
    "train.log_every",
)  # fmt: skip


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same directory → fsync → rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"checkpoint {str(path)!r} not found: give the path of a last.pt or best.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for damaged or foreign files
        raise CheckpointError(
            f"checkpoint {str(path)!r} could not be read ({type(error).__name__}: {error})"
        ) from error


def check_format(state: dict[str, Any], path: str | Path, resumable: bool = False) -> None:
    """Raise a clear :class:`CheckpointError` unless ``state`` is a detector checkpoint of this format (and resumable)."""
    found = state.get("format") if isinstance(state, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {found!r}, this version of detector reads format "
            f"{CHECKPOINT_FORMAT}: retrain, or use the detector version that wrote it"
        )
    if resumable and state.get("kind") != RESUMABLE:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds weights only ({state.get('kind')!r}) and cannot continue a run: "
            "resume from the run's last.pt"
        )


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "arena":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """Refuse to resume with settings that differ from the checkpoint's (except :data:`RESUME_MAY_CHANGE`).

    The saved config is read through today's :class:`~detector.config.Config` first, so keys added since it was
    written compare at their defaults.
    """
    saved = config_from_dict(saved, source=f"{path} (config)").to_dict()
    saved, current = _flatten(saved), _flatten(current)
    keys = sorted(saved.keys() | current.keys())
    changed = [k for k in keys if k not in RESUME_MAY_CHANGE and saved.get(k) != current.get(k)]
    if changed:
        listed = ", ".join(f"{k}: {saved.get(k)!r} → {current.get(k)!r}" for k in changed)
        raise ConfigError(
            f"{path}: resuming continues the run as it was planned, but these settings differ from the "
            f"checkpoint's: {listed}. Resume without them (detector train --resume {path}), or start a new run"
        )


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where the devices exist)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
