"""Every benchmark script runs (``--smoke``: tiny sizes) and writes what the Benchmarks page reads.

The figures themselves are not tested (they are measurements); the tests check the scripts end to end, the
invariants of their results (the stage split of a step adds up to the step; detections respect
``max_det``), the FCOS peer against torchvision's own construction, and the page generated from the JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from course.paths import REPO_ROOT

if str(REPO_ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import (  # noqa: E402
    bench_data,
    bench_gpu,
    bench_inference,
    bench_quality,
    bench_train_step,
    report,
    run_all,
)
from benchmarks.peers import GN_CHANNELS_PER_GROUP, build_fcos  # noqa: E402

MAX_DET = 100  # EvalConfig.max_det


@pytest.fixture(autouse=True)
def restore_threads():
    """Smoke runs use one torch thread; give the rest of the session its threads back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("results")


def _smoke(module: Any, stem: str, results_dir: Path) -> dict[str, Any]:
    """Run one benchmark in smoke mode into ``results_dir/<stem>.json`` (once per module: fixtures below)."""
    threads = torch.get_num_threads()
    try:
        return module.main(["--smoke", "--device", "cpu", "--out", str(results_dir / f"{stem}.json")])
    finally:
        torch.set_num_threads(threads)


# One fixture per benchmark, so that each test gets the results it reads whatever ran before it.
@pytest.fixture(scope="module")
def train_step_record(results_dir: Path) -> dict[str, Any]:
    return _smoke(bench_train_step, "train_step", results_dir)


@pytest.fixture(scope="module")
def inference_record(results_dir: Path) -> dict[str, Any]:
    return _smoke(bench_inference, "inference", results_dir)


@pytest.fixture(scope="module")
def data_record(results_dir: Path) -> dict[str, Any]:
    return _smoke(bench_data, "data", results_dir)


@pytest.fixture(scope="module")
def quality_record(results_dir: Path) -> dict[str, Any]:
    return _smoke(bench_quality, "quality", results_dir)


def test_fcos_peer_is_torchvisions_resnet18_fpn_fcos():
    ours = build_fcos(num_classes=4, image_size=320)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256),
                                   norm_layer=nn.BatchNorm2d)  # fmt: skip
    reference = FCOS(backbone, num_classes=4, min_size=320, max_size=320)
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: v.shape for k, v in reference.state_dict().items()}
    assert ours.transform.min_size == (320,) and ours.transform.max_size == 320  # no resize to 800 px


def test_narrow_fcos_has_the_width_and_group_size_asked_for():
    model = build_fcos(num_classes=4, image_size=96, width=96)
    norms = [m for m in model.head.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_channels == 96 and m.num_groups == 96 // GN_CHANNELS_PER_GROUP for m in norms)
    assert model.backbone.out_channels == 96
    with pytest.raises(ValueError, match="multiple"):
        build_fcos(num_classes=4, image_size=96, width=100)


@pytest.mark.slow
def test_train_step_smoke(train_step_record: dict[str, Any], results_dir: Path):
    record = train_step_record
    assert json.loads((results_dir / "train_step.json").read_text())["benchmark"] == "bench_train_step"
    assert set(record["step_seconds"]) == {"ours", "fcos", "backbone", "ours_split"}
    assert record["ratios"]["ours_over_fcos"] > 0 and len(record["load_average_start"]) == 3
    # one timed run after one warm-up: the stages of the timed split step add up to (at most) its time
    stages = sum(record["split_seconds"].values())
    assert 0.5 * record["step_seconds"]["ours_split"] < stages <= record["step_seconds"]["ours_split"] * 1.001


@pytest.mark.slow
def test_inference_smoke(inference_record: dict[str, Any]):
    record = inference_record
    assert [(row["image_size"], row["batch"]) for row in record["rows"]] == list(
        bench_inference.SMOKE_SETTINGS
    )
    for row in record["rows"]:
        assert all(0 < count <= MAX_DET for count in row["detections_per_image"].values())


@pytest.mark.slow
def test_data_smoke(data_record: dict[str, Any]):
    record = data_record
    assert [row["image_size"] for row in record["rows"]] == [64, 96]
    for row in record["rows"]:
        assert set(row["loader"]) == {"0", "2"} and all(
            r["images_per_second"] > 0 for r in row["loader"].values()
        )
    assert set(record["rows"][0]["pipeline"]) == {"0", "2"}


@pytest.mark.slow
def test_quality_smoke(quality_record: dict[str, Any], results_dir: Path):
    record = quality_record
    assert list(record["contenders"]) == list(bench_quality.CONTENDERS)
    for row in record["contenders"].values():
        assert row["steps"] == bench_quality.SMOKE["max_steps"] and len(row["curve"]) == 1
        assert set(bench_quality.TABLE_KEYS) <= set(row["final"])
    assert (results_dir / "quality.png").stat().st_size > 0


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    budget, floor = 100.0, 0.05
    assert bench_quality.lr_factor(0.0, budget, floor) == 0.0
    assert bench_quality.lr_factor(bench_quality.WARMUP_FRACTION * budget, budget, floor) == pytest.approx(
        floor
        + (1 - floor) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * bench_quality.WARMUP_FRACTION))).item()
    )
    assert bench_quality.lr_factor(budget, budget, floor) == pytest.approx(floor)


def test_gpu_benchmark_skips_without_cuda(results_dir: Path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert bench_gpu.main(["--out", str(results_dir / "gpu.json")]) == {"skipped": "no CUDA device"}
    assert not (results_dir / "gpu.json").exists()


@pytest.mark.slow
def test_gpu_benchmark_code_runs_on_cpu_in_smoke_mode(tmp_path: Path):
    record = bench_gpu.main(["--smoke", "--device", "cpu", "--out", str(tmp_path / "gpu.json")])
    assert set(record["variants"]) == {"eager", "channels_last"}  # torch.compile is left to the GPU run


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench_assigner", "bench_eval"])
def test_scripts_of_other_rows_smoke(script: str):
    done = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--smoke"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_report_without_results_says_not_measured(tmp_path: Path):
    page = report.render_markdown(tmp_path)
    assert page.count("Not measured yet") == len(report.SECTIONS)  # every section, the GPU note included
    assert "make bench" in page and report.plot_files(tmp_path) == []


@pytest.mark.slow
def test_report_renders_the_smoke_results(train_step_record, quality_record, results_dir: Path):
    page = report.render_markdown(results_dir)
    for label in bench_quality.LABELS.values():
        assert label in page
    assert "ours / FCOS" in page and "load average" in page
    assert f"({report.SITE_PLOT_DIR}/quality.png)" in page
    assert report.plot_files(results_dir) == [
        (f"{report.SITE_PLOT_DIR}/quality.png", results_dir / "quality.png")
    ]


def test_run_all_passes_the_budget_to_the_quality_benchmark():
    args = argparse.Namespace(smoke=False, quality_minutes=3.0, quality_evals=2, threads=1)
    assert run_all.command("quality", args)[-6:] == ["--minutes", "3.0", "--evals", "2", "--threads", "1"]
    assert "--threads" not in run_all.command("assigner", args)
