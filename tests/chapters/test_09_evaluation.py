"""Exercise tests of Chapter 9 (evaluation). Run against your notebook with ``make check CH=9``.

References: ``torchvision.ops`` (IoU, NMS), pycocotools (matching rule, accumulation, COCOeval) and hand-computed
cases.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torchvision.ops import box_iou, nms

from course.checks import exercise, expect, expect_close, expect_shape

CHAPTER = "09_evaluation"
METRIC_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")


def _random_boxes(count: int, generator: torch.Generator, size: float = 100.0) -> torch.Tensor:
    """``[count, 4]`` xyxy boxes with positive width and height inside ``[0, size]``."""
    corner = torch.rand(count, 2, generator=generator) * size * 0.7
    extent = torch.rand(count, 2, generator=generator) * size * 0.3 + 1.0
    return torch.cat((corner, corner + extent), dim=1)


# Exercise 9.1 · box_iou ------------------------------------------------------------------------------------
@exercise("9.1")
def test_box_iou_matches_torchvision(impl):
    generator = torch.Generator().manual_seed(0)
    boxes1, boxes2 = _random_boxes(6, generator), _random_boxes(9, generator)
    got = impl.box_iou(boxes1, boxes2)
    expect_shape(
        got, (6, 9), "IoU matrix of 6 and 9 boxes", hint="one row per box of boxes1, one column per box2"
    )
    expect_close(got, box_iou(boxes1, boxes2), "IoU against torchvision.ops.box_iou", atol=1e-6)


@exercise("9.1")
def test_box_iou_identical_and_disjoint_boxes(impl):
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 40.0]])  # diagonal: disjoint in x AND y
    got = impl.box_iou(boxes, boxes)
    expect_shape(got, (2, 2), "IoU of two boxes with themselves")
    expect(
        abs(float(got[0, 0]) - 0.5) > 1e-6,
        "identical boxes got IoU 0.5: union = area1 + area2 - intersection",
    )
    expect(float(got[0, 1]) <= 1e-9,
           f"disjoint boxes got IoU {float(got[0, 1]):.3f}: clamp the intersection's width and height at 0 "
           "before multiplying (two negative sides give a positive product)")  # fmt: skip
    expect_close(got, torch.eye(2), "IoU of boxes with themselves (diagonal 1) and of disjoint boxes (0)")


@exercise("9.1")
def test_box_iou_empty_inputs(impl):
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0]])
    expect_shape(impl.box_iou(torch.zeros(0, 4), boxes), (0, 2), "IoU of no detections with 2 GTs")
    expect_shape(impl.box_iou(boxes, torch.zeros(0, 4)), (2, 0), "IoU of 2 detections with no GT")


# Exercise 9.2 · nms -----------------------------------------------------------------------------------------
@exercise("9.2")
def test_nms_matches_torchvision_on_clusters(impl):
    generator = torch.Generator().manual_seed(1)
    centres = _random_boxes(5, generator, size=200.0)
    boxes = centres.repeat(8, 1) + torch.randn(40, 4, generator=generator) * 3.0  # 5 clusters of 8 boxes
    boxes = torch.cat((boxes[:, :2], boxes[:, 2:].maximum(boxes[:, :2] + 1.0)), dim=1)
    scores = torch.rand(40, generator=generator)
    for threshold in (0.3, 0.5, 0.7):
        got = impl.nms(boxes, scores, threshold)
        expected = nms(boxes, scores, threshold)
        expect(
            isinstance(got, torch.Tensor), f"nms must return a tensor of indices, got {type(got).__name__}"
        )
        if got.numel() == expected.numel() and set(got.tolist()) == set(expected.tolist()):
            expect(
                got.tolist() == expected.tolist(),
                "the right boxes, in the wrong order: return them best first",
            )
        expect(got.tolist() == expected.tolist(),
               f"IoU threshold {threshold}: kept {got.tolist()}, torchvision.ops.nms keeps {expected.tolist()}")  # fmt: skip


@exercise("9.2")
def test_nms_threshold_is_strict_and_ties_keep_input_order(impl):
    boxes = torch.tensor([[0.0, 0.0, 4.0, 1.0], [0.0, 0.0, 2.0, 1.0]])  # IoU exactly 0.5
    got = impl.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    expect(got.tolist() == nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1],
           f"IoU exactly 0.5 at threshold 0.5: both boxes stay (suppress only IoU > threshold), got {got.tolist()}")  # fmt: skip
    same = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [0.0, 1.0, 10.0, 11.0]])
    tied = torch.tensor([0.5, 0.7, 0.7])
    got = impl.nms(same, tied, 0.5)
    expected = nms(same, tied, 0.5)
    expect(got.tolist() == expected.tolist() == [1],
           f"equal scores 0.7 at indices 1 and 2: keep the lower index (a stable sort), got {got.tolist()}")  # fmt: skip


@exercise("9.2")
def test_nms_empty_input(impl):
    got = impl.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    expect_shape(got, (0,), "NMS of no boxes")
    expect(got.dtype == torch.int64, f"indices must be int64, got {got.dtype}")


# Exercise 9.3 · match_detections ----------------------------------------------------------------------------
def _pycocotools_matching(
    iou: np.ndarray, gt_ignore: np.ndarray, threshold: float, gt_crowd: np.ndarray | None = None
) -> tuple[list[int], list[bool]]:
    """The loop of pycocotools ``COCOeval.evaluateImg`` (GTs sorted with the ignored ones last), literally."""
    gt_order = np.argsort(gt_ignore.astype(int), kind="mergesort")
    ious, ignore = iou[:, gt_order], gt_ignore[gt_order]
    crowd = np.zeros(len(gt_order), dtype=bool) if gt_crowd is None else gt_crowd[gt_order]
    gt_taken = np.zeros(len(gt_order), dtype=bool)
    matched, ignored = [], []
    for d in range(iou.shape[0]):
        best_iou, m = min(threshold, 1 - 1e-10), -1
        for g in range(len(gt_order)):
            if gt_taken[g] and not crowd[g]:
                continue
            if m > -1 and not ignore[m] and ignore[g]:
                break
            if ious[d, g] < best_iou:
                continue
            best_iou, m = ious[d, g], g
        if m > -1:
            gt_taken[m] = True
        matched.append(int(gt_order[m]) if m > -1 else -1)
        ignored.append(bool(ignore[m]) if m > -1 else False)
    return matched, ignored


@exercise("9.3")
def test_match_detections_hand_built(impl):
    # det 0 (best score) overlaps GT 0 most; det 1 overlaps GT 0 too (a duplicate) and GT 1 a bit (below t);
    # det 2 overlaps GT 0 (taken) and GT 1 above t: it must fall back to GT 1.
    iou = torch.tensor([[0.9, 0.1], [0.8, 0.3], [0.7, 0.6]], dtype=torch.float64)
    matched, ignored = impl.match_detections(iou, torch.tensor([False, False]), 0.5)
    expect(isinstance(matched, torch.Tensor), f"matched_gt must be a tensor, got {type(matched).__name__}")
    expect(matched.tolist() != [0, 0, 0], "every detection matched GT 0: a GT can be matched only once")
    expect(matched.tolist()[1] == -1, f"detection 1 overlaps only the taken GT 0 (IoU ≥ 0.5): it is a duplicate "
                                      f"(matched_gt -1), got {matched.tolist()}")  # fmt: skip
    expect(matched.tolist() == [0, -1, 1], f"expected matched_gt [0, -1, 1], got {matched.tolist()}")
    expect(ignored.tolist() == [False] * 3, f"no GT is ignored, so no detection is: got {ignored.tolist()}")


@exercise("9.3")
def test_match_detections_threshold_and_ignored_gts(impl):
    iou = torch.tensor([[0.5]], dtype=torch.float64)
    matched, _ = impl.match_detections(iou, torch.tensor([False]), 0.5)
    expect(matched.tolist() == [0], "IoU exactly at the threshold is a match (IoU >= t)")
    # GT 0 is ignored and overlaps more; GT 1 is normal: the detection takes the normal GT.
    iou = torch.tensor([[0.9, 0.6], [0.8, 0.2]], dtype=torch.float64)
    matched, ignored = impl.match_detections(iou, torch.tensor([True, False]), 0.5)
    expect(matched.tolist()[0] == 1,
           f"detection 0 should prefer the normal GT 1 (IoU 0.6) over the ignored GT 0 (IoU 0.9), got {matched.tolist()}")  # fmt: skip
    expect(matched.tolist() == [1, 0] and ignored.tolist() == [False, True],
           f"detection 1 can only match the ignored GT 0: it is then ignored; expected matched [1, 0], ignored "
           f"[False, True], got {matched.tolist()}, {ignored.tolist()}")  # fmt: skip


@exercise("9.3")
def test_match_detections_matches_pycocotools_rule_random(impl):
    generator = torch.Generator().manual_seed(2)
    for case in range(20):
        num_dets, num_gts = (
            int(torch.randint(0, 8, (1,), generator=generator)),
            int(torch.randint(0, 6, (1,), generator=generator)),
        )
        # IoUs on a coarse grid (multiples of 0.1) so that exact ties are common
        iou = torch.randint(0, 11, (num_dets, num_gts), generator=generator).double() / 10
        gt_crowd = torch.rand(num_gts, generator=generator) < 0.2
        gt_ignore = (torch.rand(num_gts, generator=generator) < 0.2) | gt_crowd
        matched, ignored = impl.match_detections(iou, gt_ignore, 0.4, gt_crowd=gt_crowd)
        expected_matched, expected_ignored = _pycocotools_matching(
            iou.numpy(), gt_ignore.numpy(), 0.4, gt_crowd.numpy()
        )
        expect_shape(matched, (num_dets,), f"case {case}: matched_gt of {num_dets} detections")
        expect(matched.tolist() == expected_matched and ignored.tolist() == expected_ignored,
               f"case {case} (IoU\n{iou.numpy().round(2)}, ignored GTs {gt_ignore.tolist()}, crowd "
               f"{gt_crowd.tolist()}, t = 0.4):\n"
               f"  expected matched {expected_matched}, ignored {expected_ignored}\n"
               f"  got      matched {matched.tolist()}, ignored {ignored.tolist()}")  # fmt: skip


@exercise("9.3")
def test_match_detections_exact_ties_take_the_later_gt(impl):
    """Detection 0 overlaps GTs 0 and 1 exactly equally (0.6): pycocotools' ``>=`` keeps the later GT, which
    leaves GT 0 free for detection 1."""
    iou = torch.tensor([[0.6, 0.6], [0.9, 0.1]], dtype=torch.float64)
    matched, _ = impl.match_detections(iou, torch.tensor([False, False]), 0.5)
    expect(matched.tolist() == [1, 0],
           f"exact IoU tie: pycocotools keeps the LATER GT (its loop takes IoU >= the best so far), so detection 0 "
           f"takes GT 1 and detection 1 finds GT 0 free; expected matched [1, 0], got {matched.tolist()}")  # fmt: skip


@exercise("9.3")
def test_match_detections_crowd_absorbs_several_detections(impl):
    """Three detections on one crowd region (ignored, never used up) and a normal GT next to it."""
    iou = torch.tensor([[0.1, 0.9], [0.0, 0.8], [0.7, 0.95], [0.0, 0.6]], dtype=torch.float64)
    gt_crowd = torch.tensor([False, True])
    matched, ignored = impl.match_detections(iou, gt_crowd.clone(), 0.5, gt_crowd=gt_crowd)
    expect(matched.tolist() == [1, 1, 0, 1] and ignored.tolist() == [True, True, False, True],
           "a crowd region may absorb any number of detections (it is never marked as taken), and a detection "
           "prefers a normal GT over it; expected matched [1, 1, 0, 1], ignored [True, True, False, True], got "
           f"{matched.tolist()}, {ignored.tolist()}")  # fmt: skip


def _cocoeval_matches(gts: list[dict], dts: list[dict]) -> list[tuple]:
    """Run pycocotools' COCOeval on one hand-built dataset and return, per evaluated (image, category, area range):
    its IoU matrix, the GT ignore and crowd flags in annotation order, the GT ids, and its ``dtMatches`` /
    ``dtIgnore`` (``[T, K]``)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dict(images=[dict(id=i) for i in {a["image_id"] for a in gts + dts}], annotations=gts,
                               categories=[dict(id=c) for c in sorted({a["category_id"] for a in gts})])  # fmt: skip
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dts), iouType="bbox")
        evaluator.evaluate()
    cases = []
    for record in evaluator.evalImgs:
        if record is None or not len(record["dtIds"]) or not len(record["gtIds"]):
            continue
        image, category = record["image_id"], record["category_id"]
        annotations = evaluator._gts[image, category]  # the IoU matrix's column order
        ignore_of = dict(zip(record["gtIds"], record["gtIgnore"], strict=True))
        ids = [a["id"] for a in annotations]
        cases.append((np.asarray(evaluator.ious[image, category]), np.array([bool(ignore_of[i]) for i in ids]),
                      np.array([bool(a["iscrowd"]) for a in annotations]), ids, record["dtMatches"],
                      record["dtIgnore"], tuple(record["aRng"])))  # fmt: skip
    return cases


