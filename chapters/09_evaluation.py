# %% [markdown]
# # Chapter 9 · Evaluation: NMS and COCO mAP from scratch
#
# A trained detector answers every image with a few thousand scored boxes. Two questions remain: which of them
# do we report, and how good are they? In this chapter you will build
#
# 1. the **IoU matrix** between two sets of boxes — the yardstick of everything below,
# 2. greedy **non-maximum suppression**, and check it against `torchvision.ops.nms`,
# 3. the **matching** of detections to ground truth at one IoU threshold, in score order, as COCO does it,
# 4. the **precision–recall curve** and COCO's **101-point interpolated AP**,
# 5. **COCO mAP** over ten IoU thresholds and three object sizes — and you will check that it equals
#    `pycocotools` to 1e-6 on the predictions of a detector trained in Chapter 8.
#
# Then we look at the pitfalls that make home-made mAP numbers disagree with published ones.
#
# Vocabulary: `boxes` are xyxy pixels; a *prediction* is a per-image dict `{"boxes" [K, 4], "scores" [K],
# "labels" [K]}`, a *target* `{"boxes" [M, 4], "labels" [M]}`; `C` classes.

# %%
import contextlib
import inspect
import io

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou as tv_box_iou
from torchvision.ops import nms as tv_nms

from course import arena_dir, check, hint
from course.reference import ch09
from course.resources import COURSE_ARENA, trained_detector
from detector.boxes import ltrb_to_xyxy
from detector.data import CocoDetection, collate, eval_transforms
from detector.metrics import coco_map as package_coco_map

# COCO's thresholds, computed exactly as pycocotools does (cocoeval.py, Params.setDetParams): bit-identical
# values matter when a recall lands exactly on a threshold.
IOU_THRESHOLDS = torch.from_numpy(np.linspace(0.5, 0.95, 10))  # 0.50:0.05:0.95
RECALL_THRESHOLDS = torch.from_numpy(np.linspace(0.0, 1.0, 101))  # 0.00:0.01:1.00
# COCO's size ranges by box area in px² (cocodataset.org/#detection-eval): small < 32², medium < 96², large.
AREA_RANGES = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}
MAX_DETECTIONS = 100  # COCO keeps the 100 best detections per image (and class)

arena = arena_dir()
val_set = CocoDetection(arena / "valid", transforms=eval_transforms(COURSE_ARENA["image_size"]))
class_names = val_set.class_names
print(len(val_set), "validation images;", class_names)

# %% [markdown]
# ## 1. The IoU matrix
#
# The *intersection over union* of two boxes is $\mathrm{IoU}(a, b) = \frac{|a \cap b|}{|a| + |b| - |a \cap b|}$.
# For `N` detections and `M` ground-truth boxes we want all $N \times M$ values at once, by broadcasting:
# the intersection of boxes `i` and `j` has corners `max(x1_i, x1_j), max(y1_i, y1_j)` (top left) and
# `min(x2_i, x2_j), min(y2_i, y2_j)` (bottom right); when they do not overlap its width or height comes
# out negative and must be clamped to 0.
#
# **Exercise 9.1** — write `box_iou(boxes1, boxes2)`. Empty inputs give an empty matrix of the right shape.


