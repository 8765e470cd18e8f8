"""Label assignment: which points learn which ground-truth box, and with what soft target (Chapter 6).

Two assigners share one call signature and one result type, :class:`AssignResult`:

- :class:`TaskAlignedAssigner`: the Task-Aligned Assigner of TOOD (Feng et al. 2021), the assigner behind
  YOLOv8 and PP-YOLOE. A GT's positives are the ``topk`` points inside it whose prediction is best
  *aligned* with it, ``t = s^alpha · IoU^beta``; the soft classification target grows with that alignment.
- :class:`PerLevelAssigner`: the fixed FCOS rule (Tian et al. 2019) used by the first notebook
  implementation ("seed" recipe): every point inside a GT whose level's scale range fits the GT.

Crowd regions (COCO ``iscrowd=1``) come in ``gt_labels`` as :data:`IGNORE_LABEL`: they get no positive point,
and the points inside them that are positive for no real GT are flagged in ``ignore_mask`` so the losses
leave them out of the negatives. This is COCO evaluation's view of a crowd box (an area where detections are
neither right nor wrong), and how mmdetection loads one (``gt_bboxes_ignore``, later ``ignore_flag``); the
reference training of torchvision, detectron2 and ultralytics instead drops crowd boxes, which makes those
points negatives.

Axes are named everywhere: ``B`` images, ``M`` ground-truth boxes per image (padded, ``gt_mask`` says which
are real), ``N`` points over all levels, ``C`` classes. The work is batched over ``[B, M, N]`` with no
Python loop over GTs or points; it is split into chunks of images (and of GTs when one image alone is too
big) so that the ``[B, M, N]`` intermediates stay under ``memory_budget_mb``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from detector.boxes import aligned_box_iou, xyxy_to_ltrb

# TOOD, Feng et al. 2021, Sec. 3.2: 13 positives per GT, alpha = 1, beta = 6.
TOOD_TOPK = 13
TOOD_ALPHA = 1.0
TOOD_BETA = 6.0
# Peak bytes per (image, GT, point) triple of a chunk. Typical scenes need ~12 B (the dense candidate mask,
# alignment key and top-k masks; benchmarks/bench_assigner.py: ~50 MB for 4.0 M triples), but every candidate
# also costs its indices, gathered boxes and IoU temporaries: measured 126 B when every point is a candidate
# of every GT (300 image-sized GTs on a 640-px image). The budget holds for that worst case.
BYTES_PER_TRIPLE = 128
# FCOS, Tian et al. 2019, Sec. 3.2: level l takes the GTs whose largest ltrb distance m_l satisfies
# m_{l-1} < max(l, t, r, b) <= m_l with m_l = 8 · stride_l (64, 128, 256, 512 for strides 8..64).
FCOS_RANGE_PER_STRIDE = 8.0
# ``gt_labels`` value of a crowd (ignore) region; ``detector.data.pad_targets`` writes it for ``iscrowd=1`` boxes.
IGNORE_LABEL = -1


@dataclass
class AssignResult:
    """Per-point training targets.

    Attributes:
        labels: ``[B, N]`` int64 class of the assigned GT; ``num_classes`` for background.
        boxes: ``[B, N, 4]`` float32 xyxy pixels of the assigned GT; zeros for background.
        scores: ``[B, N, C]`` float32 soft classification targets, non-zero only at a positive's class.
        fg_mask: ``[B, N]`` bool, True for positives.
        gt_index: ``[B, N]`` int64 index into the ``M`` axis of the assigned GT; ``-1`` for background.
        num_unassigned_gts: 0-dim int64 tensor, real non-crowd GTs (``gt_mask`` True) that got no positive point.
        ignore_mask: ``[B, N]`` bool, True for background points strictly inside a crowd region
            (:data:`IGNORE_LABEL`): neither positive nor negative. ``None`` means no point is ignored.
    """

    labels: Tensor
    boxes: Tensor
    scores: Tensor
    fg_mask: Tensor
    gt_index: Tensor
    num_unassigned_gts: Tensor
    ignore_mask: Tensor | None = None


def _check_inputs(
    pred_scores: Tensor, points: Tensor, gt_labels: Tensor, gt_boxes: Tensor, gt_mask: Tensor
) -> None:
    batch, num_points, _ = pred_scores.shape
    batch_gt, num_gts = gt_labels.shape
    expected = {
        "points": (points.shape, (num_points, 2)),
        "gt_boxes": (gt_boxes.shape, (batch_gt, num_gts, 4)),
        "gt_mask": (gt_mask.shape, (batch_gt, num_gts)),
    }
    for name, (found, want) in expected.items():
        if tuple(found) != want:
            raise ValueError(
                f"assigner: {name} has shape {tuple(found)}, expected {want} (B={batch_gt}, M={num_gts})"
            )
    if batch_gt != batch:
        raise ValueError(
            f"assigner: {batch} images of predictions but {batch_gt} of ground truth (gt_labels [B, M])"
        )


def split_crowd(gt_labels: Tensor, gt_mask: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Check the labels of real GTs and separate the crowd regions.

    Args:
        gt_labels: ``[B, M]`` int, classes in ``[0, C)`` or :data:`IGNORE_LABEL` where ``gt_mask`` is True.
        gt_mask: ``[B, M]`` bool, False for padding (any label there).

    Returns:
        ``labels [B, M]`` int64 (crowd and padding set to 0, safe to index with), ``object_mask [B, M]``
        (real non-crowd GTs) and ``crowd_mask [B, M]``.

    Raises:
        ValueError: a real GT's label is outside ``[0, C)`` and is not :data:`IGNORE_LABEL` (a label from
            another data set, or ``model.num_classes`` smaller than the data set's classes).
    """
    gt_labels = gt_labels.long()
    crowd_mask = gt_mask & (gt_labels == IGNORE_LABEL)
    object_mask = gt_mask & ~crowd_mask
    bad = object_mask & ((gt_labels < 0) | (gt_labels >= num_classes))
    if bad.any():
        image, gt = bad.nonzero(as_tuple=True)
        found = sorted(set(gt_labels[image, gt].tolist()))
        raise ValueError(
            f"assigner: ground-truth labels {found[:5]} (image {int(image[0])}, GT {int(gt[0])} first) are outside "
            f"[0, num_classes={num_classes}); labels must be class indices (or IGNORE_LABEL={IGNORE_LABEL} for "
            "a crowd region): check that the model's num_classes matches the data set's classes"
        )
    return torch.where(object_mask, gt_labels, 0), object_mask, crowd_mask


