"""Exercise tests of Chapter 8 (runner). Run against your notebook with ``make check CH=8``.

References: a hand-written step on a copy of the model, ``detector.schedule.WarmupCosine`` and hand-computed
factors, ``detector.ema.ModelEMA`` and the EMA formula, and an uninterrupted run for the resume.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from course.checks import exercise, expect, expect_close
from detector.data import pad_targets
from detector.ema import ModelEMA
from detector.losses import DetectionLoss
from detector.model import build_detector
from detector.schedule import WarmupCosine

CHAPTER = "08_runner"
TINY_MODEL = {"backbone": "resnet18", "neck_width": 16, "head_convs": 1}  # at 64 px: a step takes ~0.1 s


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread for the tiny model: on a busy 2-core machine two OpenMP threads spin against other
    processes and a 64-px step slows down ten-fold (measured: 0.34 s with one thread, 2–9 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# Exercise 8.1 · train_step ---------------------------------------------------------------------------------
def _tiny_problem(seed: int = 0) -> tuple[nn.Module, DetectionLoss, torch.Tensor, list[dict]]:
    torch.manual_seed(seed)
    model = build_detector(TINY_MODEL, num_classes=2).train()
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=generator)
    targets = [
        {
            "boxes": torch.tensor([[8.0, 8.0, 40.0, 56.0], [44.0, 10.0, 60.0, 30.0]]),
            "labels": torch.tensor([0, 1]),
        },
        {"boxes": torch.tensor([[20.0, 4.0, 52.0, 36.0]]), "labels": torch.tensor([1])},
    ]
    return model, DetectionLoss(2), images, targets


def _reference_step(model, criterion, optimizer, images, targets, grad_clip, clip=True) -> float:
    loss = criterion(model(images), *pad_targets(targets))
    optimizer.zero_grad()
    loss.total.backward()
    norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip if clip else math.inf)
    optimizer.step()
    return float(norm)


def _max_difference(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True))


@exercise("8.1")
def test_train_step_equals_a_hand_written_step(impl):
    """Two SGD steps with a small clip norm, against the same steps written out on a copy of the model."""
    with one_thread():
        _check_against_hand_written_steps(impl)


def _check_against_hand_written_steps(impl) -> None:
    model, criterion, images, targets = _tiny_problem()
    reference, unclipped = copy.deepcopy(model), copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    values = impl.train_step(model, criterion, optimizer, images, targets, 0.5)
    expect(isinstance(values, dict), f"train_step must return a dict of floats, got {type(values).__name__}")
    ref_optimizer = torch.optim.SGD(reference.parameters(), lr=0.01)
    norm = _reference_step(reference, criterion, ref_optimizer, images, targets, 0.5)
    _reference_step(
        unclipped,
        criterion,
        torch.optim.SGD(unclipped.parameters(), lr=0.01),
        images,
        targets,
        0.5,
        clip=False,
    )
    if _max_difference(model, reference) > 1e-5:
        expect(_max_difference(model, unclipped) > 1e-5,
               "the weights moved as without clipping: call nn.utils.clip_grad_norm_(model.parameters(), grad_clip) "
               "between backward() and optimizer.step()")  # fmt: skip
        expect(False, f"after one step the weights differ from forward → loss → zero_grad → backward → clip → step "
                      f"by up to {_max_difference(model, reference):.3g}")  # fmt: skip
    expect(set(values) >= {"loss", "cls", "box", "obj", "grad_norm"},
           f"return the keys loss, cls, box, obj, grad_norm; got {sorted(values)}")  # fmt: skip
    expect(all(isinstance(v, float) for v in values.values()),
           "return plain floats (float(tensor)), not tensors: a log of tensors keeps their memory")  # fmt: skip
    expect(abs(values["grad_norm"] - norm) < 1e-4 * max(1.0, norm),
           f"grad_norm: expected the norm before clipping ({norm:.4f}, what clip_grad_norm_ returns), "
           f"got {values['grad_norm']:.4f}")  # fmt: skip
    # the second step without clipping (grad_clip None): clipping would hide gradients that add up over steps
    impl.train_step(model, criterion, optimizer, images, targets, None)
    _reference_step(reference, criterion, ref_optimizer, images, targets, 0.5, clip=False)
    expect(_max_difference(model, reference) < 1e-5,
           "the first step is right, the second (grad_clip None) is not: clear the gradients each step "
           "(optimizer.zero_grad()), backward() adds into .grad; and grad_clip None means no clipping")  # fmt: skip


@exercise("8.1")
def test_train_step_lowers_the_loss_on_a_fixed_batch(impl):
    model, criterion, images, targets = _tiny_problem(seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    with one_thread():
        first = impl.train_step(model, criterion, optimizer, images, targets, 10.0)
        for _ in range(5):
            last = impl.train_step(model, criterion, optimizer, images, targets, 10.0)
    expect(last["loss"] < first["loss"],
           f"six steps on the same batch should lower the loss: {first['loss']:.4f} → {last['loss']:.4f}")  # fmt: skip
    with torch.no_grad(), one_thread():
        expected = criterion(model(images), *pad_targets(targets))
    expect(math.isfinite(last["loss"]), f"non-finite loss {last['loss']}")
    expect(
        float(expected.total) < first["loss"],
        "the weights after the steps should give a lower loss than at the start",
    )


# Exercise 8.2 · warmup_cosine ------------------------------------------------------------------------------
@exercise("8.2")
def test_warmup_cosine_hand_computed(impl):
    """W = 4, T = 13, r = 0.1: steps 0..3 warm up to 1; the cosine runs over steps 4..12 (8 intervals)."""
    got = [impl.warmup_cosine(s, 13, 4, 0.1) for s in range(13)]
    expect(
        abs(got[0]) > 1e-9, "the first step has factor 0: use (step + 1) / warmup_steps, or step 0 is wasted"
    )
    expect(abs(got[0] - 0.25) < 1e-9, f"step 0 of a 4-step warmup: (0 + 1) / 4 = 0.25, got {got[0]}")
    expect(abs(got[3] - 1.0) < 1e-9 and abs(got[4] - 1.0) < 1e-9,
           f"the warmup ends at 1.0 (step 3) and the cosine starts at 1.0 (step 4); got {got[3]}, {got[4]}")  # fmt: skip
    expect(abs(got[12] - 0.1) < 1e-9,
           f"the last step (12) must reach the floor min_lr_ratio 0.1, got {got[12]:.4f}: the cosine runs over "
           "T - 1 - W steps, so that step T - 1 sits on the floor")  # fmt: skip
    expect(abs(got[8] - 0.55) < 1e-9,
           f"half-way through the cosine (step 8): 0.1 + 0.9 · ½ · (1 + cos(π/2)) = 0.55, got {got[8]}")  # fmt: skip


@exercise("8.2")
def test_warmup_cosine_matches_the_package(impl):
    for total, warmup, floor in ((50, 10, 0.05), (30, 0, 0.0), (100, 1, 0.2), (7, 6, 0.5)):
        reference = WarmupCosine(total, warmup, floor)
        got = torch.tensor(
            [float(impl.warmup_cosine(s, total, warmup, floor)) for s in range(total)], dtype=torch.float64
        )
        expected = torch.tensor([reference(s) for s in range(total)], dtype=torch.float64)
        expect_close(got, expected, f"factors of the plan T={total}, W={warmup}, r={floor}", atol=1e-9,
                     hint="detector.schedule.WarmupCosine is the reference")  # fmt: skip


# Exercise 8.3 · ema_update ---------------------------------------------------------------------------------
def _ema_pair() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model(torch.randn(8, 3))  # updates running_mean/var and num_batches_tracked
    average = copy.deepcopy(model).requires_grad_(False)
    with torch.no_grad():
        for tensor in average.state_dict().values():
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.randn_like(tensor))
    model(torch.randn(8, 3))  # the model moves on: num_batches_tracked 2, the average's still 1
    return average, model


@exercise("8.3")
def test_ema_update_arithmetic(impl):
    average, model = _ema_pair()
    before = {k: v.clone() for k, v in average.state_dict().items()}
    impl.ema_update(average, model, 0.9)
    after, weights = average.state_dict(), model.state_dict()
    weight = after["0.weight"]
    swapped = 0.1 * before["0.weight"] + 0.9 * weights["0.weight"]
    expect(
        not torch.allclose(weight, swapped),
        "the weights are swapped: ema = d · ema + (1 - d) · weights, with d = 0.9",
    )
    expect(not torch.equal(after["1.running_mean"], before["1.running_mean"]),
           "BatchNorm's running_mean did not change: average the buffers too (iterate over state_dict())")  # fmt: skip
    for name, value in after.items():
        if value.dtype.is_floating_point:
            expect_close(
                value, 0.9 * before[name] + 0.1 * weights[name], f"'{name}' after one update with d = 0.9"
            )
    expect(int(after["1.num_batches_tracked"]) == int(weights["1.num_batches_tracked"]),
           "integer buffers (num_batches_tracked) are copied, not averaged")  # fmt: skip
    expect(
        all(p.grad_fn is None for p in average.parameters()),
        "the average must not be part of an autograd graph",
    )


@exercise("8.3")
def test_ema_update_matches_model_ema(impl):
    average, model = _ema_pair()
    reference = ModelEMA(model, decay=0.99, warmup_steps=0)
    reference.module.load_state_dict(average.state_dict())
    for _ in range(3):
        impl.ema_update(average, model, 0.99)
        reference.update(model)
    for name, value in reference.module.state_dict().items():
        expect_close(
            average.state_dict()[name], value, f"'{name}' after three updates, against detector.ema.ModelEMA"
        )


# Exercise 8.4 · save_training_state ------------------------------------------------------------------------
def _tiny_training_objects(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(10, 2, 0.1))
    return model, optimizer, scheduler


def _train(model, optimizer, scheduler, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(4, 8)
        loss = (model(x).squeeze(1) - x.sum(1)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


@exercise("8.4")
def test_save_training_state_writes_everything(impl):
    model, optimizer, scheduler = _tiny_training_objects()
    _train(model, optimizer, scheduler, 3)
    rng = torch.get_rng_state()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "last.pt"
        impl.save_training_state(path, model, optimizer, scheduler, 3)
        expect(path.is_file(), f"nothing was written to {path}")
        state = torch.load(path, weights_only=True)
        leftovers = [p.name for p in Path(folder).iterdir() if p.name != "last.pt"]
    expect(isinstance(state, dict), f"save a dict, got {type(state).__name__}")
    missing = [key for key in ("model", "optimizer", "scheduler", "step", "rng") if key not in state]
    expect(not missing, f"the checkpoint lacks {missing}")
    for name, value in model.state_dict().items():
        expect_close(state["model"][name], value, f"model weight '{name}'")
    moments = state["optimizer"]["state"][0]
    expect("exp_avg" in moments and torch.equal(moments["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]),
           "the optimizer's state (AdamW's moments) must be saved: optimizer.state_dict()")  # fmt: skip
    expect(
        state["scheduler"].get("last_epoch") == 3, "the scheduler's state_dict must be saved (last_epoch 3)"
    )
    expect(int(state["step"]) == 3, f"step: expected 3, got {state['step']}")
    expect(torch.equal(state["rng"], rng), "rng: save torch.get_rng_state() at the time of saving")
    expect(not leftovers, f"temporary files left in the folder: {leftovers}")


@exercise("8.4")
def test_save_training_state_is_atomic(impl):
    """A crash in the middle of writing (simulated: torch.save writes a few bytes, then fails) must leave the
    previous checkpoint loadable."""
    model, optimizer, scheduler = _tiny_training_objects()
    original_save = torch.save
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "last.pt"
        impl.save_training_state(path, model, optimizer, scheduler, 1)

        def crashing_save(obj, f, *args, **kwargs):
            if isinstance(f, (str, Path)):
                Path(f).write_bytes(b"half a checkpoint")
            else:
                f.write(b"half a checkpoint")
            raise OSError("simulated crash: disk full")

        torch.save = crashing_save
        try:
            impl.save_training_state(path, model, optimizer, scheduler, 2)
        except OSError:
            pass
        finally:
            torch.save = original_save
        try:
            step = int(torch.load(path, weights_only=True)["step"])
        except Exception as error:  # noqa: BLE001 - any failure to load is the diagnosis
            step = f"unloadable ({type(error).__name__})"
    expect(step == 1,
           f"after a crash while writing, {path.name} is {step}: write to a temporary file in the same folder, "
           "then os.replace(tmp, path) — the rename is atomic")  # fmt: skip


# Exercise 8.5 · load_training_state ------------------------------------------------------------------------
@exercise("8.5")
def test_resume_continues_exactly(impl):
    """6 steps straight vs 3 steps, save, fresh objects (another seed), load, 3 more steps: equal weights."""
    straight, optimizer, scheduler = _tiny_training_objects()
    _train(straight, optimizer, scheduler, 6)

    model, optimizer, scheduler = _tiny_training_objects()
    _train(model, optimizer, scheduler, 3)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "last.pt"
        saved = {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict()),
                 "scheduler": scheduler.state_dict(), "step": 3, "rng": torch.get_rng_state()}  # fmt: skip
        torch.save(saved, path)
        model, optimizer, scheduler = _tiny_training_objects(
            seed=123
        )  # a new process: other weights, other RNG
        _train(model, optimizer, scheduler, 1)
        step = impl.load_training_state(path, model, optimizer, scheduler)
    expect(step == 3, f"load_training_state must return the saved step 3, got {step!r}")
    for name, value in saved["model"].items():
        expect_close(model.state_dict()[name], value, f"model weight '{name}' after loading",
                     hint="model.load_state_dict(state['model'])")  # fmt: skip
    expect(torch.equal(optimizer.state_dict()["state"][0]["exp_avg"], saved["optimizer"]["state"][0]["exp_avg"]),
           "the optimizer's moments were not restored: optimizer.load_state_dict(state['optimizer'])")  # fmt: skip
    expect(scheduler.last_epoch == 3,
           f"the scheduler is at step {scheduler.last_epoch}, expected 3: scheduler.load_state_dict(...), else the "
           "warmup starts over")  # fmt: skip
    expect(torch.equal(torch.get_rng_state(), saved["rng"]),
           "the random-number generator was not restored: torch.set_rng_state(state['rng']) — else dropout and "
           "data differ after resuming")  # fmt: skip
    _train(model, optimizer, scheduler, 3)
    difference = _max_difference(model, straight)
    expect(difference == 0.0, f"resumed weights differ from the uninterrupted run by {difference:.3g}")
