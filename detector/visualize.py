"""Drawing detections and analysing errors: where do the false positives and missed objects come from (Ch. 10).

Figures are ``matplotlib.figure.Figure`` objects built without pyplot: nothing is shown or kept open, so a
training loop can draw one per epoch and ``fig.savefig(path)`` it; in a notebook the returned figure
displays itself. Images are uint8 ``[3, H, W]``; boxes are xyxy pixels; predictions and targets are the
per-image dicts of :mod:`detector.metrics` (``boxes``, ``labels``, ``scores``; optional ``iscrowd``,
``area``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor
from torchvision.ops import box_area, box_iou

# Matplotlib's "tab10" (Tableau 10) colours: one per class, cycling after ten.
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
GT_COLOR = "#00ff00"
# Line width and font size of draw_detections grow with the image's longer side (drawing_sizes):
LINE_WIDTH_DIVISOR = 320  # 2 px (the minimum) up to 640 px, 12 px at 4000 px
FONT_SIZE_DIVISOR = 80  # 10 px (the minimum) up to 800 px, 50 px at 4000 px
MIN_FONT_SIZE = 10
FONT_PATH = str(
    Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
)  # ships with matplotlib
# COCO's object sizes by area in px² (cocodataset.org/#detection-eval): small < 32², medium < 96², large.
SIZE_NAMES: tuple[str, ...] = ("small", "medium", "large")
SIZE_LIMITS: tuple[float, ...] = (32.0**2, 96.0**2)
FP_TYPES: tuple[str, ...] = ("wrong_class", "localization", "duplicate", "background")
# A right-class box with IoU in [0.1, iou_thresh) is "poorly localised" (Hoiem et al., "Diagnosing Error
# in Object Detectors", ECCV 2012; the TIDE toolbox uses the same 0.1 background threshold).
LOCALIZATION_MIN_IOU = 0.1
# Only detections above this score enter the error analysis and the confusion matrix: an operating point,
# not the 0.05 of mAP (ultralytics' ConfusionMatrix uses conf=0.25 too).
ANALYSIS_SCORE_THRESH = 0.25


def class_color(label: int, colors: Sequence[Any] | None = None) -> Any:
    """The colour of class ``label``: ``colors[label]`` when given, else the fixed :data:`PALETTE`."""
    palette = colors if colors is not None else PALETTE
    return palette[int(label) % len(palette)]


def _caption(label: int, score: float | None, class_names: Sequence[str] | None) -> str:
    name = class_names[label] if class_names is not None and 0 <= label < len(class_names) else str(label)
    return name if score is None else f"{name} {score:.2f}"


def drawing_sizes(height: int, width: int) -> tuple[int, int]:
    """``(line width, font size)`` in pixels for an image of this size: both grow with its longer side, so a
    4000-px photo shown at screen size reads like a 320-px one (2 px and 10 px there)."""
    longer = max(height, width)
    return max(2, round(longer / LINE_WIDTH_DIVISOR)), max(MIN_FONT_SIZE, round(longer / FONT_SIZE_DIVISOR))


def caption_layout(
    boxes: Sequence[Sequence[float]], text_sizes: Sequence[tuple[int, int]], image_size: tuple[int, int]
) -> list[tuple[int, tuple[int, int, int, int]]]:
    """Where each caption goes: ``(box index, (x1, y1, x2, y2))`` for the captions that are drawn.

    A caption sits above its box's top-left corner (inside the box when there is no room above) and is
    shifted left to stay inside the image. Boxes are visited in the given order (highest score first) and a
    caption that would overlap one already placed is left out: on a crowded image the best detections keep
    their captions and the rest stay readable as coloured boxes.

    Args:
        boxes: ``K`` xyxy boxes; text_sizes: ``(w, h)`` of each caption's rectangle; image_size: ``(H, W)``.
    """
    height, width = image_size
    placed: list[tuple[int, tuple[int, int, int, int]]] = []
    for index, ((x1, y1, _, _), (text_w, text_h)) in enumerate(zip(boxes, text_sizes, strict=True)):
        left = max(0, min(int(x1), width - text_w))
        top = int(y1) - text_h if y1 - text_h >= 0 else max(0, min(int(y1), height - text_h))
        rect = (left, top, left + text_w, top + text_h)
        if all(rect[2] <= r[0] or r[2] <= rect[0] or rect[3] <= r[1] or r[3] <= rect[1] for _, r in placed):
            placed.append((index, rect))
    return placed


def draw_detections(
    image: Tensor,
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor | None = None,
    class_names: Sequence[str] | None = None,
    colors: Sequence[Any] | None = None,
    width: int | None = None,
    font_size: int | None = None,
) -> Tensor:
    """Boxes in their class colour with white "name 0.87" captions on the same colour.

    Line width and font size scale with the image (:func:`drawing_sizes`) unless given; boxes are drawn
    lowest score first (the best on top) and captions that would overlap a better one are left out
    (:func:`caption_layout`).

    Args:
        image: uint8 ``[3, H, W]``.
        boxes: ``[K, 4]`` xyxy pixels; labels ``[K]`` int; scores ``[K]`` or None (captions without score).
        class_names: caption per label (default: the label number); colors: one colour per class.

    Returns:
        A new uint8 ``[3, H, W]`` image (the input is not modified).
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be uint8 [3, H, W], got {image.dtype} {list(image.shape)}")
    if len(boxes) == 0:
        return image.clone()
    from PIL import Image, ImageDraw, ImageFont

    height, width_px = image.shape[-2:]
    auto_width, auto_font = drawing_sizes(height, width_px)
    line_width, font_size = width or auto_width, font_size or auto_font
    labels_list = [int(label) for label in labels]
    score_list = [None] * len(labels_list) if scores is None else [float(s) for s in scores]
    order = sorted(range(len(labels_list)), key=lambda i: -(score_list[i] or 0.0))  # best first
    box_list = boxes.detach().float().cpu().tolist()
    captions = [_caption(labels_list[i], score_list[i], class_names) for i in order]
    font = ImageFont.truetype(FONT_PATH, font_size)
    pad = max(1, font_size // 8)
    text_boxes = [font.getbbox(caption) for caption in captions]
    text_sizes = [(right + 2 * pad, bottom + 2 * pad) for _, _, right, bottom in text_boxes]
    layout = caption_layout([box_list[i] for i in order], text_sizes, (height, width_px))

    canvas = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    draw = ImageDraw.Draw(canvas)
    for i in reversed(order):  # worst first, so the best boxes end on top
        draw.rectangle(box_list[i], outline=class_color(labels_list[i], colors), width=line_width)
    for rank, (x1, y1, x2, y2) in layout:
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=class_color(labels_list[order[rank]], colors))
        draw.text((x1 + pad, y1 + pad), captions[rank], fill="white", font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).contiguous()


