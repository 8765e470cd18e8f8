# %% [markdown]
# # Chapter 6 · The Task-Aligned Assigner
#
# The head of Chapter 4 predicts, at every point of every level, class scores and a box. During training each
# of those `N` predictions needs a target: *this point should say "enemy" and draw that box*, or *this point is
# background*. Choosing the targets is **label assignment**, and it decides what the network can learn at all:
# a point that never becomes positive for a small head will never learn to find one.
#
# In this chapter you will build the **Task-Aligned Assigner** (TAL) of TOOD (Feng et al. 2021), the assigner
# behind YOLOv8 and PP-YOLOE, rule by rule, for one image:
#
# 1. the **candidate** points of each ground-truth box (inside it, optionally near its centre),
# 2. the **alignment metric** $t = s^\alpha \cdot \mathrm{IoU}^\beta$ that ranks them,
# 3. the **top-k** candidates per GT,
# 4. **conflicts**: a point chosen by two GTs,
# 5. the **soft targets** the classification loss will use,
# 6. all of it together; then a batched version and a race against the package.
#
# Vocabulary: `points [N, 2]` cell centres `(x, y)` in pixels, `strides [N]`, boxes `xyxy` pixels,
# `gt_boxes [M, 4]` and `gt_labels [M]` for one image (`[B, M, ...]` with a `gt_mask [B, M]` for a batch),
# `pred_scores [N, C]` class probabilities, `pred_boxes [N, 4]` the decoded predicted boxes.

# %%
import time

import matplotlib.pyplot as plt
import torch
from torch import Tensor
from torchvision.ops import box_iou

from course import arena_dir, check, hint
from course.reference import ch06 as reference
from course.resources import scaled
from detector.config import LossConfig, load_config
from detector.assigner import PerLevelAssigner, TaskAlignedAssigner, fcos_scale_ranges
from detector.boxes import aligned_box_iou, make_points, xyxy_to_ltrb
from detector.data import CocoDetection, eval_transforms
from detector.model import build_detector

# TOOD, Feng et al. 2021, Sec. 3.2: 13 positives per GT, alpha = 1, beta = 6.
TOPK = 13
ALPHA = 1.0
BETA = 6.0
# FCOS's centre sampling radius, in strides (Tian et al. 2019, FCOS v2; YOLOX uses 2.5).
CENTER_RADIUS = 1.5
NUM_CLASSES = 4
GT_COLORS = plt.cm.tab20.colors

# The model and loss of the shipped demo (`make train`): the chapter reads them, it does not retype them.
demo = load_config("arena_cpu")
level_strides = tuple(build_detector(demo.model, NUM_CLASSES).strides)
image_size = demo.data.image_size
print(f"demo config: strides {level_strides} at {image_size} px; assigner {demo.loss.assigner.kind!r} with "
      f"topk={demo.loss.assigner.topk}, alpha={demo.loss.assigner.alpha:g}, beta={demo.loss.assigner.beta:g}; "
      f"classification loss loss.cls={demo.loss.cls!r}")  # fmt: skip

arena = arena_dir()
train_set = CocoDetection(arena / "train", transforms=eval_transforms(image_size))
class_names = train_set.class_names
image, target = train_set[2]  # a busy scene: bodies with nested heads
gt_boxes, gt_labels = target["boxes"], target["labels"]
feature_sizes = [(image_size // s, image_size // s) for s in level_strides]
points, strides = make_points(feature_sizes, level_strides)
print(
    f"{len(points)} points over {len(level_strides)} levels; {len(gt_boxes)} GT boxes: "
    f"{[class_names[i] for i in gt_labels]}"
)

# %% [markdown]
# ## 1. The problem, and FCOS's fixed answer
#
# FCOS (Tian et al. 2019) answers "which points learn which box?" with fixed geometric rules:
#
# - a point is a **candidate** of a GT when it lies **inside** the box (its distances `l, t, r, b` to the four
#   sides are all positive — Chapter 5's `xyxy_to_ltrb`);
# - **scale ranges**: level $\ell$ only takes GTs whose largest distance $\max(l, t, r, b)$ falls in
#   $(m_{\ell-1}, m_\ell]$ with $m_\ell = 8 \cdot$ stride and the coarsest level unbounded (printed below for the
#   demo's strides), so large objects go to coarse levels;
# - **centre sampling** (FCOS v2, YOLOX): only points within `r · stride` of the GT's centre count, because
#   points near a box's border see mostly background and predict poor boxes;
# - a point inside two GTs goes to the **smaller** one.
#
# The rule never looks at the predictions. It is simple and stable, but it cannot know that, for *this*
# network, the points near the head of a figure predict its body badly, or that the best point for an
# oddly-shaped box is off-centre. The package's `PerLevelAssigner` is this rule (it is the "seed" recipe's
# assigner, Chapter 7). Here it is on our image: each colour is one GT, dots are its positives, sized by stride.


# %%
def show_assignment(
    ax, gt_index: Tensor, title: str, zoom: tuple[float, float, float, float] | None = None
) -> None:
    """Draw the image, every GT in its colour, and each positive point in its GT's colour (``zoom``: xyxy)."""
    ax.imshow(image.permute(1, 2, 0))
    for j, (x1, y1, x2, y2) in enumerate(gt_boxes.tolist()):
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, color=GT_COLORS[j % 20]))
    positive = gt_index >= 0
    ax.scatter(*points[inside_any].T, s=2, c="white", alpha=0.6)  # every candidate, as context
    colors = [GT_COLORS[j % 20] for j in gt_index[positive].tolist()]
    ax.scatter(*points[positive].T, s=strides[positive] * 1.2, c=colors, edgecolors="black", linewidths=0.4)
    ax.set_title(title, fontsize=9)
    zoom_to(ax, zoom or scene)


