"""A generator of messy Roboflow-style COCO exports: one small split folder per kind of trouble.

Each builder writes ``_annotations.coco.json`` and tiny Pillow-made images (tens of pixels) into ``folder``
and returns it; :data:`BUILDERS` maps a case name to its builder. ``tests/package/test_data_broken_exports.py``
runs the battery over every case.
"""

from __future__ import annotations

import io
import json
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 40, 24  # stored size of the generated images (landscape, so a 90° turn is visible)
CATEGORIES = [
    {"id": 0, "name": "pieces", "supercategory": "none"},  # Roboflow's placeholder
    {"id": 1, "name": "king", "supercategory": "pieces"},
    {"id": 2, "name": "queen", "supercategory": "pieces"},
]
EXIF_ORIENTATION = 0x0112
ROTATE_90_CW = 6  # EXIF orientation 6: the viewer turns the stored pixels 90° clockwise


def pixels(seed: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """``uint8 [H, W, 3]`` random colours: every pixel differs, so a wrong rotation or crop shows."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def record(image_id: int, file_name: str, width: int = WIDTH, height: int = HEIGHT) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def box(ann_id: int, image_id: int, category_id: int, bbox: list[float], **extra: Any) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": 0, **extra}  # fmt: skip


def write_json(folder: Path, images: list, annotations: list, categories: list = CATEGORIES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "_annotations.coco.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder


def save(image: Image.Image, path: Path, **options: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def clean_split(folder: Path, count: int = 2) -> Path:
    """A valid split: ``count`` RGB PNGs with one king and one queen each."""
    images, annotations = [], []
    for i in range(count):
        save(Image.fromarray(pixels(i)), folder / f"img{i}.png")
        images.append(record(i, f"img{i}.png"))
        annotations += [box(2 * i + 1, i, 1, [2, 2, 10, 8]), box(2 * i + 2, i, 2, [20, 6, 12, 12])]
    return write_json(folder, images, annotations)


def missing_images(folder: Path) -> Path:
    """The JSON lists three images; one of them is not on disk."""
    clean_split(folder, count=3)
    (folder / "img1.png").unlink()
    return folder


def placeholder_same_name(folder: Path) -> Path:
    """Roboflow's one-class export: the placeholder (id 0) has the name of the only class."""
    clean_split(folder)
    categories = [
        {"id": 0, "name": "king", "supercategory": "none"},
        {"id": 1, "name": "king", "supercategory": "king"},
    ]
    data = json.loads((folder / "_annotations.coco.json").read_text())
    annotations = [a for a in data["annotations"] if a["category_id"] == 1]
    return write_json(folder, data["images"], annotations, categories)


def duplicate_names(folder: Path) -> Path:
    """Two real categories (both with boxes) share a name: no placeholder explains it."""
    clean_split(folder)
    categories = [
        {"id": 1, "name": "king", "supercategory": "none"},
        {"id": 2, "name": "king", "supercategory": "none"},
    ]
    data = json.loads((folder / "_annotations.coco.json").read_text())
    return write_json(folder, data["images"], data["annotations"], categories)


def noncontiguous_ids(folder: Path) -> Path:
    """Category ids 4, 9, 17 (a merged or edited export), listed out of order."""
    clean_split(folder)
    categories = [{"id": 17, "name": "rook"}, {"id": 4, "name": "king"}, {"id": 9, "name": "queen"}]
    data = json.loads((folder / "_annotations.coco.json").read_text())
    for ann, category in zip(data["annotations"], (4, 9, 17, 9), strict=True):
        ann["category_id"] = category
    return write_json(folder, data["images"], data["annotations"], categories)


def bad_boxes(folder: Path) -> Path:
    """Zero width, negative height, entirely outside, partly outside, and one good box."""
    save(Image.fromarray(pixels(0)), folder / "img0.png")
    annotations = [
        box(1, 0, 1, [5, 5, 0, 4]),  # zero width: dropped
        box(2, 0, 1, [5, 5, 4, -3]),  # negative height: dropped
        box(3, 0, 2, [45, 2, 5, 5]),  # right of the 40-px image: dropped
        box(4, 0, 2, [-4, 10, 10, 20]),  # sticks out left and bottom: clipped to [0, 10, 6, 24]
        box(5, 0, 1, [8, 2, 6, 6]),  # fine
    ]
    return write_json(folder, [record(0, "img0.png")], annotations)


def colour_modes(folder: Path) -> Path:
    """Grayscale, grayscale + alpha, RGBA, palette and 16-bit grayscale PNGs, grayscale and CMYK JPEGs."""
    base = Image.fromarray(pixels(0))
    sixteen = Image.fromarray(np.arange(WIDTH * HEIGHT, dtype=np.uint16).reshape(HEIGHT, WIDTH) * 64)
    variants = {"gray.png": base.convert("L"), "gray_alpha.png": base.convert("LA"),
                "rgba.png": base.convert("RGBA"), "palette.png": base.convert("P"),
                "sixteen.png": sixteen, "gray.jpg": base.convert("L"), "cmyk.jpg": base.convert("CMYK")}  # fmt: skip
    images = []
    for i, (name, image) in enumerate(variants.items()):
        save(image, folder / name)
        images.append(record(i, name))
    return write_json(folder, images, [box(i + 1, i, 1, [2, 2, 10, 8]) for i in range(len(images))])


def exif_jpeg(path: Path, seed: int = 0, orientation: int = ROTATE_90_CW) -> None:
    """A phone-style JPEG (or PNG, by the suffix): stored ``WIDTH × HEIGHT`` pixels plus an EXIF orientation tag."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    save(
        Image.fromarray(pixels(seed)),
        path,
        exif=exif.tobytes(),
        **({"quality": 95} if path.suffix == ".jpg" else {}),
    )


def exif_oriented_record(folder: Path) -> Path:
    """EXIF orientation 6 and records giving the *oriented* size (``HEIGHT × WIDTH``): what labelling tools
    that show the rotated photo write. A 10 × 6 box at the top left of each oriented image (a JPEG, a PNG)."""
    exif_jpeg(folder / "phone.jpg")
    exif_jpeg(folder / "phone.png")
    images = [record(0, "phone.jpg", HEIGHT, WIDTH), record(1, "phone.png", HEIGHT, WIDTH)]
    return write_json(folder, images, [box(1, 0, 1, [1, 1, 10, 6]), box(2, 1, 1, [1, 1, 10, 6])])


def exif_stored_record(folder: Path) -> Path:
    """EXIF orientation 6 but a record giving the *stored* size: annotated by a tool that ignored the tag."""
    exif_jpeg(folder / "phone.jpg")
    return write_json(folder, [record(0, "phone.jpg")], [box(1, 0, 1, [1, 1, 10, 6])])


def wrong_size_record(folder: Path) -> Path:
    """A record whose size matches the file neither as stored nor rotated."""
    save(Image.fromarray(pixels(0)), folder / "img0.png")
    return write_json(folder, [record(0, "img0.png", 50, 50)], [box(1, 0, 1, [1, 1, 10, 6])])


def _encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def truncated_files(folder: Path) -> Path:
    """A JPEG and a PNG cut in half (an interrupted download): the headers are intact."""
    image = Image.fromarray(pixels(0))
    folder.mkdir(parents=True, exist_ok=True)
    for name, format in (("cut.jpg", "JPEG"), ("cut.png", "PNG")):
        data = _encoded(image, format)
        (folder / name).write_bytes(data[: len(data) // 2])
    return write_json(folder, [record(0, "cut.jpg"), record(1, "cut.png")], [box(1, 0, 1, [2, 2, 10, 8])])


def corrupt_inside(folder: Path) -> Path:
    """A PNG whose compressed pixels were overwritten (a bad disk or copy): header and end marker intact."""
    data = bytearray(_encoded(Image.fromarray(pixels(0)), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bad.png").write_bytes(bytes(data))
    return write_json(folder, [record(0, "bad.png")], [box(1, 0, 1, [2, 2, 10, 8])])


def empty_split(folder: Path) -> Path:
    """An annotation file without images (Roboflow writes one for an empty test split)."""
    return write_json(folder, [], [])


UNICODE_NAMES = ("photo 1 (copy).png", "pièce été.png", "棋子.png", "sub dir/é 2.png")


def unusual_file_names(folder: Path) -> Path:
    """Spaces, accents, CJK, a sub-folder; the last file is stored under the decomposed (NFD) form of its
    name, as macOS archives do, while the JSON has the composed (NFC) form."""
    images = []
    for i, name in enumerate(UNICODE_NAMES):
        on_disk = unicodedata.normalize("NFD", name) if i == len(UNICODE_NAMES) - 1 else name
        save(Image.fromarray(pixels(i)), folder / on_disk)
        images.append(record(i, unicodedata.normalize("NFC", name)))
    return write_json(folder, images, [box(i + 1, i, 2, [3, 3, 8, 8]) for i in range(len(images))])


BUILDERS: dict[str, Callable[[Path], Path]] = {
    builder.__name__: builder
    for builder in (missing_images, placeholder_same_name, duplicate_names, noncontiguous_ids, bad_boxes,
                    colour_modes, exif_oriented_record, exif_stored_record, wrong_size_record, truncated_files,
                    corrupt_inside, empty_split, unusual_file_names)
}  # fmt: skip
