"""Benchmark: detection quality under the same wall-clock budget, on the arena data (issue 8).

Four contenders, each trained from scratch for the same training time (``--minutes``, default 10; evaluation
pauses the clock) on the ``arena_cpu`` data (train split, 320 px, the config's batch, same shuffled order), then
evaluated on the same validation split with the same :func:`detector.metrics.coco_map` (predictions and GT
mapped back to the original images with ``unletterbox_boxes``, as ``detector eval`` does):

- ``ours``: ``detector`` with the default recipe (TAL, the default ``loss.cls``, DIoU, IoU-aware objectness);
- ``ours_seed``: the same model with the seed recipe (per-level assignment, BCE on positives, focal
  objectness, weights 1/1/5: the loss section of the ``seed`` config);
- ``fcos``: torchvision FCOS ResNet-18-FPN (256 channels, P3–P7) with its own losses;
- ``fcos_narrow``: the same FCOS with an FPN and head as narrow as our neck (``model.neck_width``), so
  that the comparison separates architecture from width.

Everything but the model and its loss is shared: the ``arena_cpu`` optimiser (AdamW, its lr and weight
decay, no decay on biases/norms), gradient clipping, an fp32 EMA of the weights (evaluated), and a schedule
laid out in **time**, not steps (a slower model gets fewer steps, not a longer schedule): linear warm-up over
the first 10 % of the budget, then cosine decay to ``min_lr_ratio`` at the end of the budget.
The model is evaluated ``--evals`` times at equal fractions of the budget: the mAP-vs-time curves.

    python -m benchmarks.bench_quality                 # 4 × 10 min + evaluations; results/quality.json + .png
    python -m benchmarks.bench_quality --minutes 2     # a shorter budget
    python -m benchmarks.bench_quality --smoke         # tiny arena, 2 steps each: checks it works
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.common import (
    Recorder,
    add_threads_argument,
    resolve_device,
    result_path,
    set_threads,
    synchronize,
)
from benchmarks.peers import (
    FcosContender,
    OursContender,
    amp_dtype_for,
    autocast,
    count_parameters,
    ours_config,
)
from detector.config import Config
from detector.data import CocoDetection, build_dataloader, ensure_arena, eval_transforms, train_transforms
from detector.data.transforms import unletterbox_boxes
from detector.ema import ModelEMA
from detector.engine import build_optimizer
from detector.loaders import prepare_data
from detector.metrics import coco_map

CONTENDERS = ("ours", "ours_seed", "fcos", "fcos_narrow")
LABELS = {
    "ours": "ours (default recipe)",
    "ours_seed": "ours (seed recipe)",
    "fcos": "torchvision FCOS R18-FPN (256)",
    "fcos_narrow": "torchvision FCOS R18-FPN (narrow)",
}
WARMUP_FRACTION = 0.1  # arena_cpu: 150 warm-up steps of its ~1500
GOAL_VS_FCOS = 1.2  # issue 8: ours (default) mAP >= 1.2 × FCOS R18-FPN at equal time
TABLE_KEYS = ("map", "map_50", "map_75", "map_small")
SMOKE = {"image_size": 96, "batch": 2, "n_train": 8, "n_valid": 4, "max_steps": 2}


def lr_factor(train_seconds: float, budget_seconds: float, min_lr_ratio: float) -> float:
    """Linear warm-up over the first :data:`WARMUP_FRACTION` of the budget, then cosine to ``min_lr_ratio``."""
    warmup = min(1.0, train_seconds / (WARMUP_FRACTION * budget_seconds))
    progress = min(1.0, train_seconds / budget_seconds)
    return warmup * (min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build_contender(name: str, config: Config, num_classes: int, device: torch.device) -> Any:
    torch.manual_seed(config.seed)
    if name in ("ours", "ours_seed"):
        recipe = "seed" if name == "ours_seed" else "default"
        return OursContender(ours_config(recipe, overrides_of(config)), num_classes, device)
    width = config.model.neck_width if name == "fcos_narrow" else None
    return FcosContender(num_classes, config.data.image_size, device, **({"width": width} if width else {}))


def overrides_of(config: Config) -> list[str]:
    """The data overrides a smoke run applies to ``arena_cpu`` (so that rebuilt configs keep them)."""
    data = config.data
    return [
        f"data.root={data.root}",
        f"data.image_size={data.image_size}",
        f"data.batch_size={data.batch_size}",
    ]


@torch.no_grad()
def evaluate(
    contender: Any, model: nn.Module, loader: Any, config: Config, device: torch.device
) -> dict[str, float]:
    """The 12 COCO numbers of ``model`` on the validation loader, in original image coordinates."""
    predictions, targets = [], []
    for images, batch_targets in loader:
        amp_dtype = amp_dtype_for(device, config.train)
        detections = contender.predict(model, images.to(device), config.eval, amp_dtype)
        for detection, target in zip(detections, batch_targets, strict=True):
            letterbox = target["letterbox"]
            predictions.append({**detection, "boxes": unletterbox_boxes(detection["boxes"], **letterbox)})
            targets.append({"boxes": unletterbox_boxes(target["boxes"].float(), **letterbox),
                            "labels": target["labels"]})  # fmt: skip
    return coco_map(predictions, targets)


def _stream(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def train_contender(name: str, contender: Any, loaders: dict[str, Any], config: Config, args: argparse.Namespace,
                    device: torch.device) -> dict[str, Any]:  # fmt: skip
    """Train for the budget, evaluating the EMA at ``args.evals`` equal fractions of it; returns the curve."""
    train = config.train
    model = contender.model.train()
    optimizer = build_optimizer(model, train)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    ema = ModelEMA(model, train.ema_decay, train.ema_warmup_steps)
    amp_dtype, budget = amp_dtype_for(device, train), args.minutes * 60.0
    eval_times = [budget * (i + 1) / args.evals for i in range(args.evals)]
    clock, step, curve, diverged = 0.0, 0, [], None
    batches = _stream(loaders["train"])
    while True:
        start = time.perf_counter()
        images, targets = next(batches)
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr * lr_factor(clock, budget, train.min_lr_ratio)
        with autocast(device, amp_dtype):
            total = contender.loss(images.to(device), contender.prepare(targets))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip or math.inf)
        optimizer.step()
        ema.update(model)
        loss = float(total.detach())
        synchronize(device)
        clock, step = clock + time.perf_counter() - start, step + 1
        if not math.isfinite(loss):
            diverged = f"non-finite loss at step {step}"
        last = (
            diverged is not None or clock >= budget or (args.max_steps is not None and step >= args.max_steps)
        )
        if last or clock >= eval_times[0]:
            eval_start = time.perf_counter()
            metrics = evaluate(contender, ema.module, loaders["val"], config, device)
            curve.append({"train_seconds": clock, "step": step, "images": step * config.data.batch_size,
                          "loss": loss, "eval_seconds": time.perf_counter() - eval_start, **metrics})  # fmt: skip
            print(f"  {name:<12} {clock / 60:6.2f} min  step {step:>5}  loss {loss:7.3f}  "
                  f"mAP {metrics['map']:.4f}  mAP50 {metrics['map_50']:.4f}", flush=True)  # fmt: skip
            eval_times = [t for t in eval_times if t > clock] or [math.inf]
        if last:
            break
    return {"label": LABELS[name], "parameters": count_parameters(model), "steps": step, "train_seconds": clock,
            "images_per_second": step * config.data.batch_size / clock, "diverged": diverged, "curve": curve,
            "final": {key: curve[-1][key] for key in curve[-1] if key.startswith(("map", "mar"))}}  # fmt: skip


def build_loaders(config: Config) -> tuple[dict[str, Any], int]:
    """Train loader (shuffled, seeded: the same order for every contender) and validation loader."""
    data = config.data
    train_set = CocoDetection(Path(data.root) / data.train_split,
                              train_transforms(data.image_size, data.hflip, data.color_jitter))  # fmt: skip
    val_set = CocoDetection(Path(data.root) / data.val_split, eval_transforms(data.image_size))
    train_loader = build_dataloader(train_set, data.batch_size, shuffle=True, workers=data.workers,
                                    seed=config.seed, drop_last=True)  # fmt: skip
    val_loader = build_dataloader(val_set, data.batch_size, workers=0)
    return {"train": train_loader, "val": val_loader}, len(train_set.class_names)


def plot_curves(results: dict[str, Any], path: Path) -> None:
    """mAP and mAP50 against training minutes, one line per contender (``quality.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for key, axis in zip(("map", "map_50"), axes, strict=True):
        for row in results.values():
            minutes = [0.0] + [point["train_seconds"] / 60 for point in row["curve"]]
            axis.plot(
                minutes,
                [0.0] + [max(point[key], 0.0) for point in row["curve"]],
                marker="o",
                label=row["label"],
            )
        axis.set(xlabel="training wall time (min)", ylabel=key.replace("map_50", "mAP@0.5").replace("map", "mAP"),
                 ylim=(0, None))  # fmt: skip
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Quality at equal training time (arena validation split)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_table(results: dict[str, Any]) -> dict[str, float]:
    """The final-metrics table; returns each contender's mAP relative to FCOS (256)."""
    fcos_map = results.get("fcos", {}).get("final", {}).get("map")
    print(
        f"\n{'contender':<36}{'steps':>7}{'img/s':>7}"
        + "".join(f"{k:>11}" for k in TABLE_KEYS)
        + f"{'vs FCOS':>9}"
    )
    relative = {}
    for name, row in results.items():
        final = row["final"]
        relative[name] = final["map"] / fcos_map if fcos_map else float("nan")
        print(f"{row['label']:<36}{row['steps']:>7}{row['images_per_second']:>7.1f}"
              + "".join(f"{final[k]:>11.4f}" for k in TABLE_KEYS) + f"{relative[name]:>9.2f}")  # fmt: skip
    return relative


def data_config(args: argparse.Namespace, tmp: Path) -> Config:
    """``arena_cpu`` (its arena generated when missing), or a tiny arena in ``tmp`` for ``--smoke``."""
    if not args.smoke:
        config = ours_config()
        prepare_data(config.data)
        return config
    args.evals, args.max_steps = 1, SMOKE["max_steps"]
    root = ensure_arena(tmp / "arena", SMOKE["n_train"], SMOKE["n_valid"], 0, SMOKE["image_size"])
    return ours_config("default", [f"data.root={root}", f"data.image_size={SMOKE['image_size']}",
                                   f"data.batch_size={SMOKE['batch']}", "data.workers=0"])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny arena, 2 steps each, writes nothing")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per contender")
    parser.add_argument("--evals", type=int, default=5, help="evaluations per contender (the curve's points)")
    parser.add_argument("--max-steps", type=int, help="also stop after this many steps")
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    add_threads_argument(parser)
    parser.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/quality.json; plot: .png)"
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    set_threads(1 if args.smoke else args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        config = data_config(args, Path(tmp))
        data, train = config.data, config.train
        settings = {"minutes": args.minutes, "evals": args.evals, "max_steps": args.max_steps,
                    "image_size": data.image_size, "batch": data.batch_size, "data": data.root,
                    "workers": data.workers, "threads": torch.get_num_threads(), "warmup_fraction": WARMUP_FRACTION,
                    "optimizer": train.optimizer, "lr": train.lr, "ema_decay": train.ema_decay,
                    "amp": str(amp_dtype_for(device, train))}  # fmt: skip
        recorder = Recorder(
            "bench_quality", list(argv or []), device, args.smoke, settings, configs=("arena_cpu", "seed")
        )
        results = {}
        for name in args.only:
            loaders, num_classes = build_loaders(
                config
            )  # a fresh seeded loader: the same batches for everyone
            contender = build_contender(name, config, num_classes, device)
            results[name] = train_contender(name, contender, loaders, config, args, device)
            del loaders, contender  # stops the loader's workers
    relative = print_table(results)
    out = result_path("quality", device, args.smoke, args.out)
    if out is not None:
        plot_curves(results, out.with_suffix(".png"))
    record = {"contenders": results, "map_relative_to_fcos": relative, "goal_vs_fcos": GOAL_VS_FCOS}
    return recorder.write(record, out)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
