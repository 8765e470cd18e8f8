"""The runner (Chapter 8): end to end on a tiny arena, exact resume, atomic checkpoints, NaN handling,
and the schedule / EMA / optimiser pieces against hand-computed references."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch
import yaml

from detector import distributed, engine
from detector.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from detector.cli import main
from detector.config import ConfigError, load_config
from detector.data import generate_arena
from detector.ema import ModelEMA
from detector.engine import NonFiniteLossError, Runner, TrainingInterrupted
from detector.errors import CheckpointError
from detector.inference import load_detector
from detector.metrics import METRIC_KEYS
from detector.runlog import read_step_log
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
    """resnet18 + 16-channel neck at 64 px, batch 2, 2 epochs each evaluated, CPU, no workers (the fast test recipe)."""
    base = [
        "name=tiny", f"data.root={root}", "data.arena=null", "data.image_size=64", "data.batch_size=2",
        "data.workers=0", "model.neck_width=16", "model.head_convs=1", "train.epochs=2", "train.warmup_steps=2",
        "train.ema_warmup_steps=4", "train.max_minutes=null", "train.device=cpu", f"train.out_dir={out_dir}",
        "train.eval_every=1",
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
        "train_batch.jpg",
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
    straight_run: Runner, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tiny_config(tiny_root, tmp_path)
    first = Runner(config)
    first.criterion = _SigintAtStep(first, at=6)  # epoch 2, batch 2
    handler_before = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="last.pt"):
        first.fit()
    assert signal.getsignal(signal.SIGINT) is handler_before  # our handler is removed again
    assert capsys.readouterr().out.count("stopping…") == 1
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
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # oneDNN itself, not the helper under test
    assert amp_dtype(cpu, enabled=True, cpu_bf16=True) == (torch.bfloat16 if native else None)
    assert amp_dtype(cpu, enabled=True, cpu_bf16=False) is None  # train.amp alone is about CUDA


def test_precision_line_says_when_cpu_bf16_was_asked_for_but_the_cpu_runs_fp32():
    from detector.device import precision_summary

    cpu = torch.device("cpu")
    assert precision_summary(cpu, torch.bfloat16, cpu_bf16=True) == "device cpu, bf16 autocast"
    assert precision_summary(cpu, None, cpu_bf16=False) == "device cpu, fp32"
    fallback = precision_summary(cpu, None, cpu_bf16=True)
    assert fallback.startswith(
        "device cpu, fp32: train.cpu_bf16 is on but this CPU has no native bf16 kernels"
    )


# --------------------------------------------------------------------------------- budget, resume, outputs


class _FakeTime:
    """A fake clock for the runner's budget: each step and each evaluation advance it by a set time."""

    def __init__(self, runner: Runner, step_seconds, eval_seconds: float) -> None:
        self.now, self.runner = 0.0, runner
        self.criterion, self.evaluate = runner.criterion, runner.evaluate
        self.step_seconds, self.eval_seconds = step_seconds, eval_seconds
        runner.budget.clock, runner.criterion, runner.evaluate = self, self.loss, self.timed_evaluate

    def __call__(self) -> float:
        return self.now

    def loss(self, *args):
        self.now += self.step_seconds(self.runner.step)
        return self.criterion(*args)

    def timed_evaluate(self, model=None):
        self.now += self.eval_seconds
        return self.evaluate(model)


