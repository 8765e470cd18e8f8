"""Benchmark: ``detector`` against ultralytics YOLOv8n / YOLO11n at equal wall-clock, scored by one metric (issue 12).

The peer a user would otherwise pick, trained from scratch through its Python API (``YOLO("yolov8n.yaml")``)
on the same data — a Roboflow COCO export converted on the fly to YOLO's label format (symlinked images, one
``class cx cy w h`` line per box) — with the same image size, batch, CPU threads and wall-clock budget
(``time=`` in ultralytics, which re-plans its epochs and schedule to end on time, as ``train.max_minutes``
does ours). Both are scored by :func:`detector.metrics.coco_map` on the same validation split in original
image coordinates.

The learning curve: YOLO saves its weights after every epoch (``save_period=1``) and logs the elapsed time per
epoch (``results.csv``); each snapshot is scored afterwards. Ours is ``detector train`` with the same budget,
its EMA weights scored on the same split after each epoch (``train.eval_every=1``). Both clocks count training
only: per-epoch validation is off for YOLO (``val=False``), and ours' clock — its budget and each point's
time — pauses while it evaluates (:func:`benchmarks.peers.train_curve`).

ultralytics is an optional extra for benchmarks only: ``pip install -e ".[bench]"``. Nothing is downloaded:
models are built from their YAML (random init), ``YOLO_OFFLINE=1``, plots off.

    python -m benchmarks.bench_yolo --data data/arena --imgsz 320 --minutes 10        # arena
    python -m benchmarks.bench_yolo --data ../shared/datasets/chess-pieces --imgsz 416 --minutes 30
    python -m benchmarks.bench_yolo --smoke                                            # a tiny arena, seconds

``--lanes N`` trains N contenders side by side, each in a process pinned to its own core with one thread and
its batches loaded in that process (``--workers 0``): the same budget for each, N times the contenders per hour.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Recorder, add_threads_argument, pinned_pool, result_path, set_threads
from benchmarks.peers import CURVE_CLOCK, CURVE_KEYS, train_curve
from detector.api import load
from detector.config import load_config
from detector.data import CocoDetection, ensure_arena
from detector.metrics import coco_map, per_class_ap
from detector.visualize import predictions_grid

PEERS = {"yolov8n": "yolov8n.yaml", "yolo11n": "yolo11n.yaml"}
# ultralytics' own validation settings (DetectionValidator): every box down to conf 0.001, NMS IoU 0.7
YOLO_CONF, YOLO_IOU, MAX_DET = 0.001, 0.7, 100
# The optimizer ultralytics' ``optimizer="auto"`` chose for runs of over 10,000 iterations (a time-budgeted run
# plans 1000 epochs) up to 8.3: SGD, lr0 0.01, momentum 0.9, no bias warmup boost. From 8.4 ``auto`` picks MuSGD
# there, whose Newton-Schulz iterations took 93 % of a CPU step (py-spy, ultralytics 8.4.190: 8.9 s per batch of 4
# at 320 px against a 0.7 s forward and backward), so the peer would be judged on an optimizer built for GPUs.
YOLO_OPTIMIZER = {"optimizer": "SGD", "lr0": 0.01, "momentum": 0.9, "warmup_bias_lr": 0.0}
PICTURE_IMAGES = 4  # validation images in each contender's predictions picture
SMOKE = {"image_size": 96, "n_train": 8, "n_valid": 4, "minutes": 0.3, "batch": 4}


def write_yolo_split(split: CocoDetection, images_dir: Path, labels_dir: Path) -> None:
    """One split in YOLO's layout: ``images_dir/<i>_<name>`` symlinks and ``labels_dir/<i>_<stem>.txt`` files.

    Each label line is ``class cx cy w h`` normalised by the image size (crowd regions left out); names get the
    record's index as a prefix so that two files with one name never collide.
    """
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    for index, (record, file) in enumerate(zip(split.images, split.files, strict=True)):
        name = f"{index:06d}_{Path(file).name}"
        (images_dir / name).symlink_to(Path(file).resolve())
        annotation = split.annotations[index]
        width, height = float(record["width"]), float(record["height"])
        lines = []
        crowd = annotation.get("iscrowd", torch.zeros(len(annotation["labels"]), dtype=torch.int64))
        for (x0, y0, x1, y1), label, is_crowd in zip(
            annotation["boxes"].tolist(), annotation["labels"].tolist(), crowd.tolist(), strict=True
        ):
            if is_crowd:
                continue
            lines.append(
                f"{label} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
            )
        (labels_dir / f"{Path(name).stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def write_yolo_dataset(root: Path, out: Path, train_split: str, val_split: str) -> tuple[Path, CocoDetection]:
    """``out/data.yaml`` over YOLO-format copies of ``root``'s two splits; returns it and the validation split."""
    train, val = CocoDetection(root / train_split), CocoDetection(root / val_split)
    write_yolo_split(train, out / "images" / "train", out / "labels" / "train")
    write_yolo_split(val, out / "images" / "val", out / "labels" / "val")
    names = "".join(f"  {i}: {name!r}\n" for i, name in enumerate(train.class_names))
    (out / "data.yaml").write_text(f"path: {out}\ntrain: images/train\nval: images/val\nnames:\n{names}")
    return out / "data.yaml", val