# %%
def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Pairwise IoU.

    Args:
        boxes1: ``[N, 4]`` xyxy.
        boxes2: ``[M, 4]`` xyxy.

    Returns:
        ``[N, M]`` IoU in ``[0, 1]``, in the inputs' dtype.
    """
    # YOUR CODE HERE
    raise NotImplementedError("Exercise 9.1 · box_iou: every pair's overlap at once by broadcasting, never a negative side")


# %%
box_iou = check("9.1", box_iou, fallback=tv_box_iou)

# %% [markdown]
# ## 2. Greedy non-maximum suppression
#
# A well-trained dense detector fires on *many* neighbouring points around each object: their boxes are nearly
# the same. NMS keeps the best of each cluster: sort the boxes by score; take the best, drop every remaining
# box whose IoU with it exceeds the threshold; repeat with the best of what is left.
#
# Two details decide whether you agree with `torchvision.ops.nms`: a box is dropped only when its IoU is
# **strictly above** the threshold, and equal scores keep their **input order** (a stable sort).
#
# **Exercise 9.2** — write `nms(boxes, scores, iou_threshold)`. It returns the indices of the kept boxes,
# best first. The loop runs once per *kept* box; the IoU of the current box with all others is one row of
# your `box_iou`.


# %%
def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS (one class).

    Args:
        boxes: ``[K, 4]`` xyxy.
        scores: ``[K]``.
        iou_threshold: drop a box whose IoU with a kept, higher-scoring box is ``> iou_threshold``.

    Returns:
        ``int64 [k]`` indices into ``boxes`` of the kept boxes, by decreasing score (ties: lower index first).
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 9.2 · nms: keep the best box left, drop its close rivals, repeat')


# %%
nms = check("9.2", nms, fallback=tv_nms)

# %% [markdown]
# NMS at work on the raw output of the detector trained in Chapter 8 (`course.resources.trained_detector()`:
# loaded from the cache `data/course_detector.pt`, or trained now within its `train.max_minutes` budget; a better
# `runs/*/best.pt` from `make train` is used instead when you have one). Left: every candidate above a score
# of 0.2; right: what per-class NMS keeps.

# %%
trained = trained_detector()
model = trained.model
print("weights:", trained.source)
image, target = val_set[3]
with torch.no_grad():
    outputs = model(image[None])
scores, labels = (outputs.cls_logits[0].sigmoid() * outputs.obj_logits[0].sigmoid()).sqrt().max(dim=-1)  # [N]
boxes = ltrb_to_xyxy(outputs.points, outputs.box_ltrb[0])  # [N, 4]
candidates = (scores > 0.2).nonzero().squeeze(1)
kept = []
for c in range(len(class_names)):  # NMS per class: a head and its body must not suppress each other
    of_class = candidates[labels[candidates] == c]
    kept.append(of_class[nms(boxes[of_class], scores[of_class], 0.6)])
kept = torch.cat(kept)
fig, axes = plt.subplots(1, 2, figsize=(10, 5))
for ax, chosen, title in ((axes[0], candidates, "candidates"), (axes[1], kept, "after NMS (IoU 0.6)")):
    ax.imshow(image.permute(1, 2, 0))
    for k in chosen.tolist():
        x1, y1, x2, y2 = boxes[k].tolist()
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1, color=f"C{int(labels[k])}"))
    ax.set_title(f"{title}: {len(chosen)} boxes")
    ax.set_axis_off()
plt.show()

# %% [markdown]
# ## 3. Matching detections to the ground truth
#
# Is a detection right? COCO's answer, for one image, one class and one IoU threshold $t$: go through the
# detections **in decreasing score order**; each takes the still-unmatched GT box it overlaps most, if that IoU is
# at least $t$ — it is then a *true positive*; otherwise it is a *false positive*. A second detection on an
# already matched object is a false positive (a duplicate): that is why NMS matters for AP.
#
# Some GTs are **ignored**: they count neither as found nor as missed (outside the size range being evaluated,
# or `iscrowd` regions). A detection prefers a normal GT; it falls back to an ignored one only when no free normal
# GT reaches the threshold (a normal GT wins whatever the ignored one's IoU), and a detection matched to an
# ignored GT is ignored too (neither TP nor FP).
#
# Two details decide whether you agree with pycocotools (`COCOeval.evaluateImg`) on every input:
#
# - **Exact ties.** Its loop walks the GTs in order (the normal ones first) and takes a GT whose IoU is `>=` the
#   best so far: when two GTs overlap a detection *exactly* equally, the **later** one wins. That is not a
#   curiosity: the other GT stays free for the next detection, which can turn a false positive into a true one.
# - **Crowd regions** (`iscrowd`: one box around a crowd of people) are ignored GTs that are never used up: a
#   crowd region may absorb any number of detections.
#
# **Predict, then run.** Three detections (rows, best score first) and three GTs (columns) at $t = 0.5$; GT 2 is
# a crowd region. Which GT does each detection take, and which detections are ignored?

# %%
example_iou = torch.tensor([[0.6, 0.6, 0.0], [0.9, 0.1, 0.0], [0.0, 0.2, 0.7]], dtype=torch.float64)
example_crowd = torch.tensor([False, False, True])
print(example_iou)
# the reference implementation (course.reference.ch09, pycocotools' loop transcribed): (GT of each detection, ignored?)
print(ch09.match_detections(example_iou, example_crowd, 0.5, gt_crowd=example_crowd))

# %% [markdown]
# Detection 0 ties GTs 0 and 1 at 0.6 and takes the later one, GT 1; detection 1 then finds GT 0 free (0.9) — a
# true positive that "the first GT wins" would have turned into a duplicate; detection 2 lands on the crowd region
# and is ignored.

# %% [markdown]
# **Exercise 9.3** — write `match_detections(iou, gt_ignore, iou_threshold, gt_crowd=None)`.


# %%
def match_detections(
    iou: Tensor, gt_ignore: Tensor, iou_threshold: float, gt_crowd: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Greedy matching of one image's detections of one class, as ``pycocotools`` ``evaluateImg``.

    Args:
        iou: ``[K, M]`` IoU of the detections, **sorted by decreasing score**, with the GT boxes.
        gt_ignore: ``[M]`` bool, GTs that count neither as hits nor as misses.
        iou_threshold: a match needs ``IoU >= iou_threshold``.
        gt_crowd: ``[M]`` bool or None (no crowd): crowd regions, which are also ignored GTs and may be matched
            by any number of detections.

    Returns:
        ``matched_gt`` int64 ``[K]``: the GT index each detection matched, ``-1`` for none; among GTs with
        exactly equal IoU the one with the higher index wins, as in pycocotools;
        ``ignored`` bool ``[K]``: detections matched to an ignored GT.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 9.3 · match_detections: best free GT in score order, as pycocotools breaks ties')


# %%
match_detections = check("9.3", match_detections, fallback=ch09.match_detections)

# %% [markdown]
# ## 4. The precision–recall curve and 101-point AP
#
# Collect the (non-ignored) detections of one class over **all images**, sort them by score, and walk down the
# list. After the first $k$ detections, with $TP_k$ true positives among them and $G$ GT boxes of the class,
#
# $$\text{precision}_k = \frac{TP_k}{k}, \qquad \text{recall}_k = \frac{TP_k}{G}.$$
#
# **Exercise 9.4** — write `precision_recall(scores, is_tp, num_gt)`: sort by score (stable: ties keep the
# input order, as pycocotools' mergesort does) and return both curves.


# %%
def precision_recall(scores: Tensor, is_tp: Tensor, num_gt: int) -> tuple[Tensor, Tensor]:
    """Precision and recall after each detection, in decreasing-score order.

    Args:
        scores: ``[K]`` scores of one class's detections (all images).
        is_tp: ``[K]`` bool, whether each detection is a true positive.
        num_gt: ``G >= 1``, the number of (non-ignored) GT boxes of the class.

    Returns:
        ``precision [K]`` and ``recall [K]``, float64.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 9.4 · precision_recall: running counts of hits down the score-sorted list')


