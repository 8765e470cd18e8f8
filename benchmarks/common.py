"""What every benchmark shares: timing (warm-up, median of repeats, CUDA sync), the machine, JSON results.

Timings on a shared machine are noisy: every result records the load average (1/5/15 min, ``os.getloadavg``)
at its start and end, and timings that compare contenders interleave them (A, B, C, A, B, C, ...) so that a
burst of load from another process hits every contender alike.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from detector.config import config_fingerprint, load_config
from detector.device import cpu_has_native_bf16

RESULTS_DIR = Path(__file__).parent / "results"
DEFAULT_WARMUP = 2  # untimed runs first: allocator, oneDNN/cuDNN kernel selection, lazy init
DEFAULT_REPEATS = 5  # issue 8: median of >= 5 runs
VERSIONED_PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "faster-coco-eval",
    "pycocotools",
    "ultralytics",
)


@dataclass
class Timing:
    """Seconds of each timed run of one contender; ``median`` is what tables report."""

    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "times_s": self.times}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock time covers it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of ``fn``, GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_interleaved(
    contenders: dict[str, Callable[[], Any]],
    device: torch.device,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
) -> dict[str, Timing]:
    """Time each contender ``repeats`` times after ``warmup`` untimed calls, round-robin.

    Returns:
        ``{name: Timing}``; ``Timing.median`` is the median over the ``repeats`` runs.
    """
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    timings = {name: Timing() for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            timings[name].times.append(time_once(fn, device))
    return timings


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's, = the cores); 1 avoids thrashing when other jobs share the CPU",
    )


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def _pin_to_a_core(cores: Any) -> None:
    """Pool initializer: this worker process takes one free core (from the queue ``cores``) and one torch thread."""
    os.sched_setaffinity(0, {cores.get()})
    torch.set_num_threads(1)


def pinned_pool(lanes: int) -> ProcessPoolExecutor:
    """``lanes`` spawned worker processes, each pinned to its own core with one torch thread: contenders that run
    side by side then get one whole core each (on a 2-core machine, twice the runs per hour of one 2-thread run).

    Raises:
        ValueError: this process may use fewer than ``lanes`` cores.
    """
    available = sorted(os.sched_getaffinity(0))
    if lanes > len(available):
        raise ValueError(f"{lanes} lanes: this process may use only {len(available)} cores")
    context = multiprocessing.get_context("spawn")
    cores = context.Queue()
    for core in available[:lanes]:
        cores.put(core)
    return ProcessPoolExecutor(lanes, context, initializer=_pin_to_a_core, initargs=(cores,))


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """CPU model, cores, torch threads, whether the CPU has native bf16 kernels (``train.cpu_bf16`` then halves
    our step time), Python and package versions, GPU name (when CUDA is used)."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_bf16": cpu_has_native_bf16(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {package: _version(package) for package in VERSIONED_PACKAGES},
        "gpu": None,
    }
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        index = device.index if device is not None and device.index is not None else 0
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    return info


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages (``[nan] * 3`` where the OS has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return [float("nan")] * 3


def git_commit() -> str | None:
    """The repository's ``HEAD`` commit (with ``+dirty`` when tracked files differ), or None outside git.

    The results folder does not count: ``make bench`` rewrites its files one benchmark after another, and a
    result written earlier in the same run does not change what the next one measures.
    """
    root = Path(__file__).resolve().parent.parent
    results = f":(exclude){RESULTS_DIR.resolve().relative_to(root)}"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "diff", "--quiet", "HEAD", "--", ".", results], cwd=root, capture_output=True
            ).returncode
            != 0
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def provenance(configs: Sequence[str], varied: Sequence[str] = ()) -> dict[str, Any]:
    """What a result was measured on: the commit and the fingerprint of each shipped config it used.

    The Benchmarks page compares the fingerprints with the shipped configs of the day and marks a result
    measured on another config as stale (:func:`benchmarks.report.staleness`). ``varied``: the dotted keys the
    benchmark sets in every run (an ablation's ``loss.cls``), left out of the fingerprints, so that changing
    their shipped default does not make the result stale.
    """
    return {
        "commit": git_commit(),
        "configs": {name: config_fingerprint(load_config(name), varied) for name in configs},
        "varied": list(varied),
    }


class Recorder:
    """Collects a benchmark's metadata (machine, load average, command, provenance) around its results.

    ``name`` is the script's module name in ``benchmarks`` (``bench_train_step``), ``argv`` its arguments,
    ``configs`` the shipped configs whose settings it measured (``arena_cpu``), ``varied`` the keys it sets in
    every run (:func:`provenance`). Create it when the benchmark
    starts (the load average is read then) and call :meth:`write` at the end.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        device: torch.device,
        smoke: bool,
        settings: dict[str, Any],
        configs: Sequence[str] = ("arena_cpu",),
        varied: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.configs = tuple(configs)
        self.varied = tuple(varied)
        self.argv = argv
        self.device = device
        self.smoke = smoke
        self.settings = settings
        self.load_start = load_average()
        self.provenance = provenance(self.configs, self.varied)  # the code and configs as it starts
        self.started = time.perf_counter()
        print(f"[{name}] device {device}; load average (1/5/15 min) at start: {self.load_start}", flush=True)

    def result(self, results: dict[str, Any]) -> dict[str, Any]:
        load_end = load_average()
        print(f"[{self.name}] load average at end: {load_end}", flush=True)
        return {
            "benchmark": self.name,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks." + self.name, *self.argv]),
            "device": str(self.device),
            "smoke": self.smoke,
            "machine": machine_info(self.device),
            "load_average_start": self.load_start,
            "load_average_end": load_end,
            "wall_seconds": time.perf_counter() - self.started,
            "settings": self.settings,
            "provenance": self.provenance,
            **results,
        }

    def write(self, results: dict[str, Any], out: Path | None) -> dict[str, Any]:
        """Write the JSON to ``out`` (None: nothing is written, e.g. a smoke run); returns the record."""
        record = self.result(results)
        if out is not None:
            write_json(record, out)
            print(f"[{self.name}] wrote {out}")
        return record


def result_path(stem: str, device: torch.device, smoke: bool, out: Path | None) -> Path | None:
    """Default ``benchmarks/results/<stem>.json`` (``<stem>-cuda.json`` on a GPU); none for a smoke run.

    GPU results get their own file so that a later CPU run of ``make bench`` does not overwrite them.
    """
    if out is not None:
        return out
    if smoke:
        return None
    suffix = "-cuda" if device.type == "cuda" else ""
    return RESULTS_DIR / f"{stem}{suffix}.json"


def write_json(data: dict[str, Any], path: Path) -> None:
    """Atomically write ``data`` as indented strict JSON (temp file + rename; ``null`` for NaN or infinity)."""
    from detector.inference import strict_json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(strict_json(data), indent=2, default=float, allow_nan=False) + "\n")
    tmp.replace(path)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, ``nan`` when the denominator is 0 or missing."""
    return numerator / denominator if denominator else float("nan")
