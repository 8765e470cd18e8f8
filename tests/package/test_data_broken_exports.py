"""The broken-export battery: every kind of messy export either fails with an error naming the file, the
record and the fix, or loads with a warning that counts what was changed, and the samples are right."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from broken_exports import BUILDERS, HEIGHT, UNICODE_NAMES, WIDTH, clean_split, pixels
from PIL import Image, ImageOps

from detector.config import DataConfig
from detector.data import CocoDetection
from detector.errors import DataError, MissingPathError, UserError
from detector.loaders import build_datasets

CHESS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "chess-pieces"


def load_quietly(folder: Path) -> CocoDetection:
    """Load a split that must give no warning at all."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return CocoDetection(folder)


# Cases that must stop with a clear error: (exception type, pattern naming the file/record and the fix).
ERRORS = {
    "missing_images": (MissingPathError, r"_annotations\.coco\.json: 1 of 3 image files are missing .*"
                       r"img1\.png \(image id 1\); re-export the data set or delete those image records"),
    "duplicate_names": (DataError, r"_annotations\.coco\.json: categories share a name \(1: 'king', 2: 'king'\)"
                        r".*Rename or merge them"),
    "wrong_size_record": (DataError, r"1 images differ in size .*img0\.png \(image id 0\): file \(40, 24\), "
                          r"record \(50, 50\); the boxes cannot be placed: re-export"),
    "truncated_files": (DataError, r"2 image files are truncated \(cannot be decoded\): cut\.jpg \(image id 0\), "
                        r"cut\.png \(image id 1\); download them again or delete their records"),
    "empty_split": (DataError, r"_annotations\.coco\.json: the split has no images.*data\.val_split"),
}  # fmt: skip


def check_placeholder_same_name(ds: CocoDetection) -> None:
    assert ds.class_names == ["king"] and ds.report.placeholder == "king" and ds.category_ids == [1]
    assert [ds[i][1]["labels"].tolist() for i in range(len(ds))] == [[0], [0]]


def check_noncontiguous_ids(ds: CocoDetection) -> None:
    assert ds.class_names == ["king", "queen", "rook"] and ds.category_ids == [4, 9, 17]  # in id order
    assert [ds[i][1]["labels"].tolist() for i in range(2)] == [[0, 1], [2, 1]]


def check_colour_modes(ds: CocoDetection) -> None:
    found = {kind: len(ids) for kind, ids in ds.report.images.items()}
    assert found == {"grayscale": 2, "grayscale+alpha": 1, "RGBA": 1, "palette": 1, "16-bit": 1, "CMYK": 1}
    for i, record in enumerate(ds.images):
        image, _ = ds[i]
        name = record["file_name"]
        assert image.dtype == torch.uint8 and image.shape == (3, HEIGHT, WIDTH), name
        if name != "sixteen.png":  # Pillow's RGB of a 16-bit image clips instead of scaling: checked below
            reference = np.asarray(Image.open(ds.files[i]).convert("RGB")).astype(int)
            tolerance = 2 if name.endswith(".jpg") else 0  # JPEG decoders may round differently
            assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - reference).max() <= tolerance, name
    sixteen = ds[[r["file_name"] for r in ds.images].index("sixteen.png")][0]
    expected = (np.arange(WIDTH * HEIGHT).reshape(HEIGHT, WIDTH) * 64) >> 8  # the high byte of each value
    assert np.array_equal(sixteen[0].numpy(), expected) and torch.equal(sixteen[0], sixteen[2])


def check_exif_oriented_record(ds: CocoDetection) -> None:
    assert ds.report.images == {"exif_rotated": [0, 1]}
    for index, tolerance in ((0, 2), (1, 0)):  # JPEG decoders may round differently; PNG is exact
        image, target = ds[index]
        oriented = np.asarray(ImageOps.exif_transpose(Image.open(ds.files[index])))  # Pillow reads the tag
        assert image.shape == (3, WIDTH, HEIGHT)
        assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - oriented.astype(int)).max() <= tolerance
        assert target["boxes"].tolist() == [[1.0, 1.0, 11.0, 7.0]]


def check_unusual_file_names(ds: CocoDetection) -> None:
    assert len(ds) == len(UNICODE_NAMES)
    for i in range(len(ds)):
        image, _ = ds[i]
        assert np.array_equal(image.permute(1, 2, 0).numpy(), pixels(i)), ds.images[i]["file_name"]


