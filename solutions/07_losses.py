# %% [markdown]
# # Chapter 7 · The losses
#
# Chapter 6 gave every point a target: a soft class score, a box for the positives, nothing for the background.
# The loss turns the distance between predictions and those targets into gradients. A detector has three
# terms, one per branch of the head (Chapter 4):
#
# - **classification**: a loss on every point and class towards the soft targets of Chapter 6 — the **focal
#   loss** keeps thousands of easy background points from drowning the few positives, and the **Quality Focal
#   Loss** does the same while learning the soft target itself;
# - **box**: an **IoU-family loss** on the positives — IoU, GIoU, DIoU — which measures boxes the way the
#   evaluation does;
# - **objectness/IoU**: the third branch learns to predict the IoU of its own box.
#
# and an **aggregator** that weights them and normalises by the sum of the target scores. You will write each
# piece, check it against `torchvision.ops` and the package to 1e-6, measure why the choices matter, and run a
# short ablation of two loss recipes on the arena.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou, distance_box_iou_loss, generalized_box_iou_loss, sigmoid_focal_loss

from course import arena_dir, check, hint
from course.reference import ch07 as reference
from course.resources import scaled
from detector.boxes import aligned_box_iou, ltrb_to_xyxy
from detector.config import LossConfig, ModelConfig, load_config
from detector.data import CocoDetection, collate, eval_transforms, pad_targets
from detector.losses import QFL_BETA, DetectionLoss, quality_focal_loss, varifocal_loss
from detector.metrics import coco_map
from detector.model import DetectorOutput, build_detector

DEFAULTS = LossConfig()  # the package's default loss weights
LOSS_WEIGHTS = {"cls": DEFAULTS.cls_weight, "box": DEFAULTS.box_weight, "obj": DEFAULTS.obj_weight}
# RetinaNet, Lin et al. 2017, Sec. 5.1: alpha = 0.25, gamma = 2.
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
EPS = 1e-7  # torchvision's eps in its IoU-family losses
NUM_CLASSES = 4

# The shipped demo (`make train`): the chapter reads its model and loss, it does not retype them.
demo = load_config("arena_cpu")
demo_strides = build_detector(demo.model, NUM_CLASSES).strides
demo_points = sum((demo.data.image_size // s) ** 2 for s in demo_strides)
print(f"demo config: loss.cls={demo.loss.cls!r}, loss.box={demo.loss.box!r}, loss.obj={demo.loss.obj!r}, weights "
      f"cls/box/obj = {demo.loss.cls_weight:g}/{demo.loss.box_weight:g}/{demo.loss.obj_weight:g}; strides "
      f"{demo_strides} at {demo.data.image_size} px: {demo_points} points")  # fmt: skip

# %% [markdown]
# ## 1. From binary cross-entropy to focal loss
#
# Each of the `C` outputs of a point is an independent yes/no question ("is this an enemy?"), so the
# classification loss is a sum of binary cross-entropies. With $p = \sigma(x)$ and target $y \in [0, 1]$,
#
# $$\mathrm{BCE}(p, y) = -y \log p - (1 - y) \log(1 - p) = -\log p_t, \qquad p_t = p\,y + (1 - p)(1 - y),$$
#
# $p_t$ being the probability the model gives to the right answer. One demo image has one output per point and
# class (the cell below prints how many), and at most a few hundred of them are positive. Each easy negative
# ($p = 0.01$, $p_t = 0.99$) costs only $-\log 0.99 \approx 0.01$, but nearly all outputs are easy negatives,
# and together they outweigh the positives. The **focal loss** (Lin et al. 2017) multiplies by a modulating factor
# that vanishes for easy examples, and by a class-balance weight:
#
# $$\mathrm{FL} = \alpha_t\,(1 - p_t)^{\gamma}\,\mathrm{BCE}(p, y), \qquad \alpha_t = \alpha\,y + (1-\alpha)(1-y).$$
#
# These formulas were written for hard targets $y \in \{0, 1\}$; Section 2 asks what they do with TAL's soft
# targets. The curves, for a positive ($y = 1$):

# %%
p = torch.linspace(0.001, 0.999, 500)
fig, (ax_loss, ax_share) = plt.subplots(1, 2, figsize=(12, 4))
for gamma in (0, 0.5, 1, 2, 5):
    ax_loss.plot(
        p, -((1 - p) ** gamma) * torch.log(p), label=f"γ = {gamma}" + (" (BCE)" if gamma == 0 else "")
    )
ax_loss.axvspan(0.6, 1, color="grey", alpha=0.15)
ax_loss.text(0.62, 3.5, "well-classified\nexamples", fontsize=9)
ax_loss.set(xlabel="probability of the ground-truth class $p_t$", ylabel="loss", ylim=(0, 5))
ax_loss.legend()
# One demo image's worth of outputs: 300 hard negatives (p = 0.3), 80 positives at p = 0.3, the rest easy (p = 0.01).
outputs_per_image = demo_points * NUM_CLASSES
print(f"one demo image: {demo_points} points × {NUM_CLASSES} classes = {outputs_per_image} outputs")
groups = {"easy negatives": (outputs_per_image - 380, 0.01, 0.0), "hard negatives": (300, 0.3, 0.0),
          "positives": (80, 0.3, 1.0)}  # fmt: skip
for offset, gamma in enumerate((0.0, 2.0)):
    totals = {}
    for name, (count, prob, y) in groups.items():
        logit = torch.logit(torch.tensor(prob))
        per_item = sigmoid_focal_loss(
            logit, torch.tensor(y), alpha=-1 if gamma == 0 else FOCAL_ALPHA, gamma=gamma
        )
        totals[name] = count * float(per_item)
    shares = [totals[name] / sum(totals.values()) for name in groups]
    ax_share.bar([offset * 4 + k for k in range(3)], shares, color=["tab:grey", "tab:orange", "tab:green"])
ax_share.set_xticks([1, 5], ["BCE", f"focal (α={FOCAL_ALPHA}, γ={FOCAL_GAMMA:g})"])
ax_share.set_ylabel("share of the total loss")
ax_share.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:grey", "tab:orange", "tab:green")],
                labels=list(groups))  # fmt: skip
ax_share.set_title("who the loss listens to (one image)")
plt.tight_layout()
plt.show()

# %% [markdown]
# With BCE most of the loss — and of the gradient — comes from the negatives the model already gets right.
# The focal loss hands it to the hard negatives and the positives.
#
# **Exercise 7.1** — `sigmoid_focal_loss_`: from logits, elementwise, then reduced; equal to torchvision's
# `sigmoid_focal_loss`, finite for any logit (the cell after the exercise shows where a naive formula breaks).
# `alpha < 0` means "no α weighting".


# %%
def sigmoid_focal_loss_(
    logits: Tensor,
    targets: Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    reduction: str = "none",
) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017) for binary or soft targets.

    Args:
        logits: ``[...]`` float, any shape.
        targets: ``[...]`` float in ``[0, 1]``, the same shape.
        alpha: weight of the positive side (``1 - alpha`` for the negative side); ``< 0`` disables it.
        gamma: exponent of the modulating factor ``(1 - p_t)``.
        reduction: ``"none"`` (elementwise), ``"mean"`` or ``"sum"``.

    Returns:
        ``[...]`` for ``"none"``, else a 0-dim tensor; equal to ``torchvision.ops.sigmoid_focal_loss``.
    """
    ### BEGIN SOLUTION Exercise 7.1 · sigmoid_focal_loss_: stable BCE, down-weighted where the answer is easy
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log p_t, computed stably
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return reduce_loss(loss, reduction)
    ### END SOLUTION


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """``"none"``: unchanged; ``"sum"``; ``"mean"`` (0, still in the graph, for an empty tensor, as torchvision)."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


