"""Tests of Chapter 4's exercise tests: plausible wrong solutions must be caught with a diagnosis naming them."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "04_heads"
PRIOR = "return -math.log((1.0 - prior_prob) / prior_prob)"
FLATTEN = "m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1])"
INIT = "        for conv in (self.cls_pred, self.box_pred, self.obj_pred):\n            nn.init.normal_(conv.weight, std=PRED_INIT_STD)\n"

# (exercise, mistake in words, diagnosis regex, {definition: wrong version})
MISTAKES = [
    # 4.1 prior_bias
    ("4.1", "sign flipped", r"the sign is flipped", {"prior_bias": edit(PRIOR, "return math.log((1.0 - prior_prob) / prior_prob)")}),
    ("4.1", "log of the prior instead of its logit", r"log-probability, not the logit",
     {"prior_bias": edit(PRIOR, "return math.log(prior_prob)")}),
    # 4.2 flatten_levels
    ("4.2", "reshape straight from [B, K, H, W]", r"channels and positions get mixed",
     {"flatten_levels": edit(FLATTEN, "m.reshape(m.shape[0], -1, m.shape[1])")}),
    ("4.2", "height and width swapped before flattening", r"column by column",
     {"flatten_levels": edit("m.permute(0, 2, 3, 1)", "m.permute(0, 3, 2, 1)")}),
    # 4.3 SharedTower
    ("4.3", "one set of convs per level", r"the convs are shared by the levels",
     {"SharedTower": edit("for _ in range(num_convs)\n        )\n        self.norms",
                          "for _ in range(num_convs * num_levels)\n        )\n        self.norms")}),
    ("4.3", "one BatchNorm shared by all levels", r"BatchNorm is NOT shared",
     {"SharedTower": edit("nn.ModuleList(nn.BatchNorm2d(width) for _ in range(num_convs)) for _ in range(num_levels)",
                          "[nn.ModuleList(nn.BatchNorm2d(width) for _ in range(num_convs))] * num_levels")}),
    # 4.4 Head
    ("4.4", "prediction layers left at their default initialisation", r"left at PyTorch's default initialisation",
     {"Head": edit(INIT, "")}),
    ("4.4", "objectness on the classification tower", r"obj_logits come from the classification tower",
     {"Head": edit("self.obj_pred(reg_features)", "self.obj_pred(cls_features)")}),
    ("4.4", "box distances left in stride units", r"multiply by strides\[l\] to get pixels",
     {"Head": edit("F.softplus(raw) * self.strides[level]", "F.softplus(raw)")}),
    ("4.4", "exp instead of softplus (FCOS)", r"made positive with exp",
     {"Head": edit("F.softplus(raw)", "torch.exp(raw)")}),
    ("4.4", "box bias at the prior too", r"box_pred's bias must start at 0",
     {"Head": edit("nn.init.zeros_(self.box_pred.bias)", "nn.init.constant_(self.box_pred.bias, prior_bias(prior_prob))")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exercise_id", "mistake", "diagnosis", "wrong"), MISTAKES, ids=[m[1] for m in MISTAKES]
)
def test_mistake_is_caught_with_its_diagnosis(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
