"""Export a trained detector to ONNX or TorchScript for deployment (``detector export``).

The exported graph takes ``images float32 [B, 3, S, S]`` with values in ``[0, 1]`` (RGB, letterboxed to the
side ``S`` it was exported at; the batch ``B`` is dynamic) and returns, for all ``N`` points:

- ``boxes float32 [B, N, 4]``: xyxy in input pixels, clipped to the ``S × S`` input;
- ``scores float32 [B, N, C]``: per-class scores in ``[0, 1]`` (the config's ``eval.score_mode``).

NMS is **not** included (its ONNX form differs between runtimes): per image, keep the pairs above a score
threshold, take the top-k and run per-class NMS, exactly as
``detector.postprocess.select_detections(scores[b], boxes[b], score_thresh, pre_nms_topk, nms_iou, max_det)``
does; then undo the letterbox (``detector.data.transforms.unletterbox_boxes``): subtract the padding and
divide by the scale.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from detector.config import Config
from detector.errors import UserError
from detector.model import Detector
from detector.postprocess import ScoreMode, decode_outputs

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}
ONNX_OPSET = 18
INPUT_NAMES, OUTPUT_NAMES = ["images"], ["boxes", "scores"]


class ExportWrapper(nn.Module):
    """The detector plus decoding: ``images [B, 3, S, S]`` in ``[0, 1]`` → ``(boxes [B, N, 4], scores [B, N, C])``."""

    def __init__(self, model: Detector, score_mode: ScoreMode) -> None:
        super().__init__()
        self.model = model.eval()
        self.score_mode = score_mode

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self.model(images)
        scores, boxes = decode_outputs(outputs, self.score_mode, (images.shape[-2], images.shape[-1]))
        return boxes, scores


def export_model(model: Detector, path: str | Path, format: str, image_size: int, config: Config) -> Path:
    """Write ``model`` (on the CPU, fp32) as ONNX or TorchScript; returns ``path``.

    Args:
        format: ``"onnx"`` (opset 18, dynamic batch; needs ``onnx`` and ``onnxscript``) or
            ``"torchscript"`` (traced; any batch).
        image_size: the input side ``S`` (the training ``data.image_size`` is what the model knows best).
    """
    if format not in FORMATS:
        raise UserError(f"export format {format!r} is not one of {list(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.float().cpu(), config.eval.score_mode).eval()
    example = torch.rand(2, 3, image_size, image_size)
    with torch.no_grad(), warnings.catch_warnings():
        # tracing records the point grid and the clipping bounds of this input size as constants (wanted:
        # the export is for one size), and torch.jit says it is deprecated; neither is news to the user
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if format == "torchscript":
            torch.jit.trace(wrapper, example).save(str(path))
        else:
            _export_onnx(wrapper, example, path)
    return path


def _export_onnx(wrapper: nn.Module, example: Tensor, path: Path) -> None:
    """torch's ``torch.export``-based ONNX exporter, the batch axis left dynamic."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError("ONNX export needs the 'export' extra: pip install 'detector[export]'") from None
    dynamic = {INPUT_NAMES[0]: {0: torch.export.Dim("batch")}}
    program = torch.onnx.export(wrapper, (example,), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                                dynamic_shapes=dynamic, opset_version=ONNX_OPSET, dynamo=True, verbose=False)  # fmt: skip
    program.save(str(path))