def zoom_to(ax, box) -> None:
    """Show only the ``box`` (xyxy) part of the image."""
    ax.set_xlim(box[0], box[2])
    ax.set_ylim(box[3], box[1])
    ax.set_axis_off()


scene = (
    0.0,
    float(gt_boxes[:, 1].min()) - 12,
    float(image_size),
    float(gt_boxes[:, 3].max()) + 4,
)  # the objects
all_real = torch.ones(1, len(gt_boxes), dtype=torch.bool)
inside_any = reference.candidate_mask(points, strides, gt_boxes).any(0)
no_predictions = (torch.zeros(1, len(points), NUM_CLASSES), torch.zeros(1, len(points), 4))
fcos = PerLevelAssigner(NUM_CLASSES)(
    *no_predictions, points, gt_labels[None], gt_boxes[None], all_real, strides
)
fcos_centre = PerLevelAssigner(NUM_CLASSES, center_radius=CENTER_RADIUS)(
    *no_predictions, points, gt_labels[None], gt_boxes[None], all_real, strides
)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
axes[0].imshow(image.permute(1, 2, 0))
axes[0].scatter(*points.T, s=1, c="white", alpha=0.4)
axes[0].scatter(
    *points[inside_any].T, s=strides[inside_any] * 1.2, c="yellow", edgecolors="black", linewidths=0.4
)
axes[0].set_title(
    f"all {len(points)} points (white); inside some GT (yellow): {int(inside_any.sum())}", fontsize=9
)
zoom_to(axes[0], scene)
show_assignment(
    axes[1], fcos.gt_index[0], f"FCOS rule: inside + scale range ({int(fcos.fg_mask.sum())} positives)"
)
show_assignment(
    axes[2],
    fcos_centre.gt_index[0],
    f"+ centre sampling r={CENTER_RADIUS} ({int(fcos_centre.fg_mask.sum())})",
)
plt.tight_layout()
plt.show()
lower, upper = fcos_scale_ranges(torch.tensor(level_strides, dtype=torch.float32))
print("FCOS scale ranges of max(l, t, r, b):", ", ".join(f"stride {s}: ({lo:g}, {up:g}] px"
      for s, lo, up in zip(level_strides, lower.tolist(), upper.tolist(), strict=True)))  # fmt: skip
no_point = ~reference.candidate_mask(points, strides, gt_boxes).any(1)  # [M]: GTs that hold no point at all
sides = (gt_boxes[:, 2:] - gt_boxes[:, :2]).amin(1)
print(f"GTs without any positive (FCOS): {int(fcos.num_unassigned_gts)} of {len(gt_boxes)}; GTs with no grid point "
      f"inside at all: {int(no_point.sum())} (shortest side of the smallest GT: {sides.min():.1f} px, finest stride "
      f"{level_strides[0]} px)")  # fmt: skip

# %% [markdown]
# Look at the small heads. Points sit one stride apart, so a head whose side is shorter than the finest stride
# may contain **no** point at all, and no rule that starts from "points inside the box" can give it a positive
# (the line above counts them on this image). This is why the demo config's finest level is as fine as it is
# (its reasons are in `detector/configs/arena_cpu.yaml`). The package counts such GTs (`num_unassigned_gts`) so
# that training logs show the problem.
#
# ## 2. TOOD's idea: let the predictions vote
#
# TOOD keeps the geometric *candidates* but picks the positives among them by how good the current prediction
# already is, for **both** tasks at once:
#
# $$t = s^{\alpha} \cdot \mathrm{IoU}^{\beta}$$
#
# where $s$ is the predicted probability of the GT's class at that point and IoU the overlap of the point's
# predicted box with the GT. The `topk` candidates with the largest $t$ become positives. The positives then
# follow the network as it learns, and a point is rewarded for being good at classification *and*
# localisation together — exactly what NMS needs at test time, where the highest score should also be the best
# box.
#
# **Exercise 6.1** — `candidate_mask` for one image: points strictly inside each GT (smallest of `l, t, r, b`
# greater than `eps`), and with `center_radius=r` also within `r · stride` of the GT's centre in the max-norm
# ($\max(|x - c_x|, |y - c_y|) < r \cdot s$: a square, not a circle). Centre sampling can only *remove*
# candidates.