# %%
precision_recall = check("9.4", precision_recall, fallback=ch09.precision_recall)

# %% [markdown]
# The raw curve zig-zags: every false positive lowers precision, every true positive raises it. AP is the area
# under it, computed COCO's way (Everingham et al. 2010 for VOC's variant; COCO uses 101 points):
#
# 1. make precision **monotone**: $p_{\text{interp}}(r) = \max_{r' \ge r} p(r')$ — the best precision you can
#    still get by going further down the list;
# 2. read it at the recall thresholds $r \in \{0, 0.01, \dots, 1\}$ (`RECALL_THRESHOLDS`): at each, the
#    precision of the **first** point whose recall reaches $r$ (`torch.searchsorted(recall, r)`, left side),
#    or 0 where the recall never gets there;
# 3. average the 101 values.
#
# **Predict, then run.** One detection, a true positive, for two GTs: precision `[1.0]`, recall `[0.5]`. Is its
# AP 0.5? Count the recall thresholds it reaches before you run the cell (the reference `course.reference.ch09`).

# %%
print(ch09.interpolated_ap(torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)))

# %% [markdown]
# It reaches the 51 thresholds $0, 0.01, \dots, 0.50$ with precision 1 and none of the 50 above: $51/101 \approx
# 0.505$, not 0.5 — the 101 points include both ends.
#
# **Exercise 9.5** — write `interpolated_ap(precision, recall)`.


