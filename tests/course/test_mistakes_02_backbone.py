"""Tests of Chapter 2's exercise tests: plausible wrong solutions must be caught with a diagnosis naming them."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "02_backbone"
KEEP_EVAL = "for module in self.frozen_norms:\n            module.eval()"

# (exercise, mistake in words, diagnosis regex, {definition: wrong version})
MISTAKES = [
    # 2.1 create_backbone
    ("2.1", "out_indices not passed to timm", r"pass out_indices to timm\.create_model",
     {"create_backbone": edit(", out_indices=tuple(out_indices))", ")")}),
    ("2.1", "channels and strides hard-coded for resnet18", r"do not hard-code",
     {"create_backbone": edit("list(model.feature_info.channels()), list(model.feature_info.reduction())",
                              "[128, 256, 512], [8, 16, 32]")}),
    ("2.1", "channels and strides swapped", r"channels \[8, 16, 32\], expected \[128, 256, 512\]",
     {"create_backbone": edit("list(model.feature_info.channels()), list(model.feature_info.reduction())",
                              "list(model.feature_info.reduction()), list(model.feature_info.channels())")}),
    ("2.1", "strides from the ResNet rule 2^(k+1)", r"convnext_atto \(0, 1, 2\): strides \[2, 4, 8\], expected \[4, 8, 16\]",
     {"create_backbone": edit("list(model.feature_info.reduction())", "[2 ** (k + 1) for k in out_indices]")}),
    # 2.2 parameter_stages
    ("2.2", "a stage ends at the boundary module itself, not at its last child", r"one stage too late",
     {"parameter_stages": edit('max(i for i, name in enumerate(names) if name == b or name.startswith(b + "."))',
                               "names.index(b)")}),
    ("2.2", "stages counted from 1", r"conv1/bn1 run before act1.*stage 0, got 1",
     {"parameter_stages": edit("next((k for k, end in enumerate(ends) if position <= end), len(ends) - 1)",
                               "next((k + 1 for k, end in enumerate(ends) if position <= end), len(ends))")}),
    # 2.3 FrozenStagesBackbone
    ("2.3", "requires_grad=False only: BatchNorm back in train mode", r"running statistics changed",
     {"FrozenStagesBackbone": edit(KEEP_EVAL, "pass")}),
    ("2.3", "frozen BatchNorm with momentum 0, still normalising with batch statistics",
     r"still normalise with the batch's statistics",
     {"FrozenStagesBackbone": edit(KEEP_EVAL, "for module in self.frozen_norms:\n            module.momentum = 0.0")}),
    ("2.3", "stem trainable when N reaches past the first stage", r"the stem \(stage 0\) is trainable",
     {"FrozenStagesBackbone": edit("max(last_stage - trainable_stages + 1, 1)", "last_stage - trainable_stages + 1")}),
    # 2.4 parameters_per_stage
    ("2.4", "parameter tensors counted instead of elements", r"count elements",
     {"parameters_per_stage": (edit("total[stages[name]] += parameter.numel()", "total[stages[name]] += 1"),
                               edit("trainable[stages[name]] += parameter.numel()", "trainable[stages[name]] += 1"))}),
    ("2.4", "frozen parameters counted as trainable", r"count only parameters with requires_grad",
     {"parameters_per_stage": edit("if parameter.requires_grad:", "if True:")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exercise_id", "mistake", "diagnosis", "wrong"), MISTAKES, ids=[m[1] for m in MISTAKES]
)
def test_mistake_is_caught_with_its_diagnosis(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
