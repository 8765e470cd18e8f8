"""The YOLO peer benchmark: the label conversion is exact; with the optional ``bench`` extra, a smoke run works."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from course.paths import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import bench_yolo, report  # noqa: E402
from detector.data import CocoDetection, ensure_arena  # noqa: E402


def test_yolo_labels_are_the_coco_boxes_normalised_to_centre_and_size(tmp_path):
    root = ensure_arena(tmp_path / "arena", 3, 2, 0, 96)
    data_yaml, val = bench_yolo.write_yolo_dataset(root, tmp_path / "yolo", "train", "valid")
    train = CocoDetection(root / "train")
    assert "names:\n  0: 'enemy'" in data_yaml.read_text()
    for index, (record, file) in enumerate(zip(train.images, train.files, strict=True)):
        name = f"{index:06d}_{file.name}"
        image = tmp_path / "yolo" / "images" / "train" / name
        assert image.is_symlink() and image.resolve() == file.resolve()
        lines = (tmp_path / "yolo" / "labels" / "train" / f"{image.stem}.txt").read_text().split()
        rows = [lines[i : i + 5] for i in range(0, len(lines), 5)]
        boxes, labels = train.annotations[index]["boxes"], train.annotations[index]["labels"]
        assert len(rows) == len(boxes)
        w, h = record["width"], record["height"]
        for (label, cx, cy, bw, bh), (x0, y0, x1, y1), expected in zip(
            rows, boxes.tolist(), labels.tolist(), strict=True
        ):
            assert int(label) == expected
            assert float(cx) == pytest.approx((x0 + x1) / 2 / w, abs=1e-6)
            assert float(cy) == pytest.approx((y0 + y1) / 2 / h, abs=1e-6)
            assert float(bw) == pytest.approx((x1 - x0) / w, abs=1e-6)
            assert float(bh) == pytest.approx((y1 - y0) / h, abs=1e-6)
    assert len(val.images) == 2


def test_report_ratio_takes_the_peers_last_point_at_or_before_each_of_ours():
    curve = [{"train_seconds": 60.0, "map": 0.1}, {"train_seconds": 120.0, "map": 0.2}]
    assert report._map_at(curve, 30.0) is None
    assert report._map_at(curve, 60.0) == 0.1
    assert report._map_at(curve, 119.0) == 0.1
    assert report._map_at(curve, 500.0) == 0.2


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="the optional bench extra")
def test_smoke_run_trains_and_scores_yolov8n(tmp_path):
    record = bench_yolo.main(["--smoke", "--peers", "yolov8n", "--out", str(tmp_path / "yolo.json")])
    curve = record["contenders"]["yolov8n"]["curve"]
    assert curve and all(0.0 <= point["map"] <= 1.0 for point in curve)
    assert [p["train_seconds"] for p in curve] == sorted(p["train_seconds"] for p in curve)