# %%
def interpolated_ap(precision: Tensor, recall: Tensor) -> float:
    """COCO's 101-point interpolated average precision.

    Args:
        precision, recall: ``[K]`` float64 curves from :func:`precision_recall` (recall non-decreasing);
            ``K = 0`` (no detection) gives AP 0.

    Returns:
        AP in ``[0, 1]``.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 9.5 · interpolated_ap: the monotone envelope read at 101 recalls, averaged')


# %%
interpolated_ap = check("9.5", interpolated_ap, fallback=ch09.interpolated_ap)

# %% [markdown]
# ## 5. COCO mAP
#
# COCO's headline number averages AP over
#
# - the **classes** that have at least one GT box,
# - ten **IoU thresholds** $0.50, 0.55, \dots, 0.95$: a detector must localise tightly to score well;
#
# and reports it for all objects and per **size**: `small` (area $< 32^2$ px²), `medium`, `large`
# ($> 96^2$). Evaluating a size range does not remove the other objects: GTs outside the range are
# *ignored* (Exercise 9.3), and so are unmatched detections outside it — a detection of a large object must not
# become a false positive of the *small* evaluation. Each image keeps its `MAX_DETECTIONS = 100` best detections
# per class. A class without GT in a range gets no AP there (pycocotools: `-1`), and a range where no class has
# GT reports `-1`.
#
# **Exercise 9.6** — write `coco_map(predictions, targets)` from your pieces. Suggested shape: for each class,
# range and threshold, gather over the images the sorted, capped detections' scores and
# `(TP, ignored)` flags from `match_detections`, then `precision_recall` and `interpolated_ap`.
# Compute each image's IoU matrix once per class, not once per threshold.


# %%
def coco_map(predictions: list[dict], targets: list[dict]) -> dict[str, float]:
    """COCO box mAP (the first six numbers of ``COCOeval.summarize()``).

    Args:
        predictions: per image ``{"boxes" [K, 4] xyxy, "scores" [K], "labels" [K] int64}``.
        targets: per image ``{"boxes" [M, 4] xyxy, "labels" [M] int64}``; no crowd boxes; a GT's area is its
            box area.

    Returns:
        ``{"map", "map_50", "map_75", "map_small", "map_medium", "map_large"}``; ``-1.0`` where no class
        has GT.

    The teaching version: plain loops, clarity over speed. ``detector.metrics.coco_map`` calls a C++ COCOeval.
    """
    # YOUR CODE HERE
    raise NotImplementedError('Exercise 9.6 · coco_map: AP per class, size and threshold, averaged where defined')


# %%
coco_map = check("9.6", coco_map, fallback=package_coco_map)

# %% [markdown]
# ## 6. Your mAP against pycocotools, on real predictions
#
# The trained detector's predictions on the course arena's validation images, with the package's
# post-processing (`detector.postprocess`: score threshold, top-k, per-class NMS, a cap per image; its defaults
# are printed below). The arena's images are square at the model's input size, so the letterbox is the identity
# and boxes are already in original pixels.

# %%
predict_defaults = {
    name: parameter.default
    for name, parameter in inspect.signature(model.predict).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}
print(
    f"{len(val_set)} validation images of {COURSE_ARENA['image_size']} px; model.predict defaults: {predict_defaults}"
)
loader = torch.utils.data.DataLoader(val_set, batch_size=12, collate_fn=collate)
predictions, targets = [], []
with torch.no_grad():
    for images, batch_targets in loader:
        predictions += model.predict(images)
        targets += [{"boxes": t["boxes"], "labels": t["labels"]} for t in batch_targets]
print(
    sum(len(p["boxes"]) for p in predictions),
    "detections,",
    sum(len(t["boxes"]) for t in targets),
    "GT boxes",
)


def pycocotools_map(predictions: list[dict], targets: list[dict]) -> np.ndarray:
    """The 12 numbers of pycocotools' COCOeval (bbox), from in-memory COCO dicts."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box: list[float]) -> list[float]:
        return [box[0], box[1], box[2] - box[0], box[3] - box[1]]

    images = [{"id": i} for i in range(len(targets))]
    categories = [{"id": c} for c in range(len(class_names))]
    gts, dts = [], []
    for i, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
        for box, label in zip(target["boxes"].double().tolist(), target["labels"].tolist(), strict=True):
            gts.append({"id": len(gts) + 1, "image_id": i, "category_id": label, "bbox": xywh(box),
                        "area": (box[2] - box[0]) * (box[3] - box[1]), "iscrowd": 0})  # fmt: skip
        for box, score, label in zip(prediction["boxes"].double().tolist(), prediction["scores"].double().tolist(),
                                     prediction["labels"].tolist(), strict=True):  # fmt: skip
            dts.append({"image_id": i, "category_id": label, "bbox": xywh(box), "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": gts, "categories": categories}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dts) if dts else COCO()  # loadRes cannot read an empty result list
        if not dts:
            coco_dt.dataset = {"images": images, "annotations": [], "categories": categories}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


