"""Chapter 9's prose against the code: "follows pycocotools exactly" is tested, constants are the package's."""

from __future__ import annotations

import contextlib
import inspect
import io

import torch

from course.paths import SOLUTIONS_DIR
from detector.metrics import coco_map
from detector.model import Detector

TEXT = (SOLUTIONS_DIR / "09_evaluation.py").read_text()


def _pycocotools(predictions: list[dict], targets: list[dict]) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    gts = [dict(id=j + 1, image_id=1, category_id=1, bbox=xywh(b), area=xywh(b)[2] * xywh(b)[3], iscrowd=int(c))
           for j, (b, c) in enumerate(zip(targets[0]["boxes"].tolist(), targets[0]["iscrowd"].tolist(), strict=True))]  # fmt: skip
    dts = [dict(image_id=1, category_id=1, bbox=xywh(b), score=s)
           for b, s in zip(predictions[0]["boxes"].tolist(), predictions[0]["scores"].tolist(), strict=True)]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dict(images=[dict(id=1)], annotations=gts, categories=[dict(id=1)])
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dts), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def test_the_package_coco_map_equals_pycocotools_on_exact_ties_and_crowds():
    """The prose says the package follows pycocotools exactly, crowd regions and exact IoU ties included."""
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 24.0, 10.0], [16.0, 0.0, 40.0, 10.0], [100.0, 0.0, 300.0, 100.0],
                                       [310.0, 0.0, 350.0, 60.0]]),
                "labels": torch.zeros(4, dtype=torch.int64), "iscrowd": torch.tensor([0, 0, 1, 0])}]  # fmt: skip
    boxes = [[0.0, 0.0, 40.0, 10.0], [0.0, 0.0, 22.0, 10.0], *([110.0 + 40 * i, 10.0, 140.0 + 40 * i, 70.0] for i in range(4)),
             [312.0, 0.0, 350.0, 60.0]]  # fmt: skip
    predictions = [{"boxes": torch.tensor(boxes), "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]),
                    "labels": torch.zeros(7, dtype=torch.int64)}]  # fmt: skip
    ours = coco_map(predictions, targets)
    reference = _pycocotools(predictions, targets)
    assert ours["map_50"] == 1.0  # the tie went to the later GT: both tied GTs found
    for index, key in enumerate(("map", "map_50", "map_75", "map_small", "map_medium", "map_large")):
        assert abs(ours[key] - reference[index]) < 1e-6, (key, ours[key], reference[index])


def test_the_postprocessing_the_prose_names_are_the_predict_arguments():
    parameters = inspect.signature(Detector.predict).parameters
    for name in ("score_thresh", "pre_nms_topk", "max_det"):
        assert name in parameters and f"`{name}`" in TEXT


def test_no_stale_numbers():
    for stale in ("60 validation images", "~0.2 s", "~1.8 s", "about 90 seconds", "top 1000 pairs"):
        assert stale not in TEXT, f"chapter 9 still says {stale!r}"


def test_one_hit_at_half_recall_has_ap_51_over_101_as_the_prose_says():
    from course.reference import ch09

    assert "$51/101 \\approx\n# 0.505$" in TEXT
    one_hit = ch09.interpolated_ap(
        torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    )
    assert one_hit == 51 / 101


def test_the_reference_figures_envelope_is_the_best_precision_at_or_beyond_each_rank():
    from course.reference import ch09

    precision = torch.tensor([1.0, 0.5, 0.67, 0.5, 0.6], dtype=torch.float64)
    assert ch09.monotone_envelope(precision).tolist() == [1.0, 0.67, 0.67, 0.6, 0.6]
