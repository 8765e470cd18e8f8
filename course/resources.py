"""Resources the chapters share: the device and a small arena data set sized for 2 CPU cores.

Learners on a GPU get bigger settings automatically (:func:`scaled`), never a different code path.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from course.paths import DATA_DIR

# The course's arena: small enough to generate in seconds and to train on for a minute on 2 CPU cores.
COURSE_ARENA = dict(n_train=240, n_valid=60, n_test=60, image_size=320, seed=0)


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def scaled(cpu_value: int, gpu_value: int) -> int:
    """A size knob (steps, images, batch) that grows on a GPU."""
    return gpu_value if torch.cuda.is_available() else cpu_value


def arena_dir() -> Path:
    """The course's arena data set (a Roboflow-style export), generated on first use."""
    from detector.data import ensure_arena

    root = DATA_DIR / "arena_course"
    ensure_arena(root, **COURSE_ARENA)
    return root


# ---------------------------------------------------------------------------------------------------------------
# The course's trained detector (Chapters 8–10).
#
# Chapter 8 trains the demo model (the `arena_cpu` config) with the package's Runner within the budget
# `train.max_minutes` of COURSE_TRAIN_OVERRIDES, on the course arena; Chapters 9 and 10 evaluate and dissect it.
# The run is cached in data/course_detector.pt so that only the first notebook that needs it pays for the
# training, and the cache is keyed by everything that shapes the model (recipe_key: the resolved config, the
# course arena, the overrides, COURSE_DETECTOR_FORMAT), so changing any of them retrains it. After so few steps it
# is a weak model (it finds the large bodies, few heads) — which makes its errors worth studying. A better model
# from `make train` (runs/*/best.pt) is preferred by trained_detector() when one exists.

COURSE_DETECTOR_FILE = DATA_DIR / "course_detector.pt"
RUNS_DIR = DATA_DIR.parent / "runs"
# Bump COURSE_DETECTOR_FORMAT when what the cache file holds, or how the run is made beyond its config (e.g. the
# Runner subclass below), changes: cache files of another format are retrained. Config changes need no bump.
COURSE_DETECTOR_FORMAT = 3  # 3: the budget re-plans keep the cosine progress
# Train-config overrides of the course run. Warmup and EMA ramp are short because the whole run is ~100 steps;
# max_minutes makes the Runner shrink its plan (and its cosine) to what fits on a slow or busy machine; every
# epoch is evaluated (Chapter 8 plots the validation mAP of each).
COURSE_TRAIN_OVERRIDES = (
    "data.batch_size=8",
    "data.workers=0",
    "train.eval_every=1",
    "train.warmup_steps=20",
    "train.ema_decay=0.99",
    "train.ema_warmup_steps=20",
    "train.max_minutes=1.75",
)
# A make-train run is preferred over the course run when its best validation mAP reaches this (the course
# run's is far below; a run stopped after its first epoch is not).
MIN_PREFERRED_RUN_MAP = 0.1


class CourseRun(NamedTuple):
    """A trained detector and the record of its training.

    model: the EMA weights in eval mode, on the CPU. class_names: ``C`` names. config: its ``Config``.
    history: one dict per epoch (train loss means ``loss/cls/box/obj``, ``lr``, and ``val_map``, ``val_map_50``
    of the EMA weights; for the course run also ``val_raw_map``, ``val_raw_map_50`` of the raw weights).
    step_log: one dict per optimiser step (``loss``, ``cls``, ``box``, ``obj``, ``grad_norm``, ``lr``).
    seconds: training wall time (0 when unknown). source: where the weights come from.
    schedule: the learning-rate plan as laid out at the end (``total_steps``, ``warmup_steps``, ``min_lr_ratio``;
    ``train.max_minutes`` may have shortened it).
    """

    model: Any
    class_names: list[str]
    config: Any
    history: list[dict[str, Any]]
    step_log: list[dict[str, float]]
    seconds: float
    source: str
    schedule: dict[str, Any]


def course_training_config(out_dir: str | Path, data_root: str | Path | None = None) -> Any:
    """The course run's config: `arena_cpu` on the course arena (``data_root``, default :func:`arena_dir`, which
    generates it on first use), epochs from :func:`scaled`, checkpoints into ``out_dir``."""
    from detector.config import load_config

    overrides = [
        "name=course_detector",
        f"data.root={arena_dir() if data_root is None else data_root}",
        "data.arena=null",
        *COURSE_TRAIN_OVERRIDES,
        f"train.epochs={scaled(3, 12)}",
        f"train.out_dir={out_dir}",
    ]
    return load_config("arena_cpu", overrides)


def recipe_key(config: Any) -> str:
    """A hash of everything that shapes the course detector: the resolved ``config`` (model, loss, data, training;
    without the folders, which differ between machines), the course arena, the overrides and the cache format."""
    resolved = config.to_dict()
    resolved["data"]["root"] = resolved["train"]["out_dir"] = None  # where, not what
    recipe = {"format": COURSE_DETECTOR_FORMAT, "config": resolved, "arena": COURSE_ARENA,
              "overrides": COURSE_TRAIN_OVERRIDES}  # fmt: skip
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def _recipe() -> dict[str, Any]:
    """What a cache file must match to be reused: the format and the recipe key of today's course config."""
    return {"format": COURSE_DETECTOR_FORMAT, "key": recipe_key(course_training_config(out_dir="."))}