# %%
def candidate_mask(
    points: Tensor, strides: Tensor, gt_boxes: Tensor, center_radius: float | None = None, eps: float = 1e-9
) -> Tensor:
    """Which points are candidates of which GT (rule 1), for one image.

    Args:
        points: ``[N, 2]`` float cell centres ``(x, y)`` in pixels.
        strides: ``[N]`` float stride of each point's level.
        gt_boxes: ``[M, 4]`` float xyxy pixels.
        center_radius: ``r``; when set, also require ``max(|x - cx|, |y - cy|) < r · stride``.
        eps: a point must be more than ``eps`` pixels inside every side.

    Returns:
        ``[M, N]`` bool, ``True`` where point ``n`` is a candidate of GT ``m``.
    """
    ### BEGIN SOLUTION Exercise 6.1 · candidate_mask: points strictly inside each box, optionally near its centre
    # `ltrb[m, n]` holds the distances from point n to the four sides of GT m: [M, N, 4]
    ltrb = xyxy_to_ltrb(points[None, :, :], gt_boxes[:, None, :])
    inside = ltrb.amin(dim=-1) > eps  # [M, N]
    if center_radius is None:
        return inside
    centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2  # [M, 2]
    offset = (points[None, :, :] - centres[:, None, :]).abs().amax(dim=-1)  # max-norm distance, [M, N]
    return inside & (offset < center_radius * strides[None, :])
    ### END SOLUTION


# %%
candidate_mask = check("6.1", candidate_mask, fallback=reference.candidate_mask)

# %% [markdown]
# ## 3. The alignment metric
#
# **Exercise 6.2** — `alignment_metric`: for every (GT, point) pair, the IoU between the point's predicted box
# and the GT, the predicted probability of **the GT's class** at that point, and
# $t = s^\alpha \cdot \mathrm{IoU}^\beta$.
#
# The metric only *chooses* targets; it must not be trained. The soft targets of Section 6 are built from it:
# if gradients flow through it, the loss can shrink by moving the *targets* towards the predictions instead of
# the predictions towards the targets. Neither output may carry a gradient.
#
# (This course, like TOOD, uses the plain IoU here. YOLOv8's assigner uses CIoU in the metric, with
# $\alpha = 0.5$, $\beta = 6$ and 10 positives per GT; Section 4 lists where the implementations differ.)


# %%
def alignment_metric(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    alpha: float = ALPHA,
    beta: float = BETA,
) -> tuple[Tensor, Tensor]:
    """Alignment ``t = s^alpha · IoU^beta`` of every point with every GT (rule 2), without gradient.

    Args:
        pred_scores: ``[N, C]`` class probabilities (after sigmoid).
        pred_boxes: ``[N, 4]`` predicted boxes, xyxy pixels.
        gt_labels: ``[M]`` int64 classes.
        gt_boxes: ``[M, 4]`` xyxy pixels.
        alpha, beta: the exponents of the score and of the IoU.

    Returns:
        ``metric [M, N]`` and ``iou [M, N]`` (IoU of GT ``m`` with point ``n``'s predicted box), no grad.
    """
    ### BEGIN SOLUTION Exercise 6.2 · alignment_metric: class score and IoU, each to its power, without gradient
    with torch.no_grad():
        iou = box_iou(gt_boxes, pred_boxes).clamp(min=0)  # [M, N]
        class_prob = pred_scores[:, gt_labels].T  # [M, N]: probability of GT m's class at point n
        return class_prob.pow(alpha) * iou.pow(beta), iou
    ### END SOLUTION


# %%
alignment_metric = check("6.2", alignment_metric, fallback=reference.alignment_metric)

# %% [markdown]
# What do $\alpha$ and $\beta$ do? Take three candidate points of one GT: *A* is confident but its box is poor,
# *B* is in between, *C* draws an excellent box but is unsure of the class. **Predict** the winner under TOOD's
# exponents (1, 6) and under swapped ones (6, 1) — $0.5^6$ and $0.95^6$ are all you need — then run the cell. It
# gives $t$ for several exponents (YOLOv8's (0.5, 6) included) and which point wins.

# %%
candidates_table = {"A": (0.90, 0.50), "B": (0.50, 0.80), "C": (0.20, 0.95)}  # name: (score s, IoU)
settings = {
    "TOOD (1, 6)": (1.0, 6.0),
    "YOLOv8 (0.5, 6)": (0.5, 6.0),
    "swapped (6, 1)": (6.0, 1.0),
    "(1, 1)": (1.0, 1.0),
    "IoU only (0, 1)": (0.0, 1.0),
}
print(f"{'point':8}{'s':>6}{'IoU':>6}" + "".join(f"{name:>18}" for name in settings))
for name, (s, u) in candidates_table.items():
    print(f"{name:8}{s:6.2f}{u:6.2f}" + "".join(f"{s**a * u**b:18.4f}" for a, b in settings.values()))
winners = {k: max(candidates_table, key=lambda n: candidates_table[n][0] ** a * candidates_table[n][1] ** b)
           for k, (a, b) in settings.items()}  # fmt: skip
print(f"{'winner':20}" + "".join(f"{w:>18}" for w in winners.values()))

