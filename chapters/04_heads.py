# %% [markdown]
# # Chapter 4 · The heads
#
# The neck (Chapter 3) gives three maps `P3, P4, P5` of `width` channels. The **head** turns every cell of every
# level — every *point* — into three predictions:
#
# - `cls_logits [B, N, C]`: one logit per class (independent sigmoids, not a softmax: "nothing" is all low),
# - `box_ltrb [B, N, 4]`: distances from the point to the left, top, right and bottom sides of its box, in
#   pixels (Chapter 5 turns them into boxes),
# - `obj_logits [B, N, 1]`: how good the point's own box is — an objectness / predicted-IoU score.
#
# In this chapter you will build
#
# 1. the **prior-probability bias** that makes every initial score equal a small `π`, and derive it,
# 2. the **flattening** of per-level maps `[B, K, H_l, W_l]` into `[B, N, K]`, in the order of the grid points,
# 3. a conv **tower** whose weights are shared by the levels but whose BatchNorm is not,
# 4. the **decoupled head**: a classification tower and a regression tower, with the objectness branch on the
#    regression tower.
#
# Vocabulary: `N = Σ_l H_l · W_l` points over all levels; `C = num_classes`; `π = prior_prob`.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from course import arena_dir, check, hint
from course.reference import ch04 as reference
from detector.config import load_config
from detector.boxes import make_points
from detector.data import CocoDetection, eval_transforms
from detector.model import Backbone, DecoupledHead, FpnPan
from detector.model.head import PRED_INIT_STD, _flatten, _SharedTower

torch.manual_seed(0)
arena = arena_dir()
image, target = CocoDetection(arena / "train", transforms=eval_transforms(320))[2]  # uint8 [3, 320, 320]

# %% [markdown]
# ## 1. The prior-probability bias
#
# A 320-pixel image has thousands of points (the counts for two stride sets are printed below) and a handful
# of objects: almost every (point, class) pair is background. A freshly initialised last layer outputs logits
# near 0, i.e. probabilities near 0.5 for all of them — the network starts out claiming an object of every class everywhere, and the loss of those
# thousands of easy negatives swamps the few positives in the first steps (training can even diverge).
#
# RetinaNet's fix (Lin et al. 2017): initialise the bias `b` of the classification conv so that every initial
# probability is a small prior `π` (0.01). The weights start tiny (std 0.01), so the logit is ≈ `b`, and `b` must
# satisfy `σ(b) = π` with the sigmoid `σ(b) = 1 / (1 + e^{-b})`.

# %%
demo = load_config("arena_cpu").model
demo_strides = Backbone(demo.backbone, out_indices=demo.out_indices).strides  # the demo's levels (Chapter 2)
for strides in ([8, 16, 32], demo_strides):
    print(f"strides {strides} on 320 px: {sum((320 // s) ** 2 for s in strides)} points")

# %% [markdown]
# **Predict, then run.** For `π = 0.01`, is `b` positive or negative, and is it nearer to −1, −5 or −10? (A logit
# of 0 is a probability of one half, and multiplying the odds `π / (1 - π)` by `e` raises the logit by 1.) The
# cell under the exercise prints it.
#
# **Exercise 4.1** — write `prior_bias(prior_prob)`.


