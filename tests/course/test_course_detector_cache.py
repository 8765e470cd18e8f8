"""The cached course detector (``course.resources``) is keyed by everything that shapes it."""

from __future__ import annotations

import pytest
import torch

from course import resources
from course.resources import course_training_config, recipe_key
from detector.config import config_from_dict


def _config(**changes: dict):
    """The course run's config (no data generated: a placeholder root) with ``{section: {key: value}}`` changed."""
    values = course_training_config(out_dir="runs/a", data_root="data/somewhere").to_dict()
    for section, entries in changes.items():
        values[section].update(entries)
    return config_from_dict(values, source="test")


def _run(source: str, steps: int, planned: int) -> resources.CourseRun:
    return resources.CourseRun(None, [], None, [], [{}] * steps, 0.0, source, {"total_steps": planned})


def test_a_run_cut_short_by_its_budget_says_so(capsys):
    resources._warn_if_cut_short(_run("cached", steps=10, planned=90))
    assert "did 10 of 90 planned steps" in capsys.readouterr().out
    resources._warn_if_cut_short(_run("cached", steps=90, planned=90))
    assert capsys.readouterr().out == ""


def test_the_key_ignores_where_files_go():
    here = recipe_key(course_training_config(out_dir="runs/a", data_root="data/here"))
    there = recipe_key(course_training_config(out_dir="/tmp/b", data_root="/elsewhere/arena"))
    assert here == there


@pytest.mark.parametrize(
    "changes",
    [
        {"model": {"neck_width": 48}},
        {"model": {"out_indices": [2, 3, 4]}},
        {"loss": {"cls": "qfl"}},
        {"data": {"image_size": 256}},
        {"data": {"batch_size": 4}},
        {"train": {"lr": 0.001}},
        {"train": {"epochs": 5}},
        {"train": {"max_minutes": 3.0}},
    ],
    ids=lambda changes: ".".join(f"{section}.{next(iter(entries))}" for section, entries in changes.items()),
)
def test_the_key_changes_with_every_setting_that_shapes_the_model(changes):
    assert recipe_key(_config(**changes)) != recipe_key(_config())


def test_the_key_changes_with_the_arena_the_overrides_and_the_format(monkeypatch):
    config = _config()
    base = recipe_key(config)
    monkeypatch.setattr(resources, "COURSE_ARENA", {**resources.COURSE_ARENA, "seed": 1})
    assert recipe_key(config) != base
    monkeypatch.undo()
    monkeypatch.setattr(
        resources, "COURSE_TRAIN_OVERRIDES", (*resources.COURSE_TRAIN_OVERRIDES, "train.lr=0.01")
    )
    assert recipe_key(config) != base
    monkeypatch.undo()
    monkeypatch.setattr(resources, "COURSE_DETECTOR_FORMAT", resources.COURSE_DETECTOR_FORMAT + 1)
    assert recipe_key(config) != base


def test_a_cache_file_of_another_config_is_retrained(monkeypatch, tmp_path):
    """course_run() reuses a cache file only when its key is today's; otherwise it trains again."""
    path = tmp_path / "course_detector.pt"
    monkeypatch.setattr(resources, "COURSE_DETECTOR_FILE", path)
    monkeypatch.setattr(resources, "arena_dir", lambda: tmp_path / "arena")
    trained = []
    monkeypatch.setattr(resources, "_train_course_detector", lambda target: trained.append(target))
    monkeypatch.setattr(resources, "_load_run", lambda target, source: _run(source, steps=10, planned=10))
    stale = {"format": resources.COURSE_DETECTOR_FORMAT, "key": recipe_key(_config(model={"neck_width": 48}))}
    torch.save({"recipe": stale}, path)
    assert resources.course_run().source == "course run, trained now" and trained == [path]
    current = {"format": resources.COURSE_DETECTOR_FORMAT, "key": recipe_key(_config())}
    torch.save({"recipe": current}, path)
    assert resources.course_run().source.startswith("cached course run") and trained == [path]
