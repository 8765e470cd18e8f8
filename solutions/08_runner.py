# %% [markdown]
# # Chapter 8 · The runner: training the assembled detector
#
# Chapters 2–7 built a model, a target assignment and a loss. Training is the loop that connects them — and the
# place where most silent bugs live: a forgotten `zero_grad`, a learning rate that starts too high, a checkpoint
# that cannot really resume. In this chapter you will build
#
# 1. one **training step**: forward, assign, loss, backward, gradient clipping, optimiser step,
# 2. the **learning-rate schedule**: linear warmup, then cosine decay,
# 3. an **exponential moving average** (EMA) of the weights,
# 4. **checkpoints** that survive a crash while being written, and
# 5. a **resume** that continues *exactly* where training stopped (in a single-process CPU run).
#
# Mixed precision (AMP) is explained at the end, not built: it wraps the same loop in an autocast context and a
# gradient scaler. First the classic sanity check — can the model overfit a single batch? — then a short real run
# with the
# package's `Runner`, and how to read its curves.

# %%
import copy
import math
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn

from course import arena_dir, check, hint
from course.reference import ch08
from course.resources import COURSE_ARENA, course_run, scaled
from detector.config import load_config
from detector.data import CocoDetection, collate, eval_transforms, pad_targets
from detector.losses import DetectionLoss
from detector.model import build_detector
from detector.schedule import WarmupCosine

torch.manual_seed(0)
arena = arena_dir()
train_set = CocoDetection(arena / "train", transforms=eval_transforms(320))
class_names = train_set.class_names
config = load_config("arena_cpu")  # the `make train` demo
print(config.model)
print(
    f"the demo model: {config.model.backbone}, a {config.model.neck_width}-channel neck, "
    f"{config.model.head_convs} head convs per branch"
)

# %% [markdown]
# ## 1. One training step
#
# Every iteration of every training loop in this course is the same six moves:
#
# 1. **forward**: `outputs = model(images)` — `cls_logits [B, N, C]`, `box_ltrb [B, N, 4]`, `obj_logits [B, N, 1]`;
# 2. **assign** and 3. **loss**: pad the per-image targets with `pad_targets(targets, device=...)` (→
#    `gt_labels [B, M]`, `gt_boxes [B, M, 4]`, `gt_mask [B, M]`) and pass them to `DetectionLoss`, which runs the
#    Task-Aligned Assigner of Chapter 6 on the detached predictions and sums the losses of Chapter 7;
# 4. **backward**: clear the old gradients first (`optimizer.zero_grad()`: PyTorch *adds* into `.grad`), then
#    `loss.total.backward()`;
# 5. **clip**: `torch.nn.utils.clip_grad_norm_` rescales all gradients together when their global L2 norm exceeds
#    `grad_clip` — one bad batch (a huge box-loss gradient early in training) cannot throw the weights far away;
#    it returns the norm *before* clipping, worth logging;
# 6. **step**: `optimizer.step()`.
#
# **Exercise 8.1** — write `train_step`. Return plain floats (`float(tensor)`), not tensors: a log that keeps
# tensors keeps their memory.


# %%
def train_step(
    model: nn.Module,
    criterion: DetectionLoss,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    targets: list[dict],
    grad_clip: float | None = 10.0,
) -> dict[str, float]:
    """One optimisation step on a batch.

    Args:
        model: the detector (in train mode), returning a ``DetectorOutput``.
        criterion: ``DetectionLoss``: ``criterion(outputs, gt_labels, gt_boxes, gt_mask)`` → ``LossOutput``
            with ``.total`` (0-dim) and ``.components`` (``{"cls", "box", "obj"}``).
        optimizer: any ``torch.optim`` optimiser over the model's parameters.
        images: ``uint8 [B, 3, S, S]`` on the model's device.
        targets: ``B`` dicts with ``boxes [K, 4]`` xyxy and ``labels [K]``.
        grad_clip: max global gradient norm, or ``None`` for no clipping.

    Returns:
        ``{"loss": total, "cls": …, "box": …, "obj": …, "grad_norm": norm before clipping}`` as floats.
    """
    ### BEGIN SOLUTION Exercise 8.1 · train_step: one optimiser step on the batch's loss, gradients clipped
    gt_labels, gt_boxes, gt_mask = pad_targets(targets, device=images.device)
    loss = criterion(model(images), gt_labels, gt_boxes, gt_mask)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    max_norm = grad_clip if grad_clip else math.inf  # an infinite max_norm only measures the norm
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    values = {
        "loss": float(loss.total.detach()),
        **{name: float(value) for name, value in loss.components.items()},
    }
    return {**values, "grad_norm": float(grad_norm)}
    ### END SOLUTION


