"""The per-step values of a training run, kept on the device between sync points (Chapter 8).

Reading a GPU tensor on the host (``float(loss)``) waits for every queued kernel: done after each step it
stalls the GPU's pipeline. The loop therefore records each step's loss components and gradient norm as device
tensors and copies them to the host together at a **sync point** (every ``train.log_every`` steps, at the end
of an epoch and before any checkpoint). There :meth:`StepMonitor.flush` checks them:

- a non-finite loss stops the run (:class:`NonFiniteLossError`) naming the first bad step and component. The
  check is up to ``train.log_every`` steps late: the weights may be NaN by then, which is why the run stops
  without saving and ``last.pt`` stays the last good checkpoint;
- under fp16 AMP a non-finite loss or gradient is normal now and then: the grad scaler skips that step and
  halves its scale. A run whose scaler skips ``train.max_skipped_steps`` steps in a row is diverging (or its
  loss overflows fp16 whatever the scale) and stops with a clear error instead of running on without learning.
  fp16's ``GradScaler`` itself reads its overflow flag on the host after every step (it decides there whether
  to step); bf16 and fp32 runs have no per-step host sync.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite (or fp16 steps kept overflowing); the message names the step."""


class StepMonitor:
    """Per-step values between sync points, then on the host as ``step_log`` rows.

    Args:
        names: the names of the values recorded by :meth:`add` (e.g. ``loss``, ``cls``, ``box``, ``obj``,
            ``grad_norm``); ``loss`` is the total that must stay finite.
        skips_allowed: ``True`` under fp16 AMP, where a non-finite step is skipped by the grad scaler.
        max_skipped_steps: consecutive skipped steps that stop the run.
        steps_per_epoch: to name a step's epoch and batch in errors.
    """

    def __init__(
        self,
        names: list[str],
        skips_allowed: bool,
        max_skipped_steps: int,
        steps_per_epoch: int | None = None,
    ) -> None:
        self.names = list(names)
        self.steps_per_epoch = steps_per_epoch
        self.skips_allowed = skips_allowed
        self.max_skipped_steps = max_skipped_steps
        self.skipped_steps = 0  # in all
        self.skip_streak = 0  # consecutive, up to the last flushed step
        self._values: list[Tensor] = []
        self._host: list[tuple[int, float, bool]] = []  # (step, lr, skipped) of each pending step

    def add(self, step: int, values: list[Tensor], lr: float, skipped: bool = False) -> None:
        """Record step ``step`` (1-based): ``values`` are 0-d tensors in the order of ``names``."""
        self._values.append(torch.stack([value.detach().float() for value in values]))
        self._host.append((step, lr, skipped))

    def __len__(self) -> int:
        return len(self._host)

    def flush(self) -> list[dict[str, float]]:
        """The pending steps as rows ``{name: value, ..., "lr": lr}`` (one device → host copy), checked.

        Raises:
            NonFiniteLossError: a non-finite loss (without fp16 skips), or ``max_skipped_steps`` skipped
                steps in a row.
        """
        if not self._host:
            return []
        table = torch.stack(self._values).cpu().tolist()
        rows = []
        for (step, lr, skipped), values in zip(self._host, table, strict=True):
            row = {**dict(zip(self.names, values, strict=True)), "lr": lr}
            if not math.isfinite(row["loss"]) and not self.skips_allowed:
                raise NonFiniteLossError(
                    f"non-finite loss at step {self._where(step)}: {_bad_component(row)}"
                )
            self.skipped_steps += skipped
            self.skip_streak = self.skip_streak + 1 if skipped else 0
            if self.skip_streak >= self.max_skipped_steps:
                raise NonFiniteLossError(
                    f"the fp16 grad scaler skipped {self.skip_streak} steps in a row up to step {self._where(step)} (the "
                    f"gradients overflowed every time; loss {row['loss']}): the run is not learning"
                )
            rows.append(row)
        self._values, self._host = [], []
        return rows

    def _where(self, step: int) -> str:
        """``6 (epoch 2, batch 2)``: a 1-based step with its epoch and batch."""
        if not self.steps_per_epoch:
            return str(step)
        epoch, batch = divmod(step - 1, self.steps_per_epoch)
        return f"{step} (epoch {epoch + 1}, batch {batch + 1})"


def _bad_component(row: dict[str, float]) -> str:
    """``loss component 'box' = nan`` (the first non-finite component, else the total)."""
    name = next((k for k, v in row.items() if k not in ("loss", "lr") and not math.isfinite(v)), "loss")
    return f"loss component {name!r} = {row[name]}" if name != "loss" else f"total loss = {row['loss']}"