@pytest.mark.slow
@pytest.mark.parametrize("decay_fraction", [1.0, 0.3])
def test_time_budget_replans_through_a_stall_and_a_slow_down(
    tiny_root: Path, tmp_path: Path, decay_fraction: float
) -> None:
    """4 steps per epoch, at most 25 epochs; 90 s of fake time: a stall during the first epoch (6 s/step),
    then 1 s/step, then 2 s/step from step 30; 2 s per evaluation. Planned once from the first steps, the
    run would stop after about 3 epochs; re-planned, it uses the budget and ends with the cosine at its floor.
    With ``decay_fraction`` < 1 (WSD) the rate holds its peak through the re-plans until the decay."""
    config = tiny_config(
        tiny_root, tmp_path, "train.max_minutes=1.5", "train.epochs=25", "train.log_every=2",
        f"train.decay_fraction={decay_fraction}",
    )  # fmt: skip
    runner = Runner(config)
    clock = _FakeTime(runner, lambda step: 6.0 if step < 4 else (1.0 if step < 30 else 2.0), eval_seconds=2.0)
    runner.fit()
    assert 0.95 * 90 <= clock.now <= 90, f"the run took {clock.now} s of the 90 s budget"
    assert not runner.out_of_time and runner.step == runner.schedule.total_steps
    assert runner.step_log[-1]["lr"] == pytest.approx(config.train.lr * config.train.min_lr_ratio)
    if decay_fraction < 1.0:
        stable = [e["lr"] for e in runner.step_log[config.train.warmup_steps : runner.step // 2]]
        assert stable and all(lr == pytest.approx(config.train.lr) for lr in stable)
    assert runner.history[-1]["step"] == runner.step and "val_map" in runner.history[-1]
    epochs = [record["epoch"] for record in runner.history]  # one record per epoch, the last maybe partial
    assert epochs == list(range(1, len(epochs) + 1))


@pytest.mark.parametrize("counts_evaluation", [True, False])
def test_the_budget_pauses_for_evaluations_only_when_told(
    tiny_root: Path, tmp_path: Path, counts_evaluation: bool
) -> None:
    """1 s a step, 5 s an evaluation after each 4-step epoch, a 30-s budget. Counted, the evaluations take
    their share of the 30 s; paused (a benchmark's learning curve), the steps alone fill the budget, and each
    epoch's ``elapsed_seconds`` is the time of its steps."""
    config = tiny_config(tiny_root, tmp_path, "train.max_minutes=0.5", "train.epochs=25", "train.log_every=1")
    runner = Runner(config, budget_counts_evaluation=counts_evaluation)
    clock = _FakeTime(runner, lambda step: 1.0, eval_seconds=5.0)
    runner.fit()
    evaluations = sum("val_map" in record for record in runner.history)
    training = clock.now - 5.0 * evaluations
    assert training == runner.step  # the fake clock moves only in steps and evaluations
    before = [5.0 * sum("val_map" in r for r in runner.history[:i]) for i in range(len(runner.history))]
    if counts_evaluation:
        assert clock.now <= 30.0 and runner.step <= 30 - 5 * evaluations
        assert [r["elapsed_seconds"] for r in runner.history] == pytest.approx(
            [r["step"] + seconds for r, seconds in zip(runner.history, before, strict=True)]
        )
    else:
        assert 27 <= runner.step <= 30 and clock.now > 60.0
        assert [r["elapsed_seconds"] for r in runner.history] == pytest.approx(
            [r["step"] for r in runner.history]
        )


def test_resume_refuses_changed_settings(straight_run: Runner, tiny_root: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_root, tmp_path, "train.epochs=3", "train.lr=0.01", "data.workers=1")
    with pytest.raises(
        ConfigError, match=r"train\.epochs: 2 → 3, train\.lr: 0\.002 → 0\.01\. Resume without"
    ):
        Runner(config, resume=straight_run.run_dir / "last.pt")


def test_bare_resume_takes_the_config_from_its_checkpoint(
    straight_run: Runner, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    shutil.copy(straight_run.run_dir / "last.pt", run_dir)
    assert main(["train", "--name", "tiny", f"train.out_dir={tmp_path}", "train.epochs=3", "--resume"]) == 2
    assert "train.epochs: 2 → 3" in capsys.readouterr().err
    assert (
        main(["train", "--name", "tiny", f"train.out_dir={tmp_path}", "--resume"]) == 0
    )  # nothing left to do
    assert "Validation (valid), epoch 2" in capsys.readouterr().out


def test_checkpoints_best_is_small_last_is_complete(straight_run: Runner) -> None:
    run_dir = straight_run.run_dir
    last, best = load_checkpoint(run_dir / "last.pt"), load_checkpoint(run_dir / "best.pt")
    assert last["format"] == best["format"] == CHECKPOINT_FORMAT and last["kind"] == "last"
    assert "step_log" not in last and len(read_step_log(run_dir)) == last["step"] == 8
    assert read_step_log(run_dir) == straight_run.step_log
    assert set(best) >= {"model", "config", "class_names", "epoch", "best_map"} and best["ema"] is None
    assert (
        "optimizer" not in best
        and (run_dir / "best.pt").stat().st_size < 0.4 * (run_dir / "last.pt").stat().st_size
    )
    if best["epoch"] == last["epoch"]:  # best.pt holds the EMA weights
        for name, value in last["ema"]["module"].items():
            assert torch.equal(best["model"][name], value), name
    for name in ("last.pt", "best.pt"):  # both load for eval/predict
        model, _, class_names = load_detector(run_dir / name)
        assert class_names == straight_run.class_names and not model.training
    with pytest.raises(CheckpointError, match="cannot continue a run"):
        Runner(straight_run.config, resume=run_dir / "best.pt")


def test_fp16_run_whose_scaler_skips_every_step_stops(tiny_root: Path, tmp_path: Path) -> None:
    """A CPU GradScaler stands in for CUDA's: the loss is infinite at every step, so every step is skipped."""
    runner = Runner(tiny_config(tiny_root, tmp_path, "train.max_skipped_steps=3", "train.log_every=1"))
    runner.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    criterion = runner.criterion

    def infinite(*args):
        output = criterion(*args)
        return output._replace(total=output.total * math.inf)

    runner.criterion = infinite
    weights = {k: v.detach().clone() for k, v in runner.model.named_parameters()}
    with pytest.raises(
        NonFiniteLossError, match=r"skipped 3 steps in a row up to step 3 \(epoch 1, batch 3\)"
    ):
        runner.fit()
    assert all(torch.equal(weights[k], v) for k, v in runner.model.named_parameters())  # no step was taken


def test_validation_runs_in_fp32_like_detector_eval(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = Runner(tiny_config(tiny_root, tmp_path))
    runner.amp_dtype = torch.bfloat16  # as on a GPU or a CPU with native bf16
    calls = []
    monkeypatch.setattr(engine, "evaluate", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    runner.evaluate()
    ((args, kwargs),) = calls
    assert len(args) == 5 and kwargs.get("amp_dtype") is None  # inference.evaluate's default: fp32


def test_fit_prints_the_data_the_precision_and_the_time_estimate(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runner = Runner(tiny_config(tiny_root, tmp_path, "train.epochs=1", "train.log_every=2"))
    runner.fit()
    out = capsys.readouterr().out
    assert "data: 4 classes" in out and "train: 8 images, 50 boxes" in out
    assert "\ndevice cpu, " in out  # and its precision (precision_summary)
    assert re.search(r"pace \d+\.\d+ s per step \(4 steps per epoch\); plan 4 steps \(1\.0 epochs\)", out)


def test_host_syncs_and_collectives_only_at_sync_points(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """8 steps, train.log_every=10: one sync after the first step and one at each epoch's end — not per step."""
    runner = Runner(tiny_config(tiny_root, tmp_path))
    calls = []
    for name in ("max_over_processes", "any_process", "reduce_mean"):
        real = getattr(distributed, name)
        monkeypatch.setattr(
            distributed, name, lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a)
        )
    runner.fit()
    assert calls.count("max_over_processes") == 3 and "any_process" not in calls
    assert calls.count("reduce_mean") == 2  # the epoch means
