"""CocoDetection on small hand-written exports (every kind of bad input) and on the real chess export."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from detector.data import CocoDetection, eval_transforms
from detector.data.coco import ANNOTATIONS_FILE, category_mapping
from detector.errors import DataError

CHESS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "chess-pieces"

# Roboflow-style categories: placeholder 0 is the supercategory of the others; ids are not contiguous.
CATEGORIES = [
    {"id": 0, "name": "things", "supercategory": "none"},
    {"id": 3, "name": "cat", "supercategory": "things"},
    {"id": 7, "name": "dog", "supercategory": "things"},
    {"id": 9, "name": "emu", "supercategory": "things"},  # no boxes in this split: keeps label 2
]


def write_export(folder: Path, images: list[dict], annotations: list[dict], categories=CATEGORIES) -> Path:
    """Write PNG images (random pixels, sizes from the records) and the COCO JSON into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for record in images:
        pixels = rng.integers(0, 256, (record["height"], record["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / record["file_name"])
    data = {
        "info": {},
        "licenses": [],
        "categories": categories,
        "images": images,
        "annotations": annotations,
    }
    (folder / ANNOTATIONS_FILE).write_text(json.dumps(data))
    return folder


def image(i: int, w: int = 40, h: int = 30) -> dict:
    return {"id": i, "file_name": f"img{i}_jpg.rf.abc{i}.png", "width": w, "height": h}


def ann(i: int, image_id: int, category_id: int, bbox: list[float]) -> dict:
    return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "area": 0, "iscrowd": 0}


def test_sample_format_labels_and_boxes(tmp_path):
    folder = write_export(
        tmp_path,
        [image(10), image(11)],
        [ann(1, 10, 7, [1, 2, 10, 5]), ann(2, 10, 3, [0, 0, 40, 30]), ann(3, 11, 7, [5.5, 6.5, 2, 3])],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean export warns about nothing
        ds = CocoDetection(folder)
    assert ds.class_names == ["cat", "dog", "emu"]
    assert ds.report.placeholder == "things"
    assert len(ds) == 2
    img, target = ds[0]
    reference = np.array(Image.open(folder / "img10_jpg.rf.abc10.png"))
    assert img.dtype == torch.uint8 and img.shape == (3, 30, 40)
    assert torch.equal(img, torch.from_numpy(reference).permute(2, 0, 1))
    assert target["image_id"] == 10
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    torch.testing.assert_close(target["boxes"], torch.tensor([[1.0, 2.0, 11.0, 7.0], [0.0, 0.0, 40.0, 30.0]]))
    assert target["labels"].tolist() == [1, 0]
    torch.testing.assert_close(ds[1][1]["boxes"], torch.tensor([[5.5, 6.5, 7.5, 9.5]]))


def test_placeholder_detection_rules():
    names, mapping, placeholder = category_mapping(CATEGORIES)
    assert (names, mapping, placeholder) == (["cat", "dog", "emu"], {3: 0, 7: 1, 9: 2}, "things")
    plain = [{"id": 1, "name": "a", "supercategory": "x"}, {"id": 2, "name": "b", "supercategory": "y"}]
    assert category_mapping(plain) == (["a", "b"], {1: 0, 2: 1}, None)


def test_images_without_boxes_are_negatives(tmp_path):
    ds = CocoDetection(write_export(tmp_path, [image(0), image(1)], [ann(0, 1, 3, [1, 1, 5, 5])]))
    _, target = ds[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert ds.report.num_negatives == 1 and ds.report.num_boxes == 1


def test_missing_image_file_names_the_file(tmp_path):
    folder = write_export(tmp_path, [image(0), image(1)], [])
    (folder / "img1_jpg.rf.abc1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"img1_jpg\.rf\.abc1\.png \(image id 1\)"):
        CocoDetection(folder)


def test_corrupt_image_names_the_file(tmp_path):
    folder = write_export(tmp_path, [image(0)], [])
    (folder / "img0_jpg.rf.abc0.png").write_bytes(b"\x89PNG not really an image")
    with pytest.raises(DataError, match=r"img0_jpg\.rf\.abc0\.png \(image id 0\) is not a readable image"):
        CocoDetection(folder)  # the header scan at construction finds it


def test_size_differs_from_annotation(tmp_path):
    folder = write_export(tmp_path, [image(0)], [])
    Image.new("RGB", (20, 20)).save(folder / "img0_jpg.rf.abc0.png")
    with pytest.raises(
        DataError,
        match=r"1 images differ in size.*abc0\.png \(image id 0\): file \(20, 20\), record \(40, 30\)",
    ):
        CocoDetection(folder)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a COCO export"),
        ('{"images": [], "annotations": []}', "not a COCO export"),
        ('{"images": [{"id": 0}], "annotations": [], "categories": []}', r"images\[0\] lacks"),
    ],
)
def test_json_that_is_not_a_coco_export(tmp_path, text, message):
    (tmp_path / ANNOTATIONS_FILE).write_text(text)
    with pytest.raises(ValueError, match=message):
        CocoDetection(tmp_path)


def test_missing_annotation_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=ANNOTATIONS_FILE):
        CocoDetection(tmp_path)


def test_unknown_image_or_category(tmp_path):
    write_export(tmp_path / "a", [image(0)], [ann(41, 5, 3, [1, 1, 2, 2])])
    with pytest.raises(ValueError, match=r"annotation id 41 points to unknown image_id 5"):
        CocoDetection(tmp_path / "a")
    write_export(tmp_path / "b", [image(0)], [ann(42, 0, 8, [1, 1, 2, 2])])
    with pytest.raises(ValueError, match=r"annotation id 42 has unknown category_id 8"):
        CocoDetection(tmp_path / "b")
    write_export(tmp_path / "c", [image(0)], [ann(43, 0, 3, [1, 1, "2", 2])])
    with pytest.raises(ValueError, match=r"annotation id 43: 'bbox' must be 4 finite numbers"):
        CocoDetection(tmp_path / "c")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["categories"].append({"id": 7, "name": "eel"}),
            r"categories share an id \(7: 'dog', 7: 'eel'\)",
        ),
        (
            lambda d: d["annotations"][0].update(iscrowd=2),
            r"annotation id 1: 'iscrowd' must be 0 or 1, got 2",
        ),
        (
            lambda d: d["annotations"][0].update(area=-4),
            r"annotation id 1: 'area' must be a number >= 0, got -4",
        ),
        (lambda d: d["images"][0].update(width="40"), r"image id 0: 'width' must be a number >= 0, got '40'"),
        (lambda d: d["images"][0].update(height=0), r"image id 0 has height 0; re-export"),
    ],
    ids=["duplicate_category_id", "iscrowd_2", "negative_area", "width_text", "height_0"],
)
def test_bad_fields_name_the_record(tmp_path, change, message):
    folder = write_export(tmp_path, [image(0)], [ann(1, 0, 3, [1, 1, 4, 4])])
    data = json.loads((folder / ANNOTATIONS_FILE).read_text())
    change(data)
    (folder / ANNOTATIONS_FILE).write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        CocoDetection(folder)


