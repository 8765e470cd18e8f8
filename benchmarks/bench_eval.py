"""Benchmark: COCO box evaluation — ``detector.metrics.coco_map`` vs pycocotools vs faster-coco-eval (issue 4).

Each contender starts from the same per-image prediction/target tensors and ends with the 12 COCO numbers:

- ``ours``: :func:`detector.metrics.coco_map` (vectorised conversion, faster-coco-eval's C++ evaluator);
- ``pycocotools``: per-annotation dicts, ``COCO.loadRes``, ``COCOeval`` evaluate/accumulate/summarize;
- ``faster-coco-eval``: the same dicts and ``loadRes``, then ``COCOeval_faster`` (its drop-in usage).

The three results are checked to agree (max abs difference over the 12 numbers) before timing is reported.
Data: images with 0-10 GTs of 4 classes (log-uniform sizes, 640 px) and 100 detections each (jittered
copies of the GTs with higher scores, random boxes otherwise). Time: median of ``--repeats`` interleaved
runs. The load average is recorded with the results: on a shared 2-core machine other processes slow
every contender.

    python benchmarks/bench_eval.py            # 500 and 5000 images, writes benchmarks/results/eval.json
    python benchmarks/bench_eval.py --smoke    # 20 images × 10 detections, a few seconds, writes nothing
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from faster_coco_eval.core import COCO as FasterCOCO
from faster_coco_eval.core import COCOeval_faster
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from benchmarks.common import provenance
from detector.metrics import METRIC_KEYS, coco_map

RESULTS = Path(__file__).parent / "results" / "eval.json"
IMAGE_SIZE, NUM_CLASSES, MAX_GT = 640.0, 4, 10


def make_data(num_images: int, dets_per_image: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Per-image predictions and targets (tensors), see the module docstring."""
    generator = torch.Generator().manual_seed(seed)

    def boxes(count: int) -> torch.Tensor:
        side = torch.exp(torch.empty(count, 2).uniform_(math.log(4), math.log(300), generator=generator))
        corner = torch.rand(count, 2, generator=generator) * (IMAGE_SIZE - side)
        return torch.cat((corner, corner + side), dim=1)

    predictions, targets = [], []
    for _ in range(num_images):
        num_gt = int(torch.randint(0, MAX_GT + 1, (1,), generator=generator))
        gt_boxes, gt_labels = boxes(num_gt), torch.randint(0, NUM_CLASSES, (num_gt,), generator=generator)
        targets.append({"boxes": gt_boxes, "labels": gt_labels})
        copies = min(num_gt * 3, dets_per_image)
        source = torch.randint(0, max(num_gt, 1), (copies,), generator=generator)
        sides = (gt_boxes[source, 2:] - gt_boxes[source, :2]).repeat(1, 2)
        jittered = gt_boxes[source] + torch.randn(copies, 4, generator=generator) * 0.1 * sides
        dt_boxes = torch.cat((jittered, boxes(dets_per_image - copies)))
        dt_labels = torch.cat(
            (
                gt_labels[source],
                torch.randint(0, NUM_CLASSES, (dets_per_image - copies,), generator=generator),
            )
        )
        scores = torch.rand(dets_per_image, generator=generator) * 0.6
        scores[:copies] += 0.4
        predictions.append({"boxes": dt_boxes, "scores": scores, "labels": dt_labels})
    return predictions, targets


