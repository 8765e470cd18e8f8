# %% [markdown]
# # Chapter 5 · Anchor-free decoding
#
# The head (Chapter 4) predicts, for every cell of every level, four distances. To turn them into boxes we need
# to know *from where* they are measured. An **anchor-free** detector (FCOS, Tian et al. 2019; YOLOX, YOLOv8)
# gives every cell one **point** — the centre of the cell, in input pixels — and predicts the distances `l, t,
# r, b` from that point to the left, top, right and bottom sides of the object's box. No anchor boxes, no
# aspect ratios to tune: just points and distances.
#
# In this chapter you will write
#
# 1. the **grid points** of all levels, at cell centres `(i + 0.5) · s`,
# 2. `ltrb → xyxy` (decoding predictions) and `xyxy → ltrb` (encoding targets), for any batch shape,
# 3. the decoding of raw per-level head maps, with the **box scale per level** (distances in units of the stride),
#
# and then measure two choices that matter for small objects: where in its cell a point sits (a convention —
# what costs accuracy is mixing two conventions), and which strides a data set full of tiny heads needs.
#
# Vocabulary: `points [N, 2]` are cell centres `(x, y)` in pixels, all levels concatenated; `strides [N]` each
# point's stride; `ltrb [..., N, 4]`; `boxes` are `xyxy` pixels.

# %%
import json
import math

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import Tensor

from course import arena_dir, check, hint
from course.reference import ch05 as reference
from detector.boxes import aligned_box_iou
from detector.config import load_config
from detector.boxes import ltrb_to_xyxy as package_ltrb_to_xyxy
from detector.boxes import make_points as package_make_points
from detector.boxes import xyxy_to_ltrb as package_xyxy_to_ltrb
from detector.data import CocoDetection, eval_transforms
from detector.data.coco import category_mapping
from detector.model import Backbone

torch.manual_seed(0)
arena = arena_dir()
train_set = CocoDetection(arena / "train", transforms=eval_transforms(320))
image, target = train_set[2]  # uint8 [3, 320, 320], boxes xyxy in the letterboxed frame
class_names = train_set.class_names

# %% [markdown]
# ## 1. Grid points at cell centres
#
# Level `l` has stride `s` and an `H × W` map; cell `(i, j)` (row `i`, column `j`) covers the input pixels
# `[j·s, (j+1)·s) × [i·s, (i+1)·s)`. This course puts its point at the **centre** of that square, as the FCOS
# paper, ultralytics (YOLOv8) and mmdetection do (torchvision's FCOS and YOLOX's grid use the corner `j·s`;
# section 4 shows why either works, as long as it is used everywhere):
#
# $$p_{ij} = \big((j + 0.5)\,s,\ (i + 0.5)\,s\big) \quad \text{as } (x, y).$$
#
# Points are listed level by level, row-major within a level (`k = i · W + j`) — the order in which Chapter 4
# flattens the head's maps, so `points[k]` belongs to prediction row `k`. With every point goes its stride.
#
# **Predict, then run.** A `2 × 3` map (2 rows, 3 columns) of stride 8: write down its six points `(x, y)` in
# order, and their strides. The cell under the exercise prints them.
#
# **Exercise 5.1** — write `make_points`. Watch the axis order: a point is `(x, y)` — column coordinate first —
# while a map is indexed `[row, column]`.


