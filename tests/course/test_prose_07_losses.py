"""Chapter 7's prose against the code: minima, limits and defaults it states must be what the code computes."""

from __future__ import annotations

import math
import typing

import torch
from torchvision.ops import sigmoid_focal_loss

from course.exercises import load_exercises
from course.paths import SOLUTIONS_DIR
from detector.config import LossConfig, load_config
from detector.losses import QFL_BETA

PATH = SOLUTIONS_DIR / "07_losses.py"
SOURCE = PATH.read_text()
PROSE = "\n".join(line for line in SOURCE.splitlines() if line.startswith("#"))


def _focal_minimum(target: float) -> float:
    p = torch.linspace(1e-4, 1 - 1e-4, 99_999, dtype=torch.float64)
    loss = sigmoid_focal_loss(torch.logit(p), torch.full_like(p, target), alpha=0.25, gamma=2.0)
    return float(p[loss.argmin()])


def test_the_stated_focal_minima_are_computed_ones():
    for target in (0.3, 0.7):
        assert f"p \\approx {_focal_minimum(target):.2f}$" in PROSE, (target, _focal_minimum(target))


def test_the_stated_float32_limit_of_log_sigmoid():
    x = torch.linspace(-120.0, -80.0, 400_001)
    first_inf = float(x[torch.isinf(torch.log(torch.sigmoid(x)))].max())
    limit = math.log(torch.finfo(torch.float32).max)
    assert abs(first_inf + limit) < 0.01, (first_inf, limit)
    assert f"e^{{{limit:.2f}}}" in PROSE
    assert "104" not in PROSE


def test_constants_of_the_prose_are_the_package_defaults():
    notebook = load_exercises(PATH)
    defaults = LossConfig()
    assert (defaults.focal_alpha, defaults.focal_gamma) == (notebook.FOCAL_ALPHA, notebook.FOCAL_GAMMA)
    assert QFL_BETA == 2.0 and "\\qquad \\beta = 2," in PROSE
    assert defaults.box == "diou" and load_config("arena_cpu").loss.box == "diou", (
        "the prose calls DIoU the default"
    )


def test_every_classification_loss_option_is_named():
    options = typing.get_args(typing.get_type_hints(LossConfig)["cls"])
    for option in options:
        assert f"`{option}`" in PROSE, f"loss.cls option {option!r} is not named in chapter 7"


def test_the_normalisation_example_factor():
    well, poor = 10 * 0.8, max(1.0, 10 * 0.1)
    assert f"{well / poor:.0f} times the weight" in PROSE
