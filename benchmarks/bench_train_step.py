"""Benchmark row 1: one training step — ours vs torchvision FCOS ResNet-18-FPN vs the backbone alone (issue 8).

Same input (``S = 320``, batch 8, synthetic images with 6 GTs each), same optimiser (the config's AdamW),
in one process, interleaved (ours, FCOS, backbone, ours split, ours, ...), median of ``--repeats`` runs
after ``--warmup``:

- **ours**: ``model(images)`` → ``DetectionLoss`` (TAL assignment included) → backward → optimiser step;
- **FCOS**: :func:`benchmarks.peers.build_fcos` in train mode with its own losses → backward → step;
- **backbone**: the config's timm backbone (``features_only``, the config's levels) forward + backward alone —
  the floor: no detector step can be cheaper than its own backbone;
- **ours, split**: the same step run stage by stage (each stage's output detached and fed to the next as a
  leaf, then the backward passes chained by hand), so each stage's forward + backward is timed on its own:
  backbone, neck, head, assign (inside the loss), loss (without the assignment), optimiser.

Ratios printed: ours / FCOS (goal ≤ 0.6) and ours / backbone (goal ≤ 1.8).

    python -m benchmarks.bench_train_step            # writes benchmarks/results/train_step.json
    python -m benchmarks.bench_train_step --smoke    # 96 px, batch 2, one run: checks it works, writes nothing
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.common import (
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    Recorder,
    add_threads_argument,
    ratio,
    resolve_device,
    result_path,
    set_threads,
    synchronize,
    time_interleaved,
)
from benchmarks.peers import (
    FcosContender,
    OursContender,
    amp_dtype_for,
    autocast,
    build_backbone_floor,
    count_parameters,
    ours_config,
    synthetic_batch,
)
from detector.engine import build_optimizer
from detector.losses import DetectionLoss
from detector.model import DetectorOutput

GOAL_VS_FCOS = 0.6  # issue 8: our step time / FCOS step time
GOAL_VS_BACKBONE = 1.8  # issue 8: our step time / backbone forward+backward
NUM_CLASSES = 4  # the arena's classes
STAGES = ("backbone", "neck", "head", "assign", "loss", "optimizer")


def make_step(contender: Any, optimizer: torch.optim.Optimizer, images: Tensor, prepared: Any,
              amp_dtype: torch.dtype | None) -> Callable[[], None]:  # fmt: skip
    """One full training step of a contender on a fixed batch."""

    def step() -> None:
        with autocast(images.device, amp_dtype):
            total = contender.loss(images, prepared)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    return step


def make_backbone_step(
    backbone: nn.Module, images: Tensor, amp_dtype: torch.dtype | None
) -> Callable[[], None]:
    """Forward + backward of the bare backbone on normalised float images (no optimiser step)."""
    x = (images.float() / 255.0 - 0.45) / 0.225  # normalisation cost is negligible; values are irrelevant

    def step() -> None:
        backbone.zero_grad(set_to_none=True)
        with autocast(images.device, amp_dtype):
            features = backbone(x)
        sum(f.float().sum() for f in features).backward()

    return step


class TimedAssigner:
    """Wraps an assigner and records the seconds of each call (GPU work included)."""

    def __init__(self, assigner: Any, log: list[float]) -> None:
        self.assigner, self.log = assigner, log

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        device = args[0].device
        synchronize(device)
        start = time.perf_counter()
        result = self.assigner(*args, **kwargs)
        synchronize(device)
        self.log.append(time.perf_counter() - start)
        return result


def _leaves(tensors: Sequence[Tensor]) -> list[Tensor]:
    return [t.detach().requires_grad_() for t in tensors]


def _grads(leaves: Sequence[Tensor]) -> list[Tensor]:
    return [leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in leaves]


class SplitStep:
    """Our training step stage by stage; ``self.stages[name]`` holds each run's seconds (forward + backward)."""

    def __init__(self, ours: OursContender, optimizer: torch.optim.Optimizer, images: Tensor, prepared: Any,
                 amp_dtype: torch.dtype | None) -> None:  # fmt: skip
        self.model, self.optimizer, self.images, self.prepared = ours.model, optimizer, images, prepared
        self.amp_dtype = amp_dtype
        self.assign_log: list[float] = []
        self.criterion = DetectionLoss(ours.model.num_classes, ours.config.loss)  # own copy: timed assigner
        self.criterion.assigner = TimedAssigner(self.criterion.assigner, self.assign_log)
        self.stages: dict[str, list[float]] = defaultdict(list)

    def __call__(self) -> None:
        model, device = self.model, self.images.device
        times: dict[str, float] = defaultdict(float)
        clock = [time.perf_counter()]

        def tick(stage: str) -> None:
            synchronize(device)
            now = time.perf_counter()
            times[stage] += now - clock[0]
            clock[0] = now

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(device, self.amp_dtype):
            features = model.backbone(model.normalize(self.images))
            tick("backbone")
            features_in = _leaves(features)
            pyramid = model.neck(features_in)
            tick("neck")
            pyramid_in = _leaves(pyramid)
            head_out = model.head(pyramid_in)
            tick("head")
        head_in = _leaves(head_out)
        sizes = [(p.shape[-2], p.shape[-1]) for p in pyramid]
        points, strides = model.points_for(sizes, tuple(self.images.shape[-2:]), device)
        self.assign_log.clear()
        loss = self.criterion(DetectorOutput(*head_in, points, strides), *self.prepared)
        loss.total.backward()
        tick("loss")
        torch.autograd.backward(head_out, _grads(head_in))
        tick("head")
        torch.autograd.backward(pyramid, _grads(pyramid_in))
        tick("neck")
        torch.autograd.backward(features, _grads(features_in))
        tick("backbone")
        self.optimizer.step()
        tick("optimizer")
        times["assign"] = sum(self.assign_log)
        times["loss"] -= times["assign"]
        for stage in STAGES:
            self.stages[stage].append(times[stage])


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Build the contenders, time them interleaved, return the JSON-ready results."""
    torch.manual_seed(0)
    config = ours_config()
    amp_dtype = amp_dtype_for(device, config.train)
    images, targets = synthetic_batch(args.batch, args.image_size, NUM_CLASSES)
    images = images.to(device)
    ours = OursContender(config, NUM_CLASSES, device)
    fcos = FcosContender(NUM_CLASSES, args.image_size, device)
    backbone = build_backbone_floor(config.model.backbone, tuple(config.model.out_indices)).to(device).train()
    ours_prepared, fcos_prepared = ours.prepare(targets), fcos.prepare(targets)
    split = SplitStep(ours, build_optimizer(ours.model, config.train), images, ours_prepared, amp_dtype)
    contenders = {
        "ours": make_step(ours, build_optimizer(ours.model, config.train), images, ours_prepared, amp_dtype),
        "fcos": make_step(fcos, build_optimizer(fcos.model, config.train), images, fcos_prepared, amp_dtype),
        "backbone": make_backbone_step(backbone, images, amp_dtype),
        "ours_split": split,
    }
    timings = time_interleaved(contenders, device, args.warmup, args.repeats)
    # the split step also recorded its warm-up runs: drop them
    stages = {name: statistics.median(values[args.warmup :]) for name, values in split.stages.items()}
    step = {name: timing.median for name, timing in timings.items()}
    return {
        "step_seconds": step,
        "runs": {name: timing.to_dict() for name, timing in timings.items()},
        "split_seconds": {stage: stages[stage] for stage in STAGES},
        "ratios": {
            "ours_over_fcos": ratio(step["ours"], step["fcos"]),
            "ours_over_backbone": ratio(step["ours"], step["backbone"]),
        },
        "goals": {"ours_over_fcos": GOAL_VS_FCOS, "ours_over_backbone": GOAL_VS_BACKBONE},
        "images_per_second": {name: args.batch / seconds for name, seconds in step.items()},
        "parameters": {
            "ours": count_parameters(ours.model),
            "fcos": count_parameters(fcos.model),
            "backbone": count_parameters(backbone),
        },
        "backbone": config.model.backbone,
        "amp_dtype": str(amp_dtype) if amp_dtype else None,
    }


def print_table(result: dict[str, Any], args: argparse.Namespace) -> None:
    step = result["step_seconds"]
    print(f"\nTraining step, {args.image_size} px, batch {args.batch} (median of {args.repeats}):")
    labels = {"ours": "ours (detector)", "fcos": "torchvision FCOS R18-FPN", "backbone": "backbone fwd+bwd (floor)",
              "ours_split": "ours, run stage by stage"}  # fmt: skip
    for name, label in labels.items():
        print(f"  {label:<28}{step[name] * 1e3:>10.0f} ms  {result['images_per_second'][name]:>7.1f} img/s")
    print("  ours, split by stage (forward + backward):")
    for stage, seconds in result["split_seconds"].items():
        print(f"    {stage:<26}{seconds * 1e3:>10.0f} ms  {seconds / step['ours_split']:>6.1%}")
    ratios, goals = result["ratios"], result["goals"]
    for key, text in (("ours_over_fcos", "ours / FCOS"), ("ours_over_backbone", "ours / backbone")):
        verdict = "met" if ratios[key] <= goals[key] else "NOT met"
        print(f"  {text:<28}{ratios[key]:>10.2f}   (goal <= {goals[key]}: {verdict})")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="96 px, batch 2, 1 run: checks it works, writes nothing"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    add_threads_argument(parser)
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/train_step.json)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.image_size, args.batch, args.warmup, args.repeats, args.threads = 96, 2, 1, 1, 1
    device = resolve_device(args.device)
    set_threads(args.threads)
    settings = {"image_size": args.image_size, "batch": args.batch, "warmup": args.warmup, "repeats": args.repeats,
                "threads": torch.get_num_threads()}  # fmt: skip
    recorder = Recorder("bench_train_step", list(argv or []), device, args.smoke, settings)
    result = measure(args, device)
    print_table(result, args)
    return recorder.write(result, result_path("train_step", device, args.smoke, args.out))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
