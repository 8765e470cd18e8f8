# %% [markdown]
# # Chapter 10 · Visualisation and error analysis
#
# A single mAP number says *how much* a detector gets wrong, never *what*. This last chapter builds the tools to
# look: you will
#
# 1. **draw** detections with class colours, labels and scores,
# 2. put **ground truth and predictions side by side**,
# 3. draw an **assignment map**: which grid points the assigner of Chapter 6 makes positive, for which GT,
# 4. sort every error into a type: **false positives** (wrong class, poor localisation, duplicate, background) and
#    **missed objects by size**, and
# 5. build a **confusion matrix**.
#
# Then we use them on the detector trained in Chapter 8 to find where it fails, and end the course with how to
# train the same detector on your own data and on a GPU.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from matplotlib.figure import Figure
from torch import Tensor
from torchvision.ops import box_area, box_iou
from torchvision.utils import draw_bounding_boxes

from course import arena_dir, check, hint
from course.reference import ch10
from course.resources import COURSE_ARENA, trained_detector
from detector.assigner import TaskAlignedAssigner
from detector.losses import build_assigner
from detector.boxes import ltrb_to_xyxy
from detector.data import CocoDetection, collate, eval_transforms, pad_targets
from detector.config import load_config
from detector.visualize import (
    PALETTE,
    confusion_matrix_chart,
    draw_detections,
    error_breakdown_chart,
    predictions_grid,
)
from detector.visualize import confusion_matrix as package_confusion_matrix
from detector.visualize import error_breakdown as package_error_breakdown

FP_TYPES = ("wrong_class", "localization", "duplicate", "background")
SIZE_NAMES = ("small", "medium", "large")
# COCO's object sizes by area in px² (cocodataset.org/#detection-eval): small < 32², medium < 96², large.
SIZE_LIMITS = (32.0**2, 96.0**2)
# A right-class box with 0.1 <= IoU < the match threshold is "poorly localised" (Hoiem et al., ECCV 2012; TIDE).
LOCALIZATION_MIN_IOU = 0.1

arena = arena_dir()
val_set = CocoDetection(arena / "valid", transforms=eval_transforms(COURSE_ARENA["image_size"]))
class_names = val_set.class_names
trained = trained_detector()
model = trained.model
print("weights:", trained.source)

images, targets = collate([val_set[i] for i in range(len(val_set))])
with torch.no_grad():
    predictions = [
        p for start in range(0, len(images), 12) for p in model.predict(images[start : start + 12])
    ]
targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
print(len(predictions), "validation images predicted")

# %% [markdown]
# ## 1. Drawing detections
#
# `torchvision.utils.draw_bounding_boxes(image, boxes, labels=captions, colors=colors, width=2)` draws on a
# `uint8 [3, H, W]` image and returns a new one. Give every class a fixed colour — `PALETTE[label % len(PALETTE)]`,
# matplotlib's "tab10" colours as hex strings — and a caption `"enemy 0.87"` (the class name and the score with two
# decimals; just the name when there are no scores).
#
# **Exercise 10.1** — write `draw_boxes`.


# %%
def draw_boxes(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor | None = None,
    class_names: list[str] | None = None,
) -> Tensor:
    """Boxes in class colours with ``"name score"`` captions.

    Args:
        image: ``uint8 [3, H, W]`` (not modified).
        boxes: ``[K, 4]`` xyxy pixels; labels: ``[K]`` int; scores: ``[K]`` or None.
        class_names: the caption of label ``c`` is ``class_names[c]`` (default: ``str(c)``).

    Returns:
        A new ``uint8 [3, H, W]`` image.
    """
    ### BEGIN SOLUTION Exercise 10.1 · draw_boxes: one colour per class and a caption per box
    if len(boxes) == 0:
        return image.clone()
    names = [class_names[int(label)] if class_names else str(int(label)) for label in labels]
    captions = (
        names
        if scores is None
        else [f"{name} {float(score):.2f}" for name, score in zip(names, scores, strict=True)]
    )
    colors = [PALETTE[int(label) % len(PALETTE)] for label in labels]
    return draw_bounding_boxes(image, boxes.float(), captions, colors, width=2)
    ### END SOLUTION


