"""Chapter 10's prose against the shipped configs and the package."""

from __future__ import annotations

import timm

from course.exercises import load_exercises
from course.paths import SOLUTIONS_DIR
from detector.config import load_config

NOTEBOOK = SOLUTIONS_DIR / "10_visualization.py"
TEXT = NOTEBOOK.read_text()


def _strides(config) -> list[int]:
    model = timm.create_model(config.model.backbone, pretrained=False, features_only=True,
                              out_indices=config.model.out_indices)  # fmt: skip
    return list(model.feature_info.reduction())


def test_the_demo_model_the_prose_describes_is_the_shipped_one():
    demo = load_config("arena_cpu")
    strides = "/".join(map(str, _strides(demo)))
    assert f"the demo config runs strides {strides}" in TEXT
    assert f"The demo detects on strides {strides}" in TEXT
    assert f"at {demo.data.image_size} px" in TEXT
    assert "add a stride-4 level" not in TEXT and "a point every 8 pixels" not in TEXT


def test_center_radius_is_described_as_the_package_implements_it():
    """In detector.assigner, center_radius only removes candidates (an AND with "inside the box")."""
    assert "`loss.assigner.center_radius` only *removes*" in TEXT
    assert (
        "mask &= offsets < center_radius" in (SOLUTIONS_DIR.parent / "detector" / "assigner.py").read_text()
    )


def test_the_gpu_recipes_are_the_shipped_configs():
    roboflow = load_config("roboflow")
    assert (roboflow.model.backbone, roboflow.data.image_size, roboflow.train.epochs, roboflow.train.amp) == (
        "resnet50",
        640,
        50,
        True,
    )
    assert "# resnet50, 640 px, 50 epochs, AMP on a GPU" in TEXT
    halo = load_config("halo_r50")
    assert (
        halo.model.backbone,
        halo.data.image_size,
        halo.train.optimizer,
        halo.train.lr,
        halo.train.epochs,
    ) == (
        "resnet50",
        640,
        "adam",
        1e-3,
        30,
    )
    assert "ResNet-50, 640 px, Adam 1e-3, cosine, 30 epochs" in TEXT


def test_the_localisation_band_is_the_constant():
    minimum = load_exercises(NOTEBOOK).LOCALIZATION_MIN_IOU
    assert f"IoU in [{minimum}, 0.5)" in TEXT
