"""The runner's pieces on their own: the schedule's re-plan, the time budget under a fake clock, the step
monitor (NaN and fp16 skips), per-rank loader seeds, Ctrl-C in loader workers, worker capping, determinism
flags, checkpoint formats and the printed summaries."""

from __future__ import annotations

import json
import math
import signal
import warnings
from typing import Any

import pytest
import torch

from detector.budget import TimeBudget, follow_plan
from detector.checkpoint import CHECKPOINT_FORMAT, check_format
from detector.config import load_config
from detector.device import cap_workers, configure_determinism
from detector.distributed import DistInfo
from detector.errors import CheckpointError
from detector.interrupt import StopRequest
from detector.loaders import make_loader
from detector.monitor import NonFiniteLossError, StepMonitor
from detector.runlog import RunLogger, data_summary, format_results, read_step_log
from detector.schedule import WarmupCosine

# ------------------------------------------------------------------------------------------------ schedule


def test_replan_keeps_the_lr_continuous_and_ends_at_the_floor() -> None:
    schedule = WarmupCosine(total_steps=1000, warmup_steps=10, min_lr_ratio=0.05)
    before = schedule(300)
    schedule.replan(500, step=300)  # shorter: the cosine from here ends at step 499
    assert schedule(300) == pytest.approx(before)
    assert schedule(499) == pytest.approx(0.05)
    assert all(schedule(s) >= schedule(s + 1) for s in range(300, 499))  # still decreasing
    schedule.replan(800, step=400)  # longer again: continuous, floor at the new end
    factor_400 = schedule(400)
    assert factor_400 == pytest.approx(schedule(400)) and schedule(799) == pytest.approx(0.05)
    assert 0.05 < factor_400 < before


def test_frequent_replans_follow_the_cosine_instead_of_flattening_it() -> None:
    """A time budget re-plans at every log line, often by a step or two: the curve must stay the cosine.

    (Restarting a half-cosine from the current factor at each re-plan held the factor above 0.9 at 83 % of a
    1500-step run, where the cosine is at 0.12.)"""
    plain = WarmupCosine(total_steps=1500, warmup_steps=120, min_lr_ratio=0.05)
    replanned = WarmupCosine(total_steps=1500, warmup_steps=120, min_lr_ratio=0.05)
    for step in range(1500):
        if step % 10 == 0 and step > 120:
            replanned.replan(1500 + (step // 10) % 3 - 1, step)  # the plan jitters by one step each time
        assert replanned(step) == pytest.approx(plain(step), abs=2e-3), step
    same = WarmupCosine(total_steps=1500, warmup_steps=120, min_lr_ratio=0.05)
    for step in range(1500):
        if step % 10 == 1 and step > 120:
            same.replan(1500, step)  # an unchanged plan changes nothing
        assert same(step) == pytest.approx(plain(step), abs=1e-12), step


def test_replan_keeps_the_cosine_progress_and_rescales_what_is_left() -> None:
    schedule = WarmupCosine(total_steps=1001, warmup_steps=0, min_lr_ratio=0.0)
    assert schedule(500) == pytest.approx(0.5)  # half-way through the cosine
    schedule.replan(1501, step=500)  # the rest (half the cosine) now spans 1000 steps instead of 500
    assert schedule(500) == pytest.approx(0.5)
    assert schedule(1000) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))  # a quarter of the way on
    assert schedule(1500) == pytest.approx(0.0)


def test_warmup_stable_decay_holds_the_peak_then_decays_over_the_last_fraction() -> None:
    schedule = WarmupCosine(total_steps=1001, warmup_steps=0, min_lr_ratio=0.1, decay_fraction=0.2)
    assert all(schedule(s) == 1.0 for s in range(801))  # the decay spans the last 0.2 · 1000 = 200 steps
    assert schedule(900) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the decay
    assert schedule(950) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.75)))
    assert schedule(1000) == pytest.approx(0.1)
    cosine = WarmupCosine(total_steps=1001, warmup_steps=0, min_lr_ratio=0.1, decay_fraction=1.0)
    assert cosine(500) == pytest.approx(0.1 + 0.9 * 0.5)  # d = 1: the plain cosine


