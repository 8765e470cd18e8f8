"""The runner (Chapter 8): end to end on a tiny arena, exact resume, atomic checkpoints, NaN handling,
and the schedule / EMA / optimiser pieces against hand-computed references."""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

from detector.checkpoint import load_checkpoint, save_checkpoint
from detector.config import load_config
from detector.data import generate_arena
from detector.ema import ModelEMA
from detector.engine import NonFiniteLossError, Runner, TrainingInterrupted
from detector.metrics import METRIC_KEYS
from detector.schedule import WarmupCosine, build_optimizer, build_scheduler

TINY_SIZES = dict(n_train=8, n_valid=4, n_test=2)  # 4 steps per epoch at batch 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine several OpenMP teams spin against each other and a
    tiny step slows down many times over; one thread per test process avoids that (and stays deterministic)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_arena(tmp_path_factory.mktemp("data") / "arena", **TINY_SIZES, image_size=96, seed=0)


def tiny_config(root: Path, out_dir: Path, *overrides: str):
    """resnet18 + 16-channel neck at 64 px, batch 2, 2 epochs, CPU, no workers (the fast test recipe)."""
    base = [
        "name=tiny", f"data.root={root}", "data.arena=null", "data.image_size=64", "data.batch_size=2",
        "data.workers=0", "model.neck_width=16", "model.head_convs=1", "train.epochs=2", "train.warmup_steps=2",
        "train.ema_warmup_steps=4", "train.max_minutes=null", "train.device=cpu", f"train.out_dir={out_dir}",
    ]  # fmt: skip
    return load_config("arena_cpu", base + list(overrides))


def _flat_state(runner: Runner) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in runner.model.state_dict().items()}
    state.update({f"ema.{k}": v for k, v in runner.ema.module.state_dict().items()})
    for index, group in runner.optimizer.state_dict()["state"].items():
        state.update({f"optim.{index}.{k}": v for k, v in group.items() if torch.is_tensor(v)})
    return state