# %%
train_step = check("8.1", train_step, fallback=ch08.train_step)

# %% [markdown]
# ## 2. The sanity check: overfit one batch
#
# Before spending hours on a full run, check that the pipeline *can* learn: train on one small batch, over and
# over, with no augmentation. The loss must fall towards zero and the predicted boxes must land on the ground
# truth. If they do not, no amount of data will help: look for a bug (boxes in the wrong format, labels off by
# one, a loss that ignores its input) before anything else. (Karpathy, "A Recipe for Training Neural Networks",
# 2019: "overfit one batch".)

# %%
batch_images, batch_targets = collate([train_set[i] for i in (0, 1)])
overfit_model = build_detector(config.model, len(class_names)).train()
criterion = DetectionLoss(len(class_names), config.loss)
optimizer = torch.optim.AdamW(overfit_model.parameters(), lr=1e-3)
overfit_log = [train_step(overfit_model, criterion, optimizer, batch_images, batch_targets, 10.0)
               for _ in range(scaled(60, 200))]  # fmt: skip

fig, (ax_loss, *ax_images) = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.3, 1, 1]})
for key in ("loss", "cls", "box", "obj"):
    ax_loss.plot([entry[key] for entry in overfit_log], label=key, lw=2 if key == "loss" else 1)
ax_loss.set(yscale="log", xlabel="step", title="Overfitting two images: the loss")
ax_loss.legend()
detections = overfit_model.predict(batch_images, score_thresh=0.3)
for ax, image, target, detection in zip(ax_images, batch_images, batch_targets, detections, strict=True):
    ax.imshow(image.permute(1, 2, 0))
    for box in target["boxes"].tolist():
        ax.add_patch(
            plt.Rectangle(
                box[:2], box[2] - box[0], box[3] - box[1], fill=False, ls="--", color="lime", lw=1.5
            )
        )
    for box, label in zip(detection["boxes"].tolist(), detection["labels"].tolist(), strict=True):
        ax.add_patch(
            plt.Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, color=f"C{label}", lw=1)
        )
    ax.set_title(f"GT (dashed) and {len(detection['boxes'])} detections > 0.3")
    ax.set_axis_off()
plt.show()
num_parameters = sum(p.numel() for p in overfit_model.parameters())
first_loss, last_loss = overfit_log[0]["loss"], overfit_log[-1]["loss"]
print(
    f"loss: {first_loss:.3f} → {last_loss:.3f} after {len(overfit_log)} steps ({first_loss / last_loss:.1f}× lower); "
    f"the model has {num_parameters / 1e6:.1f} M parameters for {sum(len(t['boxes']) for t in batch_targets)} boxes"
)

