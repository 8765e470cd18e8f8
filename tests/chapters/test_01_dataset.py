"""Exercise tests of Chapter 1 (dataset). Run against your notebook with ``make check CH=1``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from PIL import Image
from torchvision.ops import box_convert

from course.checks import CheckFailure, exercise, expect, expect_close, expect_shape
from course.paths import SHARED_DATASETS_DIR
from detector.data import CocoDetection, eval_transforms, unletterbox_boxes
from detector.data.coco import category_mapping

CHAPTER = "01_dataset"


# Exercise 1.1 · xywh_to_xyxy ------------------------------------------------------------------------------
@exercise("1.1")
def test_xywh_to_xyxy_hand_computed(impl):
    boxes_xywh = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 1.0, 2.0]])
    got = impl.xywh_to_xyxy(boxes_xywh)
    expected = torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 1.0, 2.0]])
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        expect(not torch.equal(got, boxes_xywh), "the boxes came back unchanged: x2 = x + w, y2 = y + h")
        expect(
            not torch.allclose(got[:, 2:], boxes_xywh[:, 2:] / 2 + boxes_xywh[:, :2]),
            "x2 = x + w/2 treats (x, y) as the centre; COCO's (x, y) is the top-left corner",
        )
    expect_close(got, expected, "xyxy boxes", hint="COCO's [x, y, w, h] is the top-left corner plus the size")


@exercise("1.1")
def test_xywh_to_xyxy_matches_torchvision_with_batch_dims_and_empty(impl):
    boxes_xywh = torch.rand(2, 5, 4) * 100
    expected = box_convert(boxes_xywh.reshape(-1, 4), "xywh", "xyxy").reshape(2, 5, 4)
    fixed_axis = "works on [K, 4] only: index the last axis ([..., :2], unbind(-1)), not axis 1"
    try:
        got = impl.xywh_to_xyxy(boxes_xywh)
    except NotImplementedError:
        raise  # a stub stays a stub
    except (RuntimeError, IndexError, ValueError) as error:
        raise CheckFailure(
            f"boxes with leading shape [2, 5] raised {type(error).__name__}: {fixed_axis}"
        ) from None
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        expect(False, f"boxes with leading shape [2, 5] came back as {list(got.shape)}: {fixed_axis}")
    expect_close(got, expected, "boxes with leading shape [2, 5]")
    expect_shape(impl.xywh_to_xyxy(torch.zeros(0, 4)), (0, 4), "an image without boxes")


# Exercise 1.2 · contiguous_labels --------------------------------------------------------------------------
ROBOFLOW_CATEGORIES = [
    {"id": 0, "name": "pieces", "supercategory": "none"},
    {"id": 5, "name": "rook", "supercategory": "pieces"},
    {"id": 1, "name": "bishop", "supercategory": "pieces"},
    {"id": 2, "name": "king", "supercategory": "pieces"},
]


@exercise("1.2")
def test_contiguous_labels_drops_placeholder_and_sorts_by_id(impl):
    names, id_to_label = impl.contiguous_labels(ROBOFLOW_CATEGORIES)
    expect(
        "pieces" not in names, "the placeholder 'pieces' (supercategory of all the others) must be dropped"
    )
    expect(
        names == ["bishop", "king", "rook"],
        f"class names in category-id order: expected ['bishop', 'king', 'rook'], got {names}",
    )
    expect(id_to_label == {1: 0, 2: 1, 5: 2}, f"expected {{1: 0, 2: 1, 5: 2}}, got {id_to_label}")


@exercise("1.2")
def test_contiguous_labels_keeps_everything_without_placeholder(impl):
    categories = [
        {"id": 3, "name": "cat", "supercategory": "animal"},
        {"id": 7, "name": "dog", "supercategory": "animal"},
    ]
    names, id_to_label = impl.contiguous_labels(categories)
    expect(names == ["cat", "dog"], f"no category is the supercategory of the others: keep all; got {names}")
    expect(id_to_label == {3: 0, 7: 1}, f"expected {{3: 0, 7: 1}}, got {id_to_label}")


@exercise("1.2")
def test_contiguous_labels_finds_the_placeholder_by_its_role_not_its_id(impl):
    """Tools other than Roboflow number real classes from 0; a placeholder may sit at another lowest id."""
    from_zero = [
        {"id": 0, "name": "car", "supercategory": "vehicle"},
        {"id": 1, "name": "truck", "supercategory": "vehicle"},
        {"id": 2, "name": "person", "supercategory": "human"},
    ]
    names, _ = impl.contiguous_labels(from_zero)
    expect(
        names == ["car", "truck", "person"],
        "category 0 'car' is a real class here (it is not the supercategory of the others): keep it; a "
        f"placeholder is recognised by being every other category's supercategory, not by its id; got {names}",
    )
    shifted = [{**category, "id": category["id"] + 1} for category in ROBOFLOW_CATEGORIES]
    names, id_to_label = impl.contiguous_labels(shifted)
    expect(
        names == ["bishop", "king", "rook"] and id_to_label == {2: 0, 3: 1, 6: 2},
        "the placeholder 'pieces' has id 1 here (the lowest id, supercategory of all the others): drop it and "
        f"number the rest from 0; got {names}, {id_to_label}",
    )


@exercise("1.2")
def test_contiguous_labels_agree_with_the_package(impl):
    """On the synthetic categories and, when present, on the real chess export (13 classes)."""
    cases = [("synthetic", ROBOFLOW_CATEGORIES)]
    chess = SHARED_DATASETS_DIR / "chess-pieces" / "valid" / "_annotations.coco.json"
    if chess.exists():
        cases.append(("chess export", json.loads(chess.read_text())["categories"]))
    for what, categories in cases:
        names, id_to_label = impl.contiguous_labels(categories)
        expected_names, expected_map, _ = category_mapping(categories)
        expect(
            names == expected_names,
            f"{what}: expected {len(expected_names)} classes {expected_names}, got {names}",
        )
        expect(id_to_label == expected_map, f"{what}: expected {expected_map}, got {id_to_label}")


# Exercise 1.3 · letterbox ----------------------------------------------------------------------------------
def _wide_image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, 100, 200), dtype=torch.uint8, generator=generator)


@exercise("1.3")
def test_letterbox_hand_computed(impl):
    """200 × 100 → 64: scale 0.32, resized 64 × 32, top padding (64 - 32) // 2 = 16."""
    image = _wide_image()
    boxes = torch.tensor([[0.0, 0.0, 200.0, 100.0], [50.0, 25.0, 100.0, 75.0]])
    out, out_boxes, scale, pad = impl.letterbox(image, boxes, 64)
    expect_shape(out, (3, 64, 64), "letterboxed image")
    expect(out.dtype == torch.uint8, f"the image must stay uint8, got {out.dtype}")
    expect(abs(scale - 0.32) < 1e-9, f"scale = size / max(H, W) = 64 / 200 = 0.32, got {scale}")
    expect(
        tuple(pad) == (0, 16),
        f"pad (left, top) should be (0, 16) for a 64 × 32 resized image, got {tuple(pad)}",
    )
    expect(
        bool((out[:, :16] == 114).all() and (out[:, 48:] == 114).all()),
        "the padding must be grey 114, above and below",
    )
    expected = torch.tensor([[0.0, 16.0, 64.0, 48.0], [16.0, 24.0, 32.0, 40.0]])
    expect_close(
        out_boxes, expected, "letterboxed boxes", hint="x' = x · new_w / W + left, y' = y · new_h / H + top"
    )