# %%
def prior_bias(prior_prob: float) -> float:
    """The bias ``b`` with ``sigmoid(b) = prior_prob`` (RetinaNet's prior-probability initialisation).

    Args:
        prior_prob: ``π`` in ``(0, 1)``.

    Returns:
        the logit ``b`` whose sigmoid is ``π``, a Python float.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 4.1 · prior_bias: invert the sigmoid at the prior probability')


# %%
prior_bias = check("4.1", prior_bias, fallback=reference.prior_bias)
print(
    f"prior_bias(0.01) = {prior_bias(0.01):.4f}, sigmoid of it = {torch.sigmoid(torch.tensor(prior_bias(0.01))):.4f}"
)

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **The derivation.** Solve the sigmoid for `b`:
#
# $$\sigma(b) = \frac{1}{1 + e^{-b}} = \pi \iff e^{-b} = \frac{1 - \pi}{\pi} \iff
# b = -\log\frac{1 - \pi}{\pi},$$
#
# the log-odds of `π`. For `π = 0.01`, `b = -log 99 ≈ -4.595`: negative, near −5 (odds of 1 : 99 are about
# `e^{-4.6}`).

# %% [markdown]
# ## 2. Flattening the levels
#
# The head predicts per level, as maps `[B, K, H_l, W_l]` (`K = C`, 4 or 1). The assigner and the losses want
# one row per point: `[B, N, K]`. The order of the rows must be **the order of the grid points** of Chapter 5
# (`detector.boxes.make_points`): level by level (the finest first), and within a level row by row (row-major:
# `k = i · W_l + j` for cell row `i`, column `j`). Row `k` of the predictions then belongs to `points[k]`.
#
# A reshape regroups numbers in memory order, and `[B, K, H, W]` stores each channel's whole map before the next
# channel's: a reshape to `[B, N, K]` has the right shape, but are its rows the cells?
#
# **Predict, then run.** One level, `B = 1`, `K = 2` channels on a `2 × 2` map: channel 0 holds `[[0, 1], [2, 3]]`,
# channel 1 holds `[[4, 5], [6, 7]]` (that is `torch.arange(8.).view(1, 2, 2, 2)`). Write down the `[1, 4, 2]`
# result of a correct flattening, and the one that `reshape(1, -1, 2)` straight from `[1, 2, 2, 2]` gives. The cell
# under the exercise prints both.
#
# **Exercise 4.2** — write `flatten_levels(maps)`.


# %%
def flatten_levels(maps: list[Tensor]) -> Tensor:
    """Per-level maps → one row per point, in ``make_points`` order.

    Args:
        maps: ``L`` tensors ``[B, K, H_l, W_l]``, fine to coarse.

    Returns:
        ``[B, N, K]`` with ``N = Σ H_l · W_l``: levels in order, row-major within a level
        (``out[b, offset_l + i · W_l + j] = maps[l][b, :, i, j]``).
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 4.2 · flatten_levels: one row per point, in the order of the grid points')


# %%
flatten_levels = check("4.2", flatten_levels, fallback=_flatten)
tiny = torch.arange(8.0).view(1, 2, 2, 2)  # [B=1, K=2, H=2, W=2]
print("flatten_levels:", flatten_levels([tiny])[0].tolist())
print("reshape only:  ", tiny.reshape(1, -1, 2)[0].tolist())

# %% [markdown]
# Each row must be one cell's two channels — `(0, 4), (1, 5), (2, 6), (3, 7)`, row-major. The bare reshape pairs
# neighbouring *cells* of one channel, `(0, 1), (2, 3), …`: the right shape, the wrong numbers.

# %% [markdown]
# A visual proof of the order: write each cell's own centre `((j + 0.5)·s, (i + 0.5)·s)` into a two-channel map,
# flatten, and compare with the grid points.

# %%
sizes, strides = [(4, 4), (2, 2), (1, 1)], [8, 16, 32]
maps = []
for (height, width), stride in zip(sizes, strides, strict=True):
    x_map = ((torch.arange(width) + 0.5) * stride).expand(height, width)  # [H, W]: each cell's centre x
    y_map = ((torch.arange(height) + 0.5) * stride)[:, None].expand(height, width)  # [H, W]: centre y
    maps.append(torch.stack((x_map, y_map))[None])  # [1, 2, H, W]
points, _ = make_points(sizes, strides)
flat = flatten_levels(maps)[0]  # [N, 2]
print("flattened centres == make_points:", torch.equal(flat, points), f"({len(points)} points)")

