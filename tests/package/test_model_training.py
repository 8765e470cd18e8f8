"""One optimisation step of the model with the real loss lowers the loss on a fixed batch."""

from __future__ import annotations

import torch

from detector import losses
from detector.config import ModelConfig
from detector.model import build_detector


def test_one_training_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = build_detector(ModelConfig(neck_width=32, head_convs=1, freeze=2), num_classes=2).train()
    criterion = losses.DetectionLoss(num_classes=2)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    gt_boxes = torch.tensor(
        [[[8.0, 8.0, 40.0, 48.0], [30.0, 20.0, 60.0, 36.0]], [[4.0, 10.0, 28.0, 60.0], [0, 0, 0, 0]]]
    )
    gt_labels = torch.tensor([[0, 1], [1, 0]])
    gt_mask = torch.tensor([[True, True], [True, False]])
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.01, momentum=0.0)
    before = criterion(model(images), gt_labels, gt_boxes, gt_mask).total
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = criterion(model(images), gt_labels, gt_boxes, gt_mask).total
    assert torch.isfinite(before) and after < before
