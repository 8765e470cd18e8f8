"""Image files as exports have them: decoding to ``uint8 RGB`` and a header scan of a split (Chapter 1).

Exports hold more than 8-bit RGB JPEGs. :func:`read_image` turns grayscale, grayscale + alpha, palette,
RGBA and CMYK images into RGB (alpha is dropped, as ``PIL.Image.convert("RGB")`` does) and 16-bit PNGs into
8-bit (``value >> 8``, torchvision's ``to_dtype(..., scale=True)``). JPEGs are decoded by torchvision, every
other format by Pillow: torchvision's PNG decoder ends the whole process (a segmentation fault in libpng's
error path) on a PNG whose pixel data is corrupt, where Pillow raises an error we can name the file in.

**EXIF orientation.** A phone JPEG stores its pixels as the sensor saw them plus an EXIF ``Orientation`` tag
(values 5-8 swap width and height). Labelling tools (Roboflow, CVAT, Label Studio) show the image rotated by
that tag, and Roboflow's export writes the rotated pixels with the tag removed, so the boxes are in the
*oriented* frame; ultralytics and PIL's ``exif_transpose`` read it the same way. :func:`scan_images` therefore
applies the tag, and checks the annotation's ``width``/``height`` against the oriented size. When they match
only the stored (unrotated) size instead, the annotations were made on the raw pixels (a tool that ignored the
tag): that image is read without rotation and counted in the report, which warns. When they match neither,
the boxes cannot be placed: an error names the files. A square image cannot be told apart; it is read
oriented.

The scan opens each file's header (Pillow, no decoding) and looks for the JPEG/PNG end marker near the end of
the file; a file without it is decoded, and a truncated one is an error before training starts. Any other
corruption is found when the image is decoded (:func:`read_image` raises naming it).
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from detector.errors import DataError, MissingPathError

JPEG_MAGIC = b"\xff\xd8\xff"  # the first bytes of every JPEG file
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I")  # Pillow's modes of a 16-bit grayscale PNG
EXIF_ORIENTATION = 0x0112  # EXIF tag number of Orientation (values 1-8; 5-8 are transposed)
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)
MAX_LISTED = 5  # files quoted in an error before "..."
END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}  # JPEG's EOI marker, PNG's last chunk type
TAIL_BYTES = 4096  # how far from the end of a file its end marker is looked for (cameras may append data)
# Pillow modes that are not 8-bit RGB, by the name a report uses for them ("I": how older Pillow opens a 16-bit PNG).
MODE_NAMES = {"L": "grayscale", "LA": "grayscale+alpha", "P": "palette", "PA": "palette+alpha",
              "RGBA": "RGBA", "CMYK": "CMYK", "I;16": "16-bit", "I;16B": "16-bit",
              "I": "16-bit",
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
        image = (
            _decode_jpeg(source, apply_exif)
            if source[:3] == JPEG_MAGIC
            else _decode_pillow(source, apply_exif)
        )
    except (RuntimeError, ValueError, OSError) as error:
        raise DataError(
            f"{name}: cannot decode the image ({str(error).splitlines()[0]}); the file is truncated, corrupt or "
            "not an image: replace it or delete its record"
        ) from None
    if expected_hw is not None and tuple(image.shape[-2:]) != tuple(expected_hw):
        raise DataError(
            f"{name}: decoded size (H, W) = {tuple(image.shape[-2:])} but the annotations say "
            f"{tuple(expected_hw)}; the boxes would not match: re-export the data set"
        )
    return image


def _decode_jpeg(data: bytes, apply_exif: bool) -> Tensor:
    """torchvision's libjpeg-turbo decoder: faster than going through Pillow on large photos."""
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return decode_image(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=apply_exif)


def _decode_pillow(data: bytes, apply_exif: bool) -> Tensor:
    """Any other format with Pillow (torchvision's PNG decoder kills the process on a corrupt PNG).

    16-bit images keep their high byte (``value >> 8``, torchvision's ``to_dtype(..., scale=True)``); Pillow's
    own ``convert("RGB")`` would clip them at 255 instead.
    """
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image) if apply_exif else image
        if image.mode in SIXTEEN_BIT_MODES:
            gray = torch.from_numpy(np.asarray(image).astype(np.int32) >> 8).clamp(0, 255).to(torch.uint8)
            return gray.expand(3, -1, -1).clone()
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def find_file(root: Path, file_name: str) -> Path | None:
    """``root / file_name``, also under the other Unicode normal form (macOS archives store NFD names)."""
    for form in (None, "NFC", "NFD"):
        path = root / (unicodedata.normalize(form, file_name) if form else file_name)
        if path.is_file():
            return path
    return None


