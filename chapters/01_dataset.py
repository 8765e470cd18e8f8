# %% [markdown]
# # Chapter 1 · The dataset
#
# A detector learns from pairs *(image, boxes with class labels)*. Before any network exists we need those
# pairs exactly right: a box that is off by a few pixels, or a label that points to the wrong class,
# silently caps the accuracy of everything we build later. In this chapter you will
#
# 1. read a **Roboflow COCO export** — the format of the halo data set and of anything you export from
#    Roboflow — and turn its records into tensors,
# 2. **letterbox** images to the square input size of the network, boxes included, and map boxes back,
# 3. **batch** samples whose number of boxes differs from image to image,
# 4. take a good look at the data: which classes are rare, which objects are tiny — and why that matters.
#
# Vocabulary used in the whole course: `boxes` are **xyxy** in pixels `(x1, y1, x2, y2)` unless the name
# says otherwise (`boxes_xywh`); `labels` are contiguous class indices `0..C-1`; images are `uint8 [3, H, W]`.
#
# How the exercises work (in every chapter): an exercise is a function whose body raises
# `NotImplementedError("Exercise 1.3 · …")`. Replace that line with your code and run the **check cell** under it:
# it prints ✓, "not implemented yet", or what differs (expected vs got); after a failed attempt it adds a hint,
# one level more each time, and `hint("1.3")` shows them all. Until an exercise passes, the rest of the chapter
# uses the `detector` package's version, so every cell still runs. `make check CH=1` runs the chapter's tests on
# your file; `solutions/01_dataset.py` has the reference solutions.

# %%
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from course import arena_dir, check, hint
from course.paths import SHARED_DATASETS_DIR
from course.reference import ch01 as reference
from detector.config import load_config
from detector.data import CocoDetection
from detector.data import collate as package_collate
from detector.data import unletterbox_boxes as package_unletterbox_boxes
from detector.model import Backbone

PAD_VALUE = 114  # grey padding, as in YOLOv5 / ultralytics letterboxing

arena = arena_dir()  # the course's arena data set: generated on first use, in seconds
print(sorted(p.name for p in arena.iterdir()))

# %% [markdown]
# ## 1. Anatomy of a Roboflow export
#
# An export holds one folder per split (`train/ valid/ test/`). Each folder has the images and one
# `_annotations.coco.json` with three lists:
#
# - `images`: `id`, `file_name`, `width`, `height`;
# - `annotations`: `id`, `image_id`, `category_id`, `bbox = [x, y, w, h]` (top-left corner and size, pixels),
#   `area`, `iscrowd`;
# - `categories`: `id`, `name`, `supercategory`.
#
# Look at the categories: Roboflow always adds a **placeholder** category with id 0 that has no boxes and
# is the `supercategory` of all the real ones.

# %%
coco = json.loads((arena / "train" / "_annotations.coco.json").read_text())
print(json.dumps(coco["categories"], indent=1))
print(json.dumps(coco["images"][0], indent=1))
print(json.dumps(coco["annotations"][0], indent=1))

# %% [markdown]
# ## 2. From `[x, y, w, h]` to `[x1, y1, x2, y2]`
#
# COCO stores a box as its top-left corner and its size. Everything downstream (IoU, the assigner, NMS)
# wants the two corners: top-left `(x1, y1)` and bottom-right `(x2, y2)`.
#
# **Exercise 1.1** — write `xywh_to_xyxy`. It must work for any leading shape `[..., 4]`, including an
# empty `[0, 4]` tensor (an image without objects).


