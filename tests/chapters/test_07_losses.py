"""Exercise tests of Chapter 7 (losses). Run against your notebook with ``make check CH=7``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, distance_box_iou_loss, generalized_box_iou_loss, sigmoid_focal_loss

from course.checks import exercise, expect, expect_close, expect_shape
from detector.boxes import ltrb_to_xyxy, make_points
from detector.config import LossConfig
from detector.losses import DetectionLoss, quality_focal_loss
from detector.model import DetectorOutput

CHAPTER = "07_losses"
NUM_CLASSES = 3
TOL = 1e-6


# Exercise 7.1 · sigmoid_focal_loss_ ------------------------------------------------------------------------
def _focal_inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 5, generator=generator) * 4
    hard = (torch.rand(6, 5, generator=generator) < 0.3).float()
    soft = torch.rand(6, 5, generator=generator) * hard  # TAL-like soft targets
    return logits, hard, soft


@exercise("7.1")
def test_focal_is_stable_for_large_logits_and_empty(impl):
    logits = torch.tensor([-200.0, -50.0, 50.0, 200.0])
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    got = impl.sigmoid_focal_loss_(logits, targets, alpha=-1)
    expect(bool(torch.isfinite(got).all()), f"loss {got.tolist()} is not finite for logits ±200: log(sigmoid(x)) "
                                           "underflows; use F.binary_cross_entropy_with_logits")  # fmt: skip
    expect_close(got, sigmoid_focal_loss(logits, targets, alpha=-1), "focal loss at large logits", atol=1e-4)
    empty = impl.sigmoid_focal_loss_(torch.zeros(0, 4), torch.zeros(0, 4), reduction="sum")
    expect(bool(torch.isfinite(empty)) and float(empty) == 0.0, "the sum over an empty tensor is 0")


@exercise("7.1")
def test_focal_matches_torchvision(impl):
    logits, hard, soft = _focal_inputs()
    got = impl.sigmoid_focal_loss_(logits, hard)
    expected = sigmoid_focal_loss(logits, hard)
    expect_shape(got, (6, 5), "focal loss with reduction='none'", hint="elementwise: one loss per logit")
    ce = F.binary_cross_entropy_with_logits(logits, hard, reduction="none")
    expect(not torch.allclose(got, ce, atol=TOL), "this is plain BCE: multiply by α_t · (1 - p_t)^γ")
    expect(not torch.allclose(got, ce * (1 - torch.sigmoid(logits)) ** 2 * (0.25 * hard + 0.75 * (1 - hard)), atol=TOL),
           "the modulating factor uses (1 - p)^γ; it must be (1 - p_t)^γ with p_t = p·y + (1-p)(1-y)")  # fmt: skip
    expect(not torch.allclose(got, ce * (1 - (torch.sigmoid(logits) * hard + (1 - torch.sigmoid(logits)) * (1 - hard))) ** 2, atol=TOL),
           "the α weighting is missing: α_t = α·y + (1 - α)(1 - y)")  # fmt: skip
    p_t = torch.sigmoid(logits) * hard + (1 - torch.sigmoid(logits)) * (1 - hard)
    expect(not torch.allclose(got, ce * (1 - p_t) ** 2 * (0.75 * hard + 0.25 * (1 - hard)), atol=TOL),
           "α and 1 - α are swapped: α weights the positive side (y = 1), 1 - α the negative side")  # fmt: skip
    expect_close(got, expected, "focal loss vs torchvision.ops.sigmoid_focal_loss", atol=TOL)
    for alpha, gamma in ((0.5, 0.0), (-1.0, 1.5), (0.25, 2.0)):
        expect_close(impl.sigmoid_focal_loss_(logits, soft, alpha=alpha, gamma=gamma),
                     sigmoid_focal_loss(logits, soft, alpha=alpha, gamma=gamma),
                     f"focal loss with soft targets, alpha={alpha}, gamma={gamma}", atol=TOL,
                     hint="use the alpha and gamma arguments; alpha < 0 means no α weighting")  # fmt: skip


@exercise("7.1")
def test_focal_reductions_and_gamma_zero(impl):
    logits, hard, soft = _focal_inputs(1)
    for reduction in ("mean", "sum"):
        got = impl.sigmoid_focal_loss_(logits, soft, reduction=reduction)
        expect_shape(got, (), f"focal loss with reduction='{reduction}'")
        expect_close(
            got, sigmoid_focal_loss(logits, soft, reduction=reduction), f"reduction='{reduction}'", atol=TOL
        )
    bce = F.binary_cross_entropy_with_logits(logits, hard, reduction="none")
    expect_close(impl.sigmoid_focal_loss_(logits, hard, alpha=-1, gamma=0.0), bce, "gamma=0 and no alpha: plain BCE",
                 atol=TOL)  # fmt: skip


# Exercise 7.2 · quality_focal_loss_ -------------------------------------------------------------------------
@exercise("7.2")
def test_qfl_matches_the_package(impl):
    logits, hard, soft = _focal_inputs(2)
    got = impl.quality_focal_loss_(logits, soft)
    expect_shape(got, (6, 5), "QFL with reduction='none'", hint="elementwise: one loss per logit")
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
    expect(
        not torch.allclose(got, ce, atol=TOL),
        "this is plain BCE: multiply by the modulating factor |t - p|^β",
    )
    p_t = prob * soft + (1 - prob) * (1 - soft)
    expect(not torch.allclose(got, ce * (1 - p_t) ** 2, atol=TOL),
           "this is the focal loss's factor (1 - p_t)^γ; QFL's factor is the distance to the soft target, "
           "|t - p|^β, which vanishes at p = t")  # fmt: skip
    ce_hard = F.binary_cross_entropy_with_logits(logits, (soft > 0).float(), reduction="none")
    expect(not torch.allclose(got, ce_hard * (soft - prob).abs() ** 2, atol=TOL),
           "the BCE is taken against the hard label 1 at positives; QFL's BCE is against the soft target t")  # fmt: skip
    expect(not torch.allclose(got, ce * prob**2, atol=TOL),
           "the factor p^β is what |t - p|^β becomes for a negative (t = 0) only; for a positive the factor is the "
           "distance to its soft target, |t - p|^β")  # fmt: skip
    expect(not torch.allclose(got, (soft - prob).abs() ** 2, atol=TOL),
           "the BCE factor is missing: QFL = |t - p|^β · BCE(p, t)")  # fmt: skip
    expect_close(got, quality_focal_loss(logits, soft), "QFL vs detector.losses.quality_focal_loss", atol=TOL)
    for reduction in ("mean", "sum"):
        value = impl.quality_focal_loss_(logits, soft, reduction=reduction)
        expect_shape(value, (), f"QFL with reduction='{reduction}'")
        expect_close(value, quality_focal_loss(logits, soft, reduction=reduction), f"reduction='{reduction}'",
                     atol=1e-5)  # fmt: skip


@exercise("7.2")
def test_qfl_beta_and_odd_exponents(impl):
    logits, _, soft = _focal_inputs(3)
    for beta in (1.0, 1.5, 3.0):
        got = impl.quality_focal_loss_(logits, soft, beta=beta)
        expect_shape(got, (6, 5), f"QFL with beta={beta}")
        if bool(torch.isnan(got).any()) or bool((got < 0).any()):
            expect(False, f"beta={beta}: negative or NaN losses where p > t: the modulating factor is the "
                          "ABSOLUTE distance |t - p|^β (a signed (t - p)^β is only right for even β)")  # fmt: skip
        expect(not torch.allclose(got, quality_focal_loss(logits, soft, beta=2.0), atol=TOL),
               f"with beta={beta} your loss equals QFL with beta=2: use the beta argument, not a constant 2")  # fmt: skip
        expect_close(got, quality_focal_loss(logits, soft, beta=beta), f"QFL with beta={beta}", atol=TOL)


@exercise("7.2")
def test_qfl_minimum_is_at_the_soft_target(impl):
    p = torch.linspace(1e-4, 1 - 1e-4, 20_001, dtype=torch.float64)
    logits = torch.logit(p)
    for t in (0.1, 0.3, 0.7, 0.9):
        loss = impl.quality_focal_loss_(logits, torch.full_like(logits, t))
        expect_shape(loss, tuple(logits.shape), f"QFL over a grid of p (t = {t})")
        best = float(p[loss.argmin()])
        expect(abs(best - t) < 1e-3, f"for the soft target t = {t} your loss is smallest at p = {best:.3f}; QFL's "
                                     "minimum must be the target itself (the factor |t - p|^β vanishes there)")  # fmt: skip


@exercise("7.2")
def test_qfl_is_stable_for_large_logits(impl):
    logits = torch.tensor([-200.0, -90.0, 90.0, 200.0])
    targets = torch.tensor([0.7, 0.0, 0.3, 1.0])
    got = impl.quality_focal_loss_(logits, targets)
    expect(bool(torch.isfinite(got).all()), f"loss {got.tolist()} is not finite for logits ±200: log(sigmoid(x)) "
                                           "reaches -inf in float32; compute the BCE from the logits stably")  # fmt: skip
    expect_close(got, quality_focal_loss(logits, targets), "QFL at large logits", rtol=1e-4, atol=1e-3)
    empty = impl.quality_focal_loss_(torch.zeros(0, 4), torch.zeros(0, 4), reduction="sum")
    expect(bool(torch.isfinite(empty)) and float(empty) == 0.0, "the sum over an empty tensor is 0")


# Exercises 7.3-7.5 · IoU family ----------------------------------------------------------------------------
def _box_pairs():
    """Overlapping, nested, identical, disjoint, touching, and degenerate (zero width, zero area) pairs."""
    boxes1 = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],
            [2.0, 2.0, 8.0, 8.0],
            [5.0, 5.0, 15.0, 25.0],
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [3.0, 3.0, 3.0, 9.0],
            [4.0, 4.0, 4.0, 4.0],
            [1.5, 2.5, 30.0, 12.0],
        ]
    )
    boxes2 = torch.tensor(
        [
            [5.0, 5.0, 15.0, 15.0],
            [0.0, 0.0, 10.0, 10.0],
            [5.0, 5.0, 15.0, 25.0],
            [20.0, 30.0, 25.0, 40.0],
            [10.0, 0.0, 20.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [4.0, 4.0, 4.0, 4.0],
            [20.0, 1.0, 22.0, 50.0],
        ]
    )
    return boxes1, boxes2


def _random_pairs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(2, 3, 5, 2, generator=generator) * 50
    size = torch.rand(2, 3, 5, 2, generator=generator) * 40 + 1
    boxes = torch.cat((corner, corner + size), -1)
    return boxes[0], boxes[1]  # [3, 5, 4] each: leading batch dims


@exercise("7.3")
def test_iou_hand_computed_edge_cases(impl):
    boxes1, boxes2 = _box_pairs()
    iou, union = impl.iou_and_union(boxes1, boxes2)
    expect_shape(iou, (8,), "IoU of 8 pairs")
    # inter 25, union 175 | nested 36 / 100 | identical | disjoint | touching | zero width | both points | partial
    inter = torch.tensor([25.0, 36.0, 200.0, 0.0, 0.0, 0.0, 0.0, 2.0 * 9.5])
    expected_union = torch.tensor(
        [175.0, 100.0, 200.0, 150.0, 200.0, 100.0, 0.0, 28.5 * 9.5 + 2.0 * 49.0 - 19.0]
    )
    if bool(torch.isnan(iou).any()):
        expect(False, "NaN IoU for two zero-area boxes: divide by (union + eps)")
    expect(float(iou[3]) == 0.0 and float(iou[4]) == 0.0,
           f"disjoint and touching boxes must have IoU 0, got {iou[3].item():.4f}, {iou[4].item():.4f}: clamp the "
           "overlap width and height at 0 separately (two negative sides multiply to a positive area)")  # fmt: skip
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    expect(not torch.allclose(union, area(boxes1) + area(boxes2), atol=1e-4),
           "the union counts the overlap twice: union = area1 + area2 - intersection")  # fmt: skip
    expect_close(union, expected_union, "union of the hand-built pairs", atol=1e-4)
    expect_close(iou, inter / (expected_union + 1e-7), "IoU of the hand-built pairs", atol=TOL)


@exercise("7.3")
def test_iou_against_torchvision(impl):
    boxes1, boxes2 = _random_pairs()
    iou, union = impl.iou_and_union(boxes1, boxes2)
    expect_shape(
        iou, (3, 5), "IoU of [3, 5, 4] boxes", hint="elementwise over the leading dims, not pairwise"
    )
    expected = torch.stack([box_iou(a, b).diagonal() for a, b in zip(boxes1, boxes2, strict=True)])
    expect_close(iou, expected, "IoU vs torchvision.ops.box_iou (diagonal)", atol=TOL)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    expect_close(union, area(boxes1) + area(boxes2) - iou * union, "union = area1 + area2 - inter", atol=1e-3)


def _check_against(loss_fn, reference, name):
    for what, (boxes1, boxes2) in (("hand-built pairs (disjoint, touching, degenerate)", _box_pairs()),
                                   ("random boxes [3, 5, 4]", _random_pairs(1))):  # fmt: skip
        got = loss_fn(boxes1, boxes2)
        expected = reference(boxes1.reshape(-1, 4), boxes2.reshape(-1, 4)).reshape(boxes1.shape[:-1])
        expect_shape(
            got, tuple(expected.shape), f"{name} of {what}", hint="reduction='none' keeps one loss per pair"
        )
        expect(bool(torch.isfinite(got).all()), f"{name} of {what} is not finite: {got.flatten().tolist()}")
        expect_close(got, expected, f"{name} of {what} vs torchvision", atol=TOL)
    boxes1, boxes2 = _random_pairs(2)
    boxes1, boxes2 = boxes1.reshape(-1, 4), boxes2.reshape(-1, 4)
    for reduction in ("mean", "sum"):
        expect_close(loss_fn(boxes1, boxes2, reduction=reduction), reference(boxes1, boxes2, reduction=reduction),
                     f"{name}, reduction='{reduction}'", atol=1e-5)  # fmt: skip
    empty = torch.zeros(0, 4)
    expect_shape(loss_fn(empty, empty), (0,), f"{name} of no boxes, reduction='none'")
    for reduction in ("mean", "sum"):
        value = loss_fn(empty, empty, reduction=reduction)
        expect(
            bool(torch.isfinite(value)) and float(value) == 0.0,
            f"{name} of no boxes with reduction='{reduction}' must be 0 (the mean of nothing is not NaN here)",
        )


@exercise("7.4")
def test_giou_against_torchvision(impl):
    boxes1, boxes2 = _box_pairs()
    got = impl.giou_loss(boxes1, boxes2)
    expected = generalized_box_iou_loss(boxes1, boxes2)
    if (
        isinstance(got, torch.Tensor)
        and got.shape == expected.shape
        and not torch.allclose(got, expected, atol=TOL)
    ):
        iou, union = impl.iou_and_union(boxes1, boxes2)
        expect(not torch.allclose(got, 1 - iou, atol=TOL), "this is the plain IoU loss: add (|C| - U) / |C|, C the "
                                                           "smallest box enclosing both")  # fmt: skip
        inner = torch.minimum(boxes1[..., 2:], boxes2[..., 2:]) - torch.maximum(
            boxes1[..., :2], boxes2[..., :2]
        )
        area_inner = inner[..., 0] * inner[..., 1]
        expect(not torch.allclose(got, 1 - iou + (area_inner - union) / (area_inner + 1e-7), atol=TOL),
               "C is built like the intersection: the enclosing box spans from the SMALLER left/top sides to the "
               "LARGER right/bottom sides of the pair")  # fmt: skip
        outer = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(
            boxes1[..., :2], boxes2[..., :2]
        )
        area_c = outer[..., 0] * outer[..., 1]
        expect(not torch.allclose(got, 1 - iou + (area_c - union) / (union + 1e-7), atol=TOL),
               "the penalty is the empty part of C divided by |C|, not by the union: (|C| - U) / |C|")  # fmt: skip
    _check_against(impl.giou_loss, generalized_box_iou_loss, "GIoU loss")


@exercise("7.4")
def test_giou_hand_computed(impl):
    # disjoint 10x10 boxes side by side with a 10-px gap: IoU 0, C = 30 x 10, U = 200 → 1 + 100 / 300
    got = impl.giou_loss(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[20.0, 0.0, 30.0, 10.0]]))
    expect_close(got, torch.tensor([1 + 100 / (300 + 1e-7)]), "GIoU loss of two disjoint boxes", atol=TOL)


@exercise("7.5")
def test_diou_against_torchvision(impl):
    boxes1, boxes2 = _box_pairs()
    got = impl.diou_loss(boxes1, boxes2)
    expected = distance_box_iou_loss(boxes1, boxes2)
    if (
        isinstance(got, torch.Tensor)
        and got.shape == expected.shape
        and not torch.allclose(got, expected, atol=TOL)
    ):
        iou = impl.iou_and_union(boxes1, boxes2)[0]
        centres = lambda b: (b[..., :2] + b[..., 2:]) / 2  # noqa: E731
        rho2 = (centres(boxes1) - centres(boxes2)).pow(2).sum(-1)
        c = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])
        expect(
            not torch.allclose(got, 1 - iou + rho2.sqrt() / (c.pow(2).sum(-1) + 1e-7).sqrt(), atol=TOL),
            "the penalty is the SQUARED centre distance over the SQUARED diagonal, ρ² / c²",
        )
        expect(
            not torch.allclose(got, 1 - iou + rho2 / (c.pow(2).sum(-1) + 1e-7) - 1, atol=TOL),
            "loss = 1 - IoU + ρ² / c²",
        )
        halves = lambda b: (b[..., 2:] - b[..., :2]) / 2  # noqa: E731
        half_gap = (halves(boxes1) - halves(boxes2)).pow(2).sum(-1)
        expect(not torch.allclose(got, 1 - iou + half_gap / (c.pow(2).sum(-1) + 1e-7), atol=TOL),
               "ρ is measured between half-sizes: the centre of a box is the mean of its corners, "
               "((x1 + x2) / 2, (y1 + y2) / 2)")  # fmt: skip
        own = (boxes1[..., 2:] - boxes1[..., :2]).pow(2).sum(-1) + 1e-7
        expect(not torch.allclose(got, 1 - iou + rho2 / own, atol=TOL),
               "c is the diagonal of the smallest box enclosing BOTH boxes, not of one of them")  # fmt: skip
    _check_against(impl.diou_loss, distance_box_iou_loss, "DIoU loss")


@exercise("7.5")
def test_diou_hand_computed(impl):
    # same two boxes: centres 20 px apart, C = 30 x 10, c² = 1000 → 1 + 400 / 1000
    got = impl.diou_loss(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[20.0, 0.0, 30.0, 10.0]]))
    expect_close(got, torch.tensor([1 + 400 / (1000 + 1e-7)]), "DIoU loss of two disjoint boxes", atol=TOL)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]], requires_grad=True)
    loss = impl.diou_loss(boxes, torch.tensor([[30.0, 0.0, 40.0, 10.0]]), reduction="sum")
    (grad,) = torch.autograd.grad(loss, boxes)
    expect(float(grad[0, [0, 2]].sum()) < 0, "for disjoint boxes DIoU must pull the box towards the GT (a negative "
                                             "gradient on x when the GT is to the right)")  # fmt: skip


# Exercise 7.6 · detection_loss -----------------------------------------------------------------------------
def _fake_batch(seed: int = 0, with_gts: bool = True):
    """Model-like outputs on a 64-px input (strides 8, 16), two images, GTs padded to M = 3."""
    generator = torch.Generator().manual_seed(seed)
    points, strides = make_points([(8, 8), (4, 4)], (8, 16))
    num_points = len(points)
    cls_logits = (torch.randn(2, num_points, NUM_CLASSES, generator=generator) - 2).requires_grad_()
    box_ltrb = (
        (torch.rand(2, num_points, 4, generator=generator) * 3 + 0.5).mul(strides[:, None]).requires_grad_()
    )
    obj_logits = (torch.randn(2, num_points, 1, generator=generator) - 2).requires_grad_()
    gt_boxes = torch.tensor([[[4.0, 6.0, 40.0, 50.0], [30.0, 20.0, 60.0, 44.0], [0.0, 0.0, 0.0, 0.0]],
                             [[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # fmt: skip
    gt_labels = torch.tensor([[0, 2, 0], [1, 0, 0]])
    gt_mask = torch.tensor([[True, True, False], [True, False, False]]) & with_gts
    outputs = DetectorOutput(cls_logits, box_ltrb, obj_logits, points, strides)
    return outputs, gt_labels, gt_boxes, gt_mask


def _run_both(impl, seed: int = 0, with_gts: bool = True):
    outputs, gt_labels, gt_boxes, gt_mask = _fake_batch(seed, with_gts)
    config = LossConfig(cls="qfl", box="diou", obj="bce", cls_weight=1.0, box_weight=2.5, obj_weight=1.0)
    reference = DetectionLoss(NUM_CLASSES, config)(outputs, gt_labels, gt_boxes, gt_mask)
    pred_boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb)
    weights = {"cls": 1.0, "box": 2.5, "obj": 1.0}
    total, terms = impl.detection_loss(
        outputs.cls_logits, pred_boxes, outputs.obj_logits.squeeze(-1), reference.assignment, weights
    )
    return outputs, reference, total, terms


@exercise("7.6")
def test_detection_loss_matches_the_package(impl):
    outputs, reference, total, terms = _run_both(impl)
    expect(
        isinstance(terms, dict) and set(terms) == {"cls", "box", "obj"},
        "return (total, {'cls', 'box', 'obj'})",
    )
    assigned = reference.assignment
    fg = assigned.fg_mask
    normaliser = assigned.scores.sum().clamp(min=1)
    by_count = normaliser / fg.sum()
    for name in ("cls", "box", "obj"):
        got, expected = terms[name].detach(), reference.components[name]
        expect_shape(got, (), f"the '{name}' term", hint="each term is a 0-dim tensor")
        if torch.allclose(got, expected * by_count, rtol=1e-4):
            expect(False, f"'{name}' is normalised by the number of positives; divide by the sum of the target "
                          "scores, max(1, assigned.scores.sum())")  # fmt: skip
        if torch.allclose(got, expected * normaliser, rtol=1e-4):
            expect(False, f"'{name}' is not normalised: divide by max(1, assigned.scores.sum())")
    pred_boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb)
    if not torch.allclose(terms["cls"].detach(), reference.components["cls"], rtol=1e-4):
        focal = sigmoid_focal_loss(outputs.cls_logits, assigned.scores, reduction="sum").detach() / normaliser
        expect(not torch.allclose(terms["cls"].detach(), focal, rtol=1e-4),
               "the classification term uses the focal loss, whose minimum is not the soft target; this "
               "aggregator uses the Quality Focal Loss (your quality_focal_loss_)")  # fmt: skip
    if not torch.allclose(terms["obj"].detach(), reference.components["obj"], rtol=1e-4):
        hard_obj = F.binary_cross_entropy_with_logits(
            outputs.obj_logits.squeeze(-1), fg.float(), reduction="sum"
        )
        expect(not torch.allclose(terms["obj"].detach(), hard_obj.detach() / normaliser, rtol=1e-4),
               "the objectness target is 1 at positives; it must be the IoU of each positive's predicted box with "
               "its GT (detached), 0 for negatives")  # fmt: skip
    if not torch.allclose(terms["box"].detach(), reference.components["box"], rtol=1e-4):
        unweighted = (
            2.5 * distance_box_iou_loss(pred_boxes[fg], assigned.boxes[fg]).detach().sum() / normaliser
        )
        expect(not torch.allclose(terms["box"].detach(), unweighted, rtol=1e-4),
               "the box loss is not weighted: multiply each positive's DIoU loss by its target score "
               "(assigned.scores[fg].sum(-1))")  # fmt: skip
    for name in ("cls", "box", "obj"):
        expect_close(terms[name], reference.components[name], f"the '{name}' term vs the package's DetectionLoss",
                     rtol=1e-4, atol=1e-6)  # fmt: skip
    expect_close(total, reference.total, "total vs the package's DetectionLoss", rtol=1e-4, atol=1e-6)


@exercise("7.6")
def test_detection_loss_gradients_match_the_package(impl):
    outputs, reference, total, _ = _run_both(impl, seed=1)
    inputs = (outputs.cls_logits, outputs.box_ltrb, outputs.obj_logits)
    ours = torch.autograd.grad(total, inputs, allow_unused=True)
    theirs = torch.autograd.grad(reference.total, inputs)
    names = ("cls_logits", "box_ltrb", "obj_logits")
    for name, got, expected in zip(names, ours, theirs, strict=True):
        expect(got is not None, f"the loss does not depend on {name}")
        negatives = ~reference.assignment.fg_mask  # [B, N]
        silent_negatives = float(got[negatives].abs().sum()) == 0 < float(expected[negatives].abs().sum())
        if name != "box_ltrb" and silent_negatives:
            expect(False, f"no gradient reaches {name} at the negatives: that loss runs over the positives only; it "
                          "runs over ALL points (target 0 for negatives, which must learn to say 'background')")  # fmt: skip
        if name == "box_ltrb" and not torch.allclose(got, expected, rtol=1e-3, atol=1e-6):
            expect(False, "the gradient on the boxes differs from the package's: is the objectness target (the IoU "
                          "of each positive's box) detached? It must not train the boxes")  # fmt: skip
        expect_close(got, expected, f"gradient of the total w.r.t. {name}", rtol=1e-3, atol=1e-6)


@exercise("7.6")
def test_detection_loss_without_positives(impl):
    outputs, reference, total, terms = _run_both(impl, seed=2, with_gts=False)
    expect(int(reference.assignment.fg_mask.sum()) == 0, "internal: the batch should have no positive")
    expect(
        bool(torch.isfinite(total)),
        f"no positives: the total must be finite, got {total.item()} (a mean over "
        "zero positives is NaN: sum the weighted box losses)",
    )
    box_term = float(terms["box"].detach())
    expect(box_term == 0.0, f"no positives: the box term must be 0, got {box_term}")
    expect(isinstance(terms["box"], torch.Tensor) and terms["box"].requires_grad,
           "no positives: the box term must still be a tensor in the graph (sum over the empty selection), "
           "not a Python 0 or a detached constant")  # fmt: skip
    (grad,) = torch.autograd.grad(total, outputs.box_ltrb, allow_unused=True)
    expect(grad is None or bool(torch.isfinite(grad).all()), "no positives: NaN gradients on the boxes")
    expect_close(total, reference.total, "total without positives vs the package", rtol=1e-4, atol=1e-6)
