"""A tiny detector overfits one arena image: the loss collapses and the predictions land on the GT boxes.

The end-to-end check of Chapters 2-7 together: data → model → assigner → losses → optimiser →
post-processing. Each part has exact unit tests; this one fails when they do not fit together (a sign, a
coordinate frame, a level order, a normalisation that no unit test sees).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.ops import box_iou

from detector.config import ModelConfig
from detector.data import CocoDetection, generate_arena, pad_targets
from detector.losses import DetectionLoss
from detector.model import build_detector

IMAGE_SIZE = 192  # the arena at 192 px: figures 10-60 px tall, heads 3-11 px
IMAGE_INDEX = 2  # arena seed 0, train image 2: 12 boxes of all four classes
STEPS = 150
LEARNING_RATE = 3e-3
MATCH_IOU = 0.7  # the bar: every learnable GT is found with IoU > 0.7
MIN_LEARNABLE = 6  # GTs the assigner gives positives (a head smaller than the stride holds no cell centre)
SEED = 0


@pytest.fixture
def one_thread():
    """One intra-op thread: the same reduction order on every machine (the result does not depend on the
    core count), and faster for a model this small (2 threads on a busy 2-core machine were 10× slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_tiny_model_overfits_one_arena_image(tmp_path: Path) -> None:
    root = generate_arena(tmp_path / "arena", IMAGE_INDEX + 1, 0, 0, image_size=IMAGE_SIZE, seed=0, workers=1)
    dataset = CocoDetection(root / "train")
    image, target = dataset[IMAGE_INDEX]
    images = image[None]
    gt_labels, gt_boxes, gt_mask = pad_targets([target])
    torch.manual_seed(SEED)
    config = ModelConfig(backbone="mobilenetv3_small_050", neck_width=32, head_convs=1)
    model = build_detector(config, num_classes=len(dataset.class_names)).train()
    criterion = DetectionLoss(len(dataset.class_names))
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    history = []
    for _ in range(STEPS):
        loss = criterion(model(images), gt_labels, gt_boxes, gt_mask)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        history.append({"total": loss.total.item(), **{k: v.item() for k, v in loss.components.items()}})
    first, last = history[0], history[-1]
    # The objectness term has a floor (BCE towards IoU targets < 1 is the targets' entropy), and so has a
    # calibrated classification loss (its minimum is at the soft target t, where BCE(t, t) is t's entropy): the
    # bar is on the total relative to the start, on cls relative to its floor under the last assignment (the
    # loss of logits equal to the targets) and on the box term, which can reach ~0.
    assigned = loss.assignment
    at_targets = torch.logit(assigned.scores.clamp(1e-6, 1 - 1e-6))
    cls_floor = (
        criterion.config.cls_weight
        * criterion.cls_loss(at_targets, assigned)
        / assigned.scores.sum().clamp(min=1)
    )
    assert last["total"] < 0.35 * first["total"], (first, last)
    assert last["cls"] < cls_floor.item() + 0.05 and last["box"] < 0.3, (
        last,
        cls_floor.item(),
    )  # cls starts ~1.8

    # The GTs the model was taught: those with positives in the last assignment (a GT smaller than the
    # stride has no candidate point; a head's only candidate may go to its body, rule 4).
    assignment = loss.assignment
    learnable = torch.zeros(gt_mask.shape[1], dtype=torch.bool)
    learnable[assignment.gt_index[assignment.fg_mask]] = True
    assert learnable.sum() >= MIN_LEARNABLE, f"only {int(learnable.sum())} GTs got positives"
    detections = model.predict(images, score_thresh=0.3)[0]
    iou = box_iou(target["boxes"], detections["boxes"])  # [M, K]
    same_class = target["labels"][:, None] == detections["labels"][None, :]
    best = (iou * same_class).amax(dim=1) if len(detections["boxes"]) else torch.zeros(len(iou))
    assert (best[learnable] > MATCH_IOU).all(), f"best IoU per learnable GT: {best[learnable].tolist()}"
    confident = detections["scores"] > 0.5
    hits = (iou * same_class)[:, confident].amax(dim=0) > 0.5
    assert hits.all(), (
        f"confident detections on no GT of their class: {detections['boxes'][confident][~hits]}"
    )
