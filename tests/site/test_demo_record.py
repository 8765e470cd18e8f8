"""``make record-demo`` keeps a finished run's figures and picture; the landing page is rendered from them."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
import yaml
from PIL import Image

from course import demo

CLASSES = ["enemy", "enemy-head", "friendly", "friendly-head"]


@pytest.fixture
def run_dir(tmp_path):
    """What ``detector train`` leaves in runs/<name>/, reduced to what the recorder reads."""
    run = tmp_path / "runs" / "arena_cpu"
    run.mkdir(parents=True)
    epochs = [
        {
            "epoch": 1,
            "step": 150,
            "loss": 7.1,
            "val_map": 0.21,
            "val_map_50": 0.5,
            "val_per_class_ap50": [0.6] * 4,
        },
        {"epoch": 2, "step": 300, "loss": 5.9},  # no evaluation this epoch
        {
            "epoch": 3,
            "step": 412,
            "loss": 5.2,
            "val_map": 0.4412,
            "val_map_50": 0.7861,
            "val_per_class_ap50": [0.921, 0.655, 0.934, 0.634],
        },  # fmt: skip
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    config = {"name": "arena_cpu", "model": {"backbone": "resnet18", "pretrained": None},
              "data": {"image_size": 320}, "train": {"max_minutes": 12.5}}  # fmt: skip
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save({"class_names": CLASSES}, run / "last.pt")
    Image.new("RGB", (2800, 1400), (40, 90, 160)).save(run / "predictions.png")
    start = 1_790_000_000.0
    os.utime(run / "config.yaml", (start, start))
    os.utime(run / "predictions.png", (start + 630.0, start + 630.0))  # 10.5 minutes later
    return run


def test_record_keeps_the_last_evaluated_epoch(run_dir, tmp_path):
    out = tmp_path / "demo"
    record = demo.record(run_dir, out)
    assert (record["epoch"], record["step"], record["map"], record["map_50"]) == (3, 412, 0.4412, 0.7861)
    assert record["per_class_ap50"] == dict(zip(CLASSES, [0.921, 0.655, 0.934, 0.634], strict=True))
    assert record["train_minutes"] == pytest.approx(10.5)
    assert record["date"] == "2026-09-21T14:23:50+00:00"  # 1_790_000_630 s after the epoch, in UTC
    assert json.loads((out / demo.RECORD_NAME).read_text()) == record
    with Image.open(out / demo.PICTURE_NAME) as picture:
        assert picture.size == (demo.PICTURE_MAX_WIDTH, 700) and picture.format == "JPEG"


def test_landing_caption_shows_the_recorded_figures(run_dir, tmp_path):
    demo.record(run_dir, tmp_path)
    text = demo.render_markdown(tmp_path, picture_uri="assets/demo/predictions.jpg")
    assert "![The trained detector on validation images](assets/demo/predictions.jpg)" in text
    for part in ("resnet18 from scratch, 320 px, 412 steps in 10.5 minutes", "mAP 0.44, mAP50 0.79",
                 "enemy 0.92, enemy-head 0.66, friendly 0.93, friendly-head 0.63", "Measured 2026-09-21 on "):  # fmt: skip
        assert part in text, f"{part!r} not in {text!r}"


def test_the_record_names_the_commit_of_the_checkout_that_trained(run_dir, tmp_path):
    out = tmp_path / "demo"
    assert demo.record(run_dir, out)["commit"] is None  # pytest's tmp_path is in no git checkout
    assert "trained outside a git checkout (commit unknown)" in demo.render_markdown(out)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=learner", "-c", "user.email=learner@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "README.md").write_text("a fresh clone\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the code that trained"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
    record = demo.record(run_dir, out)  # recorded from this repository, whose HEAD is another commit
    assert (record["commit"], record["uncommitted_changes"]) == (head.stdout.strip(), False)
    assert f"trained at commit `{record['commit']}`." in demo.render_markdown(out)
    (tmp_path / "README.md").write_text("edited after the commit\n")
    assert demo.record(run_dir, out)["uncommitted_changes"] is True
    assert "plus uncommitted changes" in demo.render_markdown(out)


def test_a_record_of_another_config_is_marked_stale(run_dir, tmp_path):
    from detector.config import load_config, save_config

    demo.record(run_dir, tmp_path)  # the fixture's config.yaml is not the shipped arena_cpu
    assert demo.render_markdown(tmp_path).startswith('!!! warning "Stale: rerun `make train`')
    save_config(load_config("arena_cpu"), run_dir / "config.yaml")  # what `make train` writes
    demo.record(run_dir, tmp_path)
    assert demo.render_markdown(tmp_path).startswith("![The trained detector")


def test_without_a_record_the_page_says_so(tmp_path):
    assert demo.render_markdown(tmp_path) == demo.NO_RECORD


def test_an_unfinished_run_is_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"metrics\.jsonl: not found; run `make train` first"):
        demo.record(tmp_path, tmp_path / "demo")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "step": 10, "loss": 9.0}) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl: no epoch with validation metrics"):
        demo.record(tmp_path, tmp_path / "demo")


def _other_seed(run_dir, tmp_path, seed, final_map, final_map_50, **train):
    """A copy of the fixture's run with another ``seed`` (and ``train`` settings), ending at the given mAPs."""
    other = tmp_path / "runs" / f"arena_cpu_seed{seed}"
    other.mkdir(parents=True)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["seed"] = seed
    config["train"].update(train)
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    final = {"epoch": 3, "step": 409, "val_map": final_map, "val_map_50": final_map_50}
    (other / "metrics.jsonl").write_text(json.dumps(final) + "\n")
    return other


def test_record_keeps_every_seed_and_the_caption_shows_them(run_dir, tmp_path):
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    (run_dir / "config.yaml").write_text(yaml.safe_dump({**config, "seed": 0}))
    others = [
        _other_seed(run_dir, tmp_path, 1, 0.4321, 0.8012),
        _other_seed(run_dir, tmp_path, 2, 0.45, 0.79),
    ]
    record = demo.record(run_dir, tmp_path / "demo", other_seeds=others)
    assert [(run["seed"], run["step"], run["map"], run["map_50"]) for run in record["seeds"]] == [
        (0, 412, 0.4412, 0.7861), (1, 409, 0.4321, 0.8012), (2, 409, 0.45, 0.79)]  # fmt: skip
    # the pictured run's figures stay the headline
    assert record["map"] == 0.4412 and record["map_50"] == 0.7861
    text = demo.render_markdown(tmp_path / "demo")
    assert "Seeds 0, 1, 2: mAP 0.441 / 0.432 / 0.450, mAP50 0.786 / 0.801 / 0.790." in text


def test_one_seed_adds_no_spread_to_the_caption(run_dir, tmp_path):
    assert demo.record(run_dir, tmp_path)["seeds"][0]["map"] == 0.4412
    assert "Seeds" not in demo.render_markdown(tmp_path)


def test_a_run_of_another_config_is_not_counted_as_a_seed(run_dir, tmp_path):
    longer = _other_seed(run_dir, tmp_path, 1, 0.6, 0.9, max_minutes=30)
    with pytest.raises(
        ValueError, match=r"arena_cpu_seed1/config\.yaml: this run's config differs .* `seed`"
    ):
        demo.record(run_dir, tmp_path / "demo", other_seeds=[longer])
    assert not (tmp_path / "demo" / demo.RECORD_NAME).exists()  # nothing written
