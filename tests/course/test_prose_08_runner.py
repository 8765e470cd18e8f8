"""Chapter 8's prose against the code: the numbers it states and the schedule it teaches."""

from __future__ import annotations

import re

import pytest
import torch

from course.exercises import load_exercises
from course.paths import SOLUTIONS_DIR
from detector.config import load_config
from detector.schedule import WarmupCosine

NOTEBOOK = SOLUTIONS_DIR / "08_runner.py"
TEXT = NOTEBOOK.read_text()


def test_the_exercise_schedule_is_the_package_schedule_at_every_step_of_the_demo_plan():
    """Exercise 8.2's reference solution and ``detector.schedule.WarmupCosine`` define the same formula."""
    warmup_cosine = load_exercises(NOTEBOOK).warmup_cosine
    train, data = load_config("arena_cpu").train, load_config("arena_cpu").data
    total = train.epochs * (data.arena.n_train // data.batch_size)
    for plan in (
        (total, train.warmup_steps, train.min_lr_ratio),
        (total, 0, 0.0),
        (17, 16, 0.3),
        (1, 0, 0.5),
    ):
        package = WarmupCosine(*plan)
        mismatches = [s for s in range(plan[0]) if abs(warmup_cosine(s, *plan) - package(s)) > 1e-12]
        assert not mismatches, f"plan {plan}: the exercise and the package differ at steps {mismatches[:5]}"


def test_the_schedule_formula_in_the_prose_is_the_one_of_the_code():
    assert r"\dfrac{s - W}{T - 1 - W}" in TEXT and r"\dfrac{s + 1}{W}" in TEXT
    assert "T - 1 - W" in (SOLUTIONS_DIR.parent / "detector" / "schedule.py").read_text()


def test_the_overfit_steps_in_the_prose_are_the_code():
    cpu, gpu = map(int, re.search(r"scaled\((\d+), (\d+)\)\)\]", TEXT).groups())
    assert f"`scaled` gives {cpu} steps, {gpu} on a GPU" in TEXT


def test_the_resume_proof_in_the_prose_is_the_code():
    assert "trained for 8 steps straight, and the same\n# run interrupted after 4 steps" in TEXT
    assert "straight = tiny_run(8)" in TEXT and "stop_at=4" in TEXT


def test_no_stale_numbers_of_the_old_demo():
    for stale in ("12 M parameters", "1500 steps", "10 epochs", "about 100 s", "Goyal et al. 2017)"):
        assert stale not in TEXT, f"chapter 8 still says {stale!r}"


def test_the_course_runs_ema_spans_most_of_its_run_as_the_answer_says():
    """Open question 2's answer: on a CPU the course run's EMA decay averages over most of its short run."""
    from course.resources import COURSE_ARENA, course_training_config

    if torch.cuda.is_available():
        pytest.skip("the answer speaks of the CPU plan; `scaled` plans more epochs on a GPU")

    config = course_training_config(out_dir=".", data_root="data/unused")
    span = 1 / (1 - config.train.ema_decay)
    planned = config.train.epochs * (COURSE_ARENA["n_train"] // config.data.batch_size)
    assert planned / 2 <= span <= 2 * planned, (span, planned)
