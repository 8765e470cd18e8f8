"""Chapter 8 (runner): reference implementations in the exercises' signatures, built on the package.

The check cells of ``solutions/08_runner.py`` fall back to these when an exercise is not solved yet.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from detector.checkpoint import save_checkpoint
from detector.data import pad_targets
from detector.ema import ModelEMA
from detector.losses import DetectionLoss
from detector.schedule import WarmupCosine

TRAINING_STATE_KEYS = ("model", "optimizer", "scheduler", "step", "rng")


def train_step(
    model: nn.Module,
    criterion: DetectionLoss,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    targets: list[dict],
    grad_clip: float | None = 10.0,
) -> dict[str, float]:
    """Exercise 8.1: one step of ``detector.engine.Runner`` without AMP's grad scaler.

    ``images uint8 [B, 3, S, S]``, ``targets``: ``B`` dicts of ``boxes [K, 4]`` xyxy and ``labels [K]``.
    Returns ``{"loss", "cls", "box", "obj", "grad_norm"}`` as floats (the norm before clipping).
    """
    loss = criterion(model(images), *pad_targets(targets, device=images.device))
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
    optimizer.step()
    components = {name: float(value) for name, value in loss.components.items()}
    return {"loss": float(loss.total.detach()), **components, "grad_norm": float(norm)}


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Exercise 8.2: the factor of ``detector.schedule.WarmupCosine`` at ``step`` (0-based)."""
    return WarmupCosine(total_steps, warmup_steps, min_lr_ratio)(step)


def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """Exercise 8.3: ``detector.ema.ModelEMA.update`` with a constant ``decay`` on the given average, in place."""
    ema = ModelEMA(nn.Identity(), decay=decay, warmup_steps=0)
    ema.module = ema_model
    ema.update(model)


def save_training_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
) -> None:
    """Exercise 8.4: ``{"model", "optimizer", "scheduler", "step", "rng"}`` written by
    ``detector.checkpoint.save_checkpoint`` (temporary file, fsync, rename)."""
    values = (model.state_dict(), optimizer.state_dict(), scheduler.state_dict(), step, torch.get_rng_state())
    save_checkpoint(dict(zip(TRAINING_STATE_KEYS, values, strict=True)), path)


def load_training_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> int:
    """Exercise 8.5: restore what :func:`save_training_state` wrote (model, optimiser, scheduler, torch RNG);
    returns the saved step."""
    state = torch.load(path, weights_only=True)
    for name, owner in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler)):
        owner.load_state_dict(state[name])
    torch.set_rng_state(state["rng"])
    return int(state["step"])
