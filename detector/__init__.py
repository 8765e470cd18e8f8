"""detector: a modern anchor-free object detector (FCOS-style decoding, FPN+PAN, TAL, focal/IoU losses).

The public API (:mod:`detector.api`), imported on first use so that ``import detector`` stays light::

    model = detector.load("runs/arena_cpu/best.pt")
    results = model.predict(["a.jpg", "photos/"], conf=0.25, iou=0.6)
    run = detector.train("arena_cpu", train__epochs=1)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["Detections", "DetectorModel", "TrainResult", "load", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("detector.api"), name)
    raise AttributeError(f"module 'detector' has no attribute {name!r}")
