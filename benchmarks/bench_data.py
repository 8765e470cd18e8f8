"""Benchmark row 5: images/s of the arena ``DataLoader`` vs the rate the training step consumes them (issue 8).

The loader is the training one: :class:`detector.data.CocoDetection` on the arena's train split with
``train_transforms`` (letterbox, flip, colour jitter) — and, in its own column, with YOLOv8's augmentation
(:class:`detector.data.augment.AugmentedDataset`: mosaic of 4 images, random affine, flip, HSV jitter) — :func:`detector.data.build_dataloader` (batch 8,
shuffled), with 0 and 2 worker processes, at 320 px (the ``arena_cpu`` data set, generated when missing) and
at 640 px (a small arena rendered at 640 px into ``data/arena_640``, so that decoding costs what a 640-px
data set costs). Loader rate: images per second over ``--batches`` batches after 2 warm-up batches (worker
start-up excluded). Consumption rate: images per second of our training step on a batch of the same size.
The loader must not be the bottleneck: loader / step ≥ 1.

Both are measured alone; on 2 cores the workers and the step share the CPU, so at 320 px the whole pipeline
(loader + step, ``--pipeline-steps`` steps) is measured too.

    python -m benchmarks.bench_data            # writes benchmarks/results/data.json
    python -m benchmarks.bench_data --smoke    # tiny arena (64/96 px) in a temp folder, writes nothing
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_train_step import make_step
from benchmarks.common import (
    Recorder,
    add_threads_argument,
    ratio,
    resolve_device,
    result_path,
    set_threads,
    time_interleaved,
)
from benchmarks.peers import OursContender, amp_dtype_for, ours_config, synthetic_batch
from detector.data import CocoDetection, build_dataloader, ensure_arena, train_transforms
from detector.data.augment import AugmentedDataset, AugmentSettings
from detector.engine import build_optimizer

WORKERS = (0, 2)  # issue 8
WARMUP_BATCHES = 2  # excluded from the loader rate: worker start-up, first file reads
ARENA_640_ROOT = Path("data/arena_640")
ARENA_640_IMAGES = 96  # 12 batches of 8: enough for 2 warm-up + 10 timed batches per epoch


def arena_roots(smoke: bool, tmp: Path) -> dict[int, Path]:
    """``{image_size: arena root}``; generated when missing (the 320-px one is ``make train``'s)."""
    if smoke:
        return {size: ensure_arena(tmp / f"arena_{size}", 8, 0, 0, image_size=size) for size in (64, 96)}
    arena = ours_config().data
    sizes = arena.arena
    started = time.perf_counter()
    roots = {
        arena.image_size: ensure_arena(
            arena.root, sizes.n_train, sizes.n_valid, sizes.n_test, sizes.image_size, sizes.seed
        ),  # fmt: skip
        640: ensure_arena(ARENA_640_ROOT, ARENA_640_IMAGES, 0, 0, image_size=640),
    }
    print(
        f"[bench_data] arena data ready in {time.perf_counter() - started:.0f} s: {sorted(map(str, roots.values()))}"
    )
    return roots


def _batches(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def train_dataset(root: Path, image_size: int, augment: bool) -> Any:
    """The arena's train split with the config's transforms, or (``augment``) YOLOv8's augmentation defaults:
    mosaic 1.0, scale ± 0.5, translation ± 0.1, flip and HSV jitter (:mod:`detector.data.augment`)."""
    data = ours_config().data
    if augment:
        settings = AugmentSettings(image_size, mosaic=1.0, scale=0.5, translate=0.1, hflip=data.hflip,
                                   color_jitter=data.color_jitter)  # fmt: skip
        return AugmentedDataset(CocoDetection(root / data.train_split), settings)
    return CocoDetection(root / data.train_split, train_transforms(image_size, data.hflip, data.color_jitter))


def loader_rate(
    root: Path, image_size: int, batch: int, workers: int, batches: int, augment: bool = False
) -> dict[str, float]:
    """Images per second of the training loader over ``batches`` batches after the warm-up ones."""
    dataset = train_dataset(root, image_size, augment)
    loader = build_dataloader(dataset, batch, shuffle=True, workers=workers, seed=0, drop_last=True)
    stream = _batches(loader)
    for _ in range(WARMUP_BATCHES):
        next(stream)
    start = time.perf_counter()
    images = sum(len(next(stream)[0]) for _ in range(batches))
    seconds = time.perf_counter() - start
    del stream, loader  # stops persistent workers
    return {"images_per_second": images / seconds, "seconds": seconds, "images": images}


def step_rate(image_size: int, batch: int, device: torch.device, repeats: int) -> float:
    """Images per second of our training step (median of ``repeats`` after one warm-up)."""
    torch.manual_seed(0)
    config = ours_config()
    ours = OursContender(config, 4, device)
    images, targets = synthetic_batch(batch, image_size, 4)
    step = make_step(ours, build_optimizer(ours.model, config.train), images.to(device), ours.prepare(targets),
                     amp_dtype_for(device, config.train))  # fmt: skip
    return batch / time_interleaved({"ours": step}, device, warmup=1, repeats=repeats)["ours"].median


def pipeline_rate(
    root: Path, image_size: int, batch: int, workers: int, steps: int, device: torch.device
) -> float:
    """Images per second of loader + training step together (what training sees)."""
    torch.manual_seed(0)
    config = ours_config()
    data = config.data
    ours = OursContender(config, len(CocoDetection(root / data.train_split).class_names), device)
    optimizer = build_optimizer(ours.model, config.train)
    dataset = train_dataset(root, image_size, augment=False)
    stream = _batches(build_dataloader(dataset, batch, shuffle=True, workers=workers, seed=0, drop_last=True))
    for index in range(WARMUP_BATCHES + steps):
        if index == WARMUP_BATCHES:
            start = time.perf_counter()
        images, targets = next(stream)
        make_step(
            ours, optimizer, images.to(device), ours.prepare(targets), amp_dtype_for(device, config.train)
        )()
    return steps * batch / (time.perf_counter() - start)


def measure(args: argparse.Namespace, device: torch.device, tmp: Path) -> dict[str, Any]:
    roots = arena_roots(args.smoke, tmp)
    rows = []
    for image_size, root in sorted(roots.items()):
        consume = step_rate(image_size, args.batch, device, args.step_repeats)
        row: dict[str, Any] = {"image_size": image_size, "root": str(root), "step_images_per_second": consume,
                               "loader": {}, "pipeline": {}}  # fmt: skip
        for workers in WORKERS:
            rate = loader_rate(root, image_size, args.batch, workers, args.batches)
            augmented = loader_rate(root, image_size, args.batch, workers, args.batches, augment=True)
            row["loader"][str(workers)] = {
                **rate,
                "loader_over_step": ratio(rate["images_per_second"], consume),
                "augmented_images_per_second": augmented["images_per_second"],
                "augmented_over_step": ratio(augmented["images_per_second"], consume),
            }
            if image_size == min(roots):
                row["pipeline"][str(workers)] = pipeline_rate(root, image_size, args.batch, workers,
                                                              args.pipeline_steps, device)  # fmt: skip
        rows.append(row)
    return {"rows": rows}


def print_table(result: dict[str, Any]) -> None:
    print("\nData loading (arena train split, train transforms), images/s:")
    print(f"  {'size':<8}{'workers':>8}{'loader':>10}{'mosaic':>10}{'step':>10}{'loader/step':>13}"
          f"{'mosaic/step':>13}{'loader+step':>13}")  # fmt: skip
    for row in result["rows"]:
        for workers, rate in row["loader"].items():
            pipeline = row["pipeline"].get(workers)
            both = f"{pipeline:>13.1f}" if pipeline is not None else f"{'–':>13}"
            print(f"  {row['image_size']:<8}{workers:>8}{rate['images_per_second']:>10.1f}"
                  f"{rate['augmented_images_per_second']:>10.1f}{row['step_images_per_second']:>10.1f}"
                  f"{rate['loader_over_step']:>13.1f}{rate['augmented_over_step']:>13.1f}{both}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny arena, few batches: checks it works, writes nothing"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10, help="timed loader batches")
    parser.add_argument("--step-repeats", type=int, default=3, help="timed training steps (median)")
    parser.add_argument("--pipeline-steps", type=int, default=6, help="timed loader+step iterations")
    add_threads_argument(parser)
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/data.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.batches, args.step_repeats, args.pipeline_steps, args.threads = 2, 2, 1, 1, 1
    device = resolve_device(args.device)
    set_threads(args.threads)
    settings = {"batch": args.batch, "batches": args.batches, "step_repeats": args.step_repeats,
                "pipeline_steps": args.pipeline_steps, "threads": torch.get_num_threads(),
                "amp": str(amp_dtype_for(device, ours_config().train))}  # fmt: skip
    recorder = Recorder("bench_data", list(argv or []), device, args.smoke, settings)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        result = measure(args, device, Path(tmp))
    print_table(result)
    return recorder.write(result, result_path("data", device, args.smoke, args.out))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
