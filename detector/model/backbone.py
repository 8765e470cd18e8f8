"""A timm backbone as a multi-scale feature extractor, with stage freezing (Chapter 2).

Any timm model works through ``features_only=True``: ``out_indices`` picks the feature levels, and the
channels and strides of those levels are read from the model's ``feature_info``. For ResNets the feature
levels are ``0: stem (stride 2), 1: layer1 (4), 2: layer2 (8), 3: layer3 (16), 4: layer4 (32)``, so the
default ``out_indices=(2, 3, 4)`` gives strides 8/16/32 (the P3–P5 levels of the neck).

Stages: the *stem* is everything up to and including feature level 0; stage ``k ≥ 1`` is everything after
level ``k-1`` up to and including level ``k`` (for ResNets ``layer1`` … ``layer4``; for EfficientNets groups
of ``blocks``). Freezing sets ``requires_grad=False`` on a stage's parameters and keeps its modules in eval
mode (BatchNorm uses and keeps its running statistics) even when the model is put in train mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import timm
from torch import Tensor, nn

from detector.config import ConfigError

Freeze = Literal["none", "all"] | int


MAX_LISTED_KEYS = 5  # keys quoted in a mismatch error


def _check_weights_file(name: str, path: Path) -> None:
    """Raise a ``ConfigError`` unless ``path`` holds a state_dict of exactly the timm model ``name``.

    timm would stop on a file of another architecture with a bare size-mismatch ``RuntimeError`` listing
    tensors; here the file is compared key by key and shape by shape with a fresh ``timm.create_model(name)``
    first (classifier keys excepted, ``num_batches_tracked`` may be absent), so that the error names the
    missing, unexpected and mis-shaped keys and says which setting to fix.
    """
    try:
        state = timm.models.load_state_dict(str(path))
    except Exception as error:  # torch.load / safetensors raise many types for a broken file
        raise ConfigError(
            f"pretrained weights file {str(path)!r} could not be read as a state_dict ({error!r}): save it with "
            f"torch.save(model.state_dict(), path) or as .safetensors"
        ) from error
    reference_model = timm.create_model(name, pretrained=False)
    classifiers = reference_model.pretrained_cfg.get("classifier") or ()
    classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)

    def relevant(key: str) -> bool:
        return not any(key.startswith(c + ".") for c in classifiers)

    reference = {k: v.shape for k, v in reference_model.state_dict().items() if relevant(k)}
    found = {k: v.shape for k, v in state.items() if relevant(k) and hasattr(v, "shape")}
    missing = [k for k in reference if k not in found and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in found if k not in reference]
    wrong_shape = [
        f"{k} {tuple(found[k])} vs {tuple(v)}" for k, v in reference.items() if k in found and found[k] != v
    ]
    problems = [
        f"{label}: {items[:MAX_LISTED_KEYS]}{' …' if len(items) > MAX_LISTED_KEYS else ''} ({len(items)})"
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", wrong_shape),
        )
        if items
    ]
    if problems:
        raise ConfigError(
            f"pretrained weights file {str(path)!r} does not match backbone {name!r}: {'; '.join(problems)}. "
            f"The file must hold the state_dict of exactly timm.create_model({name!r}): check model.backbone "
            "and model.pretrained in the config"
        )


def _out_indices_error(name: str, out_indices: Sequence[int]) -> ConfigError:
    """The error for ``out_indices`` beyond the model's feature levels (timm raises a bare IndexError)."""
    strides = timm.create_model(name, pretrained=False, features_only=True).feature_info.reduction()
    return ConfigError(
        f"out_indices={list(out_indices)} for backbone {name!r}: its feature levels are 0..{len(strides) - 1} "
        f"with strides {strides}; choose the indices of strides 8/16/32 for P3-P5"
    )


# ``model.pretrained: timm``: the one value that lets timm fetch ImageNet weights through its hub.
FROM_TIMM_HUB = "timm"


