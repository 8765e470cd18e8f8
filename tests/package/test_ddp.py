"""Multi-process training through torchrun on the CPU (gloo): it finishes, agrees across ranks, writes once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detector.checkpoint import load_checkpoint
from detector.data import generate_arena
from detector.metrics import METRIC_KEYS

DDP_TIMEOUT_S = (
    240  # a hang (a rank waiting in a collective the other never reaches) fails instead of blocking
)


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path: Path) -> None:
    root = generate_arena(tmp_path / "arena", n_train=8, n_valid=5, n_test=1, image_size=96, seed=0)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "detector", "train", "--data", str(root), "--name", "ddp", "--device", "cpu",
        "data.image_size=64", "data.batch_size=2", "data.workers=0", "model.neck_width=16", "model.head_convs=1",
        "train.epochs=2", "train.warmup_steps=1", "train.max_minutes=null", f"train.out_dir={tmp_path / 'runs'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=DDP_TIMEOUT_S, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]

    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert [d.name for d in run_dirs] == ["ddp"]  # one run directory: only rank 0 writes
    records = [json.loads(line) for line in (run_dirs[0] / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(f"val_{key}" in records[-1] for key in METRIC_KEYS)
    assert records[-1]["val_num_images"] == 5  # 3 + 2 images on the two ranks, gathered, none duplicated
    checkpoint = load_checkpoint(run_dirs[0] / "last.pt")
    assert checkpoint["step"] == 4  # 8 images / (2 processes × batch 2) = 2 steps per epoch
    assert "Validation (valid)" in result.stdout and result.stdout.count("Validation (valid)") == 1
