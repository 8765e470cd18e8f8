"""The ``detector`` command: ``train``, ``eval``, ``predict``, ``export`` and ``arena`` (``detector COMMAND --help``).

Errors a user can fix (:class:`detector.errors.UserError`: an unknown config key, a value outside its
choices, a broken data set or checkpoint; and missing or existing paths) end the command with exit status 2
and one line on stderr that names the path or key and the fix. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from detector.config import Config, config_from_dict, load_config
from detector.errors import DataError, UserError

USER_ERRORS = (UserError, FileNotFoundError, FileExistsError)
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130  # 130 = 128 + SIGINT, the shell's convention

TRAIN_EPILOG = """\
examples:
  detector train                                   # the CPU demo: arena data, resnet10t, within max_minutes
  detector train --config halo_r50 --data datasets/halo model.pretrained=weights/resnet50.pth
  detector train --config roboflow --data path/to/export train.epochs=50 data.batch_size=16   # GPU
  detector train --config roboflow_cpu --data path/to/export train.max_minutes=60   # CPU, a time budget
  detector train --resume runs/arena_cpu/last.pt   # continue a run exactly where it stopped
  torchrun --nproc_per_node 4 -m detector train --config halo_r50 --data datasets/halo   # multi-GPU (DDP)

Overrides are KEY=VALUE with dotted keys of the config (values parsed as YAML), e.g. train.lr=1e-3.
train.max_minutes=M: a wall-clock budget; the plan (at most train.epochs) is re-laid to what fits at the
measured pace and the cosine schedule ends when the budget does (the run prints its estimate after its first
steps). train.cpu_bf16=true: bf16 autocast on CPUs with native bf16 kernels (AVX512-BF16 or AMX), else fp32.
On a CPU shared with other busy processes, OMP_WAIT_POLICY=PASSIVE (set before starting) keeps OpenMP
threads from spinning against them. On an otherwise idle CPU leave it unset: there it makes each step slower
(2-minute arena_cpu runs on 2 idle cores: 17-30 % fewer steps).
"""

PREDICT_EPILOG = """\
examples:
  detector predict --weights runs/arena_cpu/best.pt photos/ 'more/*.png' --conf 0.4
  detector predict --weights best.pt data/valid --annotations data/valid/_annotations.coco.json
  detector predict --weights best.pt big/ --imgsz 640 --batch 4 --half --agnostic-nms   # CUDA

