"""Benchmark results record what they measured, and the Benchmarks page marks those a config change outdated."""

from __future__ import annotations

import json
import sys

from course.paths import REPO_ROOT

if str(REPO_ROOT) not in sys.path:  # benchmarks/ is a folder of the repository
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import report  # noqa: E402
from benchmarks.common import provenance  # noqa: E402
from detector.config import config_fingerprint, load_config  # noqa: E402


def test_fingerprint_is_equal_for_equal_configs_and_differs_for_any_changed_value():
    base = config_fingerprint(load_config("arena_cpu"))
    assert base == config_fingerprint(load_config("arena_cpu"))
    for override in ("train.epochs=13", "model.out_indices=[2,3,4]", "loss.cls=qfl", "data.hflip=0.0"):
        assert config_fingerprint(load_config("arena_cpu", [override])) != base, override


def test_fingerprint_ignores_only_the_named_keys():
    base = load_config("arena_cpu")
    ignoring = config_fingerprint(base, ["loss.cls"])
    assert ignoring != config_fingerprint(base)
    assert config_fingerprint(load_config("arena_cpu", ["loss.cls=qfl"]), ["loss.cls"]) == ignoring
    assert config_fingerprint(load_config("arena_cpu", ["loss.box=giou"]), ["loss.cls"]) != ignoring


def test_a_result_stays_current_when_the_default_of_a_key_it_varied_changes(monkeypatch):
    record = {"provenance": provenance(["arena_cpu"], varied=["loss.cls"])}
    assert record["provenance"]["varied"] == ["loss.cls"]
    shipped = load_config

    def new_default(name, overrides=()):
        return shipped(name, [*overrides, "loss.cls=qfl"])

    monkeypatch.setattr("detector.config.load_config", new_default)
    assert report.staleness(record) is None
    assert "changed since" in report.staleness({"provenance": provenance(["arena_cpu"])})


def test_provenance_records_the_commit_and_each_configs_fingerprint():
    record = provenance(["arena_cpu", "seed"])
    assert record["configs"] == {
        "arena_cpu": config_fingerprint(load_config("arena_cpu")),
        "seed": config_fingerprint(load_config("seed")),
    }
    assert record["commit"] is None or len(record["commit"].removesuffix("+dirty")) == 12


def test_staleness_of_current_changed_missing_and_unrecorded_results():
    current = {"provenance": provenance(["arena_cpu"])}
    assert report.staleness(current) is None
    changed = {"provenance": {"commit": "abc", "configs": {"arena_cpu": "000000000000"}}}
    assert "the shipped config `arena_cpu` changed since" in report.staleness(changed)
    assert "commit abc" in report.staleness(changed)
    gone = {"provenance": {"commit": "abc", "configs": {"no_such_config": "000000000000"}}}
    assert "no longer loads" in report.staleness(gone)
    assert "before results recorded their config" in report.staleness({"date": "2026-11-25"})


def _write(results_dir, stem, record):
    (results_dir / f"{stem}.json").write_text(json.dumps(record))


def test_page_flags_stale_sections_loudly_and_leaves_current_ones_alone(tmp_path):
    assigner = {
        "date": "2026-11-29",
        "machine": "x86_64",
        "threads": 2,
        "torch": "2.14.1",
        "results": [],
        "speedup": 1.0,
    }
    _write(tmp_path, "assigner", {**assigner, "provenance": provenance([])})
    page = report.render_markdown(tmp_path)
    assert "Stale" not in page
    command = "python -m benchmarks.bench_assigner --gts 8"
    stale = {**assigner, "command": command, "provenance": {"commit": "abc", "configs": {"arena_cpu": "0"}}}
    _write(tmp_path, "assigner", stale)
    page = report.render_markdown(tmp_path)
    assert page.startswith('!!! danger "Stale')
    assert "1 section(s) were measured on configs that no longer ship (Assigner (row 3))" in page
    assert page.count('!!! danger "Stale') == 2  # the page's banner and the section's
    assert f"Measure it again with `{command}`" in page  # the result's own command, not `make bench`


def test_results_are_strict_json_and_record_the_commit_of_the_start(tmp_path, monkeypatch):
    from benchmarks import common

    monkeypatch.setattr(common, "git_commit", lambda: "start")
    recorder = common.Recorder("bench_x", [], common.torch.device("cpu"), False, {}, configs=())
    monkeypatch.setattr(common, "git_commit", lambda: "end")
    path = tmp_path / "x.json"
    record = recorder.write({"per_class": [float("nan"), 0.5]}, path)
    assert record["provenance"]["commit"] == "start"
    assert json.loads(path.read_text())["per_class"] == [None, 0.5]
    assert "NaN" not in path.read_text()
