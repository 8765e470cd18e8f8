"""Data sets and loaders for the runner: splits from ``data.root``, a shuffle that is a function of the epoch.

``data.root`` is a Roboflow COCO export (``<root>/<split>/_annotations.coco.json``) or, with
``data.format: hf_parquet``, a folder with one parquet file per split (``<root>/<split>.parquet`` or
``<root>/**/<split>-*.parquet``, the Hugging Face layout). With ``data.arena`` set and ``data.root`` missing,
the arena data set is generated there first.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from detector.config import ConfigError, DataConfig
from detector.data import CocoDetection, HFParquetDetection, ensure_arena, eval_transforms, train_transforms
from detector.data.augment import AugmentedDataset, AugmentSettings
from detector.data.collate import collate, seed_worker
from detector.distributed import DistInfo
from detector.errors import DataError
from detector.interrupt import ignore_sigint_in_worker

RANK_SEED_STRIDE = 7919  # a prime: (epoch seed, rank) → distinct loader generator seeds


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(
            f"train.device={name!r} is not a device ({error}); use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device={name!r} but CUDA is not available here; use train.device=cpu or auto"
        )
    return device


def _split_source(data: DataConfig, split: str) -> Path:
    root = Path(data.root)
    if data.format == "coco":
        return root / split
    candidates = [root / split, root / f"{split}.parquet", *sorted(root.glob(f"**/{split}-*.parquet"))]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"data.root={str(root)!r} has no parquet file for split {split!r} (looked for {split}.parquet and "
        f"**/{split}-*.parquet): check data.root and data.{'train' if split == data.train_split else 'val'}_split"
    )


def augment_settings(data: DataConfig) -> AugmentSettings | None:
    """The :class:`~detector.data.augment.AugmentedDataset` settings of ``data``; None when no mosaic, mixup
    or affine is asked for (then the letterbox + flip + jitter transforms do the same, cheaper)."""
    if not any((data.mosaic, data.mixup, data.scale, data.translate, data.degrees)):
        return None
    return AugmentSettings(
        image_size=data.image_size, mosaic=data.mosaic, mixup=data.mixup, scale=data.scale,
        translate=data.translate, degrees=data.degrees, hflip=data.hflip, color_jitter=data.color_jitter,
        close_mosaic=data.close_mosaic,
    )  # fmt: skip


def build_dataset(data: DataConfig, split: str, train: bool) -> Dataset:
    """One split with the train transforms (letterbox, flip, jitter — or the mosaic/affine/mixup pipeline of
    :mod:`detector.data.augment` when the config asks for it) or the eval transforms (letterbox, recorded)."""
    augment = augment_settings(data) if train else None
    if augment is not None:
        return AugmentedDataset(_open_split(data, split, transforms=None), augment)
    transforms = (
        train_transforms(data.image_size, hflip=data.hflip, color_jitter=data.color_jitter)
        if train
        else eval_transforms(data.image_size)
    )
    return _open_split(data, split, transforms)


def _open_split(data: DataConfig, split: str, transforms: Any) -> Dataset:
    """The split's data set (COCO export or parquet file) with ``transforms`` (None: original images)."""
    source = _split_source(data, split)
    if data.format == "hf_parquet":
        return HFParquetDetection(source, transforms=transforms, class_names=data.class_names)
    if not source.is_dir():
        raise FileNotFoundError(
            f"split folder {str(source)!r} not found (data.root={data.root!r}, split {split!r}): data.root "
            "must be a Roboflow COCO export with one folder per split (train/ valid/ test/)"
        )
    dataset = CocoDetection(source, transforms=transforms)
    if data.class_names is not None and list(data.class_names) != dataset.class_names:
        raise DataError(
            f"{source}: data.class_names={data.class_names} but the export's categories are "
            f"{dataset.class_names}; remove data.class_names (a COCO export names its classes) or fix it"
        )
    return dataset


def prepare_data(data: DataConfig) -> None:
    """With ``data.arena`` set: generate the arena at ``data.root`` unless the same one is there already."""
    if data.arena is not None:
        arena = data.arena
        ensure_arena(data.root, n_train=arena.n_train, n_valid=arena.n_valid, n_test=arena.n_test,
                     image_size=arena.image_size, seed=arena.seed)  # fmt: skip


def build_datasets(data: DataConfig) -> tuple[Dataset, Dataset]:
    """``(train_set, val_set)`` of ``data.root`` (call :func:`prepare_data` first)."""
    root = Path(data.root)
    if not root.exists():
        raise FileNotFoundError(
            f"data.root={data.root!r} does not exist: give a Roboflow COCO export (--data PATH), or run "
            "'detector arena' to generate the built-in data set"
        )
    train_set, val_set = (
        build_dataset(data, data.train_split, True),
        build_dataset(data, data.val_split, False),
    )
    if list(train_set.class_names) != list(val_set.class_names):
        raise DataError(
            f"{data.root}: the train split has classes {train_set.class_names} but the validation split has "
            f"{val_set.class_names}; they must be the same export"
        )
    return train_set, val_set


def loader_seed(seed: int, rank: int) -> int:
    """The seed of a process's loader generator: its workers' seeds, hence their augmentations, differ per rank."""
    return (seed * RANK_SEED_STRIDE + rank) % 2**63


def _init_worker(worker_id: int) -> None:
    ignore_sigint_in_worker()
    seed_worker(worker_id)


class EpochLoader:
    """A ``DataLoader`` whose order and worker seeds are a function of the value given to :meth:`set_epoch`.

    Workers are not persistent, so each epoch's workers are seeded afresh from the loader's generator, which
    is seeded per rank (each process draws its own augmentations); the ``DistributedSampler``'s shuffle takes
    the same epoch seed on every rank, so the ranks still split one permutation.
    """

    def __init__(self, loader: DataLoader, generator: torch.Generator, rank: int = 0) -> None:
        self.loader = loader
        self.generator = generator
        self.rank = rank

    def set_epoch(self, seed: int) -> None:
        self.generator.manual_seed(loader_seed(seed, self.rank))
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(seed)

    def __iter__(self) -> Any:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def make_loader(
    dataset: Dataset, data: DataConfig, device: torch.device, dist: DistInfo, train: bool
) -> EpochLoader:
    """Train: shuffled (``DistributedSampler`` under torchrun), last partial batch dropped (BatchNorm).

    Validation: in order; under torchrun each process takes every ``world_size``-th image (no padding
    duplicates, so the gathered predictions cover each image once). ``data.batch_size`` is per process.
    """
    generator = torch.Generator()
    sampler, shuffle = None, train
    if train and dist.enabled:
        sampler = DistributedSampler(dataset, dist.world_size, dist.rank, shuffle=True, drop_last=True)
        shuffle = False
    if not train and dist.enabled:
        dataset = Subset(dataset, list(range(dist.rank, len(dataset), dist.world_size)))
    loader = DataLoader(
        dataset,
        batch_size=data.batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=data.workers,
        collate_fn=collate,
        generator=generator,
        worker_init_fn=_init_worker,
        drop_last=train,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    return EpochLoader(loader, generator, dist.rank)