# %%
def xywh_to_xyxy(boxes_xywh: Tensor) -> Tensor:
    """COCO ``[x, y, w, h]`` → corners ``[x1, y1, x2, y2]``.

    Args:
        boxes_xywh: ``[..., 4]`` float, top-left corner and size in pixels.

    Returns:
        ``[..., 4]`` xyxy pixels, same dtype.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 1.1 · xywh_to_xyxy: a COCO box is its top-left corner plus its size')


# %%
xywh_to_xyxy = check("1.1", xywh_to_xyxy, fallback=reference.xywh_to_xyxy)

# %% [markdown]
# ## 3. Contiguous labels, placeholder dropped
#
# Category ids in a COCO file are arbitrary integers (often `0..C` with the placeholder at 0, sometimes with
# gaps after classes were deleted). The network's classification branch has exactly `C` outputs, so we map
# the real categories **in id order** to `0..C-1`. A class that has no box in some split must keep its index
# (otherwise `label 2` would mean different things in train and valid).
#
# **Exercise 1.2** — write `contiguous_labels(categories)`: find the placeholder (the lowest-id category whose
# name is the `supercategory` of every other category; there may be none), drop it, and return
# `(class_names, id_to_label)`.


# %%
def contiguous_labels(categories: list[dict]) -> tuple[list[str], dict[int, int]]:
    """Map COCO category ids to contiguous labels, dropping Roboflow's placeholder super-category.

    Args:
        categories: the ``categories`` list of a COCO file (dicts with ``id``, ``name``, ``supercategory``).

    Returns:
        ``class_names`` (label ``i`` is ``class_names[i]``) and ``{category_id: label}``, both in id order.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise 1.2 · contiguous_labels: drop Roboflow's placeholder, number the rest in id order")


# %%
contiguous_labels = check("1.2", contiguous_labels, fallback=reference.contiguous_labels)
class_names, id_to_label = contiguous_labels(coco["categories"])
print(class_names, id_to_label)

# %% [markdown]
# ## 4. Letterboxing
#
# The network takes square images of side `S`, a multiple of its largest stride (Chapter 3 says why).
# Stretching a 16:9 frame to a square would distort every person; instead we **letterbox**: scale the image so
# that its longer side becomes `S`, keeping the aspect ratio, and pad the rest with grey, centred.
#
# The contract, in words. `scale` makes the longer side exactly `S`; the resized height and width are rounded to
# whole pixels (Python's `round`). Because of that rounding, the factor that really applies along each axis is the
# resized size over the original size — within half a pixel of `scale`, but use the exact factors, or boxes
# drift. The resized image sits centred on the grey square; when the leftover is odd, the extra pixel of padding
# goes to the right (or the bottom). Boxes follow the pixels: scaled by the exact factors, shifted by the padding.
#
# **Predict, then run.** A `100 × 200` image (height × width) is letterboxed to `S = 64`. Work out `scale`, the
# resized size, the padding `(left, top)`, and where the box `(50, 25, 100, 75)` lands. The cell under the
# exercise prints the answer.
#
# **Exercise 1.3** — write `letterbox(image, boxes, size)`. Resize with
# `torchvision.transforms.v2.functional.resize(image, [new_h, new_w], antialias=True)`.


# %%
def letterbox(image: Tensor, boxes: Tensor, size: int) -> tuple[Tensor, Tensor, float, tuple[int, int]]:
    """Resize so the longer side is ``size`` (aspect kept), pad to ``size × size`` with grey, centred.

    Args:
        image: ``uint8 [3, H, W]``.
        boxes: ``float [K, 4]`` xyxy pixels in the original image.
        size: the side ``S`` of the square output.

    Returns:
        ``(image uint8 [3, S, S], boxes float [K, 4] in the letterboxed frame, scale, (left, top))``.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 1.3 · letterbox: keep the aspect ratio, centre on a grey square, boxes follow')


# %% [markdown]
# And back: predictions come out in the letterboxed frame, but the metrics (and the user) want them in the
# original image. **Exercise 1.4** — write `unletterbox_boxes`, the exact inverse of the box mapping above,
# clipped to the original image (a prediction may reach into the grey padding).


# %%
def unletterbox_boxes(boxes: Tensor, scale: float, pad: tuple[float, float], orig_size: tuple[int, int]) -> Tensor:
    """Boxes in the letterboxed frame → boxes in the original image, clipped to it.

    Args:
        boxes: ``[K, 4]`` xyxy in the ``S × S`` input.
        scale: ``S / max(H, W)`` as returned by :func:`letterbox`.
        pad: ``(left, top)`` as returned by :func:`letterbox`.
        orig_size: ``(H, W)`` of the original image.

    Returns:
        ``[K, 4]`` xyxy pixels in the original image, inside ``[0, W] × [0, H]``.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 1.4 · unletterbox_boxes: the exact inverse of the letterbox, kept inside the image')