# %%
def make_points(
    feature_sizes: list[tuple[int, int]],
    strides: list[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Cell centres of every level, concatenated.

    Args:
        feature_sizes: ``(H_l, W_l)`` of each level's map.
        strides: stride ``s_l`` of each level, in input pixels.
        device, dtype: of the returned tensors.

    Returns:
        ``points [N, 2]`` with ``points[k] = ((j + 0.5)·s, (i + 0.5)·s)`` for row ``i``, column ``j`` (row-major,
        levels in order), and ``strides [N]`` (each point's ``s``); ``N = Σ H_l · W_l``.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 5.1 · make_points: each cell centre as x, y in pixels, row by row, level by level')


# %%
make_points = check("5.1", make_points, fallback=package_make_points)
points, point_strides = make_points([(2, 3)], [8])
print("a 2 × 3 map of stride 8:\n", points, point_strides)

# %% [markdown]
# Columns at `x = 4, 12, 20`, rows at `y = 4, 12`, listed row by row: `(4, 4), (12, 4), (20, 4), (4, 12), (12, 12),
# (20, 12)`, each with stride 8. A `(y, x)` slip or a column-by-column listing shows at once on a map that is not
# square.

# %% [markdown]
# The points of the three levels of the demo model (`arena_cpu`, strides read from its config) on a 320-pixel
# arena image; the counts are in the panel titles. Each point sits in the middle of its cell (thin lines); the
# boxes are the image's objects. Small heads are covered only by the finest grid, and some are so small that they
# contain no point even there.

# %%
demo = load_config("arena_cpu")
strides = Backbone(demo.model.backbone, out_indices=demo.model.out_indices).strides
sizes = [(320 // s, 320 // s) for s in strides]
points, point_strides = make_points(sizes, strides)
print(f"arena_cpu strides {strides}: {len(points)} points on a 320-pixel input")
fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
for ax, stride, color in zip(axes, strides, ("tab:red", "tab:orange", "tab:cyan"), strict=True):
    ax.imshow(image.permute(1, 2, 0))
    level = points[point_strides == stride]
    for edge in range(0, 321, stride):
        ax.axhline(edge, color="white", lw=0.3, alpha=0.5)
        ax.axvline(edge, color="white", lw=0.3, alpha=0.5)
    ax.scatter(level[:, 0], level[:, 1], s=40 * stride / max(strides), color=color, edgecolors="black", linewidths=0.3)
    for x1, y1, x2, y2 in target["boxes"].tolist():
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="yellow", lw=1))
    ax.set_title(f"stride {stride}: {len(level)} points")
    ax.set_xlim(0, 320)
    ax.set_ylim(320, 0)
    ax.set_axis_off()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. ltrb ↔ xyxy
#
# A point `(x, y)` and its distances `(l, t, r, b)` to the left, top, right and bottom sides define a box; the
# inverse measures those distances from a point to a ground-truth box — the point's training target. Each
# distance is *signed*: positive when the side lies on the expected side of the point (the left side to its
# left, …). A point lies **inside** a box exactly when all four distances are positive — which is how the
# assigner (Chapter 6) finds candidate points; so the inverse must *not* clamp negative distances.
#
# Both functions broadcast: `points [N, 2]` against `ltrb [B, N, 4]` (a batch of predictions), or against
# `boxes [B, M, 1, 4]` (every GT with every point, `[B, M, N, 4]`). Work on the last axis only (`[..., :2]`),
# never on fixed leading dimensions.
#
# **Exercise 5.2** — write `ltrb_to_xyxy`. **Exercise 5.3** — write `xyxy_to_ltrb`.


# %%
def ltrb_to_xyxy(points: Tensor, ltrb: Tensor) -> Tensor:
    """Distances to the box sides → corners.

    Args:
        points: ``[..., N, 2]`` ``(x, y)``, broadcast against ``ltrb``.
        ltrb: ``[..., N, 4]`` distances ``(l, t, r, b)``.

    Returns:
        ``[..., N, 4]`` xyxy boxes whose sides lie ``l, t, r, b`` pixels left of, above, right of and below
        each point.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 5.2 · ltrb_to_xyxy: step out from the point to each side of the box')


def xyxy_to_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """Corners → distances from each point to the box sides (the inverse of :func:`ltrb_to_xyxy`).

    Args:
        points: ``[..., N, 2]`` ``(x, y)``, broadcast against ``boxes``.
        boxes: ``[..., N, 4]`` xyxy.

    Returns:
        ``[..., N, 4]`` signed distances ``(l, t, r, b)`` from each point to the box's left, top, right and bottom
        sides; a distance is negative where the point lies beyond that side (outside the box).
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 5.3 · xyxy_to_ltrb: how far each side of the box lies from the point, signed')


# %%
ltrb_to_xyxy = check("5.2", ltrb_to_xyxy, fallback=package_ltrb_to_xyxy)
xyxy_to_ltrb = check("5.3", xyxy_to_ltrb, fallback=package_xyxy_to_ltrb)
boxes = target["boxes"][:, None, :]  # [M, 1, 4]: every GT against every point
ltrb = xyxy_to_ltrb(points, boxes)  # [M, N, 4]
print("ltrb of every GT × point:", tuple(ltrb.shape))
print("round trip max error (px):", (ltrb_to_xyxy(points, ltrb) - boxes).abs().max().item())

# %% [markdown]
# One ground truth and its candidates: the points of the stride-8 level inside the box (all four distances > 0), and, for the
# point nearest the box centre and for one near its top-left corner, the four arrows `l, t, r, b` that are its regression
# target. A point near the border of the box has a very short distance on one side and a long one on the other:
# its box is hard to predict from its receptive field — the reason for FCOS's *centre-ness* and for the
# centre-weighted assigners of Chapter 6.

# %%
sides = (target["boxes"][:, 2:] - target["boxes"][:, :2]).prod(-1)
gt = target["boxes"][sides.argmax()]  # the largest object of the image
level = point_strides == 8
gt_ltrb = xyxy_to_ltrb(points[level], gt)  # [N_3, 4]
inside = gt_ltrb.min(-1).values > 0  # candidate points: all four distances positive
candidates, candidate_ltrb = points[level][inside], gt_ltrb[inside]
centre = (gt[:2] + gt[2:]) / 2
off_centre = gt[:2] + (gt[2:] - gt[:2]) / 5  # a fifth of the way from the top-left corner
chosen = [int((candidates - c).norm(dim=-1).argmin()) for c in (centre, off_centre)]

fig, ax = plt.subplots(figsize=(6, 6))
ax.imshow(image.permute(1, 2, 0))
ax.add_patch(Rectangle(gt[:2].tolist(), *(gt[2:] - gt[:2]).tolist(), fill=False, color="yellow", lw=2))
ax.scatter(points[level][:, 0], points[level][:, 1], s=6, color="white", alpha=0.6)
ax.scatter(
    candidates[:, 0], candidates[:, 1], s=18, color="tab:red", label=f"{len(candidates)} candidate points"
)
for k, color in zip(chosen, ("cyan", "magenta"), strict=True):
    (x, y), (left, top, right, bottom) = candidates[k].tolist(), candidate_ltrb[k].tolist()
    for dx, dy, name, value in (
        (-left, 0, "l", left),
        (0, -top, "t", top),
        (right, 0, "r", right),
        (0, bottom, "b", bottom),
    ):
        ax.annotate(
            "", xy=(x + dx, y + dy), xytext=(x, y), arrowprops=dict(arrowstyle="->", color=color, lw=1.5)
        )
        ax.text(
            x + dx / 2,
            y + dy / 2,
            f"{name}={value:.0f}",
            color=color,
            fontsize=8,
            ha="center",
            va="bottom",
            bbox=dict(facecolor="black", alpha=0.5, pad=1, lw=0),
        )
pad = 12
ax.set_xlim(gt[0] - pad, gt[2] + pad)
ax.set_ylim(gt[3] + pad, gt[1] - pad)
ax.set_title(
    f"{class_names[int(target['labels'][sides.argmax()])]}: candidates at stride 8 and their l, t, r, b"
)
ax.legend(loc="lower left", fontsize=8)
plt.show()

# %% [markdown]
# ## 3. Decoding the head's maps: box scale per level
#
# A P5 cell is 4× larger than a P3 cell, and so are the objects it is responsible for. A head that had to
# output distances in pixels would need outputs from a couple of pixels to hundreds with the same conv weights on
# every level. So the
# head predicts distances **in units of its level's stride** and they are multiplied by `s_l` before decoding
# (the package's head does this multiplication inside, together with a learnable per-level scale; Chapter 4).
#
# **Exercise 5.4** — write `decode_boxes`: per-level box maps `[B, 4, H_l, W_l]` in stride units → boxes
# `[B, N, 4]` in pixels, in point order. Use your `make_points` and `ltrb_to_xyxy`.


# %%
def decode_boxes(box_maps: list[Tensor], strides: list[int]) -> tuple[Tensor, Tensor]:
    """Per-level distance maps in stride units → xyxy boxes in pixels.

    Args:
        box_maps: ``L`` tensors ``[B, 4, H_l, W_l]``: ``(l, t, r, b) / s_l`` for every cell, fine to coarse.
        strides: ``s_l`` of each level.

    Returns:
        ``(boxes [B, N, 4] xyxy pixels, points [N, 2])``, rows in ``make_points`` order.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 5.4 · decode_boxes: stride units back to pixel boxes, in the order of the points')


# %%
decode_boxes = check("5.4", decode_boxes, fallback=reference.decode_boxes)
maps = [torch.ones(1, 4, h, w) for h, w in sizes]  # every cell predicts 1 stride to each side
decoded, _ = decode_boxes(maps, strides)
print(
    "a prediction of (1, 1, 1, 1) strides is a box of side",
    (decoded[0, :, 2] - decoded[0, :, 0]).unique().tolist(),
)

# %% [markdown]
# ## 4. Where in the cell? A convention — keep it everywhere
#
# Both conventions are in use: the point at the cell's centre, `(j + 0.5) · s` (the FCOS paper, ultralytics,
# mmdetection, this course), or at its corner, `j · s` (torchvision's FCOS, YOLOX's grid). Is one of them "where
# the cell looks"? A ResNet's 3×3 convs with padding 1 and its stride-2 steps centre output cell `j` on input
# pixel `j · s` — the pixel whose centre lies at `j · s + 0.5` in continuous coordinates — not at `(j + 0.5) · s`.
# Measured: the centroid of `|∂ output / ∂ input|` of one cell per level of a (random) ResNet-18:

# %%
generator = torch.Generator().manual_seed(0)
probe_net = Backbone("resnet18", out_indices=(2, 3, 4)).eval()
image_side = 256
for level, stride in enumerate(probe_net.strides):
    pixels = torch.randn(8, 3, image_side, image_side, generator=generator).requires_grad_()  # 8 random images
    cell = image_side // stride // 2  # a cell in the middle, away from the zero padding of the border
    probe_net(pixels)[level][:, :, cell, cell].sum().backward()
    weight = pixels.grad.abs().sum((0, 1)).sum(0)  # [W]: sensitivity per input column, summed over the images
    centroid = ((torch.arange(image_side) + 0.5) * weight).sum() / weight.sum()  # continuous x coordinate
    print(
        f"stride {stride:2d}, cell {cell}: receptive-field centroid x = {centroid:.1f}; "
        f"corner j·s = {cell * stride}, centre (j + 0.5)·s = {(cell + 0.5) * stride}"
    )

# %% [markdown]
# The centroid sits within a pixel of `j · s`: for a ResNet the corner convention is, if anything, the closer one.
# It does not matter much either way — the head's 3×3 convs and the learned distances absorb a constant offset —
# **as long as the targets are encoded and the predictions decoded with the same points.** What does cost
# accuracy is mixing the two, which happens in real code bases (a decoder written for one library, an assigner
# from another). Two measurements on square heads of side 6 to 12 pixels (about the middle half of the arena's
# head sizes, Chapter 1) at random sub-pixel positions, stride 8:
#
# - **mixed conventions**: a *perfect* prediction, encoded at one convention's point and decoded at the other's,
#   is shifted by `(s/2, s/2)`; its IoU loss `1 - IoU` is large. With the same convention on both sides it is 0;
# - **coverage**: the share of heads that contain at least one grid point (the candidates of Chapter 6) — the
#   same for both conventions, because a grid shifted by half a cell is still a grid and the heads sit anywhere.

# %%
generator = torch.Generator().manual_seed(0)
stride, trials = 8, 20000
head_sides = torch.arange(6, 13)
grid = torch.arange(0, 320 + stride, stride, dtype=torch.float32)  # corner-convention coordinates; + s/2: centres


def contains_a_point(heads: Tensor, offset: float) -> Tensor:
    """``heads [T, 4]`` xyxy → ``[T]`` bool: a grid point ``(j + offset) · s`` lies strictly inside, on both axes."""
    coords = grid + offset * stride
    inside_x = ((coords > heads[:, :1]) & (coords < heads[:, 2:3])).any(-1)
    inside_y = ((coords > heads[:, 1:2]) & (coords < heads[:, 3:4])).any(-1)
    return inside_x & inside_y


loss_mixed, loss_same, covered = [], [], {0.0: [], 0.5: []}
for side in head_sides.tolist():
    centres = 40 + 240 * torch.rand(trials, 2, generator=generator)  # (x, y), away from the border
    heads = torch.cat((centres - side / 2, centres + side / 2), dim=-1)  # [trials, 4] xyxy
    cell = torch.floor(centres / stride)  # the cell that contains the head's centre
    centre_points, corner_points = (cell + 0.5) * stride, cell * stride
    perfect = xyxy_to_ltrb(centre_points, heads)  # the exact target, encoded at the cell centre
    loss_mixed.append((1 - aligned_box_iou(ltrb_to_xyxy(corner_points, perfect), heads)).mean().item())
    loss_same.append((1 - aligned_box_iou(ltrb_to_xyxy(centre_points, perfect), heads)).mean().item())
    for offset in covered:
        covered[offset].append(contains_a_point(heads, offset).float().mean().item())

fig, (ax_loss, ax_cover) = plt.subplots(1, 2, figsize=(12, 3.6))
ax_loss.plot(head_sides, loss_mixed, "o-", color="tab:red", label="encoded at (j + ½)·s, decoded at j·s")
ax_loss.plot(head_sides, loss_same, "o-", color="tab:green", label="same points for both")
ax_loss.set_ylim(-0.02, 1)
ax_loss.set_xlabel("head side (pixels)")
ax_loss.set_title("IoU loss of a perfect prediction (stride 8)")
ax_loss.legend(fontsize=8)
for offset, color in ((0.5, "tab:green"), (0.0, "tab:blue")):
    ax_cover.plot(head_sides, covered[offset], "o-", color=color, label=f"points at (j + {offset})·s")
ax_cover.set_ylim(0, 1.05)
ax_cover.set_xlabel("head side (pixels)")
ax_cover.set_title("share of heads that contain a stride-8 point")
ax_cover.legend(fontsize=8)
plt.tight_layout()
plt.show()
body = 64
body_shifted = torch.tensor([[0.0, 0.0, body, body]]) + stride / 2
body_loss = 1 - aligned_box_iou(body_shifted, torch.tensor([[0.0, 0.0, body, body]])).item()
for side, loss in zip(head_sides.tolist(), loss_mixed, strict=True):
    if side in (6, 8, 12):
        print(f"{side:2d}-px head: IoU loss {loss:.2f} when mixed (a {body}-px body shifted the same way: {body_loss:.2f})")
print(f"same convention: max IoU loss {max(loss_same):.1e}")
print(
    "coverage, offset 0 / offset ½ / (side / s)²: "
    + ", ".join(
        f"{s} px {a:.3f}/{b:.3f}/{min(s / stride, 1) ** 2:.3f}"
        for s, a, b in zip(head_sides.tolist(), covered[0.0], covered[0.5], strict=True)
    )
)

# %% [markdown]
# A half-cell mismatch costs a small head most of its IoU (printed above) and a 64-pixel body far less: the bug is
# invisible on large objects and fatal on the small ones the arena is full of. The two conventions cover the heads
# equally: for a head smaller than a cell at a random position, the chance to contain a point is `(side / s)²`
# whatever the offset, and both measured curves follow it within sampling noise (printed above). Pick one, and let one function
# (`make_points`) produce the points for the assigner, the loss and the decoder.
#
# ## 5. Which strides? Measured on the arena
#
# Coverage also depends on the *stride*: a head smaller than a cell may contain no point of the finest level, and
# then no point at all (the assigner of Chapter 6 takes candidates only from points inside a box). The usual
# strides 8/16/32 were chosen for COCO-like data. The course arena is different; the demo config's strides
# (`arena_cpu`, used by `make train` and Chapters 8–10) come from these numbers:

# %%
coco = json.loads((arena / "train" / "_annotations.coco.json").read_text())
_, id_to_label, _ = category_mapping(coco["categories"])
gt_xyxy = torch.tensor([a["bbox"] for a in coco["annotations"]], dtype=torch.float32)
gt_xyxy[:, 2:] += gt_xyxy[:, :2]  # xywh → xyxy; arena images are 320 × 320, so the letterbox changes nothing
is_head = torch.tensor(["head" in class_names[id_to_label[a["category_id"]]] for a in coco["annotations"]])
gt_sides = (gt_xyxy[:, 2:] - gt_xyxy[:, :2]).prod(-1).sqrt()
print(
    f"course arena (train): {len(gt_xyxy)} boxes, {int(is_head.sum())} heads; "
    f"{(gt_sides[is_head] < 8).float().mean():.0%} of the heads are under 8 px; "
    f"the tallest box is {(gt_xyxy[:, 3] - gt_xyxy[:, 1]).max():.0f} px of 320"
)


def share_without_a_point(boxes: Tensor, level_strides: list[int], side: int = 320) -> float:
    """Share of ``boxes [M, 4]`` that contain no grid point of any level, strictly inside."""
    level_points, _ = make_points([(side // s, side // s) for s in level_strides], level_strides)
    ltrb = xyxy_to_ltrb(level_points, boxes[:, None, :])  # [M, N, 4]
    return 1.0 - (ltrb.min(-1).values > 0).any(-1).float().mean().item()


for stride_set in ([8, 16, 32], strides):
    print(
        f"strides {stride_set}: {share_without_a_point(gt_xyxy[is_head], stride_set):.0%} of the heads and "
        f"{share_without_a_point(gt_xyxy, stride_set):.0%} of all boxes contain no grid point"
    )

# %% [markdown]
# With strides 8/16/32 a large share of the arena's heads could never be assigned to any point — the detector
# cannot learn them, whatever the loss. A stride-4 level fixes most of that, at 4× the points of the stride-8 level;
# to pay for it, the demo drops the stride-32 level: the arena's largest objects (about a third of the frame, printed
# above) fit in the receptive field of the stride-16 level. Chapter 3's formula gives 103 px for the C4 of the demo's
# ResNet-10-T, and the four 3×3 convs that follow it at stride 16 (the neck's FPN and PAN output convs, the head's
# tower conv and its prediction conv) add 2 · 16 = 32 px each: 231 px.
# A data set of large objects would make the opposite choice.
#
# ## What the package does differently
#
# - `detector.boxes.make_points`, `ltrb_to_xyxy` and `xyxy_to_ltrb` are these functions; `detector.model.Detector`
#   computes the points once per input size and device and caches them (`DetectorOutput.points`), so the head's
#   row order and the points can never disagree.
# - The head multiplies its distances by the stride itself (after a softplus and a learnable per-level scale), so
#   `DetectorOutput.box_ltrb` is already in pixels and decoding is one `ltrb_to_xyxy`.
# - The assigner works on `[B, M, N]` (images × GTs × points) with these broadcasting rules and a memory budget
#   (Chapter 6); `detector.boxes.aligned_box_iou` is the element-wise IoU used there and in the losses.
#
# ## Summary
#
# Anchor-free detection gives every cell a point at its centre `((j + 0.5)·s, (i + 0.5)·s)`, listed level by
# level, row-major, with its stride. Predictions are distances `(l, t, r, b)` from the point, in stride units
# scaled to pixels per level; `ltrb → xyxy` decodes them and `xyxy → ltrb` encodes targets (negative outside the
# box). Whether the point sits at the cell's centre or corner is a convention; mixing two conventions costs a small
# object most of its IoU. The strides are a decision about the data: the arena's tiny heads need a stride-4 level.
#
# ## Open questions
#
# 1. With points at cell centres, a 4-pixel head may still contain no point of stride 8. What could an assigner do
#    for such objects (think of centre sampling with a radius, Chapter 6)?
# 2. Should the 0.5 offset also appear when the input side is not a multiple of the stride (Chapter 3)? Where do
#    the last points of such a level lie?
# 3. DFL (YOLOv8) predicts each distance as a distribution over the integers `0 … 15` (16 bins, `reg_max = 16`)
#    in strides instead of one number. What does that buy for the blurry border of a small, far-away head?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answers.**
#
# 1. An assigner that takes candidates only from points inside a box can do nothing for it. Options: let points
#    *near* the box also become candidates (YOLOX's SimOTA accepts points inside the box *or* within 2.5 strides
#    of its centre), fall back to the nearest point, or add a finer level — the demo config's choice
#    (section 5). Note that this package's centre radius (Chapter 6) only *removes* candidates far from the centre;
#    it never adds points outside the box.
# 2. The offset is a convention, so it stays the same for every input size — what must not change is that the
#    assigner, the loss and the decoder use the same points. For a side that is not a multiple of the stride, the
#    last row and column of cells hang over the image border: their points at `(j + 0.5) · s` can lie outside the
#    image (Chapter 3's 330-pixel example: 336 > 330). Such points simply never fall inside a ground-truth box.
# 3. A distribution can express uncertainty: where the border is blurry, the predicted mass spreads over
#    neighbouring bins, and its expectation still gives a sub-bin distance. The loss (DFL) pushes mass onto the
#    two bins around the true distance, which trains a sharper, better-calibrated border than a single regressed
#    number (Generalized Focal Loss, Li et al. 2020); its sequel, GFLv2, reads the spread of the distribution as a
#    measure of the box's localisation quality.
