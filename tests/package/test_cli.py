"""The ``detector`` command: every sub-command on tiny data, --help everywhere, one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detector.cli import main

COMMANDS = ("train", "eval", "predict", "arena")
TINY = ["data.image_size=64", "data.batch_size=2", "data.workers=0", "model.neck_width=16", "model.head_convs=1",
        "train.warmup_steps=1", "train.max_minutes=null", "train.device=cpu"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see tests/package/test_engine.py: shared cores, spinning OpenMP teams
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def arena_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "arena"
    assert main(["arena", "--out", str(root), "--n-train", "4", "--n-valid", "2", "--n-test", "2",
                 "--image-size", "96"]) == 0  # fmt: skip
    return root


@pytest.fixture(scope="module")
def weights(arena_root: Path) -> Path:
    out_dir = arena_root.parent / "runs"
    assert main(["train", "--data", str(arena_root), "--name", "cli", *TINY, "train.epochs=1",
                 f"train.out_dir={out_dir}"]) == 0  # fmt: skip
    return out_dir / "cli" / "best.pt"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", (None, *COMMANDS))
def test_help(command: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"] if command else ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: detector {command or ''}".rstrip())


def test_arena_writes_a_roboflow_export(arena_root: Path) -> None:
    for split, count in (("train", 4), ("valid", 2), ("test", 2)):
        data = json.loads((arena_root / split / "_annotations.coco.json").read_text())
        assert len(data["images"]) == count


def test_train_eval_predict(weights: Path, arena_root: Path, tmp_path: Path, capsys) -> None:
    assert weights.is_file() and (weights.parent / "predictions.png").is_file()
    assert (
        main(["eval", "--weights", str(weights), "--split", "test", "--out", str(tmp_path / "m.json")]) == 0
    )
    out = capsys.readouterr().out
    assert "mAP50" in out and "enemy-head" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_images"] == 2 and "map_75" in metrics

    out_dir = tmp_path / "predictions"
    assert main(["predict", "--weights", str(weights), str(arena_root / "test"), "--out", str(out_dir),
                 "--score-thresh", "0.0"]) == 0  # fmt: skip
    images = sorted(p.stem for p in (arena_root / "test").glob("*.jpg"))
    assert sorted(p.stem for p in out_dir.glob("*.jpg")) == images
    results = json.loads((out_dir / "predictions.json").read_text())
    assert {r["file_name"] for r in results} <= {f"{name}.jpg" for name in images}
    assert all(len(r["bbox"]) == 4 and r["category_name"] in ("enemy", "enemy-head", "friendly", "friendly-head")
               for r in results)  # fmt: skip


def test_bad_config_key_names_key_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "train.epochz=3"]) == 2
    err = _one_line_error(capsys)
    assert "'train.epochz'" in err and "did you mean 'epochs'" in err and "valid keys" in err


def test_bad_config_value_names_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "train.optimizer=adamax"]) == 2
    err = _one_line_error(capsys)
    assert "train.optimizer" in err and "'adamw'" in err and "'sgd'" in err


def test_bad_config_name_lists_shipped_configs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", "arena_gpu"]) == 2
    assert "arena_cpu" in _one_line_error(capsys)


def test_bad_paths(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in _one_line_error(capsys)
    assert main(["eval", "--weights", str(tmp_path / "none.pt")]) == 2
    assert "none.pt" in _one_line_error(capsys)
    assert main(["predict", "--weights", str(weights), str(tmp_path / "*.png")]) == 2
    assert "no images found" in _one_line_error(capsys)


def test_entry_point_exit_status_without_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "detector", "train", "nosuch.key=1"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("detector train: error:") and "Traceback" not in result.stderr