# %%
letterbox = check("1.3", letterbox, fallback=reference.letterbox)
unletterbox_boxes = check("1.4", unletterbox_boxes, fallback=package_unletterbox_boxes)
_, example_boxes, example_scale, example_pad = letterbox(
    torch.zeros(3, 100, 200, dtype=torch.uint8), torch.tensor([[50.0, 25.0, 100.0, 75.0]]), 64
)
print(f"scale {example_scale}, pad (left, top) {example_pad}, box {example_boxes[0].tolist()}")

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **The worked example.** `scale = 64 / 200 = 0.32`; the image becomes `32 × 64`, so `left = 0` and `top = (64 - 32) // 2 = 16`; the box
# scales to `(16, 8, 32, 24)` and moves down by 16: `(16, 24, 32, 40)`. When `S - new` is odd, the floor division
# puts the extra pixel of padding at the bottom (or right) — the package and the tests use that rounding.

# %% [markdown]
# Let us see it on a wide image (real exports are often wide photos); here we crop an arena image to 16:9 so that
# the padding shows.

# %%
train_json = coco
first = train_json["images"][0]
image = decode_image(str(arena / "train" / first["file_name"]), mode=ImageReadMode.RGB)
anns = [a for a in train_json["annotations"] if a["image_id"] == first["id"]]
boxes = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4))
wide = image[:, 70:250, :]  # a 180 × 320 strip: 16:9
wide_boxes = (boxes - torch.tensor([0, 70, 0, 70])).clamp(min=0)
wide_boxes[:, [1, 3]] = wide_boxes[:, [1, 3]].clamp(max=180)
keep = (wide_boxes[:, 3] - wide_boxes[:, 1]) > 2
wide_boxes = wide_boxes[keep]
boxed, boxed_boxes, scale, pad = letterbox(wide, wide_boxes, 256)


def show_boxes(ax, image, boxes, labels=None, names=None, color="yellow"):
    """Draw an image and its xyxy boxes on a matplotlib axis."""
    ax.imshow(image.permute(1, 2, 0))
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, lw=1.2))
        if labels is not None and names is not None:
            ax.text(x1, y1, names[int(labels[k])], color="white", fontsize=6, va="bottom",
                    bbox=dict(facecolor=color, alpha=0.6, pad=0.5, lw=0))
    ax.set_axis_off()


fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
show_boxes(axes[0], wide, wide_boxes)
axes[0].set_title(f"original {tuple(wide.shape[-2:])}")
show_boxes(axes[1], boxed, boxed_boxes)
axes[1].set_title(f"letterboxed 256 × 256, scale {scale:.3f}, pad {pad}")
plt.show()
back = unletterbox_boxes(boxed_boxes, scale, pad, tuple(wide.shape[-2:]))
print("round trip max error (px):", (back - wide_boxes).abs().max().item())

# %% [markdown]
# ## 5. Batching images with different numbers of boxes
#
# After letterboxing every image has the same shape, so images stack into `[B, 3, S, S]`. Targets do not:
# one image has 12 boxes, the next none. The usual answer is to keep **a list of per-image target dicts**
# (torchvision's detection models do the same); the loss pads them into `[B, M, 4]` with a mask later
# (Chapter 6).
#
# **Exercise 1.5** — write `collate(batch)` for a `DataLoader`: `batch` is a list of `(image, target)`.


