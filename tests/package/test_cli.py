"""The ``detector`` command: every sub-command on tiny data, --help everywhere, one-line errors (exit 2) for
user errors only, strict JSON, predict's options and file names."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detector.cli import main
from detector.config import CONFIG_DIR, load_config

COMMANDS = ("train", "eval", "predict", "export", "arena")
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


def test_time_budget_cpu_bf16_and_the_cpu_recipe_are_documented_where_users_look(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    root = Path(__file__).resolve().parents[2]
    readme, guide = (" ".join((root / p).read_text().split()) for p in ("README.md", "site/guide.md"))
    for text in (help_text, readme, guide):
        assert "train.max_minutes" in text and "train.cpu_bf16" in text and "roboflow_cpu" in text
    for name in sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")):  # every shipped config is offered
        assert name in help_text and f"| `{name}` |" in guide, name
    cpu, gpu = load_config("roboflow_cpu"), load_config("roboflow")  # the guide's numbers
    assert cpu.model.backbone == "resnet10t" and cpu.train.cpu_bf16 and gpu.model.backbone == "resnet50"
    assert f"ResNet-10-T, {cpu.data.image_size} px, within {cpu.train.max_minutes:g} minutes" in guide
    assert f"ResNet-50, {gpu.data.image_size} px, {gpu.train.epochs} epochs" in guide


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
    assert "mAP50" in out and "enemy-head" in out and "images), fp32" in out  # as validation in training
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_images"] == 2 and "map_75" in metrics

    out_dir = tmp_path / "predictions"
    assert main(["predict", "--weights", str(weights), str(arena_root / "test"), "--out", str(out_dir),
                 "--score-thresh", "0.0"]) == 0  # fmt: skip
    images = sorted(p.stem for p in (arena_root / "test").glob("*.jpg"))
    assert sorted(p.stem for p in out_dir.glob("*.jpg")) == images
    results = json.loads((out_dir / "predictions.json").read_text())
    assert {Path(r["file_name"]).name for r in results} <= {f"{name}.jpg" for name in images}
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


def test_bad_backbone_settings_are_one_line(arena_root: Path, tmp_path: Path, capsys) -> None:
    common = ["train", "--data", str(arena_root), *TINY, f"train.out_dir={tmp_path}"]
    assert main([*common, "model.backbone=resnet_nope"]) == 2
    assert "unknown timm backbone 'resnet_nope'" in _one_line_error(capsys)
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pth")
    assert main([*common, f"model.pretrained={tmp_path / 'other.pth'}"]) == 2
    backbone = load_config("arena_cpu").model.backbone  # `detector train` without --config trains arena_cpu
    assert f"does not match backbone {backbone!r}" in _one_line_error(capsys)


def test_checkpoint_of_another_format_is_one_line(weights: Path, tmp_path: Path, capsys) -> None:
    state = torch.load(weights, weights_only=True)
    old = tmp_path / "old.pt"
    torch.save({**state, "format": 1, "config": {**state["config"], "loss": {"recipe": "seed"}}}, old)
    assert main(["eval", "--weights", str(old)]) == 2
    assert "has format 1, this version of detector reads format" in _one_line_error(capsys)
    assert main(["train", "--resume", str(old)]) == 2
    assert "has format 1" in _one_line_error(capsys)


def test_entry_point_exit_status_without_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "detector", "train", "nosuch.key=1"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("detector train: error:") and "Traceback" not in result.stderr


def _strict_json(path: Path) -> object:
    def reject(constant: str) -> None:
        raise AssertionError(f"{path}: non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_eval_metrics_json_is_strict(weights: Path, tmp_path: Path) -> None:
    assert (
        main(["eval", "--weights", str(weights), "--split", "test", "--out", str(tmp_path / "m.json")]) == 0
    )
    metrics = _strict_json(tmp_path / "m.json")
    assert all(value is None or math.isfinite(value) for value in metrics["per_class_ap"])


def test_write_json_replaces_non_finite_values(tmp_path: Path) -> None:
    from detector.inference import write_json

    write_json({"ap": [math.nan, 0.5], "inf": (math.inf, -math.inf), "n": 3, "s": "x"}, tmp_path / "x.json")
    assert _strict_json(tmp_path / "x.json") == {"ap": [None, 0.5], "inf": [None, None], "n": 3, "s": "x"}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """``photos/a.png``, ``photos/a.jpg`` (same stem), ``photos/b c é.png`` and ``photos/sub/a.png``."""
    from torchvision.io import write_jpeg, write_png

    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    sizes = {"a.png": (40, 60), "a.jpg": (50, 30), "b c é.png": (64, 64), "sub/a.png": (30, 30)}
    for name, (height, width) in sizes.items():
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
        (write_png if name.endswith(".png") else write_jpeg)(image, str(folder / name))
    return folder


@pytest.fixture
def tiny_weights(tmp_path: Path, write_checkpoint) -> Path:
    return write_checkpoint(tmp_path / "best.pt")


def test_predict_names_never_collide_and_options_apply(images: Path, tiny_weights: Path, tmp_path: Path,
                                                       capsys) -> None:  # fmt: skip
    out = tmp_path / "out"
    sources = [str(images), str(images / "sub" / "*.png"), str(images / "a.png")]  # a.png given twice
    assert main(["predict", "--weights", str(tiny_weights), *sources, "--out", str(out), "--conf", "0",
                 "--max-det", "3", "--iou", "0.5", "--imgsz", "96", "--batch", "3", "--agnostic-nms"]) == 0  # fmt: skip
    written = sorted(p.name for p in out.glob("*.jpg"))
    assert written == ["a_jpg.jpg", "a_png.jpg", "a_png_2.jpg", "b c é.jpg"], (
        "one picture per image, none lost"
    )
    results = _strict_json(out / "predictions.json")
    per_image = {}
    for entry in results:
        per_image.setdefault(entry["file_name"], []).append(entry)
    assert sorted(per_image) == sorted(str(p) for p in [images / "a.jpg", images / "a.png", images / "b c é.png",
                                                        images / "sub" / "a.png"])  # fmt: skip
    assert all(len(entries) == 3 for entries in per_image.values()), "--max-det 3 with --conf 0"
    assert {e["category_id"] for e in results} <= {1, 2, 3} and {e["image_id"] for e in results} == {
        0,
        1,
        2,
        3,
    }
    assert "a_png_2.jpg" in capsys.readouterr().out


def test_predict_uses_the_annotation_files_ids(images: Path, tiny_weights: Path, tmp_path: Path) -> None:
    annotations = {
        "images": [{"id": 71, "file_name": "a.png", "width": 60, "height": 40},
                   {"id": 93, "file_name": "b c é.png", "width": 64, "height": 64}],
        "categories": [{"id": 10, "name": "cat"}, {"id": 20, "name": "dog"}, {"id": 35, "name": "bird"}],
        "annotations": [],
    }  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(annotations))
    out = tmp_path / "out"
    sources = [str(images / "a.png"), str(images / "b c é.png")]
    assert main(["predict", "--weights", str(tiny_weights), *sources, "--out", str(out), "--conf", "0",
                 "--annotations", str(path), "--no-images"]) == 0  # fmt: skip
    results = _strict_json(out / "predictions.json")
    assert {e["image_id"] for e in results} == {71, 93} and not list(out.glob("*.jpg"))
    names = {10: "cat", 20: "dog", 35: "bird"}
    assert all(names[e["category_id"]] == e["category_name"] for e in results)


def test_predict_user_errors_are_one_line(images: Path, tiny_weights: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    assert main(["predict", "--weights", str(tiny_weights), str(images), "--annotations", str(path)]) == 2
    assert "has classes ['cat']" in _one_line_error(capsys)
    assert main(["predict", "--weights", str(tiny_weights), str(images), "--half", "--device", "cpu"]) == 2
    assert "CUDA" in _one_line_error(capsys)


def test_internal_errors_keep_their_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from detector import cli

    def broken(args: object) -> int:
        raise ValueError("a bug, not the user's fault")

    monkeypatch.setitem(cli.COMMANDS, "arena", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["arena"])


def test_no_process_wide_side_effects(images: Path, tiny_weights: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    environment = dict(os.environ)
    assert (
        main(["predict", "--weights", str(tiny_weights), str(images / "a.png"), "--out", str(tmp_path)]) == 0
    )
    assert dict(os.environ) == environment
