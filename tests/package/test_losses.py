"""DetectionLoss against torchvision's losses and hand-computed values; edge cases and precision."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import (
    box_iou,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from detector.assigner import AssignResult, PerLevelAssigner, TaskAlignedAssigner
from detector.boxes import ltrb_to_xyxy, make_points
from detector.config import AssignerConfig, ConfigError, LossConfig, load_config
from detector.losses import DetectionLoss, build_assigner, varifocal_loss

NUM_CLASSES = 3


class Outputs(NamedTuple):
    """Same field names as the model's DetectorOutput."""

    cls_logits: Tensor
    box_ltrb: Tensor
    obj_logits: Tensor
    points: Tensor
    strides: Tensor


def make_outputs(batch=2, image_size=64, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    points, strides = make_points([(image_size // s, image_size // s) for s in (8, 16, 32)], (8, 16, 32))
    num_points = points.shape[0]
    return Outputs(
        (torch.randn(batch, num_points, NUM_CLASSES, generator=generator) - 2).to(dtype).requires_grad_(),
        (torch.rand(batch, num_points, 4, generator=generator) * 2 * strides[:, None])
        .to(dtype)
        .requires_grad_(),
        torch.randn(batch, num_points, 1, generator=generator).to(dtype).requires_grad_(),
        points,
        strides,
    )


def make_targets(batch=2):
    gt_boxes = torch.tensor(
        [[[4.0, 6.0, 30.0, 40.0], [20.0, 16.0, 60.0, 58.0]], [[8.0, 8.0, 50.0, 30.0], [0.0, 0.0, 0.0, 0.0]]]
    )
    gt_labels = torch.tensor([[0, 2], [1, -1]])
    gt_mask = torch.tensor([[True, True], [True, False]])
    return gt_labels[:batch], gt_boxes[:batch], gt_mask[:batch]


def test_focal_with_soft_targets_matches_hand_computation():
    p, target, alpha, gamma = 0.3, 0.6, 0.25, 2.0
    logit = torch.tensor([[[math.log(p / (1 - p))]]])
    assigned = AssignResult(
        labels=torch.tensor([[0]]),
        boxes=torch.zeros(1, 1, 4),
        scores=torch.tensor([[[target]]]),
        fg_mask=torch.tensor([[True]]),
        gt_index=torch.tensor([[0]]),
        num_unassigned_gts=torch.tensor(0),
    )
    cross_entropy = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    expected = cross_entropy * (1 - p_t) ** gamma * (alpha * target + (1 - alpha) * (1 - target))
    loss = DetectionLoss(1, LossConfig(cls="focal")).cls_loss(logit, assigned)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Varifocal: BCE · q at a positive, BCE(p, 0) · 0.75 · p^gamma at a negative.
    assert varifocal_loss(logit, torch.tensor([[[target]]])).item() == pytest.approx(
        cross_entropy * target, rel=1e-5
    )
    negative = -math.log(1 - p) * 0.75 * p**gamma
    assert varifocal_loss(logit, torch.zeros(1, 1, 1)).item() == pytest.approx(negative, rel=1e-5)


@pytest.mark.parametrize(
    ("cls", "box", "obj"),
    [
        ("focal", "diou", "bce"),
        ("varifocal", "giou", "focal"),
        ("bce", "ciou", "bce"),
        ("qfl", "diou", "bce"),
    ],
)
def test_total_matches_torchvision_on_the_assignment(cls, box, obj):
    config = LossConfig(cls=cls, box=box, obj=obj, cls_weight=1.5, box_weight=2.5, obj_weight=0.5)
    outputs = make_outputs()
    result = DetectionLoss(NUM_CLASSES, config)(outputs, *make_targets())
    assigned = result.assignment
    assert result.num_positives == assigned.fg_mask.sum() > 0
    fg = assigned.fg_mask
    normaliser = assigned.scores.sum().clamp(min=1)
    pred_boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb).detach()
    logits, obj_logits = outputs.cls_logits.detach(), outputs.obj_logits.detach()[..., 0]
    if cls == "focal":
        cls_sum = sigmoid_focal_loss(logits, assigned.scores, reduction="sum")
    elif cls == "varifocal":
        cls_sum = varifocal_loss(logits, assigned.scores).sum()
    elif cls == "qfl":  # Li et al. 2020, Eq. 5, written out: |t - p|^2 · BCE(p, t)
        probs, t = logits.sigmoid(), assigned.scores
        cls_sum = ((t - probs).abs() ** 2 * -(t * probs.log() + (1 - t) * (1 - probs).log())).sum()
    else:
        cls_sum = F.binary_cross_entropy_with_logits(logits, assigned.scores, reduction="sum")
    box_fn = {"diou": distance_box_iou_loss, "giou": generalized_box_iou_loss, "ciou": complete_box_iou_loss}[
        box
    ]
    box_sum = (box_fn(pred_boxes[fg], assigned.boxes[fg]) * assigned.scores[fg].sum(-1)).sum()
    iou = torch.zeros(fg.shape)
    iou[fg] = box_iou(pred_boxes[fg], assigned.boxes[fg]).diagonal()
    if obj == "focal":
        obj_sum = sigmoid_focal_loss(obj_logits, iou, reduction="sum")
    else:
        obj_sum = F.binary_cross_entropy_with_logits(obj_logits, iou, reduction="sum")
    expected = {
        "cls": 1.5 * cls_sum / normaliser,
        "box": 2.5 * box_sum / normaliser,
        "obj": 0.5 * obj_sum / normaliser,
    }
    for name, value in expected.items():
        assert torch.allclose(result.components[name], value, rtol=1e-5, atol=1e-6), name
    assert torch.allclose(result.total, sum(expected.values()), rtol=1e-5)
    result.total.backward()
    assert all(
        torch.isfinite(t.grad).all() for t in (outputs.cls_logits, outputs.box_ltrb, outputs.obj_logits)
    )


# Each classification loss towards all-zero targets (no positives), from torchvision/torch alone: BCE; the focal
# loss (a negative weighs (1 - alpha) · p^gamma · BCE); varifocal (0.75 · p^gamma · BCE: the focal loss's weight at
# alpha 0.25); QFL (|0 - p|^2 · BCE: the focal loss without alpha).
BACKGROUND_ONLY = {
    "bce": lambda x: F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="sum"),
    "focal": lambda x: sigmoid_focal_loss(x, torch.zeros_like(x), reduction="sum"),
    "varifocal": lambda x: sigmoid_focal_loss(x, torch.zeros_like(x), alpha=0.25, reduction="sum"),
    "qfl": lambda x: sigmoid_focal_loss(x, torch.zeros_like(x), alpha=-1, reduction="sum"),
}


@pytest.mark.parametrize("recipe", ["default", "seed", *sorted(BACKGROUND_ONLY)])
def test_no_positives_is_finite_and_connected(recipe):
    outputs = make_outputs()
    gt_labels, gt_boxes, gt_mask = make_targets()
    if recipe == "seed":
        config = load_config("seed").loss
    else:
        config = LossConfig() if recipe == "default" else LossConfig(cls=recipe)
    result = DetectionLoss(NUM_CLASSES, config)(outputs, gt_labels, gt_boxes, torch.zeros_like(gt_mask))
    assert result.num_positives == 0 and result.components["box"] == 0
    assert torch.isfinite(result.total) and result.total.requires_grad
    if recipe == "seed":  # BCE on the positives only: nothing to learn from the classes
        assert result.components["cls"] == 0
    else:  # the background still learns: the loss towards all-zero targets, normalised by 1
        assert torch.allclose(result.components["cls"], BACKGROUND_ONLY[config.cls](outputs.cls_logits))
    result.total.backward()
    assert (outputs.box_ltrb.grad == 0).all()
    assert outputs.cls_logits.grad is not None and torch.isfinite(outputs.cls_logits.grad).all()


def test_no_gt_at_all_and_zero_width_gt_axis():
    outputs = make_outputs()
    empty = (torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.bool))
    result = DetectionLoss(NUM_CLASSES)(outputs, *empty)
    assert torch.isfinite(result.total) and result.num_positives == 0 and result.num_unassigned_gts == 0
    result.total.backward()
    assert (outputs.box_ltrb.grad == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_computed_in_float32(dtype):
    outputs = make_outputs(dtype=dtype)
    upcast = Outputs(*(t.detach().float().requires_grad_() if t.requires_grad else t for t in outputs))
    low, full = (
        DetectionLoss(NUM_CLASSES)(outputs, *make_targets()),
        DetectionLoss(NUM_CLASSES)(upcast, *make_targets()),
    )
    assert low.total.dtype == torch.float32 and torch.isfinite(low.total)
    assert torch.allclose(low.total, full.total, rtol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_autocast = DetectionLoss(NUM_CLASSES)(upcast, *make_targets())
    assert in_autocast.total.dtype == torch.float32 and torch.allclose(
        in_autocast.total, full.total, rtol=1e-5
    )
    low.total.backward()
    assert outputs.box_ltrb.grad.dtype == dtype and torch.isfinite(outputs.box_ltrb.grad.float()).all()


def test_seed_config_is_the_first_notebook_recipe_and_its_keys_can_be_changed():
    outputs = make_outputs()
    seed = DetectionLoss(NUM_CLASSES, load_config("seed").loss)
    assert isinstance(seed.assigner, PerLevelAssigner)
    first = seed(outputs, *make_targets())
    # Every key of the seed config is a plain loss key: changing one changes the loss (nothing overrides it).
    changed = DetectionLoss(NUM_CLASSES, load_config("seed", ["loss.obj_weight=0.1"]).loss)
    assert not torch.equal(first.total, changed(outputs, *make_targets()).total)
    fg = first.assignment.fg_mask
    one_hot = F.one_hot(first.assignment.labels[fg], NUM_CLASSES).float()
    cls_sum = F.binary_cross_entropy_with_logits(outputs.cls_logits.detach()[fg], one_hot, reduction="sum")
    assert torch.allclose(first.components["cls"], cls_sum / fg.sum(), rtol=1e-5)  # target scores are 1
    pred_boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb).detach()
    iou = torch.zeros(fg.shape)
    iou[fg] = box_iou(pred_boxes[fg], first.assignment.boxes[fg]).diagonal()
    obj_sum = sigmoid_focal_loss(outputs.obj_logits.detach()[..., 0], iou, reduction="sum")
    assert torch.allclose(first.components["obj"], 5.0 * obj_sum / fg.sum(), rtol=1e-5)


def test_build_assigner():
    assert isinstance(build_assigner(NUM_CLASSES, LossConfig()), TaskAlignedAssigner)
    assert isinstance(build_assigner(NUM_CLASSES, AssignerConfig(kind="per_level")), PerLevelAssigner)
    tal = build_assigner(NUM_CLASSES, AssignerConfig(topk=7, alpha=0.5, beta=4.0, center_radius=2.5))
    assert (tal.topk, tal.alpha, tal.beta, tal.center_radius) == (7, 0.5, 4.0, 2.5)
    assert isinstance(build_assigner(NUM_CLASSES, load_config("seed").loss), PerLevelAssigner)
    with pytest.raises(ConfigError, match="unknown key 'loss.recipe'"):
        load_config("arena_cpu", ["loss.recipe=seed"])


@pytest.mark.parametrize("box", ["diou", "giou", "ciou"])
def test_zero_size_predicted_boxes_stay_finite(box):
    """softplus can underflow to 0: a positive predicting a point-sized box (CIoU's atan(w/h) is 0/0 there)
    or a box thinner than float32's spacing at its position must give a finite loss and gradients."""
    outputs = make_outputs()
    tiny = torch.zeros_like(outputs.box_ltrb)
    tiny[1] = 1e-6  # image 1: l + r below the float32 spacing at x ≈ 50 px, so x2 - x1 = 0 in image coords
    outputs = outputs._replace(box_ltrb=tiny.requires_grad_())
    # Hard targets (score 1): TAL would give these IoU-0 positives weight 0, which NaN · 0 does not fix.
    config = LossConfig(box=box, assigner=AssignerConfig(kind="per_level"))
    result = DetectionLoss(NUM_CLASSES, config)(outputs, *make_targets())
    assert (result.assignment.fg_mask.sum(1) > 0).all()
    # every box is degenerate, IoU 0: each positive's loss is at least 1
    assert torch.isfinite(result.total) and result.components["box"] >= 1 - 1e-6
    result.total.backward()
    assert torch.isfinite(outputs.box_ltrb.grad).all() and torch.isfinite(outputs.cls_logits.grad).all()


def test_box_loss_is_evaluated_around_each_point_like_in_image_coordinates():
    """The box term equals torchvision's loss on the image-frame boxes (translation invariance) for normal
    boxes, and the weights are the positives' target scores."""
    outputs = make_outputs(seed=3)
    result = DetectionLoss(NUM_CLASSES, LossConfig(box="ciou", box_weight=1.0))(outputs, *make_targets())
    assigned, fg = result.assignment, result.assignment.fg_mask
    pred_boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb).detach()[fg]
    expected = (complete_box_iou_loss(pred_boxes, assigned.boxes[fg]) * assigned.scores[fg].sum(-1)).sum()
    assert torch.allclose(result.components["box"], expected / assigned.scores.sum().clamp(min=1), rtol=1e-5)