# %%
draw_boxes = check("10.1", draw_boxes, fallback=draw_detections)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
for ax, index in zip(axes, (0, 5, 9), strict=True):
    keep = predictions[index]["scores"] > 0.25
    drawn = draw_boxes(images[index], predictions[index]["boxes"][keep], predictions[index]["labels"][keep],
                       predictions[index]["scores"][keep], class_names)  # fmt: skip
    ax.imshow(drawn.permute(1, 2, 0).numpy())
    ax.set_title(f"validation image {index}: {int(keep.sum())} detections > 0.25")
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## 2. Ground truth next to predictions
#
# A detection alone does not tell you what was missed. Put the GT and the predictions side by side, on the same
# image, drawn the same way.
#
# **Exercise 10.2** — write `gt_vs_prediction_panel`: a figure with two axes side by side; the left one shows the
# ground truth drawn with your `draw_boxes` (no scores), the right one the predictions whose score is **above**
# `score_thresh`, with their scores. Return the figure.


# %%
def gt_vs_prediction_panel(
    image: Tensor, prediction: dict, target: dict, class_names: list[str], score_thresh: float = 0.25
) -> Figure:
    """Two panels: GT (left) and predictions with score > ``score_thresh`` (right), drawn with ``draw_boxes``.

    Args:
        image: ``uint8 [3, H, W]``; prediction: ``boxes``, ``scores``, ``labels``; target: ``boxes``, ``labels``.

    Returns:
        The matplotlib figure (two axes, one image each).
    """
    ### BEGIN SOLUTION Exercise 10.2 · gt_vs_prediction_panel: truth and confident predictions, side by side
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5))
    left.imshow(
        draw_boxes(image, target["boxes"], target["labels"], None, class_names).permute(1, 2, 0).numpy()
    )
    left.set_title(f"ground truth: {len(target['boxes'])} boxes")
    keep = prediction["scores"] > score_thresh
    drawn = draw_boxes(
        image, prediction["boxes"][keep], prediction["labels"][keep], prediction["scores"][keep], class_names
    )
    right.imshow(drawn.permute(1, 2, 0).numpy())
    right.set_title(f"predictions > {score_thresh}: {int(keep.sum())} boxes")
    for ax in (left, right):
        ax.set_axis_off()
    return fig
    ### END SOLUTION


# %%
gt_vs_prediction_panel = check("10.2", gt_vs_prediction_panel, fallback=ch10.gt_vs_prediction_panel)
plt.close("all")  # the check drew test figures

# %%
busiest = max(range(len(targets)), key=lambda i: len(targets[i]["boxes"]))
gt_vs_prediction_panel(images[busiest], predictions[busiest], targets[busiest], class_names)
plt.show()

# %% [markdown]
# ## 3. The assignment map
#
# Many detection failures are decided before the first gradient: a GT that no grid point is assigned to is never
# learnt. The assignment map shows, for one image, which points the assigner makes positive and for which GT.
# The Task-Aligned Assigner (Chapter 6) reads the model's current predictions, so the map shows where the
# assigner would put the positives for this model now (its EMA weights, with the assigner its config trains with).
#
# **Exercise 10.3** — write `assigned_points`: run the model's outputs of **one** image through the assigner
# exactly as `DetectionLoss.forward` does (`detector/losses.py`): class probabilities and decoded boxes, both
# detached, and the padded targets; return the positive points.


