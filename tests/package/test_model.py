"""Model tests: shapes, point order, initialisation, mixed precision, build_detector (detector.model)."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from detector.boxes import make_points
from detector.config import Config, ConfigError, ModelConfig
from detector.model import DecoupledHead, Detector, DetectorOutput, FpnPan, build_detector

NUM_CLASSES = 4


def _detector(backbone: str = "resnet18", width: int = 32, **kwargs) -> Detector:
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, neck_width=width, **kwargs)
    return build_detector(config, num_classes=NUM_CLASSES)


@pytest.fixture(scope="module")
def resnet_detector() -> Detector:
    return _detector("resnet18")


@pytest.fixture(scope="module")
def mobilenet_detector() -> Detector:
    return _detector("mobilenetv3_small_100")


@pytest.mark.parametrize("which", ["resnet_detector", "mobilenet_detector"])
@pytest.mark.parametrize("size", [(128, 128), (160, 160), (100, 100), (96, 128)])
def test_forward_shapes_and_points(which: str, size: tuple[int, int], request: pytest.FixtureRequest) -> None:
    """Every level has ceil(H/s)×ceil(W/s) cells (stride-2 convs with padding k//2 round up), so for a size that
    is not a multiple of 32 the last row/column of points lies just beyond the image border."""
    model = request.getfixturevalue(which).eval()
    height, width = size
    images = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8)
    with torch.no_grad():
        out = model(images)
    assert isinstance(out, DetectorOutput)
    assert model.strides == [8, 16, 32]
    sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in (8, 16, 32)]
    n = sum(h * w for h, w in sizes)
    assert out.cls_logits.shape == (1, n, NUM_CLASSES)
    assert out.box_ltrb.shape == (1, n, 4)
    assert out.obj_logits.shape == (1, n, 1)
    points, strides = make_points(sizes, [8, 16, 32])
    torch.testing.assert_close(out.points, points)
    torch.testing.assert_close(out.strides, strides)
    assert all(t.dtype == torch.float32 for t in out)
    assert (out.box_ltrb >= 0).all()


def test_backbone_channels_and_strides_match_feature_maps(resnet_detector: Detector) -> None:
    backbone = resnet_detector.backbone
    features = backbone(torch.zeros(1, 3, 128, 128))
    assert backbone.channels == [f.shape[1] for f in features] == [128, 256, 512]  # resnet18 layer2..4
    assert backbone.strides == [128 // f.shape[-1] for f in features]


def test_neck_keeps_sizes_and_mixes_levels_both_ways() -> None:
    """Odd sizes work; P3 sees C5 (top-down path) and P5 sees C3 (bottom-up path)."""
    torch.manual_seed(0)
    neck = FpnPan([8, 16, 32], width=12).eval()
    sizes = [(13, 11), (7, 6), (4, 3)]
    features = [
        torch.randn(2, c, h, w, requires_grad=True) for c, (h, w) in zip([8, 16, 32], sizes, strict=True)
    ]
    outputs = neck(features)
    assert [tuple(o.shape) for o in outputs] == [(2, 12, h, w) for h, w in sizes]
    (grad_c5,) = torch.autograd.grad(outputs[0].sum(), features[2], retain_graph=True)
    (grad_c3,) = torch.autograd.grad(outputs[2].sum(), features[0])
    assert grad_c5.abs().sum() > 0 and grad_c3.abs().sum() > 0


def test_head_flatten_order_matches_make_points() -> None:
    """Feed maps whose two channels hold each cell's centre (x, y); with identity towers and a cls conv that
    copies those channels, cls_logits must equal make_points' points, point for point."""
    sizes, strides = [(5, 7), (3, 4), (2, 2)], [8, 16, 32]
    head = DecoupledHead(width=2, num_classes=2, num_levels=3, num_convs=0, strides=strides)
    with torch.no_grad():
        head.cls_pred.weight.zero_()
        head.cls_pred.bias.zero_()
        head.cls_pred.weight[0, 0, 1, 1] = 1.0  # centre tap: output channel c = input channel c
        head.cls_pred.weight[1, 1, 1, 1] = 1.0
    maps = []
    for (height, width), stride in zip(sizes, strides, strict=True):
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        coords = torch.stack(((xs + 0.5) * stride, (ys + 0.5) * stride)).float()
        maps.append(torch.stack((coords, coords + 1000.0)))  # second image differs, to catch batch mixing
    cls_logits, box_ltrb, obj_logits = head(maps)
    points, _ = make_points(sizes, strides)
    torch.testing.assert_close(cls_logits[0], points)
    torch.testing.assert_close(cls_logits[1], points + 1000.0)
    assert box_ltrb.shape == (2, len(points), 4) and obj_logits.shape == (2, len(points), 1)


def test_prior_probability_initialisation() -> None:
    torch.manual_seed(0)
    prior = 0.01
    head = DecoupledHead(width=32, num_classes=NUM_CLASSES, num_levels=3, prior_prob=prior).eval()
    features = [torch.randn(4, 32, s, s) for s in (16, 8, 4)]
    with torch.no_grad():
        cls_logits, _, obj_logits = head(features)
    assert head.cls_pred.bias.detach().sigmoid().sub(prior).abs().max() < 1e-6
    assert cls_logits.sigmoid().mean().item() == pytest.approx(prior, rel=0.2)
    assert obj_logits.sigmoid().mean().item() == pytest.approx(prior, rel=0.2)


def test_box_distances_scale_with_stride_and_stay_finite() -> None:
    """ltrb = softplus(scale_l·x)·stride_l: 0 ≤ ltrb, finite for huge raw outputs, ∝ stride for equal inputs."""
    head = DecoupledHead(width=4, num_classes=1, num_levels=3, num_convs=0, strides=[8, 16, 32])
    features = [torch.ones(1, 4, 2, 2) for _ in range(3)]
    for bias, expected_per_stride in [(0.0, math.log(2.0)), (-200.0, 0.0), (1e4, 1e4)]:
        with torch.no_grad():
            head.box_pred.weight.zero_()
            head.box_pred.bias.fill_(bias)
            _, box_ltrb, _ = head(features)
        assert torch.isfinite(box_ltrb).all() and (box_ltrb >= 0).all()
        per_level = box_ltrb[0].reshape(3, 4, 4)  # 3 levels × 4 cells × (l, t, r, b)
        for level, stride in enumerate([8, 16, 32]):
            expected = torch.full((4, 4), expected_per_stride * stride)
            torch.testing.assert_close(per_level[level], expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_is_finite(resnet_detector: Detector, dtype: torch.dtype) -> None:
    model = resnet_detector.train()
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=dtype):
        out = model(images)
    for tensor in out[:3]:
        assert tensor.dtype == torch.float32 and torch.isfinite(tensor).all()
    assert (out.box_ltrb >= 0).all()
    model.eval()


def test_points_are_cached_per_size(resnet_detector: Detector) -> None:
    model = resnet_detector.eval()
    with torch.no_grad():
        first = model(torch.zeros(1, 3, 32, 32))
        second = model(torch.zeros(2, 3, 32, 32))
        other = model(torch.zeros(1, 3, 64, 32))
    assert first.points is second.points and first.strides is second.strides
    assert other.points.shape[0] != first.points.shape[0]


def test_uint8_and_float_inputs_agree_and_normalisation_is_timm_cfg(resnet_detector: Detector) -> None:
    model = resnet_detector.eval()
    cfg = timm.get_pretrained_cfg("resnet18").to_dict()
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(cfg["mean"]))
    torch.testing.assert_close(model.std.flatten(), torch.tensor(cfg["std"]))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        from_uint8 = model(images)
        from_float = model(images.float() / 255.0)
    for a, b in zip(from_uint8[:3], from_float[:3], strict=True):
        torch.testing.assert_close(a, b)


