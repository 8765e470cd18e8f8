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
# and see what goes wrong on small objects when the points sit at `i · s`, a corner of the cell, instead.
#
# Vocabulary: `points [N, 2]` are cell centres `(x, y)` in pixels, all levels concatenated; `strides [N]` each
# point's stride; `ltrb [..., N, 4]`; `boxes` are `xyxy` pixels.

# %%
import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Rectangle
from torch import Tensor

from course import arena_dir, check
from course.reference import ch05 as reference
from detector.boxes import aligned_box_iou
from detector.boxes import ltrb_to_xyxy as package_ltrb_to_xyxy
from detector.boxes import make_points as package_make_points
from detector.boxes import xyxy_to_ltrb as package_xyxy_to_ltrb
from detector.data import CocoDetection, eval_transforms

torch.manual_seed(0)
arena = arena_dir()
train_set = CocoDetection(arena / "train", transforms=eval_transforms(320))
image, target = train_set[2]  # uint8 [3, 320, 320], boxes xyxy in the letterboxed frame
class_names = train_set.class_names

# %% [markdown]
# ## 1. Grid points at cell centres
#
# Level `l` has stride `s` and an `H × W` map; cell `(i, j)` (row `i`, column `j`) covers the input pixels
# `[j·s, (j+1)·s) × [i·s, (i+1)·s)`. Its point is the **centre** of that square:
#
# $$p_{ij} = \big((j + 0.5)\,s,\ (i + 0.5)\,s\big) \quad \text{as } (x, y).$$
#
# Points are listed level by level, row-major within a level (`k = i · W + j`) — the order in which Chapter 4
# flattens the head's maps, so `points[k]` belongs to prediction row `k`. With every point goes its stride.
#
# **Exercise 5.1** — write `make_points`. Watch the two classic slips: `(x, y)`, not `(y, x)` (what
# `torch.meshgrid(..., indexing="ij")` hands you first is the *row* coordinate), and `+ 0.5`.


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
    ### BEGIN SOLUTION Exercise 5.1 · make_points: each cell centre as x, y in pixels, row by row, level by level
    all_points, all_strides = [], []
    for (height, width), stride in zip(feature_sizes, strides, strict=True):
        xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride  # [W] column centres
        ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride  # [H] row centres
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # [H, W] each, row-major
        all_points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))  # [H·W, 2] as (x, y)
        all_strides.append(torch.full((height * width,), float(stride), device=device, dtype=dtype))
    return torch.cat(all_points), torch.cat(all_strides)
    ### END SOLUTION


# %%
make_points = check("5.1", make_points, fallback=package_make_points)
points, point_strides = make_points([(2, 2)], [8])
print("a 2 × 2 map of stride 8:\n", points, point_strides)

# %% [markdown]
# The points of the three levels of a 320-pixel input over an arena image: 40 × 40 points of stride 8,
# 20 × 20 of stride 16, 10 × 10 of stride 32 — 2100 points in all. Each point sits in the middle of its cell
# (thin lines); the boxes are the image's objects. Small heads are covered only by the stride-8 grid, and some
# are so small that they contain no point at all.

