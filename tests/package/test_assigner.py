"""Task-Aligned and per-level assigners: hand-built cases for each rule, invariances, a loop reference."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchvision.ops import box_iou

from detector.assigner import (
    BYTES_PER_TRIPLE,
    IGNORE_LABEL,
    PerLevelAssigner,
    TaskAlignedAssigner,
    fcos_scale_ranges,
)
from detector.boxes import ltrb_to_xyxy, make_points
from detector.config import LossConfig
from detector.data import pad_targets
from detector.losses import DetectionLoss

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("labels", "boxes", "scores", "fg_mask", "gt_index", "num_unassigned_gts")


def assert_same(result, expected, fields=FIELDS):
    """Equal targets; scores to float32 rounding (``pow`` rounds differently in its vectorised and scalar
    paths, and which one an element takes depends on how many candidates a chunk has)."""
    for field in fields:
        got, want = getattr(result, field), getattr(expected, field)
        if field == "scores":
            assert torch.allclose(got, want, rtol=1e-6, atol=1e-7), (
                f"scores: max diff {(got - want).abs().max()}"
            )
        else:
            assert torch.equal(got, want), f"{field}: max diff {(got.float() - want.float()).abs().max()}"


def grid_64():
    """A 64-px image at stride 8: 64 points at 4, 12, ..., 60."""
    return make_points([(8, 8)], [8])


def perfect_predictions(points, gt_box, num_classes=2, prob=0.5):
    """Every point predicts ``gt_box`` (IoU 1) with probability ``prob`` for each class."""
    num_points = points.shape[0]
    return torch.full((1, num_points, num_classes), prob), gt_box.expand(1, num_points, 4).clone()


def point_set(points, fg_mask):
    return {tuple(p) for p in points[fg_mask].tolist()}


def random_batch(batch=3, num_gts=6, image_size=128, num_classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    points, strides = make_points([(image_size // s, image_size // s) for s in (8, 16, 32)], (8, 16, 32))
    sizes = 6 + torch.rand(batch, num_gts, 2, generator=generator) * 60
    corners = torch.rand(batch, num_gts, 2, generator=generator) * (image_size - sizes)
    ltrb = torch.rand(batch, points.shape[0], 4, generator=generator) * 3 * strides[:, None]
    return dict(
        pred_scores=torch.rand(batch, points.shape[0], num_classes, generator=generator),
        pred_boxes=ltrb_to_xyxy(points, ltrb),
        points=points,
        gt_labels=torch.randint(0, num_classes, (batch, num_gts), generator=generator),
        gt_boxes=torch.cat((corners, corners + sizes), dim=-1),
        gt_mask=torch.rand(batch, num_gts, generator=generator) > 0.2,
        strides=strides,
    )


def test_rule1_candidates_are_strictly_inside():
    points, _ = grid_64()
    for gt_box, expected in [
        (torch.tensor([8.0, 8.0, 24.0, 24.0]), {(12.0, 12.0), (20.0, 12.0), (12.0, 20.0), (20.0, 20.0)}),
        (torch.tensor([4.0, 4.0, 20.0, 20.0]), {(12.0, 12.0)}),  # points on the border are not inside
    ]:
        scores, boxes = perfect_predictions(points, gt_box)
        result = TaskAlignedAssigner(2)(
            scores, boxes, points, torch.tensor([[1]]), gt_box[None, None], torch.tensor([[True]])
        )
        assert point_set(points, result.fg_mask[0]) == expected
        assert (result.labels[0][result.fg_mask[0]] == 1).all() and (
            result.labels[0][~result.fg_mask[0]] == 2
        ).all()
        assert torch.equal(result.boxes[0][result.fg_mask[0]], gt_box.expand(len(expected), 4))


def test_rule1_center_sampling():
    points, strides = grid_64()
    gt_box = torch.tensor([0.0, 0.0, 64.0, 64.0])
    scores, boxes = perfect_predictions(points, gt_box)
    args = (scores, boxes, points, torch.tensor([[0]]), gt_box[None, None], torch.tensor([[True]]))
    near = TaskAlignedAssigner(2, topk=100, center_radius=1.0)(*args, strides=strides)
    assert point_set(points, near.fg_mask[0]) == {(x, y) for x in (28.0, 36.0) for y in (28.0, 36.0)}
    wider = TaskAlignedAssigner(2, topk=100, center_radius=2.4)(*args, strides=strides)  # |d| < 19.2 px
    assert point_set(points, wider.fg_mask[0]) == {
        (x, y) for x in (20.0, 28.0, 36.0, 44.0) for y in (20.0, 28.0, 36.0, 44.0)
    }
    with pytest.raises(ValueError, match="strides"):
        TaskAlignedAssigner(2, center_radius=1.0)(*args)


def test_rule2_3_topk_by_metric_and_ties_by_point_index():
    points, _ = grid_64()
    gt_box = torch.tensor([0.0, 0.0, 64.0, 64.0])
    scores, boxes = perfect_predictions(points, gt_box)
    scores[0, :, 1] = torch.rand(64, generator=torch.Generator().manual_seed(1))
    args = (boxes, points, torch.tensor([[1]]), gt_box[None, None], torch.tensor([[True]]))
    result = TaskAlignedAssigner(2, topk=5)(scores, *args)
    assert result.fg_mask.sum() == 5
    assert set(result.fg_mask[0].nonzero()[:, 0].tolist()) == set(scores[0, :, 1].topk(5).indices.tolist())
    tied = TaskAlignedAssigner(2, topk=5)(torch.full_like(scores, 0.5), *args)
    assert tied.fg_mask[0].nonzero()[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_rule3_fewer_candidates_than_topk_all_positive_even_at_zero_metric():
    points, _ = grid_64()
    gt_box = torch.tensor([8.0, 8.0, 24.0, 24.0])
    scores, boxes = perfect_predictions(points, gt_box, prob=0.0)  # t = 0 everywhere
    result = TaskAlignedAssigner(2, topk=13)(
        scores, boxes, points, torch.tensor([[0]]), gt_box[None, None], torch.tensor([[True]])
    )
    assert result.fg_mask.sum() == 4 and result.num_unassigned_gts == 0
    assert torch.isfinite(result.scores).all() and result.scores.sum() == 0


def two_gt_case(point_box):
    """One point at (10, 10) inside GT A = [0, 0, 30, 30] (class 0); GT B = [5, 5, 20, 20] (class 1)."""
    points = torch.tensor([[10.0, 10.0], [100.0, 100.0]])
    gt_boxes = torch.tensor([[[0.0, 0.0, 30.0, 30.0], [5.0, 5.0, 20.0, 20.0]]])
    pred_boxes = torch.stack((point_box, torch.tensor([90.0, 90.0, 110.0, 110.0])))[None]
    pred_scores = torch.tensor([[[0.9, 0.1], [0.5, 0.5]]])
    return (
        pred_scores,
        pred_boxes,
        points,
        torch.tensor([[0, 1]]),
        gt_boxes,
        torch.ones(1, 2, dtype=torch.bool),
    )


def test_rule4_conflict_goes_to_highest_iou_not_highest_metric():
    inputs = two_gt_case(torch.tensor([5.0, 5.0, 20.0, 21.0]))
    iou = box_iou(inputs[1][0, :1], inputs[4][0])[0]
    metric = inputs[0][0, 0] * iou  # alpha = beta = 1
    assert metric[0] > metric[1] and iou[1] > iou[0]  # the metric prefers A, the IoU prefers B
    result = TaskAlignedAssigner(2, alpha=1.0, beta=1.0)(*inputs)
    assert result.gt_index[0, 0] == 1 and result.labels[0, 0] == 1
    assert result.num_unassigned_gts == 1  # A lost its only positive to B


def test_rule4_only_among_the_gts_the_point_is_positive_for():
    pred_scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask = two_gt_case(
        torch.tensor([25.0, 25.0, 40.0, 40.0])
    )
    gt_boxes[0, 1] = torch.tensor([26.0, 26.0, 40.0, 40.0])  # the point (10, 10) is outside B, its box is not
    assert box_iou(pred_boxes[0, :1], gt_boxes[0])[0].argmax() == 1
    result = TaskAlignedAssigner(2)(pred_scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask)
    assert result.gt_index[0, 0] == 0 and result.labels[0, 0] == 0


def test_rule5_soft_targets_normalised_per_gt():
    inputs = random_batch()
    result = TaskAlignedAssigner(3)(**inputs)
    assert result.fg_mask.any(), "the random batch should have positives"
    checked_max = 0
    for image, point in result.fg_mask.nonzero().tolist():
        gt = result.gt_index[image, point]
        mine = result.gt_index[image] == gt
        label = inputs["gt_labels"][image, gt]
        iou = box_iou(inputs["gt_boxes"][image, gt][None], inputs["pred_boxes"][image][mine])[0]
        metric = inputs["pred_scores"][image][mine][:, label] * iou**6
        targets = result.scores[image][mine]
        expected = metric * iou.max() / (metric.max() + 1e-9)  # eps = 1e-9 as in the formula
        assert torch.allclose(targets[:, label], expected, rtol=1e-4, atol=1e-7)
        if metric.max() > 1e-4:  # eps negligible: the best-aligned positive gets the GT's best IoU
            assert torch.allclose(targets[:, label].max(), iou.max(), rtol=1e-4)
            checked_max += 1
        assert (targets[:, torch.arange(3) != label] == 0).all()
    assert (result.scores[~result.fg_mask] == 0).all() and checked_max > 0


def test_rule6_image_without_gt_and_zero_gts():
    inputs = random_batch(batch=2)
    inputs["gt_mask"][1] = False
    result = TaskAlignedAssigner(3)(**inputs)
    assert not result.fg_mask[1].any() and (result.labels[1] == 3).all() and (result.gt_index[1] == -1).all()
    assert torch.isfinite(result.scores).all() and result.scores[1].sum() == 0
    empty = dict(inputs, gt_labels=torch.zeros(2, 0, dtype=torch.long), gt_boxes=torch.zeros(2, 0, 4))
    empty["gt_mask"] = torch.zeros(2, 0, dtype=torch.bool)
    result = TaskAlignedAssigner(3)(**empty)
    assert result.labels.shape == (2, inputs["points"].shape[0]) and (result.labels == 3).all()
    assert result.scores.shape == inputs["pred_scores"].shape and result.num_unassigned_gts == 0


def test_rule6_gt_smaller_than_stride_is_counted():
    points, _ = grid_64()
    gt_boxes = torch.tensor(
        [[[1.0, 1.0, 3.0, 3.0], [8.0, 8.0, 24.0, 24.0]]]
    )  # the first holds no cell centre
    scores, boxes = perfect_predictions(points, gt_boxes[0, 1])
    result = TaskAlignedAssigner(2)(
        scores, boxes, points, torch.tensor([[0, 1]]), gt_boxes, torch.ones(1, 2, dtype=torch.bool)
    )
    assert result.num_unassigned_gts == 1 and (result.gt_index[result.fg_mask] == 1).all()


def test_padded_gts_are_ignored():
    inputs = random_batch()
    padded = {**inputs}
    padded["gt_boxes"] = torch.cat(
        (inputs["gt_boxes"], torch.tensor([0.0, 0.0, 128.0, 128.0]).expand(3, 2, 4)), 1
    )
    padded["gt_labels"] = torch.cat((inputs["gt_labels"], torch.full((3, 2), -1)), 1)
    padded["gt_mask"] = torch.cat((inputs["gt_mask"], torch.zeros(3, 2, dtype=torch.bool)), 1)
    assert_same(TaskAlignedAssigner(3)(**padded), TaskAlignedAssigner(3)(**inputs))


def test_invariant_to_gt_order():
    inputs = random_batch()
    permutation = torch.randperm(6, generator=torch.Generator().manual_seed(3))
    permuted = {
        **inputs,
        **{key: inputs[key][:, permutation] for key in ("gt_labels", "gt_boxes", "gt_mask")},
    }
    result, result_permuted = TaskAlignedAssigner(3)(**inputs), TaskAlignedAssigner(3)(**permuted)
    assert_same(result_permuted, result, ("labels", "boxes", "scores", "fg_mask", "num_unassigned_gts"))
    fg = result.fg_mask
    assert torch.equal(permutation[result_permuted.gt_index[fg]], result.gt_index[fg])


def test_batched_equals_per_image_and_chunked_equals_unchunked():
    inputs = random_batch(batch=4)
    whole = TaskAlignedAssigner(3)(**inputs)
    for image in range(4):
        single = {
            key: value[image : image + 1] if key not in ("points", "strides") else value
            for key, value in inputs.items()
        }
        alone = TaskAlignedAssigner(3)(**single)
        for field in ("labels", "boxes", "fg_mask", "gt_index"):
            assert torch.equal(getattr(alone, field)[0], getattr(whole, field)[image]), field
        assert torch.allclose(alone.scores[0], whole.scores[image], rtol=1e-6, atol=1e-7)
    triple_mb = inputs["points"].shape[0] * BYTES_PER_TRIPLE / 2**20  # one GT of one image
    for budget_mb in (6 * triple_mb * 2, triple_mb * 2, 1e-6):  # 2 images, 2 GTs, 1 GT per chunk
        assert_same(TaskAlignedAssigner(3, memory_budget_mb=budget_mb)(**inputs), whole)


def test_matches_loop_reference_of_the_benchmark():
    spec = importlib.util.spec_from_file_location("bench_assigner", ROOT / "benchmarks" / "bench_assigner.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    inputs = random_batch(batch=3, num_gts=8, seed=5)
    inputs.pop("strides")
    result, reference = TaskAlignedAssigner(3)(**inputs), bench.loop_assign(**inputs, num_classes=3)
    assert_same(result, reference, ("labels", "boxes", "fg_mask", "gt_index", "num_unassigned_gts"))
    assert torch.allclose(result.scores, reference.scores, atol=1e-6)


def test_no_gradient_and_low_precision_inputs():
    inputs = random_batch()
    inputs["pred_scores"].requires_grad_(True)
    inputs["pred_boxes"].requires_grad_(True)
    result = TaskAlignedAssigner(3)(**inputs)
    assert not result.scores.requires_grad and not result.boxes.requires_grad
    for dtype in (torch.float16, torch.bfloat16):
        low = {
            key: value.detach().to(dtype) if value.is_floating_point() else value
            for key, value in inputs.items()
        }
        upcast = {key: value.float() if value.is_floating_point() else value for key, value in low.items()}
        result = TaskAlignedAssigner(3)(**low)
        assert result.scores.dtype == torch.float32 and torch.isfinite(result.scores).all()
        assert_same(result, TaskAlignedAssigner(3)(**upcast))


def test_fcos_scale_ranges():
    _, strides = make_points([(2, 2), (1, 1), (1, 1)], (8, 16, 32))
    lower, upper = fcos_scale_ranges(strides)
    assert lower.tolist() == [0, 0, 0, 0, 64, 128] and upper.tolist() == [64, 64, 64, 64, 128, float("inf")]


def test_per_level_picks_the_expected_level():
    inputs = random_batch(batch=2, image_size=320)
    small, large = torch.tensor([100.0, 100.0, 140.0, 140.0]), torch.tensor([0.0, 0.0, 300.0, 300.0])
    inputs["gt_boxes"][0, :2], inputs["gt_mask"][0] = (
        torch.stack((small, large)),
        torch.tensor([True, True] + [False] * 4),
    )
    result = PerLevelAssigner(3)(**inputs)
    points, strides = inputs["points"], inputs["strides"]
    for gt, box, stride in ((0, small, 8.0), (1, large, 32.0)):  # reach < 40 px; reach >= 150 px
        inside = (points > box[:2]).all(-1) & (points < box[2:]).all(-1)
        mine = result.gt_index[0] == gt
        assert mine.any() and (strides[mine] == stride).all()
        assert torch.equal(mine, inside & (strides == stride))
    fg = result.fg_mask
    assert (
        torch.equal(result.scores[fg].sum(-1), torch.ones(int(fg.sum()))) and (result.scores[~fg] == 0).all()
    )


def test_per_level_ties_go_to_the_smallest_gt():
    points, strides = grid_64()
    gt_boxes = torch.tensor([[[0.0, 0.0, 40.0, 40.0], [8.0, 8.0, 24.0, 24.0]]])
    scores, boxes = perfect_predictions(points, gt_boxes[0, 0])
    result = PerLevelAssigner(2)(
        scores, boxes, points, torch.tensor([[0, 1]]), gt_boxes, torch.ones(1, 2, dtype=torch.bool), strides
    )
    inside_small = (points > 8).all(-1) & (points < 24).all(-1)
    assert (result.gt_index[0][inside_small] == 1).all() and (result.labels[0][inside_small] == 1).all()
    assert (result.gt_index[0][result.fg_mask[0] & ~inside_small] == 0).all()
    with pytest.raises(ValueError, match="strides"):
        PerLevelAssigner(2)(
            scores, boxes, points, torch.tensor([[0, 1]]), gt_boxes, torch.ones(1, 2, dtype=torch.bool)
        )


@pytest.mark.parametrize("assigner", [TaskAlignedAssigner(3), PerLevelAssigner(3)], ids=["tal", "per_level"])
@pytest.mark.parametrize("bad_label", [3, 7, -2])
def test_labels_outside_the_classes_are_an_error_not_clamped(assigner, bad_label):
    """A label >= C (a model built for fewer classes than the data) used to be clamped to C-1 silently."""
    inputs = random_batch()
    inputs["gt_mask"][1, 2] = True
    inputs["gt_labels"][1, 2] = bad_label
    with pytest.raises(
        ValueError, match=rf"labels \[{bad_label}\].*outside \[0, num_classes=3\).*num_classes"
    ):
        assigner(**inputs)
    inputs["gt_mask"][1, 2] = False  # the same value in a padded slot is fine
    assigner(**inputs)


@pytest.mark.parametrize("assigner", [TaskAlignedAssigner(3), PerLevelAssigner(3)], ids=["tal", "per_level"])
def test_crowd_regions_get_no_positive_and_their_points_are_ignored(assigner):
    """An ``iscrowd`` box (label IGNORE_LABEL): no point is assigned to it; the points inside it that no real
    GT took are flagged in ``ignore_mask``; the real GTs' assignment is the one without the crowd box."""
    inputs = random_batch(batch=2, image_size=128)
    crowd_box = torch.tensor([10.0, 10.0, 70.0, 50.0])
    with_crowd = dict(inputs)
    with_crowd["gt_boxes"] = torch.cat((inputs["gt_boxes"], crowd_box.expand(2, 1, 4)), 1)
    with_crowd["gt_labels"] = torch.cat((inputs["gt_labels"], torch.full((2, 1), IGNORE_LABEL)), 1)
    with_crowd["gt_mask"] = torch.cat((inputs["gt_mask"], torch.tensor([[True], [False]])), 1)
    result, reference = assigner(**with_crowd), assigner(**inputs)
    assert_same(result, reference)  # the crowd GT (index 6) wins no point and is not "unassigned"
    assert reference.ignore_mask is None
    points = inputs["points"]
    inside = (points > crowd_box[:2]).all(-1) & (points < crowd_box[2:]).all(-1)  # strictly inside
    assert torch.equal(result.ignore_mask[0], inside & ~result.fg_mask[0])
    assert result.ignore_mask[0].any() and not result.ignore_mask[1].any()  # image 1's crowd slot is padding


