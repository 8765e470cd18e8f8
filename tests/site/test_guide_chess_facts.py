"""The package guide's chess example states facts about the data set: they are counted here from its export."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from course.paths import REPO_ROOT
from detector.config import load_config

CHESS = REPO_ROOT.parent / "shared" / "datasets" / "chess-pieces"
GUIDE = (REPO_ROOT / "site" / "guide.md").read_text()


@pytest.mark.skipif(not CHESS.is_dir(), reason="the shared chess export is only in the development checkout")
def test_the_guides_chess_numbers_are_the_exports():
    train = json.loads((CHESS / "train" / "_annotations.coco.json").read_text())
    names = {category["id"]: category["name"] for category in train["categories"]}
    boxes = Counter(names[annotation["category_id"]] for annotation in train["annotations"])
    images = sum(len(json.loads((CHESS / split / "_annotations.coco.json").read_text())["images"])
                 for split in ("train", "valid", "test"))  # fmt: skip
    sizes = {(image["width"], image["height"]) for image in train["images"]}
    assert f"{images} tripod photos of\n2048×1371 px" in GUIDE and sizes == {(2048, 1371)}
    assert f"{len(train['images'])} training photos for 12 classes" in GUIDE
    assert len([name for name, count in boxes.items() if count > 1]) == 12
    assert f"the queens rarest ({boxes['black-queen']} and {boxes['white-queen']} boxes" in GUIDE
    assert sorted(boxes.values())[1:3] == [boxes["black-queen"], boxes["white-queen"]], (
        "the queens are the rarest"
    )
    assert 470 <= boxes["black-pawn"] <= 500 and 470 <= boxes["white-pawn"] <= 500, (
        "about 480 per pawn colour"
    )
    assert boxes["bishop"] == 1 and 'a "bishop" class with a single box' in GUIDE
    size = load_config("roboflow_cpu").data.image_size
    assert f"photos shrunk from 2048 to {size} px" in GUIDE and round(2048 / size) == 5, "a fifth per side"
