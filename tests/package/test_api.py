"""The Python API: ``detector.load(...).predict(...)``, ``detector.train(...)``, lazy import, portable checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import detector
from detector.api import load, override_list
from detector.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from detector.config import EvalConfig, ModelConfig, config_from_dict
from detector.data.transforms import eval_transforms, unletterbox_boxes
from detector.errors import CheckpointError, UserError
from detector.postprocess import postprocess


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def checkpoint(tmp_path: Path, write_checkpoint) -> Path:
    return write_checkpoint(tmp_path / "best.pt")


def test_checkpoint_of_a_pretrained_backbone_loads_without_the_weights_file(
    tmp_path: Path, write_checkpoint
) -> None:
    weights_file = tmp_path / "test_resnet.pth"
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), weights_file)
    config = ModelConfig(backbone="test_resnet", pretrained=str(weights_file), neck_width=16, head_convs=1)
    path = write_checkpoint(tmp_path / "best.pt", config)
    saved = torch.load(path, weights_only=True)["model"]
    weights_file.unlink()  # the checkpoint moves to a machine without the backbone's weights file
    model = load(path, "cpu")
    assert model.config.model.pretrained == str(weights_file), "the config still says where it came from"
    loaded = model.model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in saved.items())


def test_predict_returns_boxes_in_original_coordinates(checkpoint: Path, tmp_path: Path) -> None:
    model = load(checkpoint, "cpu")
    images = [
        torch.randint(0, 256, (3, 48, 80), dtype=torch.uint8),
        torch.randint(0, 256, (3, 90, 30), dtype=torch.uint8),
    ]
    results = model.predict(images, conf=0.0, iou=0.5, max_det=7)
    assert len(results) == 2
    # reference: letterbox by hand, the model's forward, postprocess, unletterbox (one image at a time)
    for image, result in zip(images, results, strict=True):
        letterboxed, target = eval_transforms(64)(
            image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}
        )
        (expected,) = postprocess(model.model(letterboxed[None]), score_thresh=0.0, nms_iou=0.5, max_det=7,
                                  image_size=(64, 64))  # fmt: skip
        boxes = unletterbox_boxes(expected["boxes"], **target["letterbox"])
        assert len(result) == len(expected["boxes"]) == 7
        torch.testing.assert_close(result.boxes, boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(result.scores, expected["scores"], atol=1e-5, rtol=0)
        assert result.labels.tolist() == expected["labels"].tolist()
        assert result.names == [model.class_names[i] for i in expected["labels"].tolist()]
        assert result.image_size == tuple(image.shape[-2:]) and result.path is None
        height, width = image.shape[-2:]
        assert (result.boxes[:, 0::2] <= width + 1e-3).all() and (
            result.boxes[:, 1::2] <= height + 1e-3
        ).all()
    # a batch of 2 gives what one image at a time gives; a [B, 3, H, W] tensor works too
    single = model.predict(images[0], conf=0.0, iou=0.5, max_det=7, batch_size=1)
    torch.testing.assert_close(single[0].boxes, results[0].boxes)
    stacked = model.predict(torch.stack([images[0], images[0]]), conf=0.0, max_det=3)
    assert [len(r) for r in stacked] == [3, 3]


def test_predict_imgsz_sets_the_side_the_model_sees(checkpoint: Path) -> None:
    model = load(checkpoint, "cpu")
    image = torch.randint(0, 256, (3, 48, 80), dtype=torch.uint8)
    result = model.predict(image, conf=0.0, iou=0.5, max_det=5, imgsz=96)[0]
    letterboxed, target = eval_transforms(96)(image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)})
    (expected,) = postprocess(model.model(letterboxed[None]), score_thresh=0.0, nms_iou=0.5, max_det=5,
                              image_size=(96, 96))  # fmt: skip
    torch.testing.assert_close(result.boxes, unletterbox_boxes(expected["boxes"], **target["letterbox"]),
                               atol=1e-3, rtol=0)  # fmt: skip
    torch.testing.assert_close(result.scores, expected["scores"], atol=1e-5, rtol=0)


def test_predict_on_paths_and_thresholds(checkpoint: Path, tmp_path: Path) -> None:
    from torchvision.io import write_png

    for name in ("b.png", "a.png"):
        write_png(torch.randint(0, 256, (3, 40, 50), dtype=torch.uint8), str(tmp_path / name))
    model = load(checkpoint, "cpu")
    results = model.predict(tmp_path, conf=0.0, max_det=5)
    assert [r.path.name for r in results] == ["a.png", "b.png"] and all(
        r.image_size == (40, 50) for r in results
    )
    strict = model.predict(str(tmp_path / "*.png"), conf=1.0)
    assert [len(r) for r in strict] == [0, 0], "nothing scores above 1"
    with pytest.raises(UserError, match="CUDA"):
        model.predict(tmp_path, half=True)
    with pytest.raises(UserError, match="uint8"):
        model.predict([torch.zeros(3, 8, 8)])


def test_agnostic_nms_keeps_one_box_per_place(checkpoint: Path) -> None:
    model = load(checkpoint, "cpu")
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    per_class = model.predict(image, conf=0.0, iou=0.3, max_det=300)[0]
    agnostic = model.predict(image, conf=0.0, iou=0.3, max_det=300, agnostic_nms=True)[0]
    assert len(agnostic) < len(per_class)
    iou = __import__("torchvision").ops.box_iou(agnostic.boxes, agnostic.boxes).fill_diagonal_(0)
    assert (iou <= 0.3 + 1e-6).all(), "across classes too"


def test_not_a_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    save_checkpoint({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not a detector checkpoint"):
        load(tmp_path / "x.pt", "cpu")


def test_checkpoint_of_another_format_is_a_clear_error(checkpoint: Path) -> None:
    state = torch.load(checkpoint, weights_only=True)
    save_checkpoint({**state, "format": CHECKPOINT_FORMAT + 1}, checkpoint)
    with pytest.raises(
        CheckpointError, match=f"has format {CHECKPOINT_FORMAT + 1}, this version of detector reads"
    ):
        load(checkpoint, "cpu")


def test_override_list_round_trips_through_the_config() -> None:
    overrides = override_list({"train__epochs": 1, "data.root": "my data/é", "model.pretrained": None,
                               "model.out_indices": [1, 2, 3], "train.lr": 1e-3})  # fmt: skip
    config = config_from_dict({}, overrides)
    assert (config.train.epochs, config.data.root, config.model.pretrained) == (1, "my data/é", None)
    assert config.model.out_indices == [1, 2, 3] and config.train.lr == 1e-3


def test_train_runs_the_runner_and_returns_loadable_weights(tmp_path: Path) -> None:
    run = detector.train(
        "arena_cpu",
        {"data.root": str(tmp_path / "arena"), "train.out_dir": str(tmp_path / "runs"), "name": "api"},
        data__arena={"n_train": 4, "n_valid": 2, "n_test": 2, "image_size": 64},
        data__image_size=64, data__batch_size=2, data__workers=0, model__neck_width=16, model__head_convs=1,
        train__epochs=1, train__warmup_steps=1, train__max_minutes=None, train__device="cpu",
    )  # fmt: skip
    assert run.run_dir == tmp_path / "runs" / "api" and run.best.is_file()
    assert "map" in run.metrics
    results = detector.load(run.best, "cpu").predict(tmp_path / "arena" / "test", conf=0.0, max_det=2)
    assert len(results) == 2 and all(len(r) == 2 for r in results)


def test_import_detector_is_light() -> None:
    code = "import sys, detector; print('torch' in sys.modules, callable(detector.load))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True"], done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        detector.nope  # noqa: B018


def test_eval_config_is_untouched_by_predict(checkpoint: Path) -> None:
    model = load(checkpoint, "cpu")
    before = EvalConfig(**vars(model.config.eval))
    model.predict(torch.zeros(3, 32, 32, dtype=torch.uint8), conf=0.9, iou=0.1, max_det=1)
    assert model.config.eval == before
