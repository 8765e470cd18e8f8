"""Chapter 6's prose against the code: the numbers it states must be the package's and the demo config's."""

from __future__ import annotations

import re

import torch

from course.paths import SOLUTIONS_DIR
from course.reference import ch06
from detector.assigner import TOOD_ALPHA, TOOD_BETA, TOOD_TOPK
from detector.config import AssignerConfig, load_config

SOURCE = (SOLUTIONS_DIR / "06_tal.py").read_text()
PROSE = "\n".join(line for line in SOURCE.splitlines() if line.startswith("#"))


def test_the_stated_tood_constants_are_the_package_and_demo_defaults():
    stated = re.search(r"\$k = (\d+)\$, \$\\alpha = ([\d.]+)\$, \$\\beta = ([\d.]+)\$", PROSE)
    assert stated, "chapter 6 no longer states TOOD's constants as '$k = …$, $\\alpha = …$, $\\beta = …$'"
    k, alpha, beta = int(stated[1]), float(stated[2]), float(stated[3])
    assert (k, alpha, beta) == (TOOD_TOPK, TOOD_ALPHA, TOOD_BETA)
    for where, config in (
        ("AssignerConfig()", AssignerConfig()),
        ("arena_cpu", load_config("arena_cpu").loss.assigner),
    ):
        assert (config.topk, config.alpha, config.beta) == (k, alpha, beta), (
            f"{where} uses topk/alpha/beta {config.topk}/{config.alpha}/{config.beta}, but chapter 6 says the package "
            f"follows TOOD's {k}/{alpha}/{beta}: update the prose of Section 4"
        )


def test_strides_and_loss_are_read_from_the_demo_config_not_typed():
    assert 'load_config("arena_cpu")' in SOURCE
    assert not re.search(r"^STRIDES = \(", SOURCE, flags=re.MULTILINE), (
        "strides must come from the demo config"
    )
    assert "demo.loss.cls" in SOURCE, "chapter 6 must print the package's classification loss from the config"
    assert not re.search(r"stride-(8|16|32) point", PROSE), (
        "the prose names a fixed stride; say it relative to the config"
    )


def test_the_worked_soft_target_example_matches_its_prose():
    targets = ch06.soft_targets(
        torch.tensor([0, 0, -1]),
        torch.tensor([[0.2, 0.1, 0.0]]),
        torch.tensor([[0.5, 0.9, 0.3]]),
        torch.tensor([1]),
        3,
    )
    first, second = float(targets[0, 1]), float(targets[1, 1])
    assert f"= {first:.1f}$" in PROSE and f"${second:.2f}$" in PROSE, (first, second)
