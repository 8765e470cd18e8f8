"""Chapter 4's prose against the code: the initialisation numbers it states; no recipe shown in chapters 1, 4, 5."""

from __future__ import annotations

import math
from pathlib import Path

import jupytext
import pytest
import torch

from course.paths import CHAPTERS_DIR, SOLUTIONS_DIR
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


def _visible_text(path: Path) -> str:
    """The text of a learner's notebook that is shown unfolded: every cell but the ``answer``-tagged ones."""
    cells = jupytext.read(path).cells
    return "\n".join(c.source for c in cells if "answer" not in c.metadata.get("tags", []))


@pytest.mark.parametrize(
    ("chapter", "recipe"),
    [
        ("01_dataset", "`x2 = x + w`"),  # 1.1
        ("01_dataset", "undo the shift, then"),  # 1.4's old stub message
        ("01_dataset", "top = (64 - 32) // 2"),  # the letterbox's padding rule, in the folded worked example
        ("04_heads", "(1 - π) / π"),  # 4.1, in the folded derivation
        ("04_heads", "channels last before merging"),  # 4.2's old stub message
        ("05_decoding", "(x - l, y - t, x + r, y + b)"),  # 5.2
        ("05_decoding", "(x - x1, y - y1, x2 - x, y2 - y)"),  # 5.3
    ],
)
def test_learner_files_hold_no_recipe_outside_folded_answers(chapter, recipe):
    assert recipe not in _visible_text(CHAPTERS_DIR / f"{chapter}.py"), (
        f"chapters/{chapter}.py shows {recipe!r}, the answer to an exercise: keep the contract in words and move "
        f"the recipe to course/hints/{chapter}.yaml or a folded answer cell of solutions/{chapter}.py"
    )
