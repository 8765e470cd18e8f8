"""Exercise tests of Chapter 6 (Task-Aligned Assigner). Run against your notebook with ``make check CH=6``."""

from __future__ import annotations

import torch
from torchvision.ops import box_iou

from course.checks import exercise, expect, expect_close, expect_shape
from detector.assigner import TaskAlignedAssigner
from detector.assigner import candidate_mask as package_candidate_mask
from detector.boxes import make_points

CHAPTER = "06_tal"
NUM_CLASSES = 4
RESULT_KEYS = ("labels", "boxes", "scores", "fg_mask", "gt_index")


def _random_image(num_gts: int, seed: int, image_size: int = 128):
    """One image's random predictions and GTs: points of strides 8/16/32, boxes around them."""
    generator = torch.Generator().manual_seed(seed)
    strides_per_level = (8, 16, 32)
    points, strides = make_points(
        [(image_size // s, image_size // s) for s in strides_per_level], strides_per_level
    )
    centres = torch.rand(num_gts, 2, generator=generator) * image_size
    half = torch.rand(num_gts, 2, generator=generator) * image_size / 5 + 3
    gt_boxes = torch.cat((centres - half, centres + half), -1).clamp(0, image_size)
    gt_labels = torch.randint(0, NUM_CLASSES, (num_gts,), generator=generator)
    ltrb = (0.3 + torch.rand(len(points), 4, generator=generator) * 3.7) * strides[:, None]
    pred_boxes = torch.cat((points - ltrb[:, :2], points + ltrb[:, 2:]), -1)
    pred_scores = torch.rand(len(points), NUM_CLASSES, generator=generator)
    return pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes


def _package_assign(pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes, **options):
    assigner = TaskAlignedAssigner(NUM_CLASSES, **options)
    real = torch.ones(1, len(gt_labels), dtype=torch.bool)
    out = assigner(
        pred_scores[None], pred_boxes[None], points, gt_labels[None], gt_boxes[None], real, strides
    )
    return {name: getattr(out, name)[0] for name in RESULT_KEYS}


# Exercise 6.1 · candidate_mask -----------------------------------------------------------------------------
@exercise("6.1")
def test_candidates_strictly_inside(impl):
    gt_boxes = torch.tensor([[10.0, 10.0, 50.0, 30.0]])
    points = torch.tensor([[30.0, 20.0], [10.0, 20.0], [50.0, 20.0], [60.0, 20.0], [30.0, 29.5], [30.0, 5.0]])
    strides = torch.full((6,), 8.0)
    got = impl.candidate_mask(points, strides, gt_boxes)
    expect_shape(
        got,
        (1, 6),
        "candidates of 1 GT among 6 points",
        hint="the result is [M, N]: GTs first, points second",
    )
    expect(got.dtype == torch.bool, f"candidates must be a bool mask, got {got.dtype}")
    expected = torch.tensor([[True, False, False, False, True, False]])
    if bool(got[0, 1] or got[0, 2]):
        expect(False, "a point exactly on the left or right side counts as inside: points must be STRICTLY inside "
                      "(min(l, t, r, b) > eps, not >= 0)")  # fmt: skip
    expect(not bool(got[0, 3] or got[0, 5]), "positives outside the GT: points (60, 20) and (30, 5) lie outside "
                                             "[10, 10, 50, 30]; check the sign of each side's distance")  # fmt: skip
    expect(torch.equal(got, expected), f"expected {expected.tolist()}, got {got.tolist()}")


@exercise("6.1")
def test_centre_sampling_is_a_max_norm_square_in_strides(impl):
    gt_boxes = torch.tensor([[0.0, 0.0, 100.0, 100.0]])  # centre (50, 50); r = 2.5 at stride 8 → 20 px
    points = torch.tensor([[69.0, 50.0], [71.0, 50.0], [68.0, 68.0], [50.0, 31.0], [50.0, 50.0]])
    strides = torch.full((5,), 8.0)
    got = impl.candidate_mask(points, strides, gt_boxes, center_radius=2.5)
    expected = torch.tensor([[True, False, True, True, True]])
    expect_shape(got, (1, 5), "candidates with centre sampling")
    if bool(got[0, 0]) and not bool(got[0, 2]):
        expect(False, "point (68, 68) is 18 px from the centre along each axis: inside the 20-px square. Centre "
                      "sampling uses the max-norm max(|dx|, |dy|) < r · stride, not the Euclidean distance")  # fmt: skip
    if bool(got.all()):
        expect(False, "centre sampling removed nothing: a candidate must be inside the box AND near its centre "
                      "(&, not |), within r · stride = 20 px here")  # fmt: skip
    if bool(got[0, 4]) and not bool(got[0, [0, 2, 3]].any()):
        expect(False, "only the exact centre survived: the radius is in strides, r · stride = 20 px here, "
                      "not r pixels")  # fmt: skip
    expect(
        torch.equal(got, expected),
        f"centre sampling r=2.5, stride 8: expected {expected.tolist()}, got {got.tolist()}",
    )


@exercise("6.1")
def test_centre_sampling_only_removes_candidates(impl):
    gt_boxes = torch.tensor([[40.0, 40.0, 60.0, 60.0]])  # small box, large stride: the radius is 80 px
    points = torch.tensor([[50.0, 50.0], [70.0, 50.0], [16.0, 16.0]])
    strides = torch.full((3,), 32.0)
    got = impl.candidate_mask(points, strides, gt_boxes, center_radius=2.5)
    expect_shape(got, (1, 3), "candidates with centre sampling")
    expect(not bool(got[0, 1] or got[0, 2]), "positives outside the GT: with centre sampling a point must be inside "
                                             "the box AND near its centre (combine with &, not |)")  # fmt: skip
    expect(bool(got[0, 0]), "the centre point of the GT must be a candidate")


@exercise("6.1")
def test_candidates_match_the_package(impl):
    _, _, points, strides, _, gt_boxes = _random_image(7, seed=3)
    for radius in (None, 1.5):
        got = impl.candidate_mask(points, strides, gt_boxes, center_radius=radius)
        real = torch.ones(1, len(gt_boxes), dtype=torch.bool)
        expected = package_candidate_mask(points, gt_boxes[None], real, strides, radius)[0]
        expect_shape(got, tuple(expected.shape), f"candidates of 7 GTs (center_radius={radius})")
        wrong = (got != expected).sum().item()
        expect(
            wrong == 0,
            f"center_radius={radius}: {wrong} of {got.numel()} (GT, point) pairs differ from the package",
        )
    empty = impl.candidate_mask(points, strides, torch.zeros(0, 4))
    expect_shape(empty, (0, len(points)), "an image without GT")


# Exercise 6.2 · alignment_metric ---------------------------------------------------------------------------
def _metric_case():
    pred_scores = torch.tensor([[0.9, 0.1], [0.2, 0.7], [0.5, 0.5]])
    pred_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 12.0, 12.0], [5.0, 0.0, 15.0, 10.0]])
    gt_labels = torch.tensor([1, 0])
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 1.0, 13.0, 11.0]])
    return pred_scores, pred_boxes, gt_labels, gt_boxes


