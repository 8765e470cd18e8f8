"""Chapter 4's prose against the code: the initialisation numbers it states."""

from __future__ import annotations

import math

import torch

from course.paths import SOLUTIONS_DIR
from detector.model.head import PRED_INIT_STD

TEXT = (SOLUTIONS_DIR / "04_heads.py").read_text()


def test_initialisation_numbers():
    assert "The weights start tiny (std 0.01)" in TEXT and PRED_INIT_STD == 0.01
    assert "`b = -log 99 ≈ -4.595`" in TEXT and f"{-math.log(99):.3f}" == "-4.595"


def test_softplus_instead_of_exp_because_exp_overflows_float16_above_11_1():
    assert "`exp(x)` overflows float16 for `x > 11.1`" in TEXT
    assert torch.isfinite(torch.exp(torch.tensor(11.08, dtype=torch.float16)))
    assert torch.isinf(torch.exp(torch.tensor(11.1, dtype=torch.float16)))


def test_no_stale_point_count():
    assert "= 2100` points" not in TEXT, "the point count depends on the strides: print it"