ours = coco_map(predictions, targets)
reference = pycocotools_map(predictions, targets)
print(f"{'':12}{'yours':>10}{'pycocotools':>13}")
for index, key in enumerate(["map", "map_50", "map_75", "map_small", "map_medium", "map_large"]):
    print(f"{key:12}{ours[key]:10.6f}{reference[index]:13.6f}")
worst = max(
    abs(ours[k] - reference[i])
    for i, k in enumerate(["map", "map_50", "map_75", "map_small", "map_medium", "map_large"])
)
print(f"largest difference: {worst:.2e}", "✓ equal to 1e-6" if worst < 1e-6 else "✗ differs")

# %% [markdown]
# ## 7. Per-class precision–recall curves and AP against the IoU threshold
#
# The PR curve at IoU 0.5 of each class (thin: raw; thick: the monotone envelope that AP integrates), built from
# your `match_detections` and `precision_recall`.


# %%
your_steps = {"match_detections": match_detections, "precision_recall": precision_recall,
              "interpolated_ap": interpolated_ap}  # fmt: skip


def class_curves(label: int, threshold: float) -> tuple[Tensor, Tensor, float]:
    """PR curve and AP of one class at one IoU threshold, drawn with your exercises (``course.reference.ch09``)."""
    return ch09.class_curves(predictions, targets, label, threshold, your_steps, MAX_DETECTIONS)