def _tie_and_crowd_dataset() -> tuple[list[dict], list[dict]]:
    """Image 1: two GTs that a wide detection overlaps exactly equally (IoU 0.6 each) and a narrower detection that
    only fits the first. Image 2: a crowd region with four detections inside it, one normal GT beside them.
    Boxes in COCO's [x, y, w, h], on integers so that the equal IoUs are bit-identical."""
    gts = [
        dict(id=1, image_id=1, category_id=1, bbox=[0, 0, 24, 10], area=240, iscrowd=0),
        dict(id=2, image_id=1, category_id=1, bbox=[16, 0, 24, 10], area=240, iscrowd=0),
        dict(id=3, image_id=2, category_id=1, bbox=[0, 0, 200, 100], area=20000, iscrowd=1),
        dict(id=4, image_id=2, category_id=1, bbox=[210, 0, 40, 60], area=2400, iscrowd=0),
    ]
    dts = [
        dict(image_id=1, category_id=1, bbox=[0, 0, 40, 10], score=0.9),
        dict(image_id=1, category_id=1, bbox=[0, 0, 22, 10], score=0.8),
        *(
            dict(image_id=2, category_id=1, bbox=[10 + 40 * i, 10, 30, 60], score=0.7 - 0.1 * i)
            for i in range(4)
        ),
        dict(image_id=2, category_id=1, bbox=[212, 0, 38, 60], score=0.3),
    ]
    return gts, dts


