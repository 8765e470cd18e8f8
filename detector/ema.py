"""Exponential moving average of the weights, used for evaluation (Chapter 8).

After every optimiser step ``ema = d · ema + (1 - d) · weights`` with a decay that ramps up,
``d(step) = decay · (1 - exp(-step / warmup_steps))``, so the average forgets the random initialisation
quickly at the start (the ramp of YOLOv5/ultralytics ``ModelEMA``). The copy is kept in float32 whatever
precision the training runs in; integer buffers (BatchNorm's ``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module behind ``DistributedDataParallel`` and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


class ModelEMA:
    """An fp32 shadow copy of a model; ``.module`` is what evaluation runs."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup_steps: int = 500) -> None:
        self.module = copy.deepcopy(unwrap_model(model)).float().eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.decay = decay
        self.warmup_steps = warmup_steps
        self.updates = 0

    def current_decay(self) -> float:
        """``d`` of the next update (after ``self.updates`` has been incremented)."""
        if self.warmup_steps <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-self.updates / self.warmup_steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.current_decay()
        source = unwrap_model(model).state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = source[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(decay).add_(value.float(), alpha=1.0 - decay)
            else:
                ema_value.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