# %%
sigmoid_focal_loss_ = check("7.1", sigmoid_focal_loss_, fallback=reference.sigmoid_focal_loss_)

# %% [markdown]
# (The exercise is called `sigmoid_focal_loss_` so that it does not shadow torchvision's, which the tests
# compare it with.)
#
# Why not compute the BCE as `-log(sigmoid(x))`? In float32, $\sigma(x) = 1 / (1 + e^{-x})$ becomes exactly 0
# once $e^{-x}$ overflows (the largest float32 is about $3.4 \cdot 10^{38} = e^{88.72}$), and its log is
# $-\infty$. The cell finds the first logit where that happens on this machine; the stable form
# (`F.logsigmoid`, or `binary_cross_entropy_with_logits`) stays finite.

# %%
x = torch.linspace(-120.0, -80.0, 400_001)  # float32, steps of 1e-4
naive = torch.log(torch.sigmoid(x))
first_inf = float(x[torch.isinf(naive)].max())
print(f"log(sigmoid(x)) in float32 is -inf from x = {first_inf:.4f} down; "
      f"logsigmoid({first_inf:.1f}) = {F.logsigmoid(torch.tensor(first_inf)).item():.2f}; "
      f"log(float32 max) = {math.log(torch.finfo(torch.float32).max):.4f}")  # fmt: skip

# %% [markdown]
# ## 2. Soft targets: which loss learns the target?
#
# TAL's targets are not 0 or 1: a positive's target is its normalised alignment, say 0.3 for a mediocre point
# (Chapter 6). We want the classifier to *output* 0.3 there: at test time the score ranks detections for NMS,
# is multiplied with the objectness, and is compared with `score_thresh` (Chapter 9). So the question that
# matters for a classification loss is: **for a target $t$, which prediction $p$ minimises it?**
#
# **Predict, then run.** For BCE the derivative with respect to the logit is $p - t$: where is its minimum? The
# focal loss multiplies BCE by $(1 - p_t)^\gamma$ with $p_t = p\,t + (1-p)(1-t)$; for $t = 0.3$, does its
# minimum sit below, at or above 0.3? (Hint: the factor is smallest where $p_t$ is largest.) And does $\alpha_t$
# move it? The cell finds each loss's minimum by brute force, over a grid of $p$:

