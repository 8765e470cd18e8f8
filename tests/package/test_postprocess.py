"""postprocess: score modes, multi-label top-k + per-class NMS against a loop reference, edge cases."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torchvision.ops import nms

from detector.postprocess import detection_scores, postprocess, select_detections


class Outputs(NamedTuple):
    """Same fields as detector.model.DetectorOutput."""

    cls_logits: torch.Tensor
    box_ltrb: torch.Tensor
    obj_logits: torch.Tensor
    points: torch.Tensor
    strides: torch.Tensor


def random_outputs(seed: int, batch: int = 2, num_points: int = 60, num_classes: int = 3) -> Outputs:
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(num_points, 2, generator=generator) * 100
    return Outputs(
        cls_logits=torch.randn(batch, num_points, num_classes, generator=generator) * 2,
        box_ltrb=torch.rand(batch, num_points, 4, generator=generator) * 30 + 1,
        obj_logits=torch.randn(batch, num_points, 1, generator=generator),
        points=points,
        strides=torch.full((num_points,), 8.0),
    )


def reference_postprocess(outputs: Outputs, image: int, score_thresh, pre_nms_topk, nms_iou, max_det):
    """Loop over (point, class) pairs, then NMS class by class (torchvision.ops.nms)."""
    cls = torch.sigmoid(outputs.cls_logits[image])
    obj = torch.sigmoid(outputs.obj_logits[image, :, 0])
    candidates = []
    for n in range(cls.shape[0]):
        x, y = outputs.points[n].tolist()
        left, top, right, bottom = outputs.box_ltrb[image, n].tolist()
        for c in range(cls.shape[1]):
            score = (cls[n, c] * obj[n]).sqrt().item()
            candidates.append((score, c, [x - left, y - top, x + right, y + bottom]))
    candidates = sorted(candidates, key=lambda item: -item[0])[:pre_nms_topk]
    candidates = [item for item in candidates if item[0] > score_thresh]
    kept = []
    for c in {item[1] for item in candidates}:
        of_class = [item for item in candidates if item[1] == c]
        boxes = torch.tensor([item[2] for item in of_class])
        scores = torch.tensor([item[0] for item in of_class])
        kept += [of_class[i] for i in nms(boxes, scores, nms_iou).tolist()]
    return sorted(kept, key=lambda item: -item[0])[:max_det]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("pre_nms_topk,max_det", [(1000, 100), (40, 15)])
def test_matches_loop_reference(seed: int, pre_nms_topk: int, max_det: int) -> None:
    outputs = random_outputs(seed)
    detections = postprocess(
        outputs, score_thresh=0.2, pre_nms_topk=pre_nms_topk, nms_iou=0.5, max_det=max_det
    )
    assert len(detections) == 2
    for image, got in enumerate(detections):
        expected = reference_postprocess(outputs, image, 0.2, pre_nms_topk, 0.5, max_det)
        assert len(got["scores"]) == len(expected) > 0
        torch.testing.assert_close(got["scores"], torch.tensor([item[0] for item in expected]))
        assert got["labels"].tolist() == [item[1] for item in expected]
        torch.testing.assert_close(got["boxes"], torch.tensor([item[2] for item in expected]))


def test_score_modes() -> None:
    cls_logits, obj_logits = torch.tensor([[[0.3, -1.2]]]), torch.tensor([[[0.7]]])
    p, q = torch.sigmoid(cls_logits), torch.sigmoid(obj_logits)
    torch.testing.assert_close(detection_scores(cls_logits, obj_logits, "cls"), p)
    torch.testing.assert_close(detection_scores(cls_logits, obj_logits, "cls_obj"), p * q)
    torch.testing.assert_close(detection_scores(cls_logits, obj_logits, "cls_obj_sqrt"), (p * q).sqrt())
    with pytest.raises(ValueError, match="score_mode='max'"):
        detection_scores(cls_logits, obj_logits, "max")  # type: ignore[arg-type]


def single_point_outputs(cls_logits: list[float], ltrb: list[float], point=(10.0, 10.0)) -> Outputs:
    return Outputs(
        cls_logits=torch.tensor([[cls_logits]]),
        box_ltrb=torch.tensor([[ltrb]]),
        obj_logits=torch.full((1, 1, 1), 20.0),  # σ ≈ 1
        points=torch.tensor([point]),
        strides=torch.tensor([8.0]),
    )


def test_decoding_and_multi_label() -> None:
    """One point, two confident classes: two detections with the same decoded box (no argmax)."""
    (got,) = postprocess(single_point_outputs([4.0, 3.0, -9.0], [2.0, 3.0, 4.0, 5.0]), score_mode="cls")
    assert got["labels"].tolist() == [0, 1]
    torch.testing.assert_close(got["boxes"], torch.tensor([[8.0, 7.0, 14.0, 15.0]] * 2))
    torch.testing.assert_close(got["scores"], torch.sigmoid(torch.tensor([4.0, 3.0])))
    assert got["boxes"].dtype == torch.float32 and got["labels"].dtype == torch.int64


def test_clip_to_image_size() -> None:
    outputs = single_point_outputs([5.0], [20.0, 3.0, 100.0, 5.0], point=(10.0, 30.0))
    (got,) = postprocess(outputs, image_size=(32, 64))
    torch.testing.assert_close(got["boxes"], torch.tensor([[0.0, 27.0, 64.0, 32.0]]))


def test_empty_results_have_shapes() -> None:
    (got,) = postprocess(single_point_outputs([-9.0, -9.0], [1.0, 1.0, 1.0, 1.0]))
    assert got["boxes"].shape == (0, 4) and got["scores"].shape == (0,) and got["labels"].shape == (0,)
    assert got["boxes"].dtype == torch.float32 and got["labels"].dtype == torch.int64
    empty = Outputs(
        torch.zeros(2, 0, 3), torch.zeros(2, 0, 4), torch.zeros(2, 0, 1), torch.zeros(0, 2), torch.zeros(0)
    )
    assert [d["boxes"].shape for d in postprocess(empty)] == [(0, 4), (0, 4)]


def test_max_det_and_half_precision() -> None:
    outputs = random_outputs(7, batch=1, num_points=300)
    half = outputs._replace(cls_logits=outputs.cls_logits.half(), box_ltrb=outputs.box_ltrb.half())
    (got,) = postprocess(half, score_thresh=0.0, max_det=5, nms_iou=0.99)
    assert got["scores"].shape == (5,) and got["scores"].dtype == torch.float32
    assert torch.all(got["scores"][:-1] >= got["scores"][1:])


def test_agnostic_nms_suppresses_across_classes() -> None:
    # two points whose boxes overlap with IoU 0.8 (hand-computed: 80 / 100), the first scoring higher for
    # class 0, the second for class 1; a third, disjoint box
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 8], [50.0, 50, 60, 60]])
    scores = torch.tensor([[0.9, 0.0], [0.0, 0.8], [0.0, 0.7]])
    per_class = select_detections(scores, boxes, 0.05, 1000, 0.6, 100)
    assert per_class["labels"].tolist() == [0, 1, 1]
    agnostic = select_detections(scores, boxes, 0.05, 1000, 0.6, 100, agnostic_nms=True)
    assert agnostic["labels"].tolist() == [0, 1] and agnostic["scores"].tolist() == pytest.approx([0.9, 0.7])
    # the same as one torchvision nms over every candidate, whatever its class
    candidates = scores.max(1)
    assert nms(boxes, candidates.values, 0.6).tolist() == [0, 2]