# %% [markdown]
# The printed line says how far the loss fell; on a CPU (`scaled` gives 60 steps, 200 on a GPU) it is still
# falling when the loop ends. The large bodies are found first, the small heads last (they have the fewest
# positive points, Chapter 6). Given more steps the loss keeps falling towards zero while the boxes settle on the
# ground truth. A loss that plateaus high here — with no augmentation, two images and millions of parameters
# for a few dozen boxes — means a bug.
#
# ## 3. Warmup, then cosine decay
#
# At the first steps the head's predictions are random and the assigner's targets noisy. For Adam there is a
# second reason: its second-moment estimate rests on a handful of gradients, so its adaptive step size has a
# large variance early on, and a full learning rate can push the weights somewhere they never recover from.
# Liu et al. (2020, "On the Variance of the Adaptive Learning Rate and Beyond", the RAdam paper) make this
# argument and show that a warmup removes the problem. (Goyal et al. 2017 warm up for another reason: SGD with
# large batches and the linear-scaling rule's large rate.) So the rate **warms up** linearly over `W` steps,
# then **decays** along half a cosine to a floor $r \cdot \text{lr}$ at the last step (the cosine of SGDR,
# Loshchilov & Hutter 2017, without its restarts). As a factor of the base rate, for step $s$ (counted from 0)
# of $T$ — the formula of `detector/schedule.py` at its default `train.decay_fraction = 1` (the demo's plan,
# below, holds the peak for longer):
#
# $$f(s) = \begin{cases} \dfrac{s + 1}{W} & s < W \\[2mm]
#   r + (1 - r)\,\tfrac12\left(1 + \cos\left(\pi \, \dfrac{s - W}{T - 1 - W}\right)\right) & s \ge W \end{cases}$$
#
# The $+1$ makes the very first step use $\text{lr}/W$ rather than 0 (a wasted step), and the cosine reaches its
# floor exactly at the last step $s = T - 1$. A plan with no step after the warmup ($W = T - 1$) would divide by
# zero: the cosine's progress is $(s - W) / \max(1, T - 1 - W)$, so such a plan ends at 1, not at the floor.
#
# **Predict, then run.** A plan of $T = 13$ steps with $W = 4$ and $r = 0.1$: what are $f(0)$, $f(3)$, $f(4)$,
# $f(8)$ and $f(12)$? Work them out on paper (the cosine runs over the 8 intervals from step 4 to step 12, so
# step 8 is half-way), then run the cell: it asks the package's `WarmupCosine`.

# %%
example_plan = WarmupCosine(13, 4, 0.1)
print({step: round(example_plan(step), 4) for step in (0, 3, 4, 8, 12)})

# %% [markdown]
# Step 0 is $1/4$; the warmup reaches 1 at step 3 and the cosine starts at 1 at step 4; half-way through the
# cosine, $\cos(\pi/2) = 0$ gives $0.1 + 0.9 \cdot \tfrac12 = 0.55$; the last step sits on the floor.
#
# **Exercise 8.2** — write `warmup_cosine`.