def ground_truth(split: CocoDetection) -> list[dict[str, torch.Tensor]]:
    """The split's boxes and labels in original pixels (what :func:`coco_map` scores against)."""
    return [
        {key: annotation[key] for key in ("boxes", "labels", "iscrowd", "area") if key in annotation}
        for annotation in split.annotations
    ]


def yolo_predictions(weights: Path, split: CocoDetection, imgsz: int) -> list[dict[str, torch.Tensor]]:
    """A YOLO checkpoint's detections on every image of ``split`` (its own letterbox and NMS, original pixels)."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    predictions = []
    for result in model.predict(
        source=[str(f) for f in split.files], imgsz=imgsz, conf=YOLO_CONF, iou=YOLO_IOU, max_det=MAX_DET,
        device="cpu", verbose=False, stream=True,
    ):  # fmt: skip
        boxes = result.boxes
        predictions.append(
            {
                "boxes": boxes.xyxy.cpu().float(),
                "scores": boxes.conf.cpu().float(),
                "labels": boxes.cls.cpu().long(),
            }
        )
    return predictions


def final_report(
    predictions: list[dict[str, torch.Tensor]], split: CocoDetection, picture: Path | None
) -> dict[str, Any]:
    """Per-class AP of a contender's final model (``{"per_class": {name: {"ap", "ap50"}}, "picture": file name}``),
    and its predictions on the first :data:`PICTURE_IMAGES` validation images drawn into ``picture`` (PNG; the
    same images for every contender)."""
    gts = ground_truth(split)
    per_class = per_class_ap(predictions, gts, len(split.class_names))
    if picture is not None:
        count = min(PICTURE_IMAGES, len(split))
        images = [split[index][0] for index in range(count)]
        figure = predictions_grid(images, predictions[:count], gts[:count], split.class_names, ncols=count)
        figure.savefig(picture, dpi=110)
    return {
        "per_class": {name: {"ap": ap, "ap50": ap50} for name, ap, ap50 in
                      zip(split.class_names, per_class["ap"], per_class["ap50"], strict=True)},
        "picture": picture.name if picture is not None else None,
    }  # fmt: skip


def train_yolo_isolated(
    peer: str, data_yaml: Path, args: argparse.Namespace, out: Path, val_dir: Path
) -> dict[str, Any]:
    """:func:`train_yolo` in a fresh process: importing ultralytics patches ``PIL.Image.open`` process-wide
    (its HEIF fallback), which must not leak into the rest of the benchmark or a test session."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(train_yolo, peer, data_yaml, args, out, val_dir).result()


def train_yolo(
    peer: str, data_yaml: Path, args: argparse.Namespace, out: Path, val_dir: Path
) -> dict[str, Any]:
    """Train ``peer`` from scratch for ``args.minutes``; score every epoch's snapshot: the learning curve."""
    set_threads(args.threads)
    split = CocoDetection(val_dir)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    model = YOLO(PEERS[peer])
    model.train(
        data=str(data_yaml), epochs=1000, time=args.minutes / 60, imgsz=args.imgsz, batch=args.batch,
        workers=args.workers, device="cpu", seed=args.seed, project=str(out), name=peer, exist_ok=True,
        val=False, plots=False, save_period=1, pretrained=False, amp=False, verbose=False, **YOLO_OPTIMIZER,
    )  # fmt: skip
    run_dir = Path(model.trainer.save_dir)
    with open(run_dir / "results.csv", newline="") as file:
        rows = [{key.strip(): value for key, value in row.items()} for row in csv.DictReader(file)]
    curve = []
    for row in rows:
        epoch = int(float(row["epoch"]))
        snapshot = run_dir / "weights" / f"epoch{epoch}.pt"
        if not snapshot.exists():  # the final epoch is last.pt
            snapshot = run_dir / "weights" / "last.pt"
        predictions = yolo_predictions(snapshot, split, args.imgsz)
        metrics = coco_map(predictions, ground_truth(split))
        curve.append({"epoch": epoch, "train_seconds": float(row["time"]), **metrics})
        print(
            f"  {peer:<8} epoch {epoch:>3}  {float(row['time']) / 60:6.2f} min  mAP {metrics['map']:.4f}",
            flush=True,
        )
    return {
        "label": f"ultralytics {peer} (from scratch)",
        "optimizer": type(model.trainer.optimizer).__name__,
        "curve": curve,
        "final": curve[-1] if curve else {},
        **(final_report(predictions, split, picture_path(args, peer)) if curve else {}),
    }


