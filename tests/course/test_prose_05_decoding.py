"""Chapter 5's prose against the code and the data: conventions, coverage per stride set, DFL's bins."""

from __future__ import annotations

import json

import torch

from course.exercises import load_exercises
from course.paths import SOLUTIONS_DIR
from course.resources import arena_dir
from detector.config import load_config
from detector.model import Backbone, build_detector

NOTEBOOK = SOLUTIONS_DIR / "05_decoding.py"
TEXT = NOTEBOOK.read_text()


def test_a_stride_4_level_fixes_most_of_the_unassignable_heads():
    """Section 5: with 8/16/32 a large share of heads has no point; the demo's stride-4 level fixes most of it."""
    model = load_config("arena_cpu").model
    strides = Backbone(model.backbone, out_indices=model.out_indices).strides
    coco = json.loads((arena_dir() / "train" / "_annotations.coco.json").read_text())
    heads = {c["id"] for c in coco["categories"] if "head" in c["name"]}
    boxes = torch.tensor([a["bbox"] for a in coco["annotations"] if a["category_id"] in heads])
    boxes[:, 2:] += boxes[:, :2]
    share = load_exercises(NOTEBOOK).share_without_a_point
    usual, demo = share(boxes, [8, 16, 32]), share(boxes, strides)
    assert "A stride-4 level fixes most of that" in TEXT
    assert 4 in strides and usual > 0.15 and demo < usual / 3, (strides, usual, demo)


def test_the_stride_16_level_sees_the_largest_arena_objects_whole():
    chapter_3 = load_exercises(SOLUTIONS_DIR / "03_neck.py")
    model = load_config("arena_cpu").model
    # the prose names the demo's backbone and its C4
    assert model.backbone == "resnet10t" and model.out_indices[-1] == 3, model
    c4 = Backbone(model.backbone, out_indices=model.out_indices).model
    field = chapter_3.receptive_field(chapter_3.main_path_layers(c4))
    # after C4, at stride 16: the FPN and PAN output convs, the head's tower convs, its prediction conv
    detector = build_detector(model, num_classes=4)
    after_c4 = [detector.neck.fpn_out[-1][0], detector.neck.pan_out[-1][0], *detector.head.cls_tower.convs,
                detector.head.cls_pred]  # fmt: skip
    assert all(conv.kernel_size == (3, 3) and conv.stride == (1, 1) for conv in after_c4), after_c4
    total = field + len(after_c4) * 2 * 16
    assert f"Chapter 3's formula gives {field} px for the C4 of the demo's" in TEXT and field == 103, field
    assert "the four 3×3 convs that follow it" in TEXT and len(after_c4) == 4, after_c4
    assert f"add 2 · 16 = 32 px each: {total} px" in TEXT, total
    coco = json.loads((arena_dir() / "train" / "_annotations.coco.json").read_text())
    tallest = max(a["bbox"][3] for a in coco["annotations"])
    assert "about a third of the frame" in TEXT and 0.25 * 320 < tallest < 0.4 * 320 < total, tallest


def test_the_mixed_convention_experiment_is_what_the_prose_says():
    assert "square heads of side 6 to 12 pixels" in TEXT and "head_sides = torch.arange(6, 13)" in TEXT
    coco = json.loads((arena_dir() / "train" / "_annotations.coco.json").read_text())
    heads = {c["id"] for c in coco["categories"] if "head" in c["name"]}
    sides = torch.tensor(
        [a["bbox"][2] * a["bbox"][3] for a in coco["annotations"] if a["category_id"] in heads]
    )
    quartiles = sides.sqrt().quantile(torch.tensor([0.25, 0.75])).tolist()
    assert "about the middle half of the arena's\n# head sizes" in TEXT
    assert 4.5 < quartiles[0] < 7 and 11 < quartiles[1] < 14, (
        f"head sides' quartiles {quartiles}, not ~6 and ~12"
    )
    assert (
        "stride, trials = 8, 20000" in TEXT and "Chapter 1) at random sub-pixel positions, stride 8" in TEXT
    )


def test_dfl_bins_and_no_stale_claims():
    assert "over the integers `0 … 15` (16 bins, `reg_max = 16`)" in TEXT
    for stale in ("`0 … 16` strides", "a classic slip", "2100 points in all"):
        assert stale not in TEXT, f"solutions/05_decoding.py still says {stale!r}"