# %% [markdown]
# With $\beta = 6$ the IoU dominates: $0.5^6 \approx 0.016$ while $0.95^6 \approx 0.74$, so a point must draw a
# good box to be chosen, and the score breaks ties among good boxes. **Swapping the exponents** (score to the
# 6th power, IoU to the 1st) is an easy slip — the two exponents look alike in code — and a silent one: it still
# trains, but the positives become the points that are already *confident*, whatever their box; the
# classification branch keeps rewarding itself and the box branch is trained on poor points. We will see its
# effect on the positives in Section 8.
#
# ## 4. Top-k per GT
#
# **Exercise 6.3** — `select_topk`: for each GT, its `topk` candidates with the largest metric are positive.
# Only candidates compete (a point outside the GT can have a large IoU with it: its predicted box may reach
# into the GT). A GT with fewer than `topk` candidates keeps **all** of them, even at $t = 0$.
#
# Implementations of TAL differ exactly here, and none of them is a mistake; they are conventions, and an
# assigner ported from one library to another changes behaviour silently if you do not know them:
#
# - **This course and the package**: top-k among the candidates only, so a GT with at least `topk` candidates
#   always gets exactly `topk` positives.
# - **TOOD's own code (mmdetection's `TaskAlignedAssigner`)**: top-k over *all* points by $t$, then the chosen
#   points whose centre is not inside the GT (or whose $t$ is 0) are dropped, so a GT can end with fewer than
#   `topk` positives when outside points with well-aligned boxes take slots. TOOD also trains its first epochs
#   with a fixed assigner (ATSS; 4 epochs in its configuration) before switching to TAL.
# - **YOLOv8 (ultralytics)**: the metric is computed only inside the GT (0 elsewhere), top-k runs over all
#   points and the non-candidates are dropped afterwards; with more than `topk` candidates of non-zero $t$ this
#   equals our rule. Its constants differ: `topk = 10`, $\alpha = 0.5$, $\beta = 6$, CIoU instead of IoU.
#
# The package follows the TOOD paper's constants ($k = 13$, $\alpha = 1$, $\beta = 6$, Sec. 3.2) because the
# chapter teaches the paper and its ablations were run with them; the candidates-only top-k makes the count of
# positives per GT predictable, which you can test by hand. All of them are config keys
# (`loss.assigner.topk`, `alpha`, `beta`), so YOLOv8's setting is one override away.


# %%
def select_topk(metric: Tensor, candidates: Tensor, topk: int = TOPK) -> Tensor:
    """The positives of each GT before conflicts are resolved (rule 3), for one image.

    Args:
        metric: ``[M, N]`` float alignment metric ``t >= 0``.
        candidates: ``[M, N]`` bool from :func:`candidate_mask`.
        topk: positives per GT.

    Returns:
        ``[M, N]`` bool: for each GT its ``min(topk, #candidates)`` candidates with the largest ``t``.
    """
    ### BEGIN SOLUTION Exercise 6.3 · select_topk: each box keeps its best-aligned candidates, only candidates
    key = torch.where(candidates, metric, -1.0)  # non-candidates rank below any candidate
    k = min(topk, metric.shape[1])
    best = key.topk(k, dim=1).indices  # [M, k]
    chosen = torch.zeros_like(candidates).scatter_(1, best, True)
    return chosen & candidates  # a GT with fewer than k candidates: the -1 entries are dropped here
    ### END SOLUTION


# %%
select_topk = check("6.3", select_topk, fallback=reference.select_topk)

# %% [markdown]
# ## 5. Conflicts: one point, several GTs
#
# A point inside a head is also inside its body, and both GTs may select it. A point can predict only one box,
# so it must go to one GT. TOOD's rule, which this course follows: the GT **among those that selected it** with
# the highest IoU with the point's predicted box (the box the point draws says which object it is looking at).
# Other libraries choose differently: YOLOv8 takes the highest (CIoU) overlap over every GT that *contains* the
# point, and PP-YOLOE the highest IoU over all GTs of the image, so there a point may end up with a GT that did
# not select it (the package's docstring names this difference). Deciding by the metric instead would mix in
# the class score of a *different* class for each GT — no implementation we know of does that, and the test
# below tells it apart.
#
# **Exercise 6.4** — `resolve_conflicts`: the index of each point's GT, `-1` for background.


# %%
def resolve_conflicts(positives: Tensor, metric: Tensor, iou: Tensor) -> Tensor:
    """Each point's GT (rule 4), for one image.

    Args:
        positives: ``[M, N]`` bool from :func:`select_topk`.
        metric: ``[M, N]`` float alignment metric (not needed by TOOD's rule; here so you can compare).
        iou: ``[M, N]`` float IoU of GT ``m`` with point ``n``'s predicted box.

    Returns:
        ``gt_index [N]`` int64: the GT with the highest IoU among those for which the point is positive (the
        lower index on exact ties), ``-1`` for a point positive for none. Works for ``M = 0``.
    """
    ### BEGIN SOLUTION Exercise 6.4 · resolve_conflicts: a shared point goes to its selecting box of highest IoU
    num_gts, num_points = positives.shape
    if num_gts == 0:
        return torch.full((num_points,), -1, dtype=torch.int64)
    best_gt = torch.where(positives, iou, -1.0).argmax(dim=0)  # argmax returns the first of equal maxima
    return torch.where(positives.any(dim=0), best_gt, -1)
    ### END SOLUTION


# %%
resolve_conflicts = check("6.4", resolve_conflicts, fallback=reference.resolve_conflicts)

# %% [markdown]
# ## 6. Soft targets
#
# The classification target of a positive is not 1. TOOD makes it grow with the alignment, normalised **per
# GT** so that the best-aligned positive of a GT gets that GT's best IoU:
#
# $$\hat t_n = t_n \cdot \frac{\max_{k \in P_m} \mathrm{IoU}_k}{\max_{k \in P_m} t_k + \varepsilon}$$
#
# where $P_m$ are the final positives of GT $m$ (after conflicts). The score a point learns is then "how well
# this point can do this object", on the IoU scale — exactly the number NMS will rank detections by. Without
# the normalisation, raw $t$ values are tiny early in training ($0.3 \cdot 0.4^6 \approx 10^{-3}$) and the
# classifier would learn to say "nothing" everywhere.
#
# **Predict, then run.** One GT of class 1 (of 3) has two final positives: point 0 with $t = 0.2$ and IoU 0.5,
# point 1 with $t = 0.1$ and IoU 0.9; point 2 is background. Which point gets the larger target, and what are
# the two targets? (Careful: the best-aligned point does not get *its own* IoU.) The cell computes them with the
# package's rule.

