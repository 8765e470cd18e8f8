"""The training runner: the loop that turns a config into a trained detector (Chapter 8).

:meth:`Runner.fit` is, read top to bottom::

    while step < schedule.total_steps:                    # the plan: train.epochs, or what fits train.max_minutes
        for images, targets in train_loader:              # order = f(seed, epoch); augmentations = f(seed, epoch, rank)
            with autocast:  loss = criterion(model(images), *pad_targets(targets))
            scaler.scale(loss.total).backward(); clip_grad_norm_; scaler.step(optimizer); scaler.update()
            ema.update(model); scheduler.step()           # per-step warmup+cosine, fp32 EMA
            every train.log_every steps: sync             # step log, NaN check, time budget re-plan, Ctrl-C
        evaluate(ema.module) in fp32                      # COCO mAP on the original image coordinates
        save last.pt (best.pt when mAP improved); log metrics.jsonl/csv, steps.jsonl, curves.png

The pieces live in their own modules: the device and autocast (:mod:`detector.device`), the per-step values
and their checks (:mod:`detector.monitor`), the pace and time budget (:mod:`detector.budget`), the schedule and
its re-plan (:mod:`detector.schedule`), Ctrl-C (:mod:`detector.interrupt`), checkpoints
(:mod:`detector.checkpoint`), logs and tables (:mod:`detector.runlog`).

Exact resume: every epoch starts by reseeding all generators from ``(seed, epoch, rank)`` and the loader's
shuffle from ``(seed, epoch)``, so an epoch's data and augmentations do not depend on what ran before.
A run resumed from ``last.pt`` written at the end of an epoch (or by Ctrl-C in the middle of one: the
runner then replays the epoch's first batches through the loader without training on them, and restores
the saved RNG state) gives the same losses and weights as an uninterrupted run on the CPU. A resumed run
continues its own plan: a config that changes anything but where it runs
(:data:`detector.checkpoint.RESUME_MAY_CHANGE`) is refused, since ``config.yaml`` would then describe a run that did not happen.

Evaluation, during training and in ``detector eval`` alike, runs in fp32 whatever the training's autocast,
so the two report the same mAP for the same weights.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from detector import distributed
from detector.budget import TimeBudget, follow_plan
from detector.checkpoint import (
    CHECKPOINT_FORMAT,
    RESUMABLE,
    check_format,
    check_resume_config,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from detector.config import Config, ConfigError, save_config
from detector.data.augment import AugmentedDataset, draw_batch_size, rescale_batch
from detector.data.collate import pad_targets
from detector.device import amp_dtype, cap_workers, precision_summary, setup_device
from detector.ema import ModelEMA
from detector.inference import evaluate, save_predictions_figure
from detector.interrupt import StopRequest
from detector.loaders import build_datasets, make_loader, prepare_data, seed_everything
from detector.losses import DetectionLoss
from detector.model import build_detector
from detector.monitor import NonFiniteLossError, StepMonitor
from detector.runlog import RunLogger, data_summary, format_results, read_step_log
from detector.schedule import WarmupCosine, build_optimizer

SEED_STRIDE = 1_000_003  # a prime: (seed, epoch, rank) → distinct generator seeds
# The runner's progress, saved in last.pt and restored on resume.
PROGRESS_KEYS = ("epoch", "step", "batch_in_epoch", "history", "best_map", "epoch_sums", "lr")

__all__ = ["NonFiniteLossError", "Runner", "TrainingInterrupted", "epoch_seed"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``last.pt`` holds the state after the last completed step."""


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (seed * SEED_STRIDE + epoch) * 131 + rank