def _reference_metric(pred_scores, pred_boxes, gt_labels, gt_boxes, alpha, beta):
    iou = box_iou(gt_boxes, pred_boxes)
    return pred_scores[:, gt_labels].T ** alpha * iou**beta, iou


@exercise("6.2")
def test_metric_hand_built(impl):
    inputs = _metric_case()
    try:
        metric, iou = impl.alignment_metric(*inputs, alpha=1.0, beta=6.0)
    except RuntimeError as error:
        expect(False, f"alignment_metric raised a shape error ({str(error).splitlines()[0]}): with 2 GTs and 3 "
                      "points the IoU table and the class-score table must both be [M, N] = [2, 3], GTs first")  # fmt: skip
    expected_metric, expected_iou = _reference_metric(*inputs, 1.0, 6.0)
    expect_shape(
        iou, (2, 3), "IoU of 2 GTs with 3 points", hint="pairwise IoU [M, N]: box_iou(gt_boxes, pred_boxes)"
    )
    expect_close(iou, expected_iou, "IoU [M, N]", hint="IoU of GT m with the predicted box of point n")
    swapped, _ = _reference_metric(*inputs, 6.0, 1.0)
    expect_shape(metric, (2, 3), "metric of 2 GTs with 3 points")
    expect(not torch.allclose(metric, swapped), "the exponents are swapped: s^6 · IoU^1 instead of s^1 · IoU^6 (a "
                                                "real bug: the metric then picks confident points with poor boxes)")  # fmt: skip
    best_class = inputs[0].amax(1)[None].expand(2, 3)
    expect(not torch.allclose(metric, best_class * expected_iou**6),
           "used the best class score of each point; s must be the probability of THE GT's class: "
           "pred_scores[:, gt_labels]")  # fmt: skip
    expect_close(metric, expected_metric, "metric t = s^alpha · IoU^beta")