def test_warmup_stable_decay_follows_its_budget() -> None:
    """Re-plans in the stable part move only where the decay begins; the jittered plan stays the same curve."""
    plain = WarmupCosine(total_steps=1500, warmup_steps=120, min_lr_ratio=0.05, decay_fraction=0.2)
    replanned = WarmupCosine(total_steps=1500, warmup_steps=120, min_lr_ratio=0.05, decay_fraction=0.2)
    for step in range(1500):
        if step % 10 == 0 and step > 120:
            replanned.replan(1500 + (step // 10) % 3 - 1, step)
        assert replanned(step) == pytest.approx(plain(step), abs=5e-3), step
    longer = WarmupCosine(total_steps=1000, warmup_steps=0, min_lr_ratio=0.0, decay_fraction=0.2)
    factor = longer(900)  # in the decay (it began at step 999 - 199.8)
    longer.replan(2000, step=900)  # a faster pace: the decay waits for the new plan's last fifth …
    assert longer(900) == pytest.approx(factor) and longer(1500) == pytest.approx(factor)
    assert longer(1999) == pytest.approx(0.0)  # … and still ends at the floor
    assert all(longer(s) >= longer(s + 1) for s in range(900, 1999))


def test_replan_never_ends_before_the_steps_done() -> None:
    schedule = WarmupCosine(total_steps=100, warmup_steps=0, min_lr_ratio=0.1)
    before = schedule(50)
    schedule.replan(10, step=50)  # steps 0..49 ran: one more step (50), at the current factor
    assert schedule.total_steps == 51 and schedule(50) == pytest.approx(before)


def test_replan_during_warmup_ramps_on_from_the_current_factor() -> None:
    schedule = WarmupCosine(total_steps=1000, warmup_steps=300, min_lr_ratio=0.0)
    last_used = schedule(29)  # steps 0..29 ran
    schedule.replan(90, step=30)  # warmup at most 90 // 3 = 30 steps: it ends now, at step 30
    assert schedule.warmup_steps == 31 and schedule(30) == pytest.approx(1.0)
    assert schedule(30) > last_used and schedule(89) == pytest.approx(0.0)


def test_schedule_from_state_round_trips_a_replanned_plan() -> None:
    for decay_fraction in (1.0, 0.3):
        schedule = WarmupCosine(200, 20, 0.1, decay_fraction)
        schedule.replan(120, step=60)
        copy = WarmupCosine.from_state(vars(schedule).copy())
        assert [copy(s) for s in range(120)] == [schedule(s) for s in range(120)]
    older = vars(WarmupCosine(200, 20, 0.1)).copy()
    del older["decay_fraction"]  # a checkpoint written before decay_fraction existed: the plain cosine
    assert WarmupCosine.from_state(older).decay_fraction == 1.0


# -------------------------------------------------------------------------------------------- time budget


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def simulate(
    pace: Any,
    minutes: float,
    epochs: int = 40,
    steps_per_epoch: int = 50,
    log_every: int = 10,
    eval_seconds: float = 15.0,
) -> dict[str, Any]:
    """The runner's use of the budget (sync every ``log_every`` steps and at epoch ends, an evaluation after
    every epoch and at the end), with ``pace(step)`` seconds per step on a fake clock."""
    clock = FakeClock()
    schedule = WarmupCosine(epochs * steps_per_epoch, 100, 0.05)
    budget = TimeBudget(minutes, schedule.total_steps, steps_per_epoch, 10, 1, clock=clock)
    budget.start(0)
    step, lrs, stopped = 0, [], False
    while step < schedule.total_steps and not stopped:
        while True:
            lrs.append(schedule(step))
            clock.now += pace(step)
            step += 1
            epoch_end = step % steps_per_epoch == 0 or step >= schedule.total_steps
            if step % log_every == 0 or step == 1 or epoch_end:
                budget.observe(step)
                stopped = follow_plan(schedule, budget.plan(step, schedule.total_steps), step)
            if stopped or epoch_end:
                break
        started = clock.now
        clock.now += eval_seconds
        budget.observe_epoch_end(clock.now - started, evaluated=True)
    return {
        "seconds": clock.now - 1000.0,
        "steps": step,
        "lrs": lrs,
        "schedule": schedule,
        "stopped": stopped,
    }


@pytest.mark.parametrize(
    "name, pace",
    [
        ("steady", lambda step: 1.0),
        ("stall at start", lambda step: 4.0 if step < 25 else 1.0),  # a busy machine during calibration
        ("slow-down later", lambda step: 1.0 if step < 300 else 1.8),  # another job starts
        ("faster later", lambda step: 2.0 if step < 200 else 1.0),
    ],
)
def test_budget_uses_the_whole_budget_and_finishes_the_schedule(name: str, pace: Any) -> None:
    run = simulate(pace, minutes=15.0)  # 900 s: far fewer than the configured 2000 steps fit
    budget = 900.0
    assert run["seconds"] <= budget, f"{name}: ran {run['seconds']:.0f} s of {budget:.0f}"
    assert run["seconds"] >= 0.95 * budget, f"{name}: used only {run['seconds']:.0f} s of {budget:.0f}"
    assert not run["stopped"] and run["steps"] == run["schedule"].total_steps  # the plan ran to its end
    assert run["lrs"][-1] == pytest.approx(0.05)  # the cosine reached its floor at the last step
    jumps = [abs(b - a) for a, b in zip(run["lrs"][100:], run["lrs"][101:], strict=False)]
    assert max(jumps) < 0.02, f"{name}: the lr jumped by {max(jumps):.3f}"  # continuous after warmup


def test_budget_never_plans_more_than_the_configured_epochs() -> None:
    run = simulate(lambda step: 0.01, minutes=60.0, epochs=3)
    assert run["steps"] == 150 and run["seconds"] < 60 and run["lrs"][-1] == pytest.approx(0.05)


def test_budget_keeps_the_plan_until_the_pace_is_known() -> None:
    clock = FakeClock()
    budget = TimeBudget(10.0, 1000, 100, 5, clock=clock)
    budget.start(0)
    clock.now += 30.0  # a slow first step: 1000 steps would not fit at this pace, but it is start-up
    budget.observe(1)
    assert not budget.calibrated and budget.plan(1, 1000) == 1000
    for step in range(2, 12):
        clock.now += 1.0
        budget.observe(step)
    assert budget.calibrated and budget.plan(11, 1000) < 600  # 600 s in all at 1 s per step, evaluations too


def test_paused_seconds_count_neither_against_the_budget_nor_as_an_epoch_end() -> None:
    clock = FakeClock()
    budget = TimeBudget(10.0, 1000, 100, 5, clock=clock)
    budget.start(0)
    for step in range(1, 12):
        clock.now += 1.0
        budget.observe(step)
    planned = budget.plan(11, 1000)
    clock.now += 100.0  # an evaluation the clock pauses for
    budget.pause(100.0)
    assert budget.elapsed() == pytest.approx(11.0) and budget.plan(11, 1000) == planned
    clock.now += 102.0  # an epoch end of 102 s, 100 of them paused
    budget.pause(100.0)
    budget.observe_epoch_end(2.0, evaluated=True)
    assert budget.epoch_end_cost() == pytest.approx(2.0) and budget.elapsed() == pytest.approx(13.0)
    assert budget.state_dict()["elapsed"] == pytest.approx(13.0)  # a resumed run goes on from here


def test_budget_stops_at_once_when_nothing_fits() -> None:
    clock = FakeClock()
    budget = TimeBudget(0.01, 100, 10, 5, clock=clock)  # 0.6 s
    budget.start(0)
    clock.now += 2.0
    budget.observe(1)
    assert budget.plan(1, 100) == 1 and follow_plan(WarmupCosine(100), 1, 1)


def test_budget_estimate_names_pace_plan_and_time() -> None:
    clock = FakeClock()
    budget = TimeBudget(None, 300, 100, 10, clock=clock)
    budget.start(0)
    for step in range(1, 21):
        clock.now += 5.0 if step == 1 else 2.0  # the first step pays for start-up
        budget.observe(step)
    assert budget.pace == pytest.approx(2.0) and budget.plan(20, 300) == 300
    text = budget.estimate(20, 300)
    assert "pace 2.000 s per step" in text and "plan 300 steps (3.0 epochs)" in text
    # 280 steps × 2 s + 3 evaluations × (0.5 × 10 batches × 2 s) = 590 s from now, 635 s in all
    assert "9.8 min from now" in text and "10.6 min in all" in text


# ------------------------------------------------------------------------------------------- step monitor


def _values(loss: float) -> list[torch.Tensor]:
    return [torch.tensor(loss), torch.tensor(loss / 2), torch.tensor(loss / 2)]


def test_monitor_names_the_first_non_finite_step_and_component() -> None:
    monitor = StepMonitor(["loss", "cls", "box"], skips_allowed=False, max_skipped_steps=5, steps_per_epoch=4)
    monitor.add(5, _values(1.0), lr=0.1)
    monitor.add(6, [torch.tensor(math.nan), torch.tensor(0.5), torch.tensor(math.nan)], lr=0.1)
    monitor.add(7, _values(math.nan), lr=0.1)
    with pytest.raises(NonFiniteLossError, match=r"step 6 \(epoch 2, batch 2\): loss component 'box' = nan"):
        monitor.flush()


def test_monitor_flushes_rows_in_one_copy() -> None:
    monitor = StepMonitor(["loss", "cls", "box"], skips_allowed=False, max_skipped_steps=5)
    for step in range(1, 4):
        monitor.add(step, _values(float(step)), lr=0.01 * step)
    rows = monitor.flush()
    assert rows == [{"loss": s, "cls": s / 2, "box": s / 2, "lr": 0.01 * s} for s in (1.0, 2.0, 3.0)]
    assert len(monitor) == 0 and monitor.flush() == []


def test_monitor_stops_after_consecutive_fp16_skips() -> None:
    monitor = StepMonitor(["loss", "cls", "box"], skips_allowed=True, max_skipped_steps=3)
    for step, skipped in enumerate([True, True, False, True, True], start=1):  # a streak of 2, then 2
        monitor.add(step, _values(math.inf if skipped else 1.0), lr=0.1, skipped=skipped)
    assert len(monitor.flush()) == 5 and monitor.skipped_steps == 4 and monitor.skip_streak == 2
    monitor.add(6, _values(math.inf), lr=0.1, skipped=True)  # the third in a row, across a flush
    with pytest.raises(NonFiniteLossError, match="skipped 3 steps in a row up to step 6"):
        monitor.flush()


# ----------------------------------------------------------------------------------------- data loaders


class RandomDraws(torch.utils.data.Dataset):
    """Each item: a 1-pixel image and the draw of the augmentation generator (torch's, in the worker)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        draw = torch.rand(()).item()
        handler = signal.getsignal(signal.SIGINT)
        return torch.zeros(3, 1, 1, dtype=torch.uint8), {"index": index, "draw": draw, "sigint": handler}


def _epoch_items(rank: int, workers: int, epoch_seed: int = 123) -> list[dict[str, Any]]:
    data = load_config(None, ["data.batch_size=2", f"data.workers={workers}"]).data
    loader = make_loader(RandomDraws(), data, torch.device("cpu"), DistInfo(rank, rank, 2), train=True)
    loader.set_epoch(epoch_seed)
    return [target for _, targets in loader for target in targets]


def test_ranks_draw_different_augmentations_from_one_shared_shuffle() -> None:
    rank0, rank1 = _epoch_items(0, workers=1), _epoch_items(1, workers=1)
    assert [t["draw"] for t in rank0] != [t["draw"] for t in rank1]
    indices0, indices1 = {t["index"] for t in rank0}, {t["index"] for t in rank1}
    assert indices0.isdisjoint(indices1) and indices0 | indices1 == set(range(8))  # one permutation, split
    assert [t["draw"] for t in _epoch_items(0, workers=1)] == [t["draw"] for t in rank0]  # still seeded


def test_loader_workers_ignore_ctrl_c() -> None:
    items = _epoch_items(0, workers=1)
    assert all(t["sigint"] == signal.SIG_IGN for t in items)


def test_first_ctrl_c_asks_to_stop_once_a_second_aborts(capsys: pytest.CaptureFixture[str]) -> None:
    stop = StopRequest()
    with stop.installed():
        signal.raise_signal(signal.SIGINT)
        assert stop.requested and capsys.readouterr().out.count("stopping…") == 1
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_workers_are_capped_to_the_cores_with_one_warning() -> None:
    data = load_config(None, ["data.workers=512"]).data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cap_workers(data, DistInfo())
    assert 1 <= data.workers < 512 and len(caught) == 1 and "data.workers=512" in str(caught[0].message)


# ------------------------------------------------------------------------------------------ determinism


def test_deterministic_sets_the_flags_and_is_off_by_default() -> None:
    assert not load_config("halo_r50").train.deterministic  # GPU configs keep cuDNN autotuning
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)  # fmt: skip
    try:
        configure_determinism(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        configure_determinism(False)
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1], saved[2]


# ------------------------------------------------------------------------------------------ checkpoints


def test_check_format_refuses_other_formats_and_weights_only_files() -> None:
    with pytest.raises(CheckpointError, match=r"x\.pt' has format 1, this version of detector reads format"):
        check_format({"format": 1}, "x.pt")
    with pytest.raises(CheckpointError, match="has format None"):
        check_format({"model": {}}, "x.pt")
    with pytest.raises(CheckpointError, match="resume from the run's last.pt"):
        check_format({"format": CHECKPOINT_FORMAT, "kind": "weights"}, "best.pt", resumable=True)
    check_format({"format": CHECKPOINT_FORMAT, "kind": "last"}, "last.pt", resumable=True)


# --------------------------------------------------------------------------------------------- printing


def test_format_results_explains_missing_sizes_and_classes() -> None:
    metrics = {"map": 0.5, "map_50": 0.7, "map_75": 0.4, "map_small": -1.0, "map_medium": 0.3, "map_large": -1.0,
               "per_class_ap": [0.5, math.nan], "per_class_ap50": [0.7, math.nan]}  # fmt: skip
    text = format_results(metrics, ["cat", "dog"])
    assert "-1" not in text and "nan" not in text
    assert "n/a by size (small, large): no objects of that size" in text
    assert "n/a for dog: no GT of that class" in text
    assert "cat     0.5000   0.7000" in text


class _Split:
    def __init__(self, labels: list[list[int]]) -> None:
        self.targets = [(torch.zeros(len(ls), 4), torch.tensor(ls, dtype=torch.int64)) for ls in labels]

    def __len__(self) -> int:
        return len(self.targets)


def test_data_summary_counts_boxes_per_class_and_warns() -> None:
    text = data_summary(_Split([[0, 0, 1], [0], []]), _Split([[0, 1]]), ["rook", "pawn", "king"])
    assert "train: 3 images, 4 boxes, 1 without boxes" in text and "val: 1 images, 2 boxes" in text
    assert "rook        3       1" in text
    assert "warning: train split, classes with fewer than 2 boxes: pawn (1), king (0)" in text
    assert "warning: val split, classes with fewer than 2 boxes: rook (1), pawn (1), king (0)" in text


def test_data_summary_counts_crowd_regions_apart() -> None:
    train = _Split([[0, 1, 1], [1]])
    train.annotations = [{"iscrowd": torch.tensor([0, 0, 1])}, {"iscrowd": torch.tensor([1])}]
    text = data_summary(train, _Split([[0, 1]]), ["rook", "pawn"])
    assert "train: 2 images, 2 boxes, 1 without boxes, 2 crowd regions (ignored)" in text
    assert "rook        1       1" in text and "pawn        1       1" in text


def test_run_logs_are_strict_json_and_read_back_nan(tmp_path) -> None:
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.log_steps(1, [{"loss": 1.5}, {"loss": math.nan, "grad_norm": math.inf}])
    logger.log_epoch({"epoch": 1, "step": 2, "loss": math.nan, "val_map_small": -1.0})
    for name in ("steps.jsonl", "metrics.jsonl"):
        for line in (tmp_path / name).read_text().splitlines():
            assert "NaN" not in line and "Infinity" not in line, f"{name}: not strict JSON: {line}"
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["loss"] is None
    rows = read_step_log(tmp_path)
    assert rows[0] == {"loss": 1.5} and math.isnan(rows[1]["loss"]) and math.isnan(rows[1]["grad_norm"])
    logger.draw_curves(rows, [])  # a diverged step still draws
