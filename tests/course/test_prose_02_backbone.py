"""Chapter 2's prose against the code: the demo's strides and where the compute and the memory sit."""

from __future__ import annotations

from course.exercises import load_exercises
from course.paths import SOLUTIONS_DIR
from detector.config import load_config
from detector.model import Backbone

NOTEBOOK = SOLUTIONS_DIR / "02_backbone.py"
TEXT = NOTEBOOK.read_text()


def test_the_demo_strides_stated_in_the_prose_are_the_config():
    model = load_config("arena_cpu").model
    strides = Backbone(model.backbone, out_indices=model.out_indices).strides
    assert "takes strides 4/8/16 and leaves stride 32 out" in TEXT
    assert strides == [4, 8, 16], (
        f"arena_cpu now has strides {strides}: update the stride story of solutions/02_backbone.py (and chapters "
        "1, 3 and 5, which refer to it)"
    )


def test_compute_is_flat_over_the_stages_and_activation_memory_sits_early():
    notebook = load_exercises(NOTEBOOK)
    model, _, _ = notebook.create_backbone("resnet18", (1, 2, 3, 4))
    macs, activations = notebook.cost_per_stage(model)
    assert "the compute is spread about evenly over a ResNet's" in TEXT
    assert max(macs[1:]) / min(macs[1:]) < 1.25, f"per-stage multiply-adds {macs} are not roughly flat"
    assert "the activation memory sits in the first" in TEXT
    assert activations[0] + activations[1] > 0.5 * sum(activations), f"activations per stage {activations}"


def test_no_stale_claims():
    for stale in (
        "the compute sits in the first",
        "— silently",
        "and leaves stride 4 out: it would quadruple",
    ):
        assert stale not in TEXT, f"solutions/02_backbone.py still says {stale!r}"