@exercise("6.2")
def test_metric_uses_alpha_and_beta(impl):
    inputs = _metric_case()
    metric, _ = impl.alignment_metric(*inputs, alpha=0.5, beta=2.0)
    expected, _ = _reference_metric(*inputs, 0.5, 2.0)
    expect_close(
        metric,
        expected,
        "metric with alpha=0.5, beta=2",
        hint="use the alpha and beta arguments, not constants",
    )


@exercise("6.2")
def test_metric_has_no_gradient(impl):
    pred_scores, pred_boxes, gt_labels, gt_boxes = _metric_case()
    pred_scores, pred_boxes = pred_scores.clone().requires_grad_(), pred_boxes.clone().requires_grad_()
    metric, iou = impl.alignment_metric(pred_scores, pred_boxes, gt_labels, gt_boxes)
    expect(not metric.requires_grad and not iou.requires_grad,
           "gradients flow through the metric: it only chooses targets and must not be trained; compute it under "
           "torch.no_grad() (or on detached inputs)")  # fmt: skip


# Exercise 6.3 · select_topk --------------------------------------------------------------------------------
def _call_topk(impl, metric, candidates, topk):
    try:
        return impl.select_topk(metric, candidates, topk=topk)
    except RuntimeError as error:
        expect(False, f"select_topk raised {str(error).splitlines()[0]!r} with topk={topk}, {metric.shape[0]} GTs and "
                      f"{metric.shape[1]} points: the top-k runs along the points axis of each GT's row, and k "
                      "cannot exceed the number of points N")  # fmt: skip


def _topk_then_filter(metric, candidates, topk):
    """mmdetection's order: top-k over all points by metric, then drop the non-candidates."""
    best = metric.topk(min(topk, metric.shape[1]), dim=1).indices
    return torch.zeros_like(candidates).scatter_(1, best, True) & candidates