@exercise("9.3")
def test_match_detections_equals_cocoeval_on_ties_and_crowds(impl):
    """pycocotools' own COCOeval (its IoU matrix and its dtMatches) on a dataset built to tie and to crowd."""
    gts, dts = _tie_and_crowd_dataset()
    for iou, gt_ignore, gt_crowd, gt_ids, dt_matches, dt_ignore, area in _cocoeval_matches(gts, dts):
        for t_index, threshold in enumerate(np.linspace(0.5, 0.95, 10)):
            matched, ignored = impl.match_detections(torch.from_numpy(iou), torch.from_numpy(gt_ignore),
                                                     min(threshold, 1 - 1e-10), gt_crowd=torch.from_numpy(gt_crowd))  # fmt: skip
            got = [gt_ids[m] if m >= 0 else 0 for m in matched.tolist()]
            expected = [int(m) for m in dt_matches[t_index]]
            expect(got == expected,
                   f"against pycocotools' COCOeval (area range {area}, IoU threshold {threshold:.2f}, IoU\n"
                   f"{iou.round(3)}, ignored GTs {gt_ignore.tolist()}, crowd {gt_crowd.tolist()}):\n"
                   f"  COCOeval matches GT ids {expected} (0 = none)\n  yours             {got}\n"
                   "exact ties go to the later GT; a crowd region absorbs any number of detections")  # fmt: skip
            matched_rows = matched >= 0
            expect(ignored[matched_rows].tolist() == [bool(x) for x in dt_ignore[t_index][matched_rows.numpy()]],
                   f"area range {area}, threshold {threshold:.2f}: a detection matched to an ignored GT is ignored; "
                   f"got ignored {ignored.tolist()}")  # fmt: skip