# %% [markdown]
# ## 3. A tower shared by the levels
#
# Objects of every size should be recognised by the same features, so one set of conv weights serves all levels
# (FCOS, RetinaNet) — it also means every level trains the same convs, with three times the data. But
# **BatchNorm** should not be shared: the statistics of P3 (fine, many cells) and P5 (coarse) differ, and a
# BatchNorm shared by levels normalises each level with its own batch statistics in training but with a running
# average of all levels in eval mode — the model you evaluate is not the one you trained. So: shared convs, one
# BatchNorm per (level, conv) (as in EfficientDet).
#
# **Exercise 4.3** — write `SharedTower`: `num_convs` blocks 3×3 conv (no bias) → BatchNorm of *this level* →
# SiLU. Names: `convs` (a `ModuleList` of `num_convs` convs), `norms` (a `ModuleList` with one `ModuleList` of
# `num_convs` BatchNorms per level), `act`.


# %%
class SharedTower(nn.Module):
    """``num_convs`` 3×3 conv → BatchNorm → SiLU blocks; conv weights shared by all levels, BatchNorm per level.

    Args:
        width: channels in and out.
        num_convs: blocks in the tower.
        num_levels: ``L``.

    Attributes:
        convs: ``nn.ModuleList`` of ``num_convs`` ``Conv2d(width, width, 3, padding=1, bias=False)``.
        norms: ``nn.ModuleList`` of ``L`` ``nn.ModuleList``\\ s of ``num_convs`` ``BatchNorm2d(width)``.
        act: ``nn.SiLU()``.

    ``forward(x, level)``: ``[B, width, H, W]`` of level ``level`` → ``[B, width, H, W]``.
    """

    def __init__(self, width: int, num_convs: int, num_levels: int) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 4.3 · SharedTower: convs shared by all levels, BatchNorm owned by each level')

    def forward(self, x: Tensor, level: int) -> Tensor:
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 4.3 · SharedTower: convs shared by all levels, BatchNorm owned by each level')


# %%
SharedTower = check("4.3", SharedTower, fallback=_SharedTower)

# %% [markdown]
# ## 4. The decoupled head
#
# YOLOv3 predicted classes, box and objectness with a single 1×1 conv per level, all from the same features. The
# two tasks pull the features in different directions — classification wants features that are invariant to
# small shifts, regression wants features that change with them (Song et al. 2020; Wu et al. 2020) — and YOLOX (Ge et al. 2021) brought the
# **decoupled** head to the YOLO family: a classification tower and a regression tower. The objectness / IoU
# branch asks "how good is my box?", a localisation question, so it sits on the **regression** tower.
#
# Per level `l` with stride `s_l`:
#
# - `cls = cls_pred(cls_tower(P_l))` — `C` channels, bias `b(π)`;
# - `ltrb = softplus(scale_l · box_pred(reg_tower(P_l))) · s_l` — 4 channels, in pixels. The network predicts
#   distances in units of the stride (a P5 cell is 4× larger than a P3 cell), a learnable `scale_l` per level
#   lets each level adjust its range (FCOS), and softplus keeps them ≥ 0 without the float16 overflow of FCOS's
#   `exp` (`exp(x)` overflows float16 for `x > 11.1`);
# - `obj = obj_pred(reg_tower(P_l))` — 1 channel, bias `b(π)`.
#
# The prediction convs are 3×3 with bias, weights drawn from `N(0, 0.01²)` so that the initial logits are the
# biases; the box bias starts at 0. All outputs are float32 and flattened with `flatten_levels`.
#
# **Exercise 4.4** — write `Head`. Names: `cls_tower`, `reg_tower` (`SharedTower`s), `cls_pred`, `box_pred`,
# `obj_pred`, `scales` (an `nn.Parameter` of `L` ones) — those of the package's `DecoupledHead`, so the check can
# copy its weights into yours and compare.