# %%
p_grid = torch.linspace(1e-4, 1 - 1e-4, 99_999, dtype=torch.float64)
logit_grid = torch.logit(p_grid)
classification_losses = {  # name: elementwise loss(logits, targets)
    "bce": lambda x, t: F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    "focal": lambda x, t: sigmoid_focal_loss(x, t, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA),
    "focal, no α": lambda x, t: sigmoid_focal_loss(x, t, alpha=-1, gamma=FOCAL_GAMMA),
    "qfl": lambda x, t: quality_focal_loss(x, t, beta=QFL_BETA),
    "varifocal": lambda x, t: varifocal_loss(x, t),
}


def minimising_p(loss_fn, targets: list[float]) -> list[float]:
    """For each target ``t``, the ``p`` of the grid where ``loss_fn(logit(p), t)`` is smallest (brute force)."""
    target_column = torch.tensor(targets, dtype=torch.float64)[:, None]  # [T, 1] against logits [1, P]
    losses = loss_fn(logit_grid[None, :].expand(len(targets), -1), target_column.expand(-1, len(p_grid)))
    return p_grid[losses.argmin(dim=1)].tolist()


targets_to_try = [0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9]
optimum = {name: minimising_p(loss_fn, targets_to_try) for name, loss_fn in classification_losses.items()}
print(f"{'target t':>14}" + "".join(f"{t:>8.2f}" for t in targets_to_try))
for name, best in optimum.items():
    print(f"{name:>14}" + "".join(f"{b:>8.3f}" for b in best))

fine_targets = torch.linspace(0.02, 0.98, 25).tolist()
fig, ax = plt.subplots(figsize=(5.5, 4.5))
for name, loss_fn in classification_losses.items():
    if name != "focal, no α":
        focal = name == "focal"
        ax.plot(fine_targets, minimising_p(loss_fn, fine_targets), label=name, lw=3 if focal else 1.5,
                ls="-" if focal else "--")  # fmt: skip
ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
ax.set(xlabel="soft target t", ylabel="prediction p* minimising the loss", title="where each loss wants p")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# BCE, QFL and varifocal sit on the diagonal: their minimum is the target. The focal loss does not: its
# modulating factor is smallest where $p_t$ is largest, i.e. at the extremes, so it pushes soft targets away
# from 0.5 — a target of 0.3 is best met by $p \approx 0.12$, a target of 0.7 by $p \approx 0.88$ (the table).
# $\alpha_t = \alpha t + (1 - \alpha)(1 - t)$ does not depend on $p$: it rescales the loss but does not move
# its minimum (the two focal rows are equal). A detector trained with the focal loss on soft targets still ranks
# a point's boxes in order, but its scores are not the IoU-aware numbers TAL asked for, which skews the
# $\sqrt{\text{cls} \cdot \text{obj}}$ fusion and the meaning of `score_thresh`.
#
# Three losses that keep the minimum at the target:
#
# - **BCE** itself (YOLOv8 trains its classifier with plain BCE on TAL's soft targets);
# - **Varifocal loss** (Zhang et al. 2021, VarifocalNet): $t \cdot \mathrm{BCE}(p, t)$ for positives — a weight
#   that does not depend on $p$ — and $\alpha\, p^\gamma\, \mathrm{BCE}(p, 0)$ for negatives, which
#   down-weights the easy ones as the focal loss does (PP-YOLOE uses it);
# - **Quality Focal Loss** (Li et al. 2020, Generalized Focal Loss):
#
# $$\mathrm{QFL}(p, t) = |t - p|^{\beta}\; \mathrm{BCE}(p, t), \qquad \beta = 2,$$
#
#   whose modulating factor is the distance to the *soft* target: it vanishes exactly where BCE is smallest, and
#   for negatives ($t = 0$) it is $p^\beta$, the focal loss's down-weighting of easy negatives. TOOD trains
#   with it.
#
# **Exercise 7.2** — `quality_focal_loss_`: from logits, elementwise, then reduced like Exercise 7.1; finite for
# any logit, for any $\beta > 0$ (not only even ones). It must equal the package's
# `detector.losses.quality_focal_loss`.


# %%
def quality_focal_loss_(
    logits: Tensor, targets: Tensor, beta: float = QFL_BETA, reduction: str = "none"
) -> Tensor:
    """Quality Focal Loss (Li et al. 2020, Generalized Focal Loss, Eq. 5) for soft targets.

    Args:
        logits: ``[...]`` float, any shape; ``p = sigmoid(logits)``.
        targets: ``[...]`` soft targets ``t`` in ``[0, 1]``, the same shape (0 for negatives).
        beta: exponent of the modulating factor ``|t - p|``.
        reduction: ``"none"`` (elementwise), ``"mean"`` or ``"sum"``.

    Returns:
        ``[...]`` for ``"none"``, else a 0-dim tensor: ``|t - p|^beta · BCE(p, t)``, minimal at ``p = t``.
    """
    ### BEGIN SOLUTION Exercise 7.2 · quality_focal_loss_: stable BCE toward the soft target, scaled by the gap
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # stable for any logit
    modulation = (targets - logits.sigmoid()).abs().pow(beta)  # 0 exactly at p = t
    return reduce_loss(ce * modulation, reduction)
    ### END SOLUTION