class _Header(NamedTuple):
    width: int  # stored pixels
    height: int
    orientation: int  # EXIF orientation that decoding applies (1: none)
    mode: str  # Pillow's mode, e.g. "RGB", "L", "I;16"
    format: str  # "JPEG", "PNG", ...

    @property
    def oriented_size(self) -> tuple[int, int]:
        """``(width, height)`` once decoded, EXIF orientation applied."""
        transposed = self.orientation in TRANSPOSED_ORIENTATIONS
        return (self.height, self.width) if transposed else (self.width, self.height)


def _header(path: Path, image_id: Any, where: str) -> _Header:
    """The file's header (no decoding); a ``DataError`` naming the file and record when it is not an image."""
    try:
        with Image.open(path) as image:
            return _Header(image.width, image.height, _orientation(image), image.mode, image.format or "")
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(
            f"{where}: {path} (image id {image_id}) is not a readable image ({error}); replace the file or delete its record "
            "and annotations"
        ) from None


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation :func:`read_image` applies, 1 when none; without decoding.

    (``Image.getexif()`` of a PNG would decode the whole image; its ``eXIf`` chunk, which Pillow and
    cameras write before the pixel data, is already in ``image.info`` after opening, as WebP's EXIF is.)
    """
    if image.format == "JPEG":
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    if "exif" in image.info:
        exif = Image.Exif()
        exif.load(image.info["exif"])
        return int(exif.get(EXIF_ORIENTATION, 1))
    return 1


def _frame(header: _Header, record: dict[str, Any]) -> str:
    """How the record's ``(width, height)`` fits the file: ``"plain"`` (no rotation), ``"exif_rotated"``,
    ``"exif_ignored"`` (fits the stored pixels only) or ``"mismatch"`` (fits neither)."""
    expected = (record["width"], record["height"])
    if expected == header.oriented_size:
        return "exif_rotated" if header.orientation != 1 else "plain"
    return "exif_ignored" if expected == (header.width, header.height) else "mismatch"


def _truncated(path: Path, header: _Header) -> bool:
    """True when a JPEG/PNG lacks its end marker near the end of the file *and* fails to decode.

    Reading the last :data:`TAIL_BYTES` is cheap; only a file without the marker (cut off, or with data
    appended by a camera) is decoded to settle it.
    """
    marker = END_MARKERS.get(header.format)
    if marker is None:
        return False
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - TAIL_BYTES))
        if marker in file.read():
            return False
    try:
        read_image(path, str(path))
    except DataError:
        return True
    return False


def scan_images(
    root: Path, images: Sequence[dict[str, Any]], where: str
) -> tuple[list[Path], list[bool], dict]:
    """Check every image record of a split against its file's header (and end, for truncation).

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
        DataError: a file that is not an image, is truncated, or whose size matches the record neither as
            stored nor rotated.
    """
    paths, apply_exif, found = [], [], {}
    problems: dict[str, list[str]] = {"missing": [], "mismatch": [], "truncated": []}
    for record in images:
        name = f"{record['file_name']} (image id {record['id']})"
        path = find_file(root, record["file_name"])
        paths.append(path or root / record["file_name"])
        apply_exif.append(True)
        if path is None:
            problems["missing"].append(name)
            continue
        header = _header(path, record["id"], where)
        if header.mode in MODE_NAMES:
            found.setdefault(MODE_NAMES[header.mode], []).append(record["id"])
        frame = _frame(header, record)
        if frame == "mismatch":
            expected = (record["width"], record["height"])
            problems["mismatch"].append(f"{name}: file {header.oriented_size}, record {expected}")
        elif frame != "plain":
            found.setdefault(frame, []).append(record["id"])
            apply_exif[-1] = frame == "exif_rotated"
        if _truncated(path, header):
            problems["truncated"].append(name)
    _raise_problems(problems, root, where, len(images))
    return paths, apply_exif, found


def _raise_problems(problems: dict[str, list[str]], root: Path, where: str, count: int) -> None:
    """One error for all the files of one kind of problem (missing first), naming the first few."""
    if problems["missing"]:
        raise MissingPathError(
            f"{where}: {len(problems['missing'])} of {count} image files are missing in {root}: "
            f"{_listed(problems['missing'])}; re-export the data set or delete those image records and their "
            "annotations"
        )
    if problems["truncated"]:
        raise DataError(
            f"{where}: {len(problems['truncated'])} image files are truncated (cannot be decoded): "
            f"{_listed(problems['truncated'])}; download them again or delete their records and annotations"
        )
    if problems["mismatch"]:
        raise DataError(
            f"{where}: {len(problems['mismatch'])} images differ in size (width, height) from their records: "
            f"{_listed(problems['mismatch'])}; the boxes cannot be placed: re-export the data set"
        )


def _listed(items: Sequence[str]) -> str:
    return ", ".join(items[:MAX_LISTED]) + (", ..." if len(items) > MAX_LISTED else "")