# Exercise 9.4 · precision_recall ----------------------------------------------------------------------------
@exercise("9.4")
def test_precision_recall_hand_computed(impl):
    scores = torch.tensor([0.6, 0.9, 0.7, 0.8])  # sorted: 0.9 (TP), 0.8 (FP), 0.7 (TP), 0.6 (TP)
    is_tp = torch.tensor([True, True, True, False])
    precision, recall = impl.precision_recall(scores, is_tp, 4)
    expect_shape(precision, (4,), "precision")
    unsorted = torch.tensor([1.0, 1.0, 1.0, 0.75])
    expect(
        not torch.allclose(precision.double(), unsorted.double()),
        "the curves must follow decreasing score: sort first",
    )
    expect_close(precision, torch.tensor([1.0, 0.5, 2 / 3, 0.75]), "precision after each detection",
                 hint="precision_k = TP_k / k over the detections sorted by score")  # fmt: skip
    expect_close(
        recall,
        torch.tensor([0.25, 0.25, 0.5, 0.75]),
        "recall after each detection",
        hint="recall_k = TP_k / num_gt",
    )


@exercise("9.4")
def test_precision_recall_ties_keep_input_order(impl):
    precision, recall = impl.precision_recall(
        torch.tensor([0.5, 0.5, 0.9]), torch.tensor([False, True, True]), 2
    )
    expect_close(precision, torch.tensor([1.0, 0.5, 2 / 3]), "precision with tied scores 0.5",
                 hint="equal scores keep the input order: sort with stable=True (pycocotools uses a mergesort)")  # fmt: skip
    expect_close(recall, torch.tensor([0.5, 0.5, 1.0]), "recall with tied scores")


