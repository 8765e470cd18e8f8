"""Exercise tests of Chapter 4 (heads). Run against your notebook with ``make check CH=4``.

References: ``math``/``torch.sigmoid`` for the prior bias, ``detector.boxes.make_points`` for the flatten
order, and the package's ``DecoupledHead`` with the same weights for the tower and the head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course.checks import exercise, expect, expect_close, expect_shape
from detector.boxes import make_points
from detector.model import DecoupledHead
from detector.model.head import _flatten

CHAPTER = "04_heads"
WIDTH, NUM_CLASSES = 16, 3
SIZES, STRIDES = [(6, 5), (3, 3)], [8, 16]  # non-square on purpose: a swapped H/W shows


def _features(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(2, WIDTH, h, w, generator=generator) for h, w in SIZES]


def _package_head(seed: int = 0, prior_prob: float = 0.01) -> DecoupledHead:
    torch.manual_seed(seed)
    head = DecoupledHead(
        WIDTH, NUM_CLASSES, num_levels=2, num_convs=2, prior_prob=prior_prob, strides=STRIDES
    )
    with torch.no_grad():
        for module in head.modules():  # distinct statistics per level, so that sharing BatchNorm shows
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        head.scales.copy_(torch.tensor([0.7, 1.3]))
        for conv in (head.cls_pred, head.box_pred, head.obj_pred):
            conv.weight.normal_(
                std=0.1
            )  # larger than at init, so that the predictions depend on the features
    return head.eval()


def _copy_weights(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    mine = module.state_dict()
    unknown = sorted(set(mine) - set(state))
    missing = sorted(set(state) - set(mine))
    expect(
        not unknown and not missing,
        f"{what}: state_dict keys differ from the package's — unexpected {unknown[:3]}, missing {missing[:3]}; "
        "use exactly the attribute names of the docstring",
    )
    wrong = [
        f"{k} {tuple(mine[k].shape)} vs {tuple(state[k].shape)}"
        for k in mine
        if mine[k].shape != state[k].shape
    ]
    expect(not wrong, f"{what}: parameter shapes differ from the package's: {wrong[:3]}")
    module.load_state_dict(state)
    module.eval()


# Exercise 4.1 · prior_bias --------------------------------------------------------------------------------
@exercise("4.1")
def test_prior_bias_gives_the_prior_probability(impl):
    for prior in (0.01, 0.1, 0.5, 0.9):
        bias = float(impl.prior_bias(prior))
        probability = torch.sigmoid(torch.tensor(bias, dtype=torch.float64)).item()
        if abs(probability - (1 - prior)) < 1e-9 and prior != 0.5:
            expect(False, f"sigmoid(prior_bias({prior})) = {probability:.4f} = 1 - π: the sign is flipped")
        if abs(bias - math.log(prior)) < 1e-9 and prior != 0.5:
            expect(
                False,
                f"prior_bias({prior}) = log(π): that is a log-probability, not the logit log(π / (1 - π))",
            )
        expect(
            abs(probability - prior) < 1e-9,
            f"sigmoid(prior_bias({prior})) = {probability:.6f}, expected {prior}: solve sigmoid(b) = π for b",
        )


# Exercise 4.2 · flatten_levels ----------------------------------------------------------------------------
@exercise("4.2")
def test_flatten_levels_follows_make_points_order(impl):
    """Each cell holds its own centre ((j + 0.5)·s, (i + 0.5)·s); flattened, the rows must be the grid points."""
    maps = []
    for (height, width), stride in zip(SIZES, STRIDES, strict=True):
        ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
        centres = torch.stack(((xs + 0.5) * stride, (ys + 0.5) * stride)).float()  # [2, H, W]
        maps.append(torch.stack((centres, centres + 1000)))  # [B=2, 2, H, W]; image 1 offset by 1000
    got = impl.flatten_levels(maps)
    points, _ = make_points(SIZES, STRIDES)
    expected = torch.stack((points, points + 1000))
    expect_shape(got, tuple(expected.shape), "flattened maps [B, N, K]")
    wrong_reshape = torch.cat([m.reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)
    expect(
        not torch.equal(got, wrong_reshape),
        "looks like m.reshape(B, -1, K) straight from [B, K, H, W]: channels and positions get mixed; "
        "permute(0, 2, 3, 1) first",
    )
    column_major = torch.cat([m.permute(0, 3, 2, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)
    expect(
        not torch.equal(got, column_major),
        "points come column by column: the order within a level is row-major, k = i · W + j",
    )
    expect_close(
        got,
        expected,
        "flattened cell centres vs make_points",
        hint="levels in order, row-major within a level",
    )


@exercise("4.2")
def test_flatten_levels_agrees_with_the_package(impl):
    maps = [torch.randn(2, 5, h, w) for h, w in SIZES] + [torch.randn(2, 5, 1, 2)]
    expect_close(impl.flatten_levels(maps), _flatten(maps), "flattened random maps against the package's")


# Exercise 4.3 · SharedTower -------------------------------------------------------------------------------
@exercise("4.3")
def test_shared_tower_equals_the_package_tower(impl):
    tower = impl.SharedTower(WIDTH, 2, 2)
    package = _package_head()
    state = {k.split(".", 1)[1]: v for k, v in package.state_dict().items() if k.startswith("cls_tower.")}
    expect(
        len([m for m in tower.modules() if isinstance(m, nn.Conv2d)]) == 2,
        "the convs are shared by the levels: num_convs convs in total, not one set per level",
    )
    norms = len([m for m in tower.modules() if isinstance(m, nn.BatchNorm2d)])
    expect(
        norms == 4,
        f"{norms} distinct BatchNorm modules for 2 levels × 2 convs: BatchNorm is NOT shared — each level owns one "
        "BatchNorm per conv (a shared one would normalise every level with a running average of all levels)",
    )
    _copy_weights(tower, state, "SharedTower")
    features = _features()
    for level, x in enumerate(features):
        with torch.no_grad():
            got, expected = tower(x, level), package.cls_tower(x, level)
        expect_close(
            got,
            expected,
            f"tower output on level {level}",
            atol=1e-5,
            hint="conv k → norms[level][k] → SiLU, for k in range(num_convs): this level's BatchNorm",
        )


# Exercise 4.4 · Head --------------------------------------------------------------------------------------
@exercise("4.4")
def test_head_shapes_and_initial_probability(impl):
    torch.manual_seed(0)
    for prior in (0.01, 0.1):
        head = impl.Head(WIDTH, NUM_CLASSES, num_levels=2, num_convs=2, prior_prob=prior, strides=STRIDES)
        with torch.no_grad():
            cls_logits, box_ltrb, obj_logits = head(_features())
        n = sum(h * w for h, w in SIZES)
        expect_shape(cls_logits, (2, n, NUM_CLASSES), "cls_logits")
        expect_shape(box_ltrb, (2, n, 4), "box_ltrb")
        expect_shape(obj_logits, (2, n, 1), "obj_logits")
        expect(
            all(t.dtype == torch.float32 for t in (cls_logits, box_ltrb, obj_logits)),
            "outputs must be float32",
        )
        expect(bool((box_ltrb >= 0).all()), "box_ltrb must be ≥ 0 (softplus): they are distances")
        for name, logits in (("class", cls_logits), ("objectness", obj_logits)):
            mean = torch.sigmoid(logits).mean().item()
            if abs(mean - 0.5) < 0.05:
                expect(
                    False, f"initial mean {name} probability {mean:.3f} ≈ 0.5: the bias is not initialised"
                )
            expect(
                abs(mean - prior) < 0.25 * prior,
                f"initial mean {name} probability {mean:.4f}, expected ≈ π = {prior}: bias = prior_bias(π) and "
                "prediction weights ~ N(0, 0.01²) so that the logits start at the bias",
            )


@exercise("4.4")
def test_head_initialisation_of_the_prediction_layers(impl):
    torch.manual_seed(0)
    head = impl.Head(WIDTH, NUM_CLASSES, num_levels=2, num_convs=2, prior_prob=0.01, strides=STRIDES)
    for name in ("cls_pred", "box_pred", "obj_pred"):
        conv = getattr(head, name, None)
        expect(isinstance(conv, nn.Conv2d), f"Head.{name} must be an nn.Conv2d (the package's names)")
        std = conv.weight.std().item()
        expect(
            0.005 < std < 0.02,
            f"{name}.weight has std {std:.3f}: the prediction layers are left at PyTorch's default "
            "initialisation; draw their weights from N(0, 0.01²) so that the initial logits are the biases",
        )
    bias = math.log(0.01 / 0.99)
    for name in ("cls_pred", "obj_pred"):
        expect(
            torch.allclose(
                getattr(head, name).bias, torch.full_like(getattr(head, name).bias, bias), atol=1e-5
            ),
            f"{name}.bias must start at prior_bias(π) = {bias:.4f}",
        )
    expect(
        bool((head.box_pred.bias == 0).all()),
        "box_pred's bias must start at 0 (only the scores get the prior)",
    )


@exercise("4.4")
def test_head_equals_the_package_head_with_copied_weights(impl):
    head = impl.Head(WIDTH, NUM_CLASSES, num_levels=2, num_convs=2, prior_prob=0.01, strides=STRIDES)
    package = _package_head(seed=1)
    _copy_weights(head, package.state_dict(), "Head")
    features = _features(seed=2)
    with torch.no_grad():
        got, expected = head(features), package(features)
        obj_on_cls_tower = _flatten(
            [package.obj_pred(package.cls_tower(x, level)) for level, x in enumerate(features)]
        )
        box_in_stride_units = expected[1] / torch.cat(
            [torch.full((h * w, 1), float(s)) for (h, w), s in zip(SIZES, STRIDES, strict=True)]
        )
        box_with_exp = _flatten(
            [
                torch.exp(package.box_pred(package.reg_tower(x, level)) * package.scales[level])
                * STRIDES[level]
                for level, x in enumerate(features)
            ]
        )
    if all(isinstance(g, torch.Tensor) for g in got) and got[1].shape == box_in_stride_units.shape:
        expect(
            not torch.allclose(got[2], obj_on_cls_tower, atol=1e-4),
            "obj_logits come from the classification tower: objectness asks how good the box is, a localisation "
            "question — run obj_pred on the regression tower",
        )
        expect(
            not torch.allclose(got[1], box_in_stride_units, atol=1e-4),
            "box_ltrb are in units of the stride: multiply by strides[l] to get pixels",
        )
        expect(
            not torch.allclose(got[1], box_with_exp, atol=1e-4),
            "box_ltrb were made positive with exp (FCOS's choice): this head uses softplus, which grows linearly "
            "instead of exponentially and does not overflow float16",
        )
    hints = {
        "cls_logits": "cls_pred on the classification tower",
        "box_ltrb": "softplus(scales[l] · box_pred(reg tower)) · strides[l], in pixels",
        "obj_logits": "obj_pred on the *regression* tower",
    }
    for (name, hint), a, b in zip(hints.items(), got, expected, strict=True):
        expect_close(a, b, f"{name} against the package's DecoupledHead", atol=1e-4, hint=hint)
