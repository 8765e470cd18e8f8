"""The three sources of starting weights, with a tiny timm model and local files only (no network).

``model.pretrained``: a local file, or ``timm`` (timm's hub — here a hub cache laid out on disk, read with
``HF_HUB_OFFLINE=1``); ``model.init_from``: a trained detector's checkpoint, re-initialising only the class
layer when the class count differs.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from safetensors.torch import save_file

from detector.checkpoint import save_checkpoint
from detector.config import ConfigError, ModelConfig
from detector.model import Backbone, build_detector

TINY = "test_resnet"  # timm's 0.37 M-parameter test model; its hub id is timm/test_resnet.r160_in1k


def _tiny_config(**changes) -> ModelConfig:
    return ModelConfig(backbone=TINY, out_indices=[2, 3, 4], neck_width=16, head_convs=1, **changes)


def _imagenet_like_weights(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone().contiguous() for k, v in timm.create_model(TINY).state_dict().items()}


def _assert_backbone_has(backbone: Backbone, weights: dict[str, torch.Tensor]) -> None:
    own = backbone.model.state_dict()
    shared = [k for k in own if k in weights]
    assert len(shared) > 10
    for key in shared:
        assert torch.equal(own[key], weights[key]), key


def test_pretrained_local_file_loads_exactly_those_weights(tmp_path):
    weights = _imagenet_like_weights(seed=1)
    path = tmp_path / "tiny.pth"
    torch.save(weights, path)
    _assert_backbone_has(Backbone(TINY, pretrained=path), weights)
    fresh = Backbone(TINY, pretrained=None).model.state_dict()
    assert not torch.equal(fresh["conv1.0.weight"], weights["conv1.0.weight"])


@pytest.mark.slow
def test_pretrained_timm_reads_timms_hub_and_reports_a_missing_download(tmp_path):
    weights = _imagenet_like_weights(seed=2)
    hf_id = timm.create_model(TINY).pretrained_cfg["hf_hub_id"]
    repo = tmp_path / "hub" / f"models--{hf_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    save_file(weights, str(snapshot / "model.safetensors"))
    torch.save(weights, tmp_path / "expected.pth")
    script = textwrap.dedent(
        f"""
        import torch
        from detector.model import Backbone
        own = Backbone({TINY!r}, pretrained="timm").model.state_dict()
        expected = torch.load({str(tmp_path / "expected.pth")!r})
        assert all(torch.equal(own[k], expected[k]) for k in own if k in expected)
        print("loaded from the hub cache")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded from the hub cache" in done.stdout
    # An empty cache offline: a clear error that says how to work without internet access.
    env["HF_HUB_CACHE"] = str(tmp_path / "empty")
    failed = subprocess.run(
        [sys.executable, "-c", f"from detector.model import Backbone; Backbone({TINY!r}, pretrained='timm')"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode != 0
    assert "model.pretrained: timm could not get the weights" in failed.stderr
    assert "set model.pretrained to that file" in failed.stderr


def _trained_checkpoint(tmp_path, num_classes: int, with_ema: bool):
    torch.manual_seed(3)
    trained = build_detector(_tiny_config(), num_classes)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(torch.randn_like(parameter))
    weights = trained.state_dict()
    stale = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in weights.items()}
    state = {"model": stale, "ema": {"module": weights}} if with_ema else {"model": weights}
    return save_checkpoint(state, tmp_path / "best.pt"), weights


@pytest.mark.parametrize("with_ema", [True, False])
def test_init_from_same_classes_takes_every_weight_preferring_ema(tmp_path, with_ema):
    path, weights = _trained_checkpoint(tmp_path, num_classes=3, with_ema=with_ema)
    model = build_detector(_tiny_config(init_from=str(path)), 3)
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_init_from_other_class_count_reinitialises_only_the_class_layer(tmp_path):
    path, weights = _trained_checkpoint(tmp_path, num_classes=3, with_ema=True)
    model = build_detector(_tiny_config(init_from=str(path), prior_prob=0.01), 5)
    state = model.state_dict()
    for key, value in state.items():
        if key.startswith("head.cls_pred."):
            assert value.shape[0] == 5
        else:
            assert torch.equal(value, weights[key]), key
    # The fresh class layer carries the prior-probability bias of Chapter 4: sigmoid(b) = 0.01.
    assert torch.allclose(state["head.cls_pred.bias"], torch.full((5,), -math.log(0.99 / 0.01)))


def test_init_from_another_architecture_names_the_keys(tmp_path):
    path, _ = _trained_checkpoint(tmp_path, num_classes=3, with_ema=False)
    wider = ModelConfig(
        backbone=TINY, out_indices=[2, 3, 4], neck_width=24, head_convs=1, init_from=str(path)
    )
    with pytest.raises(ConfigError, match=r"another architecture \(shape: \['neck"):
        build_detector(wider, 3)
