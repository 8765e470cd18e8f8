"""Backbone tests: stage freezing, frozen BatchNorm, local pretrained weights (detector.model.Backbone)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import timm
import torch

from detector.model import Backbone

# resnet18 feature levels: 0 stem (conv1, bn1), 1 layer1, 2 layer2, 3 layer3, 4 layer4.
RESNET_STAGES = ["layer1", "layer2", "layer3", "layer4"]


def _trainable_groups(backbone: Backbone) -> set[str]:
    """Top-level module names (``conv1``, ``layer3``, ``blocks.4`` …) that have a trainable parameter."""
    groups = set()
    for name, parameter in backbone.model.named_parameters():
        parts = name.split(".")
        group = ".".join(parts[:2]) if parts[0] == "blocks" else parts[0]
        if parameter.requires_grad:
            groups.add(group)
    return groups


@pytest.mark.parametrize(
    ("freeze", "trainable"),
    [
        ("none", {"conv1", "bn1", *RESNET_STAGES}),
        ("all", set()),
        (0, set()),
        (1, {"layer4"}),
        (2, {"layer3", "layer4"}),
        (3, {"layer2", "layer3", "layer4"}),
        (4, set(RESNET_STAGES)),  # the stem counts as frozen whenever anything is
        (9, set(RESNET_STAGES)),
    ],
)
def test_resnet_freeze_trainable_stages(freeze: str | int, trainable: set[str]) -> None:
    assert _trainable_groups(Backbone("resnet18", freeze=freeze)) == trainable


def test_non_resnet_stages_follow_feature_info() -> None:
    """mobilenetv3_small_100 feature levels end at bn1 (stem), blocks.0, blocks.1, blocks.3, blocks.5: the
    last stage is blocks.4–5, the one before blocks.2–3."""
    assert _trainable_groups(Backbone("mobilenetv3_small_100", freeze=2)) == {
        f"blocks.{i}" for i in (2, 3, 4, 5)
    }
    assert Backbone("mobilenetv3_small_100").num_stages == 4


@pytest.mark.parametrize("freeze", [-1, "some", 1.5])
def test_invalid_freeze_raises(freeze: object) -> None:
    with pytest.raises(ValueError, match="freeze"):
        Backbone("resnet18", freeze=freeze)


def test_frozen_batchnorm_stays_in_eval_mode_and_keeps_statistics() -> None:
    torch.manual_seed(0)
    backbone = Backbone("resnet18", freeze=2).eval().train()
    before = {name: b.clone() for name, b in backbone.model.named_buffers() if "running_mean" in name}
    features = backbone(torch.randn(2, 3, 64, 64))
    sum(f.sum() for f in features).backward()
    after = dict(backbone.model.named_buffers())
    for name, value in before.items():
        frozen = name.split(".")[0] in {"bn1", "layer1", "layer2"}
        assert torch.equal(after[name], value) == frozen, name
    for name, module in backbone.model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.training == (name.split(".")[0] in {"layer3", "layer4"}), name
    for name, parameter in backbone.model.named_parameters():
        assert (parameter.grad is None) == (not parameter.requires_grad), name


def test_pretrained_weights_load_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    backbone = Backbone("resnet18", pretrained=str(path))
    loaded = backbone.model.state_dict()
    for key in ("conv1.weight", "layer4.1.bn2.running_var", "layer2.0.downsample.0.weight"):
        torch.testing.assert_close(loaded[key], source.state_dict()[key], rtol=0, atol=0)


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.*resnet18.*does not exist"):
        Backbone("resnet18", pretrained=str(path))


def test_mismatched_weights_file_is_rejected(tmp_path: Path) -> None:
    """timm itself loads feature backbones non-strictly: resnet34 weights would half-load into resnet18."""
    path = tmp_path / "resnet34.pth"
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), path)
    with pytest.raises(ValueError, match="resnet34.pth.*does not match backbone 'resnet18'.*unexpected"):
        Backbone("resnet18", pretrained=str(path))


def test_incomplete_or_broken_weights_file_is_rejected(tmp_path: Path) -> None:
    state = timm.create_model("resnet18", pretrained=False).state_dict()
    del state["layer4.1.conv2.weight"]
    state["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"][:, :32]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(
        ValueError, match=r"missing: \['layer4.1.conv2.weight'\].*shape mismatch: \['layer1.0.conv1"
    ):
        Backbone("resnet18", pretrained=str(path))
    broken = tmp_path / "broken.pth"
    broken.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="broken.pth.*could not be read"):
        Backbone("resnet18", pretrained=str(broken))


def test_unknown_backbone_name() -> None:
    with pytest.raises(ValueError, match="unknown timm backbone 'resnet_nope'"):
        Backbone("resnet_nope")


def test_deepcopy_keeps_frozen_parts_frozen() -> None:
    """EMA copies the model with copy.deepcopy: the copy's own frozen modules must stay in eval mode."""
    backbone = copy.deepcopy(Backbone("resnet18", freeze=1)).train()
    assert not backbone.model.layer3[0].bn1.training and backbone.model.layer4[0].bn1.training


def test_flattened_module_names_and_bad_out_indices() -> None:
    """cs3darknet_s's feature_info says "stages.3", its FeatureListNet module is "stages_3". Too large an
    index names the available levels."""
    backbone = Backbone("cs3darknet_s", out_indices=(2, 3, 4), freeze=2)
    assert backbone.strides == [8, 16, 32]
    assert _trainable_groups(backbone) == {"stages_2", "stages_3"}
    with pytest.raises(ValueError, match=r"levels are 0..4 with strides \[2, 4, 8, 16, 32\]"):
        Backbone("resnet18", out_indices=(3, 4, 5))
