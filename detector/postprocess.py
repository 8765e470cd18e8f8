"""From raw head outputs to per-image detections: scores, top-k, NMS (Chapter 9).

The score of a (point, class) pair combines the classification probability ``p = σ(cls)`` with the
objectness branch ``q = σ(obj)``. Our objectness branch is trained to predict the IoU of the point's own
box with its GT (an IoU-aware "quality" branch, as in IoU-aware RetinaNet and VarifocalNet), so ranking by
``p·q`` puts well-localised boxes first among equally confident ones — which is what AP@[.5:.95] rewards:
a loose box that outranks a tight one on the same object becomes a false positive at the high IoU
thresholds. ``"cls_obj"`` is the product YOLOX ranks by (``cls_conf · obj_conf``). The default
``"cls_obj_sqrt"``, the geometric mean, ranks exactly like the product (the square root is monotonic) but
keeps the score on a probability's scale (``sqrt(0.8·0.8) = 0.8`` where the product says 0.64), so a
``score_thresh`` reads the same as with ``"cls"``. The two only differ through the threshold: 0.05 on the
geometric mean is 0.0025 on the product, so ``"cls_obj_sqrt"`` keeps more low-score candidates, which can
only raise recall at 100 detections.

Modes:

- ``"cls"``: ``p`` (FCOS without centerness, RetinaNet);
- ``"cls_obj"``: ``p·q``;
- ``"cls_obj_sqrt"``: ``sqrt(p·q)``.

With a calibrated classification loss on TAL's soft targets (``loss.cls``: ``bce``, ``qfl`` or ``varifocal``),
``p`` is itself trained towards a target that grows with the IoU of the point's box, so ``"cls"`` already ranks by
localisation; the ``arena_cpu`` demo ranks by ``"cls"``, which scored higher than the fusion on its validation
split (issue 12).
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from detector.boxes import ltrb_to_xyxy

ScoreMode = Literal["cls", "cls_obj", "cls_obj_sqrt"]
SCORE_MODES: tuple[str, ...] = ("cls", "cls_obj", "cls_obj_sqrt")


class HeadOutputs(Protocol):
    """What :func:`postprocess` and ``DetectionLoss`` read from the model's ``DetectorOutput`` (any object
    with these fields)."""

    cls_logits: Tensor  # [B, N, C]
    box_ltrb: Tensor  # [B, N, 4] pixels, >= 0
    obj_logits: Tensor  # [B, N, 1]
    points: Tensor  # [N, 2] (x, y) pixels
    strides: Tensor  # [N]


def detection_scores(cls_logits: Tensor, obj_logits: Tensor | None, score_mode: ScoreMode) -> Tensor:
    """Combine the branches into one score per (point, class).

    Args:
        cls_logits: ``[B, N, C]`` classification logits.
        obj_logits: ``[B, N, 1]`` objectness (predicted IoU) logits; unused for ``"cls"``.
        score_mode: ``"cls"``, ``"cls_obj"`` or ``"cls_obj_sqrt"`` (see the module docstring).

    Returns:
        ``[B, N, C]`` float32 scores in ``[0, 1]``.
    """
    if score_mode not in SCORE_MODES:
        raise ValueError(f"score_mode={score_mode!r}; choose one of {SCORE_MODES}")
    scores = cls_logits.float().sigmoid()
    if score_mode == "cls":
        return scores
    if obj_logits is None:
        raise ValueError(f"score_mode={score_mode!r} needs obj_logits; use score_mode='cls' without them")
    scores = scores * obj_logits.float().sigmoid()
    return scores.sqrt() if score_mode == "cls_obj_sqrt" else scores


def _empty_detections(device: torch.device) -> dict[str, Tensor]:
    return {
        "boxes": torch.zeros((0, 4), dtype=torch.float32, device=device),
        "scores": torch.zeros((0,), dtype=torch.float32, device=device),
        "labels": torch.zeros((0,), dtype=torch.int64, device=device),
    }


def select_detections(
    scores: Tensor,
    boxes: Tensor,
    score_thresh: float,
    pre_nms_topk: int,
    nms_iou: float,
    max_det: int,
    agnostic_nms: bool = False,
) -> dict[str, Tensor]:
    """One image: multi-label top-k over all (point, class) pairs, then per-class NMS.

    A point may yield several classes (each pair is a candidate), unlike an argmax over classes. With
    ``agnostic_nms`` boxes of different classes suppress each other too (one box per object, whatever its
    class: useful when classes are look-alikes).

    Args:
        scores: ``[N, C]`` scores in ``[0, 1]``.
        boxes: ``[N, 4]`` xyxy boxes of the points.

    Returns:
        ``boxes [K, 4]`` float32, ``scores [K]`` float32 (descending), ``labels [K]`` int64, ``K <= max_det``.
    """
    num_classes = scores.shape[1]
    flat = scores.reshape(-1)
    k = min(pre_nms_topk, flat.numel())
    if k == 0:
        return _empty_detections(scores.device)
    top_scores, top_index = flat.topk(k)  # sorted, descending
    keep = top_scores > score_thresh
    top_scores, top_index = top_scores[keep], top_index[keep]
    point_index = torch.div(top_index, num_classes, rounding_mode="floor")
    labels = top_index % num_classes
    candidate_boxes = boxes[point_index].float()
    groups = torch.zeros_like(labels) if agnostic_nms else labels
    kept = batched_nms(candidate_boxes, top_scores, groups, nms_iou)[:max_det]  # sorted by score
    return {"boxes": candidate_boxes[kept], "scores": top_scores[kept], "labels": labels[kept]}


def decode_outputs(
    outputs: HeadOutputs, score_mode: ScoreMode = "cls_obj_sqrt", image_size: tuple[int, int] | None = None
) -> tuple[Tensor, Tensor]:
    """Scores and boxes of every point before any selection (what an exported model outputs).

    Returns:
        ``scores [B, N, C]`` float32 in ``[0, 1]`` and ``boxes [B, N, 4]`` float32 xyxy in input pixels,
        clipped to ``image_size = (H, W)`` when given.
    """
    scores = detection_scores(outputs.cls_logits, outputs.obj_logits, score_mode)
    boxes = ltrb_to_xyxy(outputs.points.float(), outputs.box_ltrb.float())
    if image_size is not None:
        height, width = image_size
        upper = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        boxes = boxes.clamp(min=0).minimum(upper)
    return scores, boxes


@torch.no_grad()
def postprocess(
    outputs: HeadOutputs,
    score_mode: ScoreMode = "cls_obj_sqrt",
    score_thresh: float = 0.05,
    pre_nms_topk: int = 1000,
    nms_iou: float = 0.6,
    max_det: int = 100,
    image_size: tuple[int, int] | None = None,
    agnostic_nms: bool = False,
) -> list[dict[str, Tensor]]:
    """Decode the head outputs of a batch into detections, one dict per image.

    Defaults: ``score_thresh=0.05`` and ``max_det=100`` as in torchvision's FCOS/RetinaNet and COCO's
    100 detections per image; ``pre_nms_topk=1000`` (FCOS's ``topk_candidates``); ``nms_iou=0.6`` (FCOS).

    Args:
        outputs: ``cls_logits [B, N, C]``, ``box_ltrb [B, N, 4]`` (pixels), ``obj_logits [B, N, 1]``,
            ``points [N, 2]``, ``strides [N]`` (e.g. ``DetectorOutput``).
        score_mode: how classification and objectness combine (module docstring).
        score_thresh: keep pairs with score strictly above this.
        pre_nms_topk: best (point, class) pairs per image considered before NMS.
        nms_iou: per-class NMS IoU threshold (``torchvision.ops.batched_nms``).
        max_det: detections kept per image after NMS.
        image_size: ``(H, W)`` of the model input; boxes are clipped to it when given.
        agnostic_nms: one NMS over all classes instead of one per class.

    Returns:
        ``B`` dicts with ``boxes [K, 4]`` float32 xyxy in input pixels, ``scores [K]`` float32 sorted
        descending, ``labels [K]`` int64; ``K = 0`` gives tensors of shape ``[0, 4]``, ``[0]``, ``[0]``.
        To report on the original image, map the boxes back (``detector.data`` ``unletterbox_boxes``).
    """
    scores, boxes = decode_outputs(outputs, score_mode, image_size)
    return [
        select_detections(scores[b], boxes[b], score_thresh, pre_nms_topk, nms_iou, max_det, agnostic_nms)
        for b in range(scores.shape[0])
    ]
