"""``make bench``: every benchmark in turn, each in its own process, then a summary of the ratios.

Order: the speed rows first (training step, inference, assigner, evaluation, data), the GPU throughput
(skipped without CUDA), then the quality benchmark (the long one: 4 models × ``--quality-minutes`` plus their
evaluations). Each script writes ``benchmarks/results/<name>.json``; the site's Benchmarks page is generated
from them (``benchmarks.report``). On the 2-core CPU machine the whole run takes about 40 minutes with the
default ``--quality-minutes 6`` (issue 8: under 45 minutes); ``--quality-minutes 10`` is the issue's budget.

Run it on a quiet machine: every result records the load average, and other processes slow every timing.

    python -m benchmarks.run_all                         # everything
    python -m benchmarks.run_all --skip quality          # the speed rows only
    python -m benchmarks.run_all --smoke                 # every script's --smoke (a minute or two)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import load_average
from benchmarks.report import load_results

REPO_ROOT = Path(__file__).resolve().parent.parent
QUALITY_MINUTES = 6.0  # per model: 4 × (6 min + evaluations) + ~12 min of speed rows ≈ 40 min on 2 cores
QUALITY_EVALS = 4  # points per mAP-vs-time curve (each evaluation of FCOS-256 costs ~30 s on 2 cores)
BENCHMARKS = ("train_step", "inference", "assigner", "eval", "data", "gpu", "quality")


def command(name: str, args: argparse.Namespace) -> list[str]:
    """The command line of one benchmark (``bench_assigner``/``bench_eval`` take no ``--device``)."""
    cmd = [sys.executable, "-m", f"benchmarks.bench_{name}"]
    if args.smoke:
        cmd.append("--smoke")
    if name == "quality" and not args.smoke:
        cmd += ["--minutes", str(args.quality_minutes), "--evals", str(args.quality_evals)]
    if args.threads and name in ("train_step", "inference", "data", "quality"):
        cmd += ["--threads", str(args.threads)]
    return cmd


def summary() -> list[str]:
    """The headline numbers of the results on disk (the closing note of issue 8)."""
    results, lines = load_results(), []
    if "train_step" in results:
        ratios = results["train_step"]["ratios"]
        lines.append(f"training step: ours/FCOS {ratios['ours_over_fcos']:.2f} (goal <= 0.6), "
                     f"ours/backbone {ratios['ours_over_backbone']:.2f} (goal <= 1.8)")  # fmt: skip
    if "inference" in results:
        ratios = ", ".join(
            f"{r['batch']}x{r['image_size']}px {r['ratio_ours_over_fcos']:.2f}"
            for r in results["inference"]["rows"]
        )
        lines.append(f"inference ours/FCOS: {ratios}")
    if "assigner" in results:
        lines.append(
            f"assigner: batched TAL {results['assigner']['speedup']:.1f}x faster than the per-GT loop"
        )
    if "quality" in results:
        quality = results["quality"]
        maps = ", ".join(f"{name} {row['final']['map']:.3f}" for name, row in quality["contenders"].items())
        lines.append(f"quality ({quality['settings']['minutes']:g} min each), mAP: {maps}")
        relative = quality["map_relative_to_fcos"].get("ours")
        if relative is not None:
            lines.append(f"ours / FCOS mAP: {relative:.2f} (goal >= {quality['goal_vs_fcos']})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="each script's --smoke (writes no results)")
    parser.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[], help="benchmarks not to run")
    parser.add_argument(
        "--quality-minutes", type=float, default=QUALITY_MINUTES, help="training budget per model"
    )
    parser.add_argument("--quality-evals", type=int, default=QUALITY_EVALS, help="evaluations per model")
    parser.add_argument(
        "--threads", type=int, help="torch threads for the CPU benchmarks (default: all cores)"
    )
    args = parser.parse_args(argv)
    print(f"[run_all] load average (1/5/15 min) at start: {load_average()}", flush=True)
    started, seconds, failed = time.perf_counter(), {}, []
    for name in BENCHMARKS:
        if name in args.skip:
            continue
        cmd = command(name, args)
        print(f"\n[run_all] $ {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        if subprocess.run(cmd, cwd=REPO_ROOT).returncode != 0:
            failed.append(name)
        seconds[name] = time.perf_counter() - start
    print(
        "\n[run_all] wall time per benchmark: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
    )
    print(
        f"[run_all] total {(time.perf_counter() - started) / 60:.1f} min; load average at end: {load_average()}"
    )
    if not args.smoke:
        print("\n".join(["[run_all] summary:", *summary()]))
    if failed:
        print(f"[run_all] FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
