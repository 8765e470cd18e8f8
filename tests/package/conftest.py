"""Fixtures of the package tests: a tiny trained-looking checkpoint for load/predict/export."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from detector.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from detector.config import Config, DataConfig, ModelConfig
from detector.model import build_detector

CHECKPOINT_CLASSES = ["cat", "dog", "bird"]
TINY_MODEL = ModelConfig(backbone="test_resnet", neck_width=16, head_convs=1)  # timm's 0.4 M-param test net


@pytest.fixture(scope="session")
def write_checkpoint() -> Callable[..., Path]:
    """``write_checkpoint(path, model_config=TINY_MODEL, image_size=64)``: a ``best.pt`` as the runner writes
    it (config, class names, seeded random weights) of :data:`TINY_MODEL` with :data:`CHECKPOINT_CLASSES`."""

    def write(path: Path, model_config: ModelConfig = TINY_MODEL, image_size: int = 64) -> Path:
        torch.manual_seed(0)
        config = Config(data=DataConfig(image_size=image_size), model=model_config)
        model = build_detector(model_config, len(CHECKPOINT_CLASSES))
        state = {"format": CHECKPOINT_FORMAT, "kind": "weights", "config": config.to_dict(),
                 "class_names": CHECKPOINT_CLASSES, "model": model.state_dict()}  # fmt: skip
        return save_checkpoint(state, path)

    return write