# %%
def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate factor at ``step`` (0-based) of a ``total_steps`` plan (``0 <= warmup_steps < total_steps``).

    Returns:
        ``(step + 1) / warmup_steps`` during warmup, then a half cosine from 1 down to ``min_lr_ratio`` at
        ``step = total_steps - 1``; the cosine's progress is ``(step - W) / max(1, T - 1 - W)``, so a plan with
        no step after the warmup (``W = T - 1``) ends at 1, not at the floor.
    """
    ### BEGIN SOLUTION Exercise 8.2 · warmup_cosine: a linear ramp up to 1, then half a cosine down to the floor
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    ### END SOLUTION


# %%
warmup_cosine = check("8.2", warmup_cosine, fallback=ch08.warmup_cosine)

# %% [markdown]
# The plan of the `make train` demo (`arena_cpu.yaml`: its warmup, floor and `train.decay_fraction`; printed
# below) next to the alternatives: your warmup + cosine, the same without warmup, and a step decay (÷10 at 2/3 and
# 8/9 of the run: Detectron's "1×" schedule for Faster R-CNN, which decays at 60k and 80k of 90k iterations).
# With `train.decay_fraction` $d < 1$ the package's `WarmupCosine` holds the peak and runs the same half-cosine
# over only the last $d$ of the steps after the warmup: the warmup-stable-decay ("WSD") shape of Hu et al. 2024
# (MiniCPM). `train.max_minutes` may shorten the plan on a slow machine: the Runner then re-lays the schedule to
# end with the budget — with WSD, only where the short decay begins moves.

# %%
steps_per_epoch = config.data.arena.n_train // config.data.batch_size
total = config.train.epochs * steps_per_epoch
warmup, floor = config.train.warmup_steps, config.train.min_lr_ratio
print(
    f"arena_cpu: {config.data.arena.n_train} training images in batches of {config.data.batch_size} = "
    f"{steps_per_epoch} steps per epoch; {config.train.epochs} epochs = {total} steps; warmup {warmup} steps, "
    f"floor {floor} × lr {config.train.lr}; decay_fraction {config.train.decay_fraction}; "
    f"budget train.max_minutes = {config.train.max_minutes}"
)
steps = range(total)
demo_plan = WarmupCosine(total, warmup, floor, config.train.decay_fraction)
plt.figure(figsize=(8, 3.2))
plt.plot(
    steps,
    [config.train.lr * demo_plan(s) for s in steps],
    lw=2.5,
    color="black",
    label=f"the demo's plan (decay over the last {config.train.decay_fraction:g})",
)
plt.plot(
    steps,
    [config.train.lr * warmup_cosine(s, total, warmup, floor) for s in steps],
    lw=1.5,
    label="warmup + cosine",
)
plt.plot(
    steps,
    [config.train.lr * warmup_cosine(s, total, 0, floor) for s in steps],
    ls=":",
    label="cosine, no warmup",
)
plt.plot(
    steps,
    [config.train.lr * 0.1 ** ((s >= 2 * total // 3) + (s >= 8 * total // 9)) for s in steps],
    ls="--",
    label="step decay",
)
plt.axvline(warmup, color="grey", lw=0.8)
plt.xlabel("optimiser step")
plt.ylabel("learning rate")
plt.title(f"Learning-rate schedules over the demo's {config.train.epochs} epochs ({total} steps)")
plt.legend()
plt.show()

# %% [markdown]
# ## 4. An exponential moving average of the weights
#
# The weights at the last step are one sample of a noisy walk. Their running average is usually a better model
# (Polyak & Juditsky 1992; used by EfficientDet, YOLOv5–v8): after every optimiser step,
#
# $$\theta_{\text{EMA}} \leftarrow d \cdot \theta_{\text{EMA}} + (1 - d)\cdot\theta, \qquad d \approx 0.999,$$
#
# which averages roughly the last $1/(1-d)$ steps. BatchNorm's running statistics are part of the model too and
# are averaged the same way; integer buffers (`num_batches_tracked`) are copied. The average is kept in float32
# and never receives gradients.
#
# **Exercise 8.3** — write `ema_update(ema_model, model, decay)`, in place; remember that a model's state holds
# parameters *and* buffers.


# %%
@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema = decay · ema + (1 - decay) · weights`` for every floating-point entry of the state dicts, in place;
    integer entries are copied.

    Args:
        ema_model: the average, same architecture as ``model``; modified in place.
        model: the model being trained.
        decay: ``d`` in ``[0, 1]``.
    """
    ### BEGIN SOLUTION Exercise 8.3 · ema_update: move every float entry of the average a step towards the model
    weights = model.state_dict()
    for name, average in ema_model.state_dict().items():
        value = weights[name].detach()
        if average.dtype.is_floating_point:
            average.mul_(decay).add_(value.to(average.dtype), alpha=1.0 - decay)
        else:
            average.copy_(value)
    ### END SOLUTION


# %%
ema_update = check("8.3", ema_update, fallback=ch08.ema_update)

# %% [markdown]
# At the start of training the average would remember the random initialisation for a thousand steps. The
# package's `ModelEMA` therefore ramps the decay up: $d(t) = d \cdot (1 - e^{-t/\tau})$ after $t$ updates
# (the ramp of YOLOv5). On a noisy scalar "weight" that drifts towards 1:

# %%
generator = torch.Generator().manual_seed(0)
raw = (1 - torch.exp(-torch.arange(600) / 150)) + 0.15 * torch.randn(600, generator=generator)
current, plain, ramped = (nn.Linear(1, 1, bias=False).requires_grad_(False) for _ in range(3))
plain.weight.zero_()
ramped.weight.zero_()
ema_plain, ema_ramped = [], []
for t, value in enumerate(raw.tolist(), start=1):
    current.weight.fill_(value)
    ema_update(plain, current, 0.99)
    ema_update(ramped, current, 0.99 * (1 - math.exp(-t / 50)))
    ema_plain.append(plain.weight.item())
    ema_ramped.append(ramped.weight.item())
plt.figure(figsize=(8, 3))
plt.plot(raw, lw=0.5, color="grey", label="raw weight (noisy steps)")
plt.plot(ema_plain, label="EMA, d = 0.99")
plt.plot(ema_ramped, label="EMA, d ramped up: 0.99·(1 - exp(-t/50))")
plt.xlabel("step")
plt.legend()
plt.title("The average is smooth; the ramp forgets the initial 0 faster")
plt.show()

# %% [markdown]
# ## 5. Checkpoints that survive a crash
#
# A long run is killed sooner or later: a pre-empted cloud machine, a full disk, Ctrl-C. A checkpoint must hold
# everything the next steps depend on — not only the model:
#
# | entry | why |
# |---|---|
# | `model` | the weights |
# | `optimizer` | Adam's moment estimates (without them the first resumed steps are huge) |
# | `scheduler` | where we are in warmup/cosine |
# | `step` | how many steps are done |
# | `rng` | `torch.get_rng_state()`: the CPU generator of torch, so dropout and anything else drawn from it continue the same random stream |
#
# That table is the minimum this chapter builds. It is not everything a real pipeline draws from: Python's
# `random`, NumPy, the CUDA generators, the data loader's shuffling order and its worker processes have their
# own states (the package's checkpoint covers them; see the end of the chapter).
#
# And **writing** one must be atomic: `torch.save(state, path)` straight over the previous checkpoint leaves a
# truncated, unloadable file if the process dies mid-write — the one moment you need it. Write to a temporary
# file in the same folder, then `os.replace(tmp, path)`: a rename within a file system is atomic, so `path` is
# always either the old or the new checkpoint.
#
# **Exercise 8.4** — write `save_training_state`.


# %%
def save_training_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
) -> None:
    """Atomically write ``{"model", "optimizer", "scheduler", "step", "rng"}`` to ``path``.

    ``model``, ``optimizer``, ``scheduler``: their ``state_dict()``; ``step``: int; ``rng``:
    ``torch.get_rng_state()``. The file is written to a temporary name in the same folder, then renamed.
    """
    ### BEGIN SOLUTION Exercise 8.4 · save_training_state: all the state resume needs, never half-written
    path = Path(path)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "rng": torch.get_rng_state(),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failure: no half-written file left behind
    ### END SOLUTION


# %%
save_training_state = check("8.4", save_training_state, fallback=ch08.save_training_state)

# %% [markdown]
# ## 6. Resuming exactly
#
# Loading is the mirror image: `load_state_dict` into a freshly built model, optimiser and scheduler, and restore
# the random-number generator with `torch.set_rng_state`. Open the file with `torch.load(path,
# weights_only=True)`: a checkpoint then only loads tensors and plain containers and cannot run code hidden in a
# pickle.
#
# **Exercise 8.5** — write `load_training_state`. It returns the step to continue from.


