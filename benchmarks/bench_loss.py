"""Benchmark: which classification loss to train with — an ablation at equal wall-clock, several seeds (issue 12).

TAL trains the class score towards soft targets (Chapter 6). QFL, varifocal and BCE have their minimum at the
target (calibrated scores); the focal loss does not (Chapter 7). Each loss trains ``detector`` from scratch
with ``detector train`` for the same ``--minutes`` (``train.max_minutes``: the schedule ends on time), for each
``--seeds``, on each data set, everything else as the config says; the final validation mAP of each run is
reported, with the mean and the spread over seeds. The default ``loss.cls`` of the shipped configs is chosen
among the calibrated losses from this table.

    python -m benchmarks.bench_loss                                          # arena_cpu, 2 seeds, 4 losses
    python -m benchmarks.bench_loss --data arena ../shared/datasets/chess-pieces --minutes 10 8 --lanes 2
    python -m benchmarks.bench_loss --smoke                                  # a tiny arena, seconds

``--lanes 2`` trains two runs at a time, each in its own process pinned to one core (one torch thread, the
batches loaded in that process): on a 2-core machine twice the runs per hour of one 2-thread run at a time,
and every run has the same single core, so the budgets stay equal.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Recorder, add_threads_argument, pinned_pool, result_path, set_threads
from benchmarks.peers import CURVE_CLOCK, CURVE_KEYS, train_curve
from detector.data import ensure_arena

LOSSES = ("qfl", "varifocal", "bce", "focal")
CALIBRATED = ("qfl", "varifocal", "bce")
SMOKE = {"image_size": 96, "n_train": 8, "n_valid": 4, "minutes": 0.15, "batch": 2}


def run(loss: str, seed: int, data: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One training run; its final validation metrics and learning curve."""
    minutes = args.minutes[args.data.index(data)] if len(args.minutes) > 1 else args.minutes[0]
    overrides: dict[str, Any] = {"loss.cls": loss, "seed": seed, "train.max_minutes": minutes}
    if args.lanes > 1:
        overrides["data.workers"] = 0  # the lane's one core loads the batches too
    if data != "arena":
        overrides.update({"data.root": data, "data.arena": None, "data.image_size": args.imgsz})
    if args.smoke:
        overrides.update({"data.image_size": SMOKE["image_size"], "data.batch_size": SMOKE["batch"],
                          "data.workers": 0, "data.root": str(args.smoke_root), "data.arena": None})  # fmt: skip
    curve, _ = train_curve(args.config, overrides, out, f"{Path(data).name}_{loss}_{seed}")
    return {"loss": loss, "seed": seed, "data": data, "final": curve[-1], "curve": curve}


def varied_keys(args: argparse.Namespace) -> tuple[str, ...]:
    """The config keys :func:`run` sets in every run: their shipped values do not shape the result."""
    lane_keys = ("data.workers",) if args.lanes > 1 else ()
    return ("loss.cls", "seed", "train.max_minutes", *lane_keys, *CURVE_KEYS)


def run_all(jobs: list[tuple[str, int, str]], args: argparse.Namespace, out: Path) -> list[dict[str, Any]]:
    """Every ``(loss, seed, data)`` run, ``args.lanes`` at a time (one pinned core each), in ``jobs`` order."""
    if args.lanes == 1:
        return [run(*job, args, out) for job in jobs]
    with pinned_pool(args.lanes) as pool:
        return list(pool.map(run, *zip(*jobs, strict=True), [args] * len(jobs), [out] * len(jobs)))


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{data: {loss: {"map_mean", "map_min", "map_max", "map_50_mean"}}}`` over the seeds."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for data in dict.fromkeys(r["data"] for r in runs):
        for loss in dict.fromkeys(r["loss"] for r in runs):
            finals = [r["final"] for r in runs if r["data"] == data and r["loss"] == loss]
            maps = [f["map"] for f in finals]
            table.setdefault(data, {})[loss] = {
                "map_mean": statistics.fmean(maps), "map_min": min(maps), "map_max": max(maps),
                "map_50_mean": statistics.fmean(f["map_50"] for f in finals), "seeds": len(maps),
            }  # fmt: skip
    return table


def best_calibrated(table: dict[str, dict[str, dict[str, float]]]) -> str | None:
    """The calibrated loss with the highest mAP averaged over data sets (None when none was run)."""
    scores = {
        loss: statistics.fmean(rows[loss]["map_mean"] for rows in table.values())
        for loss in CALIBRATED
        if all(loss in rows for rows in table.values())
    }
    return max(scores, key=scores.get) if scores else None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="arena_cpu")
    parser.add_argument(
        "--data", nargs="+", default=["arena"], help="'arena' (the config's) or export folders"
    )
    parser.add_argument(
        "--imgsz", type=int, default=416, help="image size for the exports (arena: the config's)"
    )
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0],
                        help="training budget per run: one value, or one per --data")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="a tiny arena, seconds per run; writes nothing")
    add_threads_argument(parser)
    parser.add_argument("--lanes", type=int, default=1, help="runs at a time, one pinned core each")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/loss.json)")
    args = parser.parse_args(argv)
    if len(args.minutes) not in (1, len(args.data)):
        parser.error(f"--minutes: one value or one per --data ({len(args.data)}), got {len(args.minutes)}")
    set_threads(1 if args.smoke or args.lanes > 1 else args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_loss_") as tmp:
        if args.smoke:
            args.minutes, args.seeds, args.data = [SMOKE["minutes"]], args.seeds[:1], ["arena"]
            args.smoke_root = ensure_arena(Path(tmp) / "arena", SMOKE["n_train"], SMOKE["n_valid"], 0,
                                           SMOKE["image_size"])  # fmt: skip
        settings = {"config": args.config, "data": args.data, "losses": args.losses, "seeds": args.seeds,
                    "minutes": args.minutes, "imgsz": args.imgsz, "threads": torch.get_num_threads(),
                    "lanes": args.lanes, "clock": CURVE_CLOCK}  # fmt: skip
        recorder = Recorder("bench_loss", list(argv or []), torch.device("cpu"), args.smoke, settings,
                            configs=(args.config,), varied=varied_keys(args))  # fmt: skip
        jobs = [(loss, seed, data) for seed in args.seeds for data in args.data for loss in args.losses]
        runs = run_all(jobs, args, Path(tmp) / "runs")
    table = summarise(runs)
    for data, rows in table.items():
        print(f"\n{data}")
        for loss, row in rows.items():
            print(f"  {loss:<10} mAP {row['map_mean']:.4f} [{row['map_min']:.4f}, {row['map_max']:.4f}]  "
                  f"mAP50 {row['map_50_mean']:.4f}  ({row['seeds']} seeds)")  # fmt: skip
    record = {"runs": runs, "summary": table, "best_calibrated": best_calibrated(table)}
    return recorder.write(record, result_path("loss", torch.device("cpu"), args.smoke, args.out))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
