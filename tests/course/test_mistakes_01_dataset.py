"""Tests of Chapter 1's exercise tests: plausible wrong solutions must be caught with a diagnosis naming them."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "01_dataset"

# (exercise, mistake in words, diagnosis regex, {definition: wrong version})
MISTAKES = [
    # 1.1 xywh_to_xyxy
    ("1.1", "(x, y) read as the box centre", r"top-left corner",
     {"xywh_to_xyxy": edit("torch.stack((x, y, x + w, y + h), dim=-1)",
                           "torch.stack((x - w / 2, y - h / 2, x + w / 2, y + h / 2), dim=-1)")}),
    ("1.1", "indexes axis 1 instead of the last axis", r"works on \[K, 4\] only",
     {"xywh_to_xyxy": edit("x, y, w, h = boxes_xywh.unbind(-1)\n    return torch.stack((x, y, x + w, y + h), dim=-1)",
                           "return torch.cat((boxes_xywh[:, :2], boxes_xywh[:, :2] + boxes_xywh[:, 2:]), dim=1)")}),
    ("1.1", "size returned unchanged", r"unchanged",
     {"xywh_to_xyxy": edit("torch.stack((x, y, x + w, y + h), dim=-1)", "torch.stack((x, y, w, h), dim=-1)")}),
    # 1.2 contiguous_labels
    ("1.2", "placeholder kept", r"placeholder 'pieces'.*must be dropped",
     {"contiguous_labels": edit("        ordered = others\n", "        pass\n")}),
    ("1.2", "categories numbered in file order, not id order", r"category-id order",
     {"contiguous_labels": edit('sorted(categories, key=lambda c: c["id"])', "list(categories)")}),
    ("1.2", "first category always dropped", r"no category is the supercategory of the others",
     {"contiguous_labels": edit('if others and all(c.get("supercategory") == first["name"] for c in others):',
                                "if others:")}),
    ("1.2", "the placeholder taken to be category id 0", r"not by its id",
     {"contiguous_labels": edit('if others and all(c.get("supercategory") == first["name"] for c in others):',
                                'if first["id"] == 0:')}),
    # 1.3 letterbox
    ("1.3", "odd padding rounded up", r"rounded up.*floor division",
     {"letterbox": edit("(size - new_w) // 2, (size - new_h) // 2", "(size - new_w + 1) // 2, (size - new_h + 1) // 2")}),
    ("1.3", "boxes scaled by the single scale", r"exact per-axis factors",
     {"letterbox": edit("boxes.new_tensor([new_w / width, new_h / height, new_w / width, new_h / height])",
                        "boxes.new_tensor([scale] * 4)")}),
    ("1.3", "image pasted at the top-left corner", r"pad \(left, top\) should be \(0, 16\)",
     {"letterbox": edit("left, top = (size - new_w) // 2, (size - new_h) // 2", "left, top = 0, 0")}),
    # 1.4 unletterbox_boxes
    ("1.4", "divided by scale", r"divided by scale instead of the exact per-axis factors",
     {"unletterbox_boxes": edit("/ factor", "/ scale")}),
    ("1.4", "divided before removing the padding", r"divided before subtracting the padding",
     {"unletterbox_boxes": edit("(boxes - boxes.new_tensor([pad[0], pad[1]] * 2)) / factor",
                                "boxes / factor - boxes.new_tensor([pad[0], pad[1]] * 2)")}),
    ("1.4", "no clipping", r"clip x to \[0, W\]",
     {"unletterbox_boxes": edit("return torch.minimum(mapped.clamp(min=0), boxes.new_tensor([width, height, width, height]))",
                                "return mapped")}),
    # 1.5 collate
    ("1.5", "torch.cat instead of torch.stack", r"torch\.cat joins",
     {"collate": edit("torch.stack(images)", "torch.cat(images)")}),
    ("1.5", "targets returned as the tuple zip gives", r"a list with one dict per image",
     {"collate": edit("list(targets)", "targets")}),
    # 1.6 RoboflowSplit
    ("1.6", "labels are the raw category ids", r"category ids 1, 3 → labels 0, 1",
     {"RoboflowSplit": edit('self.id_to_label[a["category_id"]]', 'a["category_id"]')}),
    ("1.6", "boxes left as xywh", r"still COCO \[x, y, w, h\]",
     {"RoboflowSplit": edit('"boxes": xywh_to_xyxy(boxes_xywh)', '"boxes": boxes_xywh')}),
    ("1.6", "an image without boxes gives shape [0]", r"no annotations.*\[0, 4\]",
     {"RoboflowSplit": edit(".reshape(-1, 4)", "")}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exercise_id", "mistake", "diagnosis", "wrong"), MISTAKES, ids=[m[1] for m in MISTAKES]
)
def test_mistake_is_caught_with_its_diagnosis(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