Writes OUT/<name>.jpg per image (names never collide: a.png and a.jpg become a_png.jpg and a_jpg.jpg) and
OUT/predictions.json: COCO results (bbox [x, y, w, h] in original pixels); with --annotations, its image
and category ids, else the image's index and label + 1.
"""


def _add_overrides(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=5"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detector",
        description="Train, evaluate and run an anchor-free object detector (FPN+PAN, TAL, focal/IoU losses).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train", help="train a detector from a config", epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a detector; writes runs/<name>/ (checkpoints, logs, curves.png, predictions.png, train_batch.jpg).",
    )  # fmt: skip
    train.add_argument("--config", default=None, help="a shipped config (arena_cpu, halo_r50, roboflow, roboflow_cpu, seed) or a "
                       "YAML path (default: arena_cpu; with --resume: the checkpoint's config)")  # fmt: skip
    train.add_argument(
        "--data", help="data set root: a Roboflow COCO export (sets data.root, no arena generation)"
    )
    train.add_argument("--name", help="run name: writes runs/<name>/ (sets name)")
    train.add_argument("--device", help="auto, cpu, cuda or cuda:N (sets train.device)")
    train.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                       help="continue from CHECKPOINT (default: runs/<name>/last.pt)")  # fmt: skip
    _add_overrides(train)

    evaluate = commands.add_parser(
        "eval", help="COCO mAP of trained weights on a data split",
        description="Evaluate a checkpoint (its EMA weights) with COCO mAP on a split of a data set.",
    )  # fmt: skip
    evaluate.add_argument("--weights", required=True, help="a last.pt or best.pt written by 'detector train'")
    evaluate.add_argument("--data", help="data set root (default: the one the checkpoint was trained on)")
    evaluate.add_argument("--split", help="split folder to evaluate (default: data.val_split, e.g. valid)")
    evaluate.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    evaluate.add_argument("--out", type=Path, help="also write the metrics to this JSON file")
    _add_overrides(evaluate)

    predict = commands.add_parser(
        "predict", help="detect objects in images", epilog=PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a checkpoint on images; writes annotated images and a COCO results JSON.",
    )  # fmt: skip
    predict.add_argument("--weights", required=True, help="a last.pt or best.pt written by 'detector train'")
    predict.add_argument("sources", nargs="+", metavar="SOURCE",
                         help="image files, folders of images, or globs such as 'photos/*.jpg'")  # fmt: skip
    predict.add_argument(
        "--out", type=Path, default=Path("runs/predict"), help="output folder (default: %(default)s)"
    )
    predict.add_argument("--conf", "--score-thresh", type=float, default=0.25, dest="conf",
                         help="keep detections scoring above this (default: %(default)s)")  # fmt: skip
    predict.add_argument(
        "--iou", type=float, help="NMS IoU threshold (default: the checkpoint's eval.nms_iou)"
    )
    predict.add_argument("--max-det", type=int, help="detections per image (default: eval.max_det)")
    predict.add_argument(
        "--imgsz", type=int, help="input side in pixels (default: the training data.image_size)"
    )
    predict.add_argument(
        "--batch", type=int, default=8, help="images per forward pass (default: %(default)s)"
    )
    predict.add_argument("--half", action="store_true", help="fp16 autocast (CUDA only)")
    predict.add_argument("--agnostic-nms", action="store_true", help="one NMS over all classes")
    predict.add_argument("--annotations", type=Path,
                         help="the images' COCO JSON: predictions.json uses its image and category ids")  # fmt: skip
    predict.add_argument("--no-images", action="store_true", help="write predictions.json only")
    predict.add_argument("--device", help="auto, cpu, cuda or cuda:N")

    export = commands.add_parser(
        "export", help="write a checkpoint as ONNX or TorchScript",
        description="Export a checkpoint's EMA weights with box decoding (NMS not included): input images "
        "float32 [B, 3, S, S] in [0, 1], dynamic batch; outputs boxes [B, N, 4] xyxy in input pixels and "
        "scores [B, N, C]. See the package guide for the post-processing.",
    )  # fmt: skip
    export.add_argument("--weights", required=True, help="a last.pt or best.pt written by 'detector train'")
    export.add_argument("--format", choices=("onnx", "torchscript"), default="onnx",
                        help="default: %(default)s")  # fmt: skip
    export.add_argument("--imgsz", type=int, help="input side S (default: the training data.image_size)")
    export.add_argument(
        "--out", type=Path, help="output file (default: the weights' path with .onnx/.torchscript)"
    )

    arena = commands.add_parser(
        "arena", help="generate the built-in arena data set",
        description="Generate the procedural arena data set as a Roboflow COCO export (train/ valid/ test/).",
    )  # fmt: skip
    arena.add_argument(
        "--out", type=Path, default=Path("data/arena"), help="output folder (default: %(default)s)"
    )
    arena.add_argument("--n-train", type=int, default=1200, help="training images (default: %(default)s)")
    arena.add_argument("--n-valid", type=int, default=200, help="validation images (default: %(default)s)")
    arena.add_argument("--n-test", type=int, default=200, help="test images (default: %(default)s)")
    arena.add_argument(
        "--image-size", type=int, default=320, help="image side in pixels (default: %(default)s)"
    )
    arena.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    return parser


def _sugar(args: argparse.Namespace) -> list[str]:
    """Flags that are shorthands for config overrides, placed before the user's own overrides."""
    overrides = []
    if getattr(args, "data", None):
        overrides += [f"data.root={args.data}", "data.arena=null"]
    if getattr(args, "name", None):
        overrides.append(f"name={args.name}")
    if getattr(args, "device", None):
        overrides.append(f"train.device={args.device}")
    return overrides + list(getattr(args, "overrides", []) or [])


def config_from_checkpoint(path: str | Path, overrides: list[str]) -> Config:
    """The config stored in a checkpoint (of this format), with ``KEY=VALUE`` overrides applied and validated."""
    from detector.checkpoint import check_format, load_checkpoint

    state = load_checkpoint(path)
    check_format(state, path)  # before its config: an old file's keys may be unknown today
    return config_from_dict(state["config"], overrides, f"{path} (config)")


