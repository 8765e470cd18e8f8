"""Exercise tests of Chapter 3 (neck). Run against your notebook with ``make check CH=3``.

The reference is the package's ``FpnPan`` with the same weights: its FPN outputs are read with forward hooks
on its ``fpn_out`` convs, its final outputs are the PAN outputs. Inputs are random maps with the sizes a
ResNet gives (``ceil(side / stride)``), for sides that are and are not multiples of 32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from course.checks import CheckFailure, exercise, expect, expect_close, expect_shape
from detector.model import FpnPan

CHAPTER = "03_neck"
IN_CHANNELS = [12, 20, 28]  # tiny stand-ins for resnet18's 128/256/512
WIDTH = 8
STRIDES = [8, 16, 32]
SIDES = (64, 96, 100, 330)  # 100 and 330 are not multiples of 32: maps of 13/7/4 and 42/21/11 cells


def _features(side: int, channels: list[int] = IN_CHANNELS, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(2, c, math.ceil(side / s), math.ceil(side / s), generator=generator)
        for c, s in zip(channels, STRIDES, strict=True)
    ]


def _package_neck(seed: int = 0) -> FpnPan:
    torch.manual_seed(seed)
    neck = FpnPan(IN_CHANNELS, WIDTH)
    for module in neck.modules():  # non-trivial BatchNorm statistics, so that a missing BatchNorm shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return neck.eval()


def _load_package_weights(module: nn.Module, package: FpnPan, what: str, strip_prefix: bool = False) -> None:
    """Copy the package's weights into ``module`` by name (with ``top_down.``/``bottom_up.`` stripped)."""
    state = package.state_dict()
    mine = module.state_dict()
    mapped = {key: key.split(".", 1)[1] if strip_prefix else key for key in mine}
    unknown = [key for key, name in mapped.items() if name not in state]
    expect(
        not unknown,
        f"{what}: state_dict keys that the package's FpnPan does not have: {unknown[:4]} — name the parts exactly "
        "as the docstring says (lateral, fpn_out, downsample, pan_out; top_down, bottom_up) and build each block "
        "with ConvBnAct",
    )
    wrong = [
        f"{key} {tuple(mine[key].shape)} vs {tuple(state[name].shape)}"
        for key, name in mapped.items()
        if mine[key].shape != state[name].shape
    ]
    expect(not wrong, f"{what}: parameter shapes differ from the package's: {wrong[:3]}")
    module.load_state_dict({key: state[name] for key, name in mapped.items()})
    module.eval()