# %%
quality_focal_loss_ = check("7.2", quality_focal_loss_, fallback=quality_focal_loss)

# %% [markdown]
# (Named with a trailing `_`, like 7.1, so that it does not shadow the package's function the table used.) Which
# of these losses does the package train with? The config says (the package's default, and the demo's own
# choice), and the table says whether its minimum is at the target:

# %%
at_target = {name: max(abs(b - t) for b, t in zip(best, targets_to_try, strict=True)) < 1e-3
             for name, best in optimum.items()}  # fmt: skip
for who, cls_name in (("the package's default", LossConfig().cls), ("the arena_cpu demo", demo.loss.cls)):
    if cls_name in optimum:
        print(f"{who} trains the classifier with loss.cls = {cls_name!r}; its minimum for a target of 0.3 is "
              f"p* = {optimum[cls_name][targets_to_try.index(0.3)]:.3f} "
              f"({'at the target' if at_target[cls_name] else 'NOT at the target'})")  # fmt: skip
    else:
        print(f"{who} trains the classifier with loss.cls = {cls_name!r} (not in the table above)")

# %% [markdown]
# ## 3. Boxes: why an IoU loss
#
# The first box regressors used an L1/smooth-L1 loss on the four distances. It treats a 4-pixel error the same
# on a 6-pixel head and on a 100-pixel body, while the evaluation (IoU ≥ 0.5, Chapter 9) is scale-free. An
# **IoU loss** $1 - \mathrm{IoU}$ measures boxes the way the metric does. But it has a blind spot: when
# the boxes do not overlap, IoU is 0 whatever their distance, and the gradient is zero. Two fixes:
#
# - **GIoU** (Rezatofighi et al. 2019): $1 - \mathrm{IoU} + \frac{|C| - |A \cup B|}{|C|}$ with $C$ the smallest
#   box enclosing both: the empty part of $C$ shrinks as the boxes approach;
# - **DIoU** (Zheng et al. 2020): $1 - \mathrm{IoU} + \frac{\rho^2(a, b)}{c^2}$ with $\rho$ the distance between
#   the centres and $c$ the diagonal of $C$: it pulls the centres together directly and converges faster.
#
# CIoU adds an aspect-ratio term to DIoU; the package offers it (`loss.box: ciou`), with DIoU as the default.
#
# **Exercise 7.3** — `iou_and_union`: the IoU of *corresponding* boxes (`boxes1[k]` with `boxes2[k]`, over any
# leading shape) and their union, with torchvision's numerics: `iou = inter / (union + eps)`, so that two
# zero-area boxes give 0, not NaN; disjoint and touching boxes have no intersection.


# %%
def iou_and_union(boxes1: Tensor, boxes2: Tensor, eps: float = EPS) -> tuple[Tensor, Tensor]:
    """Elementwise IoU and union of two sets of boxes.

    Args:
        boxes1, boxes2: ``[..., 4]`` xyxy, the same shape.
        eps: added to the union before dividing (an all-degenerate pair gives IoU 0, not NaN).

    Returns:
        ``iou [...]`` and ``union [...]``.
    """
    ### BEGIN SOLUTION Exercise 7.3 · iou_and_union: overlap area of each pair, then the union it leaves
    overlap = torch.minimum(boxes1[..., 2:], boxes2[..., 2:]) - torch.maximum(
        boxes1[..., :2], boxes2[..., :2]
    )
    inter = overlap.clamp(min=0).prod(dim=-1)
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    union = area1 + area2 - inter
    return inter / (union + eps), union
    ### END SOLUTION


# %%
iou_and_union = check("7.3", iou_and_union, fallback=reference.iou_and_union)


def iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = EPS) -> Tensor:
    """``1 - IoU`` of corresponding boxes (no gradient when they do not overlap)."""
    return reduce_loss(1 - iou_and_union(boxes1, boxes2, eps)[0], reduction)


# %% [markdown]
# **Exercise 7.4** — `giou_loss` and **Exercise 7.5** — `diou_loss`, on top of `iou_and_union`. Both need the
# smallest box $C$ enclosing the pair. Follow torchvision's numerics: GIoU's penalty is $(|C| - U) / (|C| + \varepsilon)$, DIoU's is
# $\rho^2 / (c^2 + \varepsilon)$.


# %%
def giou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = EPS) -> Tensor:
    """Generalised IoU loss ``1 - IoU + (|C| - U) / |C|`` (Rezatofighi et al. 2019).

    Args:
        boxes1, boxes2: ``[..., 4]`` xyxy, the same shape; reduction: ``"none" | "mean" | "sum"``.

    Returns:
        ``[...]`` or 0-dim; equal to ``torchvision.ops.generalized_box_iou_loss``.
    """
    ### BEGIN SOLUTION Exercise 7.4 · giou_loss: IoU loss plus the empty share of the enclosing box
    iou, union = iou_and_union(boxes1, boxes2, eps)
    enclosing = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(
        boxes1[..., :2], boxes2[..., :2]
    )
    area_c = enclosing[..., 0] * enclosing[..., 1]
    return reduce_loss(1 - iou + (area_c - union) / (area_c + eps), reduction)
    ### END SOLUTION