# %%
def collate(batch: list[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    """Stack images, keep per-image targets.

    Args:
        batch: ``B`` samples ``(image uint8 [3, S, S], target dict)``.

    Returns:
        ``images uint8 [B, 3, S, S]`` and the list of ``B`` target dicts, in order.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 1.5 · collate: the images share one shape, the targets do not')


# %%
collate = check("1.5", collate, fallback=package_collate)

# %% [markdown]
# ## 6. A `Dataset`
#
# Time to put the pieces together. `RoboflowSplit` reads one split's JSON once, groups the annotations by
# image and keeps the label map; `__getitem__` does the per-image work.
#
# **Exercise 1.6** — write `RoboflowSplit.__getitem__`: decode the image as RGB `uint8 [3, H, W]`
# (`torchvision.io.decode_image(path, mode=ImageReadMode.RGB)`), convert its annotations with
# `xywh_to_xyxy` and `self.id_to_label`, and return `(image, {"boxes": float32 [K, 4], "labels": int64 [K],
# "image_id": int})`. An image without annotations gives `boxes` of shape `[0, 4]`.


# %%
class RoboflowSplit(torch.utils.data.Dataset):
    """One split of a Roboflow COCO export (the teaching version of ``detector.data.CocoDetection``).

    The package's version also validates every record, clips boxes to the image, drops degenerate boxes and
    reports what it changed; this one assumes a clean export.
    """

    def __init__(self, split_dir: str | Path) -> None:
        self.split_dir = Path(split_dir)
        data = json.loads((self.split_dir / "_annotations.coco.json").read_text())
        self.class_names, self.id_to_label = contiguous_labels(data["categories"])
        self.images = sorted(data["images"], key=lambda record: record["id"])
        self.annotations = {record["id"]: [] for record in self.images}
        for annotation in data["annotations"]:
            self.annotations[annotation["image_id"]].append(annotation)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        # YOUR CODE HERE
        raise NotImplementedError('Exercise 1.6 · RoboflowSplit: one image and its annotations as tensors, labels contiguous')


# %%
RoboflowSplit = check("1.6", RoboflowSplit, fallback=CocoDetection)
train_set = RoboflowSplit(arena / "train")
print(len(train_set), "training images;", train_set.class_names)

# %% [markdown]
# ## 7. A look at the data
#
# Never train on data you have not looked at. A grid of training images with their boxes:

# %%
COLORS = ["tab:red", "tab:orange", "tab:blue", "tab:cyan"]
fig, axes = plt.subplots(2, 4, figsize=(12, 6))
for ax, index in zip(axes.flat, range(8)):
    image, target = train_set[index]
    for box, label in zip(target["boxes"], target["labels"]):
        show_boxes(ax, image, box[None], label[None], train_set.class_names, color=COLORS[int(label)])
    if len(target["boxes"]) == 0:
        show_boxes(ax, image, target["boxes"])
plt.tight_layout()
plt.show()

# %% [markdown]
# Class balance and object sizes. The side of a box, `sqrt(w·h)`, is what matters for a detector: an object
# smaller than a cell of the finest level may not contain a single grid point (Chapters 5 and 6). The dotted lines
# are the usual strides 8/16/32, the dashed ones those of this course's demo model (read from its config,
# `arena_cpu`; Chapter 5 measures why it differs).

# %%
labels = torch.tensor([id_to_label[a["category_id"]] for a in coco["annotations"]])
sides = torch.tensor([math.sqrt(a["bbox"][2] * a["bbox"][3]) for a in coco["annotations"]])
fig, (ax_count, ax_size) = plt.subplots(1, 2, figsize=(11, 3.5))
counts = torch.bincount(labels, minlength=len(class_names))
ax_count.bar(class_names, counts.tolist(), color=COLORS)
ax_count.set_title("boxes per class (train)")
bins = torch.logspace(0, math.log10(float(sides.max()) + 1), 30)
for label, name in enumerate(class_names):
    ax_size.hist(sides[labels == label].numpy(), bins=bins.numpy(), histtype="step", lw=2, color=COLORS[label], label=name)
demo = load_config("arena_cpu").model
demo_strides = Backbone(demo.backbone, out_indices=demo.out_indices).strides
for stride in (8, 16, 32):
    ax_size.axvline(stride, color="grey", ls=":", lw=1)
for stride in demo_strides:
    ax_size.axvline(stride, color="black", ls="--", lw=0.8)
ax_size.set_xscale("log")
ax_size.set_xlabel(f"box side sqrt(w·h), pixels (dotted: strides 8, 16, 32; dashed: demo {demo_strides})")
ax_size.legend()
plt.show()
small = (sides < 32).float().mean().item()
heads = torch.tensor(["head" in class_names[label] for label in labels.tolist()])
print(
    f"{small:.0%} of boxes are COCO-'small' (side < 32 px); heads: {(sides[heads] < 16).float().mean():.0%} "
    f"under 16 px, {(sides[heads] < 8).float().mean():.0%} under 8 px"
)

# %% [markdown]
# ## 8. The same look at a real export
#
# `../shared/datasets/chess-pieces` is an unmodified Roboflow export (public domain) of photos of chess pieces;
# the cell prints its classes and the size of its first photo. (Outside the course team this folder does not
# exist; the cell then says so and moves on.)

# %%
chess = SHARED_DATASETS_DIR / "chess-pieces"
if chess.exists():
    chess_train = RoboflowSplit(chess / "train")
    chess_json = json.loads((chess / "train" / "_annotations.coco.json").read_text())
    print(len(chess_train.class_names), "classes:", chess_train.class_names)
    print("first photo:", chess_json["images"][0]["width"], "×", chess_json["images"][0]["height"], "pixels")
    _, chess_id_to_label = contiguous_labels(chess_json["categories"])
    chess_labels = torch.tensor([chess_id_to_label[a["category_id"]] for a in chess_json["annotations"]])
    image, target = chess_train[0]
    image, boxes, scale, pad = letterbox(image, target["boxes"], 640)
    fig, (ax_image, ax_count) = plt.subplots(1, 2, figsize=(12, 4.5))
    show_boxes(ax_image, image, boxes, target["labels"], chess_train.class_names, color="lime")
    ax_count.barh(chess_train.class_names, torch.bincount(chess_labels, minlength=len(chess_train.class_names)).tolist())
    chess_counts = torch.bincount(chess_labels, minlength=len(chess_train.class_names))
    rarest = int(chess_counts.argmin())
    ax_count.set_title(
        f"boxes per class (chess, train): '{chess_train.class_names[rarest]}' has {int(chess_counts[rarest])}"
    )
    plt.tight_layout()
    plt.show()
else:
    print(f"{chess} is not here: skipping the real-data look")

# %% [markdown]
# ## What the package does differently
#
# - `detector.data.CocoDetection` validates the whole export when it is built and names the file and the
#   record of anything it cannot use (a missing image file, an annotation pointing to an unknown image or
#   category); boxes reaching outside the image are clipped, degenerate ones (zero width or height) dropped —
#   and everything it changed is in `dataset.report`, announced once as a warning. Nothing is skipped silently.
# - Its letterbox is built on `torchvision.transforms.v2` with `tv_tensors.BoundingBoxes`, so resizing,
#   padding and flipping move the boxes with the same code that moves the pixels.
# - `detector.data.HFParquetDetection` reads the Hugging Face copy of the halo data set (parquet), and
#   `detector.data.generate_arena` makes the arena data set you used here.
#
# ## Summary
#
# COCO boxes are `[x, y, w, h]`; we work in `xyxy`. Labels are contiguous and stable across splits, with
# Roboflow's placeholder dropped. Letterboxing keeps the aspect ratio and must use the exact per-axis factors;
# its inverse maps predictions back. Targets stay a per-image list. And the data has many small heads.
#
# ## Open questions
#
# 1. Letterboxing wastes the padded area. What would *mosaic* augmentation (four images in one) change for
#    small objects, and what would it cost?
# 2. Many arena heads are under 8 pixels (printed above). Which level of a stride-8/16/32 detector can even see
#    them?
# 3. Why must `contiguous_labels` be computed from the categories, not from the annotations present?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answers.**
#
# 1. Mosaic fills the whole input with image content, and shrinks each of the four images to about half its side:
#    more objects per step and more context variety, but small objects become *smaller* — a 6-pixel head becomes
#    a 3-pixel one. It also puts objects next to image seams and cuts boxes at the borders of the tiles. For a data
#    set of tiny objects it is usually combined with scale jitter that also zooms *in*, and switched off for the
#    last epochs so that the model finishes on images like the ones it will see.
# 2. Only the finest. A stride-8 level has one point per 8 × 8 cell, so a head under 8 pixels contains at most one
#    of its points, and often none (Chapter 5 measures how often); the stride-16 and stride-32 levels almost never
#    have a point inside it. That is why the course's demo model adds a stride-4 level (the dashed lines above).
# 3. A split may miss a class entirely (the chess export's rarest class has very few boxes). Labels derived from
#    the annotations present would then shift — label 2 would mean a different class in train and valid — and a
#    model trained on one split would be scored against the wrong classes on another. The category list is the
#    same in every split of an export, so labels derived from it are stable.
