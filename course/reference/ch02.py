"""Chapter 2 (backbone): reference implementations in the exercises' signatures, built on the package."""

from __future__ import annotations

from torch import nn

from detector.model import Backbone
from detector.model.backbone import _module_stages


def create_backbone(
    name: str, out_indices: tuple[int, ...] = (2, 3, 4)
) -> tuple[nn.Module, list[int], list[int]]:
    """Exercise 2.1: the package's ``Backbone`` as ``(timm features model, channels, strides)``."""
    backbone = Backbone(name, out_indices=out_indices)
    return backbone.model, backbone.channels, backbone.strides


def parameter_stages(model: nn.Module) -> dict[str, int]:
    """Exercise 2.2: ``{parameter name: stage}`` with the stages the package's ``Backbone`` freezes by."""
    info = model.feature_info
    boundaries = [info.get("module", level) for level in range(max(info.out_indices) + 1)]
    module_names = {id(module): name for name, module in model.named_modules()}
    return {
        f"{module_names[id(module)]}.{name}": stage
        for module, stage in _module_stages(model, boundaries)
        for name, _ in module.named_parameters(recurse=False)
    }


def frozen_stages_backbone(
    name: str, out_indices: tuple[int, ...] = (2, 3, 4), trainable_stages: int | None = None
) -> Backbone:
    """Exercise 2.3: the package's ``Backbone`` with ``FrozenStagesBackbone``'s arguments."""
    return Backbone(
        name, out_indices=out_indices, freeze="none" if trainable_stages is None else trainable_stages
    )


def parameters_per_stage(model: nn.Module, stages: dict[str, int]) -> tuple[list[int], list[int]]:
    """Exercise 2.4: ``(total, trainable)`` parameter elements per stage ``0 … max(stage)``."""
    parameters = dict(model.named_parameters())
    count = max(stages.values()) + 1
    total, trainable = [0] * count, [0] * count
    for name, stage in stages.items():
        total[stage] += parameters[name].numel()
        trainable[stage] += parameters[name].numel() if parameters[name].requires_grad else 0
    return total, trainable
