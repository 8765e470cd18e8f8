"""Tests of Chapter 3's exercise tests: plausible wrong solutions must be caught with a diagnosis naming them."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "03_neck"
MERGE = """merged = [laterals[-1]]  # M_5 = L_5: the coarsest level has nothing above it
        for lateral in reversed(laterals[:-1]):  # L_4, then L_3
            merged.insert(0, upsample_add(merged[0], lateral))  # M_l = L_l + up(M_{l+1})"""
LATERALS_ONLY = """merged = [
            upsample_add(above, lateral) for lateral, above in zip(laterals[:-1], laterals[1:], strict=True)
        ] + [laterals[-1]]"""

# (exercise, mistake in words, diagnosis regex, {definition: wrong version})
MISTAKES = [
    # 3.1 upsample_add
    ("3.1", "bilinear upsampling", r"bilinear upsampling: FPN uses mode='nearest'",
     {"upsample_add": edit('mode="nearest"', 'mode="bilinear"')}),
    ("3.1", "upsampled by a factor of 2", r"not by scale_factor=2",
     {"upsample_add": edit("size=lateral.shape[-2:]", "scale_factor=2")}),
    ("3.1", "lateral map not added", r"the lateral map is missing",
     {"upsample_add": edit("return lateral + F.interpolate", "return F.interpolate")}),
    # 3.2 TopDown
    ("3.2", "each level adds the lateral above, not the merged map", r"instead of the merged map M4",
     {"TopDown": edit(MERGE, LATERALS_ONLY)}),
    ("3.2", "3×3 lateral convs", r"parameter shapes differ.*lateral\.0\.0\.weight \(8, 12, 3, 3\) vs \(8, 12, 1, 1\)",
     {"TopDown": edit("ConvBnAct(c, width, kernel_size=1)", "ConvBnAct(c, width, kernel_size=3)")}),
    ("3.2", "outputs returned coarse to fine", r"fine to coarse \(these come back coarse to fine\)",
     {"TopDown": edit("for conv, m in zip(self.fpn_out, merged, strict=True)]",
                      "for conv, m in zip(self.fpn_out, merged, strict=True)][::-1]")}),
    # 3.3 BottomUp
    ("3.3", "downsamples the FPN map instead of the previous output", r"down\(F4\), the FPN map, instead of down\(N4\)",
     {"BottomUp": edit("self.downsample[level - 1](\n                outputs[-1]\n            )",
                       "self.downsample[level - 1](features[level - 1])")}),
    ("3.3", "no output conv after the addition", r"N_l = pan_out\[l-1\]\(F_l \+ downsample",
     {"BottomUp": edit("outputs.append(self.pan_out[level - 1](features[level] + down))",
                       "outputs.append(features[level] + down)")}),
    # 3.4 Neck
    ("3.4", "paths chained in the wrong order", r"the top-down path comes first",
     {"Neck": edit("return self.bottom_up(self.top_down(features))", "return self.top_down(self.bottom_up(features))")}),
    ("3.4", "bottom-up path left out", r"the bottom-up path is missing",
     {"Neck": edit("return self.bottom_up(self.top_down(features))", "return self.top_down(features)")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exercise_id", "mistake", "diagnosis", "wrong"), MISTAKES, ids=[m[1] for m in MISTAKES]
)
def test_mistake_is_caught_with_its_diagnosis(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