# %%
def assigned_points(outputs, target: dict, assigner: TaskAlignedAssigner) -> tuple[Tensor, Tensor, Tensor]:
    """The positive points of one image.

    Args:
        outputs: the model's ``DetectorOutput`` for a batch of ONE image (``cls_logits [1, N, C]``, ``box_ltrb
            [1, N, 4]``, ``points [N, 2]``, ``strides [N]``).
        target: ``boxes [M, 4]`` xyxy, ``labels [M]``.
        assigner: called as ``assigner(pred_scores, pred_boxes, points, gt_labels, gt_boxes, gt_mask, strides)``
            → ``AssignResult`` with ``fg_mask [1, N]`` and ``gt_index [1, N]``; ``pred_scores [1, N, C]`` are the
            probabilities ``sigmoid(cls_logits)`` and ``pred_boxes [1, N, 4]`` the decoded xyxy boxes
            (``ltrb_to_xyxy``), both detached; the targets padded as for the loss (``pad_targets``).

    Returns:
        ``points [P, 2]``, ``gt_index [P]`` (index into ``target["boxes"]``) and ``strides [P]`` of the P positives.
    """
    ### BEGIN SOLUTION Exercise 10.3 · assigned_points: the assigner fed as the loss feeds it
    gt_labels, gt_boxes, gt_mask = pad_targets([target])
    pred_scores = outputs.cls_logits.detach().float().sigmoid()  # [1, N, C]
    pred_boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb.detach().float())  # [1, N, 4]
    result = assigner(pred_scores, pred_boxes, outputs.points, gt_labels, gt_boxes, gt_mask, outputs.strides)
    positive = result.fg_mask[0]  # [N]
    return outputs.points[positive], result.gt_index[0, positive], outputs.strides[positive]
    ### END SOLUTION


# %%
assigned_points = check("10.3", assigned_points, fallback=ch10.assigned_points)

# %% [markdown]
# The map on the validation image with the most heads. Each positive point is a dot in the colour of its GT, the
# dot's size growing with its level's stride (the strides are printed); GTs without a single positive point are
# drawn in black, dashed.

# %%
heads = [int((t["labels"] % 2 == 1).sum()) for t in targets]  # labels 1 and 3 are heads
index = max(range(len(targets)), key=lambda i: heads[i])
with torch.no_grad():
    outputs = model(images[index][None])
points, gt_index, strides = assigned_points(outputs, targets[index], build_assigner(len(class_names), trained.config.loss))
level_strides = sorted(int(s) for s in outputs.strides.unique())
print(
    f"the model's levels have strides {level_strides}: the finest puts a point every {level_strides[0]} pixels"
)
fig, ax = plt.subplots(figsize=(7.5, 7.5))
ax.imshow(images[index].permute(1, 2, 0).numpy())
gt_boxes = targets[index]["boxes"]
covered = torch.zeros(len(gt_boxes), dtype=torch.bool)
covered[gt_index] = True
for m, (x1, y1, x2, y2) in enumerate(gt_boxes.tolist()):
    style = dict(color=f"C{m % 10}", lw=1.5) if covered[m] else dict(color="black", lw=2.5, ls="--")
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **style))
ax.scatter(points[:, 0], points[:, 1], c=[f"C{int(m) % 10}" for m in gt_index], s=(strides / 4) ** 2 * 3,
           edgecolors="white", linewidths=0.5)  # fmt: skip
sides = (box_area(gt_boxes)).sqrt()
ax.set_title(f"{len(points)} positive points for {int(covered.sum())} of {len(gt_boxes)} GTs; "
             f"unassigned (black) sides: {[round(s) for s in sides[~covered].tolist()]} px")  # fmt: skip
ax.set_axis_off()
plt.show()

# %% [markdown]
# A GT gets positives only among the points strictly inside it. The finest level puts a point every few pixels
# (its stride, printed above), so a head smaller than that stride may contain **no point at all**: the assigner
# cannot give it one, the loss never sees it, and the detector cannot learn it — whatever the training budget.
# That is why the demo config runs strides 4/8/16 rather than the classic 8/16/32. The numbers over the whole
# validation split:

