"""Benchmark (GPU only): 640-px ResNet-50 training throughput with AMP, ± channels_last, ± torch.compile (issue 8).

The ``halo_r50`` model (timm ``resnet50``, neck width 128) and its optimiser (Adam), a synthetic batch of
``--batch`` 640-px images with 6 GTs each, our full training step (forward, loss with TAL, backward,
optimiser step) under autocast — bf16 where the card supports it, else fp16 with a grad scaler — in four
variants: eager, ``channels_last``, ``torch.compile``, both. Images per second from the median step time of
``--repeats`` steps after ``--warmup`` (compilation happens in the warm-up and is reported separately).

Without a CUDA device it prints that it skipped and writes nothing (``make bench`` on a CPU machine).
``--smoke --device cpu`` runs a tiny version of the same code (resnet18, 64 px, eager and channels_last).

    python -m benchmarks.bench_gpu            # on a CUDA machine: writes benchmarks/results/gpu-cuda.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Recorder, resolve_device, result_path, synchronize, time_interleaved
from benchmarks.peers import ARENA_GTS_PER_IMAGE, OursContender, synthetic_batch
from detector.config import load_config
from detector.engine import build_optimizer

GPU_CONFIG = "halo_r50"  # the seed's recipe: ResNet-50, 640 px
NUM_CLASSES = 4
VARIANTS = {  # name: (channels_last, compile)
    "eager": (False, False),
    "channels_last": (True, False),
    "compile": (False, True),
    "channels_last+compile": (True, True),
}


def amp_setup(device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype, use a grad scaler)``: bf16 where supported, else fp16 + scaler; none on CPU."""
    if device.type != "cuda":
        return None, False
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, False
    return torch.float16, True


def build_variant(name: str, args: argparse.Namespace, device: torch.device) -> tuple[Any, float]:
    """A step function for one variant and the seconds its first call took (compilation included)."""
    channels_last, compiled = VARIANTS[name]
    torch.manual_seed(0)
    overrides = [f"model.backbone={args.backbone}"] if args.backbone else []
    config = load_config(GPU_CONFIG, overrides)
    ours = OursContender(config, NUM_CLASSES, device)
    model = ours.model.to(memory_format=torch.channels_last) if channels_last else ours.model
    forward = torch.compile(model) if compiled else model
    optimizer = build_optimizer(model, config.train)
    amp_dtype, use_scaler = amp_setup(device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    images, targets = synthetic_batch(args.batch, args.image_size, NUM_CLASSES, ARENA_GTS_PER_IMAGE)
    images = images.to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    prepared = ours.prepare(targets)

    def step() -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            total = ours.criterion(forward(images), *prepared).total
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()

    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return step, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes (use with --device cpu to test the code)"
    )
    parser.add_argument("--device", default="auto", help="auto: the GPU, or skip when there is none")
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backbone", help="override the config's backbone (default resnet50)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/gpu-cuda.json)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type != "cuda" and not args.smoke:
        print("[bench_gpu] no CUDA device: skipped (nothing written)")
        return {"skipped": "no CUDA device"}
    if args.smoke:
        args.image_size, args.batch, args.warmup, args.repeats, args.backbone = 64, 2, 1, 1, "resnet18"
        if device.type != "cuda":
            args.variants = [v for v in args.variants if not VARIANTS[v][1]]  # compiling on CPU takes minutes
    settings = {"config": GPU_CONFIG, "image_size": args.image_size, "batch": args.batch, "warmup": args.warmup,
                "repeats": args.repeats, "amp": str(amp_setup(device)[0])}  # fmt: skip
    recorder = Recorder("bench_gpu", list(argv or []), device, args.smoke, settings, configs=(GPU_CONFIG,))
    rows = {}
    for name in args.variants:
        step, first_call = build_variant(name, args, device)
        timing = time_interleaved({name: step}, device, args.warmup, args.repeats)[name]
        rows[name] = {**timing.to_dict(), "images_per_second": args.batch / timing.median,
                      "first_step_seconds": first_call}  # fmt: skip
        print(f"  {name:<24}{timing.median * 1e3:>9.1f} ms/step {rows[name]['images_per_second']:>9.1f} img/s "
              f"(first step {first_call:.1f} s)", flush=True)  # fmt: skip
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return recorder.write({"variants": rows}, result_path("gpu", device, args.smoke, args.out))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
