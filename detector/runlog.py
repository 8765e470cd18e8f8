"""What a training run writes besides checkpoints: per-epoch logs, TensorBoard scalars, ``curves.png``.

Files in the run directory (only the main process writes):

- ``metrics.jsonl``: one JSON object per epoch (train loss components, lr, throughput, validation metrics);
- ``metrics.csv``: the same rows as a table (columns fixed by the first row);
- ``steps.jsonl``: one JSON object per optimiser step (loss components, grad norm, lr), appended at each sync
  point; checkpoints do not carry it, a resumed run reads it back (:func:`read_step_log`);
- ``curves.png``: train loss per step and per epoch, validation mAP and mAP50, redrawn every epoch;
- ``train_batch.jpg``: the run's first training batch with its boxes, augmentations applied (what the model sees);
- ``events.out.tfevents.*``: TensorBoard scalars, when ``tensorboard`` is installed.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: drawing files must not touch a notebook's backend
from torch import Tensor

from detector.inference import strict_json
from detector.visualize import save_batch_grid

CURVE_SMOOTHING = 0.9  # exponential moving average of the per-step loss in the plot (TensorBoard's 0.6-0.99)
STEPS_FILE = "steps.jsonl"
NO_OBJECTS = "n/a"  # printed for COCO's -1 (no GT of that size) and a class's nan (no GT of that class)


def _json_line(record: dict[str, Any]) -> str:
    """``record`` as one line of strict JSON: ``null`` for a NaN or infinite value (a diverged loss, a missing AP)."""
    return json.dumps(strict_json(record), allow_nan=False) + "\n"


def _scalar_items(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class RunLogger:
    """Appends per-epoch records and redraws the curves; safe to re-open on resume (appends)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.steps_path = self.run_dir / STEPS_FILE
        # a resumed run continues after its checkpoint's step: steps logged after it (before a crash) go
        rows = read_step_log(self.run_dir, resume_step) if resume_step else []
        self.steps_path.write_text("".join(_json_line({"step": i + 1, **r}) for i, r in enumerate(rows)))
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        self.csv_path = self.run_dir / "metrics.csv"
        self.curves_path = self.run_dir / "curves.png"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra (pip install detector[logging])
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(log_dir=str(self.run_dir))

    def save_batch(
        self, images: Tensor, targets: Sequence[dict[str, Any]], class_names: Sequence[str]
    ) -> None:
        """``train_batch.jpg``: ``images`` uint8 ``[B, 3, S, S]`` with their target boxes (:func:`~detector.visualize.batch_grid`)."""
        save_batch_grid(self.run_dir / "train_batch.jpg", images, targets, class_names)

    def log_steps(self, first_step: int, rows: list[dict[str, float]]) -> None:
        """Append the rows of steps ``first_step, first_step + 1, …`` to ``steps.jsonl`` (and TensorBoard)."""
        with self.steps_path.open("a") as file:
            for step, row in enumerate(rows, start=first_step):
                file.write(_json_line({"step": step, **row}))
                if self.writer is not None:
                    for key, value in row.items():
                        self.writer.add_scalar(f"train_step/{key}", value, step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Append ``record`` (a flat dict of numbers/strings) to the JSONL and CSV logs and TensorBoard."""
        with self.jsonl_path.open("a") as file:
            file.write(_json_line(record))
        new_file = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as file:
            if new_file:
                self._csv_columns = list(record)
            else:
                with self.csv_path.open() as existing:
                    self._csv_columns = next(csv.reader(existing))
            writer = csv.DictWriter(file, fieldnames=self._csv_columns, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(record)
        if self.writer is not None:
            for key, value in _scalar_items(record).items():
                if key not in ("epoch", "step"):
                    self.writer.add_scalar(f"epoch/{key}", value, record["epoch"])
            self.writer.flush()

    def draw_curves(self, step_log: list[dict[str, float]], history: list[dict[str, Any]]) -> None:
        """``curves.png``: loss per step (raw + smoothed) and per epoch; validation mAP and mAP50."""
        step_losses = [entry["loss"] for entry in step_log]
        figure = Figure(figsize=(11, 4))
        loss_axis, map_axis = figure.subplots(1, 2)
        if step_losses:
            steps = list(range(1, len(step_losses) + 1))
            loss_axis.plot(steps, step_losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
            smoothed, average = [], step_losses[0]
            for value in step_losses:
                average = (
                    CURVE_SMOOTHING * average + (1 - CURVE_SMOOTHING) * value
                    if math.isfinite(value)
                    else average
                )
                smoothed.append(average)
            loss_axis.plot(steps, smoothed, color="tab:blue", label=f"per step (EMA {CURVE_SMOOTHING})")
        epochs = [r for r in history if "loss" in r]
        if epochs:
            loss_axis.plot(
                [r["step"] for r in epochs],
                [r["loss"] for r in epochs],
                "o-",
                color="tab:orange",
                label="epoch mean",
            )
        loss_axis.set(xlabel="step", ylabel="train loss", title="Training loss")
        loss_axis.set_yscale("log")
        loss_axis.legend()
        evaluated = [r for r in history if "val_map" in r]
        if evaluated:
            x = [r["epoch"] for r in evaluated]
            map_axis.plot(x, [r["val_map"] for r in evaluated], "o-", label="mAP@[.5:.95]")
            map_axis.plot(x, [r["val_map_50"] for r in evaluated], "s-", label="mAP@0.5")
            map_axis.legend()
        map_axis.set(xlabel="epoch", ylabel="mAP", title="Validation (EMA weights)", ylim=(0, 1))
        map_axis.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(self.curves_path, dpi=100)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_step_log(run_dir: str | Path, upto_step: int | None = None) -> list[dict[str, float]]:
    """The per-step rows of ``steps.jsonl`` in ``run_dir`` (steps ``1..upto_step``; ``[]`` without the file).

    A ``null`` (a non-finite value when it was written) comes back as ``nan``.
    """
    path = Path(run_dir) / STEPS_FILE
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        {k: math.nan if v is None else v for k, v in row.items() if k != "step"}
        for row in rows
        if upto_step is None or row["step"] <= upto_step
    ]


def _number(value: float) -> str:
    """``value`` in 8 columns, or ``n/a`` for COCO's "no objects" markers (-1 and nan)."""
    return f"{NO_OBJECTS:>8}" if value < 0 or not math.isfinite(value) else f"{value:8.4f}"


def format_results(metrics: dict[str, Any], class_names: list[str], title: str = "Validation") -> str:
    """The final table: mAP, mAP50, mAP75 (and by size), then AP and AP50 per class; ``n/a`` explained below."""
    lines = [title, f"{'mAP':>8} {'mAP50':>8} {'mAP75':>8} {'small':>8} {'medium':>8} {'large':>8}"]
    keys = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
    lines.append(" ".join(_number(metrics[k]) for k in keys))
    width = max(len("class"), *(len(name) for name in class_names))
    lines.append(f"{'class':<{width}} {'AP':>8} {'AP50':>8}")
    for name, ap, ap50 in zip(class_names, metrics["per_class_ap"], metrics["per_class_ap50"], strict=True):
        lines.append(f"{name:<{width}} {_number(ap)} {_number(ap50)}")
    sizes = [k.removeprefix("map_") for k in keys[3:] if _number(metrics[k]).strip() == NO_OBJECTS]
    if sizes:
        lines.append(f"{NO_OBJECTS} by size ({', '.join(sizes)}): no objects of that size in this split "
                     "(COCO areas: small < 32², medium 32²–96², large > 96² pixels)")  # fmt: skip
    missing = [
        n
        for n, ap in zip(class_names, metrics["per_class_ap"], strict=True)
        if _number(ap).strip() == NO_OBJECTS
    ]
    if missing:
        lines.append(f"{NO_OBJECTS} for {', '.join(missing)}: no GT of that class in this split")
    return "\n".join(lines)


def data_summary(train_set: Any, val_set: Any, class_names: Sequence[str]) -> str:
    """What the run trains on: images, boxes, boxes per class per split, and warnings (rare or absent classes).

    The data sets need ``targets`` (a list of ``(boxes, labels)`` per image, as :class:`~detector.data.CocoDetection`
    and :class:`~detector.data.HFParquetDetection` have); without it only the image counts are given. Crowd
    regions (``iscrowd`` in the data set's ``annotations``) are counted apart: they are no box of their class.
    """
    lines, counts = [], {}
    for split, dataset in (("train", train_set), ("val", val_set)):
        targets = getattr(dataset, "targets", None)
        if targets is None:
            lines.append(f"{split}: {len(dataset)} images")
            continue
        crowds = [a.get("iscrowd") for a in getattr(dataset, "annotations", [])] or [None] * len(targets)
        labels = [
            lab if crowd is None else lab[crowd == 0] for (_, lab), crowd in zip(targets, crowds, strict=True)
        ]
        num_crowd = sum(int(crowd.sum()) for crowd in crowds if crowd is not None)
        counts[split] = Counter(int(label) for lab in labels for label in lab.tolist())
        lines.append(f"{split}: {len(dataset)} images, {sum(counts[split].values())} boxes, "
                     f"{sum(1 for lab in labels if len(lab) == 0)} without boxes"
                     + (f", {num_crowd} crowd regions (ignored)" if num_crowd else ""))  # fmt: skip
    if counts:
        width = max(len("class"), *(len(name) for name in class_names))
        lines.append(f"{'class':<{width}} " + " ".join(f"{split:>7}" for split in counts))
        for label, name in enumerate(class_names):
            lines.append(f"{name:<{width}} " + " ".join(f"{c[label]:>7}" for c in counts.values()))
        for split, count in counts.items():
            rare = [f"{name} ({count[label]})" for label, name in enumerate(class_names) if count[label] <= 1]
            if rare:
                lines.append(f"warning: {split} split, classes with fewer than 2 boxes: {', '.join(rare)}")
    return "\n".join([f"data: {len(class_names)} classes", *lines])