def crowd_ignore_mask(
    points: Tensor, gt_boxes: Tensor, crowd_mask: Tensor, fg_mask: Tensor, eps: float = 1e-9
) -> Tensor | None:
    """``[B, N]`` bool: background points strictly inside a crowd box; ``None`` when no image has a crowd.

    Args:
        points: ``[N, 2]``; gt_boxes: ``[B, M, 4]`` xyxy; crowd_mask: ``[B, M]``; fg_mask: ``[B, N]``.
    """
    num_crowd = int(crowd_mask.sum(dim=1).max()) if crowd_mask.numel() else 0
    if num_crowd == 0:
        return None
    # Only the crowd GTs, moved to the front of each image: [B, K, N] work with K the most crowds per image.
    order = crowd_mask.int().argsort(dim=1, descending=True, stable=True)[:, :num_crowd]  # [B, K]
    crowd_boxes = gt_boxes.gather(1, order[..., None].expand(-1, -1, 4))
    inside = candidate_mask(points, crowd_boxes, crowd_mask.gather(1, order), eps=eps).any(dim=1)  # [B, N]
    return inside & ~fg_mask


def candidate_mask(
    points: Tensor,
    gt_boxes: Tensor,
    gt_mask: Tensor,
    strides: Tensor | None = None,
    center_radius: float | None = None,
    eps: float = 1e-9,
) -> Tensor:
    """Points strictly inside each real GT (and, with ``center_radius``, near its centre).

    Args:
        points: ``[N, 2]`` float32 cell centres ``(x, y)``.
        gt_boxes: ``[B, M, 4]`` float32 xyxy.
        gt_mask: ``[B, M]`` bool, False for padded GTs.
        strides: ``[N]``, required with ``center_radius``.
        center_radius: ``r``: also require ``max(|x - cx|, |y - cy|) < r · stride``.

    Returns:
        ``[B, M, N]`` bool: ``min(l, t, r, b) > eps`` (and the centre condition) and ``gt_mask``.
    """
    # min(l, t, r, b) > eps, one side at a time: four [B, M, N] comparisons instead of a [B, M, N, 4] tensor.
    x, y = points[:, 0], points[:, 1]  # [N]
    x1, y1, x2, y2 = (gt_boxes[..., side, None] for side in range(4))  # [B, M, 1] each
    mask = ((x - x1) > eps) & ((y - y1) > eps) & ((x2 - x) > eps) & ((y2 - y) > eps)  # [B, M, N]
    if center_radius is not None:
        if strides is None:
            raise ValueError("assigner: center_radius is set but no strides [N] were passed")
        centers = (gt_boxes[..., :2] + gt_boxes[..., 2:]) / 2  # [B, M, 2]
        offsets = (points[None, None] - centers[:, :, None, :]).abs().amax(dim=-1)  # [B, M, N]
        mask &= offsets < center_radius * strides.float()
    return mask & gt_mask[:, :, None]


