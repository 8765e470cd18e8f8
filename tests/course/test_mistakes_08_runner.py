"""Plausible wrong solutions of Chapter 8, each caught by the exercise tests with a diagnosis that names it."""

from __future__ import annotations

import pytest

from course.mistakes import assert_caught, edit

CHAPTER = "08_runner"
CASES = [
    ("8.1", "gradients never cleared", r"clear the gradients each step",
     {"train_step": edit("    optimizer.zero_grad(set_to_none=True)\n", "")}),
    ("8.1", "clipping left out", r"as without clipping",
     {"train_step": edit("max_norm = grad_clip if grad_clip else math.inf", "max_norm = math.inf")}),
    ("8.1", "the norm returned as a tensor", r"plain floats",
     {"train_step": edit('"grad_norm": float(grad_norm)', '"grad_norm": grad_norm')}),
    ("8.2", "warmup from 0 (step / W)", r"first step has factor 0",
     {"warmup_cosine": edit("(step + 1) / warmup_steps", "step / warmup_steps")}),
    ("8.2", "cosine over T - W steps", r"T - 1 - W steps",
     {"warmup_cosine": edit("total_steps - 1 - warmup_steps", "total_steps - warmup_steps")}),
    ("8.2", "cosine decays to 0, not to the floor", r"floor min_lr_ratio",
     {"warmup_cosine": edit("return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5", "return 0.5")}),
    ("8.3", "decay and its complement swapped", r"swapped",
     {"ema_update": edit("average.mul_(decay).add_(value.to(average.dtype), alpha=1.0 - decay)",
                         "average.mul_(1.0 - decay).add_(value.to(average.dtype), alpha=decay)")}),
    ("8.3", "parameters only, buffers forgotten", r"running_mean did not change",
     {"ema_update": edit("ema_model.state_dict().items()", "ema_model.named_parameters()")}),
    ("8.4", "written straight over the checkpoint", r"temporary file .*os\.replace",
     {"save_training_state": edit("torch.save(state, tmp)\n        os.replace(tmp, path)", "torch.save(state, path)")}),
    ("8.4", "random state not saved", r"lacks \['rng'\]",
     {"save_training_state": edit('        "rng": torch.get_rng_state(),\n', "")}),
    ("8.5", "random generator not restored", r"random-number generator was not restored",
     {"load_training_state": edit('    torch.set_rng_state(state["rng"])\n', "")}),
    ("8.5", "scheduler not restored", r"warmup starts over",
     {"load_training_state": edit('    scheduler.load_state_dict(state["scheduler"])\n', "")}),
    ("8.5", "optimiser not restored", r"optimizer's moments were not restored",
     {"load_training_state": edit('    optimizer.load_state_dict(state["optimizer"])\n', "")}),
]  # fmt: skip


@pytest.mark.parametrize(("exercise_id", "mistake", "diagnosis", "wrong"), CASES, ids=[c[1] for c in CASES])
def test_mistake_is_caught(exercise_id, mistake, diagnosis, wrong):
    assert_caught(CHAPTER, exercise_id, mistake, diagnosis=diagnosis, **wrong)