@exercise("6.3")
def test_topk_hand_built(impl):
    metric = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.3, 0.7, 0.95, 0.2],  # GT 0: candidates 0..4; point 5 is outside but aligned
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.4],  # GT 1: two candidates (5 at t = 0, and 6)
        ]
    )
    candidates = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    got = _call_topk(impl, metric, candidates, 3)
    expect_shape(got, (2, 7), "positives [M, N]")
    expect(got.dtype == torch.bool, f"positives must be a bool mask, got {got.dtype}")
    expect(not bool((got & ~candidates).any()),
           "positives outside the GT: only candidates compete; a non-candidate's predicted box may overlap the GT "
           "(point 5 of GT 0) — mask the metric with -1 (or -inf) outside the candidates before top-k")  # fmt: skip
    counts = got.sum(1).tolist()
    if torch.equal(got, _topk_then_filter(metric, candidates, 3)):
        expect(False, "the top-k ran over ALL points and the non-candidates were dropped afterwards (mmdetection's "
                      "order): GT 0 lost a slot to point 5, which is outside it. This course ranks only the "
                      f"candidates, so a GT with at least topk candidates keeps exactly topk; got {counts}")  # fmt: skip
    expect(counts == [3, 2],
           f"wrong number of positives per GT: expected [3, 2] (min(topk, #candidates)), got {counts}. A GT with "
           "fewer candidates than topk keeps all of them, even at t = 0")  # fmt: skip
    expected = torch.tensor([[1, 0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    expect(
        torch.equal(got, expected),
        f"GT 0 should keep its 3 largest t (points 0, 4, 2); got {got.int().tolist()}",
    )


@exercise("6.3")
def test_topk_random_against_sorting(impl):
    generator = torch.Generator().manual_seed(0)
    metric = torch.rand(5, 40, generator=generator)
    candidates = torch.rand(5, 40, generator=generator) < torch.tensor([0.1, 0.3, 0.6, 1.0, 0.0])[:, None]
    got = _call_topk(impl, metric, candidates, 9)
    expect_shape(got, (5, 40), "positives [M, N]")
    for m in range(5):
        ranked = [n for n in metric[m].argsort(descending=True).tolist() if candidates[m, n]]
        expected = set(ranked[:9])
        found = set(got[m].nonzero()[:, 0].tolist())
        expect(found == expected, f"GT {m} ({len(ranked)} candidates): expected positives {sorted(expected)}, "
                                  f"got {sorted(found)}")  # fmt: skip
    small = _call_topk(impl, metric[:, :4], candidates[:, :4] | True, 9)
    expect(bool(small.all()), "with only 4 points and topk=9, every candidate is positive (use min(topk, N))")


# Exercise 6.4 · resolve_conflicts --------------------------------------------------------------------------
@exercise("6.4")
def test_conflicts_go_to_the_highest_iou_among_the_selecting_gts(impl):
    # point 0: positive for GT 0 and GT 1; IoU favours GT 0, the metric favours GT 1.
    # point 1: positive only for GT 1, although its IoU with GT 0 (not selecting it) is larger.
    # point 2: positive for nobody.   point 3: positive for GT 2 only.
    positives = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.bool)
    iou = torch.tensor([[0.8, 0.9, 0.5, 0.1], [0.6, 0.4, 0.5, 0.1], [0.1, 0.1, 0.1, 0.3]])
    metric = torch.tensor([[0.1, 0.5, 0.1, 0.0], [0.5, 0.1, 0.1, 0.0], [0.0, 0.0, 0.0, 0.2]])
    try:
        got = impl.resolve_conflicts(positives, metric, iou)
    except RuntimeError as error:
        expect(False, f"resolve_conflicts raised {str(error).splitlines()[0]!r} with 3 GTs and 4 points: one GT per "
                      "point means the argmax runs over the GT axis (dim 0) of the [M, N] tables")  # fmt: skip
    expect_shape(got, (4,), "gt_index [N] for 3 GTs and 4 points",
                 hint="one GT per point: the argmax runs over the GT axis (dim 0), not over the points")  # fmt: skip
    expect(got.dtype == torch.int64, f"gt_index must be int64, got {got.dtype}")
    expect(int(got[0]) != 1, "conflict resolved by metric instead of IoU: point 0 is positive for GTs 0 and 1, "
                             "IoU 0.8 vs 0.6 → GT 0 (the metric 0.1 vs 0.5 mixes in class scores)")  # fmt: skip
    expect(int(got[1]) != 0, "point 1 was assigned to GT 0, which did not select it: take the highest IoU among "
                             "the GTs for which the point is positive, not over all GTs")  # fmt: skip
    expect(int(got[2]) == -1, f"a point positive for no GT is background: -1, got {int(got[2])}")
    expected = torch.tensor([0, 1, -1, 2])
    expect(torch.equal(got, expected), f"expected {expected.tolist()}, got {got.tolist()}")


@exercise("6.4")
def test_conflicts_without_gt(impl):
    got = impl.resolve_conflicts(torch.zeros(0, 5, dtype=torch.bool), torch.zeros(0, 5), torch.zeros(0, 5))
    expect_shape(
        got, (5,), "gt_index of an image without GT", hint="with M = 0 every point is background (-1)"
    )
    expect(bool((got == -1).all()), f"no GT: every point is background (-1), got {got.tolist()}")


# Exercise 6.5 · soft_targets -------------------------------------------------------------------------------
def _soft_case():
    # GT 0 (class 2): final positives 0, 1. GT 1 (class 0): final positive 3. Point 2: background, though its
    # metric with GT 0 is the largest of the row (it went elsewhere or was never selected).
    gt_index = torch.tensor([0, 0, -1, 1])
    metric = torch.tensor([[0.2, 0.1, 0.6, 0.0], [0.0, 0.0, 0.0, 0.05]])
    iou = torch.tensor([[0.5, 0.9, 0.95, 0.0], [0.0, 0.0, 0.0, 0.4]])
    gt_labels = torch.tensor([2, 0])
    return gt_index, metric, iou, gt_labels


@exercise("6.5")
def test_soft_targets_hand_computed(impl):
    gt_index, metric, iou, gt_labels = _soft_case()
    got = impl.soft_targets(gt_index, metric, iou, gt_labels, 3)
    expect_shape(got, (4, 3), "soft targets [N, C]")
    eps = 1e-9
    expected = torch.zeros(4, 3)
    expected[0, 2] = 0.2 * 0.9 / (0.2 + eps)  # t · max IoU / max t over GT 0's positives {0, 1}
    expected[1, 2] = 0.1 * 0.9 / (0.2 + eps)
    expected[3, 0] = 0.05 * 0.4 / (0.05 + eps)
    nonzero_columns = got.abs().sum(0).nonzero()[:, 0].tolist()
    expect(set(nonzero_columns) <= {0, 2}, f"scores in columns {nonzero_columns}: the score goes at the GT's class "
                                           "column gt_labels[gt_index[n]], zero elsewhere")  # fmt: skip
    expect(float(got[2].abs().sum()) == 0.0, "a background point (gt_index -1) must have all-zero targets")
    raw = torch.zeros(4, 3)
    raw[0, 2], raw[1, 2], raw[3, 0] = 0.2, 0.1, 0.05
    expect(not torch.allclose(got, raw), "soft targets not normalised: these are the raw metrics t; use "
                                         "t · max IoU / (max t + eps), maxima over each GT's positives")  # fmt: skip
    own_iou = torch.zeros(4, 3)
    own_iou[0, 2], own_iou[1, 2], own_iou[3, 0] = 0.5, 0.9, 0.4
    expect(not torch.allclose(got, own_iou, atol=1e-6),
           "each positive got its own IoU: the target is its metric t rescaled per GT, t · max IoU / (max t + eps), "
           "so point 0 (the larger t) gets GT 0's best IoU, 0.9, and point 1 gets half of it")  # fmt: skip
    expect(
        not torch.allclose(got[[0, 3]].amax(1), torch.ones(2), atol=1e-4),
        "the best positive of each GT got 1: normalise t by max t AND scale by the GT's max IoU",
    )
    global_max = 0.05 * 0.9 / 0.2  # point 3 normalised by the maxima over all positives of the image
    expect(abs(float(got[3, 0]) - global_max) > 1e-4,
           "soft targets normalised by the image's global maxima: normalise per GT, by that GT's own largest t "
           "and largest IoU (point 3, GT 1's only positive, must get 0.4)")  # fmt: skip
    over_row = 0.2 * 0.95 / 0.6
    expect(abs(float(got[0, 2]) - over_row) > 1e-4,
           "maxima taken over every point of the GT's row; take them over that GT's final positives only "
           "(gt_index == m): point 2 is background")  # fmt: skip
    expect_close(got, expected, "soft targets", atol=1e-6)


@exercise("6.5")
def test_soft_targets_without_positives(impl):
    got = impl.soft_targets(torch.full((4,), -1), torch.rand(2, 4), torch.rand(2, 4), torch.tensor([0, 1]), 3)
    expect_shape(got, (4, 3), "soft targets with no positive")
    expect(
        bool(torch.isfinite(got).all()) and float(got.abs().sum()) == 0.0,
        "no positive: all targets 0, no NaN",
    )
    empty = impl.soft_targets(
        torch.full((4,), -1), torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 3
    )
    expect_shape(empty, (4, 3), "soft targets of an image without GT")


# Exercise 6.6 · assign_image -------------------------------------------------------------------------------
def _compare(got, expected, what):
    expect(isinstance(got, dict) and set(RESULT_KEYS) <= set(got),
           f"{what}: assign_image must return a dict with keys {list(RESULT_KEYS)}")  # fmt: skip
    background = ~expected["fg_mask"]
    if got["labels"].shape == expected["labels"].shape and bool(background.any()):
        found = sorted(set(got["labels"][background].tolist()))
        expect(found == [int(expected["labels"][background][0])],
               f"{what}: background label {found}: a background point's label is num_classes (one past the "
               "last class), not -1 or 0")  # fmt: skip
    for name in ("fg_mask", "gt_index", "labels"):
        expect_shape(got[name], tuple(expected[name].shape), f"{what}: {name}")
        differ = (got[name] != expected[name]).sum().item()
        expect(differ == 0, f"{what}: {name} differs from the package's assigner at {differ} points "
                            f"({int(got['fg_mask'].sum())} positives vs {int(expected['fg_mask'].sum())})")  # fmt: skip
    expect_close(got["boxes"], expected["boxes"], f"{what}: target boxes", hint="zeros for background")
    expect_close(got["scores"], expected["scores"], f"{what}: soft targets", atol=1e-6)


def _same_assignment(a: dict, b: dict) -> bool:
    """Same positives and the same soft targets (an ignored alpha/beta may change only the targets)."""
    return torch.equal(a["fg_mask"], b["fg_mask"]) and torch.allclose(a["scores"], b["scores"], atol=1e-6)


@exercise("6.6")
def test_assign_matches_the_package_on_random_images(impl):
    for seed, num_gts, options in (
        (0, 6, {}),
        (1, 10, {"topk": 5}),
        (2, 4, {"center_radius": 2.5}),
        (3, 8, {"alpha": 0.5, "beta": 4.0}),
    ):
        inputs = _random_image(num_gts, seed)
        got = impl.assign_image(*inputs, NUM_CLASSES, **options)
        if options and isinstance(got, dict) and "fg_mask" in got:
            expected = _package_assign(*inputs, **options)
            with_defaults = _package_assign(*inputs)
            if not _same_assignment(got, expected) and _same_assignment(got, with_defaults):
                expect(False, f"random image {seed}: the result ignores {options}: the options {list(options)} are "
                              "not passed on to your rule functions (the defaults were used)")  # fmt: skip
        _compare(
            got,
            _package_assign(*inputs, **options),
            f"random image {seed} ({num_gts} GTs, {options or 'defaults'})",
        )


@exercise("6.6")
def test_assign_is_invariant_to_gt_order(impl):
    pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes = _random_image(9, seed=5)
    got = impl.assign_image(pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes, NUM_CLASSES)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    shuffled = impl.assign_image(
        pred_scores, pred_boxes, points, strides, gt_labels[order], gt_boxes[order], NUM_CLASSES
    )
    for name in ("labels", "boxes", "scores", "fg_mask"):
        expect_close(shuffled[name].float(), got[name].float(), f"{name} after shuffling the GTs", atol=1e-6,
                     hint="the assignment must not depend on the order of the GTs")  # fmt: skip
    mapped = torch.where(shuffled["fg_mask"], order[shuffled["gt_index"].clamp(min=0)], -1)
    expect(
        torch.equal(mapped, got["gt_index"]),
        "gt_index after shuffling the GTs does not point to the same boxes",
    )


@exercise("6.6")
def test_assign_edge_cases(impl):
    pred_scores, pred_boxes, points, strides, _, _ = _random_image(1, seed=7)
    none = impl.assign_image(pred_scores, pred_boxes, points, strides, torch.zeros(0, dtype=torch.int64),
                             torch.zeros(0, 4), NUM_CLASSES)  # fmt: skip
    expect(not bool(none["fg_mask"].any()), "an image without GT must be all background")
    expect(bool((none["labels"] == NUM_CLASSES).all()), f"background label is num_classes = {NUM_CLASSES}")
    expect(bool(torch.isfinite(none["scores"]).all()), "no GT: scores must be finite (no NaN)")
    # a 3-px GT between grid points (points sit at 4, 12, 20, ...) has no candidate and no positive
    tiny = torch.tensor([[5.0, 5.0, 8.0, 8.0], [16.0, 16.0, 56.0, 56.0]])
    out = impl.assign_image(pred_scores, pred_boxes, points, strides, torch.tensor([1, 2]), tiny, NUM_CLASSES)
    expect(not bool((out["gt_index"] == 0).any()), "a GT with no point inside it cannot get a positive")
    expect(bool((out["gt_index"] == 1).any()), "the 40-px GT should get positives")
