"""Where and how a run computes: the device, the process group, cuDNN flags, autocast, loader workers.

``train.deterministic`` (default off) makes a GPU run repeatable: ``torch.use_deterministic_algorithms``
(an op without a deterministic kernel raises instead of silently varying), cuDNN's deterministic kernels and
no autotuning, and the cuBLAS workspace setting it needs. It costs speed on a GPU: cuDNN no longer picks the
fastest kernel for each shape, and some deterministic kernels are slower than their atomic counterparts (how
much depends on the model and GPU; not measured here, where the tests run without one).
Off, cuDNN autotunes its kernels (``cudnn.benchmark``). CPU runs are repeatable either way (the exact-resume
tests rely on it); the data order and augmentations are always seeded (:mod:`detector.loaders`).
"""

from __future__ import annotations

import os
import warnings

import torch

from detector import distributed
from detector.config import DataConfig, TrainConfig
from detector.distributed import DistInfo
from detector.loaders import resolve_device

CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"  # CUDA docs, "Reproducibility": deterministic cuBLAS workspace


def setup_device(train: TrainConfig) -> tuple[torch.device, DistInfo]:
    """The device of this process (``cuda:LOCAL_RANK`` under torchrun) and the process group it joined."""
    device = resolve_device(train.device)
    dist = distributed.init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if device.type == "cuda":
        configure_determinism(train.deterministic)
    return device, dist


def configure_determinism(deterministic: bool) -> None:
    """cuDNN/cuBLAS flags for ``train.deterministic`` (see the module docstring)."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX): there bf16 autocast halves a
    training step; elsewhere bf16 is emulated and slower than fp32."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def amp_dtype(device: torch.device, enabled: bool, cpu_bf16: bool = False) -> torch.dtype | None:
    """The autocast dtype, or ``None`` for full fp32.

    CUDA (``train.amp``): bf16 where the GPU supports it, else fp16 (with a grad scaler). CPU
    (``train.cpu_bf16``): bf16 only where oneDNN has native bf16 kernels (AVX512-BF16 or AMX) — there it
    halves the step time; elsewhere bf16 is emulated and slower, so the run stays in fp32.
    """
    if device.type == "cuda":
        if not enabled:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_bf16 and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def precision_summary(device: torch.device, dtype: torch.dtype | None, cpu_bf16: bool) -> str:
    """The line a run prints before its first step: where and in which precision it computes.

    ``dtype`` is :func:`amp_dtype`'s answer. When ``train.cpu_bf16`` asked for bf16 on a CPU without native bf16
    kernels, the line says so: its fp32 steps are slower, so a ``train.max_minutes`` run fits fewer steps (and
    reaches a lower mAP) than the figures measured on a CPU that has them.
    """
    where = f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    if dtype is torch.float16:
        return f"{where}, fp16 autocast with a gradient scaler"
    if dtype is not None:
        return f"{where}, bf16 autocast"
    if device.type == "cpu" and cpu_bf16:
        return (
            f"{where}, fp32: train.cpu_bf16 is on but this CPU has no native bf16 kernels (AVX512-BF16 or AMX), "
            "where bf16 halves the step time; emulated bf16 would be slower still"
        )
    return f"{where}, fp32"


def cap_workers(data: DataConfig, dist: DistInfo) -> None:
    """Lower ``data.workers`` to the cores this process has (one warning); more workers only contend."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = max(1, cores // dist.world_size)
    if data.workers > per_process:
        if dist.is_main:
            warnings.warn(
                f"data.workers={data.workers} is more than the {per_process} CPU cores per process here: "
                f"using {per_process} (set data.workers to at most {per_process} to silence this)",
                UserWarning,
                stacklevel=2,
            )
        data.workers = per_process