def diou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = EPS) -> Tensor:
    """Distance IoU loss ``1 - IoU + ρ² / c²`` (Zheng et al. 2020).

    Args:
        boxes1, boxes2: ``[..., 4]`` xyxy, the same shape; reduction: ``"none" | "mean" | "sum"``.

    Returns:
        ``[...]`` or 0-dim; equal to ``torchvision.ops.distance_box_iou_loss``. ``ρ``: distance between the
        centres, ``c``: diagonal of the smallest enclosing box.
    """
    ### BEGIN SOLUTION Exercise 7.5 · diou_loss: IoU loss plus the squared centre gap over the squared diagonal
    iou, _ = iou_and_union(boxes1, boxes2, eps)
    enclosing = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(
        boxes1[..., :2], boxes2[..., :2]
    )
    diagonal_sq = enclosing.pow(2).sum(dim=-1) + eps
    centre_offset = (boxes1[..., :2] + boxes1[..., 2:]) / 2 - (boxes2[..., :2] + boxes2[..., 2:]) / 2
    return reduce_loss(1 - iou + centre_offset.pow(2).sum(dim=-1) / diagonal_sq, reduction)
    ### END SOLUTION


# %%
giou_loss = check("7.4", giou_loss, fallback=reference.giou_loss)
diou_loss = check("7.5", diou_loss, fallback=reference.diou_loss)

# %% [markdown]
# Now the picture that explains the family. A 40 × 40 box slides horizontally past a 40 × 40 ground truth,
# from far left to far right. Left: the three losses; right: their gradient with respect to the box's
# position, by autograd.

# %%
gt = torch.tensor([100.0, 100.0, 140.0, 140.0])
shift = torch.linspace(-100, 100, 401, requires_grad=True)
moving = torch.stack((100 + shift, torch.full_like(shift, 100), 140 + shift, torch.full_like(shift, 140)), -1)
losses = {"IoU": iou_loss, "GIoU": giou_loss, "DIoU": diou_loss}
fig, (ax_value, ax_grad) = plt.subplots(1, 2, figsize=(12, 3.8))
for name, loss_fn in losses.items():
    values = loss_fn(moving, gt.expand_as(moving))
    (grad,) = torch.autograd.grad(values.sum(), shift)
    ax_value.plot(shift.detach(), values.detach(), label=name)
    ax_grad.plot(shift.detach(), grad, label=name)
for ax in (ax_value, ax_grad):
    ax.axvspan(-100, -40, color="grey", alpha=0.12)
    ax.axvspan(40, 100, color="grey", alpha=0.12)
    ax.set_xlabel("horizontal offset of the box from the GT (px); grey: no overlap")
ax_value.set_ylabel("loss")
ax_grad.set_ylabel("d loss / d offset")
ax_value.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Once the boxes stop overlapping (grey), the IoU loss is flat at 1: its gradient is exactly zero and a box
# that starts off-target never moves. GIoU and DIoU keep pulling. In two dimensions (the box moves in x and y):

