"""Benchmark row 2: inference — forward and forward + post-processing, ours vs torchvision FCOS (issue 8).

Two settings: a batch of 8 at 320 px and a single image at 640 px (FCOS is rebuilt with
``min_size = max_size = 640`` for it). Both models are untrained (fresh weights, eval mode, no gradients),
so the score threshold is set to 0: every candidate of the top-k reaches NMS — the worst case of the
post-processing (with a 0.05 threshold an untrained model keeps almost nothing and NMS costs nothing).
Post-processing is each model's own: ours :func:`detector.inference.predict_batch` (score, top-1000 over all
levels, class-aware NMS, 100 detections); FCOS's ``postprocess_detections`` (top-1000 per level of P3–P7,
NMS, 100 detections). Median of ``--repeats`` interleaved runs after ``--warmup``.

    python -m benchmarks.bench_inference            # writes benchmarks/results/inference.json
    python -m benchmarks.bench_inference --smoke    # 64/96 px, one run: checks it works, writes nothing
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    Recorder,
    add_threads_argument,
    ratio,
    resolve_device,
    result_path,
    set_threads,
    time_interleaved,
)
from benchmarks.peers import (
    FcosContender,
    OursContender,
    amp_dtype_for,
    autocast,
    ours_config,
    synthetic_batch,
)
from detector.config import EvalConfig

NUM_CLASSES = 4  # the arena's classes
SETTINGS = ((320, 8), (640, 1))  # issue 8: batch of 8 at 320 px, single image at 640 px
SMOKE_SETTINGS = ((64, 2), (96, 1))
WORST_CASE_SCORE_THRESH = 0.0  # every top-k candidate goes through NMS (module docstring)


def measure_setting(
    image_size: int, batch: int, device: torch.device, warmup: int, repeats: int
) -> dict[str, Any]:
    """Median seconds of forward and forward + post-processing for both models at one size."""
    torch.manual_seed(0)
    config = ours_config()
    eval_config = EvalConfig(**{**vars(config.eval), "score_thresh": WORST_CASE_SCORE_THRESH})
    amp_dtype = amp_dtype_for(device, config.train)
    images, _ = synthetic_batch(batch, image_size, NUM_CLASSES)
    images = images.to(device)
    ours = OursContender(config, NUM_CLASSES, device)
    fcos = FcosContender(NUM_CLASSES, image_size, device)
    fcos.model.score_thresh = WORST_CASE_SCORE_THRESH
    ours.model.eval()
    fcos.model.eval()

    def run(fn: Any) -> Any:
        def call() -> Any:
            with torch.no_grad(), autocast(device, amp_dtype):
                return fn()

        return call

    contenders = {
        "ours_forward": run(lambda: ours.forward(images)),
        "ours_total": run(lambda: ours.predict(ours.model, images, eval_config, amp_dtype)),
        "fcos_forward": run(lambda: fcos.forward(images)),
        "fcos_total": run(lambda: fcos.predict(fcos.model, images, eval_config, amp_dtype)),
    }
    timings = time_interleaved(contenders, device, warmup, repeats)
    seconds = {name: timing.median for name, timing in timings.items()}
    detections = {
        "ours": sum(len(d["scores"]) for d in contenders["ours_total"]()) / batch,
        "fcos": sum(len(d["scores"]) for d in contenders["fcos_total"]()) / batch,
    }
    return {
        "image_size": image_size,
        "batch": batch,
        "seconds": seconds,
        "runs": {name: timing.to_dict() for name, timing in timings.items()},
        "amp_dtype": str(amp_dtype),
        "ms_per_image": {name: value * 1e3 / batch for name, value in seconds.items()},
        "postprocess_seconds": {
            "ours": seconds["ours_total"] - seconds["ours_forward"],
            "fcos": seconds["fcos_total"] - seconds["fcos_forward"],
        },
        "ratio_ours_over_fcos": ratio(seconds["ours_total"], seconds["fcos_total"]),
        "detections_per_image": detections,
    }


def print_table(rows: list[dict[str, Any]], repeats: int) -> None:
    print(f"\nInference (eval mode, no grad, score threshold 0; median of {repeats}), ms per batch:")
    print(
        f"  {'input':<16}{'ours fwd':>10}{'ours total':>12}{'FCOS fwd':>10}{'FCOS total':>12}{'ours/FCOS':>11}"
    )
    for row in rows:
        s = {k: v * 1e3 for k, v in row["seconds"].items()}
        label = f"{row['batch']} x {row['image_size']} px"
        print(f"  {label:<16}{s['ours_forward']:>10.0f}{s['ours_total']:>12.0f}{s['fcos_forward']:>10.0f}"
              f"{s['fcos_total']:>12.0f}{row['ratio_ours_over_fcos']:>11.2f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, 1 run: checks it works, writes nothing"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    add_threads_argument(parser)
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/inference.json)")
    args = parser.parse_args(argv)
    settings = SETTINGS
    if args.smoke:
        settings, args.warmup, args.repeats, args.threads = SMOKE_SETTINGS, 1, 1, 1
    device = resolve_device(args.device)
    set_threads(args.threads)
    recorder = Recorder(
        "bench_inference",
        list(argv or []),
        device,
        args.smoke,
        {"settings": settings, "warmup": args.warmup, "repeats": args.repeats, "threads": torch.get_num_threads(),
         "score_thresh": WORST_CASE_SCORE_THRESH},
    )  # fmt: skip
    rows = [measure_setting(size, batch, device, args.warmup, args.repeats) for size, batch in settings]
    print_table(rows, args.repeats)
    return recorder.write({"rows": rows}, result_path("inference", device, args.smoke, args.out))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
