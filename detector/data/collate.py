"""Batching: stack images, keep per-image targets, pad targets to ``[B, M]`` for the assigner (Chapter 1)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from detector.assigner import IGNORE_LABEL


def collate(batch: Sequence[tuple[Tensor, dict[str, Any]]]) -> tuple[Tensor, list[dict[str, Any]]]:
    """``[(image [3, S, S], target), ...]`` → ``(images uint8 [B, 3, S, S], [target, ...])``.

    Images must share one size (letterbox them first); targets stay a list because each image has its own
    number of boxes ``K``.
    """
    images, targets = zip(*batch, strict=True)
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise ValueError(
            f"collate: images of different shapes {sorted(sizes)}; resize them to one size first, "
            "e.g. with detector.data.eval_transforms(image_size)"
        )
    return torch.stack(images), list(targets)


def pad_targets(
    targets: Sequence[dict[str, Any]], device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Pad per-image boxes to the largest count ``M`` in the batch.

    A target's optional ``iscrowd [K]`` marks crowd regions (COCO ``iscrowd=1``): their label becomes
    :data:`~detector.assigner.IGNORE_LABEL`, which the assigners treat as "neither positive nor negative".

    Returns:
        ``gt_labels int64 [B, M]`` (padding 0), ``gt_boxes float32 [B, M, 4]`` (xyxy, padding 0) and
        ``gt_mask bool [B, M]`` (True for real boxes, crowd regions included). ``M = 0`` when no image has a box.
    """
    batch = len(targets)
    m = max((len(t["labels"]) for t in targets), default=0)
    # Filled on the CPU (where the loader's targets are), then copied once: three transfers per batch
    # instead of two per image.
    gt_labels = torch.zeros(batch, m, dtype=torch.int64)
    gt_boxes = torch.zeros(batch, m, 4, dtype=torch.float32)
    gt_mask = torch.zeros(batch, m, dtype=torch.bool)
    for i, target in enumerate(targets):
        k = len(target["labels"])
        gt_labels[i, :k] = torch.as_tensor(target["labels"]).cpu()
        if "iscrowd" in target:
            crowd = torch.as_tensor(target["iscrowd"]).cpu().bool()
            gt_labels[i, :k][crowd] = IGNORE_LABEL
        gt_boxes[i, :k] = torch.as_tensor(target["boxes"]).cpu().to(torch.float32)
        gt_mask[i, :k] = True
    return gt_labels.to(device), gt_boxes.to(device), gt_mask.to(device)


def seed_worker(worker_id: int) -> None:
    """Seed ``random`` and ``numpy`` in a loader worker from the seed torch gave it (PyTorch reproducibility notes)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A ``DataLoader`` with :func:`collate`, a seeded order and seeded workers.

    The shuffling order and the workers' random streams (hence their augmentations) depend only on ``seed``.
    With ``workers=0`` augmentations draw from the global torch RNG (seed it with ``torch.manual_seed``).
    ``pin_memory`` defaults to ``torch.cuda.is_available()``.
    """
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=collate,
        generator=generator,
        worker_init_fn=seed_worker,
        drop_last=drop_last,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=workers > 0,
    )