# %%
unassigned, by_side = 0, []
assigner = build_assigner(len(class_names), trained.config.loss)
for start in range(0, len(images), 12):
    with torch.no_grad():
        outputs = model(images[start : start + 12])
    for b in range(len(outputs.cls_logits)):
        one = type(outputs)(outputs.cls_logits[b : b + 1], outputs.box_ltrb[b : b + 1], outputs.obj_logits[b : b + 1],
                            outputs.points, outputs.strides)  # fmt: skip
        _, gt_index, _ = assigned_points(one, targets[start + b], assigner)
        covered = torch.zeros(len(targets[start + b]["boxes"]), dtype=torch.bool)
        covered[gt_index] = True
        by_side += list(
            zip(box_area(targets[start + b]["boxes"]).sqrt().tolist(), covered.tolist(), strict=True)
        )
sides = torch.tensor([s for s, _ in by_side])
covered = torch.tensor([c for _, c in by_side])
bins = [0, 6, 8, 12, 16, 32, 64, 400]
for low, high in zip(bins[:-1], bins[1:], strict=True):
    inside = (sides >= low) & (sides < high)
    if inside.any():
        print(
            f"GT side {low:>3}–{high:<3} px: {int(inside.sum()):4d} GTs, {float(covered[inside].float().mean()):5.0%} get a positive point"
        )

# %% [markdown]
# ## 4. What kind of error?
#
# Following Hoiem et al. ("Diagnosing Error in Object Detectors", ECCV 2012; the TIDE toolbox is its modern
# form), take the detections above an operating score (0.25), match them to the GT in score order as COCO does at
# IoU 0.5 (Chapter 9: each detection takes the unmatched GT **of its class** it overlaps most, if IoU ≥ 0.5; on
# an exact IoU tie the first GT wins here, the later one in pycocotools), and
# give every unmatched detection the first type that fits:
#
# 1. **duplicate**: IoU ≥ 0.5 with a GT of its class that an earlier detection already took;
# 2. **wrong class**: IoU ≥ 0.5 with a GT of another class;
# 3. **localisation**: IoU in [0.1, 0.5) with a GT of its class — the right object, a poor box;
# 4. **background**: none of these — a detection on nothing.
#
# Every GT left unmatched is **missed**, counted by its COCO size (area $< 32^2$: small, $< 96^2$: medium, else
# large).
#
# **Predict, then run.** One image, one enemy GT (label 0) of 40 × 80 px, and four detections above 0.25, best
# first: an enemy box shifted by 4 px (IoU ≈ 0.82), the same box again, an enemy-head box (label 1) on the same
# spot, and an enemy box of 40 × 80 px shifted by 30 px to the right (IoU 10/70 ≈ 0.14). What are `tp`, the FP
# types and `fn`? Then run the cell (it asks the reference implementation, `course.reference.ch10`).

