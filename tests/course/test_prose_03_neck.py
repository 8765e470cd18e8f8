"""Chapter 3's prose against the code: C5's depth and receptive field, and the 330-pixel example."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course.exercises import load_exercises
from course.paths import REPO_ROOT, SOLUTIONS_DIR
from detector.model import Backbone

NOTEBOOK = SOLUTIONS_DIR / "03_neck.py"
TEXT = NOTEBOOK.read_text()


def test_depth_and_receptive_field_of_c5():
    notebook = load_exercises(NOTEBOOK)
    depths = {}
    for name in ("resnet18", "resnet50"):
        layers = notebook.main_path_layers(Backbone(name, out_indices=(2, 3, 4)).model)
        depths[name] = sum(isinstance(layer, torch.nn.Conv2d) for layer in layers)
        if name == "resnet18":
            field = notebook.receptive_field(layers)
    assert "ResNet-18's C5 is 17 convs deep" in TEXT and depths["resnet18"] == 17, depths
    assert "ResNet-50's, 49)" in TEXT and depths["resnet50"] == 49, depths
    assert "a receptive field larger than the whole 320-pixel input" in TEXT and field > 320, field


def test_the_330_pixel_example():
    backbone = Backbone("resnet18", out_indices=(2, 3, 4)).eval()
    with torch.no_grad():
        sizes = [f.shape[-1] for f in backbone(torch.zeros(1, 3, 330, 330))]
    covered = [size * stride for size, stride in zip(sizes, backbone.strides, strict=True)]
    assert covered == [336, 336, 352], covered
    assert "P3 covers 336 pixels, P4 336, P5 352" in TEXT
    assert "11 cells of stride 32 cover 352 pixels" in TEXT and sizes[-1] == 11
    assert "(10 + 0.5) · 32 = 336` lies outside the 330-pixel image" in TEXT


def test_nearest_resizing_pairs_fine_cell_k_with_coarse_cell_k_over_2():
    """The claim that replaced the false "misalignment" bullet, for every size the prose names."""
    assert "that is `⌊k / 2⌋` for every `k`" in TEXT and "misalignment" not in TEXT
    for fine in range(1, 513):
        index = torch.arange(math.ceil(fine / 2), dtype=torch.float32).view(1, 1, 1, -1)
        source = F.interpolate(index, size=(1, fine), mode="nearest")[0, 0, 0]
        assert torch.equal(source, torch.arange(fine) // 2), fine


def test_no_config_number_for_the_neck_width():
    for path in (NOTEBOOK, REPO_ROOT / "detector" / "model" / "neck.py"):
        text = path.read_text()
        for stale in ("256 for the halo recipe", "96 for the CPU demo", "50+ layers"):
            assert stale not in text, f"{path.name} states {stale!r}: read the width from the config"