def test_iscrowd_and_area_travel_with_their_boxes(tmp_path):
    annotations = [
        ann(1, 0, 3, [-5, 10, 15, 30]) | {"area": 123.5},  # clipped: keeps the record's area
        ann(2, 0, 7, [5, 5, 0, 4]) | {"iscrowd": 1},  # degenerate: dropped with its flag
        ann(3, 0, 7, [2, 2, 30, 20]) | {"iscrowd": 1, "area": 77},
        {k: v for k, v in ann(4, 0, 9, [1, 1, 4, 2]).items() if k not in ("area", "iscrowd")},  # defaults
    ]
    with pytest.warns(
        UserWarning, match=r"; 1 of the boxes are crowd regions \(iscrowd=1, ignored\); dropped 1 degenerate"
    ):
        ds = CocoDetection(write_export(tmp_path, [image(0)], annotations))
    _, target = ds[0]
    assert target["iscrowd"].tolist() == [0, 1, 0] and target["area"].tolist() == [123.5, 77.0, 8.0]
    assert ds.report.num_crowd == 1 and target["labels"].tolist() == [0, 1, 2]


def test_boxes_outside_are_clipped_and_degenerate_dropped_with_one_warning(tmp_path):
    annotations = [
        ann(1, 0, 3, [-5, 10, 15, 30]),  # partly outside: clipped to [0, 10, 10, 30]
        ann(2, 0, 7, [30, 20, 20, 5]),  # partly outside: clipped to [30, 20, 40, 25]
        ann(3, 0, 3, [5, 5, 0, 4]),  # zero width
        ann(4, 0, 3, [5, 5, 4, -1]),  # negative height
        ann(5, 0, 3, [50, 5, 4, 4]),  # entirely outside
        ann(6, 0, 0, [1, 1, 2, 2]),  # labelled with the placeholder
        ann(7, 0, 7, [2, 2, 3, 3]),  # fine
    ]
    folder = write_export(tmp_path, [image(0)], annotations)
    with pytest.warns(UserWarning) as record:
        ds = CocoDetection(folder)
    assert len(record) == 1
    assert "dropped 2 degenerate boxes" in str(record[0].message)
    report = ds.report
    assert report.dropped == {"degenerate": [3, 4], "outside": [5], "placeholder": [6]}
    assert report.clipped == [1, 2] and report.num_dropped == 4 and report.num_boxes == 3
    _, target = ds[0]
    torch.testing.assert_close(
        target["boxes"],
        torch.tensor([[0.0, 10.0, 10.0, 30.0], [30.0, 20.0, 40.0, 25.0], [2.0, 2.0, 5.0, 5.0]]),
    )
    assert target["labels"].tolist() == [0, 1, 1]


