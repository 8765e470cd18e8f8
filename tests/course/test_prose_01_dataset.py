"""Chapter 1's prose against the data and the demo config: the small-object claims it makes."""

from __future__ import annotations

import json
import math

from course.paths import SOLUTIONS_DIR
from course.resources import arena_dir
from detector.config import load_config
from detector.model import Backbone

TEXT = (SOLUTIONS_DIR / "01_dataset.py").read_text()


def head_sides() -> list[float]:
    """Sides sqrt(w·h) of the heads of the course arena's training split."""
    coco = json.loads((arena_dir() / "train" / "_annotations.coco.json").read_text())
    heads = {c["id"] for c in coco["categories"] if "head" in c["name"]}
    return [math.sqrt(a["bbox"][2] * a["bbox"][3]) for a in coco["annotations"] if a["category_id"] in heads]


def test_many_arena_heads_are_under_8_pixels_and_the_demo_has_a_stride_4_level():
    sides = head_sides()
    share = sum(side < 8 for side in sides) / len(sides)
    assert "Many arena heads are under 8 pixels" in TEXT
    assert share > 0.3, (
        f"solutions/01_dataset.py says many heads are under 8 px; the course arena has {share:.0%}"
    )
    backbone_text = (SOLUTIONS_DIR / "02_backbone.py").read_text()
    assert "about half of its heads are that small" in backbone_text
    assert 0.35 < share < 0.65, (
        f"solutions/02_backbone.py says about half of the heads are under 8 px: {share:.0%}"
    )
    model = load_config("arena_cpu").model
    strides = Backbone(model.backbone, out_indices=model.out_indices).strides
    assert "adds a stride-4 level" in TEXT
    assert 4 in strides, (
        f"solutions/01_dataset.py (answer 2) says the demo adds stride 4; arena_cpu has {strides}"
    )


def test_no_stale_numbers():
    for stale in (
        "2048 × 1371",
        "12 piece classes",
        "finest level has a stride of 8",
        "'bishop' has a single box",
    ):
        assert stale not in TEXT, f"solutions/01_dataset.py states {stale!r}: print it from the data instead"