class Runner:
    """Train and evaluate a detector as described by a :class:`~detector.config.Config`.

    Args:
        config: the run's config (``runs/<config.name>/config.yaml`` after :meth:`fit`).
        resume: ``True`` for ``<out_dir>/<name>/last.pt``, or a checkpoint path, to continue a run exactly.
        run_dir: where to write; default ``<train.out_dir>/<name>``, with ``-2``, ``-3``… appended when it
            already holds a run (a resumed run writes next to its checkpoint).
        budget_counts_evaluation: ``False`` pauses the run's clock (``train.max_minutes`` and the logged
            ``elapsed_seconds``) while it evaluates, so that it counts training only: for a learning curve
            compared at equal training time with a peer that does not validate while it trains.
    """

    def __init__(
        self,
        config: Config,
        resume: str | Path | bool | None = None,
        run_dir: str | Path | None = None,
        *,
        budget_counts_evaluation: bool = True,
    ):
        self.config, train = config, config.train
        self.budget_counts_evaluation = budget_counts_evaluation
        self.device, self.dist = setup_device(train)
        seed_everything(epoch_seed(config.seed, 0, self.dist.rank))
        self._build_data()
        self.model = build_detector(config.model, self.num_classes).to(self.device)
        if train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_model = self._wrap(self.model)
        self.criterion = DetectionLoss(self.num_classes, config.loss)
        self.optimizer = build_optimizer(self.model, train)
        self.schedule = WarmupCosine(
            train.epochs * self.steps_per_epoch, train.warmup_steps, train.min_lr_ratio, train.decay_fraction
        )
        self.scheduler = LambdaLR(self.optimizer, self.schedule)  # LambdaLR saves the schedule's plan
        self.amp_dtype = amp_dtype(self.device, train.amp, train.cpu_bf16)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEMA(self.model, train.ema_decay, train.ema_warmup_steps) if train.ema else None
        self.budget = TimeBudget(
            train.max_minutes,
            self.schedule.total_steps,
            self.steps_per_epoch,
            len(self.val_loader),
            train.eval_every,
        )
        self.monitor: StepMonitor | None = None  # made at the first step, when the loss names its components
        self.stop = StopRequest(announce=self.dist.is_main)

        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimiser steps
        self.batch_in_epoch = 0  # completed steps of the current epoch (> 0 only in a mid-epoch checkpoint)
        self.best_map = -math.inf
        self.history: list[dict[str, Any]] = []  # one record per epoch (train means, validation metrics)
        self.step_log: list[dict[str, float]] = []  # loss components, grad norm and lr of every step
        self.epoch_sums: dict[str, float] = {}  # this epoch's per-step values, summed (for the epoch means)
        self.lr = 0.0  # the learning rate of the last step
        self.out_of_time = False  # set when train.max_minutes is used up before the plan's end
        self._stopping = False  # Ctrl-C, agreed by all processes at a sync point
        self._announced: tuple[int, int] | None = None  # (step, planned epochs) of the last printed estimate
        self._resume_rng: dict[str, Any] | None = None
        self.logger: RunLogger | None = None
        if resume:
            checkpoint = Path(train.out_dir) / config.name / "last.pt" if resume is True else Path(resume)
            self.run_dir = Path(run_dir) if run_dir else checkpoint.parent
            self.load_state(load_checkpoint(checkpoint), checkpoint)  # on the CPU: RNG states must stay there
        else:
            self.run_dir = (
                Path(run_dir) if run_dir else distributed.broadcast_from_main(_free_run_dir(config))
            )

    def _build_data(self) -> None:
        """The arena (generated by the main process when missing), the two splits and their loaders."""
        data = self.config.data
        cap_workers(data, self.dist)
        if self.dist.is_main:
            prepare_data(data)
        distributed.barrier()
        self.train_set, self.val_set = build_datasets(data)
        self.class_names: list[str] = list(self.train_set.class_names)
        self.num_classes = len(self.class_names)
        self.train_loader = make_loader(self.train_set, data, self.device, self.dist, train=True)
        self.val_loader = make_loader(self.val_set, data, self.device, self.dist, train=False)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"data.batch_size={data.batch_size} is larger than the train split "
                f"({len(self.train_set)} images per process): lower data.batch_size"
            )

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The module the loop calls: DDP under torchrun, compiled with ``train.compile``."""
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return torch.compile(model) if self.config.train.compile else model

    @property
    def planned_epochs(self) -> int:
        """Epochs of the current plan (the last one may end part-way)."""
        return math.ceil(self.schedule.total_steps / self.steps_per_epoch)

    # ----------------------------------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Train to the end of the plan (from where a resumed run stopped); returns the final metrics.

        Raises:
            NonFiniteLossError: the loss became NaN/inf (``last.pt`` stays the last good checkpoint).
            TrainingInterrupted: Ctrl-C; ``last.pt`` was written first.
        """
        if self.dist.is_main:
            self.logger = RunLogger(self.run_dir, resume_step=self.step)
            save_config(self.config, self.run_dir / "config.yaml")
            print(data_summary(self.train_set, self.val_set, self.class_names), flush=True)
            print(precision_summary(self.device, self.amp_dtype, self.config.train.cpu_bf16), flush=True)
        metrics = _val_metrics(self.history[-1]) if self.history else {}
        self.budget.start(self.step)
        self._first_step = self.step + 1  # synced at once: the budget's start-up interval
        try:
            with self.stop.installed():
                while self.step < self.schedule.total_steps and not self.out_of_time:
                    self._train_epoch()
                    if self._stopping:
                        self._interrupt()
                    metrics = self._end_epoch() or metrics
        finally:
            if self.logger is not None:
                self.logger.close()
        self._finish(metrics)
        return {**metrics, "epoch": self.epoch, "best_map": self.best_map, "run_dir": str(self.run_dir)}

    def _train_epoch(self) -> None:
        """Steps of the current epoch until its end, the plan's end, the budget's end or Ctrl-C."""
        seed_everything(epoch_seed(self.config.seed, self.epoch, self.dist.rank))
        self.train_loader.set_epoch(epoch_seed(self.config.seed, self.epoch))
        if isinstance(self.train_set, AugmentedDataset):  # close mosaic: off for the plan's last epochs
            self.train_set.set_epoch(self.epoch, self.planned_epochs)
        self.train_model.train()
        batches = iter(self.train_loader)
        for _ in range(self.batch_in_epoch):  # a mid-epoch checkpoint: replay the batches it trained on
            next(batches)
        if self._resume_rng is not None:  # … then continue with the random state it saved
            set_rng_state(self._resume_rng)
            self._resume_rng = None
        self._bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch,
            desc=f"epoch {self.epoch + 1}/{self.planned_epochs}",
            disable=not self.dist.is_main,
            dynamic_ncols=True,
        )
        log_every, synced = self.config.train.log_every, False
        for images, targets in batches:
            if self.step == 0 and self.logger is not None:
                self.logger.save_batch(images, targets, self.class_names)
            self._train_step(images, targets)
            self._bar.update()
            at_end = self.step >= self.schedule.total_steps or self.batch_in_epoch == self.steps_per_epoch
            synced = at_end or self.step % log_every == 0 or self.step == self._first_step
            if synced:  # at the plan's end too: the budget may still extend the plan
                self._sync()
            stop = self._stopping if self.dist.enabled else self.stop.requested  # one process: no sync needed
            if stop or self.out_of_time or self.step >= self.schedule.total_steps:
                break
        if not synced:  # a Ctrl-C between sync points (one process), or a resumed epoch with nothing left
            self._sync()
        self._bar.close()

    def _train_step(self, images: torch.Tensor, targets: list[dict[str, Any]]) -> None:
        """One optimiser step; its values stay on the device until the next sync point."""
        train, data = self.config.train, self.config.data
        if data.multiscale:  # the batch's size: drawn from the epoch-seeded Python generator
            size = draw_batch_size(data.image_size, data.multiscale, max(self.model.head.strides), random)
            images, targets = rescale_batch(images, targets, size)
        images = images.to(self.device, non_blocking=True)
        if train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        gt_labels, gt_boxes, gt_mask = pad_targets(targets, device=self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss = self.criterion(self.train_model(images), gt_labels, gt_boxes, gt_mask)

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.total).backward()
        values = [loss.total, *loss.components.values()]
        if train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            values.append(nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip))
        # a host read only under fp16 (whose scaler reads its overflow flag on the host anyway)
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)  # skipped by the scaler when fp16 gradients overflowed
        self.scaler.update()
        skipped = self.scaler.get_scale() < scale
        if self.ema is not None and not skipped:
            self.ema.update(self.model)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.step, self.batch_in_epoch = self.step + 1, self.batch_in_epoch + 1

        if self.monitor is None:
            names = ["loss", *loss.components, *(["grad_norm"] if train.grad_clip else [])]
            self.monitor = StepMonitor(
                names, self.scaler.is_enabled(), train.max_skipped_steps, self.steps_per_epoch
            )
        self.monitor.add(self.step, values, lr, skipped)

    def _sync(self) -> None:
        """The sync point: the pending steps' values reach the host and are checked, the budget re-plans,
        and all processes agree (one all-reduce) on a NaN, a Ctrl-C and the plan."""
        pending = len(self.monitor) if self.monitor is not None else 0
        error, rows = None, []
        try:
            rows = self.monitor.flush() if self.monitor is not None else []
        except NonFiniteLossError as found:
            error = found
        self.budget.observe(self.step)
        plan = self.budget.plan(self.step, self.schedule.total_steps) if self.dist.is_main else 0
        bad, stop, plan = distributed.max_over_processes(
            [float(error is not None), float(self.stop.requested), float(plan)], self.device
        )
        if bad:
            raise self._non_finite_error(error)
        self._record(rows, first_step=self.step - pending + 1)
        self._stopping = bool(stop)
        self._replan(int(plan))

    def _record(self, rows: list[dict[str, float]], first_step: int) -> None:
        """Flushed step rows → step log, the epoch's sums, steps.jsonl and the progress bar."""
        if not rows:
            return
        self.step_log += rows
        for row in rows:
            for key, value in row.items():
                if key != "lr":
                    self.epoch_sums[key] = self.epoch_sums.get(key, 0.0) + value
        self.lr = rows[-1]["lr"]
        if self.logger is not None:
            self.logger.log_steps(first_step, rows)
        postfix = {key: f"{value:.3f}" for key, value in rows[-1].items() if key != "lr"}
        postfix.update({"lr": f"{self.lr:.2e}", "s/step": f"{self.budget.pace or 0:.2f}"})
        self._bar.set_postfix(postfix, refresh=False)

    def _replan(self, plan: int) -> None:
        """Follow the budget's plan: stop now, or re-lay the schedule to end at ``plan`` steps."""
        if self.out_of_time:
            return
        self.out_of_time = follow_plan(self.schedule, plan, self.step)
        if self.out_of_time:
            self._print(f"\ntrain.max_minutes={self.config.train.max_minutes} reached after step {self.step}")
            return
        if self._announced is None:
            due = self.budget.calibrated  # the first estimate, once the pace comes from regular steps
        else:  # the plan's epochs changed: said at most once an epoch
            step, epochs = self._announced
            due = epochs != self.planned_epochs and self.step - step >= self.steps_per_epoch
        if due:
            self._announced = (self.step, self.planned_epochs)
            budget = f"train.max_minutes={self.config.train.max_minutes}: " if self.budget.seconds else ""
            self._print(f"\n{budget}{self.budget.estimate(self.step, self.schedule.total_steps)}")

    def _non_finite_error(self, error: NonFiniteLossError | None) -> NonFiniteLossError:
        what = (
            str(error) if error is not None else f"a non-finite loss in another process by step {self.step}"
        )
        return NonFiniteLossError(
            f"{what}; stopped without saving, {self.run_dir / 'last.pt'} is the last good checkpoint (the check "
            f"runs every train.log_every={self.config.train.log_every} steps). "
            "Try a lower train.lr, a smaller train.grad_clip or a longer train.warmup_steps"
        )

    def _interrupt(self) -> None:
        self.save("last.pt")
        raise TrainingInterrupted(
            f"interrupted in epoch {self.epoch + 1} after step {self.step}: saved {self.run_dir / 'last.pt'}; "
            f"continue with: detector train --resume {self.run_dir / 'last.pt'}"
        )

    def _end_epoch(self) -> dict[str, Any] | None:
        """An epoch (or the plan) ended: log it, evaluate when due, save last.pt and best.pt when mAP improved."""
        started = self.budget.elapsed()
        images_per_step = self.config.data.batch_size * self.dist.world_size
        record = {
            "epoch": self.epoch + 1,
            "step": self.step,
            **self._epoch_means(),
            "img_per_s": images_per_step / (self.budget.pace or math.inf),
            "skipped_steps": self.monitor.skipped_steps if self.monitor else 0,
            "elapsed_seconds": self.budget.elapsed(),
        }
        if self.batch_in_epoch == self.steps_per_epoch:
            self.epoch, self.batch_in_epoch, self.epoch_sums = self.epoch + 1, 0, {}
        finished = self.out_of_time or self.step >= self.schedule.total_steps
        evaluated = finished or (self.batch_in_epoch == 0 and self.epoch % self.config.train.eval_every == 0)
        metrics = self._evaluate_on_the_clock() if evaluated else None
        record.update({f"val_{k}": v for k, v in (metrics or {}).items()})
        self.history.append(record)
        improved = metrics is not None and metrics["map"] > self.best_map
        if improved:
            self.best_map = metrics["map"]
        if self.logger is not None:
            self.logger.log_epoch(record)
            self.logger.draw_curves(self.step_log, self.history)
        self.save("last.pt")
        if improved:
            self.save("best.pt")
        self.budget.observe_epoch_end(self.budget.elapsed() - started, evaluated)
        return metrics

    def _evaluate_on_the_clock(self) -> dict[str, Any]:
        """:meth:`evaluate`, its seconds taken off the budget's clock unless ``budget_counts_evaluation``."""
        started = self.budget.clock()
        metrics = self.evaluate()
        if not self.budget_counts_evaluation:
            self.budget.pause(self.budget.clock() - started)
        return metrics

    def _epoch_means(self) -> dict[str, float]:
        """Mean of each logged value over this epoch's steps (all processes), and the last step's lr."""
        keys = sorted(self.epoch_sums)
        sums = torch.tensor([self.epoch_sums[k] for k in keys], dtype=torch.float64, device=self.device)
        means = (distributed.reduce_mean(sums) / max(1, self.batch_in_epoch)).cpu().tolist()
        return {**dict(zip(keys, means, strict=True)), "lr": self.lr}

    def _finish(self, metrics: dict[str, Any]) -> None:
        """predictions.png and the results table (main process only)."""
        if not self.dist.is_main or not metrics:
            return
        model = self.ema.module if self.ema is not None else self.model
        figure = self.run_dir / "predictions.png"
        save_predictions_figure(model, self.val_set, self.class_names, self.config.eval, self.device, figure)
        when = f"epoch {self.epoch}"
        if self.batch_in_epoch:
            when = f"epoch {self.epoch + 1} ended after {self.batch_in_epoch}/{self.steps_per_epoch} steps"
        weights = "EMA" if self.ema else "raw"
        title = f"Validation ({self.config.data.val_split}), {when}, {weights} weights, fp32"
        print(format_results(metrics, self.class_names, title=title))
        print(f"run directory: {self.run_dir} (best mAP {self.best_map:.4f} in best.pt)")

    def _print(self, text: str) -> None:
        if self.dist.is_main:
            print(text, flush=True)

    # ------------------------------------------------------------------------------------------ evaluate
    def evaluate(self, model: nn.Module | None = None) -> dict[str, Any]:
        """COCO metrics (plus per-class AP) of ``model`` (default: the EMA weights) on the validation split.

        In fp32, as ``detector eval`` does, whatever autocast the training uses.
        """
        if model is None:
            model = self.ema.module if self.ema is not None else self.model
        return evaluate(model, self.val_loader, self.device, self.config.eval, self.num_classes)

    # --------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``last.pt``: everything to continue the run exactly (the step log stays in steps.jsonl)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": RESUMABLE,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "budget": self.budget.state_dict(),
            **{key: getattr(self, key) for key in PROGRESS_KEYS},
            "mid_epoch": self.batch_in_epoch > 0,
            "rng": rng_state(),
            "config": self.config.to_dict(),
            "class_names": self.class_names,
        }

    def best_state(self) -> dict[str, Any]:
        """``best.pt``: the weights to use (EMA when on) and what is needed to use them."""
        model = self.ema.module if self.ema is not None else self.model
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": "weights",
            "model": model.state_dict(),
            "ema": None,
            "config": self.config.to_dict(),
            "class_names": self.class_names,
            "epoch": self.epoch,
            "step": self.step,
            "best_map": self.best_map,
            "history": self.history,
            "schedule": vars(self.schedule).copy(),
        }

    def load_state(self, state: dict[str, Any], path: str | Path = "checkpoint") -> None:
        """Continue from a ``last.pt`` (its format, classes and config checked against this run's)."""
        check_format(state, path, resumable=True)
        if state["class_names"] != self.class_names:
            raise ConfigError(
                f"{path} was trained on classes {state['class_names']} but data.root has "
                f"{self.class_names}: resume with the same data set"
            )
        check_resume_config(state["config"], self.config.to_dict(), path)
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])  # the schedule's plan, re-plans included
        if state["scaler"]:  # empty when saved without fp16 AMP (e.g. a CPU run resumed on a GPU)
            self.scaler.load_state_dict(state["scaler"])
        self.budget.load_state_dict(state["budget"])
        for key in PROGRESS_KEYS:
            setattr(self, key, state[key])
        if self.dist.is_main:
            self.step_log = read_step_log(self.run_dir, self.step)
        self._resume_rng = state["rng"] if state["mid_epoch"] else None
        set_rng_state(state["rng"])

    def save(self, name: str) -> None:
        if self.dist.is_main:
            save_checkpoint(
                self.best_state() if name == "best.pt" else self.state_dict(), self.run_dir / name
            )
        distributed.barrier()


def _free_run_dir(config: Config) -> Path:
    """``<out_dir>/<name>``, or ``<name>-2``, ``-3``… when that already holds a run."""
    base = Path(config.train.out_dir) / config.name
    candidate, index = base, 1
    while (candidate / "config.yaml").exists() or (candidate / "last.pt").exists():
        index += 1
        candidate = base.with_name(f"{base.name}-{index}")
    return candidate


def _val_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """The validation metrics of a history record (keys without their ``val_`` prefix)."""
    return {key[4:]: value for key, value in record.items() if key.startswith("val_")}
