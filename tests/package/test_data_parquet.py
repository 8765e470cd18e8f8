"""HFParquetDetection on parquet files written here in the schema of Francesco/halo-infinite-angel-videogame."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from detector.config import DataConfig
from detector.data import ARENA_CLASSES, CocoDetection, HFParquetDetection, eval_transforms
from detector.errors import DataError
from detector.loaders import build_dataset

SCHEMA = pa.schema(
    [
        ("image_id", pa.int64()),
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("width", pa.int32()),
        ("height", pa.int32()),
        (
            "objects",
            pa.struct(
                [
                    ("id", pa.list_(pa.int64())),
                    ("area", pa.list_(pa.int64())),
                    ("bbox", pa.list_(pa.list_(pa.float32(), 4))),
                    ("category", pa.list_(pa.int64())),
                ]
            ),
        ),
    ]
)

# (image_id, width, height, objects as (id, [x, y, w, h], category)); category 0 is the placeholder.
ROWS = [
    (7, 48, 32, [(100, [1, 2, 10, 12], 1), (101, [3, 4, 2, 2], 2), (102, [46, 20, 4, 4], 3)]),
    (8, 32, 48, []),
    (9, 40, 40, [(103, [30, 30, 20, 20], 4), (104, [5, 5, 0, 3], 1)]),
]


def png_bytes(width: int, height: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


HALO_CATEGORIES = ["halo-infinite-angel-videogame", *ARENA_CLASSES]  # category 0: Roboflow's placeholder


def hf_metadata(names: list[str], nested: bool = True) -> dict[bytes, bytes]:
    """The schema metadata the ``datasets`` library writes: ``objects`` as a sequence of structs (``datasets``
    2.x/3.x, ``nested``) or as a struct of lists (``datasets`` 4.x), ``category`` a ``ClassLabel``."""
    category = {"names": names, "_type": "ClassLabel"}
    if nested:
        objects = {
            "feature": {"id": {"dtype": "int64", "_type": "Value"}, "category": category},
            "_type": "Sequence",
        }
    else:
        objects = {"id": {"feature": {"dtype": "int64", "_type": "Value"}, "_type": "List"},
                   "category": {"feature": category, "_type": "List"}}  # fmt: skip
    features = {"image_id": {"dtype": "int64", "_type": "Value"}, "objects": objects}
    return {b"huggingface": json.dumps({"info": {"features": features}}).encode()}


def write_parquet(
    path: Path, rows=ROWS, image_bytes=None, metadata: dict[bytes, bytes] | None = None
) -> Path:
    records = []
    for k, (image_id, width, height, objects) in enumerate(rows):
        data = png_bytes(width, height, k) if image_bytes is None else image_bytes
        records.append(
            {
                "image_id": image_id,
                "image": {"bytes": data, "path": None},
                "width": width,
                "height": height,
                "objects": {
                    "id": [o[0] for o in objects],
                    "area": [int(o[1][2] * o[1][3]) for o in objects],
                    "bbox": [o[1] for o in objects],
                    "category": [o[2] for o in objects],
                },
            }
        )
    schema = SCHEMA.with_metadata(hf_metadata(HALO_CATEGORIES) if metadata is None else metadata)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)
    return path


def write_same_as_coco(folder: Path) -> Path:
    """The same rows as a Roboflow COCO export (an independent path to the expected samples)."""
    folder.mkdir()
    categories = [{"id": 0, "name": "players", "supercategory": "none"}]
    categories += [{"id": k + 1, "name": n, "supercategory": "players"} for k, n in enumerate(ARENA_CLASSES)]
    images, annotations = [], []
    for k, (image_id, width, height, objects) in enumerate(ROWS):
        (folder / f"{image_id}.png").write_bytes(png_bytes(width, height, k))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": width, "height": height})
        annotations += [{"id": i, "image_id": image_id, "category_id": c, "bbox": b} for i, b, c in objects]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (folder / "_annotations.coco.json").write_text(json.dumps(data))
    return folder


def test_same_samples_as_the_coco_export(tmp_path):
    with pytest.warns(UserWarning, match="dropped 1 degenerate"):
        ds = HFParquetDetection(write_parquet(tmp_path / "valid.parquet"))
    with pytest.warns(UserWarning):
        reference = CocoDetection(write_same_as_coco(tmp_path / "coco"))
    assert ds.class_names == list(ARENA_CLASSES) == reference.class_names
    assert len(ds) == len(reference) == 3
    for i in range(3):
        (img, target), (ref_img, ref_target) = ds[i], reference[i]
        assert img.dtype == torch.uint8 and torch.equal(img, ref_img)
        assert target["image_id"] == ref_target["image_id"]
        torch.testing.assert_close(target["boxes"], ref_target["boxes"])
        assert torch.equal(target["labels"], ref_target["labels"])
    assert ds.report.dropped == {"degenerate": [104]} and ds.report.clipped == [102, 103]
    assert ds.report.num_negatives == 1


def test_labels_are_category_minus_one_and_placeholder_dropped(tmp_path):
    rows = [(1, 20, 20, [(5, [1, 1, 4, 4], 0), (6, [2, 2, 4, 4], 4)])]
    with pytest.warns(UserWarning, match="placeholder"):
        ds = HFParquetDetection(write_parquet(tmp_path / "a.parquet", rows))
    _, target = ds[0]
    assert target["labels"].tolist() == [3] and ds.report.dropped == {"placeholder": [5]}
    torch.testing.assert_close(target["boxes"], torch.tensor([[2.0, 2.0, 6.0, 6.0]]))


def test_transforms(tmp_path):
    with pytest.warns(UserWarning):
        ds = HFParquetDetection(write_parquet(tmp_path / "a.parquet"), transforms=eval_transforms(64))
    img, target = ds[0]
    assert img.shape == (3, 64, 64) and target["letterbox"]["orig_size"] == (32, 48)


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        HFParquetDetection(tmp_path / "missing.parquet")
    pq.write_table(pa.table({"image_id": [1]}), tmp_path / "other.parquet")
    with pytest.raises(ValueError, match=r"columns \['image', 'width', 'height', 'objects'\] missing"):
        HFParquetDetection(tmp_path / "other.parquet")
    rows = [(3, 20, 20, [(9, [1, 1, 4, 4], 5)])]
    with pytest.raises(ValueError, match=r"row 0 \(image_id 3\), object id 9: category 5 outside 1..4"):
        HFParquetDetection(write_parquet(tmp_path / "cat.parquet", rows))
    names = ["a", "b", "c", "d", "e"]
    assert HFParquetDetection(tmp_path / "cat.parquet", class_names=names)[0][1]["labels"].tolist() == [4]
    corrupt = HFParquetDetection(
        write_parquet(tmp_path / "bad.parquet", rows[:1] * 0 + [(4, 8, 8, [])], b"junk")
    )
    with pytest.raises(ValueError, match=r"bad.parquet: row 0 \(image_id 4\): cannot decode"):
        corrupt[0]


@pytest.mark.parametrize("nested", [True, False], ids=["sequence_of_structs", "struct_of_lists"])
def test_class_names_come_from_the_file_metadata(tmp_path, nested):
    """A data set other than halo gets its own names (it used to get the halo names, or fail)."""
    names = ["cells", "red blood cell", "white blood cell", "platelet", "other"]  # 0 is the placeholder
    rows = [(1, 20, 20, [(5, [1, 1, 4, 4], 4), (6, [2, 2, 4, 4], 1)])]
    path = write_parquet(tmp_path / "bccd.parquet", rows, metadata=hf_metadata(names, nested))
    ds = HFParquetDetection(path)
    assert ds.class_names == names[1:] and ds.num_classes == 4 and ds.report.placeholder == "cells"
    assert [ds.class_names[label] for label in ds[0][1]["labels"]] == ["other", "red blood cell"]


def test_class_names_argument_wins_and_no_names_is_an_error(tmp_path):
    path = write_parquet(tmp_path / "plain.parquet", metadata={})
    with pytest.raises(DataError, match=r"plain.parquet: no class names.*data.class_names"):
        HFParquetDetection(path)
    with pytest.warns(UserWarning):  # the rows' degenerate box
        ds = HFParquetDetection(path, class_names=["a", "b", "c", "d"])
    assert ds.class_names == ["a", "b", "c", "d"]


def test_data_class_names_key_through_the_loader(tmp_path):
    """``data.format: hf_parquet`` with ``data.class_names`` (a file without metadata) and a COCO export whose
    names disagree with ``data.class_names`` (an error naming both)."""
    root = tmp_path / "parquet"
    root.mkdir()
    write_parquet(root / "train.parquet", metadata={})
    config = DataConfig(root=str(root), format="hf_parquet", class_names=["w", "x", "y", "z"])
    with pytest.warns(UserWarning):
        assert build_dataset(config, "train", train=False).class_names == ["w", "x", "y", "z"]
    coco = tmp_path / "coco"
    coco.mkdir()
    with pytest.warns(UserWarning):
        write_same_as_coco(coco / "valid")
        with pytest.raises(DataError, match=r"data.class_names=\['w', 'x', 'y', 'z'\] but the export's"):
            build_dataset(DataConfig(root=str(coco), class_names=["w", "x", "y", "z"]), "valid", train=False)


def test_area_travels_and_iscrowd_is_zero(tmp_path):
    with pytest.warns(UserWarning):
        _, target = HFParquetDetection(write_parquet(tmp_path / "a.parquet"))[0]
    assert target["area"].tolist() == [120.0, 4.0, 16.0]  # the file's areas (w·h before clipping)
    assert target["iscrowd"].tolist() == [0, 0, 0]


def test_empty_split_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"empty.parquet: the split has no rows"):
        HFParquetDetection(write_parquet(tmp_path / "empty.parquet", rows=[]))


def test_a_file_that_is_not_parquet_is_a_data_error(tmp_path):
    (tmp_path / "junk.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match=r"junk.parquet: not a readable parquet file"):
        HFParquetDetection(tmp_path / "junk.parquet")


def test_objects_without_their_fields_are_a_data_error(tmp_path):
    objects = pa.struct([("id", pa.list_(pa.int64())), ("bbox", pa.list_(pa.list_(pa.float32(), 4)))])
    schema = pa.schema([*(f for f in SCHEMA if f.name != "objects"), ("objects", objects)])
    row = {"image_id": 5, "image": {"bytes": png_bytes(8, 8, 0), "path": None}, "width": 8, "height": 8,
           "objects": {"id": [1], "bbox": [[1.0, 1.0, 2.0, 2.0]]}}  # fmt: skip
    pq.write_table(pa.Table.from_pylist([row], schema=schema), tmp_path / "lacking.parquet")
    with pytest.raises(
        DataError, match=r"lacking.parquet: row 0 \(image_id 5\): 'objects' lacks \['category'\]"
    ):
        HFParquetDetection(tmp_path / "lacking.parquet", class_names=["a"])