def test_channels_last_gives_the_same_outputs(resnet_detector: Detector) -> None:
    model = resnet_detector.eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        reference = model(images)
        model.to(memory_format=torch.channels_last)
        out = model(images.contiguous(memory_format=torch.channels_last))
    model.to(memory_format=torch.contiguous_format)
    for a, b in zip(reference[:3], out[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_build_detector_accepts_config_dict_and_checks_num_classes() -> None:
    config = Config(model=ModelConfig(neck_width=16, head_convs=1, num_classes=3))
    assert build_detector(config).num_classes == 3
    assert build_detector({"model": {"neck_width": 16}}, num_classes=2).num_classes == 2
    assert build_detector({"neck_width": 16, "num_classes": 5}).head.cls_pred.out_channels == 5
    with pytest.raises(ConfigError, match="num_classes"):
        build_detector(ModelConfig(neck_width=16))
    with pytest.raises(ConfigError, match="agree"):
        build_detector(ModelConfig(neck_width=16, num_classes=3), num_classes=4)
    with pytest.raises(ConfigError, match="neck_widht"):
        build_detector({"neck_widht": 16}, num_classes=2)


def test_predict_returns_per_image_dicts_and_restores_mode(resnet_detector: Detector) -> None:
    model = resnet_detector.train()
    results = model.predict(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), score_thresh=0.0)
    assert model.training
    model.eval()
    assert len(results) == 2
    for result in results:
        k = result["boxes"].shape[0]
        assert (
            result["boxes"].shape == (k, 4)
            and result["scores"].shape == (k,)
            and result["labels"].shape == (k,)
        )