# Exercise 9.5 · interpolated_ap -----------------------------------------------------------------------------
def _pycocotools_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """The accumulation of pycocotools ``COCOeval.accumulate`` for one (class, area, IoU threshold)."""
    recall_thresholds = np.linspace(0.0, 1.0, 101)
    pr, q = precision.tolist(), np.zeros(101)
    for i in range(len(pr) - 1, 0, -1):
        if pr[i] > pr[i - 1]:
            pr[i - 1] = pr[i]
    indices = np.searchsorted(recall, recall_thresholds, side="left")
    for ri, pi in enumerate(indices):
        if pi < len(pr):
            q[ri] = pr[pi]
    return float(q.mean())


@exercise("9.5")
def test_interpolated_ap_hand_computed(impl):
    perfect = impl.interpolated_ap(
        torch.tensor([1.0, 1.0], dtype=torch.float64), torch.tensor([0.5, 1.0], dtype=torch.float64)
    )
    expect(abs(perfect - 1.0) < 1e-9, f"every detection right, all found: AP 1, got {perfect}")
    half = impl.interpolated_ap(
        torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    )
    expect(abs(half - 0.5) > 1e-9 or abs(half - 51 / 101) < 1e-9,
           "recall 0.5 at precision 1 gives 51/101 = 0.50495 (thresholds 0.00 … 0.50 are reached), not 0.5 "
           "(the area under the curve)")  # fmt: skip
    expect(abs(half - 1.0) > 1e-9,
           "recall 0.5 at precision 1 gave AP 1: the recall thresholds above the highest recall reached "
           "(0.51 … 1.00) contribute precision 0")  # fmt: skip
    expect(
        abs(half - 51 / 101) < 1e-9,
        f"recall 0.5 at precision 1: expected 51/101 = {51 / 101:.5f}, got {half}",
    )
    empty = impl.interpolated_ap(torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))
    expect(empty == 0.0, f"no detection: AP 0, got {empty}")


@exercise("9.5")
def test_interpolated_ap_uses_the_monotone_envelope(impl):
    # FP, TP, TP of 2 GTs: the first point that reaches recall 0 or 0.5 has a lower precision than a later one
    precision = torch.tensor([0.0, 0.5, 2 / 3], dtype=torch.float64)
    recall = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    got = impl.interpolated_ap(precision, recall)
    expected = _pycocotools_ap(precision.numpy(), recall.numpy())
    raw = float(
        torch.cat((precision, torch.zeros(1, dtype=torch.float64)))[
            torch.searchsorted(recall, torch.linspace(0, 1, 101, dtype=torch.float64))
        ].mean()
    )
    expect(abs(got - raw) > 1e-9 or abs(raw - expected) < 1e-9,
           "the raw precision was sampled: first make it monotone, p(r) = max over r' >= r")  # fmt: skip
    expect(abs(got - expected) < 1e-9, f"expected {expected:.6f} (pycocotools' accumulate), got {got}")