def _create_features_model(name: str, out_indices: Sequence[int], pretrained: str | Path | None) -> nn.Module:
    """``timm.create_model(..., features_only=True)`` with weights from nowhere (``None``), from timm's hub
    (``"timm"``: the only case that may download; timm's own cache and ``HF_HUB_OFFLINE`` apply) or from a
    local file (any other value)."""
    if not timm.is_model(name.split(".")[0]):
        raise ConfigError(
            f"unknown timm backbone {name!r}: use a name from timm.list_models(), e.g. 'resnet18', 'resnet50', "
            "'efficientnet_b0'"
        )
    kwargs = dict(features_only=True, out_indices=tuple(out_indices))
    if pretrained is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    if str(pretrained) == FROM_TIMM_HUB:
        try:
            return timm.create_model(name, pretrained=True, **kwargs)
        except Exception as error:  # network, hub and cache errors come in many types
            raise ConfigError(
                f"model.pretrained: {FROM_TIMM_HUB} could not get the weights of {name!r} through timm's hub "
                f"({type(error).__name__}: {error}): on a machine without internet access, save them elsewhere "
                f"(torch.save(timm.create_model({name!r}, pretrained=True).state_dict(), path)) and set "
                "model.pretrained to that file, or to null to train from scratch"
            ) from error
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {str(path)!r} for backbone {name!r} does not exist: download the "
            f"weights of {name!r} yourself (e.g. torch.save(timm.create_model({name!r}, pretrained=True)"
            f".state_dict(), path) on a machine with internet access), or set model.pretrained to null "
            "to train from scratch"
        )
    _check_weights_file(name, path)
    # file= takes priority over the hub in timm's weight resolution; clearing hf_hub_id/url makes sure
    # that no other source is ever tried (HF_HUB_OFFLINE semantics).
    overlay = dict(file=str(path), hf_hub_id=None, url=None)
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def _module_stages(model: nn.Module, boundary_names: Sequence[str]) -> list[tuple[nn.Module, int]]:
    """Assign each module that owns parameters or buffers (or has no children) to a stage.

    ``boundary_names[k]`` is the module that produces feature level ``k``; a module belongs to the first
    stage ``k`` whose boundary module it precedes or lies inside, in registration (= forward) order. Modules
    after the last boundary belong to the last stage.
    """
    named = [(name, module) for name, module in model.named_modules() if name]
    names = [name for name, _ in named]
    last_position = []
    for boundary in boundary_names:
        # FeatureListNet flattens nested sequentials: feature_info's "stages.0" is the module "stages_0".
        candidates = (boundary, boundary.replace(".", "_"))
        inside = [
            i for i, name in enumerate(names) for c in candidates if name == c or name.startswith(c + ".")
        ]
        if not inside:
            raise ConfigError(
                f"feature_info names module {boundary!r} but the timm model has no such module; freezing "
                f"by stage is not supported for this backbone: use freeze='none' or 'all'"
            )
        last_position.append(max(inside))
    stages = []
    for position, (_, module) in enumerate(named):
        owns_state = any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False)
        )
        if owns_state or not any(True for _ in module.children()):
            stage = next(
                (k for k, last in enumerate(last_position) if position <= last), len(last_position) - 1
            )
            stages.append((module, stage))
    return stages


class Backbone(nn.Module):
    """A timm model with ``features_only=True``; returns the feature maps of ``out_indices``.

    Args:
        name: any timm model name (``resnet18`` for the CPU demo, ``resnet50`` for the halo recipe).
        out_indices: timm feature levels to return; ``(2, 3, 4)`` is strides 8/16/32 for ResNets.
        pretrained: ``None`` for random initialisation; a path to a local weights file of exactly this
            architecture; or ``"timm"`` to let timm download its ImageNet weights (the only case that downloads).
        freeze: ``"none"``; ``"all"``; or an int ``N``: only the last ``N`` stages stay trainable (the stem
            and every earlier stage are frozen; ``0`` is the same as ``"all"``).

    Attributes:
        channels: channels of each returned map, e.g. ``[128, 256, 512]`` for resnet18.
        strides: stride of each returned map in input pixels, e.g. ``[8, 16, 32]``.
        num_stages: number of freezable stages after the stem (4 for ResNets with ``out_indices`` up to 4).
        mean, std: the per-channel normalisation of the model's ``pretrained_cfg`` (ImageNet for most).
    """

    def __init__(
        self,
        name: str = "resnet18",
        out_indices: Sequence[int] = (2, 3, 4),
        pretrained: str | Path | None = None,
        freeze: Freeze = "none",
    ) -> None:
        super().__init__()
        self.name = name
        try:
            self.model = _create_features_model(name, out_indices, pretrained)
        except IndexError:
            raise _out_indices_error(name, out_indices) from None
        info = self.model.feature_info
        self.channels: list[int] = list(info.channels())
        self.strides: list[int] = list(info.reduction())
        cfg = self.model.pretrained_cfg
        self.mean: tuple[float, float, float] = tuple(cfg["mean"])
        self.std: tuple[float, float, float] = tuple(cfg["std"])
        self._boundaries = [info.get("module", i) for i in range(max(info.out_indices) + 1)]
        self.num_stages = len(self._boundaries) - 1
        self.freeze = freeze
        self._frozen_modules = self._apply_freeze(freeze)

    def _frozen_stage_count(self, freeze: Freeze) -> int:
        """How many stages, counting the stem as stage 0, are frozen: 0 … num_stages + 1."""
        total = self.num_stages + 1
        if freeze == "none":
            return 0
        if freeze == "all":
            return total
        if isinstance(freeze, int) and not isinstance(freeze, bool) and freeze >= 0:
            return max(total - freeze, 1)
        raise ConfigError(
            f"freeze={freeze!r} for backbone {self.name!r}: expected 'none', 'all' or an int N >= 0 "
            f"(the last N of its {self.num_stages} stages stay trainable)"
        )

    def _apply_freeze(self, freeze: Freeze) -> list[nn.Module]:
        frozen_count = self._frozen_stage_count(freeze)
        if frozen_count == 0:
            return []
        if frozen_count == self.num_stages + 1:
            frozen = list(self.model.modules())
        else:
            stages = _module_stages(self.model, self._boundaries)
            frozen = [module for module, stage in stages if stage < frozen_count]
        for module in frozen:
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad_(False)
            module.training = False
        return frozen

    def train(self, mode: bool = True) -> Backbone:
        """Like ``nn.Module.train``, but frozen stages stay in eval mode (their BatchNorm statistics fixed)."""
        super().train(mode)
        for module in self._frozen_modules:
            module.training = False
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        """``images [B, 3, H, W]`` float, already normalised → maps ``[B, channels[l], ~H/s_l, ~W/s_l]``.

        Sizes are ``ceil(H / s_l)`` for ResNets when ``H`` is not a multiple of the stride.
        """
        return self.model(images)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, channels={self.channels}, strides={self.strides}, freeze={self.freeze!r}"