# %%
class Head(nn.Module):
    """Decoupled head: classification, box (ltrb, pixels) and objectness predictions for every point.

    Args:
        width: channels of the neck's maps.
        num_classes: ``C``.
        num_levels: ``L``.
        num_convs: blocks per tower.
        prior_prob: ``π``, the initial probability of every class and of objectness.
        strides: stride of each level in pixels; default ``8 · 2^l``.

    ``forward(features)``: ``L`` maps ``[B, width, H_l, W_l]`` → ``(cls_logits [B, N, C], box_ltrb [B, N, 4] ≥ 0
    in pixels, obj_logits [B, N, 1])``, float32, rows in ``make_points`` order.
    """

    def __init__(
        self,
        width: int,
        num_classes: int,
        num_levels: int,
        num_convs: int = 2,
        prior_prob: float = 0.01,
        strides: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.strides = list(strides) if strides is not None else [8 * 2**level for level in range(num_levels)]
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 4.4 · Head: two towers and three prediction layers that start at the prior')

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 4.4 · Head: two towers and three prediction layers that start at the prior')


# %%
Head = check("4.4", Head, fallback=DecoupledHead)

# %% [markdown]
# ## 5. The initial scores, with and without the prior
#
# The arena image through a (random) backbone, the neck of Chapter 3, and two heads that differ only in the
# biases of `cls_pred` and `obj_pred`: the prior `b(0.01)`, or PyTorch's default (≈ 0). With the prior every
# score starts near 0.01; without it, near 0.5.

# %%
backbone = Backbone("resnet18", out_indices=(2, 3, 4)).eval()
neck = FpnPan(backbone.channels, 64).eval()
head = Head(64, num_classes=4, num_levels=3, strides=backbone.strides).eval()
no_prior = Head(64, num_classes=4, num_levels=3, strides=backbone.strides).eval()
no_prior.load_state_dict(head.state_dict())
with torch.no_grad():
    no_prior.cls_pred.bias.zero_()
    no_prior.obj_pred.bias.zero_()
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)
    features = neck(backbone((image[None].float() / 255 - mean) / std))
    outputs = {"prior π = 0.01": head(features), "bias 0": no_prior(features)}

cls_logits, box_ltrb, obj_logits = outputs["prior π = 0.01"]
print(
    f"cls_logits {tuple(cls_logits.shape)}, box_ltrb {tuple(box_ltrb.shape)}, obj_logits {tuple(obj_logits.shape)}"
)

# %% [markdown]
# What the initial scores do to the first loss. Suppose every point is background (the dozen positives hardly
# change the sums): the binary cross-entropy of a score `p` against 0 is `-log(1 - p)`, summed over all `N · C`
# pairs and divided by the number of objects (the usual normaliser). Focal loss (Chapter 7) multiplies each term
# by `α_t (1 - p_t)^γ` (`α = 0.25`, `γ = 2`) and so damps *easy* negatives — but at `p = 0.5` no negative is easy
# yet. For scale, the dashed lines show what one positive costs at the initial score.

# %%
num_objects = len(target["boxes"])
losses = {}
for name, (cls_logits, _, _) in outputs.items():
    zeros = torch.zeros_like(cls_logits)
    losses[name] = {
        "BCE": F.binary_cross_entropy_with_logits(cls_logits, zeros, reduction="sum").item() / num_objects,
        "focal": sigmoid_focal_loss(cls_logits, zeros, alpha=0.25, gamma=2.0, reduction="sum").item()
        / num_objects,
    }
positive_cost = {  # one positive at the initial score p = π: BCE -log p, focal α (1 - p)^γ (-log p)
    "BCE": -math.log(0.01),
    "focal": 0.25 * (1 - 0.01) ** 2 * -math.log(0.01),
}

fig, (ax_scores, ax_loss) = plt.subplots(1, 2, figsize=(13, 3.8))
bins = torch.linspace(-0.005, 1.005, 102).numpy()  # bins of width 0.01 centred on 0, 0.01, …, 1
for (name, (cls_logits, _, _)), color in zip(outputs.items(), ("tab:blue", "tab:red"), strict=True):
    scores = torch.sigmoid(cls_logits).flatten()
    ax_scores.hist(scores.numpy(), bins=bins, color=color, label=f"{name}: mean {scores.mean():.3f}")
ax_scores.set_xlabel(f"initial class score sigmoid(cls_logit), {cls_logits.numel()} (point, class) pairs")
ax_scores.set_ylabel("pairs")
ax_scores.legend()
positions = torch.arange(2)
for offset, (name, color) in enumerate(zip(outputs, ("tab:blue", "tab:red"), strict=True)):
    values = [losses[name]["BCE"], losses[name]["focal"]]
    ax_loss.bar(positions + 0.38 * offset, values, width=0.36, color=color, label=name)
    for x, value in zip(positions + 0.38 * offset, values, strict=True):
        ax_loss.text(x, value, f"{value:.3g}", ha="center", va="bottom", fontsize=8)