fig, (ax_pr, ax_iou) = plt.subplots(1, 2, figsize=(12, 4.5))
for label, name in enumerate(class_names):
    precision, recall, ap50 = class_curves(label, 0.5)
    if len(recall):
        ax_pr.plot(recall, precision, color=f"C{label}", lw=0.7, alpha=0.5)
        ax_pr.plot(recall, ch09.monotone_envelope(precision), color=f"C{label}", lw=2,
                   label=f"{name}: AP50 {ap50:.2f}")  # fmt: skip
    ap_by_iou = [class_curves(label, t)[2] for t in IOU_THRESHOLDS.tolist()]
    ax_iou.plot(IOU_THRESHOLDS, ap_by_iou, "o-", color=f"C{label}", label=name)
ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR curves at IoU 0.5")
ax_pr.legend(fontsize=8)
ax_iou.set(xlabel="IoU threshold", ylabel="AP", ylim=(0, 1), title="AP against the IoU threshold")
ax_iou.legend(fontsize=8)
plt.show()

# %% [markdown]
# How to read them: a PR curve that ends early (low final recall) means objects the detector never finds at any
# score — for a young model, the small heads. A curve that starts low means confident false positives. AP
# falling steeply with the IoU threshold means boxes that are roughly right but not tight: the localisation,
# not the recognition, limits mAP@[.5:.95].
#
# ## 8. Why home-made mAP numbers disagree
#
# Each of these changes the number on the same predictions. The package's `coco_map` follows pycocotools exactly
# (the test suite compares them to 1e-6, crowd regions and exact IoU ties included), and so does yours on data without
# crowd regions; papers and libraries that do not are not comparable with COCO numbers.

# %%
label = max(range(len(class_names)), key=lambda c: sum(int((t["labels"] == c).sum()) for t in targets))
precision, recall, ap101 = class_curves(label, 0.5)
envelope = ch09.monotone_envelope(precision)
eleven = torch.linspace(0, 1, 11, dtype=torch.float64)  # VOC2007's 11 points
ap11 = float(torch.stack([envelope[recall >= r].max() if (recall >= r).any() else torch.tensor(0.0, dtype=torch.float64)
                          for r in eleven]).mean())  # fmt: skip
trapezoid = float(
    torch.trapezoid(torch.cat((precision[:1], precision)), torch.cat((recall.new_zeros(1), recall)))
)
print(
    f"class {class_names[label]!r}, IoU 0.5:  101-point {ap101:.4f}   11-point {ap11:.4f}   "
    f"trapezoid on the raw curve {trapezoid:.4f}"
)

capped = [{k: v[:10] for k, v in p.items()} for p in predictions]
print(
    f"mAP with 100 detections per image {package_coco_map(predictions, targets)['map']:.4f}, "
    f"with 10: {package_coco_map(capped, targets)['map']:.4f}"
)
mask_like = [
    {**t, "area": 0.6 * (t["boxes"][:, 2] - t["boxes"][:, 0]) * (t["boxes"][:, 3] - t["boxes"][:, 1])}
    for t in targets
]
print(
    f"map_small with box areas {package_coco_map(predictions, targets)['map_small']:.4f}, "
    f"with 0.6 × box area (as segmentation areas would be): {package_coco_map(predictions, mask_like)['map_small']:.4f}"
)

