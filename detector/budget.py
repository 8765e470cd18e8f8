"""The run's clock: its pace, the time it will take, and the wall-clock budget ``train.max_minutes``.

The loop calls :meth:`TimeBudget.observe` at each sync point (every ``train.log_every`` steps, where the host
waits for the device anyway) and :meth:`TimeBudget.observe_epoch_end` after an epoch's evaluation and
checkpoint. From these it keeps

- the **pace**: seconds per training step over the last ``PACE_WINDOW`` steps (a moving window, so a stall at
  the start is forgotten and a machine that slows down later is noticed), the first step excluded once others
  are known (it pays for start-up: worker spawn, cuDNN autotuning, compilation);
- the **cost of an epoch end** (evaluation, checkpoints, curves), measured; before the first one it is estimated
  as ``EVAL_STEP_COST`` training steps per validation batch.

Seconds handed to :meth:`TimeBudget.pause` do not count: a learning curve measured against a peer whose clock
counts training only pauses the budget while it evaluates (``benchmarks.peers.train_curve``).

With ``train.max_minutes`` set, :meth:`TimeBudget.plan` returns the number of steps that fit into what is left
of the budget, evaluations included, at most the configured ``train.epochs``: the loop re-plans the learning-rate
schedule to end there (:meth:`detector.schedule.WarmupCosine.replan`), so the cosine ends when the budget does,
whatever the pace does; the last epoch may end part-way. The plan is recomputed at every sync point and never
falls below the steps already done.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from detector.schedule import WarmupCosine

PACE_WINDOW = 60  # steps over which the pace is averaged
EVAL_STEP_COST = 0.5  # a validation batch costs about this many training steps (forward only + NMS + COCO)


class TimeBudget:
    """Pace, time estimate and (with ``minutes``) the plan that fits the budget.

    Args:
        minutes: ``train.max_minutes``, or ``None`` for no budget (the pace and estimate are still kept).
        max_steps: the configured plan, ``train.epochs × steps_per_epoch``; the budget never plans more.
        steps_per_epoch: training steps per epoch. eval_batches: validation batches per evaluation.
        eval_every: ``train.eval_every`` (epochs between evaluations; the plan's last step is always evaluated).
        clock: seconds, monotonic (a fake one in tests).
    """

    def __init__(
        self,
        minutes: float | None,
        max_steps: int,
        steps_per_epoch: int,
        eval_batches: int,
        eval_every: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = None if minutes is None else 60.0 * minutes
        self.max_steps, self.steps_per_epoch = max_steps, steps_per_epoch
        self.eval_batches, self.eval_every = eval_batches, eval_every
        self.clock = clock
        self.used_before = 0.0  # seconds spent by the run before this process (a resumed run)
        self.paused = 0.0  # seconds of this process that do not count (see pause)
        self.epoch_end_seconds: float | None = None  # measured cost of an epoch end with an evaluation
        self._intervals: deque[tuple[int, float]] = deque()  # (steps, seconds) of recent sync intervals
        self._start = self._mark_time = 0.0
        self._mark_step = 0
        self._startup_pending = True  # the first interval of one step is kept apart (see observe)
        self._startup_seconds: float | None = None

    def start(self, step: int) -> None:
        """The loop starts (or resumes) at ``step``."""
        self._start = self._mark_time = self.clock()
        self._mark_step = step

    def elapsed(self) -> float:
        """Seconds of this run so far (a resumed run's earlier seconds included, paused seconds not)."""
        return self.used_before + self.clock() - self._start - self.paused

    def pause(self, seconds: float) -> None:
        """The last ``seconds`` do not count against the budget (nor towards the cost of an epoch end)."""
        self.paused += seconds

    def observe(self, step: int) -> None:
        """A sync point after ``step`` steps: the steps since the previous one took the time since then."""
        now = self.clock()
        steps = step - self._mark_step
        if steps > 0:
            if self._startup_pending and steps == 1:  # the run's first step alone: start-up costs
                self._startup_seconds = now - self._mark_time
            else:
                self._intervals.append((steps, now - self._mark_time))
                while sum(n for n, _ in self._intervals) - self._intervals[0][0] >= PACE_WINDOW:
                    self._intervals.popleft()
            self._startup_pending = False
        self._mark_time, self._mark_step = now, step

    def observe_epoch_end(self, seconds: float, evaluated: bool) -> None:
        """An epoch end took ``seconds`` (evaluation and checkpoints); the next interval starts after it."""
        if evaluated:
            previous = self.epoch_end_seconds
            self.epoch_end_seconds = seconds if previous is None else 0.5 * (previous + seconds)
        self._mark_time = self.clock()

    @property
    def pace(self) -> float | None:
        """Seconds per training step over the recent window (``None`` before the first sync point)."""
        if not self._intervals:
            return self._startup_seconds
        steps = sum(abs(n) for n, _ in self._intervals)
        return sum(seconds for _, seconds in self._intervals) / steps

    @property
    def calibrated(self) -> bool:
        """The pace comes from regular steps (not only the first, start-up, step)."""
        return bool(self._intervals)

    def epoch_end_cost(self) -> float:
        """Seconds of an epoch end with an evaluation (measured, else estimated from the pace)."""
        if self.epoch_end_seconds is not None:
            return self.epoch_end_seconds
        return EVAL_STEP_COST * self.eval_batches * (self.pace or 0.0)

    def _evaluations(self, step: int, total: int) -> int:
        """Evaluations still to run for a plan of ``total`` steps from ``step``: epoch ends, plus the last."""
        spe, every = self.steps_per_epoch, self.eval_every
        first, last = math.ceil(max(step, 1) / spe), (total - 1) // spe  # epoch ends within [step, total)
        ends = sum(1 for epoch in range(max(first, 1), last + 1) if epoch % every == 0)
        return ends + 1

    def cost(self, step: int, total: int) -> float:
        """Seconds from ``step`` to the end of a plan of ``total`` steps, evaluations included."""
        return (total - step) * (self.pace or 0.0) + self._evaluations(step, total) * self.epoch_end_cost()

    def plan(self, step: int, current: int) -> int:
        """The total steps of the plan that ends when the budget does (``current`` without a budget).

        Never fewer than ``step``; ``step`` itself means "stop now" (the final evaluation is all that fits).
        Until the pace comes from regular steps, the ``current`` plan is kept unless nothing fits any more: a
        start-up step (worker spawn, autotuning) says too little about the pace to re-lay the schedule.
        """
        if self.seconds is None or self.pace is None:
            return current
        left = self.seconds - self.elapsed()
        if not self.calibrated:
            return step if self.cost(step, step) > left else current
        low, high = step, self.max_steps  # the largest total whose cost fits into what is left
        if self.cost(step, high) <= left:
            return high
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if self.cost(step, middle) <= left else (low, middle - 1)
        return low

    def estimate(self, step: int, total: int) -> str:
        """One line: the pace, the plan and the time it needs from here."""
        pace = self.pace or 0.0
        seconds = self.cost(step, total)
        epochs = total / self.steps_per_epoch
        budget = "" if self.seconds is None else f" of the {self.seconds / 60:.1f} min budget"
        return (
            f"pace {pace:.3f} s per step ({self.steps_per_epoch} steps per epoch); plan {total} steps "
            f"({epochs:.1f} epochs): about {_minutes(self.elapsed() + seconds)} in all{budget}, "
            f"{_minutes(seconds)} from now"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"elapsed": self.elapsed(), "epoch_end_seconds": self.epoch_end_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.used_before = float(state["elapsed"])
        self.epoch_end_seconds = state["epoch_end_seconds"]


def follow_plan(schedule: WarmupCosine, plan: int, step: int) -> bool:
    """Re-lay ``schedule`` to end at ``plan`` steps (from ``step``); ``True`` when the plan is "stop now"."""
    if plan <= step < schedule.total_steps:
        return True
    if plan != schedule.total_steps and plan > step:
        schedule.replan(plan, step)
    return False


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"