# %%
example_target = [{"boxes": torch.tensor([[100.0, 100.0, 140.0, 180.0]]), "labels": torch.tensor([0])}]
example_prediction = [{"boxes": torch.tensor([[104.0, 100.0, 144.0, 180.0], [104.0, 100.0, 144.0, 180.0],
                                              [104.0, 100.0, 144.0, 180.0], [130.0, 100.0, 170.0, 180.0]]),
                       "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([0, 0, 1, 0])}]  # fmt: skip
print(ch10.error_breakdown(example_prediction, example_target))

# %% [markdown]
# The first box takes the GT (a true positive); the second finds it taken: a duplicate; the head box overlaps a
# GT of another class: wrong class; the shifted box overlaps its class's GT with IoU between 0.1 and 0.5:
# localisation. Nothing is missed.
#
# **Exercise 10.4** — write `error_breakdown`.


# %%
def error_breakdown(
    predictions: list[dict], targets: list[dict], iou_thresh: float = 0.5, score_thresh: float = 0.25
) -> dict:
    """Count true positives, false positives by type and missed GTs by size, over all images.

    Args:
        predictions: per image ``boxes [K, 4]``, ``scores [K]``, ``labels [K]``; only ``scores > score_thresh``
            count. targets: per image ``boxes [M, 4]``, ``labels [M]``.

    Returns:
        ``{"tp": int, "fp": {type: int for type in FP_TYPES}, "fn": {size: int for size in SIZE_NAMES}}``.
    """
    ### BEGIN SOLUTION Exercise 10.4 · error_breakdown: match in score order, then name each error's type
    result = {"tp": 0, "fp": dict.fromkeys(FP_TYPES, 0), "fn": dict.fromkeys(SIZE_NAMES, 0)}
    for prediction, target in zip(predictions, targets, strict=True):
        keep = prediction["scores"] > score_thresh
        order = prediction["scores"][keep].argsort(descending=True, stable=True)  # ties: input order
        boxes, labels = prediction["boxes"][keep][order].float(), prediction["labels"][keep][order]
        iou = box_iou(boxes, target["boxes"].float())  # [K, M]
        same_class = labels[:, None] == target["labels"][None, :]  # [K, M]
        matched = torch.zeros(len(target["boxes"]), dtype=torch.bool)
        for k in range(len(boxes)):
            free = torch.where(same_class[k] & ~matched, iou[k], torch.full_like(iou[k], -1.0))
            if free.numel() and free.max() >= iou_thresh:
                matched[free.argmax()] = True
                result["tp"] += 1
            elif (iou[k][same_class[k]] >= iou_thresh).any():
                result["fp"]["duplicate"] += 1
            elif (iou[k][~same_class[k]] >= iou_thresh).any():
                result["fp"]["wrong_class"] += 1
            elif (iou[k][same_class[k]] >= LOCALIZATION_MIN_IOU).any():
                result["fp"]["localization"] += 1
            else:
                result["fp"]["background"] += 1
        missed_sizes = torch.bucketize(
            box_area(target["boxes"].float())[~matched], torch.tensor(SIZE_LIMITS), right=True
        )
        for size in missed_sizes.tolist():
            result["fn"][SIZE_NAMES[size]] += 1
    return result
    ### END SOLUTION


# %%
error_breakdown = check("10.4", error_breakdown, fallback=ch10.error_breakdown)

# %% [markdown]
# ## 5. The confusion matrix
#
# Which classes does the detector mix up? Match detections to GTs **regardless of class**: all pairs with
# IoU ≥ 0.5, taken in order of decreasing IoU, each detection and each GT at most once. A matched pair adds 1 at
# (row = GT class, column = predicted class). Unmatched detections go to the last row ("background": detections
# of nothing), unmatched GTs to the last column (missed).
#
# **Exercise 10.5** — write `confusion_matrix`.


# %%
def confusion_matrix(
    predictions: list[dict],
    targets: list[dict],
    num_classes: int,
    iou_thresh: float = 0.5,
    score_thresh: float = 0.25,
) -> Tensor:
    """Class confusion of the detections above ``score_thresh``.

    Returns:
        ``int64 [C + 1, C + 1]``: rows GT class (row ``C``: no GT), columns predicted class (column ``C``: missed).
    """
    ### BEGIN SOLUTION Exercise 10.5 · confusion_matrix: class-blind matching by overlap, leftovers in the margins
    matrix = torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.int64)
    for prediction, target in zip(predictions, targets, strict=True):
        keep = prediction["scores"] > score_thresh
        labels, gt_labels = prediction["labels"][keep], target["labels"]
        iou = box_iou(prediction["boxes"][keep].float(), target["boxes"].float())  # [K, M]
        pred_index, gt_index = (iou >= iou_thresh).nonzero(as_tuple=True)
        order = iou[pred_index, gt_index].argsort(descending=True, stable=True)
        pred_used = torch.zeros(len(labels), dtype=torch.bool)
        gt_used = torch.zeros(len(gt_labels), dtype=torch.bool)
        for k, m in zip(pred_index[order].tolist(), gt_index[order].tolist(), strict=True):
            if not pred_used[k] and not gt_used[m]:
                pred_used[k], gt_used[m] = True, True
                matrix[gt_labels[m], labels[k]] += 1
        for label in labels[~pred_used].tolist():
            matrix[num_classes, label] += 1
        for label in gt_labels[~gt_used].tolist():
            matrix[label, num_classes] += 1
    return matrix
    ### END SOLUTION


# %%
confusion_matrix = check("10.5", confusion_matrix, fallback=package_confusion_matrix)

# %% [markdown]
# ## 6. Where does the trained detector fail?
#
# All the tools on the validation images (their number is printed). First the error types and the confusion
# matrix:

# %%
breakdown = error_breakdown(predictions, targets)
matrix = confusion_matrix(predictions, targets, len(class_names))
num_gt = sum(len(t["boxes"]) for t in targets)
print(f"{len(targets)} validation images: {breakdown['tp']} of {num_gt} GTs found at score > 0.25, IoU ≥ 0.5")
print("false positives:", breakdown["fp"])
print("missed, by size:", breakdown["fn"])
display(confusion_matrix_chart(matrix, class_names))

# %% [markdown]
# The package's version of the breakdown also splits every count by class (for FPs: the predicted class):

# %%
display(
    error_breakdown_chart(
        package_error_breakdown(predictions, targets, num_classes=len(class_names)), class_names
    )
)

# %% [markdown]
# Recall by object size and class — the fraction of GTs found at IoU 0.5, score > 0.25 (an upper bound: no
# one-to-one matching) — next to how many GTs there are:

# %%
found, sides, labels = [], [], []
for prediction, target in zip(predictions, targets, strict=True):
    keep = prediction["scores"] > 0.25
    iou = box_iou(target["boxes"], prediction["boxes"][keep])  # [M, K]
    same = target["labels"][:, None] == prediction["labels"][keep][None, :]
    found += ((iou >= 0.5) & same).any(dim=1).tolist()  # an upper bound of the matched fraction
    sides += box_area(target["boxes"]).sqrt().tolist()
    labels += target["labels"].tolist()
found, sides, labels = torch.tensor(found), torch.tensor(sides), torch.tensor(labels)
edges = [0, 8, 16, 32, 64, 400]
fig, ax = plt.subplots(figsize=(9, 3.5))
width = 0.2
for label, name in enumerate(class_names):
    recall = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (sides >= low) & (sides < high) & (labels == label)
        recall.append(float(found[inside].float().mean()) if inside.any() else math.nan)
    ax.bar(np.arange(len(edges) - 1) + (label - 1.5) * width, recall, width, color=PALETTE[label], label=name)
ax.set_xticks(
    range(len(edges) - 1), [f"{low}–{high} px" for low, high in zip(edges[:-1], edges[1:], strict=True)]
)
ax.set(
    xlabel="GT side sqrt(w·h)",
    ylabel="found (IoU ≥ 0.5, score > 0.25)",
    ylim=(0, 1),
    title="Recall by size and class",
)
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# And the images where it misses most (dashed green: GT; coloured: predictions above 0.25):

# %%
misses = [int(len(t["boxes"])) - int(((box_iou(t["boxes"], p["boxes"][p["scores"] > 0.25]) >= 0.5).any(dim=1)).sum())
          for p, t in zip(predictions, targets, strict=True)]  # fmt: skip
worst = sorted(range(len(misses)), key=lambda i: -misses[i])[:4]
display(
    predictions_grid(images[worst], [predictions[i] for i in worst], [targets[i] for i in worst], class_names)
)

# %% [markdown]
# The diagnosis in numbers, for the weights loaded at the top of the chapter, and the plan of the `make train`
# demo for comparison:

# %%
SMALL_SIDE = 16  # px: "far" objects, about the size of the arena's distant heads
far = sides < SMALL_SIDE
fp_total = sum(breakdown["fp"].values())
largest_fp = max(FP_TYPES, key=lambda kind: breakdown["fp"][kind])
print(
    f"recall (IoU ≥ 0.5, score > 0.25) of GTs under {SMALL_SIDE} px: {float(found[far].float().mean()):.0%} "
    f"of {int(far.sum())}; of the larger ones: {float(found[~far].float().mean()):.0%} of {int((~far).sum())}"
)
print(f"largest false-positive type: {largest_fp} ({breakdown['fp'][largest_fp]} of {fp_total})")
demo = load_config("arena_cpu")
print(
    f"{trained.source}: {len(trained.history)} epochs of training; the make-train demo plans "
    f"{demo.train.epochs} epochs over {demo.data.arena.n_train} images within "
    f"train.max_minutes = {demo.train.max_minutes}"
)

# %% [markdown]
# ### Reading the diagnosis
#
# With the short course run the counts are large; a `make train` model makes every error count smaller, and the
# printed numbers show where this one stands. What to look for:
#
# - **Far heads are missed first.** Recall falls with the object's size (the bar chart), and heads are the
#   smallest objects. Part of that is learnable (more training), part is structural: a GT smaller than the finest
#   stride may contain no grid point and then never becomes a training target (the assignment table above).
# - **Localisation errors** — the right object, a box that is too loose — are a common FP type of a young model;
#   AP50 counts them as FPs already; AP at IoU 0.75 (Chapter 9) also punishes the boxes with IoU 0.5–0.75 that this
#   breakdown calls true positives.
# - **Duplicates**: a young model's boxes on one object vary so much that two of them can overlap less than NMS's
#   IoU threshold and both survive; they become rare as the boxes tighten.
# - **Wrong class** errors: look in the confusion matrix for body ↔ head confusions (a head box on a small
#   figure) and enemy ↔ friendly ones on distant figures whose team colour is a few pixels. Background FPs land on
#   clutter and HUD elements (the pictures above).
#
# What would you change? In order of expected effect for this data:
#
# 1. **Train longer and on more data** (`make train`, with the plan printed above) — the course run sees each
#    image only a few times.
# 2. **A larger input** for the far heads: the demo already has a stride-4 level (P2); at 640 px instead of 320 px
#    every head covers four times as many grid points — at about four times the compute.
# 3. **A wider candidate region for tiny GTs.** In this package `loss.assigner.center_radius` only *removes*
#    candidates (it keeps the points inside the box that are also near its centre), so it cannot help a GT without
#    a point inside. What would help is the opposite rule: let points *near* a tiny GT become candidates too —
#    YOLOX's SimOTA, for one, draws candidates from a region a few strides wide around the GT's centre, whatever
#    the box's size. Not implemented here; a good exercise.
# 4. **Augmentations that make small objects common**: mosaic, scale jitter, copy-paste of heads.
#
# Measure each change with the tools of this chapter, not only with mAP.
#
# ## 7. Your own data, and a GPU
#
# Everything in this course is the `detector` package. To train the same detector on **your own Roboflow
# export** (Roboflow: *Export → Format "COCO" → download zip*, unpack so that it has `train/ valid/ test/` folders
# with `_annotations.coco.json` in each):
#
# ```bash
# detector train --config roboflow --data path/to/export            # resnet50, 640 px, 50 epochs, AMP on a GPU
# detector train --config roboflow --data path/to/export --name my_run train.epochs=30 data.batch_size=8
# detector eval --weights runs/my_run/best.pt --split test           # COCO mAP + per-class AP on the test split
# detector predict --weights runs/my_run/best.pt path/to/images/    # annotated images + predictions.json
# ```
#
# The classes come from the export (Roboflow's placeholder category is dropped, Chapter 1); `KEY=VALUE` overrides
# change any config field (`detector train --help` lists examples). Training from scratch on a few hundred images
# is slow to converge: ImageNet weights for the backbone help more than anything else — a local file
# (`model.pretrained=weights/resnet50.pth`, a timm state_dict saved on a machine with internet access) or, with
# internet access, `model.pretrained=timm` (downloaded through timm's hub only when you ask for it).
#
# The **halo recipe** on a GPU — the seed's ResNet-50, 640 px, Adam 1e-3, cosine, 30 epochs, with this course's
# assigner, losses, EMA and AMP, and YOLOv8's mosaic/scale/translate augmentation:
#
# ```bash
# detector train --config halo_r50 --data datasets/halo-infinite-angel-videogame model.pretrained=weights/resnet50.pth
# torchrun --nproc_per_node 4 -m detector train --config halo_r50 --data datasets/halo-infinite-angel-videogame
# ```
#
# The runner prints the per-class AP table at the end and writes `curves.png`, `predictions.png` and
# `train_batch.jpg` into `runs/<name>/`; no halo run is recorded here yet (the benchmarks page of the site measures
# the arena and the chess export). The heads of
# the halo data set are small, like the arena's: run this chapter's error breakdown and assignment map on your run
# (`detector.visualize.error_breakdown`, `confusion_matrix`) before changing the recipe.
#
# ## What the package does differently
#
# - `detector.visualize` draws with PIL rather than torchvision's `draw_bounding_boxes` (line width and font scale
#   with the image; captions that would overlap a better one are left out) and builds figures without pyplot
#   (`matplotlib.figure.Figure`), so a training loop can save one per epoch without touching a notebook's backend;
#   `predictions_grid` is what the Runner saves as `predictions.png`.
# - Its `error_breakdown` also counts by class and size, follows COCO for crowd regions (detections on them are
#   ignored, crowd GTs are never missed) and takes the target's `area` when given; `confusion_matrix` leaves crowd
#   regions out. `error_breakdown_chart` and `confusion_matrix_chart` draw them.
# - The assignment is not recomputed for drawing in training: `DetectionLoss` returns it (`LossOutput.assignment`)
#   with `num_unassigned_gts`, so unassignable GTs can be counted during training.
#
# ## Summary
#
# Look before you tune: draw predictions next to the GT, draw what the assigner does, and sort every error into a
# type. For the arena detector the small, far heads are where recall falls first — partly a training budget
# problem, partly a geometry problem (no grid point inside the box) that only a finer level, a larger input or a
# wider candidate region fixes. The same tools, and the same package, work on your own Roboflow export and on a GPU.
#
# ## Open questions
#
# 1. A detection with IoU 0.45 on the right object counts as a localisation FP *and* leaves its GT missed. Should an
#    error analysis count it once or twice? (TIDE's answer: attribute the mAP lost to each error type.)

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** Counting it twice double-books one mistake: fixing the box would remove both the FP and the miss.
# TIDE (Bolya et al. 2020) therefore does not count errors; it fixes one error type at a time (here: moves the
# loose box onto its GT) and reports how much mAP that recovers. A poorly localised box then costs "localisation"
# mAP only, and the missed-GT category keeps the objects that no detection came near.

# %% [markdown]
# 2. The demo detects on strides 4/8/16 (P2–P4) at 320 px. Which would cost less compute for the far heads: that,
#    or the classic P3–P5 levels (strides 8/16/32) on 640-px input? Count the grid points, then think of the
#    backbone.

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** The same number of head points: $(320/4)^2 + (320/8)^2 + (320/16)^2 = 6400 + 1600 + 400 = 8400$ and
# $(640/8)^2 + (640/16)^2 + (640/32)^2 = 8400$, with the same points per pixel of the original scene on the
# finest level. The difference is in the backbone and the neck: at 640 px every convolution of the backbone
# runs on four times as many pixels, while P2 at 320 px adds only the neck's and head's work on one large map.
# So P2 at 320 px is far cheaper; 640 px in exchange gives every object four times as many pixels to be
# recognised from, which helps the heads' *classification*, not only their assignment.

# %% [markdown]
# 3. The confusion matrix ignores scores below 0.25. How would you choose the operating threshold for a game bot
#    that must never shoot a friendly?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** From the cost of the errors, on a validation set: sweep the threshold and, for each, count the
# friendly → enemy confusions (the cells of rows friendly/friendly-head in the enemy columns) and the enemies found; pick the lowest threshold
# at which friendly-as-enemy stays at zero (with margin: a held-out set, a confidence bound), and accept the
# enemies it misses. A per-class threshold (stricter for "enemy") does this better than one global number.