# %%
toy_targets = reference.soft_targets(
    gt_index=torch.tensor([0, 0, -1]),
    metric=torch.tensor([[0.2, 0.1, 0.0]]),
    iou=torch.tensor([[0.5, 0.9, 0.3]]),
    gt_labels=torch.tensor([1]),
    num_classes=3,
)
print(toy_targets)

# %% [markdown]
# Point 0 has the larger $t$, so it gets the GT's best IoU, $0.2 \cdot 0.9 / 0.2 = 0.9$, although its own box has
# IoU 0.5; point 1 gets half of that, $0.45$, although its box is the better one. The targets rank the positives
# by *alignment* and put the scale on the IoU axis.
#
# These targets are only as good as the loss that teaches them: a classification loss whose minimum is not at
# the target learns another number (Chapter 7 measures it for the focal loss). The package's classification loss
# is the config key `loss.cls`:

# %%
print(f"the demo config trains the classifier towards these soft targets with loss.cls = {demo.loss.cls!r} "
      f"(the package's default: {LossConfig().cls!r})")  # fmt: skip

# %% [markdown]
# **Exercise 6.5** — `soft_targets`: the `[N, C]` target scores, non-zero only at a positive's GT class.


# %%
def soft_targets(
    gt_index: Tensor, metric: Tensor, iou: Tensor, gt_labels: Tensor, num_classes: int, eps: float = 1e-9
) -> Tensor:
    """Normalised soft classification targets (rule 5), for one image.

    Args:
        gt_index: ``[N]`` int64 from :func:`resolve_conflicts` (``-1`` background).
        metric: ``[M, N]`` alignment metric.
        iou: ``[M, N]`` IoU of each GT with each point's predicted box.
        gt_labels: ``[M]`` int64 classes.
        num_classes: ``C``.

    Returns:
        ``[N, C]`` float: ``t · max IoU / (max t + eps)`` at the GT's class of each positive (maxima over that
        GT's final positives), 0 elsewhere and for background.
    """
    ### BEGIN SOLUTION Exercise 6.5 · soft_targets: alignment rescaled per box onto its best IoU, at its class
    num_gts, num_points = metric.shape
    is_final = (
        gt_index[None, :] == torch.arange(num_gts)[:, None]
    )  # [M, N]: point n is a final positive of GT m
    t = torch.where(is_final, metric, 0.0)
    u = torch.where(is_final, iou, 0.0)
    scale = u.amax(dim=1, keepdim=True) / (
        t.amax(dim=1, keepdim=True) + eps
    )  # [M, 1], 0 / eps for no positive
    point_score = (t * scale).sum(dim=0)  # [N]: each point has at most one final GT
    scores = torch.zeros(num_points, num_classes)
    foreground = gt_index >= 0
    scores[foreground, gt_labels[gt_index[foreground]]] = point_score[foreground]
    return scores
    ### END SOLUTION


# %%
soft_targets = check("6.5", soft_targets, fallback=reference.soft_targets)

# %% [markdown]
# ## 7. The whole assigner, for one image
#
# **Exercise 6.6** — `assign_image`: put rules 1–5 together. Return the per-point targets as a dict:
# `labels [N]` (the GT's class, `num_classes` for background), `boxes [N, 4]` (the GT's box, zeros for
# background), `scores [N, C]`, `fg_mask [N]` and `gt_index [N]`. An image without GT gives all background.


# %%
def assign_image(
    pred_scores: Tensor,
    pred_boxes: Tensor,
    points: Tensor,
    strides: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    num_classes: int,
    topk: int = TOPK,
    alpha: float = ALPHA,
    beta: float = BETA,
    center_radius: float | None = None,
) -> dict[str, Tensor]:
    """Task-aligned assignment of one image (rules 1-5), the teaching version: clarity over speed.

    Args:
        pred_scores: ``[N, C]`` probabilities; ``pred_boxes``: ``[N, 4]`` xyxy; ``points``: ``[N, 2]``;
        strides: ``[N]``; gt_labels: ``[M]`` int64; gt_boxes: ``[M, 4]`` xyxy (real GTs only, no padding).

    Returns:
        ``{"labels": [N] int64, "boxes": [N, 4], "scores": [N, C], "fg_mask": [N] bool, "gt_index": [N] int64}``.
    """
    ### BEGIN SOLUTION Exercise 6.6 · assign_image: the five rules in order, then each point's targets gathered
    candidates = candidate_mask(points, strides, gt_boxes, center_radius)
    metric, iou = alignment_metric(pred_scores, pred_boxes, gt_labels, gt_boxes, alpha, beta)
    positives = select_topk(metric, candidates, topk)
    gt_index = resolve_conflicts(positives, metric, iou)
    fg_mask = gt_index >= 0
    labels = torch.full((len(points),), num_classes, dtype=torch.int64)
    labels[fg_mask] = gt_labels[gt_index[fg_mask]]
    boxes = torch.zeros(len(points), 4)
    boxes[fg_mask] = gt_boxes[gt_index[fg_mask]].float()
    scores = soft_targets(gt_index, metric, iou, gt_labels, num_classes)
    return {"labels": labels, "boxes": boxes, "scores": scores, "fg_mask": fg_mask, "gt_index": gt_index}
    ### END SOLUTION