# %%
sizes, strides = [(40, 40), (20, 20), (10, 10)], [8, 16, 32]
points, point_strides = make_points(sizes, strides)
fig, axes = plt.subplots(1, 3, figsize=(15, 5.2))
for ax, stride, color in zip(axes, strides, ("tab:red", "tab:orange", "tab:cyan"), strict=True):
    ax.imshow(image.permute(1, 2, 0))
    level = points[point_strides == stride]
    for edge in range(0, 321, stride):
        ax.axhline(edge, color="white", lw=0.3, alpha=0.5)
        ax.axvline(edge, color="white", lw=0.3, alpha=0.5)
    ax.scatter(level[:, 0], level[:, 1], s=40 * stride / 32, color=color, edgecolors="black", linewidths=0.3)
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
# A point `(x, y)` and distances `(l, t, r, b)` give the box `(x - l, y - t, x + r, y + b)`; the inverse gives
# the training target of a point for a ground-truth box: `(x - x1, y - y1, x2 - x, y2 - y)`. A point lies
# **inside** a box exactly when all four distances are positive — which is how the assigner (Chapter 6) finds
# candidate points; so the inverse must *not* clamp negative distances.
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
        ``[..., N, 4]`` xyxy boxes ``(x - l, y - t, x + r, y + b)``.
    """
    ### BEGIN SOLUTION Exercise 5.2 · ltrb_to_xyxy: step out from the point to each side of the box
    return torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), dim=-1)
    ### END SOLUTION


def xyxy_to_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """Corners → distances from each point to the box sides (the inverse of :func:`ltrb_to_xyxy`).

    Args:
        points: ``[..., N, 2]`` ``(x, y)``, broadcast against ``boxes``.
        boxes: ``[..., N, 4]`` xyxy.

    Returns:
        ``[..., N, 4]`` ``(x - x1, y - y1, x2 - x, y2 - y)``; negative where the point lies outside the box.
    """
    ### BEGIN SOLUTION Exercise 5.3 · xyxy_to_ltrb: how far each side of the box lies from the point, signed
    return torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), dim=-1)
    ### END SOLUTION


# %%
ltrb_to_xyxy = check("5.2", ltrb_to_xyxy, fallback=package_ltrb_to_xyxy)
xyxy_to_ltrb = check("5.3", xyxy_to_ltrb, fallback=package_xyxy_to_ltrb)
boxes = target["boxes"][:, None, :]  # [M, 1, 4]: every GT against every point
ltrb = xyxy_to_ltrb(points, boxes)  # [M, N, 4]
print("ltrb of every GT × point:", tuple(ltrb.shape))
print("round trip max error (px):", (ltrb_to_xyxy(points, ltrb) - boxes).abs().max().item())

# %% [markdown]
# One ground truth and its candidates: the stride-8 points inside the box (all four distances > 0), and, for the
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
# output distances in pixels would need outputs from 2 to 300 with the same conv weights on every level. So the
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
    ### BEGIN SOLUTION Exercise 5.4 · decode_boxes: points for the maps, distances back to pixels, then corners
    sizes = [(m.shape[-2], m.shape[-1]) for m in box_maps]
    points, point_strides = make_points(sizes, strides, device=box_maps[0].device, dtype=box_maps[0].dtype)
    ltrb = torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, 4) for m in box_maps], dim=1)  # [B, N, 4]
    return ltrb_to_xyxy(points, ltrb * point_strides[:, None]), points
    ### END SOLUTION


# %%
decode_boxes = check("5.4", decode_boxes, fallback=reference.decode_boxes)
maps = [torch.ones(1, 4, h, w) for h, w in sizes]  # every cell predicts 1 stride to each side
decoded, _ = decode_boxes(maps, strides)
print(
    "a prediction of (1, 1, 1, 1) strides is a box of side",
    (decoded[0, :, 2] - decoded[0, :, 0]).unique().tolist(),
)

# %% [markdown]
# ## 4. Why `(i + 0.5) · s` and not `i · s`
#
# A feature cell summarises the pixels *around its centre*. Putting its point at the cell's top-left corner,
# `i · s`, is a classic slip (some early code did it, and it still hides in hand-written decoders). It costs
# half a cell — 4 pixels at stride 8, 16 at stride 32 — and a half cell is nothing for a 100-pixel body and
# everything for a 6-pixel head. Two ways to see it, on square heads of side 6 to 12 pixels at random sub-pixel
# positions (the arena's heads are this size, Chapter 1):
#
# - **a perfect prediction, decoded at the wrong point.** Targets computed at the centres, boxes decoded at the
#   corners (or vice versa — any mismatch between the two conventions in a code base): the box shifts by
#   `(s/2, s/2)`. The IoU loss `1 - IoU` of a *perfect* prediction is then large;
# - **the point of the object's own cell lies outside the object.** With corner points, the cell that contains a
#   head's centre often has its point outside the head, so its distances would be negative — which no `softplus`
#   head can output, and which the assigner (Chapter 6) rejects: the head gets no candidate from its own cell.

# %%
generator = torch.Generator().manual_seed(0)
stride, trials = 8, 4000
head_sides = torch.arange(6, 13)
loss_shifted, inside_centre, inside_corner = [], [], []
for side in head_sides.tolist():
    centres = 40 + 240 * torch.rand(trials, 2, generator=generator)  # (x, y), away from the border
    heads = torch.cat((centres - side / 2, centres + side / 2), dim=-1)  # [trials, 4] xyxy
    cell = torch.floor(centres / stride)  # the cell that contains the head's centre
    centre_points, corner_points = (cell + 0.5) * stride, cell * stride
    perfect = xyxy_to_ltrb(centre_points, heads)  # the exact target at the cell centre
    decoded_at_corner = ltrb_to_xyxy(corner_points, perfect)  # ... decoded with i·s
    loss_shifted.append((1 - aligned_box_iou(decoded_at_corner, heads)).mean().item())
    inside_centre.append((xyxy_to_ltrb(centre_points, heads).min(-1).values > 0).float().mean().item())
    inside_corner.append((xyxy_to_ltrb(corner_points, heads).min(-1).values > 0).float().mean().item())

fig, (ax_loss, ax_inside) = plt.subplots(1, 2, figsize=(12, 3.6))
ax_loss.plot(head_sides, loss_shifted, "o-", color="tab:red")
ax_loss.set_ylim(0, 1)
ax_loss.set_xlabel("head side (pixels)")
ax_loss.set_title("IoU loss of a perfect prediction decoded at i·s (stride 8)")
ax_inside.plot(head_sides, inside_centre, "o-", label="point at (i + 0.5)·s", color="tab:green")
ax_inside.plot(head_sides, inside_corner, "o-", label="point at i·s", color="tab:red")
ax_inside.set_ylim(0, 1.05)
ax_inside.set_xlabel("head side (pixels)")
ax_inside.set_title("share of heads whose own cell's point lies inside them")
ax_inside.legend()
plt.tight_layout()
plt.show()
for side, loss in zip(head_sides.tolist(), loss_shifted, strict=True):
    if side in (6, 8, 12):
        body = 64
        body_iou = (body - stride / 2) ** 2 / (2 * body**2 - (body - stride / 2) ** 2)
        print(
            f"{side:2d}-px head: IoU loss {loss:.2f} (a {body}-px body shifted the same way: {1 - body_iou:.2f})"
        )

# %% [markdown]
# A half-cell shift costs a 6-pixel head over 90 % of its IoU and a 64-pixel body about 20 %: the error is
# invisible on large objects and fatal on the small ones that the halo data set is full of. With cell centres,
# every head of 8 pixels or more contains its own cell's point; with corners, fewer than a quarter of the 8-pixel
# heads do.
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
# box). Half a cell is a small error for large objects and a fatal one for small objects.
#
# ## Open questions
#
# 1. With points at cell centres, a 4-pixel head may still contain no point of stride 8. What could an assigner do
#    for such objects (think of centre sampling with a radius, Chapter 6)?
# 2. Should the 0.5 offset also appear when the input side is not a multiple of the stride (Chapter 3)? Where do
#    the last points of such a level lie?
# 3. DFL (YOLOv8) predicts each distance as a distribution over `0 … 16` strides instead of one number. What does
#    that buy for the blurry border of a small, far-away head?