@exercise("1.3")
def test_letterbox_matches_the_package_exact_factors(impl):
    """101 × 203 → 96: rounding makes the exact factors new_w / W and new_h / H differ from scale."""
    image = torch.randint(
        0, 256, (3, 101, 203), dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    boxes = torch.tensor([[3.0, 7.0, 190.0, 99.0], [100.5, 0.0, 203.0, 101.0]])
    out, out_boxes, scale, pad = impl.letterbox(image, boxes, 96)
    expected_image, target = eval_transforms(96)(image, {"boxes": boxes})
    expect_close(
        out_boxes,
        target["boxes"],
        "boxes against the package's letterbox",
        atol=1e-4,
        hint="use the exact per-axis factors round(W·scale) / W and round(H·scale) / H, and integer padding",
    )
    expect(
        tuple(pad) == tuple(int(p) for p in target["letterbox"]["pad"]),
        f"pad {tuple(pad)} != {target['letterbox']['pad']}",
    )
    diff = (out.int() - expected_image.int()).abs().max().item()
    expect(
        diff <= 1, f"pixels differ from the package's letterbox by up to {diff} (resize with antialias=True)"
    )


@exercise("1.3")
def test_letterbox_odd_padding_rounds_down(impl):
    """100 × 203 → 96: resized 47 × 96, top padding (96 - 47) // 2 = 24, and 25 rows of grey below."""
    image = torch.full((3, 100, 203), 7, dtype=torch.uint8)
    boxes = torch.tensor([[0.0, 0.0, 203.0, 100.0]])
    out, out_boxes, scale, pad = impl.letterbox(image, boxes, 96)
    expect(
        tuple(pad) != (0, 25),
        "pad (left, top) is (0, 25), expected (0, 24): (96 - 47) / 2 = 24.5 was rounded up; round the padding "
        "down with floor division, (size - new_h) // 2, so the odd pixel of grey goes to the bottom",
    )
    expect(
        tuple(pad) == (0, 24),
        f"pad (left, top) should be (0, 24) for a 96 × 47 resized image, got {tuple(pad)}",
    )
    expect(
        bool((out[:, 23] == 114).all() and (out[:, 24] != 114).all() and (out[:, 71:] == 114).all()),
        "rows 0–23 and 71–95 must be grey 114 and the image must fill rows 24–70",
    )
    expect_close(out_boxes, torch.tensor([[0.0, 24.0, 96.0, 71.0]]), "the whole-image box, letterboxed")


# Exercise 1.4 · unletterbox_boxes --------------------------------------------------------------------------
@exercise("1.4")
def test_unletterbox_inverts_letterbox(impl):
    orig_size = (101, 203)
    boxes = torch.tensor([[3.0, 7.0, 190.0, 99.0], [100.5, 0.0, 203.0, 101.0], [0.0, 0.0, 1.0, 1.0]])
    _, target = eval_transforms(96)(torch.zeros(3, *orig_size, dtype=torch.uint8), {"boxes": boxes})
    info = target["letterbox"]
    back = impl.unletterbox_boxes(target["boxes"], info["scale"], info["pad"], orig_size)
    pad = torch.tensor([*info["pad"], *info["pad"]], dtype=torch.float32)
    factors = torch.tensor([96 / 203, 48 / 101] * 2)  # round(W·scale) / W, round(H·scale) / H
    slips = {
        "divided by scale instead of the exact per-axis factors round(W·scale) / W, round(H·scale) / H": (
            target["boxes"] - pad
        )
        / info["scale"],
        "divided before subtracting the padding: remove (left, top) first, then divide": target["boxes"]
        / factors
        - pad,
    }
    for slip, wrong in slips.items():
        if isinstance(back, torch.Tensor) and back.shape == wrong.shape:
            clipped = torch.minimum(wrong.clamp(min=0), torch.tensor([203.0, 101.0, 203.0, 101.0]))
            expect(not torch.allclose(back, clipped, atol=1e-3), f"boxes mapped back: {slip}")
    expect_close(
        back,
        boxes,
        "boxes mapped back to the original image",
        atol=1e-3,
        hint="subtract (left, top) first, then divide by the exact factors round(W·scale)/W, round(H·scale)/H",
    )


@exercise("1.4")
def test_unletterbox_clips_to_the_original_image(impl):
    orig_size, scale, pad = (100, 200), 0.32, (0, 16)
    in_padding = torch.tensor([[-5.0, 0.0, 70.0, 64.0]])  # reaches into the left border and the grey padding
    got = impl.unletterbox_boxes(in_padding, scale, pad, orig_size)
    expected = unletterbox_boxes(in_padding, scale, pad, orig_size)
    expect_close(
        got, expected, "a box reaching into the padding", atol=1e-4, hint="clip x to [0, W] and y to [0, H]"
    )


# Exercise 1.5 · collate ------------------------------------------------------------------------------------
@exercise("1.5")
def test_collate_stacks_images_and_keeps_targets(impl):
    targets = [
        {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "labels": torch.tensor([2]), "image_id": 7},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 8},
    ]
    images = [torch.full((3, 8, 8), i, dtype=torch.uint8) for i in range(2)]
    got_images, got_targets = impl.collate(list(zip(images, targets, strict=True)))
    expect(
        not (isinstance(got_images, torch.Tensor) and tuple(got_images.shape) == (6, 8, 8)),
        "images of shape [6, 8, 8]: torch.cat joins along the channel axis; stacking adds a new batch axis",
    )
    expect_shape(got_images, (2, 3, 8, 8), "batched images")
    expect(bool((got_images[1] == 1).all()), "images must stay in batch order")
    expect(isinstance(got_targets, list) and len(got_targets) == 2, "targets: a list with one dict per image")
    expect([t["image_id"] for t in got_targets] == [7, 8], "targets must stay in batch order")
    expect_shape(got_targets[1]["boxes"], (0, 4), "the target of an image without boxes")