# %%
assign_image = check("6.6", assign_image, fallback=reference.assign_image)

# %% [markdown]
# ## 8. Watching the assigner work
#
# We have no trained model yet (Chapter 8), so we fake one whose predictions **improve** with a knob
# `progress` from 0 to 1: each point's predicted box moves from a random box around the point towards the box
# of the object it sits in, and its class score rises from the prior. Like a real detector, points near an
# object's centre draw its box best (they see all of it), while the class is recognised best on a
# *discriminative part* — here the upper body and head. That mismatch between the best point for
# classification and the best point for localisation is exactly what TOOD set out to fix.


# %%
def synthetic_predictions(progress: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``pred_scores [N, C]`` and ``pred_boxes [N, 4]`` of a detector at ``progress`` in [0, 1] of its training."""
    generator = torch.Generator().manual_seed(seed)
    noise = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    random_ltrb = strides[:, None] * torch.empty(len(points), 4).uniform_(0.5, 4.0, generator=generator)
    areas = (gt_boxes[:, 2:] - gt_boxes[:, :2]).prod(-1)
    inside = reference.candidate_mask(points, strides, gt_boxes)  # [M, N]
    owner = torch.where(inside, areas[:, None], torch.inf).argmin(0)  # smallest GT holding the point
    has_owner = inside.any(0)
    target_ltrb = xyxy_to_ltrb(points, gt_boxes[owner]).clamp(min=0)
    half = (gt_boxes[owner, 2:] - gt_boxes[owner, :2]) / 2
    centre = (gt_boxes[owner, :2] + gt_boxes[owner, 2:]) / 2
    off_centre = ((points - centre).abs() / half).amax(-1).clamp(max=1)  # 0 at the centre, 1 at the border
    part = centre - torch.stack((torch.zeros_like(half[:, 0]), 0.6 * half[:, 1]), -1)  # the upper body
    off_part = ((points - part).abs() / half).amax(-1).clamp(max=1)
    # the learned box is too small by a fraction that grows towards the border (a point there sees part of it)
    shrink = 0.6 * off_centre[:, None] * torch.empty(len(points), 4).uniform_(0.7, 1.0, generator=generator)
    learned = target_ltrb * (1 - shrink)
    ltrb = torch.where(has_owner[:, None], (1 - progress) * random_ltrb + progress * learned, random_ltrb)
    logits = -4.6 + 0.5 * noise(len(points), NUM_CLASSES)  # prior 0.01 everywhere ...
    own_logit = -4.6 + progress * (7.0 - 2.5 * off_part) + 0.5 * noise(len(points))
    logits[has_owner, gt_labels[owner][has_owner]] = own_logit[has_owner]  # ... rising for the object's class
    return logits.sigmoid(), torch.cat((points - ltrb[:, :2], points + ltrb[:, 2:]), -1).clamp(0, image_size)


pred_scores, pred_boxes = synthetic_predictions(0.5)
metric, iou = alignment_metric(pred_scores, pred_boxes, gt_labels, gt_boxes)
level0 = strides == level_strides[0]
big = int((gt_boxes[:, 2:] - gt_boxes[:, :2]).prod(-1).argmax())  # the largest GT
fig, axes = plt.subplots(1, 4, figsize=(15, 4))
x1, y1, x2, y2 = gt_boxes[big].tolist()
panels = {
    f"score s of '{class_names[gt_labels[big]]}'": pred_scores[:, gt_labels[big]],
    "IoU with the GT": iou[big],
    "t = s · IoU^6 (TOOD)": metric[big],
    "t = s^6 · IoU (swapped)": pred_scores[:, gt_labels[big]].pow(6) * iou[big],
}
for ax, (title, values) in zip(axes, panels.items(), strict=True):
    heat = values[level0].reshape(feature_sizes[0])
    ax.imshow(image.permute(1, 2, 0))
    ax.imshow(
        heat / heat.max().clamp(min=1e-12), extent=(0, image_size, image_size, 0), cmap="magma", alpha=0.7
    )
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="cyan", lw=1.5))
    ax.set_xlim(x1 - 40, x2 + 40)
    ax.set_ylim(y2 + 40, y1 - 40)
    ax.set_title(title + " (stride 8, max = 1)", fontsize=9)
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# The score peaks on the upper body, the IoU around the centre. TOOD's metric follows the IoU (a point must
# draw a good box), the swapped one follows the score. Now the selected positives, each GT in its colour,
# without and with centre sampling, and what swapping the exponents does to the quality of the chosen boxes:

# %%
settings_to_show = {
    "TAL (1, 6)": dict(),
    f"TAL + centre sampling r={CENTER_RADIUS}": dict(center_radius=CENTER_RADIUS),
    "TAL, exponents swapped (6, 1)": dict(alpha=BETA, beta=ALPHA),
}
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
for ax, (title, options) in zip(axes, settings_to_show.items(), strict=True):
    result = assign_image(
        pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes, NUM_CLASSES, **options
    )
    fg = result["fg_mask"]
    chosen_iou = iou[result["gt_index"][fg], fg.nonzero()[:, 0]]
    show_assignment(
        ax,
        result["gt_index"],
        f"{title}\n{int(fg.sum())} positives, mean IoU of their boxes {chosen_iou.mean():.2f}",
    )
plt.tight_layout()
plt.show()

# %% [markdown]
# And over "training": the same image at four stages of the fake detector, zoomed on the two largest figures
# (small GTs have fewer than `topk` candidates, so all of them are positive at every stage). Early on, with random
# boxes, the positives are scattered (any point whose random box happens to fit); as the predictions improve
# they gather where the network draws the box well — near the centres — and their soft targets grow. (The
# titles give the mean soft target of all positives, and the positives' mean distance from their GT's centre for
# the two large GTs, in half-sizes: 0 at the centre, 1 on a side.)

# %%
largest = (gt_boxes[:, 2:] - gt_boxes[:, :2]).prod(-1).topk(2).indices
close_up = (*(gt_boxes[largest, :2].amin(0) - 10).tolist(), *(gt_boxes[largest, 2:].amax(0) + 10).tolist())


def distance_from_centre(result: dict[str, Tensor], gts: Tensor) -> float:
    """Mean max-norm distance of the positives of ``gts`` from their GT's centre, in half-sizes (0: centre, 1: side)."""
    chosen = torch.isin(result["gt_index"], gts)
    boxes = gt_boxes[result["gt_index"][chosen]]
    half = (boxes[:, 2:] - boxes[:, :2]) / 2
    return ((points[chosen] - (boxes[:, :2] + half)).abs() / half).amax(-1).mean().item()


fig, axes = plt.subplots(1, 4, figsize=(16, 4.3))
for ax, progress in zip(axes, (0.0, 0.33, 0.66, 1.0), strict=True):
    scores_p, boxes_p = synthetic_predictions(progress)
    result = assign_image(scores_p, boxes_p, points, strides, gt_labels, gt_boxes, NUM_CLASSES)
    fg = result["fg_mask"]
    mean_score = result["scores"][fg].sum(-1).mean()
    title = f"progress {progress:.2f}: soft target {mean_score:.2f}\ndistance from centre {distance_from_centre(result, largest):.2f}"
    show_assignment(ax, result["gt_index"], title, close_up)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 9. Batched, and a race against the package
#
# `assign_image` loops over images; fine for understanding, slow for training. A batched version does the
# same on `[B, M, N]` tensors (images × GTs × points) with padded GTs masked out by `gt_mask`: every rule
# becomes one tensor operation over the last axis (points: rules 1, 2, 3, 5) or the middle one (GTs: rule 4).
# Once your six exercises pass, read `assign_batched` in `course/reference/ch06.py`: it is your `assign_image`
# written that way. Below, the loop over your `assign_image`, that dense batched version and the package's
# assigner must agree exactly on a random batch.


# %%
def assign_loop(
    pred_scores, pred_boxes, points, strides, gt_labels, gt_boxes, gt_mask, num_classes, **options
):
    """``assign_image`` image by image; padded GTs are dropped and ``gt_index`` mapped back to the ``M`` axis."""
    per_image = []
    for b in range(len(pred_scores)):
        real = gt_mask[b].nonzero()[:, 0]
        out = assign_image(pred_scores[b], pred_boxes[b], points, strides, gt_labels[b, real], gt_boxes[b, real],
                           num_classes, **options)  # fmt: skip
        out["gt_index"] = (
            torch.where(out["fg_mask"], real[out["gt_index"].clamp(min=0)], -1)
            if len(real)
            else out["gt_index"]
        )
        per_image.append(out)
    return {name: torch.stack([o[name] for o in per_image]) for name in per_image[0]}


def random_batch(batch: int, image_size: int, num_gts: int, seed: int = 0):
    """A random batch: predictions near random GTs, a random number of real GTs per image (padded)."""
    generator = torch.Generator().manual_seed(seed)
    sizes = [(image_size // s, image_size // s) for s in level_strides]
    pts, strd = make_points(sizes, level_strides)
    centres = torch.rand(batch, num_gts, 2, generator=generator) * image_size
    half = torch.rand(batch, num_gts, 2, generator=generator) * image_size / 6 + 4
    boxes = torch.cat((centres - half, centres + half), -1).clamp(0, image_size)
    labels = torch.randint(0, NUM_CLASSES, (batch, num_gts), generator=generator)
    mask = torch.arange(num_gts)[None] < torch.randint(1, num_gts + 1, (batch, 1), generator=generator)
    ltrb = strd[:, None] * torch.rand(batch, len(pts), 4, generator=generator) * 4
    pred = torch.cat((pts - ltrb[..., :2], pts + ltrb[..., 2:]), -1)
    scores = torch.rand(batch, len(pts), NUM_CLASSES, generator=generator)
    return scores, pred, pts, strd, labels, boxes, mask


batch_inputs = random_batch(4, 256, 12)
assigner_out = TaskAlignedAssigner(NUM_CLASSES)(
    *batch_inputs[:2], batch_inputs[2], *batch_inputs[4:], batch_inputs[3]
)
for name, implementation in (
    ("loop over assign_image", assign_loop),
    ("dense batched", reference.assign_batched),
):
    ours = implementation(*batch_inputs, NUM_CLASSES)
    same = all(torch.equal(ours[k], getattr(assigner_out, k)) for k in ("labels", "fg_mask", "gt_index"))
    same &= torch.allclose(ours["boxes"], assigner_out.boxes) and torch.allclose(
        ours["scores"], assigner_out.scores, atol=1e-6
    )
    print(
        f"{name:24} equal to the package's TaskAlignedAssigner: {same}  ({int(assigner_out.fg_mask.sum())} positives)"
    )

# %% [markdown]
# And the speed, best of 3 runs (on shared CPU cores the numbers are noisy; a GPU widens the gaps): the image
# loop, our dense batched version, and the package, which computes the metric only at candidate triples and
# chunks the batch to bound memory.


# %%
def best_time(fn, repeats=3):
    """Best wall time of ``fn()`` over a few runs, in ms."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


assigner = TaskAlignedAssigner(NUM_CLASSES)
print(f"{'batch':>22}{'loop (ms)':>12}{'batched (ms)':>14}{'package (ms)':>14}")
for batch, size, num_gts in ((8, 320, 20), (scaled(4, 16), 640, 30)):
    inputs = random_batch(batch, size, num_gts, seed=1)
    assigner_args = (*inputs[:3], *inputs[4:], inputs[3])
    with torch.no_grad():
        row = [
            best_time(lambda f=f, inputs=inputs: f(*inputs, NUM_CLASSES))
            for f in (assign_loop, reference.assign_batched)
        ]
        row.append(best_time(lambda args=assigner_args: assigner(*args)))
    label = f"B={batch}, {size} px, M={num_gts}"
    print(f"{label:>22}" + "".join(f"{v:>13.1f} " for v in row))

# %% [markdown]
# ## What the package does differently
#
# - `detector.assigner.TaskAlignedAssigner` is batched like the dense version but never builds a `[B, M, N, 4]`
#   tensor: it compares the four sides one at a time, computes IoU and metric **only at candidate triples**
#   (a small fraction of `B·M·N`), and runs rules 4–5 on the list of at most `B·M·topk` positives. It splits the
#   batch into chunks of images (and of GTs) so that a 640-px image with 300 GTs stays under
#   `memory_budget_mb`.
# - It works in float32 whatever the input dtype (AMP), under `torch.no_grad()`, and breaks ties
#   deterministically (lower point index in top-k, lower GT index in conflicts), so GT order never changes the
#   result.
# - It counts the real GTs that got no positive (`num_unassigned_gts`), logged by the runner: on the arena, tiny
#   heads with no point inside are the usual culprits.
# - `PerLevelAssigner` (the FCOS rule) has the same call signature, so Chapter 7 can swap assigners in an
#   ablation.
# - It has no fixed-assigner warm-up: TAL chooses the positives from the first step (TOOD's configuration starts
#   with 4 epochs of ATSS; see the open questions).
#
# ## Summary
#
# Label assignment decides which points learn which box. FCOS fixes it by geometry (inside, scale range,
# centre). TAL keeps the geometric candidates, ranks them by $t = s^\alpha \mathrm{IoU}^\beta$ computed
# without gradient, takes the top-k per GT, gives a point claimed twice to the claiming GT it overlaps most,
# and trains the classifier towards normalised soft targets on the IoU scale. With $\beta = 6$ the box quality
# dominates; swapping the exponents quietly turns TAL into "the most confident points win". Libraries differ in
# the details (top-k order, conflict rule, constants, a warm-up assigner): know which convention you port.
#
# ## Open questions
#
# 1. A head smaller than the finest stride may contain no grid point. Which changes would give it a positive —
#    centre sampling with a larger radius, a finer level, or allowing points *near* the box? What does each
#    cost?
# 2. Early in training all predicted boxes are poor and $t$ is nearly random among candidates. TOOD's own
#    configuration trains its first epochs with a fixed assigner (ATSS) before switching to TAL. Why might that
#    help, and how would you find out whether the package, which has no such warm-up, needs one?
# 3. TOOD uses the same $t$ to select positives and to build their soft targets. What would change if the
#    soft targets were the plain IoU of each positive's box instead?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answers.**
#
# 1. Centre sampling cannot help: it only *removes* candidates (Exercise 6.1), whatever its radius. A finer
#    level (halving the stride) puts four times as many points on that level, so even tiny boxes hold one; it
#    costs compute and memory in the neck and head (the finest level dominates the point count) and more
#    candidates per large GT. Allowing points *near* the box (e.g. a margin around it) gives tiny boxes
#    positives at no compute cost, but those points lie outside the box: their `l, t, r, b` targets have a
#    negative side, which the positive-distance decoding of Chapter 5 cannot express, and they see mostly
#    background.
# 2. With random boxes, $t$ ranks candidates by noise, so the positives — and hence the soft targets and the
#    box loss — change from step to step; a fixed geometric rule gives stable positives while the network is
#    still learning what an object looks like. The package trains with TAL from the first step (the ablation of
#    Chapter 7 does too); whether a warm-up would help on the arena is an experiment you can run by starting
#    with `PerLevelAssigner` and switching.
# 3. Plain IoU targets (VarifocalNet's IoU-aware score is of this kind) ignore the class score: the classifier
#    then learns box quality only. TAL's normalised $t$ keeps the GT's best IoU as the scale but ranks the
#    positives by the same joint alignment that selected them, so selection and target agree: a point chosen
#    for being well aligned is also the one taught the highest score.
