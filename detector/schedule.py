"""Optimiser and learning-rate schedule: linear warmup, then cosine decay, per optimiser step (Chapter 8).

The factor multiplies each parameter group's base learning rate (``torch.optim.lr_scheduler.LambdaLR``)::

    step < W:      f = (step + 1) / W        (linear warmup: Goyal et al. 2017 for large-batch SGD; for Adam's
                                               early variance, Liu et al. 2020)
    step >= W:     f = r + (1 - r) · ½ · (1 + cos(π · (step - W) / (T - 1 - W)))   (SGDR, Loshchilov & Hutter 2017)

with ``W`` warmup steps, ``T`` total steps and ``r = min_lr_ratio`` the floor reached at the last step.

``decay_fraction`` ``d`` < 1 holds the peak until the cosine has only the last ``d`` of the steps after the
warmup left, ``D = d · (T - 1 - W)``: ``f = 1`` up to step ``T - 1 - D``, then the same half-cosine down to ``r``
over those ``D`` steps — the warmup-stable-decay ("WSD") shape of Hu et al. 2024 (MiniCPM); Hägele et al. 2024
report that a constant rate with a short cooldown matches or beats a cosine of the same length (language models).
It suits a time budget: while the plan moves, only where the short decay begins moves with it. ``d = 1`` is the
plain cosine.

A time budget (:mod:`detector.budget`) may change ``T`` while the run goes: :meth:`WarmupCosine.replan` keeps
the cosine's *progress* and stretches or shrinks only what is left of it. At a re-plan at step ``a`` with factor
``f_a``, the cosine stands at progress ``p_a = arccos(2 · (f_a - r) / (1 - r) - 1) / π`` and goes on as

    f = r + (1 - r) · ½ · (1 + cos(π · (p_a + (1 - p_a) · (step - a) / (T - 1 - a))))

so the learning rate is continuous at ``a`` (no jump), reaches ``r`` at the new last step, keeps the slope the
cosine had at ``p_a`` (scaled by the new pace) and is exactly the plain cosine when ``T`` does not change:
re-planning at every log line costs nothing. (Before any re-plan ``a = W``, ``f_a = 1``, ``p_a = 0``: the formula
above.) Restarting a fresh half-cosine from ``f_a`` instead would reset the slope to zero at each re-plan, and a
budget that re-plans often would hold the rate near its peak until the last few percent of the run. With
``d < 1`` the decay starts at ``max(a, T - 1 - D)`` (``D`` of the new plan), so a re-plan in the stable part only
moves where the decay begins, and one in the decay that lengthens the plan holds ``f_a`` until then. A re-plan
during the warmup ramps linearly from the current factor to 1 over a warmup that is at most
``1 / MAX_WARMUP_FRACTION`` of the new plan.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from detector.config import TrainConfig

MAX_WARMUP_FRACTION = 3  # a re-planned run warms up for at most a third of its steps


class WarmupCosine:
    """The schedule as a picklable callable; ``LambdaLR`` stores its attributes in its ``state_dict``.

    Attributes:
        total_steps: ``T``, the plan's length in optimiser steps (the factor is ``min_lr_ratio`` at ``T - 1``).
        warmup_steps: ``W``. min_lr_ratio: ``r``. decay_fraction: ``d``, the share of the steps after the warmup
            over which the cosine decays (1: all of them).
        warmup_from: ``(step, factor)`` where the linear warmup starts (``(0, 0.0)`` unless re-planned in it).
        decay_from: ``(step, factor)`` of the last re-plan in the cosine (``(W, 1.0)`` if none): the cosine
            goes on from the progress at which it had that factor.
    """

    def __init__(
        self, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0, decay_fraction: float = 1.0
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        if not 0.0 < decay_fraction <= 1.0:
            raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction}")
        self.total_steps = int(total_steps)
        self.warmup_steps = max(0, min(int(warmup_steps), self.total_steps - 1))
        self.min_lr_ratio = float(min_lr_ratio)
        self.decay_fraction = float(decay_fraction)
        self.warmup_from = (0, 0.0)
        self.decay_from = (self.warmup_steps, 1.0)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> WarmupCosine:
        """The schedule whose attributes are ``state`` (``vars()`` of one, e.g. from a checkpoint)."""
        schedule = cls(
            state["total_steps"],
            state["warmup_steps"],
            state["min_lr_ratio"],
            state.get("decay_fraction", 1.0),
        )
        schedule.warmup_from = tuple(state.get("warmup_from", schedule.warmup_from))
        schedule.decay_from = tuple(state.get("decay_from", schedule.decay_from))
        return schedule

    def replan(self, total_steps: int, step: int = 0) -> None:
        """Make the plan ``total_steps`` long, from ``step`` (the next step to run; steps before it are done).

        The plan never ends before ``step + 1``; the factor at ``step`` continues from the current curve.
        """
        total_steps = max(int(total_steps), step + 1)
        if step < self.warmup_steps:  # still warming up: ramp from here to 1 over a warmup that fits
            warmup = max(step + 1, min(self.warmup_steps, total_steps // MAX_WARMUP_FRACTION))
            self.warmup_from = (step, step / self.warmup_steps)
            self.warmup_steps = min(warmup, total_steps - 1) if total_steps > step + 1 else step + 1
            self.decay_from = (self.warmup_steps, 1.0)
        else:
            self.decay_from = (step, self(step))
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            start, start_factor = self.warmup_from
            return start_factor + (1.0 - start_factor) * (step + 1 - start) / (self.warmup_steps - start)
        start, start_factor = self.decay_from
        last = self.total_steps - 1
        decay_steps = self.decay_fraction * (last - self.warmup_steps)  # D
        decay_begins = max(start, last - decay_steps)  # = start when d = 1
        if step <= decay_begins:  # the stable part (or a re-planned decay that waits for the new plan's end)
            return start_factor
        start_progress = self._progress_at(start_factor)
        fraction = min(1.0, (step - decay_begins) / max(1.0, last - decay_begins))
        progress = start_progress + (1.0 - start_progress) * fraction
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _progress_at(self, factor: float) -> float:
        """The cosine's progress ``p`` in ``[0, 1]`` at which it equals ``factor`` (0 at the peak, 1 at ``r``)."""
        if self.min_lr_ratio >= 1.0:  # a constant schedule: every progress has the same factor
            return 0.0
        height = (factor - self.min_lr_ratio) / (1.0 - self.min_lr_ratio)  # ½ · (1 + cos(π p)) in [0, 1]
        return math.acos(min(1.0, max(-1.0, 2.0 * height - 1.0))) / math.pi


def build_scheduler(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
    decay_fraction: float = 1.0,
) -> LambdaLR:
    """A ``LambdaLR`` stepping once per optimiser step; ``state_dict`` round-trips the plan."""
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr_ratio, decay_fraction))


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam/AdamW/SGD over the trainable parameters; no weight decay on biases and norm weights.

    Parameters with fewer than 2 dimensions (biases, BatchNorm/GroupNorm weights, per-level scales) are
    excluded from weight decay: decaying them shrinks the normalisation and the offsets for no regularising
    benefit (the "no bias decay" trick of Goyal et al. 2017, used by timm, YOLOv5, torchvision's references).
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=True)
    if train.optimizer == "adam":
        return torch.optim.Adam(groups, lr=train.lr)
    return torch.optim.AdamW(groups, lr=train.lr)