@exercise("9.5")
def test_interpolated_ap_matches_pycocotools_random(impl):
    generator = torch.Generator().manual_seed(3)
    for case in range(10):
        count, num_gt = (
            int(torch.randint(1, 40, (1,), generator=generator)),
            int(torch.randint(1, 30, (1,), generator=generator)),
        )
        is_tp = torch.rand(count, generator=generator) < 0.6
        true_positives = is_tp.double().cumsum(0).clamp(max=num_gt)
        precision = true_positives / torch.arange(1, count + 1, dtype=torch.float64)
        recall = true_positives / num_gt
        got = impl.interpolated_ap(precision, recall)
        expected = _pycocotools_ap(precision.numpy(), recall.numpy())
        expect(
            abs(got - expected) < 1e-9,
            f"case {case} ({count} detections, {num_gt} GTs): expected {expected:.6f}, got {got}",
        )


# Exercise 9.6 · coco_map ------------------------------------------------------------------------------------
def _pycocotools_stats(predictions: list[dict], targets: list[dict]) -> dict[str, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box: list[float]) -> list[float]:
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    gts, dts = [], []
    for i, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
        for box, label in zip(target["boxes"].double().tolist(), target["labels"].tolist(), strict=True):
            area = (box[2] - box[0]) * (box[3] - box[1])
            gts.append(
                dict(id=len(gts) + 1, image_id=i, category_id=label, bbox=xywh(box), area=area, iscrowd=0)
            )
        for box, score, label in zip(
            prediction["boxes"].double().tolist(),
            prediction["scores"].tolist(),
            prediction["labels"].tolist(),
            strict=True,
        ):
            dts.append(dict(image_id=i, category_id=label, bbox=xywh(box), score=score))
    categories = sorted({a["category_id"] for a in gts + dts})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dict(images=[dict(id=i) for i in range(len(targets))], annotations=gts,
                               categories=[dict(id=c) for c in categories])  # fmt: skip
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(dts), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return dict(zip(METRIC_KEYS, (float(v) for v in evaluator.stats[:6]), strict=True))


def _random_case(seed: int, num_images: int = 4, num_classes: int = 3) -> tuple[list[dict], list[dict]]:
    """GTs of all sizes; detections = jittered GTs (some with the wrong class) + background boxes.

    Image 0 has no GT, the last image no detection, and class ``num_classes`` has detections but no GT.
    """
    generator = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for image in range(num_images):
        count = 0 if image == 0 else int(torch.randint(1, 7, (1,), generator=generator))
        corner = torch.rand(count, 2, generator=generator) * 300
        side = torch.exp(torch.rand(count, 1, generator=generator) * 4.2 + 1.6)  # 5 … 330 px: small to large
        boxes = torch.cat(
            (corner, corner + side * (0.6 + 0.8 * torch.rand(count, 2, generator=generator))), 1
        )
        labels = torch.randint(0, num_classes, (count,), generator=generator)
        targets.append({"boxes": boxes, "labels": labels})
        if image == num_images - 1:
            predictions.append(
                {
                    "boxes": torch.zeros(0, 4),
                    "scores": torch.zeros(0),
                    "labels": torch.zeros(0, dtype=torch.int64),
                }
            )
            continue
        copies = (
            boxes.repeat(2, 1) + torch.randn(2 * count, 4, generator=generator) * side.repeat(2, 1) * 0.12
        )
        copies = torch.cat((copies[:, :2].minimum(copies[:, 2:] - 1), copies[:, 2:]), 1)
        copy_labels = torch.where(torch.rand(2 * count, generator=generator) < 0.2,
                                  torch.randint(0, num_classes + 1, (2 * count,), generator=generator), labels.repeat(2))  # fmt: skip
        background = _random_boxes(3, generator, size=320.0)
        pred_boxes = torch.cat((copies, background))
        pred_labels = torch.cat((copy_labels, torch.randint(0, num_classes + 1, (3,), generator=generator)))
        predictions.append(
            {
                "boxes": pred_boxes,
                "scores": torch.rand(len(pred_boxes), generator=generator),
                "labels": pred_labels,
            }
        )
    return predictions, targets


