"""The generated arena data set: a Roboflow COCO export, deterministic, with halo-like statistics."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from detector.data import ARENA_CLASSES, CocoDetection, ensure_arena, generate_arena
from detector.data.arena import MANIFEST, PLACEHOLDER, main

SIZE = 160
ENEMY, ENEMY_HEAD, FRIENDLY, FRIENDLY_HEAD = range(4)


@pytest.fixture(scope="module")
def arena(tmp_path_factory) -> Path:
    return generate_arena(
        tmp_path_factory.mktemp("arena") / "arena", 60, 6, 4, image_size=SIZE, seed=0, workers=1
    )


def load(root: Path, split: str) -> CocoDetection:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing dropped or clipped: the generator writes clean boxes
        return CocoDetection(root / split)


def test_layout_is_a_roboflow_export(arena):
    for split, count in (("train", 60), ("valid", 6), ("test", 4)):
        data = json.loads((arena / split / "_annotations.coco.json").read_text())
        assert set(data) == {"info", "licenses", "categories", "images", "annotations"}
        assert data["categories"][0] == {"id": 0, "name": PLACEHOLDER, "supercategory": "none"}
        assert [c["name"] for c in data["categories"][1:]] == list(ARENA_CLASSES)
        assert all(c["supercategory"] == PLACEHOLDER for c in data["categories"][1:])
        assert not any(a["category_id"] == 0 for a in data["annotations"])
        assert len(data["images"]) == count and all(".jpg" in im["file_name"] for im in data["images"])
        ds = load(arena, split)
        assert ds.class_names == list(ARENA_CLASSES) and ds.report.placeholder == PLACEHOLDER
    image, target = load(arena, "train")[0]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8


def all_targets(ds: CocoDetection) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """boxes [K, 4], labels [K], image index [K] over the split."""
    boxes = torch.cat([b for b, _ in ds.targets])
    labels = torch.cat([lab for _, lab in ds.targets])
    owner = torch.cat([torch.full((len(lab),), i) for i, (_, lab) in enumerate(ds.targets)])
    return boxes, labels, owner


def test_class_imbalance_and_missing_heads(arena):
    _, labels, _ = all_targets(load(arena, "train"))
    counts = torch.bincount(labels, minlength=4).tolist()
    assert 2.0 <= counts[ENEMY] / counts[FRIENDLY] <= 5.0  # enemy ≫ friendly, about 3 : 1 like halo
    assert counts[ENEMY_HEAD] < counts[ENEMY] and counts[FRIENDLY_HEAD] < counts[FRIENDLY]  # hidden heads
    assert counts[ENEMY_HEAD] > 0.5 * counts[ENEMY]


def test_heads_nest_in_bodies_of_their_team(arena):
    boxes, labels, owner = all_targets(load(arena, "train"))
    for k in torch.nonzero(labels % 2 == 1).flatten().tolist():
        bodies = boxes[(owner == owner[k]) & (labels == labels[k] - 1)]
        inside = (bodies[:, :2] <= boxes[k, :2]).all(1) & (bodies[:, 2:] >= boxes[k, 2:]).all(1)
        assert inside.any(), f"head box {boxes[k].tolist()} is in no body box of its team"


def test_size_range(arena):
    boxes, labels, _ = all_targets(load(arena, "train"))
    heights = (boxes[:, 3] - boxes[:, 1]) / SIZE
    assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= SIZE).all()
    assert heights[labels % 2 == 1].min() < 0.03  # far heads: a few pixels at 320 px
    assert heights[labels % 2 == 0].max() > 0.25  # near figures: about a third of the frame


def test_deterministic_and_splits_independent(tmp_path):
    a = generate_arena(tmp_path / "a", 3, 2, 1, image_size=96, seed=5, workers=1)
    b = generate_arena(tmp_path / "b", 5, 2, 1, image_size=96, seed=5, workers=2)
    c = generate_arena(tmp_path / "c", 3, 2, 1, image_size=96, seed=6, workers=1)
    for split in ("valid", "test"):
        assert (a / split / "_annotations.coco.json").read_bytes() == (
            b / split / "_annotations.coco.json"
        ).read_bytes()
    data_a, data_b = (json.loads((r / "train/_annotations.coco.json").read_text()) for r in (a, b))
    assert data_a["images"] == data_b["images"][:3]
    for image in data_a["images"]:
        assert (a / "train" / image["file_name"]).read_bytes() == (
            b / "train" / image["file_name"]
        ).read_bytes()
    assert (a / "valid/_annotations.coco.json").read_bytes() != (
        c / "valid/_annotations.coco.json"
    ).read_bytes()


def test_ensure_arena_regenerates_only_when_needed(tmp_path):
    root = ensure_arena(tmp_path / "arena", 2, 1, 1, image_size=64, seed=0)
    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert ensure_arena(root, 2, 1, 1, image_size=64, seed=0) == root
    assert (root / MANIFEST).stat().st_mtime_ns == stamp
    ensure_arena(root, 3, 1, 1, image_size=64, seed=0)
    assert len(load(root, "train")) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["arena"]  # no temporary folder left behind
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="not an arena"):
        ensure_arena(tmp_path / "mine", 2, 1, 1, image_size=64)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's file"


def test_generate_into_an_existing_empty_folder(tmp_path):
    """``mkdir data && detector arena data`` must work: an empty folder holds nothing to protect."""
    (tmp_path / "empty").mkdir()
    root = generate_arena(tmp_path / "empty", 2, 1, 1, image_size=64, seed=0, workers=1)
    assert root == tmp_path / "empty"
    assert len(load(root, "train")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_command_line(tmp_path, capsys):
    argv = [str(tmp_path / "cli"), "--n-train", "2", "--n-valid", "1", "--n-test", "1", "--image-size", "64"]
    assert main(argv) == 0
    assert "train: 2 images" in capsys.readouterr().out
    assert len(load(tmp_path / "cli", "test")) == 1