def _train_course_detector(path: Path) -> None:
    """Train with the package's Runner (EMA and raw weights evaluated each epoch) and cache the result."""
    import tempfile
    import time

    from detector.checkpoint import save_checkpoint
    from detector.engine import Runner

    class EmaAndRawRunner(Runner):
        """The Runner, evaluating the raw weights too (keys ``raw_*``), for Chapter 8's EMA-vs-raw figure."""

        def evaluate(self, model: Any = None) -> dict[str, Any]:
            metrics = super().evaluate(model)
            if model is None and self.ema is not None:
                raw = super().evaluate(self.model)
                metrics.update({f"raw_{key}": raw[key] for key in ("map", "map_50")})
            return metrics

    with tempfile.TemporaryDirectory(prefix="course_detector_") as out_dir:
        config = course_training_config(out_dir)
        start = time.monotonic()
        runner = EmaAndRawRunner(config)
        runner.fit()
        seconds = time.monotonic() - start
    state = {
        "recipe": {"format": COURSE_DETECTOR_FORMAT, "key": recipe_key(config)},
        "config": config.to_dict(),
        "class_names": runner.class_names,
        "model": runner.ema.module.state_dict(),  # the EMA weights, as detector.inference.load_detector expects
        "ema": None,
        "history": runner.history,
        "step_log": runner.step_log,
        "seconds": seconds,
        "schedule": vars(runner.schedule).copy(),  # WarmupCosine's plan, after any re-planning
    }
    save_checkpoint(state, path)  # atomic: a temp file renamed over the target


def _load_run(path: Path, source: str) -> CourseRun:
    """A :class:`CourseRun` from a cache file or a make-train checkpoint (raises on anything unusable)."""
    from detector.checkpoint import load_checkpoint
    from detector.config import config_from_dict
    from detector.model import build_detector
    from detector.runlog import read_step_log

    state = load_checkpoint(path)
    if "step_log" not in state:  # a make-train best.pt: its per-step log is the run directory's steps.jsonl
        state["step_log"] = read_step_log(path.parent)
    config = config_from_dict(state["config"], source=str(path))
    class_names = list(state["class_names"])
    model = build_detector(config.model, len(class_names))
    model.load_state_dict(state["ema"]["module"] if state.get("ema") else state["model"])
    train = config.train
    schedule = state.get("schedule") or {"total_steps": train.epochs * len(state["step_log"]) // max(1, len(state["history"])),
                                         "warmup_steps": train.warmup_steps, "min_lr_ratio": train.min_lr_ratio}  # fmt: skip
    return CourseRun(model.eval(), class_names, config, list(state["history"]), list(state["step_log"]),
                     float(state.get("seconds", 0.0)), source, dict(schedule))  # fmt: skip


def _warn_if_cut_short(run: CourseRun) -> CourseRun:
    """Say so when ``train.max_minutes`` stopped the run before half its plan (a slow or busy machine)."""
    planned = int(run.schedule.get("total_steps", 0))
    if len(run.step_log) < planned / 2:
        print(f"note: the course run did {len(run.step_log)} of {planned} planned steps before its "
              f"train.max_minutes budget ran out (a slow or busy machine), so the model is weaker than intended; "
              f"delete {COURSE_DETECTOR_FILE} to train it again on a quieter machine")  # fmt: skip
    return run


def course_run(retrain: bool = False) -> CourseRun:
    """The course's short training run (Chapter 8), loaded from ``data/course_detector.pt`` or trained now.

    A missing, unreadable, or stale cache file (another config, arena, override or format: :func:`recipe_key`;
    another model code) is (re)trained within the run's ``train.max_minutes``; the file is written atomically.
    """
    path = COURSE_DETECTOR_FILE
    if not retrain and path.exists():
        try:
            from detector.checkpoint import load_checkpoint

            if load_checkpoint(path).get("recipe") == _recipe():
                return _warn_if_cut_short(_load_run(path, f"cached course run ({path.name})"))
            print(f"{path} was made by another recipe: retraining")
        except (ValueError, KeyError, RuntimeError, TypeError) as error:
            print(f"{path} is unusable ({type(error).__name__}: {str(error)[:200]}): retraining")
    budget = course_training_config(out_dir=".").train.max_minutes
    print(f"training the course detector with detector.engine.Runner (train.max_minutes = {budget}) ...")
    _train_course_detector(path)
    return _warn_if_cut_short(_load_run(path, "course run, trained now"))


def _best_make_train_run() -> Path | None:
    """The best ``runs/*/best.pt`` trained on the arena classes at 320 px, if one is good enough."""
    import torch

    from detector.data import ARENA_CLASSES

    best, best_map = None, MIN_PREFERRED_RUN_MAP
    for path in sorted(RUNS_DIR.glob("*/best.pt")):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            fits = (
                list(state["class_names"]) == list(ARENA_CLASSES)
                and state["config"]["data"]["image_size"] == 320
            )
            score = float(state["best_map"])
        except Exception:  # noqa: BLE001 - a foreign, damaged or half-written file is simply not a candidate
            continue
        if fits and score > best_map:
            best, best_map = path, score
    return best


def trained_detector() -> CourseRun:
    """The best trained arena detector at hand: a ``make train`` run when present, else the course run."""
    path = _best_make_train_run()
    if path is not None:
        try:
            return _load_run(path, f"make train run ({path.relative_to(RUNS_DIR.parent)})")
        except (ValueError, KeyError, RuntimeError, TypeError) as error:
            print(f"{path} could not be loaded ({type(error).__name__}): using the course run")
    return course_run()