def run_train(args: argparse.Namespace) -> int:
    overrides = _sugar(args)
    if args.resume is not None and args.config is None:  # the config of the run it continues
        if args.resume is True:  # bare --resume: runs/<name>/last.pt, name and out_dir from the overrides
            default = load_config("arena_cpu", overrides)
            args.resume = str(Path(default.train.out_dir) / default.name / "last.pt")
        config = config_from_checkpoint(args.resume, overrides)
    else:
        config = load_config(args.config or "arena_cpu", overrides)  # before importing torch: fast errors

    from detector import distributed
    from detector.engine import NonFiniteLossError, Runner, TrainingInterrupted

    try:
        Runner(config, resume=args.resume).fit()
    except TrainingInterrupted as interrupted:
        print(f"detector train: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteLossError as error:
        print(f"detector train: error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        distributed.cleanup()
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from detector.distributed import DistInfo
    from detector.inference import evaluate, load_detector, write_json
    from detector.loaders import build_dataset, make_loader, prepare_data, resolve_device
    from detector.runlog import format_results

    config = config_from_checkpoint(args.weights, _sugar(args))
    prepare_data(config.data)  # the arena of an arena-trained checkpoint is regenerated when missing
    device = resolve_device(config.train.device)
    model, _, class_names = load_detector(args.weights, device)
    split = args.split or config.data.val_split
    dataset = build_dataset(config.data, split, train=False)
    if list(dataset.class_names) != class_names:
        raise DataError(
            f"{config.data.root}/{split} has classes {dataset.class_names}, the weights {class_names}"
        )
    loader = make_loader(dataset, config.data, device, DistInfo(), train=False)
    metrics = evaluate(model, loader, device, config.eval, len(class_names))
    print(format_results(metrics, class_names, title=f"{args.weights} on {config.data.root}/{split} "
                         f"({metrics['num_images']} images), fp32"))  # fmt: skip
    if args.out:
        write_json(metrics, args.out)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from torchvision.io import write_jpeg

    from detector.api import load
    from detector.inference import annotation_ids, coco_results, expand_sources, output_names, write_json
    from detector.visualize import draw_detections

    paths = expand_sources(args.sources)
    model = load(args.weights, args.device or "auto")
    ids = annotation_ids(args.annotations, paths, model.class_names) if args.annotations else (None, None)
    names = output_names(paths)
    args.out.mkdir(parents=True, exist_ok=True)
    detections = []
    stream = model.stream(paths, conf=args.conf, iou=args.iou, max_det=args.max_det, imgsz=args.imgsz,
                          batch_size=args.batch, half=args.half, agnostic_nms=args.agnostic_nms)  # fmt: skip
    for (image, result), name in zip(stream, names, strict=True):
        if not args.no_images:
            drawn = draw_detections(image, result.boxes, result.labels, result.scores, model.class_names)
            write_jpeg(drawn, str(args.out / name))
        detections.append({"boxes": result.boxes, "scores": result.scores, "labels": result.labels})
        print(f"{result.path}: {len(result)} detections" + ("" if args.no_images else f" -> {name}"))
    results = coco_results(detections, model.class_names, *ids, file_names=[str(path) for path in paths])
    write_json(results, args.out / "predictions.json")
    drawn_note = "" if args.no_images else f" and {len(paths)} annotated images"
    print(f"wrote predictions.json{drawn_note} to {args.out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from detector.api import load
    from detector.export import SUFFIXES

    model = load(args.weights, "cpu")
    out = args.out or Path(args.weights).with_suffix(SUFFIXES[args.format])
    path = model.export(out, args.format, args.imgsz)
    size = args.imgsz or model.config.data.image_size
    print(f"wrote {path} ({args.format}; input images float32 [batch, 3, {size}, {size}] in [0, 1]; outputs "
          f"boxes [batch, N, 4] xyxy and scores [batch, N, {len(model.class_names)}], before NMS)")  # fmt: skip
    return 0


def run_arena(args: argparse.Namespace) -> int:
    from detector.data import ensure_arena

    path = ensure_arena(args.out, args.n_train, args.n_valid, args.n_test, image_size=args.image_size,
                        seed=args.seed)  # fmt: skip
    print(f"arena data set ready in {path} (train/valid/test: {args.n_train}/{args.n_valid}/{args.n_test} "
          f"images of {args.image_size} px, seed {args.seed})")  # fmt: skip
    return 0


COMMANDS = {
    "train": run_train,
    "eval": run_eval,
    "predict": run_predict,
    "export": run_export,
    "arena": run_arena,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``detector`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as error:
        print(f"detector {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