def coco_dicts(predictions: list[dict], targets: list[dict]) -> tuple[dict, list[dict]]:
    """The straightforward conversion: one dict per annotation, xyxy -> xywh, category id = label + 1."""
    images = [{"id": i + 1} for i in range(len(targets))]
    gts = []
    for i, target in enumerate(targets):
        for (x1, y1, x2, y2), label in zip(
            target["boxes"].double().tolist(), target["labels"].tolist(), strict=True
        ):
            w, h = x2 - x1, y2 - y1
            gts.append(
                {"id": len(gts) + 1, "image_id": i + 1, "category_id": label + 1, "bbox": [x1, y1, w, h]}
                | {"area": w * h, "iscrowd": 0}
            )
    dts = []
    for i, prediction in enumerate(predictions):
        rows = zip(
            prediction["boxes"].double().tolist(),
            prediction["labels"].tolist(),
            prediction["scores"].double().tolist(),
            strict=True,
        )
        for (x1, y1, x2, y2), label, score in rows:
            dts.append(
                {
                    "image_id": i + 1,
                    "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    categories = [{"id": c + 1, "name": str(c)} for c in range(NUM_CLASSES)]
    return {"images": images, "annotations": gts, "categories": categories}, dts


def run_pycocotools(predictions: list[dict], targets: list[dict]) -> np.ndarray:
    dataset, dts = coco_dicts(predictions, targets)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dts), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return np.asarray(evaluator.stats[:12])


def run_faster_coco_eval(predictions: list[dict], targets: list[dict]) -> np.ndarray:
    dataset, dts = coco_dicts(predictions, targets)
    quiet = lambda *args, **kwargs: None
    coco_gt = FasterCOCO(dataset, print_function=quiet)
    evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(dts), "bbox", print_function=quiet)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats[:12])


def run_ours(predictions: list[dict], targets: list[dict]) -> np.ndarray:
    result = coco_map(predictions, targets)
    return np.asarray([result[key] for key in METRIC_KEYS])


CONTENDERS: dict[str, Callable[[list[dict], list[dict]], np.ndarray]] = {
    "ours": run_ours,
    "pycocotools": run_pycocotools,
    "faster-coco-eval": run_faster_coco_eval,
}


def measure(num_images: int, dets_per_image: int, repeats: int) -> dict:
    """Median seconds per contender; runs interleave (A, B, C, A, B, C, ...) so that load from other
    processes on a shared machine affects all contenders alike."""
    predictions, targets = make_data(num_images, dets_per_image)
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    stats = {}
    for _ in range(repeats):
        for name, run in CONTENDERS.items():
            start = time.perf_counter()
            stats[name] = run(predictions, targets)
            times[name].append(time.perf_counter() - start)
    return {
        "images": num_images,
        "detections_per_image": dets_per_image,
        "seconds": {name: statistics.median(runs) for name, runs in times.items()},
        "runs": times,
        "max_abs_diff_vs_pycocotools": {
            name: float(np.abs(values - stats["pycocotools"]).max()) for name, values in stats.items()
        },
        "map": float(stats["pycocotools"][0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="20 images × 10 detections, 3 runs, writes nothing"
    )
    parser.add_argument("--images", type=int, nargs="+", default=[500, 5000], help="data set sizes")
    parser.add_argument("--dets", type=int, default=100, help="detections per image")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (median reported)")
    parser.add_argument("--out", type=Path, help=f"JSON results (default {RESULTS}; none with --smoke)")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.dets = [20], 10

    rows = [measure(num_images, args.dets, args.repeats) for num_images in args.images]
    print(f"{'images':>7} {'dets/img':>8} " + " ".join(f"{name:>17}" for name in CONTENDERS) + "  max|diff|")
    for row in rows:
        times = " ".join(f"{row['seconds'][name]:>16.3f}s" for name in CONTENDERS)
        diff = max(row["max_abs_diff_vs_pycocotools"].values())
        print(f"{row['images']:>7} {row['detections_per_image']:>8} {times}  {diff:.1e}")

    result = {
        "benchmark": "COCO box evaluation, 12 numbers from per-image tensors (median seconds)",
        "rows": rows,
        "repeats": args.repeats,
        "smoke": args.smoke,
        "load_average_1_5_15min": list(os.getloadavg()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": sys.version.split()[0],
        },
        "versions": {package: version(package) for package in ("torch", "pycocotools", "faster-coco-eval")},
    }
    result["provenance"] = provenance(configs=())  # synthetic inputs: no shipped config shapes it
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