def _assert_same_run(a: Runner, b: Runner) -> None:
    assert [s["loss"] for s in a.step_log] == [s["loss"] for s in b.step_log]
    assert a.step == b.step and a.epoch == b.epoch
    state_a, state_b = _flat_state(a), _flat_state(b)
    assert state_a.keys() == state_b.keys()
    different = [k for k in state_a if not torch.equal(state_a[k], state_b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def straight_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Runner:
    """Two epochs without interruption: the reference for the resume tests and the end-to-end checks."""
    runner = Runner(tiny_config(tiny_root, tmp_path_factory.mktemp("runs")))
    runner.final_metrics = runner.fit()
    return runner


def test_fit_writes_the_run_directory(straight_run: Runner) -> None:
    run_dir = straight_run.run_dir
    for name in (
        "last.pt",
        "best.pt",
        "metrics.jsonl",
        "metrics.csv",
        "curves.png",
        "predictions.png",
        "config.yaml",
    ):
        assert (run_dir / name).is_file(), name
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in ("loss", "cls", "box", "obj", "lr", "img_per_s", *(f"val_{k}" for k in METRIC_KEYS)):
        assert all(key in r for r in records), key
    assert set(METRIC_KEYS) <= set(straight_run.final_metrics)
    assert len(straight_run.final_metrics["per_class_ap"]) == 4
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["image_size"] == 64

    checkpoint = load_checkpoint(run_dir / "last.pt")
    for key in (
        "model",
        "ema",
        "optimizer",
        "scheduler",
        "scaler",
        "epoch",
        "step",
        "rng",
        "config",
        "class_names",
    ):
        assert key in checkpoint, key
    assert checkpoint["epoch"] == 2 and checkpoint["step"] == 8 and not checkpoint["mid_epoch"]
    assert checkpoint["class_names"] == ["enemy", "enemy-head", "friendly", "friendly-head"]
    best_epoch = max(records, key=lambda r: r["val_map"])["epoch"]  # the first of equal maxima
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == best_epoch


class _StopAfterEpoch(Exception):
    pass


@pytest.mark.slow
def test_resume_at_epoch_boundary_is_exact(straight_run: Runner, tiny_root: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_root, tmp_path)
    first = Runner(config)
    original_end_epoch = first._end_epoch

    def end_epoch_then_die():  # a kill right after epoch 1's last.pt was written
        original_end_epoch()
        raise _StopAfterEpoch

    first._end_epoch = end_epoch_then_die
    with pytest.raises(_StopAfterEpoch):
        first.fit()
    resumed = Runner(config, resume=first.run_dir / "last.pt")
    assert resumed.epoch == 1 and resumed.step == 4
    resumed.fit()
    _assert_same_run(straight_run, resumed)


class _SigintAtStep:
    """Wraps the loss: sends Ctrl-C to this process while computing step ``at`` (1-based)."""

    def __init__(self, runner: Runner, at: int) -> None:
        self.runner, self.criterion, self.at = runner, runner.criterion, at

    def __call__(self, *args):
        output = self.criterion(*args)
        if self.runner.step + 1 == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return output


@pytest.mark.slow
def test_ctrl_c_saves_mid_epoch_and_resumes_exactly(
    straight_run: Runner, tiny_root: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_root, tmp_path)
    first = Runner(config)
    first.criterion = _SigintAtStep(first, at=6)  # epoch 2, batch 2
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="last.pt"):
        first.fit()
    assert signal.getsignal(signal.SIGINT) is handler_before  # our handler is removed again
    checkpoint = load_checkpoint(first.run_dir / "last.pt")
    assert checkpoint["mid_epoch"] and checkpoint["step"] == 6 and checkpoint["batch_in_epoch"] == 2
    resumed = Runner(config, resume=True, run_dir=first.run_dir)
    resumed.fit()
    _assert_same_run(straight_run, resumed)


def test_non_finite_loss_names_step_and_component(tiny_root: Path, tmp_path: Path) -> None:
    runner = Runner(tiny_config(tiny_root, tmp_path))
    criterion = runner.criterion

    def nan_box_at_step_6(*args):
        output = criterion(*args)
        if runner.step + 1 == 6:
            nan = torch.tensor(float("nan"))
            return output._replace(total=output.total * nan, components={**output.components, "box": nan})
        return output

    runner.criterion = nan_box_at_step_6
    with pytest.raises(NonFiniteLossError, match=r"step 6 .*'box'"):
        runner.fit()
    checkpoint = load_checkpoint(runner.run_dir / "last.pt")  # the last good checkpoint, from epoch 1
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


def test_time_budget_stops_evaluates_and_saves(tiny_root: Path, tmp_path: Path) -> None:
    runner = Runner(tiny_config(tiny_root, tmp_path, "train.max_minutes=0.0001"))  # 6 ms: over after step 1
    metrics = runner.fit()
    assert runner.step == 1 and runner.out_of_time
    assert "map" in metrics and len(runner.history) == 1 and "val_map" in runner.history[0]
    checkpoint = load_checkpoint(runner.run_dir / "last.pt")
    assert checkpoint["mid_epoch"] and checkpoint["step"] == 1
    assert (runner.run_dir / "predictions.png").is_file()


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1, "weights": torch.arange(1000.0)}, path)
    real_save = torch.save

    def crash_mid_write(obj, file, *args, **kwargs):
        real_save(obj, file, *args, **kwargs)
        file.truncate(file.tell() // 2)  # half of the bytes reached the disk, then the process "died"
        raise OSError("simulated crash while writing")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint({"step": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.arange(1000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_warmup_cosine_matches_formula() -> None:
    total, warmup, floor = 100, 10, 0.05
    schedule = WarmupCosine(total, warmup, floor)
    for step in range(warmup):
        assert schedule(step) == pytest.approx((step + 1) / warmup)
    for step in range(warmup, total):
        progress = (step - warmup) / (total - 1 - warmup)
        assert schedule(step) == pytest.approx(floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    assert schedule(total - 1) == pytest.approx(floor)

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = build_scheduler(optimizer, total, warmup, floor)
    for _ in range(37):
        optimizer.step()
        scheduler.step()
    restored = build_scheduler(torch.optim.SGD([parameter], lr=0.1), 5, 0, 0.0)  # a different plan …
    restored.load_state_dict(scheduler.state_dict())  # … is replaced by the saved one
    assert restored.lr_lambdas[0].total_steps == total
    assert restored.get_last_lr() == pytest.approx([0.1 * schedule(37)])


def test_replan_shortens_warmup_and_cosine() -> None:
    schedule = WarmupCosine(total_steps=1000, warmup_steps=150, min_lr_ratio=0.1)
    schedule.replan(60)  # a time budget that fits 60 steps: warmup 60 // 3, cosine over the rest
    assert (schedule.total_steps, schedule.warmup_steps) == (60, 20)
    assert schedule(19) == pytest.approx(1.0) and schedule(59) == pytest.approx(0.1)
    assert schedule(39) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 19 / 39)))


def test_ema_follows_the_warmup_decay() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEMA(model, decay=0.9, warmup_steps=4)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    model.train()(torch.randn(5, 3))  # BatchNorm updates its running stats and num_batches_tracked
    ema.update(model)
    decay = 0.9 * (1 - math.exp(-1 / 4))
    for name, value in ema.module.state_dict().items():
        new = model.state_dict()[name]
        expected = new if not new.is_floating_point() else decay * start[name] + (1 - decay) * new
        torch.testing.assert_close(value, expected, msg=name)
        assert value.dtype == (torch.float32 if new.is_floating_point() else new.dtype)


def test_no_weight_decay_on_norms_and_biases() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 1, bias=False)
    )
    model[2].weight.requires_grad_(False)  # frozen parameters are not optimised at all
    config = load_config(None, ["train.optimizer=sgd", "train.weight_decay=0.1"]).train
    decay, no_decay = build_optimizer(model, config).param_groups
    assert [p.shape for p in decay["params"]] == [model[0].weight.shape] and decay["weight_decay"] == 0.1
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
    assert no_decay["weight_decay"] == 0.0


def test_cpu_bf16_autocast_only_where_the_cpu_has_native_bf16():
    from detector.device import amp_dtype

    cpu = torch.device("cpu")
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert amp_dtype(cpu, enabled=True, cpu_bf16=True) == (torch.bfloat16 if native else None)
    assert amp_dtype(cpu, enabled=True, cpu_bf16=False) is None  # train.amp alone is about CUDA