# %%
def load_training_state(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> int:
    """Restore what :func:`save_training_state` wrote into ``model``, ``optimizer``, ``scheduler`` and the torch
    RNG; returns the saved ``step``."""
    ### BEGIN SOLUTION Exercise 8.5 · load_training_state: the mirror image of saving, random generator included
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return int(state["step"])
    ### END SOLUTION


# %%
load_training_state = check("8.5", load_training_state, fallback=ch08.load_training_state)

# %% [markdown]
# The proof: a small model with dropout (which draws random numbers) trained for 8 steps straight, and the same
# run interrupted after 4 steps, rebuilt from scratch and resumed from the checkpoint. Here everything random —
# the data and the dropout masks — comes from torch's CPU generator, and the run is a single process on the CPU,
# so the two must end **bit for bit** equal.


# %%
def tiny_run(steps: int, checkpoint: Path | None = None, stop_at: int | None = None) -> nn.Module:
    """Train a small MLP with dropout on random data; optionally save at ``stop_at`` or resume from ``checkpoint``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(steps, 2, 0.1))
    start = (
        load_training_state(checkpoint, model, optimizer, scheduler)
        if checkpoint and checkpoint.exists()
        else 0
    )
    for step in range(start, steps):
        x = torch.randn(16, 8)
        loss = (model(x).squeeze(1) - x.sum(1)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if stop_at is not None and step + 1 == stop_at:
            save_training_state(checkpoint, model, optimizer, scheduler, step + 1)
            break
    return model


with tempfile.TemporaryDirectory() as folder:
    straight = tiny_run(8)
    tiny_run(8, checkpoint=Path(folder) / "last.pt", stop_at=4)  # "killed" after step 4
    resumed = tiny_run(8, checkpoint=Path(folder) / "last.pt")
difference = max(
    (a - b).abs().max().item() for a, b in zip(straight.parameters(), resumed.parameters(), strict=True)
)
print(f"largest weight difference, straight vs interrupted-and-resumed: {difference}")

# %% [markdown]
# ## 7. A real run with the package's `Runner`
#
# `detector.engine.Runner` is these pieces at scale: data loaders whose shuffling is a function of the epoch,
# AMP on a GPU, the EMA, checkpoints every epoch (`last.pt`, `best.pt` by validation mAP), logs and curves. Here
# it trains the demo model on the course arena (`course.resources.COURSE_ARENA`, smaller than the demo's) for a
# few epochs within a `train.max_minutes` budget (on a slower machine the Runner shrinks its plan, cosine
# included, to what fits) — far too short for a good detector, long enough to read the curves. The first cell
# prints the plan. The run is cached in `data/course_detector.pt` (Chapters 9 and 10 use it unless a `make train`
# run is at hand) and retrained when anything that shapes it changes (the config, the course arena, the
# overrides); delete the file to train again.
# The validation mAP of both the EMA and the raw weights is measured after every epoch.

# %%
run = course_run()
plan_config = run.config
print(
    f"{run.source}: {plan_config.model.backbone} on {COURSE_ARENA['n_train']} training images at "
    f"{COURSE_ARENA['image_size']} px, {plan_config.train.epochs} epochs planned within "
    f"train.max_minutes = {plan_config.train.max_minutes}; {len(run.step_log)} steps done in {run.seconds:.0f} s"
)
for record in run.history:
    print(f"epoch {record['epoch']}: loss {record['loss']:.3f}  mAP EMA {record['val_map']:.4f} / raw {record['val_raw_map']:.4f}"
          f"  mAP50 EMA {record['val_map_50']:.4f} / raw {record['val_raw_map_50']:.4f}")  # fmt: skip


# %%
def smooth(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average of a curve (TensorBoard's smoothing)."""
    out, average = [], values[0]
    for value in values:
        average = weight * average + (1 - weight) * value
        out.append(average)
    return out


run_steps = run.step_log
fig, (ax_loss, ax_lr, ax_map) = plt.subplots(1, 3, figsize=(15, 4))
for key in ("loss", "cls", "box", "obj"):
    values = [entry[key] for entry in run_steps]
    (line,) = ax_loss.plot(values, alpha=0.25, lw=0.7)
    ax_loss.plot(smooth(values), color=line.get_color(), lw=2 if key == "loss" else 1.2, label=key)
ax_loss.set(yscale="log", xlabel="step", title="Training loss per component")
ax_loss.legend()
initial = run.config.train  # the plan laid out at the start (the demo's decay_fraction: WSD)
initial_total = initial.epochs * (COURSE_ARENA["n_train"] // run.config.data.batch_size)  # full batches only
initial_plan = WarmupCosine(initial_total, initial.warmup_steps, initial.min_lr_ratio, initial.decay_fraction)
final = WarmupCosine.from_state(
    run.schedule
)  # the Runner's plan at the end, after any re-planning by the budget
ax_lr.plot([entry["lr"] for entry in run_steps], lw=2, label="lr used")
ax_lr.plot([initial.lr * initial_plan(s) for s in range(initial_total)], ls=":", label="planned at the start")
ax_lr.plot([initial.lr * final(s) for s in range(final.total_steps)], ls="--", lw=1, label="the final plan")
ax_lr.set(xlabel="step", title="Learning rate")
ax_lr.legend()
epochs = [record["epoch"] for record in run.history]
ax_map.plot(epochs, [r["val_map_50"] for r in run.history], "o-", color="C0", label="EMA, mAP50")
ax_map.plot(
    epochs, [r["val_raw_map_50"] for r in run.history], "o--", color="C0", alpha=0.6, label="raw, mAP50"
)
ax_map.plot(epochs, [r["val_map"] for r in run.history], "s-", color="C1", label="EMA, mAP")
ax_map.plot(epochs, [r["val_raw_map"] for r in run.history], "s--", color="C1", alpha=0.6, label="raw, mAP")
ax_map.set(xlabel="epoch", title="Validation mAP: EMA vs raw weights", xticks=epochs)
ax_map.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Reading the curves
#
# - **Loss per component.** The terms have different scales: read each on its own, on the log scale. `obj` (the
#   predicted IoU, trained at every point) is the largest at first and falls as the points learn that most of
#   them are background; `box` falls as the positives' boxes tighten; `cls` starts at a scale set by how its loss
#   (`loss.cls`) treats the many easy background points: focal, QFL and varifocal down-weight them, BCE does not. All
#   three are normalised by the sum of the assigner's soft targets (clamped at 1). The targets themselves move
#   with the model: the soft class targets and the objectness's IoU targets grow as the predictions line up with
#   the GTs, so a component can rise for a while without anything being wrong. Compare trends over an epoch, not
#   single steps.
# - **A loss that stops falling** after warmup at a high value: the learning rate is too high (the spikes come
#   back after each drop) or too low (a flat, slow curve); a loss that becomes NaN: lower `train.lr`, keep
#   `train.grad_clip`, lengthen the warmup — the Runner stops and names the step and the component.
# - **EMA vs raw.** Early in training the EMA lags behind the raw weights (it still averages older, worse weights);
#   after a few epochs it catches up and overtakes them, and it is what the Runner evaluates and saves in
#   `best.pt`. With the few steps of this run (printed above), expect the two to be close, either one ahead.
# - **Validation mAP** is the only curve that measures what we want. Training loss keeps falling when the model
#   starts to overfit; validation mAP does not.
#
# With this budget the detector finds the large bodies and few heads. `make train` trains the same model longer:
# the plan printed in section 3 is an upper bound; on 2 CPU cores its `train.max_minutes` budget (printed there
# too) shrinks the plan to a fraction of it, and the Runner prints the new plan. Chapter 10 shows where the short
# run fails.
#
# ## What the package does differently
#
# - **Mixed precision** on a GPU (and in bfloat16 on CPUs with native bf16 support, `train.cpu_bf16`): the forward
#   pass runs under `torch.autocast` in bfloat16 (or float16 with a `GradScaler` that scales the loss up so small
#   gradients survive, unscales them before clipping, and skips a step whose gradients overflowed); the loss is
#   computed in float32 and the EMA kept in float32.
# - **Exact resume, mid-epoch included**: every epoch reseeds all generators from `(seed, epoch, rank)`, so an
#   epoch's data order and augmentations do not depend on history; a Ctrl-C checkpoint replays the epoch's first
#   batches through the loader without training on them. The test suite checks that an interrupted-and-resumed
#   run gives the same losses and weights as a straight one.
# - `save_checkpoint` also `fsync`s the file and its folder (so the rename survives a power cut), and the
#   checkpoint holds the EMA, the grad scaler, all RNG states (Python, NumPy, CUDA), the config and the class
#   names, so `detector eval`/`predict` need nothing else.
# - **No weight decay** on biases and normalisation weights; a non-finite loss stops the run with the step and
#   the loss component named; multi-GPU through `torchrun` and `DistributedDataParallel`.
#
# ## Summary
#
# A training step is forward → assign → loss → `zero_grad` → backward → clip → step. Check the pipeline by
# overfitting one batch first. Warm the learning rate up, then decay it along a cosine to a floor. Evaluate an EMA
# of the weights. A checkpoint holds model, optimiser, scheduler, step and RNG state, and is written atomically
# (temporary file + `os.replace`); in a single-process CPU run whose randomness all comes from torch's generator,
# resuming from it continues bit for bit — a real pipeline must also restore the other generators and the data
# order, as the package does.
#
# ## Open questions
#
# 1. Adam's update is nearly invariant to the scale of the gradient. What does gradient clipping then still do
#    for Adam, and what does it do for SGD?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** For SGD, clipping bounds the step itself: the update is `lr · g`, so rescaling `g` to the clip norm
# caps how far one bad batch moves the weights. Adam divides by the running RMS of the gradients, so rescaling one
# gradient does not shrink its step in proportion; what clipping still does is keep a single huge gradient from
# entering the moment estimates at full size — the first moment would carry it for ~10 steps and the second
# moment (β₂ = 0.999) would shrink every later step for ~1000. Clipping protects the *statistics*, not the step.

# %% [markdown]
# 2. The demo's EMA decay and its ramp (`train.ema_decay`, `train.ema_warmup_steps`, printed below) against its
#    planned steps. How would you choose them for a 100-step run — and for a 100 000-step run?

# %%
print(
    f"arena_cpu: ema_decay {config.train.ema_decay}, ramp {config.train.ema_warmup_steps} steps, "
    f"plan {total} steps; the average spans about {1 / (1 - config.train.ema_decay):.0f} steps"
)

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** The average spans about $1/(1-d)$ steps; it should cover a small fraction of the run (the weights of
# the last part are the good ones) and the ramp must end well before the run does. For 100 steps, a span of 10–30
# steps ($d \approx 0.9$ to $0.97$) with a ramp of ~20 steps; on a CPU the course run's decay
# (`COURSE_TRAIN_OVERRIDES`) spans most of its short run, one reason its EMA and raw weights end close. For 100 000 steps, $d = 0.9999$
# (10 000 steps, YOLOv5's value, with its ramp τ = 2000). Check with the EMA-vs-raw curve:
# an EMA still below the raw weights at the end means the average remembers too much of the past.

# %% [markdown]
# 3. Exact resume needs deterministic data loading. Which parts of a multi-worker GPU pipeline make bit-exact
#    resume impossible, and which weaker guarantee would you test instead?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# **Answer.** Non-deterministic GPU kernels (atomic adds in scatter/index operations and in some cuDNN backward
# algorithms, which `cudnn.benchmark` may choose differently after a restart), worker processes whose random state
# is not saved, and float sums whose order changes with the batch split across GPUs. Test instead that a resumed
# run sees the same data order and the same learning-rate schedule, and that its loss curve and final metric stay
# within the spread of two straight runs with the same seed.
