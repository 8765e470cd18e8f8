"""Augmentations keep boxes exact: inside the image, clipped at the border, small leftovers dropped and counted,
identity parameters and double flips change nothing, mosaic places each tile's boxes on its pixels."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.data import Dataset

from detector.data.augment import (
    AugmentedDataset,
    AugmentSettings,
    draw_batch_size,
    hflip,
    mosaic,
    random_affine,
    rescale_batch,
    sanitize_boxes,
)
from detector.data.transforms import PAD_VALUE

SIZE = 64


class Squares(Dataset):
    """Images of ``height × width`` with one filled square each (value 200 on 0): its box is where its pixels are."""

    def __init__(self, count: int = 6, height: int = 48, width: int = 80) -> None:
        self.count, self.height, self.width = count, height, width

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        image = torch.zeros(3, self.height, self.width, dtype=torch.uint8)
        x0, y0 = 4 + 5 * index, 6 + 2 * index
        image[:, y0 : y0 + 16, x0 : x0 + 16] = 200
        target = {
            "boxes": torch.tensor([[x0, y0, x0 + 16.0, y0 + 16.0]]),
            "labels": torch.tensor([index % 3]),
            "iscrowd": torch.tensor([0]),
            "image_id": index,
        }
        return image, target


def _bright_box(image: torch.Tensor) -> torch.Tensor:
    """The box ``[x0, y0, x1, y1]`` around the pixels brighter than the padding (the squares)."""
    ys, xs = torch.nonzero(image[0] > PAD_VALUE + 20, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def test_sanitize_clips_at_the_border_and_drops_small_leftovers():
    boxes = torch.tensor([[-10.0, 5, 20, 25], [60, 60, 70, 70], [10, 10, 11, 30], [30, 30, 40, 40]])
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    clipped, keep = sanitize_boxes(boxes, area, (64, 64), min_side=2.0, min_visible=0.1)
    assert clipped[0].tolist() == [0, 5, 20, 25]  # cut by the left border: clipped
    assert clipped[1].tolist() == [60, 60, 64, 64]  # 4 × 4 of 10 × 10 visible: 16% of its area
    assert keep.tolist() == [True, True, False, True]  # the 1-px-wide box is dropped


def test_sanitize_thresholds_on_side_and_visible_area():
    boxes = torch.tensor([[60.0, 10, 100, 20], [62.5, 10, 72.5, 20], [0, 0, 1.5, 30]])
    area = (boxes[:, 2:] - boxes[:, :2]).prod(1)
    clipped, keep = sanitize_boxes(boxes, area, (64, 64), min_side=2.0, min_visible=0.1)
    # 1: 4 of 40 px wide left (10% of its area): kept; 2: 1.5 px wide: dropped; 3: 1.5 px wide: dropped
    assert keep.tolist() == [True, False, False]
    assert clipped[0].tolist() == [60, 10, 64, 20]
    assert (clipped[:, [0, 2]] <= 64).all() and (clipped >= 0).all()


def test_affine_with_identity_parameters_changes_nothing():
    image, target = Squares()[2]
    canvas = torch.full((3, SIZE, SIZE), PAD_VALUE, dtype=torch.uint8)
    canvas[:, :48, :64] = image[:, :, :64]
    out, boxes = random_affine(canvas, target["boxes"], SIZE, 0.0, 0.0, 0.0, random.Random(0))
    assert torch.equal(out, canvas)
    assert torch.allclose(boxes, target["boxes"])


def test_flip_twice_is_the_identity_and_once_mirrors_the_pixels_and_boxes():
    image, target = Squares(height=SIZE, width=SIZE)[1]
    once_image, once_boxes = hflip(image, target["boxes"])
    assert torch.allclose(once_boxes[0], torch.tensor([SIZE - 25.0, 8, SIZE - 9.0, 24]))
    assert torch.equal(_bright_box(once_image), once_boxes[0])
    twice_image, twice_boxes = hflip(once_image, once_boxes)
    assert torch.equal(twice_image, image) and torch.allclose(twice_boxes, target["boxes"])


def test_affine_scale_and_translation_move_the_box_with_its_pixels():
    image = torch.full((3, SIZE, SIZE), 0, dtype=torch.uint8)
    image[:, 20:36, 24:40] = 250
    box = torch.tensor([[24.0, 20, 40, 36]])
    out, boxes = random_affine(image, box, SIZE, 0.3, 0.1, 0.0, random.Random(3))
    ys, xs = torch.nonzero(out[0] > 200, as_tuple=True)
    pixel_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
    assert torch.allclose(boxes[0], pixel_box, atol=1.5)


def test_mosaic_puts_every_tiles_box_on_its_pixels():
    data = Squares()
    canvas, target = mosaic([data[i] for i in range(4)], SIZE, random.Random(5))
    assert canvas.shape == (3, 2 * SIZE, 2 * SIZE) and canvas.dtype == torch.uint8
    assert target["boxes"].shape == (4, 4) and target["labels"].tolist() == [0, 1, 2, 0]
    for box in target["boxes"]:
        x0, y0, x1, y1 = box.round().int().tolist()
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, 2 * SIZE), min(y1, 2 * SIZE)
        if x1 - x0 >= 4 and y1 - y0 >= 4:  # the visible part of the square is bright
            assert canvas[0, y0 + 1 : y1 - 1, x0 + 1 : x1 - 1].float().mean() > 150


@pytest.mark.parametrize("seed", range(8))
def test_augmented_samples_have_boxes_inside_the_image_and_count_the_dropped(seed):
    settings = AugmentSettings(
        image_size=SIZE,
        mosaic=1.0,
        mixup=0.5,
        scale=0.5,
        translate=0.2,
        degrees=10.0,
        hflip=0.5,
        color_jitter=0.3,
    )
    dataset = AugmentedDataset(Squares(), settings)
    random.seed(seed)
    torch.manual_seed(seed)
    image, target = dataset[seed % len(dataset)]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
    boxes = target["boxes"]
    assert ((boxes >= 0) & (boxes <= SIZE)).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= settings.min_side).all()
    assert len(target["labels"]) == len(boxes) == len(target["iscrowd"]) == len(target["area"])
    assert target["dropped_boxes"] >= 0
    assert len(boxes) + target["dropped_boxes"] in (4, 8)  # four tiles, twice with mixup


def test_close_mosaic_turns_mosaic_off_for_the_last_epochs():
    dataset = AugmentedDataset(Squares(), AugmentSettings(image_size=SIZE, mosaic=1.0, close_mosaic=2))
    dataset.set_epoch(7, epochs=10)
    assert dataset.mosaic_on
    dataset.set_epoch(8, epochs=10)
    assert not dataset.mosaic_on
    random.seed(0)
    _, target = dataset[0]
    assert len(target["boxes"]) + target["dropped_boxes"] == 1  # one image, no mosaic


def test_without_augmentation_a_sample_is_the_letterboxed_image():
    dataset = AugmentedDataset(Squares(), AugmentSettings(image_size=SIZE, hflip=0.0, color_jitter=0.0))
    image, target = dataset[1]
    # 48 × 80 → 38 × 64 (x · 64/80, y · 38/48, the resized image's exact ratios), 13 rows of padding above:
    # the square (9, 8)-(25, 24) lands at (7.2, 8·38/48 + 13)-(20, 24·38/48 + 13) = (7.2, 19.33)-(20, 32)
    assert torch.allclose(target["boxes"], torch.tensor([[7.2, 8 * 38 / 48 + 13, 20.0, 32.0]]), atol=1e-4)
    assert image[0, 0, 0] == PAD_VALUE and target["dropped_boxes"] == 0


def test_multiscale_sizes_are_stride_multiples_in_range_and_boxes_scale_with_the_batch():
    rng = random.Random(0)
    sizes = {draw_batch_size(320, 0.25, 32, rng) for _ in range(200)}
    assert sizes == set(range(224, 416 + 1, 32))
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    targets = [{"boxes": torch.tensor([[8.0, 8, 32, 40]])}, {"boxes": torch.zeros(0, 4)}]
    resized, scaled = rescale_batch(images, targets, 96)
    assert resized.shape == (2, 3, 96, 96) and resized.dtype == torch.uint8
    assert torch.allclose(scaled[0]["boxes"], torch.tensor([[12.0, 12, 48, 60]]))
    assert scaled[1]["boxes"].shape == (0, 4)


@pytest.mark.slow
def test_the_config_keys_select_the_pipeline_and_the_runner_closes_mosaic_and_varies_the_batch_size(
    tmp_path, monkeypatch
):
    from detector import engine
    from detector.config import load_config
    from detector.data import CocoDetection, generate_arena
    from detector.engine import Runner
    from detector.loaders import build_dataset

    root = generate_arena(tmp_path / "arena", n_train=8, n_valid=4, n_test=2, image_size=96, seed=0)
    base = [f"data.root={root}", "data.arena=null", "data.image_size=64", "data.batch_size=2", "data.workers=0",
            "model.neck_width=16", "model.head_convs=1", "train.epochs=3", "train.warmup_steps=2",
            "train.max_minutes=null", "train.device=cpu", f"train.out_dir={tmp_path / 'runs'}"]  # fmt: skip
    plain = load_config("arena_cpu", base)
    assert isinstance(build_dataset(plain.data, "train", train=True), CocoDetection)
    config = load_config(
        "arena_cpu",
        [*base, "data.mosaic=1.0", "data.scale=0.3", "data.close_mosaic=1", "data.multiscale=0.5"],
    )
    runner = Runner(config)
    assert isinstance(runner.train_set, AugmentedDataset)
    sizes, mosaic_by_epoch = [], []
    original = engine.rescale_batch

    def recording(images, targets, size):
        sizes.append(size)
        mosaic_by_epoch.append((runner.epoch, runner.train_set.mosaic_on))
        return original(images, targets, size)

    monkeypatch.setattr(engine, "rescale_batch", recording)
    runner.fit()
    assert len(sizes) == 12 and all(size % 16 == 0 and 32 <= size <= 96 for size in sizes)  # strides 4/8/16
    assert len(set(sizes)) > 1
    assert {epoch: on for epoch, on in mosaic_by_epoch} == {0: True, 1: True, 2: False}
