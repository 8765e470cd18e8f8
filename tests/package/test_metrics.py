"""coco_map / per_class_ap against pycocotools' COCOeval on generated cases, and hand-computed APs."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO  # the reference: in the test extra, so a missing one fails, not skips
from pycocotools.cocoeval import COCOeval

from detector.data import CocoDetection, eval_transforms
from detector.inference import _original_target
from detector.metrics import METRIC_KEYS, coco_evaluate, coco_map, per_class_ap

IMAGE_SIZE = 320.0


def reference_eval(predictions: list[dict], targets: list[dict], num_classes: int) -> COCOeval:
    """pycocotools COCOeval on the same input (xyxy -> xywh in float64, category id = label + 1)."""
    images = [{"id": i + 1, "height": int(IMAGE_SIZE), "width": int(IMAGE_SIZE)} for i in range(len(targets))]
    gts = []
    for i, target in enumerate(targets):
        boxes = np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)
        crowd = np.asarray(target.get("iscrowd", np.zeros(len(boxes))), dtype=np.int64)
        for j, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            w, h = x2 - x1, y2 - y1
            area = float(target["area"][j]) if "area" in target else w * h
            label = int(target["labels"][j])
            gts.append(
                dict(
                    id=len(gts) + 1,
                    image_id=i + 1,
                    category_id=label + 1,
                    bbox=[x1, y1, w, h],
                    area=area,
                    iscrowd=int(crowd[j]),
                )
            )
    dts = []
    for i, prediction in enumerate(predictions):
        boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
        for (x1, y1, x2, y2), score, label in zip(
            boxes.tolist(),
            np.asarray(prediction["scores"], np.float64).tolist(),
            prediction["labels"].tolist(),
            strict=True,
        ):
            dts.append(
                dict(image_id=i + 1, category_id=int(label) + 1, bbox=[x1, y1, x2 - x1, y2 - y1], score=score)
            )
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gts, "categories": categories}
        coco_gt.createIndex()
        if dts:
            coco_dt = coco_gt.loadRes(dts)
        else:  # pycocotools' loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": categories}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def random_boxes(generator: torch.Generator, count: int) -> torch.Tensor:
    """``[count, 4]`` xyxy with log-uniform sides 3..250 px: small, medium and large objects."""
    side = torch.exp(torch.empty(count, 2).uniform_(math.log(3), math.log(250), generator=generator))
    x1y1 = torch.rand(count, 2, generator=generator) * (IMAGE_SIZE - side).clamp(min=1)
    return torch.cat((x1y1, x1y1 + side), dim=1)


def random_case(seed: int) -> tuple[list[dict], list[dict], int]:
    """Varied predictions/targets: empty images, crowd GTs, classes without GT, >100 detections."""
    generator = torch.Generator().manual_seed(seed)
    randint = lambda low, high: int(torch.randint(low, high, (1,), generator=generator))
    num_classes = randint(2, 7)
    # one class (at random) never has a GT
    gt_classes = torch.randperm(num_classes, generator=generator)[: max(1, num_classes - 1)]
    with_area = seed % 2 == 1
    predictions, targets = [], []
    for image in range(randint(3, 25)):
        num_gt = 0 if image % 5 == 1 else randint(0, 12)
        boxes = random_boxes(generator, num_gt)
        labels = gt_classes[torch.randint(0, len(gt_classes), (num_gt,), generator=generator)]
        iscrowd = (torch.rand(num_gt, generator=generator) < 0.15).long()
        target = {"boxes": boxes, "labels": labels, "iscrowd": iscrowd}
        if with_area:
            area_scale = 0.5 + torch.rand(num_gt, generator=generator)  # "area" differs from w·h
            target["area"] = (boxes[:, 2:] - boxes[:, :2]).prod(1) * area_scale
        targets.append(target)

        num_dt = 0 if image % 7 == 2 else (randint(101, 160) if image % 6 == 0 else randint(0, 30))
        from_gt = torch.randint(0, max(num_gt, 1), (num_dt,), generator=generator)
        use_gt = torch.rand(num_dt, generator=generator) < (0.6 if num_gt else 0.0)
        dt_boxes = random_boxes(generator, num_dt)
        dt_labels = torch.randint(0, num_classes, (num_dt,), generator=generator)
        scores = torch.rand(num_dt, generator=generator) * 0.6
        if num_gt:  # jittered GT copies (noise ~ 10% of the side), mostly of the right class, higher scores
            source = boxes[from_gt]
            sides = (source[:, 2:] - source[:, :2]).repeat(1, 2)
            jittered = source + torch.randn(num_dt, 4, generator=generator) * 0.1 * sides
            dt_boxes[use_gt] = jittered[use_gt]
            right_class = use_gt & (torch.rand(num_dt, generator=generator) < 0.8)
            dt_labels[right_class] = labels[from_gt][right_class]
            scores[use_gt] += 0.4
        dt_boxes[:, 2:] = torch.maximum(dt_boxes[:, 2:], dt_boxes[:, :2] + 0.5)
        if seed % 3 == 0:
            scores = (scores * 10).round() / 10  # ties in score
        predictions.append({"boxes": dt_boxes, "scores": scores, "labels": dt_labels})
    return predictions, targets, num_classes


def assert_matches_reference(predictions: list[dict], targets: list[dict], num_classes: int) -> None:
    expected = reference_eval(predictions, targets, num_classes)
    got = coco_map(predictions, targets)
    assert list(got) == list(METRIC_KEYS)
    assert all(isinstance(v, float) for v in got.values())
    diffs = {key: abs(got[key] - float(expected.stats[i])) for i, key in enumerate(METRIC_KEYS)}
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= 1e-6, (
        f"{worst}: ours {got[worst]} vs pycocotools {expected.stats[METRIC_KEYS.index(worst)]}"
    )


@pytest.mark.parametrize("seed", range(10))
def test_random_cases_match_pycocotools(seed: int) -> None:
    predictions, targets, num_classes = random_case(seed)
    assert_matches_reference(predictions, targets, num_classes)


def test_per_class_ap_matches_pycocotools_precision() -> None:
    predictions, targets, num_classes = random_case(3)
    precision = reference_eval(predictions, targets, num_classes).eval["precision"][:, :, :, 0, -1]
    got = per_class_ap(predictions, targets, num_classes)
    metrics, got_again = coco_evaluate(predictions, targets, num_classes)
    for key in ("ap", "ap50"):
        assert got_again[key] == pytest.approx(got[key], nan_ok=True)
    assert metrics == pytest.approx(coco_map(predictions, targets))
    for c in range(num_classes):
        p = precision[:, :, c]
        if (p > -1).any():
            assert got["ap"][c] == pytest.approx(p[p > -1].mean(), abs=1e-9)
            assert got["ap50"][c] == pytest.approx(p[0][p[0] > -1].mean(), abs=1e-9)
        else:
            assert math.isnan(got["ap"][c]) and math.isnan(got["ap50"][c])
    assert any(math.isnan(v) for v in got["ap"]), "random_case leaves one class without GT"


def empty(n_boxes: int = 0) -> dict:
    return {
        "boxes": torch.zeros(n_boxes, 4),
        "scores": torch.zeros(n_boxes),
        "labels": torch.zeros(n_boxes).long(),
    }


def test_no_predictions_at_all() -> None:
    targets = [{"boxes": torch.tensor([[0.0, 0, 50, 50]]), "labels": torch.tensor([0])}, empty()]
    predictions = [empty(), empty()]
    assert_matches_reference(predictions, targets, 1)
    got = coco_map(predictions, targets)
    assert got["map"] == 0.0 and got["mar_100"] == 0.0 and got["map_small"] == -1.0


def test_no_targets_at_all() -> None:
    predictions = [
        {
            "boxes": torch.tensor([[0.0, 0, 50, 50]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([0]),
        }
    ]
    got = coco_map(predictions, [empty()])
    assert got == {key: -1.0 for key in METRIC_KEYS}
    assert coco_map([empty()], [empty()]) == {key: -1.0 for key in METRIC_KEYS}


def test_perfect_predictions_give_one() -> None:
    targets = [
        {
            "boxes": torch.tensor([[10.0, 10, 20, 20], [30, 30, 100, 90], [0, 0, 200, 150]]),
            "labels": torch.tensor([0, 1, 1]),
        },
        {"boxes": torch.tensor([[5.0, 5, 45, 45]]), "labels": torch.tensor([2])},
    ]
    predictions = [{**t, "scores": torch.linspace(0.9, 0.5, len(t["labels"]))} for t in targets]
    got = coco_map(predictions, targets)
    # mar_1: class 1 has two GTs in one image, so one detection per image recalls half of them.
    assert got == {**{key: 1.0 for key in METRIC_KEYS}, "mar_1": pytest.approx((1 + 0.5 + 1) / 3)}
    assert_matches_reference(predictions, targets, 3)


def test_false_positive_above_true_positive_hand_computed() -> None:
    """2 GTs of one class; ranked detections FP, TP, TP (large boxes, IoU 1 or 0).

    Precision/recall after each: (0, 0), (1/2, 1/2), (2/3, 1). Interpolated precision (max to the right)
    is 2/3 at every recall in (0, 1], and at recall 0 too, so AP = 2/3 at every IoU threshold; AR = 1.
    With maxDets 1 the top detection is the FP: AR@1 = 0.
    """
    gt_boxes = torch.tensor([[0.0, 0, 100, 100], [200, 200, 300, 300]])
    targets = [{"boxes": gt_boxes, "labels": torch.tensor([0, 0])}]
    boxes = torch.cat((torch.tensor([[100.0, 0, 200, 100]]), gt_boxes))
    predictions = [
        {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 0])}
    ]
    got = coco_map(predictions, targets)
    assert got["map"] == pytest.approx(2 / 3) and got["map_50"] == pytest.approx(2 / 3)
    assert got["map_large"] == pytest.approx(2 / 3)
    assert got["mar_100"] == 1.0 and got["mar_1"] == 0.0
    assert got["map_small"] == -1.0 and got["map_medium"] == -1.0
    assert_matches_reference(predictions, targets, 1)


def test_detection_on_crowd_region_is_ignored() -> None:
    """A detection inside a crowd GT is neither TP nor FP: the lone real GT still gets AP 1."""
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0, 100, 100], [150, 150, 300, 300]]),
            "labels": torch.tensor([0, 0]),
            "iscrowd": torch.tensor([0, 1]),
        }
    ]
    boxes = torch.tensor([[160.0, 160, 200, 200], [0, 0, 100, 100]])
    predictions = [{"boxes": boxes, "scores": torch.tensor([0.9, 0.5]), "labels": torch.tensor([0, 0])}]
    assert coco_map(predictions, targets)["map"] == 1.0
    assert_matches_reference(predictions, targets, 1)


def test_mismatched_lengths_name_the_problem() -> None:
    with pytest.raises(ValueError, match="1 prediction dicts but 2 target dicts"):
        coco_map([empty()], [empty(), empty()])
    with pytest.raises(KeyError, match=r"predictions\[0\] has no \['scores'\]"):
        coco_map([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], [empty()])
    with pytest.raises(ValueError, match="outside"):
        per_class_ap([empty()], [{"boxes": torch.zeros(1, 4), "labels": torch.tensor([5])}], num_classes=2)


def test_export_with_crowds_and_areas_through_the_pipeline_matches_pycocotools(tmp_path) -> None:
    """A COCO file with crowd boxes, ``area`` unlike the box area (so the size buckets differ from w·h),
    non-contiguous category ids and arbitrary image ids: loaded by ``CocoDetection`` with the eval transforms,
    mapped back by ``evaluate``'s target conversion and scored by ``coco_evaluate``, against pycocotools on the
    file itself with ``loadRes`` of the same detections."""
    images = [{"id": 10, "file_name": "a.png", "width": 64, "height": 32},
              {"id": 20, "file_name": "b b.png", "width": 32, "height": 64}]  # fmt: skip
    categories = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    # (image id, category id, [x, y, w, h], iscrowd, area): boxes of 100-400 px² with areas of all three sizes.
    rows = [(10, 3, [2, 2, 12, 10], 0, 500.0), (10, 7, [30, 4, 20, 20], 0, 5000.0),
            (10, 3, [20, 14, 40, 16], 1, 640.0), (20, 3, [4, 4, 20, 20], 0, 20000.0),
            (20, 7, [2, 30, 28, 30], 1, 840.0), (20, 7, [8, 34, 10, 10], 0, 100.0)]  # fmt: skip
    annotations = [dict(id=k + 1, image_id=i, category_id=c, bbox=b, iscrowd=z, area=a)
                   for k, (i, c, b, z, a) in enumerate(rows)]  # fmt: skip
    path = tmp_path / "_annotations.coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    for record in images:
        Image.new("RGB", (record["width"], record["height"])).save(tmp_path / record["file_name"])
    # (image id, category id, [x, y, w, h], score): hits, near misses, two detections on each crowd region.
    detections = [(10, 3, [2, 3, 12, 9], 0.9), (10, 7, [31, 4, 19, 19], 0.8), (10, 3, [22, 15, 10, 12], 0.95),
                  (10, 3, [40, 16, 12, 12], 0.7), (10, 7, [2, 2, 12, 10], 0.6), (20, 3, [5, 5, 18, 18], 0.5),
                  (20, 7, [3, 32, 12, 12], 0.85), (20, 7, [14, 44, 12, 12], 0.75), (20, 7, [8, 33, 10, 11], 0.4),
                  (20, 3, [30, 50, 2, 2], 0.3)]  # fmt: skip

    dataset = CocoDetection(tmp_path, transforms=eval_transforms(128))
    label_of = {category_id: label for label, category_id in enumerate(dataset.category_ids)}
    targets = [_original_target(dataset[i][1]) for i in range(len(dataset))]
    predictions = []
    for record in images:
        mine = [d for d in detections if d[0] == record["id"]]
        boxes = torch.tensor([[x, y, x + w, y + h] for _, _, (x, y, w, h), _ in mine], dtype=torch.float32)
        predictions.append({"boxes": boxes, "scores": torch.tensor([d[3] for d in mine]),
                            "labels": torch.tensor([label_of[d[1]] for d in mine])})  # fmt: skip
    got, _ = coco_evaluate(predictions, targets, num_classes=2)

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(path))
        results = [dict(image_id=i, category_id=c, bbox=b, score=s) for i, c, b, s in detections]
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    expected = dict(zip(METRIC_KEYS, evaluator.stats.tolist(), strict=True))
    assert min(expected[k] for k in ("map_small", "map_medium", "map_large")) >= 0  # every bucket has GT
    for key in METRIC_KEYS:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), (
            f"{key}: ours {got[key]}, pycocotools {expected[key]}"
        )
    without = coco_evaluate(predictions, [{k: t[k] for k in ("boxes", "labels")} for t in targets], 2)[0]
    assert without["map"] != pytest.approx(got["map"])  # the crowd and area fields change the result