def test_transforms_receive_bounding_boxes(tmp_path):
    folder = write_export(tmp_path, [image(0)], [ann(1, 0, 3, [1, 2, 10, 5])])
    flipped = CocoDetection(folder, transforms=v2.RandomHorizontalFlip(p=1.0))  # a plain v2 transform works
    img, target = flipped[0]
    assert type(img) is torch.Tensor and type(target["boxes"]) is torch.Tensor
    torch.testing.assert_close(target["boxes"], torch.tensor([[40.0 - 11, 2.0, 40.0 - 1, 7.0]]))
    img, target = CocoDetection(folder, transforms=eval_transforms(64))[0]
    assert img.shape == (3, 64, 64) and target["letterbox"]["orig_size"] == (30, 40)


CHESS_COUNTS = {"train": (202, 2108), "valid": (58, 386), "test": (29, 376)}  # ../shared/datasets/README.md


@pytest.mark.skipif(not CHESS.is_dir(), reason="../shared/datasets/chess-pieces is not available")
@pytest.mark.parametrize("split", sorted(CHESS_COUNTS))
def test_real_chess_export(split):
    from pycocotools.coco import COCO

    ds = CocoDetection(CHESS / split)
    assert (len(ds), ds.report.num_boxes) == CHESS_COUNTS[split]
    assert len(ds.class_names) == 13 and ds.class_names[0] == "bishop" and ds.report.placeholder == "pieces"
    assert not ds.report.dropped and not ds.report.clipped
    coco = COCO(str(CHESS / split / ANNOTATIONS_FILE))  # independent reference for per-class counts
    expected = [len(coco.getAnnIds(catIds=[cat])) for cat in range(1, 14)]
    labels = torch.cat([labels for _, labels in ds.targets])
    assert torch.bincount(labels, minlength=13).tolist() == expected
    if split == "train":  # one decode of a 2048-px photo
        img, target = ds[0]
        assert img.shape == (3, 1371, 2048) and img.dtype == torch.uint8
        assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()