def _package_fpn_outputs(
    package: FpnPan, features: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``(FPN outputs F_l, final PAN outputs P_l)`` of the package's neck."""
    fpn = {}
    hooks = [
        conv.register_forward_hook(lambda m, i, o, level=level: fpn.__setitem__(level, o.clone()))
        for level, conv in enumerate(package.fpn_out)
    ]
    with torch.no_grad():
        outputs = package(features)
    for hook in hooks:
        hook.remove()
    return [fpn[level] for level in range(len(fpn))], outputs


# Exercise 3.1 · upsample_add ------------------------------------------------------------------------------
@exercise("3.1")
def test_upsample_add_hand_computed(impl):
    coarse = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    lateral = torch.arange(16.0).reshape(1, 1, 4, 4)
    got = impl.upsample_add(coarse, lateral)
    expected = lateral + torch.tensor([[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    expect_shape(got, (1, 1, 4, 4), "merged map")
    bilinear = lateral + F.interpolate(coarse, size=(4, 4), mode="bilinear", align_corners=False)
    expect(not torch.allclose(got, bilinear), "looks like bilinear upsampling: FPN uses mode='nearest'")
    expect(
        not torch.allclose(got, expected - lateral), "the lateral map is missing: add it to the upsampled map"
    )
    expect_close(
        got, expected, "nearest ×2 upsampling + addition", hint="every coarse cell becomes a 2 × 2 block"
    )


@exercise("3.1")
def test_upsample_add_odd_sizes(impl):
    generator = torch.Generator().manual_seed(1)
    coarse, lateral = (
        torch.randn(2, 3, 4, 4, generator=generator),
        torch.randn(2, 3, 7, 7, generator=generator),
    )
    try:
        got = impl.upsample_add(coarse, lateral)
    except NotImplementedError:
        raise  # a stub stays a stub
    except RuntimeError as error:
        raise CheckFailure(
            f"a 4 × 4 map merged into a 7 × 7 one raised RuntimeError ({str(error).splitlines()[0][:80]}): "
            "upsample to lateral.shape[-2:] (size=...), not by scale_factor=2: 2 · 4 = 8 ≠ 7"
        ) from None
    expected = lateral + F.interpolate(coarse, size=(7, 7), mode="nearest")
    expect_close(
        got,
        expected,
        "a 4 × 4 map merged into a 7 × 7 one (a 100-pixel input)",
        hint="upsample to lateral.shape[-2:] (size=...), not by scale_factor=2: 2 · 4 = 8 ≠ 7",
    )


# Exercise 3.2 · TopDown -----------------------------------------------------------------------------------
def _fpn_from_laterals_only(package: FpnPan, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """The slip M_l = L_l + up(L_{l+1}): each level adds the coarser *lateral*, not the merged map above."""
    with torch.no_grad():
        laterals = [conv(x) for conv, x in zip(package.lateral, features, strict=True)]
        merged = [
            lateral + F.interpolate(above, size=lateral.shape[-2:], mode="nearest")
            for lateral, above in zip(laterals[:-1], laterals[1:], strict=True)
        ] + [laterals[-1]]
        return [conv(m) for conv, m in zip(package.fpn_out, merged, strict=True)]


@exercise("3.2")
def test_top_down_equals_the_package_fpn_path(impl):
    module = impl.TopDown(IN_CHANNELS, WIDTH)
    package = _package_neck()
    _load_package_weights(module, package, "TopDown")
    for side in (64, 100):
        features = _features(side)
        expected, _ = _package_fpn_outputs(package, features)
        with torch.no_grad():
            got = module(features)
        expect(
            isinstance(got, (list, tuple)) and len(got) == 3,
            "TopDown must return one map per level (a list of 3)",
        )
        got_shapes, expected_shapes = [tuple(g.shape) for g in got], [tuple(e.shape) for e in expected]
        expect(
            got_shapes == expected_shapes,
            f"output shapes {got_shapes}, expected {expected_shapes}: return the maps in the order of the inputs, "
            "fine to coarse"
            + (" (these come back coarse to fine)" if got_shapes == expected_shapes[::-1] else ""),
        )
        slip = _fpn_from_laterals_only(package, features)
        expect(
            not torch.allclose(got[0], slip[0], atol=1e-4),
            "F3 used the lateral map of the level above, L4, instead of the merged map M4 = L4 + up(M5): "
            "merge from the coarsest level down, so that C5's semantics reach every level",
        )
        for level in range(3):
            expect_close(
                got[level],
                expected[level],
                f"FPN output F{level + 3} for a {side}-pixel input",
                atol=1e-4,
                hint="M_5 = L_5, M_l = L_l + up(M_{l+1}) with the merged (not the lateral) map above, F_l = fpn_out[l](M_l)",
            )


# Exercise 3.3 · BottomUp ----------------------------------------------------------------------------------
@exercise("3.3")
def test_bottom_up_equals_the_package_pan_path(impl):
    module = impl.BottomUp(WIDTH, 3)
    package = _package_neck()
    _load_package_weights(module, package, "BottomUp")
    for side in (64, 100):
        fpn, expected = _package_fpn_outputs(package, _features(side))
        with torch.no_grad():
            got = module(fpn)
        expect(
            isinstance(got, (list, tuple)) and len(got) == 3,
            "BottomUp must return one map per level (a list of 3)",
        )
        expect_close(got[0], expected[0], "P3 (the finest level passes through unchanged)", atol=1e-4)
        with torch.no_grad():
            slip = package.pan_out[1](fpn[2] + package.downsample[1](fpn[1]))  # down(F4) instead of down(N4)
        expect(
            not torch.allclose(got[2], slip, atol=1e-4),
            "P5 used down(F4), the FPN map, instead of down(N4), the PAN output just below: the bottom-up path "
            "chains its own outputs",
        )
        for level in (1, 2):
            expect_close(
                got[level],
                expected[level],
                f"PAN output P{level + 3} for a {side}-pixel input",
                atol=1e-4,
                hint="N_l = pan_out[l-1](F_l + downsample[l-1](N_{l-1})): downsample the previous *output*, not F_{l-1}",
            )


# Exercise 3.4 · Neck --------------------------------------------------------------------------------------
@exercise("3.4")
def test_neck_shapes_for_several_input_sizes(impl):
    neck = impl.Neck(IN_CHANNELS, WIDTH).eval()
    for side in SIDES:
        with torch.no_grad():
            try:
                outputs = neck(_features(side))
            except NotImplementedError:
                raise  # a stub stays a stub
            except RuntimeError as error:
                raise CheckFailure(
                    f"{side}-pixel input: Neck raised RuntimeError ({str(error).splitlines()[0][:80]}): the top-down "
                    "path comes first (its lateral convs bring in_channels to width), then the bottom-up path"
                ) from None
        expect(len(outputs) == 3, f"{side}-pixel input: expected 3 output maps, got {len(outputs)}")
        for level, (output, stride) in enumerate(zip(outputs, STRIDES, strict=True)):
            cells = math.ceil(side / stride)
            expect_shape(
                output,
                (2, WIDTH, cells, cells),
                f"P{level + 3} for a {side}-pixel input",
                hint="every output has `width` channels and the size of its backbone level",
            )


@exercise("3.4")
def test_neck_equals_the_package_neck_with_copied_weights(impl):
    neck = impl.Neck(IN_CHANNELS, WIDTH)
    package = _package_neck(seed=3)
    _load_package_weights(neck, package, "Neck", strip_prefix=True)
    expect(
        len(neck.state_dict()) == len(package.state_dict()),
        f"Neck has {len(neck.state_dict())} state_dict entries, the package's FpnPan {len(package.state_dict())}",
    )
    for side in (96, 330):
        features = _features(side, seed=side)
        with torch.no_grad():
            got, expected = neck(features), package(features)
            fpn_only = package.fpn_out[2](package.lateral[2](features[2]))  # F5: what P5 is without PAN
        expect(
            not torch.allclose(got[2], fpn_only, atol=1e-4),
            "P5 is the FPN's output F5: the bottom-up path is missing; chain bottom_up after top_down",
        )
        for level in range(3):
            expect_close(got[level], expected[level], f"P{level + 3} for a {side}-pixel input", atol=1e-4)
