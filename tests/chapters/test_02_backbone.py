"""Exercise tests of Chapter 2 (backbone). Run against your notebook with ``make check CH=2``.

Models are created with ``pretrained=False`` (nothing is downloaded) at 64-pixel inputs. The references are
the package's ``Backbone``, the shapes of the maps the model actually returns, and the stage of each parameter
read by hand from the module names that ``feature_info`` lists.
"""

from __future__ import annotations

import torch
from torch import nn

from course.checks import exercise, expect, expect_close
from detector.model import Backbone

CHAPTER = "02_backbone"
INPUT_SIZE = 64  # pixels: enough for five stride-2 reductions, cheap on a CPU

# Stage of each top-level parameter prefix, read from feature_info's module names (levels 0..4):
# resnet18: act1 (no parameters; conv1, bn1 before it), layer1, layer2, layer3, layer4.
RESNET18_STAGES = {"conv1": 0, "bn1": 0, "layer1": 1, "layer2": 2, "layer3": 3, "layer4": 4}
# efficientnet_b0: blocks.0 (with conv_stem, bn1 before it), blocks.1, blocks.2, blocks.4 (blocks.3 before it),
# blocks.6 (blocks.5 before it).
EFFICIENTNET_B0_STAGES = {
    "conv_stem": 0,
    "bn1": 0,
    "blocks.0": 0,
    "blocks.1": 1,
    "blocks.2": 2,
    "blocks.3": 3,
    "blocks.4": 3,
    "blocks.5": 4,
    "blocks.6": 4,
}


def _hand_stage(name: str, table: dict[str, int]) -> int:
    matches = [prefix for prefix in table if name.startswith(prefix + ".")]
    return table[max(matches, key=len)]