def batch_grid(
    images: Tensor,
    targets: Sequence[Mapping[str, Tensor]],
    class_names: Sequence[str] | None = None,
    max_images: int = 16,
    ncols: int = 4,
) -> Tensor:
    """The first ``max_images`` images of a training batch with their boxes: what the model is trained on.

    Args:
        images: uint8 ``[B, 3, S, S]``, as the loader yields them (after augmentation, before normalisation).
        targets: one dict per image with ``boxes`` ``[K, 4]`` xyxy pixels and ``labels`` ``[K]``.

    Returns:
        uint8 ``[3, H, W]``: the drawn images in rows of ``ncols``, 2 px apart.
    """
    from torchvision.utils import make_grid

    drawn = [
        draw_detections(image, target["boxes"].as_subclass(Tensor), target["labels"], class_names=class_names)
        for image, target in zip(images[:max_images].cpu(), targets, strict=False)
    ]
    return make_grid(drawn, nrow=min(ncols, len(drawn)), padding=2, pad_value=255)


def save_batch_grid(
    path: str | Path,
    images: Tensor,
    targets: Sequence[Mapping[str, Tensor]],
    class_names: Sequence[str] | None = None,
) -> None:
    """:func:`batch_grid` written atomically as a JPEG at ``path`` (a temporary file renamed over it)."""
    from torchvision.io import write_jpeg

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write_jpeg(batch_grid(images, targets, class_names), str(tmp), quality=90)
    tmp.replace(path)


def _draw_boxes(ax: Any, boxes: Tensor, captions: list[str], colors: list[Any], linestyle: str) -> None:
    for (x1, y1, x2, y2), caption, color in zip(boxes.tolist(), captions, colors, strict=True):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.5, ls=linestyle))
        if caption:
            ax.text(x1, y1, caption, fontsize=6, color="white", va="bottom", bbox=dict(fc=color, lw=0, pad=1))


