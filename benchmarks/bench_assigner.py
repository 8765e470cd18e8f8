"""Benchmark: the batched Task-Aligned Assigner vs a straightforward per-GT loop (issue 3).

The loop version below is how a first notebook writes TAL: for each image, for each GT, find its candidates,
score them, take the top k; then resolve conflicts and normalise per GT. Same semantics as
:class:`detector.assigner.TaskAlignedAssigner` (its results are checked to agree before timing).

Sizes: B=16 images at 640 px (strides 8/16/32: N=8400 points), M=30 GTs per image, C=4 classes, on CPU.
Time: median of ``--repeats`` runs after ``--warmup`` runs. Peak memory: growth of the peak resident set
size during one call (``VmHWM`` after a reset through ``/proc/self/clear_refs``, Linux), measured in a fresh
subprocess per implementation (so memory freed earlier in the process cannot hide it).

    python benchmarks/bench_assigner.py            # full size, writes benchmarks/results/assigner.json
    python benchmarks/bench_assigner.py --smoke    # tiny sizes, a few seconds, writes nothing
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import Tensor
from torchvision.ops import box_iou

from benchmarks.common import provenance
from detector.assigner import TOOD_ALPHA, TOOD_BETA, TOOD_TOPK, AssignResult, TaskAlignedAssigner
from detector.boxes import ltrb_to_xyxy, make_points

RESULTS = Path(__file__).parent / "results" / "assigner.json"
STRIDES = (8, 16, 32)


def loop_assign(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    points: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    gt_mask: Tensor,
    num_classes: int,
    topk: int = TOOD_TOPK,
    alpha: float = TOOD_ALPHA,
    beta: float = TOOD_BETA,
    eps: float = 1e-9,
) -> AssignResult:
    """TAL one image and one GT at a time (no centre sampling); the reference the batched version must match."""
    batch, num_points, _ = pred_scores.shape
    labels = torch.full((batch, num_points), num_classes, dtype=torch.int64)
    boxes = torch.zeros(batch, num_points, 4)
    scores = torch.zeros(batch, num_points, num_classes)
    gt_index = torch.full((batch, num_points), -1, dtype=torch.int64)
    unassigned = 0
    for image in range(batch):
        best_iou = torch.full((num_points,), -1.0)
        best_gt = torch.full((num_points,), -1, dtype=torch.int64)
        best_metric = torch.zeros(num_points)
        for gt in range(gt_labels.shape[1]):
            if not gt_mask[image, gt]:
                continue
            x1, y1, x2, y2 = gt_boxes[image, gt]
            ltrb = torch.stack(
                (points[:, 0] - x1, points[:, 1] - y1, x2 - points[:, 0], y2 - points[:, 1]), -1
            )
            candidates = (ltrb.min(dim=-1).values > eps).nonzero()[:, 0]
            iou = box_iou(gt_boxes[image, gt][None], pred_boxes[image, candidates])[0]
            metric = pred_scores[image, candidates, gt_labels[image, gt]] ** alpha * iou**beta
            order = torch.sort(metric, descending=True, stable=True).indices[:topk]
            for point, point_iou, point_metric in zip(
                candidates[order], iou[order], metric[order], strict=True
            ):
                if point_iou > best_iou[point]:
                    best_iou[point], best_gt[point], best_metric[point] = point_iou, gt, point_metric
        for gt in range(gt_labels.shape[1]):
            if not gt_mask[image, gt]:
                continue
            mine = best_gt == gt
            if not mine.any():
                unassigned += 1
                continue
            label = gt_labels[image, gt]
            norm = best_iou[mine].max() / (best_metric[mine].max() + eps)
            labels[image, mine] = label
            boxes[image, mine] = gt_boxes[image, gt]
            scores[image, mine, label] = best_metric[mine] * norm
            gt_index[image, mine] = gt
    return AssignResult(labels, boxes, scores, gt_index >= 0, gt_index, torch.tensor(unassigned))


def make_batch(
    batch: int, image_size: int, num_gts: int, num_classes: int, seed: int = 0
) -> dict[str, Tensor]:
    """Random predictions and GTs (sizes 4..~200 px, ~10 % padding) for a ``image_size`` square batch."""
    generator = torch.Generator().manual_seed(seed)
    points, strides = make_points([(image_size // s, image_size // s) for s in STRIDES], STRIDES)
    num_points = points.shape[0]
    sizes = 4 + torch.rand(batch, num_gts, 2, generator=generator) ** 2 * 200
    corners = torch.rand(batch, num_gts, 2, generator=generator) * (image_size - sizes)
    return {
        "pred_scores": torch.rand(batch, num_points, num_classes, generator=generator),
        "pred_boxes": ltrb_to_xyxy(
            points, torch.rand(batch, num_points, 4, generator=generator) * 4 * strides[:, None]
        ),
        "points": points,
        "gt_labels": torch.randint(0, num_classes, (batch, num_gts), generator=generator),
        "gt_boxes": torch.cat((corners, corners + sizes), dim=-1),
        "gt_mask": torch.rand(batch, num_gts, generator=generator) > 0.1,
    }


def run_impl(name: str, inputs: dict[str, Tensor], num_classes: int) -> AssignResult:
    if name == "batched":
        return TaskAlignedAssigner(num_classes)(**inputs)
    return loop_assign(**inputs, num_classes=num_classes)


def time_impl(
    name: str, inputs: dict[str, Tensor], num_classes: int, warmup: int, repeats: int
) -> list[float]:
    for _ in range(warmup):
        run_impl(name, inputs, num_classes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_impl(name, inputs, num_classes)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def peak_memory_mb(name: str, args: argparse.Namespace) -> float:
    """Peak-RSS growth of one call in MiB, in a fresh interpreter (after a tiny warm-up call)."""
    command = [sys.executable, __file__, "--memory-of", name, "--batch", str(args.batch)]
    command += [
        "--image-size",
        str(args.image_size),
        "--num-gts",
        str(args.num_gts),
        "--classes",
        str(args.classes),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))


def measure_memory_here(args: argparse.Namespace) -> None:
    """Print the peak resident-set growth (MiB) of one call; Linux ``/proc`` (the HWM reset by clear_refs)."""
    run_impl(args.memory_of, make_batch(1, 64, 2, args.classes), args.classes)
    inputs = make_batch(args.batch, args.image_size, args.num_gts, args.classes)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current VmRSS
    before = _proc_status_kib("VmRSS")
    run_impl(args.memory_of, inputs, args.classes)
    print((_proc_status_kib("VmHWM") - before) / 1024)


def check_agreement(inputs: dict[str, Tensor], num_classes: int) -> float:
    batched, loop = run_impl("batched", inputs, num_classes), run_impl("loop", inputs, num_classes)
    for field in ("labels", "fg_mask", "gt_index", "num_unassigned_gts"):
        if not torch.equal(getattr(batched, field), getattr(loop, field)):
            raise AssertionError(f"batched and loop TAL disagree on {field}")
    return float((batched.scores - loop.scores).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes (B=2, 128 px, M=5), 1 warm-up, 3 runs"
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--num-gts", type=int, default=30)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, help=f"JSON results (default {RESULTS.name}; none with --smoke)")
    parser.add_argument("--memory-of", choices=("batched", "loop"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.batch, args.image_size, args.num_gts, args.warmup, args.repeats = 2, 128, 5, 1, 3
    if args.memory_of:
        measure_memory_here(args)
        return
    torch.manual_seed(0)
    inputs = make_batch(args.batch, args.image_size, args.num_gts, args.classes)
    max_score_diff = check_agreement(inputs, args.classes)
    rows = {}
    for name in ("batched", "loop"):
        times = time_impl(name, inputs, args.classes, args.warmup, args.repeats)
        rows[name] = {
            "median_ms": statistics.median(times),
            "times_ms": times,
            "peak_mb": peak_memory_mb(name, args),
        }
    ratio = rows["loop"]["median_ms"] / rows["batched"]["median_ms"]
    num_points = inputs["points"].shape[0]
    print(
        f"TAL assigner, CPU ({torch.get_num_threads()} threads): B={args.batch}, N={num_points}, M={args.num_gts}"
    )
    print(f"{'implementation':<16}{'median ms':>12}{'peak MB':>10}")
    for name, row in rows.items():
        print(f"{name:<16}{row['median_ms']:>12.1f}{row['peak_mb']:>10.1f}")
    print(f"speed-up (loop / batched): {ratio:.1f}x; max |score difference|: {max_score_diff:.2e}")
    result = {
        "sizes": {
            "B": args.batch,
            "N": num_points,
            "M": args.num_gts,
            "C": args.classes,
            "image_size": args.image_size,
        },
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "smoke": args.smoke,
        "results": rows,
        "speedup": ratio,
        "max_score_difference": max_score_diff,
    }
    result["provenance"] = provenance(configs=())  # synthetic inputs: no shipped config shapes it
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
