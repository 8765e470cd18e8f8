"""Letterbox / flip / jitter transforms, the inverse box mapping, collate, pad_targets and the data loader."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from detector.data import (
    build_dataloader,
    collate,
    eval_transforms,
    pad_targets,
    train_transforms,
    unletterbox_boxes,
)
from detector.data.transforms import PAD_VALUE

SIZE = 64


def sample(height: int, width: int, boxes: list[list[float]], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.arange(len(boxes)),
    }
    return image, target


@pytest.mark.parametrize(("height", "width"), [(30, 40), (100, 37), (64, 64), (48, 20), (200, 300)])
def test_letterbox_hand_computed_and_inverse(height, width):
    boxes = [
        [0.0, 0.0, width, height],
        [1.5, 2.0, width / 2, height / 3],
        [width - 3.0, height - 4.0, width, height],
    ]
    image, target = sample(height, width, boxes)
    out, out_target = eval_transforms(SIZE)(image, target)
    assert out.dtype == torch.uint8 and out.shape == (3, SIZE, SIZE) and type(out) is torch.Tensor
    box = out_target["letterbox"]
    scale, (left, top) = box["scale"], box["pad"]
    assert box["orig_size"] == (height, width) and scale == pytest.approx(SIZE / max(height, width))
    new_w, new_h = round(width * scale), round(height * scale)
    assert (left, top) == ((SIZE - new_w) // 2, (SIZE - new_h) // 2)
    # hand-computed forward map: each axis by its resized/original ratio, then the padding offset
    ratio = torch.tensor([new_w / width, new_h / height] * 2)
    expected = target["boxes"] * ratio + torch.tensor([left, top] * 2)
    torch.testing.assert_close(out_target["boxes"], expected)
    torch.testing.assert_close(unletterbox_boxes(out_target["boxes"], **box), target["boxes"])
    # padding is grey 114, the image region is not all padding
    if left > 0:
        assert (out[:, :, : int(left)] == PAD_VALUE).all()
    if top > 0:
        assert (out[:, : int(top)] == PAD_VALUE).all()
    assert out_target["labels"].tolist() == [0, 1, 2]


def test_unletterbox_clips_to_the_image():
    boxes = torch.tensor([[-10.0, -10.0, 70.0, 70.0]])  # beyond the padding on every side
    mapped = unletterbox_boxes(boxes, scale=64 / 40, pad=(0.0, 8.0), orig_size=(30, 40))
    torch.testing.assert_close(mapped, torch.tensor([[0.0, 0.0, 40.0, 30.0]]))


def test_flip_mirrors_boxes_and_image():
    image, target = sample(30, 40, [[2.0, 3.0, 12.0, 20.0], [30.0, 0.0, 40.0, 30.0]])
    plain, plain_target = eval_transforms(SIZE)(image, target)
    flipped, flipped_target = train_transforms(SIZE, hflip=1.0, color_jitter=0.0)(image, target)
    assert torch.equal(flipped, plain.flip(-1))
    x1, y1, x2, y2 = plain_target["boxes"].unbind(-1)
    torch.testing.assert_close(flipped_target["boxes"], torch.stack([SIZE - x2, y1, SIZE - x1, y2], -1))
    assert "letterbox" not in flipped_target


def test_colour_jitter_keeps_geometry_and_dtype():
    image, target = sample(50, 30, [[2.0, 3.0, 12.0, 20.0]])
    torch.manual_seed(0)
    out, out_target = train_transforms(SIZE, hflip=0.0, color_jitter=0.4)(image, target)
    plain, plain_target = eval_transforms(SIZE)(image, target)
    assert out.dtype == torch.uint8 and out.shape == plain.shape and not torch.equal(out, plain)
    torch.testing.assert_close(out_target["boxes"], plain_target["boxes"])


def test_no_boxes():
    image, target = sample(30, 40, [])
    for transform in (train_transforms(SIZE), eval_transforms(SIZE)):
        out, out_target = transform(image, target)
        assert out.shape == (3, SIZE, SIZE) and out_target["boxes"].shape == (0, 4)


def test_collate_and_pad_targets():
    batch = [
        eval_transforms(SIZE)(*sample(30, 40, boxes))
        for boxes in ([[1, 1, 5, 5], [2, 2, 8, 9]], [], [[3, 3, 6, 6]])
    ]
    images, targets = collate(batch)
    assert images.shape == (3, 3, SIZE, SIZE) and images.dtype == torch.uint8 and len(targets) == 3
    gt_labels, gt_boxes, gt_mask = pad_targets(targets)
    assert gt_labels.shape == (3, 2) and gt_boxes.shape == (3, 2, 4) and gt_mask.shape == (3, 2)
    assert gt_labels.dtype == torch.int64 and gt_boxes.dtype == torch.float32 and gt_mask.dtype == torch.bool
    assert gt_mask.tolist() == [[True, True], [False, False], [True, False]]
    torch.testing.assert_close(gt_boxes[0], targets[0]["boxes"])
    torch.testing.assert_close(gt_boxes[2, :1], targets[2]["boxes"])
    assert (gt_boxes[~gt_mask] == 0).all() and (gt_labels[~gt_mask] == 0).all()


def test_pad_targets_without_any_box():
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    gt_labels, gt_boxes, gt_mask = pad_targets([empty, empty], device="cpu")
    assert gt_labels.shape == (2, 0) and gt_boxes.shape == (2, 0, 4) and gt_mask.shape == (2, 0)
    assert pad_targets([])[1].shape == (0, 0, 4)


def test_collate_rejects_mixed_sizes():
    with pytest.raises(ValueError, match="different shapes"):
        collate([sample(30, 40, []), sample(40, 30, [])])


class Tiny(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int):
        image, target = sample(8, 8, [[0, 0, 4, 4]] * (index % 3), seed=index)
        return image, {**target, "image_id": index}


def test_build_dataloader_is_seeded():
    def order(seed: int) -> list[int]:
        loader = build_dataloader(Tiny(), batch_size=4, shuffle=True, seed=seed)
        return [t["image_id"] for _, targets in loader for t in targets]

    assert order(3) == order(3) and sorted(order(3)) == list(range(10))
    assert order(3) != order(4)
    images, targets = next(iter(build_dataloader(Tiny(), batch_size=4)))
    assert images.shape == (4, 3, 8, 8) and [t["image_id"] for t in targets] == [0, 1, 2, 3]