SIZE_KEYS = ("map_small", "map_medium", "map_large")


def _compare(got: dict, expected: dict, what: str) -> None:
    expect(isinstance(got, dict), f"coco_map must return a dict, got {type(got).__name__}")
    missing = [key for key in METRIC_KEYS if key not in got]
    expect(not missing, f"missing keys {missing}; expected {list(METRIC_KEYS)}")
    differ = [key for key in METRIC_KEYS if abs(float(got[key]) - expected[key]) >= 1e-6]
    expect(not differ or any(key not in SIZE_KEYS for key in differ),
           f"{what}: only the size ranges differ ({differ}): in a size range, GTs outside it are ignored, and so "
           "are the detections outside it that match nothing (they are no false positives of that range)")  # fmt: skip
    for key in METRIC_KEYS:
        expect(abs(float(got[key]) - expected[key]) < 1e-6,
               f"{what}: {key} = {float(got[key]):.6f}, pycocotools says {expected[key]:.6f}\n"
               + "  (all six: " + ", ".join(f"{k} {float(got[k]):.4f}/{expected[k]:.4f}" for k in METRIC_KEYS) + ")")  # fmt: skip


@exercise("9.6")
def test_coco_map_matches_pycocotools_random(impl):
    for seed in range(3):
        predictions, targets = _random_case(seed)
        _compare(
            impl.coco_map(predictions, targets),
            _pycocotools_stats(predictions, targets),
            f"random case {seed}",
        )


@exercise("9.6")
def test_coco_map_hand_built_and_detection_cap(impl):
    """One perfect detection per GT: mAP 1. Then 120 background detections above it in one image: COCO keeps
    the 100 best per image and class, so the true one (score 0.5) falls out and AP drops to 0."""
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 80.0]]), "labels": torch.tensor([0])}]
    perfect = [
        {"boxes": targets[0]["boxes"].clone(), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    ]
    got = impl.coco_map(perfect, targets)
    expect(
        isinstance(got, dict) and abs(float(got["map"]) - 1.0) < 1e-9,
        f"a perfect detection gives map 1, got {got}",
    )
    expect(float(got["map_small"]) == -1.0 and float(got["map_large"]) == -1.0,
           f"no small and no large GT: map_small and map_large are -1 (no class has GT there), got {got}")  # fmt: skip
    background = _random_boxes(120, torch.Generator().manual_seed(4), size=300.0) + 400.0
    crowded = [{"boxes": torch.cat((background, targets[0]["boxes"])), "scores": torch.cat((torch.rand(120) * 0.4 + 0.6, torch.tensor([0.5]))),
                "labels": torch.zeros(121, dtype=torch.int64)}]  # fmt: skip
    got = impl.coco_map(crowded, targets)
    expected = _pycocotools_stats(crowded, targets)
    expect(abs(float(got["map"]) - expected["map"]) < 1e-6,
           f"121 detections in one image: keep only the {100} best per image and class before matching; "
           f"map {float(got['map']):.4f}, pycocotools {expected['map']:.4f}")  # fmt: skip


@exercise("9.6")
def test_coco_map_exact_iou_tie(impl):
    """A wide detection overlaps two GTs exactly equally (IoU 0.6); pycocotools gives it the later GT, so the
    narrower second detection still finds the first GT: two true positives at IoU 0.5, not one."""
    targets = [
        {
            "boxes": torch.tensor([[0.0, 0.0, 24.0, 10.0], [16.0, 0.0, 40.0, 10.0]]),
            "labels": torch.tensor([0, 0]),
        }
    ]
    predictions = [{"boxes": torch.tensor([[0.0, 0.0, 40.0, 10.0], [0.0, 0.0, 22.0, 10.0]]),
                    "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}]  # fmt: skip
    got = impl.coco_map(predictions, targets)
    expected = _pycocotools_stats(predictions, targets)
    expect(abs(float(got["map_50"]) - expected["map_50"]) < 1e-6,
           f"map_50 {float(got['map_50']):.4f}, pycocotools {expected['map_50']:.4f}: on an exact IoU tie the "
           "detection takes the LATER GT (match_detections, Exercise 9.3)")  # fmt: skip
    _compare(got, expected, "two GTs tied for one detection")