def _select_topk(key: Tensor, topk: int) -> Tensor:
    """The ``topk`` candidates of each GT by alignment, ties broken by the lower point index.

    Args:
        key: ``[B, M, N]`` float32, the metric ``t >= 0`` at candidates and ``-1`` elsewhere.

    Returns:
        ``[B, M, N]`` bool; all candidates of a GT that has at most ``topk`` of them (even at ``t = 0``).
    """
    num_points = key.shape[-1]
    k = min(topk, num_points)
    largest = key.topk(min(k + 1, num_points), dim=-1).values  # [B, M, k (+1)], descending
    kth = largest[..., k - 1 : k]  # [B, M, 1]; -1 when a GT has fewer than k candidates
    positives = (key >= kth) & (key >= 0)
    if k == num_points:
        return positives
    # More candidates tie at the k-th value than slots are left: only possible when the (k+1)-th equals the
    # k-th. Rare (exactly equal float metrics), so the tie rank is computed only for those GTs.
    crowded = ((largest[..., k : k + 1] == kth) & (kth >= 0)).squeeze(-1)  # [B, M]
    if crowded.any():
        rows_key, rows_kth = key[crowded], kth[crowded]  # [R, N], [R, 1]
        free_slots = k - (largest[crowded][:, :k] > rows_kth).sum(dim=-1, keepdim=True)
        ties = rows_key == rows_kth
        positives[crowded] = (rows_key > rows_kth) | (ties & (ties.cumsum(dim=-1) <= free_slots))
    return positives


