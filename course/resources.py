"""Resources the chapters share: the device and a small arena data set sized for 2 CPU cores.

Learners on a GPU get bigger settings automatically (:func:`scaled`), never a different code path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from course.paths import DATA_DIR

# The course's arena: small enough to generate in seconds and to train on for a minute on 2 CPU cores.
COURSE_ARENA = dict(n_train=240, n_valid=60, n_test=60, image_size=320, seed=0)


def device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def scaled(cpu_value: int, gpu_value: int) -> int:
    """A size knob (steps, images, batch) that grows on a GPU."""
    return gpu_value if torch.cuda.is_available() else cpu_value


def arena_dir() -> Path:
    """The course's arena data set (a Roboflow-style export), generated on first use."""
    from detector.data import ensure_arena

    root = DATA_DIR / "arena_course"
    ensure_arena(root, **COURSE_ARENA)
    return root
