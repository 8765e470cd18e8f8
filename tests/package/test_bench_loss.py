"""The loss ablation: its summary over seeds and its choice among the calibrated losses, and a smoke run."""

from __future__ import annotations

import os
import sys

import pytest

from course.paths import REPO_ROOT

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import bench_loss, report  # noqa: E402
from detector.config import LossConfig, load_config  # noqa: E402


def _run(loss, seed, data, value):
    return {"loss": loss, "seed": seed, "data": data, "final": {"map": value, "map_50": 2 * value}}


def test_summary_over_seeds_and_the_best_calibrated_loss_ignores_focal():
    runs = [_run("qfl", 0, "a", 0.30), _run("qfl", 1, "a", 0.34), _run("focal", 0, "a", 0.50),
            _run("focal", 1, "a", 0.52), _run("bce", 0, "a", 0.31), _run("bce", 1, "a", 0.29),
            _run("qfl", 0, "b", 0.20), _run("focal", 0, "b", 0.9), _run("bce", 0, "b", 0.25)]  # fmt: skip
    table = bench_loss.summarise(runs)
    assert table["a"]["qfl"] == pytest.approx(
        {"map_mean": 0.32, "map_min": 0.30, "map_max": 0.34, "map_50_mean": 0.64, "seeds": 2}
    )
    # means over data sets: qfl (0.32 + 0.20) / 2 = 0.26, bce (0.30 + 0.25) / 2 = 0.275; focal is never chosen
    assert bench_loss.best_calibrated(table) == "bce"
    page = report.section_loss({"summary": table, "best_calibrated": "bce",
                                "settings": {"config": "arena_cpu", "minutes": [5, 3], "imgsz": 416,
                                             "lanes": 2, "threads": 1}})  # fmt: skip
    assert "| `qfl` (calibrated) | 0.3200 | 0.3000 – 0.3400 | 0.6400 | 2 |" in page
    assert "| `focal` | 0.5100 |" in page
    assert "**a** (5 min per run, 416 px)" in page and "**b** (3 min per run, 416 px)" in page
    assert "2 runs at a time, each on one pinned core" in page
    # a best loss other than the shipped default is said loudly; the default itself is not
    for best in ("qfl", "bce", "varifocal"):
        record = {"summary": table, "best_calibrated": best, "settings": {"config": "arena_cpu", "minutes": [5, 3],
                  "imgsz": 416, "lanes": 2, "threads": 1}}  # fmt: skip
        warned = '!!! warning "The default is not the best calibrated loss' in report.section_loss(record)
        assert warned == (best != LossConfig().cls)
    # a config that sets another loss than the package's default says so
    own = load_config("arena_cpu").loss.cls
    assert (f"`arena_cpu` sets `{own}`" in page) == (own != LossConfig().cls)


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [1, 2])
def test_smoke_run_trains_each_loss(tmp_path, lanes):
    if lanes > len(os.sched_getaffinity(0)):
        pytest.skip(f"{lanes} lanes need {lanes} cores")
    out = tmp_path / "loss.json"
    record = bench_loss.main(
        ["--smoke", "--losses", "qfl", "focal", "--lanes", str(lanes), "--out", str(out)]
    )
    assert set(record["summary"]["arena"]) == {"qfl", "focal"}
    assert record["settings"]["lanes"] == lanes
    assert record["best_calibrated"] == "qfl"
    assert (tmp_path / "loss.json").exists()


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("data", ["arena", "../shared/datasets/chess-pieces"])
def test_the_keys_left_out_of_the_fingerprint_are_set_by_every_run(monkeypatch, tmp_path, lanes, data):
    """A key left out of the result's config fingerprint must not shape the result: each run sets it itself."""
    import argparse

    from benchmarks import peers

    captured = {}

    def train(config, settings, budget_counts_evaluation=True):
        captured.update(settings, budget_counts_evaluation=budget_counts_evaluation)
        raise InterruptedError  # what was asked is all this test needs

    monkeypatch.setattr("detector.api.train", train)
    args = argparse.Namespace(
        data=[data], minutes=[1.0], lanes=lanes, imgsz=416, smoke=False, config="arena_cpu"
    )
    with pytest.raises(InterruptedError):
        bench_loss.run("qfl", 0, data, args, tmp_path)
    assert set(bench_loss.varied_keys(args)) <= set(captured)
    assert set(peers.CURVE_KEYS) <= set(captured)
    assert captured["budget_counts_evaluation"] is False  # the curve's clock counts training, as the peer's