for x, kind in enumerate(("BCE", "focal")):
    ax_loss.hlines(positive_cost[kind], x - 0.2, x + 0.58, colors="black", linestyles="dashed")
ax_loss.set_xticks(positions + 0.19, ["BCE", "focal"])
ax_loss.set_yscale("log")
ax_loss.set_ylim(top=30 * max(v for loss in losses.values() for v in loss.values()))
ax_loss.set_ylabel(f"background loss / {num_objects} objects")
ax_loss.set_title("initial loss of the all-background targets (dashed: one positive)")
ax_loss.legend(loc="upper right", fontsize=8)
plt.tight_layout()
plt.show()
for name in outputs:
    print(
        f"{name:15s} background / one positive: BCE {losses[name]['BCE'] / positive_cost['BCE']:.2g}×, "
        f"focal {losses[name]['focal'] / positive_cost['focal']:.2g}×"
    )

# %% [markdown]
# The ratios printed under the figure tell the story. Without the prior, the background costs orders of magnitude
# more than a positive, with BCE and with focal loss alike, and the first gradient steps mostly teach "everything
# is background". With the prior, the BCE of the background is of the order of one positive, and under focal loss
# the negatives are *easy from the first step* — their loss is small next to a positive's, and the gradients of
# the first steps go to the positives.
#
# ## What the package does differently
#
# - `detector.model.DecoupledHead` is this head; your state_dict loads into it unchanged. It checks `prior_prob`
#   and the number of levels and strides, and names the mismatch.
# - Its outputs are float32 also under autocast (mixed precision): the prediction convs may run in bfloat16, the
#   softplus, the stride scaling and everything after it do not.
# - `detector.model.Detector` chains backbone, neck and head, normalises raw images itself and returns the grid
#   points with the predictions (`DetectorOutput`), so that the row order of this chapter is never recomputed by hand.
#
# ## Summary
#
# The head predicts, per point, `C` class logits, 4 box distances and an objectness logit. Classification and
# regression get separate towers (decoupled), objectness sits on the regression tower; conv weights are shared by
# the levels, BatchNorm is per level. The biases start at the log-odds of `π` so every initial score is `π`, which
# keeps thousands of easy negatives from swamping the first steps. Per-level maps are flattened level by level,
# row-major — the order of the grid points.
#
# ## Open questions
#
# 1. The class scores are independent sigmoids, not a softmax. What would a softmax with a "background" class
#    change for an enemy-head inside an enemy box?
# 2. Why does a box distance predicted in units of the stride (then × `s_l`) train better than one predicted in
#    pixels directly?
# 3. YOLOv8 has no objectness branch: its classification target itself carries the localisation quality (the TAL
#    soft targets of Chapter 6). What is lost and what is gained by dropping the separate branch?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answers.**
#
# 1. A softmax makes the classes compete: a point inside both an enemy box and that enemy's head box would have
#    to split its probability between "enemy" and "enemy-head", and a confident head would lower the body's score.
#    With independent sigmoids both can be high, and "nothing here" is simply all scores low — no background class
#    to balance against thousands of negatives.
# 2. The same conv weights serve every level. In stride units, an object that fills a few cells has distances of a
#    few units on every level, so the outputs — and their gradients — have the same range everywhere; in pixels, P5
#    would need outputs 4× larger than P3 from the same weights. The per-level `scale` then only fine-tunes.
# 3. Gained: one branch less, and no mismatch between a class score trained without localisation and a separate
#    quality score — the ranking score used by NMS is trained directly to be high only where the box is good.
#    Lost: an explicit, class-agnostic "how good is my box" that can be combined with the class score at test time
#    (this package's `sqrt(cls · obj)`), and a localisation signal that does not depend on the class being right.