def varied_keys(batch_given: bool) -> tuple[str, ...]:
    """The config keys :func:`train_ours` sets in every run (the batch only when ``--batch`` named it rather than
    the config): their shipped values do not shape the result."""
    data_keys = ("root", "arena", "train_split", "val_split", "image_size", "workers")
    batch = ("data.batch_size",) if batch_given else ()
    return (*(f"data.{key}" for key in data_keys), *batch, "train.max_minutes", "seed", *CURVE_KEYS)


def train_ours(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``detector train`` (``--config``) on the same data, budget, size and batch; its per-epoch curve."""
    overrides = {
        "data.root": str(args.data), "data.arena": None, "data.train_split": args.train_split,
        "data.val_split": args.val_split, "data.image_size": args.imgsz, "data.batch_size": args.batch,
        "data.workers": args.workers, "train.max_minutes": args.minutes, "seed": args.seed,
    }  # fmt: skip
    curve, run_dir = train_curve(args.config, overrides, out, "ours")
    split = CocoDetection(Path(args.data) / args.val_split)
    model = load(run_dir / "last.pt")  # the final weights (EMA), as the curve's last point scored them
    predictions = [
        {"boxes": d.boxes, "scores": d.scores, "labels": d.labels}
        for d in model.predict([str(f) for f in split.files], conf=model.config.eval.score_thresh)
    ]
    return {"label": f"ours (detector, {args.config})", "curve": curve, "final": curve[-1] if curve else {},
            **final_report(predictions, split, picture_path(args, "ours"))}  # fmt: skip


def picture_path(args: argparse.Namespace, contender: str) -> Path | None:
    """Where a contender's predictions picture goes: next to the results JSON (none for a smoke run)."""
    if args.smoke and args.out is None:
        return None
    out = args.out or result_path("yolo", torch.device("cpu"), args.smoke, None)
    return out.with_name(f"{out.stem}_{contender}.png")


def train_all(
    args: argparse.Namespace, data_yaml: Path, out: Path, val_dir: Path
) -> dict[str, dict[str, Any]]:
    """Every contender of ``args.peers``: one after the other, or ``args.lanes`` side by side (pinned cores)."""
    if args.lanes == 1:
        return {
            peer: train_ours(args, out)
            if peer == "ours"
            else train_yolo_isolated(peer, data_yaml, args, out, val_dir)
            for peer in args.peers
        }
    with pinned_pool(args.lanes) as pool:  # every worker is a fresh process: ultralytics' patch stays in it
        futures = {
            peer: pool.submit(train_ours, args, out)
            if peer == "ours"
            else pool.submit(train_yolo, peer, data_yaml, args, out, val_dir)
            for peer in args.peers
        }
        return {peer: future.result() for peer, future in futures.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="a Roboflow COCO export (default: the arena_cpu data)")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="valid")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument(
        "--batch", type=int, help="every contender's batch (default: --config's data.batch_size)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--peers", nargs="+", choices=["ours", *sorted(PEERS)], default=["ours", *sorted(PEERS)]
    )
    parser.add_argument("--config", default="arena_cpu", help="our config (its model, loss and optimiser)")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny arena and a few seconds each; writes nothing"
    )
    add_threads_argument(parser)
    parser.add_argument("--lanes", type=int, default=1, help="contenders at a time, one pinned core each")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/yolo.json)")
    args = parser.parse_args(argv)
    varied = varied_keys(batch_given=args.batch is not None)
    if args.batch is None:
        args.batch = load_config(args.config).data.batch_size
    args.threads = 1 if args.smoke or args.lanes > 1 else args.threads
    if args.lanes > 1:
        args.workers = 0  # each lane's one core loads its own batches
    set_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_yolo_") as tmp:
        tmp = Path(tmp)
        if args.smoke:
            args.data = ensure_arena(
                tmp / "arena", SMOKE["n_train"], SMOKE["n_valid"], 0, SMOKE["image_size"]
            )
            args.imgsz, args.minutes, args.batch, args.workers = (
                SMOKE["image_size"], SMOKE["minutes"], SMOKE["batch"], 0,
            )  # fmt: skip
        if args.data is None:
            from benchmarks.peers import ours_config
            from detector.loaders import prepare_data

            config = ours_config()
            prepare_data(config.data)
            args.data = Path(config.data.root)
        settings = {
            key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
        }
        settings["threads"], settings["clock"] = torch.get_num_threads(), CURVE_CLOCK
        recorder = Recorder(
            "bench_yolo",
            list(argv or []),
            torch.device("cpu"),
            args.smoke,
            settings,
            configs=(args.config,),
            varied=varied,
        )
        data_yaml, _ = write_yolo_dataset(Path(args.data), tmp / "yolo", args.train_split, args.val_split)
        val_dir = Path(args.data) / args.val_split
        results = train_all(args, data_yaml, tmp / "runs", val_dir)
    return recorder.write(
        {"contenders": results}, result_path("yolo", torch.device("cpu"), args.smoke, args.out)
    )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