# Exercise 1.6 · RoboflowSplit.__getitem__ ------------------------------------------------------------------
def _tiny_export(root: Path) -> Path:
    """Two images (one without boxes), a placeholder category and non-contiguous ids."""
    split = root / "train"
    split.mkdir(parents=True)
    for name, color in (("a.jpg", (200, 30, 30)), ("b.jpg", (30, 30, 200))):
        Image.new("RGB", (40, 30), color).save(split / name, quality=95)
    data = {
        "images": [
            {"id": 0, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 1, "file_name": "b.jpg", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 3, "bbox": [1, 2, 10, 20], "area": 200, "iscrowd": 0},
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [5.5, 6, 4, 3], "area": 12, "iscrowd": 0},
        ],
        "categories": [
            {"id": 0, "name": "things", "supercategory": "none"},
            {"id": 1, "name": "head", "supercategory": "things"},
            {"id": 3, "name": "body", "supercategory": "things"},
        ],
    }
    (split / "_annotations.coco.json").write_text(json.dumps(data))
    return split


@exercise("1.6")
def test_dataset_item_matches_the_package(impl):
    with tempfile.TemporaryDirectory() as tmp:
        split = _tiny_export(Path(tmp))
        dataset, reference = impl.RoboflowSplit(split), CocoDetection(split)
        expect(len(dataset) == 2, f"two images, got len {len(dataset)}")
        for index in range(2):
            try:
                image, target = dataset[index]
            except NotImplementedError:
                raise  # a stub stays a stub
            except (RuntimeError, ValueError, IndexError) as error:
                if index == 1:  # the image without annotations
                    raise CheckFailure(
                        f"image 1 has no annotations and raised {type(error).__name__}: an empty list of bboxes "
                        "must still give boxes of shape [0, 4] (a tensor of the empty list has shape [0])"
                    ) from None
                raise
            expected_image, expected = reference[index]
            if index == 0 and isinstance(target.get("boxes"), torch.Tensor):
                expect(
                    not torch.allclose(
                        target["boxes"], torch.tensor([[1.0, 2.0, 10.0, 20.0], [5.5, 6.0, 4.0, 3.0]])
                    ),
                    "image 0: the boxes are still COCO [x, y, w, h]: convert them with xywh_to_xyxy",
                )
            expect_shape(
                image, tuple(expected_image.shape), f"image {index}", hint="decode as RGB: uint8 [3, H, W]"
            )
            expect(image.dtype == torch.uint8, f"image {index}: expected uint8, got {image.dtype}")
            expect(
                torch.equal(image, expected_image),
                f"image {index}: pixels differ from torchvision.io.decode_image",
            )
            expect_close(
                target["boxes"], expected["boxes"], f"boxes of image {index}", hint="boxes are xyxy pixels"
            )
            expect(
                target["boxes"].dtype == torch.float32, f"boxes must be float32, got {target['boxes'].dtype}"
            )
            expect(
                torch.equal(target["labels"], expected["labels"]),
                f"labels of image {index}: expected {expected['labels'].tolist()}, got {target['labels'].tolist()} "
                "(category ids 1, 3 → labels 0, 1 once the placeholder is dropped)",
            )
            expect(
                target["labels"].dtype == torch.int64, f"labels must be int64, got {target['labels'].dtype}"
            )
            expect(int(target["image_id"]) == expected["image_id"], "image_id must be the COCO image id")
