"""Image files as exports have them: decoding to ``uint8 RGB`` and a header scan of a split (Chapter 1).

Exports hold more than 8-bit RGB JPEGs. :func:`read_image` turns grayscale, grayscale + alpha, palette,
RGBA and CMYK images into RGB (alpha is dropped, as ``PIL.Image.convert("RGB")`` does) and 16-bit PNGs into
8-bit (``value >> 8``, torchvision's ``to_dtype(..., scale=True)``).

**EXIF orientation.** A phone JPEG stores its pixels as the sensor saw them plus an EXIF ``Orientation`` tag
(values 5-8 swap width and height). Labelling tools (Roboflow, CVAT, Label Studio) show the image rotated by
that tag, and Roboflow's export writes the rotated pixels with the tag removed, so the boxes are in the
*oriented* frame; ultralytics and PIL's ``exif_transpose`` read it the same way. :func:`scan_images` therefore
applies the tag, and checks the annotation's ``width``/``height`` against the oriented size. When they match
only the stored (unrotated) size instead, the annotations were made on the raw pixels (a tool that ignored the
tag): that image is read without rotation and counted in the report, which warns. When they match neither,
the boxes cannot be placed: an error names the files. A square image cannot be told apart; it is read
oriented.

The scan opens each file's header only (Pillow, no decoding). A truncated file is found when it is decoded
(:func:`read_image` raises naming it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

from detector.errors import DataError, MissingPathError

EXIF_ORIENTATION = 0x0112  # EXIF tag number of Orientation (values 1-8; 5-8 are transposed)
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
MAX_LISTED = 5  # files quoted in an error before "..."
# Pillow modes that are not 8-bit RGB, by the name a report uses for them ("I": how older Pillow opens a 16-bit PNG).
MODE_NAMES = {"L": "grayscale", "LA": "grayscale+alpha", "P": "palette", "PA": "palette+alpha",
              "RGBA": "RGBA", "CMYK": "CMYK", "I;16": "16-bit", "I;16B": "16-bit", "I": "16-bit",
              "1": "1-bit"}  # fmt: skip


def read_image(
    source: Path | bytes, name: str, expected_hw: tuple[int, int] | None = None, apply_exif: bool = True
) -> Tensor:
    """Decode a JPEG/PNG file or bytes to ``uint8 [3, H, W]`` RGB.

    Args:
        source: the file, or its encoded bytes.
        name: how errors name the image (file and record).
        expected_hw: the annotation's ``(height, width)``; a different decoded size is an error.
        apply_exif: rotate by the EXIF orientation (see the module docstring).

    Raises:
        MissingPathError: the file is missing.
        DataError: it cannot be decoded (truncated, not an image) or its size differs from ``expected_hw``.
    """
    if isinstance(source, Path):
        if not source.is_file():
            raise MissingPathError(
                f"{name}: image file is missing; re-export the data set or delete its record"
            )
        source = source.read_bytes()
    try:
        data = torch.frombuffer(bytearray(source), dtype=torch.uint8)
        image = decode_image(data, mode=ImageReadMode.RGB, apply_exif_orientation=apply_exif)
    except (RuntimeError, ValueError) as error:
        raise DataError(
            f"{name}: cannot decode the image ({str(error).splitlines()[0]}); the file is truncated or not a "
            "JPEG/PNG: replace it or delete its record"
        ) from None
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = F.to_dtype(image, torch.uint8, scale=True)
    if expected_hw is not None and tuple(image.shape[-2:]) != tuple(expected_hw):
        raise DataError(
            f"{name}: decoded size (H, W) = {tuple(image.shape[-2:])} but the annotations say "
            f"{tuple(expected_hw)}; the boxes would not match: re-export the data set"
        )
    return image


def find_file(root: Path, file_name: str) -> Path | None:
    """``root / file_name``, also under the other Unicode normal form (macOS archives store NFD names)."""
    for form in (None, "NFC", "NFD"):
        path = root / (unicodedata.normalize(form, file_name) if form else file_name)
        if path.is_file():
            return path
    return None


def _header(path: Path) -> tuple[int, int, int, str]:
    """``(stored width, stored height, EXIF orientation, Pillow mode)`` from the file's header."""
    with Image.open(path) as image:
        return image.width, image.height, _orientation(image), image.mode


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation torchvision's ``decode_image`` applies (JPEG, PNG), 1 when none; no decoding.

    (``Image.getexif()`` of a PNG would decode the whole image; its ``eXIf`` chunk, which Pillow and
    cameras write before the pixel data, is already in ``image.info`` after opening.)
    """
    if image.format == "JPEG":
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    if image.format == "PNG" and "exif" in image.info:
        exif = Image.Exif()
        exif.load(image.info["exif"])
        return int(exif.get(EXIF_ORIENTATION, 1))
    return 1


def scan_images(
    root: Path, images: Sequence[dict[str, Any]], where: str
) -> tuple[list[Path], list[bool], dict]:
    """Check every image record of a split against its file's header.

    Args:
        root: the split folder; ``images``: the COCO image records (``file_name``, ``width``, ``height``, ``id``).
        where: the annotation file, for error messages.

    Returns:
        ``(paths, apply_exif, found)``: the file of each record, whether to rotate it by its EXIF tag, and
        ``found``: image ids by finding, only those found: ``"exif_rotated"`` (read rotated),
        ``"exif_ignored"`` (the record gives the stored size: read unrotated) and each converted colour mode
        (``"16-bit"``, ``"palette"``, ``"grayscale"``, ``"RGBA"``, ...: :data:`MODE_NAMES`).

    Raises:
        MissingPathError: files missing on disk (all of them counted, the first few named).
        DataError: a file that is not an image, or whose size matches the record neither as stored nor rotated.
    """
    paths, apply_exif, missing, mismatched = [], [], [], []
    found: dict[str, list[Any]] = {}
    for record in images:
        path = find_file(root, record["file_name"])
        paths.append(path or root / record["file_name"])
        apply_exif.append(True)
        if path is None:
            missing.append(f"{record['file_name']} (image id {record['id']})")
            continue
        try:
            width, height, orientation, mode = _header(path)
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(
                f"{where}: {path} (image id {record['id']}) is not a readable image ({error}); replace the "
                "file or delete its record and annotations"
            ) from None
        if mode in MODE_NAMES:
            found.setdefault(MODE_NAMES[mode], []).append(record["id"])
        stored = (width, height)
        oriented = (height, width) if orientation in TRANSPOSED_ORIENTATIONS else stored
        expected = (record["width"], record["height"])
        if orientation != 1 and expected == oriented:
            found.setdefault("exif_rotated", []).append(record["id"])
        elif expected == stored and stored != oriented:
            found.setdefault("exif_ignored", []).append(record["id"])
            apply_exif[-1] = False
        elif expected != oriented:
            mismatched.append(f"{path.name} (image id {record['id']}: file {oriented}, record {expected})")
    if missing:
        raise MissingPathError(
            f"{where}: {len(missing)} of {len(images)} image files are missing in {root}: "
            f"{_listed(missing)}; re-export the data set or delete those image records and their annotations"
        )
    if mismatched:
        raise DataError(
            f"{where}: {len(mismatched)} images differ in size (width, height) from their records: "
            f"{_listed(mismatched)}; the boxes cannot be placed: re-export the data set"
        )
    return paths, apply_exif, found


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items[:MAX_LISTED]) + (", ..." if len(items) > MAX_LISTED else "")
