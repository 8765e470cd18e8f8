"""``detector export``: the ONNX file run by onnxruntime (CPU) and the TorchScript file match PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from detector.api import load
from detector.cli import build_parser, main
from detector.errors import UserError
from detector.export import ExportWrapper
from detector.postprocess import postprocess, select_detections

IMAGE_SIZE = 64
TOLERANCE = 1e-4
OTHER_SIZE = 96


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, write_checkpoint) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("export") / "best.pt", image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def reference(checkpoint: Path) -> tuple[torch.Tensor, ExportWrapper]:
    torch.manual_seed(1)
    model = load(checkpoint, "cpu")
    return torch.rand(3, 3, IMAGE_SIZE, IMAGE_SIZE), model


def test_onnx_matches_pytorch_with_a_dynamic_batch(checkpoint: Path, reference, capsys) -> None:
    images, model = reference
    out = checkpoint.with_suffix(".onnx")
    assert main(["export", "--weights", str(checkpoint), "--format", "onnx"]) == 0
    assert str(out) in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["boxes", "scores"]
    with torch.no_grad():
        expected = [t.numpy() for t in ExportWrapper(model.model, model.config.eval.score_mode)(images)]
    for batch in (1, 3):  # the file was traced with 2 images: the batch axis is dynamic
        boxes, scores = session.run(None, {"images": images[:batch].numpy()})
        assert boxes.shape == (batch, expected[0].shape[1], 4) and scores.shape[-1] == 3
        np.testing.assert_allclose(boxes, expected[0][:batch], atol=TOLERANCE, rtol=0)
        np.testing.assert_allclose(scores, expected[1][:batch], atol=TOLERANCE, rtol=0)
    # the documented post-processing of the outputs gives the PyTorch detections
    boxes, scores = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        direct = postprocess(model.model(images), image_size=(IMAGE_SIZE, IMAGE_SIZE), score_thresh=0.05)
    for b in range(len(images)):
        ours = select_detections(
            torch.from_numpy(scores[b]), torch.from_numpy(boxes[b]), 0.05, 1000, 0.6, 100
        )
        assert ours["labels"].tolist() == direct[b]["labels"].tolist()
        torch.testing.assert_close(ours["boxes"], direct[b]["boxes"], atol=TOLERANCE, rtol=0)


def test_torchscript_matches_pytorch_at_another_size(checkpoint: Path, reference, tmp_path: Path) -> None:
    _, model = reference
    images = torch.rand(2, 3, OTHER_SIZE, OTHER_SIZE)
    out = tmp_path / "model.torchscript"
    assert main(["export", "--weights", str(checkpoint), "--format", "torchscript", "--out", str(out),
                 "--imgsz", str(OTHER_SIZE)]) == 0  # fmt: skip
    scripted = torch.jit.load(str(out))
    with torch.no_grad():
        expected = ExportWrapper(model.model, model.config.eval.score_mode)(images)
        got = scripted(images)
    for got_tensor, want in zip(got, expected, strict=True):
        torch.testing.assert_close(got_tensor, want, atol=TOLERANCE, rtol=0)
    assert got[0].max() <= OTHER_SIZE and got[0].min() >= 0, "boxes clipped to the exported input size"


def test_unknown_format_is_a_user_error(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not one of"):
        load(checkpoint, "cpu").export(tmp_path / "m.tflite", "tflite")


def test_the_guide_states_the_default_post_processing() -> None:
    """The package guide's numbers: the export's post-processing (EvalConfig defaults), predict's defaults."""
    from course.paths import REPO_ROOT
    from detector.config import EvalConfig

    guide = " ".join((REPO_ROOT / "site" / "guide.md").read_text().split())
    defaults = EvalConfig()
    call = (f"select_detections(scores[b], boxes[b], {defaults.score_thresh}, {defaults.pre_nms_topk}, "
            f"{defaults.nms_iou}, {defaults.max_det})")  # fmt: skip
    assert call in guide
    steps = f"take the best {defaults.pre_nms_topk}, run per-class NMS (IoU {defaults.nms_iou}) and keep"
    assert f"{steps} {defaults.max_det}" in guide
    assert "matches PyTorch within 1e-4" in guide and TOLERANCE == 1e-4
    predict = build_parser()._subparsers._group_actions[0].choices["predict"]  # the CLI's own defaults
    assert f"`--conf` (default {predict.get_default('conf')})" in guide
    assert f"(`--batch {predict.get_default('batch')}`)" in guide