# %% [markdown]
# - **11-point vs 101-point.** PASCAL VOC 2007 sampled the envelope at 11 recalls $\{0, 0.1, \dots, 1\}$; VOC
#   2010+ integrates it exactly; COCO samples 101 points. On a short, steep curve the three differ by points.
# - **Trapezoid integration** of the raw (zig-zag) curve, as `sklearn.metrics.auc` would do, is neither:
#   it penalises every dip that the monotone envelope forgives.
# - **Per-image caps.** COCO keeps the 100 best detections per image and class: the metric rewards recall, so a post-processing with
#   `max_det=300` scores higher than one with 100 on crowded images — and `mar_1`, `mar_10` measure exactly this.
#   Compare detectors only with the same cap.
# - **Crowd regions.** COCO's `iscrowd` boxes are ignored regions: a detection inside one is neither TP nor FP, and
#   its IoU with a crowd box is intersection over the *detection's* area. A home-made metric that treats them as
#   normal GTs counts misses that are not. (Roboflow exports have `iscrowd: 0` everywhere; the package passes
#   `iscrowd` to pycocotools' rules when a data set has it.)
# - **Area source.** Small/medium/large use the annotation's `area` field, which on COCO is the *segmentation*
#   area — smaller than the box. A metric that uses box areas moves objects between size ranges.
# - And the quiet ones: classes without GT must be left out of the mean, not counted as 0; ties in scores must
#   keep the input order; IoU must be compared with `>=` at the threshold.
#
# ## What the package does differently
#
# - `detector.metrics.coco_map` builds the COCO dicts in memory and runs **faster-coco-eval**'s C++ `COCOeval`,
#   checked against pycocotools to 1e-6 in the test suite (crowd GTs, classes without GT, images without GT or
#   detections, more than 100 detections per image). It is several times faster than pycocotools (the measured
#   times are in `benchmarks/results/eval.json`), and far faster than your loops. `per_class_ap` reads the same
#   evaluation.
# - `detector.postprocess` scores each (point, class) pair by `eval.score_mode`: by default
#   $\sqrt{p_{\text{cls}} \cdot q_{\text{IoU}}}$ (the objectness branch predicts the IoU of its own box); the
#   `arena_cpu` demo ranks by $p_{\text{cls}}$ alone, which its calibrated `loss.cls` already trains towards TAL's
#   IoU-aware soft targets (Chapter 7). It keeps the best `pre_nms_topk` pairs above
#   `score_thresh` (the defaults printed in section 6), and runs
#   `torchvision.ops.batched_nms` — NMS for all classes at once by offsetting each class's boxes so that boxes of
#   different classes never overlap — in C++, then keeps `max_det`.
# - `detector.inference.evaluate` maps letterboxed predictions back to the original image before matching
#   (`unletterbox_boxes`), so the numbers are in the same pixels as the annotations.
#
# ## Summary
#
# IoU is the yardstick; NMS removes duplicates (strictly-greater suppression, stable ties); COCO matches in score
# order, one GT per detection, with ignored GTs and detections; AP is the mean of the monotone precision envelope
# at 101 recalls; mAP averages classes with GT and ten IoU thresholds, per size range with out-of-range objects
# ignored. Your implementation and pycocotools agree to 1e-6 — every detail above matters for that.
#
# ## Open questions
#
# 1. NMS with a fixed IoU threshold fails in crowds (two overlapping people). What do Soft-NMS and "NMS-free"
#    one-to-one assignment (DETR, YOLOv10) change, and what do they cost?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** Soft-NMS (Bodla et al. 2017) lowers the score of an overlapping box in proportion to its overlap
# instead of deleting it, so the second person survives with a lower score and can still be a true positive; it
# costs a little time and a second parameter, and keeps more duplicates at low scores. One-to-one assignment trains
# a single positive per object (Hungarian matching in DETR; YOLOv10 adds a one-to-one head next to the one-to-many
# head), so the model itself learns not to duplicate and no NMS is needed at inference; the cost is a slower
# training signal (few positives per object), which is why YOLOv10 keeps the one-to-many head during training.

# %% [markdown]
# 2. Our scores combine the class probability with the predicted IoU (their geometric mean). Why should that
#    raise AP@[.5:.95] more than AP50?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** AP depends only on the ranking of the detections. At IoU 0.5 a loose box and a tight box on the same
# object are both hits, so reordering them changes little. At IoU 0.75–0.95 only the tight boxes are hits: a score
# that includes the predicted IoU ranks them above the loose ones, so the precision at the strict thresholds rises
# — and those thresholds are 9 of the 10 in AP@[.5:.95]. It also helps NMS keep the tighter of two duplicates.

# %% [markdown]
# 3. AP ignores the score threshold a user will pick. Which number would you report for a product that runs at
#    a fixed threshold of 0.5?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** The precision and recall (or F1) of the detections above 0.5, per class, at the IoU the product
# needs — the single point of the PR curve where the product operates — together with the counts of false
# positives per image. AP averages over all thresholds, including the ones the product never uses.
