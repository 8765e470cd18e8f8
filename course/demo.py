"""The landing page's demo: figures and picture recorded from a ``make train`` run, never typed in.

``make record-demo`` (``python -m course.demo record [RUN_DIR]``, default ``runs/arena_cpu``) reads what
``detector train`` wrote into the run directory and keeps it in the repository:

- ``site/assets/demo/record.json``: the final validation metrics (the last line of ``metrics.jsonl`` with
  ``val_map``), the class names (from ``last.pt``), the model and data settings (``config.yaml``), the training
  time (from ``config.yaml``, written when training starts, to ``predictions.png``, written after the final
  evaluation), the date, the machine, and the commit of the checkout that holds the run directory (the code
  that trained, which may be a fresh clone elsewhere; ``null`` outside a git checkout);
- ``site/assets/demo/predictions.jpg``: the run's ``predictions.png`` (validation images, GT and predictions).

``python -m course.demo record RUN_DIR OTHER_RUN_DIR...`` also keeps the final validation mAP of runs of the same
config with other seeds (``make train ARGS="seed=1"``), so the page reports the spread, not one lucky seed.

``python -m course.demo batch`` draws :data:`BATCH_NAME` for the package guide: a training batch of the arena
with the augmentation of the GPU recipe (:data:`BATCH_RECIPE`'s mosaic, affine, flip, HSV), as the loader yields it.

The mkdocs hook replaces :data:`DEMO_MARKER` in ``site/index.md`` by :func:`render_markdown`; without a record the
page says that no run was recorded yet, and a record made with another config than the one shipped now (its
fingerprint, as on the Benchmarks page) is marked stale.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from course.paths import REPO_ROOT

DEMO_DIR = REPO_ROOT / "site" / "assets" / "demo"
RECORD_NAME = "record.json"
PICTURE_NAME = "predictions.jpg"
BATCH_NAME = "train_batch.jpg"
BATCH_RECIPE = "halo_r50"  # the shipped config whose augmentation keys the batch picture shows
AUGMENTATION_KEYS = ("mosaic", "mixup", "scale", "translate", "degrees", "hflip", "color_jitter")
DEMO_MARKER = "<!-- demo -->"
PICTURE_MAX_WIDTH = 1400  # pixels: enough for the landing page, keeps the committed JPEG small
NO_RECORD = (
    "*No `make train` run has been recorded yet, so this page shows no figures: run `make train`, then "
    "`make record-demo` to keep its validation mAP, its training time and its picture here.*"
)


def _last_validation(metrics_path: Path) -> dict[str, Any]:
    """The last per-epoch record of ``metrics.jsonl`` that holds validation metrics."""
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{metrics_path}: not found; run `make train` first (it writes this file)")
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    validated = [r for r in records if "val_map" in r]
    if not validated:
        raise ValueError(f"{metrics_path}: no epoch with validation metrics (val_map); did the run finish?")
    return validated[-1]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def _run_commit(run_dir: Path) -> tuple[str | None, bool]:
    """``(short commit, uncommitted changes)`` of the git checkout that holds ``run_dir``: the code that trained
    the run (a fresh clone's, not this repository's, when the run was made there); ``(None, False)`` outside one."""
    try:
        commit = _git(run_dir, "rev-parse", "--short", "HEAD")
        return commit, bool(_git(run_dir, "status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None, False


def _seed_result(run_dir: Path, fingerprint: str) -> dict[str, Any]:
    """``{"seed", "step", "map", "map_50"}`` of the finished run in ``run_dir``, whose config must be the pictured
    run's but for ``seed`` (``fingerprint``: that config's, ``seed`` left out)."""
    import yaml

    from detector.config import config_fingerprint, config_from_dict

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; `detector train` writes it (did the run finish?)")
    config = config_from_dict(yaml.safe_load(config_path.read_text()), source=str(config_path))
    if config_fingerprint(config, ignore=("seed",)) != fingerprint:
        raise ValueError(
            f"{config_path}: this run's config differs from the pictured run's in more than `seed`; record only "
            'runs of one config (make train ARGS="seed=N")'
        )
    return _seed_row(config.seed, _last_validation(run_dir / "metrics.jsonl"))


def _seed_row(seed: int, final: dict[str, Any]) -> dict[str, Any]:
    """A run's row in :func:`record`'s ``seeds``, from its last validation (a ``metrics.jsonl`` record)."""
    return {"seed": seed, "step": final["step"], "map": final["val_map"], "map_50": final["val_map_50"]}


def record(run_dir: Path, out_dir: Path = DEMO_DIR, other_seeds: Sequence[Path] = ()) -> dict[str, Any]:
    """Write ``record.json`` and ``predictions.jpg`` of the finished run in ``run_dir`` into ``out_dir``.

    ``other_seeds``: finished runs of the same config with other seeds; ``record["seeds"]`` lists the final
    validation mAP of ``run_dir`` and of each of them.
    """
    import yaml
    from PIL import Image

    from benchmarks.common import machine_info
    from detector.checkpoint import load_checkpoint
    from detector.config import config_fingerprint, config_from_dict

    run_dir = Path(run_dir)
    final = _last_validation(run_dir / "metrics.jsonl")
    config_path, picture_path = run_dir / "config.yaml", run_dir / "predictions.png"
    for path in (config_path, picture_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; `detector train` writes it (did the run finish?)")
    config = yaml.safe_load(config_path.read_text())
    resolved = config_from_dict(config, source=str(config_path))
    seed_free = config_fingerprint(resolved, ignore=("seed",))
    seeds = [_seed_row(resolved.seed, final), *(_seed_result(Path(run), seed_free) for run in other_seeds)]
    class_names = list(load_checkpoint(run_dir / "last.pt")["class_names"])
    finished = picture_path.stat().st_mtime
    commit, uncommitted = _run_commit(run_dir)
    demo = {
        "run": config["name"],
        "config": {
            "backbone": config["model"]["backbone"],
            "pretrained": config["model"]["pretrained"],
            "image_size": config["data"]["image_size"],
            "max_minutes": config["train"]["max_minutes"],
        },
        "config_fingerprint": config_fingerprint(resolved),
        "epoch": final["epoch"],
        "step": final["step"],
        "map": final["val_map"],
        "map_50": final["val_map_50"],
        "per_class_ap50": dict(zip(class_names, final["val_per_class_ap50"], strict=True)),
        "seeds": seeds,
        "train_minutes": (finished - config_path.stat().st_mtime) / 60.0,
        "date": datetime.fromtimestamp(finished, timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_changes": uncommitted,
        "machine": machine_info(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RECORD_NAME).write_text(json.dumps(demo, indent=1) + "\n")
    picture = Image.open(picture_path).convert("RGB")
    if picture.width > PICTURE_MAX_WIDTH:
        picture = picture.resize(
            (PICTURE_MAX_WIDTH, round(picture.height * PICTURE_MAX_WIDTH / picture.width))
        )
    picture.save(out_dir / PICTURE_NAME, quality=85)
    return demo


def draw_batch(data_root: Path, out_dir: Path = DEMO_DIR, seed: int = 0) -> Path:
    """:data:`BATCH_NAME`: the first training batch of the arena at ``data_root`` under the augmentation keys of
    :data:`BATCH_RECIPE` (the rest of the data settings from ``arena_cpu``), drawn by :func:`detector.visualize.batch_grid`."""
    import torch

    from detector.config import load_config
    from detector.data.collate import collate
    from detector.loaders import build_dataset, seed_everything
    from detector.visualize import save_batch_grid

    recipe = load_config(BATCH_RECIPE).data
    overrides = [f"data.{key}={getattr(recipe, key)}" for key in AUGMENTATION_KEYS]
    data = load_config("arena_cpu", [*overrides, f"data.root={data_root}", "data.arena=null"]).data
    seed_everything(seed)
    dataset = build_dataset(data, data.train_split, train=True)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[: data.batch_size]
    images, targets = collate([dataset[int(index)] for index in order])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / BATCH_NAME
    save_batch_grid(path, images, targets, dataset.class_names)
    return path


def _describe_seeds(seeds: Sequence[dict[str, Any]]) -> str:
    """``Seeds 0, 1, 2: mAP a / b / c, mAP50 d / e / f.`` (:func:`record`'s ``seeds``)."""
    names = ", ".join(str(run["seed"]) for run in seeds)
    maps = " / ".join(f"{run['map']:.3f}" for run in seeds)
    maps_50 = " / ".join(f"{run['map_50']:.3f}" for run in seeds)
    return f"Seeds {names}: mAP {maps}, mAP50 {maps_50}."


def render_markdown(demo_dir: Path = DEMO_DIR, picture_uri: str = f"assets/demo/{PICTURE_NAME}") -> str:
    """The landing page's picture and caption from ``record.json``, or :data:`NO_RECORD` when there is none."""
    from benchmarks.report import describe_machine
    from detector.config import ConfigError, config_fingerprint, load_config

    path = demo_dir / RECORD_NAME
    if not path.is_file():
        return NO_RECORD
    demo = json.loads(path.read_text())
    config = demo["config"]
    start = "from scratch" if config["pretrained"] is None else "pretrained"
    per_class = ", ".join(f"{name} {ap:.2f}" for name, ap in demo["per_class_ap50"].items())
    if demo["commit"] is None:
        trained_at = "trained outside a git checkout (commit unknown)"
    else:
        changes = " plus uncommitted changes" if demo["uncommitted_changes"] else ""
        trained_at = f"trained at commit `{demo['commit']}`{changes}"
    seeds = demo.get("seeds", [])
    spread = f" {_describe_seeds(seeds)}" if len(seeds) > 1 else ""
    try:
        stale = config_fingerprint(load_config(demo["run"])) != demo["config_fingerprint"]
    except ConfigError:  # the config is no longer shipped at all
        stale = True
    warning = (
        f'!!! warning "Stale: rerun `make train` and `make record-demo`"\n    These figures were measured with a '
        f"`{demo['run']}` config that differs from the one shipped now.\n\n"
    )
    return (warning if stale else "") + (
        f"![The trained detector on validation images]({picture_uri})\n\n"
        f"*The assembled detector after `make train` (config `{demo['run']}`): {config['backbone']} {start}, "
        f"{config['image_size']} px, {demo['step']} steps in {demo['train_minutes']:.1f} minutes of training — "
        f"validation **mAP {demo['map']:.2f}, mAP50 {demo['map_50']:.2f}** (AP50 per class: {per_class}).{spread} "
        f"Ground truth dashed green, predictions coloured by class. Measured {demo['date'][:10]} on "
        f"{describe_machine(demo['machine'])}; {trained_at}.*"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="task", required=True)
    rec = sub.add_parser("record", help="keep a finished run's figures and picture for the landing page")
    rec.add_argument("run_dir", nargs="?", type=Path, default=REPO_ROOT / "runs" / "arena_cpu",
                     help="the finished run to picture (default: runs/arena_cpu)")  # fmt: skip
    rec.add_argument(
        "other_seeds", nargs="*", type=Path, help="finished runs of the same config, other seeds"
    )
    batch = sub.add_parser("batch", help=f"draw {BATCH_NAME}: an augmented training batch of the arena")
    batch.add_argument("data_root", nargs="?", type=Path, default=REPO_ROOT / "data" / "arena")
    args = parser.parse_args(argv)
    if args.task == "batch":
        print(f"wrote {draw_batch(args.data_root)}")
        return 0
    try:
        demo = record(args.run_dir, other_seeds=args.other_seeds)
    except (FileNotFoundError, ValueError, KeyError) as error:
        print(f"course.demo: error: {error}", file=sys.stderr)
        return 1
    print(f"recorded {args.run_dir}: mAP {demo['map']:.4f}, mAP50 {demo['map_50']:.4f} into {DEMO_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
