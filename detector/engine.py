"""The training runner: the loop that turns a config into a trained detector (Chapter 8).

One epoch of :meth:`Runner.fit` is::

    for images, targets in train_loader:                 # order = f(seed, epoch)
        with autocast:  loss = criterion(model(images), *pad_targets(targets))
        scaler.scale(loss.total).backward(); clip_grad_norm_; scaler.step(optimizer); scaler.update()
        scheduler.step(); ema.update(model)                 # per-step warmup+cosine, fp32 EMA
    metrics = evaluate(ema.module)                          # COCO mAP on the original image coordinates
    save last.pt (and best.pt when mAP improved); log metrics.jsonl/csv, curves.png

Exact resume: every epoch starts by reseeding all generators from ``(seed, epoch, rank)`` and the loader's
shuffle from ``(seed, epoch)``, so an epoch's data and augmentations do not depend on what ran before.
A run resumed from ``last.pt`` written at the end of an epoch (or by Ctrl-C in the middle of one: the
runner then replays the epoch's first batches through the loader without training on them, and restores
the saved RNG state) gives the same losses and weights as an uninterrupted run on the CPU.

``train.max_minutes`` (a wall-clock budget for :meth:`Runner.fit`, data preparation excluded): after its
first steps the plan shrinks to the epochs that fit at that pace and the cosine schedule is re-laid over
them; should the run still reach the budget, it stops there (see :meth:`Runner._watch_budget`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from detector import distributed
from detector.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from detector.config import Config, ConfigError, save_config
from detector.data.collate import pad_targets
from detector.ema import ModelEMA
from detector.inference import evaluate, save_predictions_figure
from detector.loaders import build_datasets, make_loader, prepare_data, resolve_device, seed_everything
from detector.losses import DetectionLoss, LossOutput
from detector.model import build_detector
from detector.runlog import RunLogger, format_results
from detector.schedule import build_optimizer, build_scheduler

CHECKPOINT_FORMAT = 1
SEED_STRIDE = 1_000_003  # a prime: (seed, epoch, rank) → distinct generator seeds
# The runner's progress, saved in every checkpoint and restored on resume.
CALIBRATION_STEPS = 20  # steps timed before train.max_minutes re-plans the run
EVAL_STEP_COST = 0.5  # a validation batch costs about this many training steps (forward only + NMS + COCO)
PROGRESS_KEYS = ("epoch", "step", "batch_in_epoch", "history", "step_log", "best_map", "skipped_steps",
                 "planned_epochs", "budget_planned")  # fmt: skip


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the loss component."""


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
    """

    def __init__(
        self, config: Config, resume: str | Path | bool | None = None, run_dir: str | Path | None = None
    ):
        self.config = config
        train = config.train
        self.device = resolve_device(train.device)
        self.dist = distributed.init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = train.deterministic
            torch.backends.cudnn.benchmark = not train.deterministic
        seed_everything(epoch_seed(config.seed, 0, self.dist.rank))

        if self.dist.is_main:
            prepare_data(config.data)
        distributed.barrier()
        self.train_set, self.val_set = build_datasets(config.data)
        self.class_names: list[str] = list(self.train_set.class_names)
        self.num_classes = len(self.class_names)
        self.train_loader = make_loader(self.train_set, config.data, self.device, self.dist, train=True)
        self.val_loader = make_loader(self.val_set, config.data, self.device, self.dist, train=False)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"data.batch_size={config.data.batch_size} is larger than the train split "
                f"({len(self.train_set)} images per process): lower data.batch_size"
            )

        self.model = build_detector(config.model, self.num_classes).to(self.device)
        if train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.criterion = DetectionLoss(self.num_classes, config.loss)
        self.optimizer = build_optimizer(self.model, train)
        self.scheduler = build_scheduler(
            self.optimizer, train.epochs * self.steps_per_epoch, train.warmup_steps, train.min_lr_ratio
        )
        self.amp_dtype = _amp_dtype(self.device, train.amp, train.cpu_bf16)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEMA(self.model, train.ema_decay, train.ema_warmup_steps) if train.ema else None
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        if train.compile:
            self.train_model = torch.compile(self.train_model)

        self.planned_epochs = train.epochs  # fewer when train.max_minutes shrinks the plan
        self.budget_planned = False
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimiser steps
        self.batch_in_epoch = 0  # completed steps of the current epoch (> 0 only in a Ctrl-C checkpoint)
        self.best_map = -math.inf
        self.history: list[dict[str, Any]] = []
        self.step_log: list[dict[str, float]] = []  # loss components, grad norm and lr of every step
        self.skipped_steps = 0
        self.stop_requested = False  # set by Ctrl-C
        self.out_of_time = False  # set when train.max_minutes is used up
        self._resume_rng: dict[str, Any] | None = None
        if resume:
            checkpoint_path = (
                Path(train.out_dir) / config.name / "last.pt" if resume is True else Path(resume)
            )
            self.run_dir = Path(run_dir) if run_dir else checkpoint_path.parent
            self.load_state(load_checkpoint(checkpoint_path))  # on the CPU: RNG states must stay there
        else:
            self.run_dir = (
                Path(run_dir) if run_dir else distributed.broadcast_from_main(_free_run_dir(config))
            )
        self.logger: RunLogger | None = None

    # ----------------------------------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Train ``train.epochs`` epochs (from where a resumed run stopped); returns the final metrics.

        Raises:
            NonFiniteLossError: the loss became NaN/inf (``last.pt`` stays the last good checkpoint).
            TrainingInterrupted: Ctrl-C; ``last.pt`` was written first.
        """
        train = self.config.train
        if self.dist.is_main:
            self.logger = RunLogger(self.run_dir)
            save_config(self.config, self.run_dir / "config.yaml")
        self._fit_start, self._steps_this_run = time.monotonic(), 0
        metrics = _val_metrics(self.history[-1]) if self.history else {}
        try:
            with self._ctrl_c_sets_stop_flag():
                while self.epoch < self.planned_epochs:
                    record = self._train_epoch(self.epoch)
                    if self.stop_requested:
                        self.save("last.pt")
                        raise TrainingInterrupted(
                            f"interrupted in epoch {self.epoch + 1} after step {self.step}: saved "
                            f"{self.run_dir / 'last.pt'}; continue with: detector train --resume {self.run_dir / 'last.pt'}"
                        )
                    if self.out_of_time:  # in the middle of an epoch: evaluate and stop
                        self._print(f"train.max_minutes={train.max_minutes} reached after step {self.step}")
                        metrics = self._evaluate_into(record)
                        self._end_epoch(record)
                        break
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    if self.epoch % train.eval_every == 0 or self.epoch == self.planned_epochs:
                        metrics = self._evaluate_into(record)
                    self._end_epoch(record)
        finally:
            if self.logger is not None:
                self.logger.close()
        self._finish(metrics)
        return {**metrics, "epoch": self.epoch, "best_map": self.best_map, "run_dir": str(self.run_dir)}

    def _watch_budget(self) -> None:
        """``train.max_minutes``, after every step: plan once (after a few steps), stop when time is up.

        Calibration: after ``CALIBRATION_STEPS`` steps (or the first epoch, if shorter) the pace so far gives
        the epochs that fit into the budget (training plus ``EVAL_STEP_COST`` per validation batch); the plan
        shrinks to them (at least the current epoch) and the cosine schedule is re-laid over the new plan,
        so the learning rate still decays to its floor. Should the run still reach the budget, it stops
        after that step (then evaluates, saves and reports as usual).
        """
        budget = self.config.train.max_minutes
        if budget is None:
            return
        elapsed = time.monotonic() - self._fit_start
        if not self.budget_planned and self._steps_this_run >= min(CALIBRATION_STEPS, self.steps_per_epoch):
            seconds_per_step = elapsed / self._steps_this_run
            epoch_seconds = seconds_per_step * (self.steps_per_epoch + EVAL_STEP_COST * len(self.val_loader))
            done_in_epoch = self.batch_in_epoch / self.steps_per_epoch
            fits = self.epoch + max(1, int(done_in_epoch + (60.0 * budget - elapsed) / epoch_seconds))
            planned = distributed.broadcast_from_main(min(self.planned_epochs, fits))
            if planned < self.planned_epochs:
                self.scheduler.lr_lambdas[0].replan(planned * self.steps_per_epoch)
                self._print(
                    f"\ntrain.max_minutes={budget}: {planned} of {self.planned_epochs} epochs fit at "
                    f"{seconds_per_step:.2f} s per step; the cosine schedule now ends at epoch {planned}"
                )
                self.planned_epochs = planned
            self.budget_planned = True
        self.out_of_time = distributed.any_process(elapsed > 60.0 * budget, self.device)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training split; returns the epoch's mean losses, lr and throughput."""
        train = self.config.train
        seed_everything(epoch_seed(self.config.seed, epoch, self.dist.rank))
        self.train_loader.set_epoch(epoch_seed(self.config.seed, epoch))
        self.train_model.train()
        batches = iter(self.train_loader)
        for _ in range(self.batch_in_epoch):  # a Ctrl-C checkpoint: replay the batches it already trained on
            next(batches)
        self.resume_rng_after_skip()
        bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch, disable=not self.dist.is_main,
                   desc=f"epoch {epoch + 1}/{self.planned_epochs}", dynamic_ncols=True)  # fmt: skip
        start, images_seen, throughput = time.monotonic(), 0, 0.0
        for images, targets in batches:
            images = images.to(self.device, non_blocking=True)
            if train.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            gt_labels, gt_boxes, gt_mask = pad_targets(targets, device=self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                loss = self.criterion(self.train_model(images), gt_labels, gt_boxes, gt_mask)
            values = self._check_finite(loss, epoch)

            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss.total).backward()
            if train.grad_clip:
                self.scaler.unscale_(self.optimizer)
                values["grad_norm"] = float(
                    nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip)
                )
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skipped by the scaler when fp16 gradients overflowed
            self.scaler.update()
            if self.scaler.is_enabled() and self.scaler.get_scale() < scale:
                self.skipped_steps += 1
            elif self.ema is not None:
                self.ema.update(self.model)
            values["lr"] = self.scheduler.get_last_lr()[0]
            self.scheduler.step()
            self.step += 1
            self.batch_in_epoch += 1

            self.step_log.append(values)
            images_seen += len(images) * self.dist.world_size
            throughput = images_seen / max(time.monotonic() - start, 1e-9)
            bar.set_postfix({**{k: f"{values[k]:.3f}" for k in loss.components}, "lr": f"{values['lr']:.2e}",
                             "img/s": f"{throughput:.1f}"}, refresh=False)  # fmt: skip
            bar.update()
            if self.logger is not None:
                self.logger.log_step(self.step, values)
            self._steps_this_run += 1
            self._watch_budget()
            self.stop_requested = distributed.any_process(self.stop_requested, self.device)
            if self.stop_requested or self.out_of_time:
                break
        bar.close()
        return {"epoch": epoch + 1, "step": self.step, **self._epoch_means(), "img_per_s": throughput,
                "skipped_steps": self.skipped_steps}  # fmt: skip

    def _check_finite(self, loss: LossOutput, epoch: int) -> dict[str, float]:
        """The step's loss values as floats; a non-finite loss raises (or, under fp16 AMP, is counted)."""
        values = {
            "loss": float(loss.total.detach()),
            **{name: float(value) for name, value in loss.components.items()},
        }
        bad = not math.isfinite(values["loss"])
        if distributed.any_process(bad, self.device) and not self.scaler.is_enabled():
            component = next((k for k, v in values.items() if k != "loss" and not math.isfinite(v)), "total")
            where = f"loss component {component!r} = {values.get(component, values['loss'])}" if bad else (
                "a non-finite loss in another process")  # fmt: skip
            raise NonFiniteLossError(
                f"non-finite loss at step {self.step + 1} (epoch {epoch + 1}, batch {self.batch_in_epoch + 1}): "
                f"{where}; stopped without saving, {self.run_dir / 'last.pt'} is the last good checkpoint. "
                "Try a lower train.lr, a smaller train.grad_clip or a longer train.warmup_steps"
            )
        return values

    def _epoch_means(self) -> dict[str, float]:
        """Mean of each logged value over this epoch's steps (all processes)."""
        steps = self.step_log[-self.batch_in_epoch :]
        keys = [k for k in steps[0] if k != "lr"]
        means = torch.tensor([sum(s[k] for s in steps) / len(steps) for k in keys], dtype=torch.float64)
        means = distributed.reduce_mean(means.to(self.device)).cpu()
        return {**dict(zip(keys, means.tolist(), strict=True)), "lr": steps[-1]["lr"]}

    def _evaluate_into(self, record: dict[str, Any]) -> dict[str, Any]:
        metrics = self.evaluate()
        record.update({f"val_{k}": v for k, v in metrics.items()})
        return metrics

    def _end_epoch(self, record: dict[str, Any]) -> None:
        """Log the epoch, redraw the curves, write last.pt and (if mAP improved) best.pt."""
        self.history.append(record)
        improved = "val_map" in record and record["val_map"] > self.best_map
        if improved:
            self.best_map = record["val_map"]
        if self.dist.is_main and self.logger is not None:
            self.logger.log_epoch(record)
            self.logger.draw_curves(self.step_log, self.history)
        self.save("last.pt")
        if improved:
            self.save("best.pt")

    def _finish(self, metrics: dict[str, Any]) -> None:
        """predictions.png and the results table (main process only)."""
        if not self.dist.is_main or not metrics:
            return
        model = self.ema.module if self.ema is not None else self.model
        save_predictions_figure(model, self.val_set, self.class_names, self.config.eval, self.device,
                                self.run_dir / "predictions.png")  # fmt: skip
        when = f"epoch {self.epoch}" if self.batch_in_epoch == 0 else (
            f"epoch {self.epoch + 1} stopped after {self.batch_in_epoch}/{self.steps_per_epoch} steps")  # fmt: skip
        print(format_results(metrics, self.class_names, title=f"Validation ({self.config.data.val_split}), "
                             f"{when}, {'EMA' if self.ema else 'raw'} weights"))  # fmt: skip
        print(f"run directory: {self.run_dir} (best mAP {self.best_map:.4f} in best.pt)")

    # ------------------------------------------------------------------------------------------ evaluate
    def evaluate(self, model: nn.Module | None = None) -> dict[str, Any]:
        """COCO metrics (plus per-class AP) of ``model`` (default: the EMA weights) on the validation split."""
        if model is None:
            model = self.ema.module if self.ema is not None else self.model
        return evaluate(
            model, self.val_loader, self.device, self.config.eval, self.num_classes, self.amp_dtype
        )

    # --------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            **{key: getattr(self, key) for key in PROGRESS_KEYS},
            "mid_epoch": self.batch_in_epoch > 0,
            "rng": rng_state(),
            "config": self.config.to_dict(),
            "class_names": self.class_names,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("class_names") != self.class_names:
            raise ConfigError(
                f"the checkpoint was trained on classes {state.get('class_names')} but data.root has "
                f"{self.class_names}: resume with the same data set"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when saved without fp16 AMP (e.g. a CPU run resumed on a GPU)
            self.scaler.load_state_dict(state["scaler"])
        for key in PROGRESS_KEYS:
            setattr(self, key, state[key])
        self._resume_rng = state["rng"] if state["mid_epoch"] else None
        set_rng_state(state["rng"])

    def save(self, name: str) -> None:
        if self.dist.is_main:
            save_checkpoint(self.state_dict(), self.run_dir / name)
        distributed.barrier()

    def resume_rng_after_skip(self) -> None:
        """After replaying a Ctrl-C'd epoch's first batches: the RNG state the checkpoint saved."""
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
            self._resume_rng = None

    # ------------------------------------------------------------------------------------------- helpers
    @contextlib.contextmanager
    def _ctrl_c_sets_stop_flag(self) -> Iterator[None]:
        """The first Ctrl-C asks to stop after the current step; a second one interrupts at once."""
        if not _in_main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            self._print("\nCtrl-C: stopping after this step and saving last.pt (press again to abort)")

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _print(self, text: str) -> None:
        if self.dist.is_main:
            print(text, flush=True)


def _amp_dtype(device: torch.device, enabled: bool, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype, or ``None`` for full fp32.

    CUDA (``train.amp``): bf16 where the GPU supports it, else fp16 (with a grad scaler). CPU
    (``train.cpu_bf16``): bf16 only where oneDNN has native bf16 kernels (AVX512-BF16 or AMX) — there it
    halves the step time; elsewhere bf16 is emulated and slower, so the run stays in fp32.
    """
    if device.type == "cuda":
        if not enabled:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


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


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
