"""Optimiser and learning-rate schedule: linear warmup, then cosine decay, per optimiser step (Chapter 8).

The factor multiplies each parameter group's base learning rate (``torch.optim.lr_scheduler.LambdaLR``)::

    step < W:      f = (step + 1) / W                                  (linear warmup, Goyal et al. 2017)
    step >= W:     f = r + (1 - r) · ½ · (1 + cos(π · (step - W) / (T - W)))   (SGDR, Loshchilov & Hutter 2017)

with ``W`` warmup steps, ``T`` total steps and ``r = min_lr_ratio`` the floor reached at the last step.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from detector.config import TrainConfig

MAX_WARMUP_FRACTION = 3  # a re-planned run warms up for at most a third of its steps


class WarmupCosine:
    """The schedule as a picklable callable; ``LambdaLR`` stores its attributes in its ``state_dict``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        self.total_steps = int(total_steps)
        self.warmup_steps = max(0, min(int(warmup_steps), self.total_steps - 1))
        self.min_lr_ratio = float(min_lr_ratio)

    def replan(self, total_steps: int) -> None:
        """A shorter (or longer) plan mid-run: the cosine is re-laid to end at ``total_steps``, and the warmup
        is kept to at most ``1 / MAX_WARMUP_FRACTION`` of the new plan so that the decay still happens."""
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, min(self.warmup_steps, self.total_steps // MAX_WARMUP_FRACTION))

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - 1 - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


def build_scheduler(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """A ``LambdaLR`` stepping once per optimiser step; ``state_dict`` round-trips the plan."""
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, min_lr_ratio))


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