@pytest.mark.parametrize("cls", ["focal", "qfl", "varifocal", "bce"])
def test_loss_leaves_crowd_points_out_of_the_negatives(cls):
    """End to end from ``pad_targets``: an ``iscrowd`` box changes no positive, and the classification and
    objectness losses get no gradient at the background points inside it (they do elsewhere)."""
    points, strides = make_points([(8, 8)], [8])
    generator = torch.Generator().manual_seed(0)
    cls_logits = torch.randn(1, 64, 2, generator=generator, requires_grad=True)
    obj_logits = torch.randn(1, 64, 1, generator=generator, requires_grad=True)
    outputs = SimpleNamespace(cls_logits=cls_logits, obj_logits=obj_logits, points=points, strides=strides,
                              box_ltrb=torch.full((1, 64, 4), 6.0))  # fmt: skip
    crowd_box = [32.0, 32.0, 64.0, 64.0]
    target = {"boxes": torch.tensor([[0.0, 0.0, 24.0, 24.0], crowd_box]), "labels": torch.tensor([1, 0]),
              "iscrowd": torch.tensor([0, 1])}  # fmt: skip
    gt_labels, gt_boxes, gt_mask = pad_targets([target])
    assert gt_labels.tolist() == [[1, IGNORE_LABEL]]
    result = DetectionLoss(2, LossConfig(cls=cls))(outputs, gt_labels, gt_boxes, gt_mask)
    result.total.backward()
    ignored = result.assignment.ignore_mask[0]
    inside = (points > 32).all(-1) & (points < 64).all(-1)
    assert torch.equal(ignored, inside) and not result.assignment.fg_mask[0][inside].any()
    background = ~ignored & ~result.assignment.fg_mask[0]
    for grad in (cls_logits.grad[0], obj_logits.grad[0]):
        assert (grad[ignored] == 0).all() and (grad[background].abs().sum(-1) > 0).all()