def _chunk_sizes(batch: int, num_gts: int, num_points: int, memory_budget_mb: float) -> tuple[int, int]:
    """Images per chunk and GTs per chunk so that a chunk's ``[b, m, N]`` work fits the budget."""
    budget_triples = max(1, int(memory_budget_mb * 2**20 / BYTES_PER_TRIPLE))
    per_image = max(1, num_gts * num_points)
    if per_image <= budget_triples:
        return max(1, min(batch, budget_triples // per_image)), num_gts
    return 1, max(1, budget_triples // max(1, num_points))


def _empty_result(batch: int, num_points: int, num_classes: int, device: torch.device) -> AssignResult:
    return AssignResult(
        labels=torch.full((batch, num_points), num_classes, dtype=torch.int64, device=device),
        boxes=torch.zeros(batch, num_points, 4, device=device),
        scores=torch.zeros(batch, num_points, num_classes, device=device),
        fg_mask=torch.zeros(batch, num_points, dtype=torch.bool, device=device),
        gt_index=torch.full((batch, num_points), -1, dtype=torch.int64, device=device),
        num_unassigned_gts=torch.zeros((), dtype=torch.int64, device=device),
    )


def _finish(
    gt_index: Tensor,
    point_score: Tensor,
    gt_labels: Tensor,
    gt_boxes: Tensor,
    gt_mask: Tensor,
    num_classes: int,
) -> AssignResult:
    """Targets from each point's winning GT (``gt_index [B, N]``, -1 for background) and score ``[B, N]``."""
    fg_mask = gt_index >= 0
    safe_index = gt_index.clamp(min=0)
    labels = torch.where(fg_mask, gt_labels.gather(1, safe_index), num_classes)
    boxes = gt_boxes.gather(1, safe_index[..., None].expand(-1, -1, 4)) * fg_mask[..., None]
    scores = torch.zeros(*labels.shape, num_classes + 1, device=labels.device)
    scores.scatter_(2, labels[..., None], (point_score * fg_mask)[..., None])
    positives_per_gt = torch.zeros(gt_mask.shape, device=labels.device).scatter_add_(
        1, safe_index, fg_mask.float()
    )
    num_unassigned = (gt_mask & (positives_per_gt == 0)).sum()
    return AssignResult(labels, boxes, scores[..., :num_classes], fg_mask, gt_index, num_unassigned)


class TaskAlignedAssigner:
    """Task-Aligned Assigner (TOOD, Feng et al. 2021), batched over images × GTs × points.

    Rules, for each image:

    1. candidates of a GT: points strictly inside it (``min(l, t, r, b) > eps``); with ``center_radius=r``
       also within ``r · stride`` of the GT centre in max-norm;
    2. alignment metric ``t = s^alpha · IoU^beta``: ``s`` the predicted probability of the GT's class, IoU
       plain (not CIoU) between the point's predicted box and the GT; no gradient;
    3. positives of a GT: its ``topk`` candidates by ``t`` (all of them when it has fewer, even at ``t = 0``;
       ties go to the lower point index);
    4. a point positive for several GTs goes to the one **among those** with the highest IoU (ties: lower
       GT index). Unlike ultralytics' ``tal.py``, which takes the highest IoU over all GTs;
    5. soft target at the GT's class: ``t · max IoU / (max t + eps)``, maxima over that GT's positives
       (after rule 4); zero elsewhere;
    6. no GT → all background; a real GT left without positives is counted in ``num_unassigned_gts``;
    7. crowd GTs (:data:`IGNORE_LABEL`) take no part in rules 1-6; background points strictly inside one are
       flagged in ``ignore_mask``.

    Inputs may be float16/bfloat16; the assignment is computed in float32.
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = TOOD_TOPK,
        alpha: float = TOOD_ALPHA,
        beta: float = TOOD_BETA,
        center_radius: float | None = None,
        eps: float = 1e-9,
        memory_budget_mb: float = 1024,
    ) -> None:
        if topk < 1:
            raise ValueError(f"TaskAlignedAssigner: topk must be >= 1, got {topk}")
        self.num_classes = num_classes
        self.topk = topk
        self.alpha = alpha
        self.beta = beta
        self.center_radius = center_radius
        self.eps = eps
        self.memory_budget_mb = memory_budget_mb

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: Tensor,
        pred_boxes: Tensor,
        points: Tensor,
        gt_labels: Tensor,
        gt_boxes: Tensor,
        gt_mask: Tensor,
        strides: Tensor | None = None,
    ) -> AssignResult:
        """Assign every point of every image.

        Args:
            pred_scores: ``[B, N, C]`` class probabilities (after sigmoid).
            pred_boxes: ``[B, N, 4]`` predicted boxes, xyxy pixels.
            points: ``[N, 2]`` cell centres ``(x, y)`` in pixels.
            gt_labels: ``[B, M]`` int64 classes in ``[0, C)``, or :data:`IGNORE_LABEL` for a crowd region (any
                value where ``gt_mask`` is False).
            gt_boxes: ``[B, M, 4]`` xyxy pixels.
            gt_mask: ``[B, M]`` bool, False for padding.
            strides: ``[N]`` the points' strides; needed with ``center_radius``.

        Returns:
            :class:`AssignResult` (float32 targets).

        Raises:
            ValueError: a real GT label outside ``[0, C)`` other than :data:`IGNORE_LABEL` (crowd).
        """
        _check_inputs(pred_scores, points, gt_labels, gt_boxes, gt_mask)
        batch, num_points, _ = pred_scores.shape
        num_gts = gt_labels.shape[1]
        if num_gts == 0 or num_points == 0:
            return _empty_result(batch, num_points, self.num_classes, pred_scores.device)
        gt_labels, gt_mask, crowd_mask = split_crowd(gt_labels, gt_mask, self.num_classes)
        pred_scores, pred_boxes = pred_scores.float(), pred_boxes.float()
        points, gt_boxes = points.float(), gt_boxes.float()
        images_per_chunk, gts_per_chunk = _chunk_sizes(batch, num_gts, num_points, self.memory_budget_mb)
        results = []
        for start in range(0, batch, images_per_chunk):
            images = slice(start, start + images_per_chunk)
            gt_index, point_score = self._assign_chunk(
                pred_scores[images], pred_boxes[images], points, gt_labels[images],
                gt_boxes[images], gt_mask[images], strides, gts_per_chunk,
            )  # fmt: skip
            results.append(
                _finish(
                    gt_index,
                    point_score,
                    gt_labels[images],
                    gt_boxes[images],
                    gt_mask[images],
                    self.num_classes,
                )
            )
        names = ("labels", "boxes", "scores", "fg_mask", "gt_index")
        merged = {name: torch.cat([getattr(r, name) for r in results]) for name in names}
        return AssignResult(
            **merged,
            num_unassigned_gts=sum(r.num_unassigned_gts for r in results),
            ignore_mask=crowd_ignore_mask(points, gt_boxes, crowd_mask, merged["fg_mask"], self.eps),
        )

    def _assign_chunk(
        self,
        pred_scores: Tensor,
        pred_boxes: Tensor,
        points: Tensor,
        gt_labels: Tensor,
        gt_boxes: Tensor,
        gt_mask: Tensor,
        strides: Tensor | None,
        gts_per_chunk: int,
    ) -> tuple[Tensor, Tensor]:
        """Winning GT ``[b, N]`` (-1: background) and its soft score ``[b, N]`` for a chunk of images.

        Rules 1-3 run dense over ``[b, m, N]`` for ``gts_per_chunk`` GTs at a time; they leave at most
        ``topk`` positives per GT, so rules 4-5 run on the list of (image, GT, point) positives.
        """
        batch, num_points = pred_scores.shape[:2]
        num_gts = gt_labels.shape[1]
        found = []
        for first in range(0, num_gts, gts_per_chunk):
            gts = slice(first, first + gts_per_chunk)
            candidates = candidate_mask(
                points, gt_boxes[:, gts], gt_mask[:, gts], strides, self.center_radius, self.eps
            )
            key = self._alignment_key(
                pred_scores, pred_boxes, gt_labels[:, gts], gt_boxes[:, gts], candidates
            )
            image, gt, point = _select_topk(key, self.topk).nonzero(as_tuple=True)
            found.append((image, gt + first, point, key[image, gt, point]))
        image, gt, point, metric = (torch.cat(parts) for parts in zip(*found, strict=True))
        iou = aligned_box_iou(gt_boxes[image, gt], pred_boxes[image, point]).clamp(min=0)
        # Rule 4: each point keeps the GT with the highest IoU among those it is positive for (lowest index on ties).
        flat_point = image * num_points + point
        best_iou = torch.full((batch * num_points,), -1.0, device=iou.device).scatter_reduce(
            0, flat_point, iou, "amax"
        )
        is_best = iou == best_iou[flat_point]
        first_best = torch.full((batch * num_points,), num_gts, device=iou.device)
        first_best = first_best.scatter_reduce(0, flat_point[is_best], gt[is_best], "amin")
        keep = is_best & (gt == first_best[flat_point])
        image, gt, point, metric, iou = image[keep], gt[keep], point[keep], metric[keep], iou[keep]
        # Rule 5: t · (max IoU) / (max t + eps), maxima over each GT's final positives.
        flat_gt = image * num_gts + gt
        max_metric = torch.zeros(batch * num_gts, device=iou.device).scatter_reduce(
            0, flat_gt, metric, "amax"
        )
        max_iou = torch.zeros(batch * num_gts, device=iou.device).scatter_reduce(0, flat_gt, iou, "amax")
        gt_index = torch.full((batch, num_points), -1, dtype=torch.int64, device=iou.device)
        gt_index[image, point] = gt
        point_score = torch.zeros(batch, num_points, device=iou.device)
        point_score[image, point] = metric * max_iou[flat_gt] / (max_metric[flat_gt] + self.eps)
        return gt_index, point_score

    def _alignment_key(
        self, pred_scores: Tensor, pred_boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor, candidates: Tensor
    ) -> Tensor:
        """Alignment metric ``t = s^alpha · IoU^beta`` ``[b, m, N]`` at the candidates, ``-1`` elsewhere.

        Computed only at the candidate (image, GT, point) triples, a small fraction of all of them.
        """
        image, gt, point = candidates.nonzero(as_tuple=True)
        iou = aligned_box_iou(gt_boxes[image, gt], pred_boxes[image, point]).clamp(min=0)
        class_prob = pred_scores[image, point, gt_labels[image, gt]]
        key = torch.full(candidates.shape, -1.0, device=pred_scores.device)
        key[image, gt, point] = class_prob.pow(self.alpha) * iou.pow(self.beta)
        return key


def fcos_scale_ranges(
    strides: Tensor, range_per_stride: float = FCOS_RANGE_PER_STRIDE
) -> tuple[Tensor, Tensor]:
    """FCOS's ``(lower, upper]`` range of ``max(l, t, r, b)`` for each point's level.

    Args:
        strides: ``[N]`` the points' strides.

    Returns:
        ``lower [N]``, ``upper [N]``: ``upper = range_per_stride · stride``, ``lower`` the previous level's
        upper (0 for the finest level); the coarsest level's upper is ``inf``.
    """
    levels = torch.unique(strides.float())  # sorted ascending
    uppers = levels * range_per_stride
    uppers[-1] = math.inf
    lowers = torch.cat((uppers.new_zeros(1), uppers[:-1]))
    level_of_point = torch.searchsorted(levels, strides.float())
    return lowers[level_of_point], uppers[level_of_point]


class PerLevelAssigner:
    """The fixed FCOS rule (Tian et al. 2019) of the "seed" recipe.

    A point is positive for a GT when it lies strictly inside the GT (and, with ``center_radius``, near its
    centre: the same candidates as :class:`TaskAlignedAssigner`) and the GT's largest ltrb distance from that
    point falls in the point's level range (:func:`fcos_scale_ranges`). A point positive for several GTs goes
    to the smallest GT by area (ties: lower GT index). Targets are hard: score 1 at the GT's class. The
    predictions are not used; the arguments match :class:`TaskAlignedAssigner` so the two are swappable.
    """

    def __init__(
        self,
        num_classes: int,
        center_radius: float | None = None,
        range_per_stride: float = FCOS_RANGE_PER_STRIDE,
        eps: float = 1e-9,
        memory_budget_mb: float = 1024,
    ) -> None:
        self.num_classes = num_classes
        self.center_radius = center_radius
        self.range_per_stride = range_per_stride
        self.eps = eps
        self.memory_budget_mb = memory_budget_mb

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: Tensor,
        pred_boxes: Tensor,
        points: Tensor,
        gt_labels: Tensor,
        gt_boxes: Tensor,
        gt_mask: Tensor,
        strides: Tensor | None = None,
    ) -> AssignResult:
        """Same arguments and result as :meth:`TaskAlignedAssigner.__call__`; ``strides`` is required."""
        _check_inputs(pred_scores, points, gt_labels, gt_boxes, gt_mask)
        if strides is None:
            raise ValueError(
                "PerLevelAssigner: strides [N] are required (they choose each point's scale range)"
            )
        batch, num_points, _ = pred_scores.shape
        num_gts = gt_labels.shape[1]
        if num_gts == 0 or num_points == 0:
            return _empty_result(batch, num_points, self.num_classes, pred_scores.device)
        points, gt_boxes = points.float(), gt_boxes.float()
        gt_labels, gt_mask, crowd_mask = split_crowd(gt_labels, gt_mask, self.num_classes)
        lower, upper = fcos_scale_ranges(strides, self.range_per_stride)
        areas = (gt_boxes[..., 2:] - gt_boxes[..., :2]).prod(dim=-1)  # [B, M]
        images_per_chunk, _ = _chunk_sizes(batch, num_gts, num_points, self.memory_budget_mb)
        gt_index = []
        for start in range(0, batch, images_per_chunk):
            images = slice(start, start + images_per_chunk)
            chunk_boxes = gt_boxes[images]
            positives = candidate_mask(
                points, chunk_boxes, gt_mask[images], strides, self.center_radius, self.eps
            )
            reach = xyxy_to_ltrb(points[None, None], chunk_boxes[:, :, None, :]).amax(dim=-1)  # [b, M, N]
            positives &= (reach > lower) & (reach <= upper)
            masked_area = torch.where(positives, areas[images, :, None], math.inf)
            smallest_gt = masked_area.argmin(dim=1)  # [b, N], first on ties
            assigned = positives.any(dim=1)
            gt_index.append(torch.where(assigned, smallest_gt, -1))
        gt_index = torch.cat(gt_index)
        result = _finish(
            gt_index,
            torch.ones(gt_index.shape, device=gt_index.device),
            gt_labels,
            gt_boxes,
            gt_mask,
            self.num_classes,
        )
        result.ignore_mask = crowd_ignore_mask(points, gt_boxes, crowd_mask, result.fg_mask, self.eps)
        return result