# %%
offsets = torch.linspace(-90, 90, 121)
dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
grid_boxes = torch.stack((100 + dx, 100 + dy, 140 + dx, 140 + dy), -1)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, (name, loss_fn) in zip(axes, losses.items(), strict=True):
    surface = loss_fn(grid_boxes, gt.expand_as(grid_boxes))
    image = ax.imshow(surface, extent=(-90, 90, 90, -90), cmap="viridis")
    ax.contour(offsets, offsets, surface, levels=8, colors="white", linewidths=0.5)
    ax.set_title(f"{name} loss, box offset (dx, dy)")
    fig.colorbar(image, ax=ax, shrink=0.8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The IoU surface is a plateau with a hole; GIoU and DIoU are bowls. GIoU's contours are stars: along an axis it
# rises slowly (a box displaced along one axis leaves only the gap empty in the enclosing box), along the
# diagonals fast. DIoU's contours are close to circles: the centre distance pulls the same way from every
# direction.
#
# ## 4. The aggregator
#
# The three terms are sums over very different sets (all `B·N·C` outputs, the positives, all `B·N`
# points). Following TOOD and YOLOv8, each is divided by the **sum of the soft targets** $\sum \hat t$, clamped
# at 1 so that it never goes to 0, rather than by the number of positives:
#
# $$\mathcal{L} = \frac{w_{cls}\,\sum \mathrm{QFL}(x, \hat t) + w_{box} \sum_{\text{pos}} \hat t_n\,\mathcal{L}_{DIoU}(b_n, g_n)
#   + w_{obj} \sum \mathrm{BCE}(o, \mathrm{IoU}_n^{\text{detached}})}{\max(1, \sum \hat t)}$$
#
# with $\hat t$ the soft targets `[B, N, C]` (for the box term: a positive's target score, summed over classes),
# and the objectness target the IoU of each positive's predicted box with its GT (0 for negatives), **detached**:
# the objectness branch must learn to predict the box's quality, not change the box.
#
# What does this normaliser do? The box term is $\sum \hat t_n L_n / \sum \hat t_n$: a *weighted mean* of the
# positives' box losses, whatever the scale of $\hat t$. The classification and objectness terms are plain sums,
# so dividing them by a small $\sum \hat t$ makes them **larger**: a batch whose positives are poorly aligned
# (small soft targets, as early in training) weighs *more* than one with the same losses and well-aligned
# positives. **Predict** the two normalised classification terms below — ten positives each, the same summed
# loss 4.0, soft targets 0.8 in one batch and 0.1 in the other — then run the cell:

# %%
summed_cls_loss = torch.tensor(4.0)
for name, soft in (("well aligned", torch.full((10,), 0.8)), ("poorly aligned", torch.full((10,), 0.1))):
    by_targets = summed_cls_loss / soft.sum().clamp(min=1)
    by_count = summed_cls_loss / len(soft)
    print(f"{name:15} sum of soft targets {soft.sum():4.1f}: cls / max(1, sum) = {by_targets:.2f}   "
          f"cls / number of positives = {by_count:.2f}")  # fmt: skip

# %% [markdown]
# Dividing by the number of positives treats both batches alike; dividing by $\max(1, \sum \hat t)$ gives the
# poorly aligned batch 8 times the weight (the clamp at 1 stops it there). The open questions come back to it.
#
# **Exercise 7.6** — `detection_loss`: the weighted, normalised total and its three terms, with the Quality
# Focal Loss for classification, DIoU for the boxes and BCE for objectness. `assigned` is the assigner's result
# (Chapter 6): `assigned.scores [B, N, C]`, `assigned.boxes [B, N, 4]`, `assigned.fg_mask [B, N]`. Use your
# `quality_focal_loss_` and `diou_loss`. A batch without positives must give a finite loss, still connected to
# the box predictions.


# %%
def detection_loss(
    cls_logits: Tensor,
    pred_boxes: Tensor,
    obj_logits: Tensor,
    assigned,
    weights: dict[str, float] = LOSS_WEIGHTS,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The QFL / DIoU / BCE loss (the package's ``loss.cls: qfl``), given the assignment.

    Args:
        cls_logits: ``[B, N, C]`` class logits.
        pred_boxes: ``[B, N, 4]`` decoded predicted boxes, xyxy pixels.
        obj_logits: ``[B, N]`` objectness/IoU logits.
        assigned: the assigner's result with ``scores [B, N, C]``, ``boxes [B, N, 4]``, ``fg_mask [B, N]``.
        weights: ``{"cls", "box", "obj"}`` loss weights.

    Returns:
        ``total`` (0-dim) and ``{"cls", "box", "obj"}``: each term weighted and divided by
        ``max(1, assigned.scores.sum())`` (not detached); ``total`` is their sum.
    """
    ### BEGIN SOLUTION Exercise 7.6 · detection_loss: three weighted sums, each over the total soft target
    scores, fg_mask = assigned.scores, assigned.fg_mask
    normaliser = scores.sum().clamp(min=1.0)
    cls = quality_focal_loss_(cls_logits, scores, reduction="sum")
    box_weight = scores[fg_mask].sum(dim=-1)  # [P]: each positive's target score
    box = (
        diou_loss(pred_boxes[fg_mask], assigned.boxes[fg_mask]) * box_weight
    ).sum()  # 0 (in the graph) for P = 0
    with torch.no_grad():
        iou_target = aligned_box_iou(pred_boxes, assigned.boxes) * fg_mask  # [B, N], 0 for negatives
    obj = F.binary_cross_entropy_with_logits(obj_logits, iou_target, reduction="sum")
    terms = {
        name: weights[name] * value / normaliser for name, value in (("cls", cls), ("box", box), ("obj", obj))
    }
    return terms["cls"] + terms["box"] + terms["obj"], terms
    ### END SOLUTION


# %%
detection_loss = check("7.6", detection_loss, fallback=reference.detection_loss)

# %% [markdown]
# On real model outputs: a small untrained detector, a batch of arena images, the package's assigner. Your
# aggregator and the package's `DetectionLoss` with `loss.cls: qfl` should agree.

# %%
IMAGE_SIZE = scaled(160, 320)
BATCH_SIZE = scaled(4, 8)
arena = arena_dir()
train_set = CocoDetection(arena / "train", transforms=eval_transforms(IMAGE_SIZE))
valid_set = CocoDetection(arena / "valid", transforms=eval_transforms(IMAGE_SIZE))
# resnet18 from scratch (nothing downloads), frozen so that a CPU step takes a fraction of a second: the loss
# trains the neck and the head, the parts it shapes most directly.
small_model = ModelConfig(backbone="resnet18", neck_width=32, freeze="all")
torch.manual_seed(0)
model = build_detector(small_model, num_classes=NUM_CLASSES)
images, targets = collate([train_set[i] for i in range(BATCH_SIZE)])
gt_labels, gt_boxes, gt_mask = pad_targets(targets)
outputs = model(images)
loss_out = DetectionLoss(NUM_CLASSES, LossConfig(cls="qfl"))(outputs, gt_labels, gt_boxes, gt_mask)
pred_boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb)
total, terms = detection_loss(
    outputs.cls_logits, pred_boxes, outputs.obj_logits.squeeze(-1), loss_out.assignment
)
print(f"{int(loss_out.num_positives)} positives, {int(loss_out.num_unassigned_gts)} GTs without a positive")
for name in terms:
    print(f"{name:4} ours {terms[name].item():9.4f}   package {loss_out.components[name].item():9.4f}")
print(f"total ours {total.item():9.4f}   package {loss_out.total.item():9.4f}")
print(f"largest term of the untrained model: {max(terms, key=lambda name: terms[name].item())!r}")

# %% [markdown]
# Notice how the untrained model's loss is split (the last line names the largest term). Every negative point
# pays for its objectness against a target of 0 (BCE has no focal down-weighting), each positive pays for
# predicting the prior where the target is its IoU, and all of it is divided by a small sum of soft targets
# (they are small while boxes are poor) — the normaliser at work.
#
# ## 5. A short ablation: the seed recipe vs the package's default
#
# The course's first, notebook-only detector (the "seed", see the course introduction) trained with a different
# recipe; the shipped config `seed` holds it: the fixed per-level FCOS assigner (Chapter 6, Section 1), BCE on the
# one-hot classes of the **positives only** (negatives never teach the classifier; objectness has to reject the
# background), DIoU, focal objectness. The demo's recipe: TAL, its classification loss on the soft targets over
# all points, DIoU weighted by the target score, BCE objectness towards the IoU. The cell prints both from the
# configs.
#
# On 2 CPU cores we can afford only a short run (the cell prints its length) of a small model from scratch (no
# pretrained weights, a frozen backbone), so this is a look at the *dynamics*, not at final accuracy: the same model, data order and
# optimiser for both recipes. As a yardstick that does not depend on the recipe we track, on a few validation
# images, the mean over GTs of the best IoU among the 100 top-scored detections (does *some* confident box find
# each object?), and AP@0.5 at the end. The benchmarks page has the full-length comparison.

# %%
recipes = {"seed": load_config("seed").loss, "demo": demo.loss}
for recipe, loss_config in recipes.items():
    print(f"{recipe:5}: assigner {loss_config.assigner.kind!r}, cls {loss_config.cls!r}, box {loss_config.box!r}, "
          f"obj {loss_config.obj!r}, weights cls/box/obj {loss_config.cls_weight:g}/{loss_config.box_weight:g}/"
          f"{loss_config.obj_weight:g}")  # fmt: skip
STEPS = scaled(150, 1000)
EVAL_EVERY = scaled(30, 100)
LEARNING_RATE = 2e-3  # TrainConfig's default, AdamW
generator = torch.Generator().manual_seed(0)
order = torch.randperm(len(train_set), generator=generator).tolist()
train_batches = [
    collate([train_set[i] for i in order[(k * BATCH_SIZE) % len(order) :][:BATCH_SIZE]]) for k in range(STEPS)
]
valid_images, valid_targets = collate([valid_set[i] for i in range(scaled(12, 60))])


def evaluate(model) -> tuple[float, float]:
    """Mean best IoU of each validation GT with the top-100 detections, and AP@0.5 (score threshold 0.001)."""
    predictions = model.predict(valid_images, score_thresh=0.001)
    best = [box_iou(t["boxes"], p["boxes"]).amax(1) if len(p["boxes"]) else torch.zeros(len(t["boxes"]))
            for p, t in zip(predictions, valid_targets, strict=True)]  # fmt: skip
    return torch.cat(best).mean().item(), coco_map(predictions, valid_targets)["map_50"]


def train(recipe: str) -> dict[str, list[float]]:
    """``STEPS`` AdamW steps of a fresh small detector with the loss of config ``recipe``; returns the curves."""
    torch.manual_seed(0)
    model = build_detector(small_model, num_classes=NUM_CLASSES)
    loss_fn = DetectionLoss(NUM_CLASSES, recipes[recipe])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=5e-4)
    history = {
        "total": [],
        "cls": [],
        "box": [],
        "obj": [],
        "positives": [],
        "best_iou": [],
        "ap50": [],
        "eval_step": [],
    }
    start = time.perf_counter()
    for step, (images, targets) in enumerate(train_batches, start=1):
        loss = loss_fn(model(images), *pad_targets(targets))
        optimizer.zero_grad()
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 10.0)
        optimizer.step()
        history["total"].append(loss.total.item())
        for name, value in loss.components.items():
            history[name].append(value.item())
        history["positives"].append(int(loss.num_positives))
        if step % EVAL_EVERY == 0:
            best_iou, ap50 = evaluate(model)
            history["best_iou"].append(best_iou)
            history["ap50"].append(ap50)
            history["eval_step"].append(step)
    print(f"{recipe:8}: {STEPS} steps in {time.perf_counter() - start:.0f} s, best IoU per GT "
          f"{history['best_iou'][-1]:.3f}, AP50 {history['ap50'][-1]:.3f}, "
          f"{sum(history['positives']) / STEPS:.0f} positives per batch")  # fmt: skip
    return history


runs = {recipe: train(recipe) for recipe in recipes}

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for ax, (recipe, history) in zip(axes, runs.items(), strict=False):
    for name in ("total", "cls", "box", "obj"):
        ax.plot(history[name], label=name, lw=2 if name == "total" else 1)
    ax.set(title=f"recipe '{recipe}'", xlabel="step", yscale="log")
    ax.legend()
for recipe, history in runs.items():
    axes[2].plot(
        history["eval_step"],
        history["best_iou"],
        "o-",
        label=f"{recipe} (final AP@0.5 {history['ap50'][-1]:.3f})",
    )
axes[2].set(title="validation: mean best IoU per GT (top-100 detections)", xlabel="step")
axes[2].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the two loss panels separately: the recipes measure different things (a BCE on positives vs a loss on
# every output, different weights and normalisers), so their values are not comparable — only their *shapes*
# are, and the third panel, which uses one yardstick for both. Questions to ask of the curves: which term
# carries the background in each recipe (in the seed, the classifier only ever sees positives, so the
# objectness must)? Does the demo's total fall as its soft targets grow? With so few steps from scratch the AP
# values stay low and all the numbers are noisy (one seed, a dozen images); the full-length runs on the
# benchmarks page are the real comparison.
#
# ## What the package does differently
#
# - `detector.losses.DetectionLoss` runs the assigner itself (on detached predictions) and uses
#   `torchvision.ops` for the focal and IoU-family losses rather than re-implementing them; QFL and varifocal
#   are its own (`detector.losses.quality_focal_loss`, `varifocal_loss`).
# - Everything is computed in float32 with autocast disabled, so AMP (float16/bfloat16) training sees the same
#   losses; the inputs are upcast first.
# - Recipes are configuration: `loss.cls` (`qfl`, `varifocal`, `bce`, `focal`, and `bce_positives` for the seed),
#   `loss.box` (`diou`, `giou`, `ciou`), `loss.obj` (`bce`, `focal`), the weights, and the shipped `seed` config
#   for the first notebook's choices — so an ablation is a command-line override. Which classification loss the
#   package and the demo use was printed in Section 2; the benchmarks page compares them.
# - `LossOutput` also returns the number of positives, of unassigned GTs and the assignment itself, which the
#   runner logs and Chapter 10 draws.
#
# ## Summary
#
# The focal loss is BCE times $\alpha_t (1 - p_t)^\gamma$: easy negatives stop dominating. With soft targets its
# minimum is not the target; BCE, varifocal and the Quality Focal Loss $|t - p|^\beta\,\mathrm{BCE}(p, t)$ keep
# it there, and QFL keeps the focal down-weighting of easy negatives. IoU-family losses measure boxes the way
# the metric does; plain IoU has no gradient for disjoint boxes, GIoU and DIoU do, and DIoU pulls the centres
# together directly. The aggregator weights the terms and divides them by the sum of TAL's soft targets,
# clamped at 1: the box term becomes a target-weighted mean, poorly aligned batches weigh more in the others,
# and an empty batch gives a finite loss connected to the graph; the objectness target is the detached IoU of
# the positive's own box.
#
# ## Open questions
#
# 1. The focal loss's $\alpha = 0.25$ *down*-weights positives, although they are rare. Why can that work
#    together with $\gamma = 2$?
# 2. Normalising by the number of positives instead of the sum of soft targets: what changes early in training,
#    when the soft targets are small?
# 3. The objectness branch learns the IoU of its own box, and at test time the score is
#    $\sqrt{\text{cls} \cdot \text{obj}}$ (Chapter 9). What would happen if its target were not detached?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answers.**
#
# 1. The modulating factor already removes most of the negatives' loss: an easy negative at $p = 0.01$ keeps
#    $(0.01)^2 = 10^{-4}$ of its BCE. What remains of the negative side is the hard negatives, and the positives
#    are now over-represented relative to them; $\alpha = 0.25$ rebalances. Lin et al. (2017) report that the
#    best $\alpha$ falls as $\gamma$ grows, with $\alpha = 0.25$, $\gamma = 2$ their chosen setting. And
#    $\alpha_t$ only rescales: it never moves the minimum (Section 2).
# 2. By the number of positives, the classification and objectness sums are divided by a count that does not
#    depend on alignment, so a poorly aligned batch no longer gets extra weight; the box term, if still weighted
#    by $\hat t$, becomes $\sum \hat t_n L_n / P$ and shrinks with the soft targets — early in training the box
#    branch would learn slowly exactly when boxes are worst. The computed example in Section 4 shows the factor
#    between the two normalisers.
# 3. The gradient of the objectness loss would flow into the predicted box through its IoU: to make its own
#    prediction "right", the network could move the box to match what the objectness branch predicts, or pull the
#    IoU towards whatever value is cheapest, instead of only learning to *estimate* the box's quality. The box
#    would be trained by two losses with different goals; detached, the box is trained by the box loss alone.
