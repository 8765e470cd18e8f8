"""Chapter 9 (evaluation): reference implementations in the exercises' signatures.

IoU and NMS come from ``torchvision.ops`` and COCO mAP from ``detector.metrics.coco_map``; the pieces of COCO's
evaluation that no library exposes with these signatures (matching, the precision–recall curve, the 101-point AP)
follow pycocotools' ``COCOeval.evaluateImg`` and ``accumulate`` (cocoeval.py) step by step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# COCO's recall thresholds 0.00:0.01:1.00, computed as pycocotools does (Params.setDetParams).
RECALL_THRESHOLDS = torch.from_numpy(np.linspace(0.0, 1.0, 101))


def match_detections(
    iou: Tensor, gt_ignore: Tensor, iou_threshold: float, gt_crowd: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Exercise 9.3: pycocotools' greedy matching, its loop transcribed.

    Args:
        iou: ``[K, M]`` IoU of the detections (sorted by decreasing score) with the GTs.
        gt_ignore: ``[M]`` bool; gt_crowd: ``[M]`` bool or None, crowd regions (ignored GTs that are never used
            up: they may absorb any number of detections).
        iou_threshold: a match needs ``IoU >= iou_threshold``.

    Returns:
        ``matched_gt`` int64 ``[K]`` (``-1``: none) and ``ignored`` bool ``[K]`` (matched to an ignored GT).
    """
    num_dets, num_gts = iou.shape
    crowd = torch.zeros(num_gts, dtype=torch.bool) if gt_crowd is None else gt_crowd.bool()
    ignore = gt_ignore.bool()
    gt_order = torch.argsort(
        ignore.long(), stable=True
    ).tolist()  # normal GTs first, as pycocotools sorts them
    matched_gt = torch.full((num_dets,), -1, dtype=torch.int64)
    taken = torch.zeros(num_gts, dtype=torch.bool)
    for k in range(num_dets):
        best_iou, best = float(iou_threshold), -1
        for g in gt_order:
            if taken[g] and not crowd[g]:
                continue
            if best > -1 and not ignore[best] and ignore[g]:
                break  # matched a normal GT: the ignored ones are not considered
            if float(iou[k, g]) < best_iou:
                continue
            best_iou, best = float(iou[k, g]), g  # ">=": on exact ties the later GT wins
        if best > -1:
            matched_gt[k], taken[best] = best, True
    ignored = torch.zeros(num_dets, dtype=torch.bool)
    ignored[matched_gt >= 0] = ignore[matched_gt[matched_gt >= 0]]
    return matched_gt, ignored


def precision_recall(scores: Tensor, is_tp: Tensor, num_gt: int) -> tuple[Tensor, Tensor]:
    """Exercise 9.4: ``precision [K]``, ``recall [K]`` (float64) in decreasing-score order (stable, like
    pycocotools' mergesort)."""
    order = torch.argsort(scores, descending=True, stable=True)
    true_positives = is_tp[order].double().cumsum(0)
    return true_positives / torch.arange(1, len(order) + 1, dtype=torch.float64), true_positives / num_gt


def interpolated_ap(precision: Tensor, recall: Tensor) -> float:
    """Exercise 9.5: pycocotools' ``accumulate`` for one curve: the monotone envelope read at 101 recalls."""
    envelope = precision.double().tolist()
    for i in range(len(envelope) - 1, 0, -1):
        envelope[i - 1] = max(envelope[i - 1], envelope[i])
    indices = np.searchsorted(recall.double().numpy(), RECALL_THRESHOLDS.numpy(), side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in indices]))


def monotone_envelope(precision: Tensor) -> Tensor:
    """``[K]`` → ``[K]``: at each rank, the best precision at that recall or beyond (what AP integrates)."""
    return precision.flip(0).cummax(0).values.flip(0)


def class_curves(
    predictions: list[dict],
    targets: list[dict],
    label: int,
    threshold: float,
    steps: dict,
    max_detections: int = 100,
) -> tuple[Tensor, Tensor, float]:
    """PR curve and AP of one class at one IoU threshold, size range "all", no ignored GTs (the figures of §7).

    ``steps`` holds the chapter's exercises (``match_detections``, ``precision_recall``, ``interpolated_ap``),
    so the figures are drawn by the learner's own code. Each image keeps its ``max_detections`` best.
    """
    from torchvision.ops import box_iou

    scores, is_tp, num_gt = [], [], 0
    for prediction, target in zip(predictions, targets, strict=True):
        keep = prediction["labels"] == label
        order = prediction["scores"][keep].sort(descending=True, stable=True).indices[:max_detections]
        gt_boxes = target["boxes"][target["labels"] == label].double()
        iou = box_iou(prediction["boxes"][keep][order].double(), gt_boxes)
        matched, _ = steps["match_detections"](iou, torch.zeros(len(gt_boxes), dtype=torch.bool), threshold)
        scores.append(prediction["scores"][keep][order])
        is_tp.append(matched >= 0)
        num_gt += len(gt_boxes)
    precision, recall = steps["precision_recall"](torch.cat(scores), torch.cat(is_tp), max(num_gt, 1))
    return precision, recall, steps["interpolated_ap"](precision, recall)