def predictions_grid(
    images: Sequence[Tensor] | Tensor,
    predictions: Sequence[Mapping[str, Tensor]],
    targets: Sequence[Mapping[str, Tensor]] | None = None,
    class_names: Sequence[str] | None = None,
    ncols: int = 4,
    score_thresh: float = ANALYSIS_SCORE_THRESH,
) -> Figure:
    """A grid of images with GT (dashed, green) and predictions above ``score_thresh`` (class colours).

    Args:
        images: uint8 ``[B, 3, H, W]`` or a list of ``[3, H, W]`` (sizes may differ).
        predictions, targets: one dict per image, boxes in the image's pixels.
    """
    count = len(images)
    ncols = max(1, min(ncols, count))
    nrows = max(1, -(-count // ncols))
    fig = Figure(figsize=(3 * ncols, 3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).reshape(-1)
    for index, ax in enumerate(axes):
        ax.set_axis_off()
        if index >= count:
            continue
        ax.imshow(images[index].permute(1, 2, 0).cpu().numpy())
        if targets is not None:
            gt_boxes = targets[index]["boxes"].cpu()
            _draw_boxes(ax, gt_boxes, [""] * len(gt_boxes), [GT_COLOR] * len(gt_boxes), "--")
        prediction = predictions[index]
        keep = prediction["scores"].cpu() > score_thresh
        labels, scores = prediction["labels"].cpu()[keep].tolist(), prediction["scores"].cpu()[keep].tolist()
        captions = [_caption(label, score, class_names) for label, score in zip(labels, scores, strict=True)]
        _draw_boxes(ax, prediction["boxes"].cpu()[keep], captions, [class_color(c) for c in labels], "-")
    return fig


def per_class_ap_chart(per_class: Mapping[str, Sequence[float]], class_names: Sequence[str]) -> Figure:
    """Horizontal bars of AP@[.5:.95] and AP50 per class (``per_class_ap``'s dict); "no GT" for NaN."""
    ap, ap50 = np.asarray(per_class["ap"], dtype=float), np.asarray(per_class["ap50"], dtype=float)
    rows = np.arange(len(class_names))
    fig = Figure(figsize=(6, 0.5 * len(class_names) + 1.2), layout="constrained")
    ax = fig.subplots()
    ax.barh(rows - 0.2, np.nan_to_num(ap50), height=0.4, label="AP50", color=PALETTE[1])
    ax.barh(rows + 0.2, np.nan_to_num(ap), height=0.4, label="AP@[.5:.95]", color=PALETTE[0])
    for row in rows[np.isnan(ap)]:
        ax.text(0.01, row, "no GT", va="center", fontsize=8)
    ax.set(yticks=rows, yticklabels=list(class_names), xlim=(0, 1), xlabel="AP", title="Per-class AP")
    ax.invert_yaxis()
    ax.legend(loc="lower right")
    return fig


def _size_index(areas: Tensor) -> Tensor:
    """COCO size bucket (0 small, 1 medium, 2 large) of each area."""
    return torch.bucketize(areas, torch.tensor(SIZE_LIMITS, dtype=areas.dtype), right=True)


def _crowd_overlap(pred_boxes: Tensor, crowd_boxes: Tensor) -> Tensor:
    """``[K, G]`` intersection over the prediction's area: COCO's overlap with a crowd region."""
    top_left = torch.maximum(pred_boxes[:, None, :2], crowd_boxes[None, :, :2])
    bottom_right = torch.minimum(pred_boxes[:, None, 2:], crowd_boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    return inter / box_area(pred_boxes).clamp(min=1e-9)[:, None]


def _image_arrays(
    prediction: Mapping[str, Any], target: Mapping[str, Any], score_thresh: float
) -> dict[str, Tensor]:
    """CPU float/long tensors of one image: predictions above threshold sorted by score, GT split by crowd."""
    scores = torch.as_tensor(prediction["scores"]).float().cpu()
    order = scores.argsort(descending=True, stable=True)[: int((scores > score_thresh).sum())]
    gt_boxes = torch.as_tensor(target["boxes"]).float().cpu().reshape(-1, 4)
    crowd = torch.as_tensor(target.get("iscrowd", torch.zeros(len(gt_boxes)))).bool().cpu().reshape(-1)
    area = target.get("area")
    gt_area = box_area(gt_boxes) if area is None else torch.as_tensor(area).float().cpu().reshape(-1)
    return {
        "boxes": torch.as_tensor(prediction["boxes"]).float().cpu().reshape(-1, 4)[order],
        "labels": torch.as_tensor(prediction["labels"]).long().cpu().reshape(-1)[order],
        "gt_boxes": gt_boxes[~crowd],
        "gt_labels": torch.as_tensor(target["labels"]).long().cpu().reshape(-1)[~crowd],
        "gt_area": gt_area[~crowd],
        "crowd_boxes": gt_boxes[crowd],
        "crowd_labels": torch.as_tensor(target["labels"]).long().cpu().reshape(-1)[crowd],
    }


def _classify_predictions(data: dict[str, Tensor], iou_thresh: float) -> tuple[list[str], Tensor]:
    """Greedy COCO-style matching in score order; each prediction is "tp", "ignored" (on a crowd region of
    its class) or an FP type. Precedence: tp, ignored, duplicate, wrong class, poor localisation, background.

    Returns:
        kinds ``[K]`` and ``matched [M]`` bool over the (non-crowd) GTs.
    """
    iou = box_iou(data["boxes"], data["gt_boxes"])  # [K, M]
    same_class = data["labels"][:, None] == data["gt_labels"][None, :]  # [K, M]
    crowd_hit = (_crowd_overlap(data["boxes"], data["crowd_boxes"]) >= iou_thresh) & (
        data["labels"][:, None] == data["crowd_labels"][None, :]
    )
    matched = torch.zeros(len(data["gt_boxes"]), dtype=torch.bool)
    kinds = []
    for k in range(len(data["boxes"])):
        free = torch.where(same_class[k] & ~matched, iou[k], torch.full_like(iou[k], -1.0))
        if len(free) and free.max() >= iou_thresh:
            matched[free.argmax()] = True
            kinds.append("tp")
        elif crowd_hit[k].any():
            kinds.append("ignored")
        elif (iou[k][same_class[k]] >= iou_thresh).any():
            kinds.append("duplicate")
        elif (iou[k][~same_class[k]] >= iou_thresh).any():
            kinds.append("wrong_class")
        elif (iou[k][same_class[k]] >= LOCALIZATION_MIN_IOU).any():
            kinds.append("localization")
        else:
            kinds.append("background")
    return kinds, matched


def _counter(num_classes: int) -> dict[str, Any]:
    return {"total": 0, "by_class": [0] * num_classes, "by_size": dict.fromkeys(SIZE_NAMES, 0)}


def _count(counter: dict[str, Any], label: int, size: int) -> None:
    counter["total"] += 1
    counter["by_class"][label] += 1
    counter["by_size"][SIZE_NAMES[size]] += 1


def error_breakdown(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    iou_thresh: float = 0.5,
    score_thresh: float = ANALYSIS_SCORE_THRESH,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Count false positives by type and missed GTs, by class and by COCO size.

    Predictions with score above ``score_thresh`` are matched greedily in score order to unmatched GTs of
    their class with IoU >= ``iou_thresh`` (as COCO does at one threshold). Each unmatched one is a
    ``duplicate`` (right class, IoU >= thresh with an already matched GT), ``wrong_class`` (IoU >= thresh
    with a GT of another class), ``localization`` (right class, IoU in [0.1, thresh)) or ``background``,
    in that order of precedence. A prediction on a crowd GT of its class (intersection >= thresh of its own
    area) that matches no regular GT is ignored, as in COCO; crowd GTs are never missed. FP sizes are those of the predicted box, FN sizes use
    the target's ``area`` when given (as COCO does), else the box area. ``num_classes`` defaults to the
    largest label seen + 1.

    Returns:
        ``{"tp": int, "num_gt": int, "fp": {type: counts}, "fn": counts}`` where counts is
        ``{"total": int, "by_class": [C ints] (predicted class for FPs), "by_size": {"small", "medium",
        "large": int}}`` and the types are :data:`FP_TYPES`.
    """
    if num_classes is None:
        labels = [torch.as_tensor(r["labels"]).reshape(-1) for r in [*predictions, *targets]]
        num_classes = int(torch.cat(labels).max()) + 1 if sum(map(len, labels)) else 0
    result: dict[str, Any] = {"tp": 0, "num_gt": 0, "fp": {kind: _counter(num_classes) for kind in FP_TYPES}}
    result["fn"] = _counter(num_classes)
    for prediction, target in zip(predictions, targets, strict=True):
        data = _image_arrays(prediction, target, score_thresh)
        kinds, matched = _classify_predictions(data, iou_thresh)
        pred_sizes = _size_index(box_area(data["boxes"])).tolist()
        for kind, label, size in zip(kinds, data["labels"].tolist(), pred_sizes, strict=True):
            if kind == "tp":
                result["tp"] += 1
            elif kind != "ignored":
                _count(result["fp"][kind], label, size)
        result["num_gt"] += len(matched)
        missed_sizes = _size_index(data["gt_area"][~matched]).tolist()
        for label, size in zip(data["gt_labels"][~matched].tolist(), missed_sizes, strict=True):
            _count(result["fn"], label, size)
    return result


def confusion_matrix(
    predictions: Sequence[Mapping[str, Any]],
    targets: Sequence[Mapping[str, Any]],
    num_classes: int,
    iou_thresh: float = 0.5,
    score_thresh: float = ANALYSIS_SCORE_THRESH,
) -> Tensor:
    """Class confusion of detections, matched to GTs regardless of class.

    Pairs with IoU >= ``iou_thresh`` are matched one-to-one, highest IoU first. Predictions below
    ``score_thresh`` are dropped; crowd GTs and predictions on them (intersection >= thresh of their area)
    are left out.

    Returns:
        int64 ``[C + 1, C + 1]``: rows = GT class, columns = predicted class; row ``C`` counts predictions
        that match no GT (background FPs), column ``C`` GTs that no prediction matches (missed).
    """
    matrix = torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.int64)
    for prediction, target in zip(predictions, targets, strict=True):
        data = _image_arrays(prediction, target, score_thresh)
        iou = box_iou(data["boxes"], data["gt_boxes"])  # [K, M]
        pred_index, gt_index = torch.nonzero(iou >= iou_thresh, as_tuple=True)
        order = iou[pred_index, gt_index].argsort(descending=True, stable=True)
        pred_used = torch.zeros(len(data["boxes"]), dtype=torch.bool)
        gt_used = torch.zeros(len(data["gt_boxes"]), dtype=torch.bool)
        for k, m in zip(pred_index[order].tolist(), gt_index[order].tolist(), strict=True):
            if not pred_used[k] and not gt_used[m]:
                pred_used[k], gt_used[m] = True, True
                matrix[data["gt_labels"][m], data["labels"][k]] += 1
        on_crowd = (_crowd_overlap(data["boxes"], data["crowd_boxes"]) >= iou_thresh).any(dim=1)
        background = data["labels"][~pred_used & ~on_crowd]
        matrix[num_classes].index_add_(0, background, torch.ones_like(background))
        missed = data["gt_labels"][~gt_used]
        matrix[:, num_classes].index_add_(0, missed, torch.ones_like(missed))
    return matrix


def _grouped_bars(ax: Any, groups: Sequence[str], series: Mapping[str, Sequence[int]], title: str) -> None:
    width = 0.8 / len(series)
    positions = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, label=name, color=PALETTE[i])
    ax.set(xticks=positions, title=title, ylabel="count")
    ax.set_xticklabels(list(groups), rotation=30, ha="right")


def error_breakdown_chart(breakdown: Mapping[str, Any], class_names: Sequence[str] | None = None) -> Figure:
    """Grouped bars of :func:`error_breakdown`: FP types and missed GTs, by size and by class."""
    num_classes = len(breakdown["fn"]["by_class"])
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    kinds = {kind.replace("_", " "): breakdown["fp"][kind] for kind in FP_TYPES}
    kinds["missed (FN)"] = breakdown["fn"]
    fig = Figure(figsize=(11, 4), layout="constrained")
    by_size, by_class = fig.subplots(1, 2)
    size_series = {name: [counts["by_size"][size] for size in SIZE_NAMES] for name, counts in kinds.items()}
    _grouped_bars(by_size, SIZE_NAMES, size_series, "By size")
    class_series = {name: counts["by_class"] for name, counts in kinds.items()}
    _grouped_bars(by_class, names, class_series, "By class (predicted class for FPs)")
    by_class.legend(fontsize=8)
    fig.suptitle(f"Errors: {breakdown['tp']} TP of {breakdown['num_gt']} GT")
    return fig


def confusion_matrix_chart(matrix: Tensor, class_names: Sequence[str]) -> Figure:
    """The :func:`confusion_matrix` as an annotated heat map (last row/column: background)."""
    labels = [*class_names, "background"]
    fig = Figure(figsize=(1 + 0.7 * len(labels), 0.8 + 0.7 * len(labels)), layout="constrained")
    ax = fig.subplots()
    counts = matrix.cpu().numpy()
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        color = "white" if value > counts.max() / 2 else "black"  # readable on dark cells
        ax.text(col, row, str(value), ha="center", va="center", fontsize=8, color=color)
    ticks = np.arange(len(labels))
    ax.set(xticks=ticks, yticks=ticks, xlabel="predicted", ylabel="ground truth", title="Confusion matrix")
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    return fig