def _trainable(module: nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


# Exercise 2.1 · create_backbone ---------------------------------------------------------------------------
@exercise("2.1")
def test_create_backbone_channels_strides_and_shapes_for_two_models(impl):
    # ConvNeXt's level 0 already has stride 4: the ResNet rule "level k has stride 2^(k+1)" does not hold there
    cases = (("resnet18", (2, 3, 4)), ("efficientnet_b0", (1, 2, 3, 4)), ("convnext_atto", (0, 1, 2)))
    for name, out_indices in cases:
        model, channels, strides = impl.create_backbone(name, out_indices)
        reference = Backbone(name, out_indices=out_indices)
        levels = len(model.feature_info.channels()) if hasattr(model, "feature_info") else len(out_indices)
        expect(
            levels == len(out_indices),
            f"{name}: the model has {levels} feature levels for out_indices={out_indices}: pass out_indices to "
            "timm.create_model, or it returns every level",
        )
        expect(
            list(channels) == reference.channels,
            f"{name} {out_indices}: channels {list(channels)}, expected {reference.channels} "
            "(read them from model.feature_info.channels(), do not hard-code)",
        )
        expect(
            list(strides) == reference.strides,
            f"{name} {out_indices}: strides {list(strides)}, expected {reference.strides}: read them from the "
            "model (feature_info.reduction()); a rule that holds for ResNets need not hold for other backbones",
        )
        with torch.no_grad():
            maps = model(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
        expect(
            isinstance(maps, (list, tuple)) and len(maps) == len(out_indices),
            f"{name}: the model must return {len(out_indices)} maps (features_only=True, out_indices={out_indices})",
        )
        for level, (feature, c, s) in enumerate(
            zip(maps, reference.channels, reference.strides, strict=True)
        ):
            expected = (1, c, INPUT_SIZE // s, INPUT_SIZE // s)
            expect(
                tuple(feature.shape) == expected,
                f"{name} level {level}: map of shape {tuple(feature.shape)}, expected {expected}",
            )


@exercise("2.1")
def test_create_backbone_is_randomly_initialised_and_downloads_nothing(impl):
    model, _, _ = impl.create_backbone("resnet18", (3, 4))
    expect(
        not getattr(model, "pretrained_cfg", {}).get("file"),
        "use pretrained=False: nothing is downloaded in this course",
    )
    expect(
        hasattr(model, "feature_info"),
        "return the timm model created with features_only=True (it has feature_info)",
    )


# Exercise 2.2 · parameter_stages --------------------------------------------------------------------------
@exercise("2.2")
def test_parameter_stages_resnet18_by_hand(impl):
    model = Backbone("resnet18", out_indices=(2, 3, 4)).model
    stages = impl.parameter_stages(model)
    names = [name for name, _ in model.named_parameters()]
    expect(
        set(stages) == set(names),
        f"every parameter needs a stage: missing {sorted(set(names) - set(stages))[:3]}, "
        f"unexpected {sorted(set(stages) - set(names))[:3]}",
    )
    expect(
        stages["conv1.weight"] == 0 and stages["bn1.weight"] == 0,
        f"conv1/bn1 run before act1 (level 0's module): stage 0, got {stages['conv1.weight']}, "
        f"{stages['bn1.weight']}",
    )
    late = [name for name in names if stages[name] == _hand_stage(name, RESNET18_STAGES) + 1]
    expect(
        not late,
        f"resnet18: {late[:2]} were put one stage too late: stage k ends at the LAST module inside boundary k "
        "(the boundary module's own children belong to stage k; stage 0, the stem, ends inside level 0's module)",
    )
    for name in names:
        expected = _hand_stage(name, RESNET18_STAGES)
        expect(stages[name] == expected, f"resnet18: {name} belongs to stage {expected}, got {stages[name]}")


@exercise("2.2")
def test_parameter_stages_efficientnet_groups_blocks_between_levels(impl):
    model = Backbone("efficientnet_b0", out_indices=(2, 3, 4)).model
    stages = impl.parameter_stages(model)
    for name, _ in model.named_parameters():
        expected = _hand_stage(name, EFFICIENTNET_B0_STAGES)
        got = stages.get(name)
        if name.startswith("blocks.3.") and got == 4:
            expect(
                False, f"{name}: blocks.3 runs before blocks.4 (level 3's module), so it is stage 3, not 4"
            )
        expect(got == expected, f"efficientnet_b0: {name} belongs to stage {expected}, got {got}")


# Exercise 2.3 · FrozenStagesBackbone ----------------------------------------------------------------------
@exercise("2.3")
def test_frozen_stages_resnet18_exact_trainable_parameters(impl):
    for trainable_stages in (0, 1, 2, 4, 5, None):
        backbone = impl.FrozenStagesBackbone("resnet18", (2, 3, 4), trainable_stages)
        names = [name for name, _ in backbone.model.named_parameters()]
        if trainable_stages is None:
            expected = set(names)
        else:
            first = max(4 - trainable_stages + 1, 1)
            expected = {n for n in names if _hand_stage(n, RESNET18_STAGES) >= first}
        got = _trainable(backbone.model)
        expect(
            trainable_stages is None or "conv1.weight" not in got,
            f"resnet18, trainable_stages={trainable_stages}: the stem (stage 0) is trainable; it is frozen whenever "
            "anything is frozen, even when N reaches past the first stage",
        )
        expect(
            got == expected,
            f"resnet18, trainable_stages={trainable_stages}: {len(got)} trainable tensors, expected {len(expected)}; "
            f"wrongly trainable {sorted(got - expected)[:3]}, wrongly frozen {sorted(expected - got)[:3]}",
        )


@exercise("2.3")
def test_frozen_stages_efficientnet_agrees_with_the_package(impl):
    for trainable_stages in (1, 3):
        backbone = impl.FrozenStagesBackbone("efficientnet_b0", (2, 3, 4), trainable_stages)
        reference = Backbone("efficientnet_b0", out_indices=(2, 3, 4), freeze=trainable_stages)
        got, expected = _trainable(backbone.model), _trainable(reference.model)
        expect(
            got == expected,
            f"efficientnet_b0, trainable_stages={trainable_stages}: wrongly trainable {sorted(got - expected)[:3]}, "
            f"wrongly frozen {sorted(expected - got)[:3]}",
        )


@exercise("2.3")
def test_frozen_batchnorm_keeps_running_stats_in_train_mode(impl):
    torch.manual_seed(0)
    backbone = impl.FrozenStagesBackbone("resnet18", (2, 3, 4), 1)
    backbone.train()
    model = backbone.model
    frozen_bn, trainable_bn = model.layer1[0].bn1, model.layer4[0].bn1
    before_frozen = frozen_bn.running_mean.clone(), frozen_bn.running_var.clone()
    before_trainable = trainable_bn.running_mean.clone()
    with torch.no_grad():
        backbone(torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE))
    expect(
        torch.equal(frozen_bn.running_mean, before_frozen[0])
        and torch.equal(frozen_bn.running_var, before_frozen[1]),
        "layer1 is frozen but its BatchNorm running statistics changed after a forward pass in train mode: "
        "requires_grad=False does not protect buffers; keep frozen BatchNorm in eval mode, also after .train()",
    )
    expect(
        not torch.equal(trainable_bn.running_mean, before_trainable),
        "layer4 is trainable, but its BatchNorm did not update its running mean in train mode: "
        "only the frozen stages' BatchNorm layers go to eval mode",
    )
    expect(backbone.training, "the backbone itself must report training=True after .train()")
    backbone.eval()
    expect(not model.layer4[0].bn1.training, ".eval() must put every module in eval mode")


@exercise("2.3")
def test_fully_frozen_backbone_computes_the_same_in_train_and_eval_mode(impl):
    """Frozen BatchNorm must normalise with its running statistics, not only stop updating them."""
    torch.manual_seed(0)
    backbone = impl.FrozenStagesBackbone("resnet18", (2, 3, 4), 0)
    images = torch.randn(2, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        in_eval = backbone.eval()(images)
        in_train = backbone.train()(images)
    worst = max((a - b).abs().max().item() for a, b in zip(in_train, in_eval, strict=True))
    expect(
        worst < 1e-5,
        f"with every stage frozen, the output in train mode differs from eval mode by up to {worst:.3g}: the frozen "
        "BatchNorm layers still normalise with the batch's statistics — keeping their running statistics fixed "
        "(momentum 0, requires_grad=False) is not enough; put them in eval mode",
    )


# Exercise 2.4 · parameters_per_stage ----------------------------------------------------------------------
@exercise("2.4")
def test_parameters_per_stage_resnet18(impl):
    backbone = Backbone("resnet18", out_indices=(2, 3, 4), freeze=2)
    model = backbone.model
    stages = {name: _hand_stage(name, RESNET18_STAGES) for name, _ in model.named_parameters()}
    total, trainable = impl.parameters_per_stage(model, stages)
    expected_total = [0] * 5
    for prefix, stage in RESNET18_STAGES.items():
        expected_total[stage] += sum(
            p.numel() for n, p in model.named_parameters() if n.startswith(prefix + ".")
        )
    expected_trainable = [0, 0, 0, expected_total[3], expected_total[4]]
    got_total = torch.tensor([int(t) for t in total])
    if len(total) == 5 and got_total.tolist() == [sum(1 for n in stages if stages[n] == k) for k in range(5)]:
        expect(False, "count elements (p.numel()), not parameter tensors")
    expect_close(got_total, torch.tensor(expected_total), "total parameters per stage")
    expect_close(
        torch.tensor([int(t) for t in trainable]),
        torch.tensor(expected_trainable),
        "trainable parameters per stage (resnet18 with the last 2 stages trainable)",
        hint="count only parameters with requires_grad=True",
    )
    expect(
        sum(total) == sum(p.numel() for p in model.parameters()), "the stages must add up to all parameters"
    )
