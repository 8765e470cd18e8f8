"""Multi-process training through ``torchrun`` (one process per GPU, or several on a CPU with gloo).

``torchrun --nproc_per_node K -m detector train ...`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in
each process's environment; :func:`init_distributed` reads them and joins the process group (NCCL on CUDA,
gloo on CPU). Without them everything here degrades to the single-process case, so the runner has one code
path. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)  # long enough for rank 0's evaluation while the others wait


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group described by torchrun's environment variables (no-op when absent)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=PROCESS_GROUP_TIMEOUT)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over all processes (returned as a new tensor; identity with one process)."""
    if not dist.is_initialized():
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def any_process(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true in at least one process (e.g. a Ctrl-C seen by one rank)."""
    if not dist.is_initialized():
        return flag
    tensor = torch.tensor([float(flag)], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def max_over_processes(values: list[float], device: torch.device) -> list[float]:
    """Each of ``values``' maximum over all processes, in one all-reduce (the loop's sync point)."""
    if not dist.is_initialized():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every process's ``obj`` as a list on rank 0 (``None`` elsewhere); ``[obj]`` with one process."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size() if dist.get_rank() == 0 else []
    dist.gather_object(obj, gathered if dist.get_rank() == 0 else None, dst=0)
    return gathered if dist.get_rank() == 0 else None


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` in every process."""
    if not dist.is_initialized():
        return obj
    container = [obj]
    dist.broadcast_object_list(container, src=0)
    return container[0]


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