# Cases that load silently (nothing was changed): a check of the samples.
LOADS = {
    "placeholder_same_name": check_placeholder_same_name,
    "noncontiguous_ids": check_noncontiguous_ids,
    "colour_modes": check_colour_modes,
    "exif_oriented_record": check_exif_oriented_record,
    "unusual_file_names": check_unusual_file_names,
}


def test_every_case_of_the_generator_is_covered():
    assert set(BUILDERS) == set(ERRORS) | set(LOADS) | {"bad_boxes", "exif_stored_record", "corrupt_inside"}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_clear_error(tmp_path, case):
    folder = BUILDERS[case](tmp_path / case)
    error_type, pattern = ERRORS[case]
    with pytest.raises(error_type, match=pattern) as raised:
        CocoDetection(folder)
    assert isinstance(raised.value, UserError)  # the CLI prints it as one line
    assert str(folder) in str(raised.value)


@pytest.mark.parametrize("case", sorted(LOADS))
def test_loads_correctly_without_warning(tmp_path, case):
    LOADS[case](load_quietly(BUILDERS[case](tmp_path / case)))


def test_bad_boxes_warn_with_counts_and_training_goes_on(tmp_path):
    with pytest.warns(UserWarning) as record:
        ds = CocoDetection(BUILDERS["bad_boxes"](tmp_path / "bad"))
    (message,) = [str(w.message) for w in record]
    assert "dropped 2 degenerate boxes (annotation ids 1, 2)" in message
    assert "dropped 1 outside boxes (annotation ids 3)" in message
    assert "clipped 1 boxes to the image (ids 4)" in message
    _, target = ds[0]
    assert target["boxes"].tolist() == [[0.0, 10.0, 6.0, 24.0], [8.0, 2.0, 14.0, 8.0]]


def test_exif_tag_ignored_by_the_annotation_tool_warns_and_reads_stored_pixels(tmp_path):
    with pytest.warns(UserWarning, match=r"1 images read WITHOUT their EXIF rotation .*image ids 0"):
        ds = CocoDetection(BUILDERS["exif_stored_record"](tmp_path / "raw"))
    image, target = ds[0]
    stored = np.asarray(Image.open(ds.files[0]).convert("RGB"))  # no exif_transpose
    assert image.shape == (3, HEIGHT, WIDTH)
    assert np.abs(image.permute(1, 2, 0).numpy().astype(int) - stored.astype(int)).max() <= 2
    assert target["boxes"].tolist() == [[1.0, 1.0, 11.0, 7.0]]


def test_a_file_corrupt_inside_names_the_file_when_read(tmp_path):
    """Damage that keeps the header and the end marker is only seen by decoding: reading the file raises an
    error naming it (torchvision's own PNG decoder would end the process with a segmentation fault)."""
    ds = load_quietly(BUILDERS["corrupt_inside"](tmp_path / "bad"))
    with pytest.raises(
        DataError, match=r"bad\.png \(image id 0\): cannot decode the image .*corrupt.*replace it"
    ):
        ds[0]


def test_empty_validation_split_through_the_loader(tmp_path):
    BUILDERS["colour_modes"](tmp_path / "train")
    BUILDERS["empty_split"](tmp_path / "valid")
    with pytest.raises(DataError, match=r"valid/_annotations\.coco\.json: the split has no images"):
        build_datasets(DataConfig(root=str(tmp_path)))


def test_splits_with_other_classes_are_a_data_error(tmp_path):
    clean_split(tmp_path / "train")
    BUILDERS["noncontiguous_ids"](tmp_path / "valid")
    with pytest.raises(DataError, match=r"the train split has classes .* but the validation split has"):
        build_datasets(DataConfig(root=str(tmp_path)))


@pytest.mark.skipif(not CHESS.is_dir(), reason="the real chess export is not in ../shared/datasets")
def test_real_chess_export_report():
    """The real export's quirks are reported: the placeholder, and what the header scan found."""
    ds = load_quietly(CHESS / "valid")
    assert ds.report.placeholder == "pieces" and ds.category_ids == list(range(1, ds.num_classes + 1))
    assert set(ds.report.images) <= {"exif_rotated"}  # Roboflow strips or applies the EXIF tag
    summary = ds.report.summary()
    assert f"{len(ds)} images, {ds.report.num_boxes} boxes" in summary
    assert "placeholder category 'pieces' left out of the classes" in summary
