"""The site's Benchmarks page, generated from ``benchmarks/results/*.json`` (never typed in).

``site/benchmarks.md`` holds the marker :data:`BENCHMARKS_MARKER`; the mkdocs hook replaces it by
:func:`render_markdown` and adds the plots (:func:`plot_files`) to the build, so the page shows the last
``make bench`` of this repository. Missing results read "not measured yet", so the site builds without them.

    python -m benchmarks.report    # prints the page's generated part
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = (
    Path(__file__).parent / "results"
)  # = benchmarks.common.RESULTS_DIR (this module imports no torch)
BENCHMARKS_MARKER = "<!-- benchmarks -->"
SITE_PLOT_DIR = "benchmarks"  # plots are served at <site>/benchmarks/<name>.png
REPRODUCE = (
    "make bench    # = python -m benchmarks.run_all; one script: python -m benchmarks.bench_train_step"
)


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict[str, Any]]:
    """``{stem: record}`` of every ``*.json`` in ``results_dir`` (unreadable files are skipped)."""
    results = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            results[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return results


def plot_files(results_dir: Path = RESULTS_DIR) -> list[tuple[str, Path]]:
    """``(site path, file)`` of each plot, e.g. ``("benchmarks/quality.png", .../results/quality.png)``."""
    return [(f"{SITE_PLOT_DIR}/{path.name}", path) for path in sorted(Path(results_dir).glob("*.png"))]


def describe_machine(info: dict[str, Any]) -> str:
    """One line from :func:`benchmarks.common.machine_info`: ``AMD EPYC, 2 cores (2 torch threads), native bf16,
    torch 2.x`` (the bf16 part only in records that know it: those made before it was recorded say nothing)."""
    bf16 = {True: ", native bf16", False: ", no native bf16 (fp32 steps)"}.get(info.get("cpu_bf16"), "")
    text = (
        f"{info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads){bf16}, "
        f"torch {info['versions']['torch']}"
    )
    return text + (f", GPU {info['gpu']}" if info.get("gpu") else "")


def _table(header: list[str], rows: list[list[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": "---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _fixed(value: float | None, digits: int) -> str:
    """``value`` with ``digits`` decimals; "–" for a value the result could not define (null, NaN, infinite)."""
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else "–"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f}" if seconds is not None and math.isfinite(seconds) else "–"


def _goal(value: float, goal: float, at_most: bool = True) -> str:
    met = value <= goal if at_most else value >= goal
    return f"{value:.2f} ({'≤' if at_most else '≥'} {goal}: {'✓ met' if met else '✗ not met'})"


def _provenance(record: dict[str, Any]) -> str:
    load = record.get("load_average_start") or record.get("load_average_1_5_15min")
    machine = record.get("machine")
    if isinstance(machine, dict) and "cpu" in machine:
        where = describe_machine(machine)
    elif isinstance(machine, dict):  # bench_eval's format
        where = f"{machine.get('processor') or machine.get('platform')}, {machine.get('cpus')} cores"
    else:  # bench_assigner's format
        where = f"{machine}, {record.get('threads', '?')} torch threads, torch {record.get('torch', '?')}"
    parts = [f"Measured {record['date'][:10]}" if "date" in record else "Measured", f"on {where}"]
    if load:
        parts.append(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the start")
    if record.get("command"):
        parts.append(f"`{record['command']}`")
    return "*" + "; ".join(parts) + ".*"


def section_train_step(record: dict[str, Any]) -> str:
    step, ips, settings = record["step_seconds"], record["images_per_second"], record["settings"]
    labels = {"ours": "ours (`detector`, arena_cpu model)", "fcos": "torchvision FCOS ResNet-18-FPN",
              "backbone": f"timm {record.get('backbone', 'resnet18')} forward + backward alone (the floor)"}  # fmt: skip
    rows = [[label, _ms(step[name]), f"{ips[name]:.1f}", f"{record['parameters'][name] / 1e6:.1f} M"]
            for name, label in labels.items()]  # fmt: skip
    text = _table(["training step", "ms", "images/s", "parameters"], rows)
    ratios, goals = record["ratios"], record["goals"]
    text += "\n\n" + _table(["ratio", "value (goal)"], [
        ["ours / FCOS", _goal(ratios["ours_over_fcos"], goals["ours_over_fcos"])],
        ["ours / backbone floor", _goal(ratios["ours_over_backbone"], goals["ours_over_backbone"])],
    ])  # fmt: skip
    split, total = record["split_seconds"], sum(record["split_seconds"].values())
    rows = [[stage, _ms(seconds), f"{seconds / total:.0%}"] for stage, seconds in split.items()]
    rows.append(["**sum** (the full step: " + _ms(step["ours"]) + " ms)", f"**{_ms(total)}**", ""])
    text += f"\n\nOur step split by stage (forward + backward of each; {settings['image_size']} px, batch " \
            f"{settings['batch']}; autocast {record.get('amp_dtype') or 'off (float32)'}):\n\n" + _table(["stage", "ms", "share"], rows)  # fmt: skip
    return text


def section_inference(record: dict[str, Any]) -> str:
    rows = []
    for row in record["rows"]:
        s = row["seconds"]
        rows.append([f"{row['batch']} × {row['image_size']} px", _ms(s["ours_forward"]), _ms(s["ours_total"]),
                     _ms(s["fcos_forward"]), _ms(s["fcos_total"]), f"{row['ratio_ours_over_fcos']:.2f}"])  # fmt: skip
    header = ["batch", "ours forward (ms)", "ours + post-processing", "FCOS forward", "FCOS + post-processing",
              "ours / FCOS"]  # fmt: skip
    return _table(header, rows) + (
        "\n\nUntrained weights, score threshold 0: every top-k candidate goes through NMS (the worst case)."
    )


def section_assigner(record: dict[str, Any]) -> str:
    sizes, results = record["sizes"], record["results"]
    rows = [[name, _ms(row["median_ms"] / 1e3), f"{row['peak_mb']:.0f}"] for name, row in results.items()]
    text = _table(["assigner", "median ms", "peak MB"], rows)
    return text + (
        f"\n\nB = {sizes['B']}, N = {sizes['N']}, M = {sizes['M']}, C = {sizes['C']}; speed-up of the batched TAL "
        f"over the per-GT loop: **{record['speedup']:.1f}×** (max |score difference| {record['max_score_difference']:.1e})."
    )


def section_eval(record: dict[str, Any]) -> str:
    names = list(record["rows"][0]["seconds"])
    rows = [[f"{row['images']} × {row['detections_per_image']}"]
            + [f"{row['seconds'][name]:.2f}" for name in names]
            + [f"{max(row['max_abs_diff_vs_pycocotools'].values()):.0e}"] for row in record["rows"]]  # fmt: skip
    return _table(
        ["images × detections", *[f"{name} (s)" for name in names], "max diff vs pycocotools"], rows
    )


def section_data(record: dict[str, Any]) -> str:
    rows = []
    for row in record["rows"]:
        for workers, rate in row["loader"].items():
            pipeline = row["pipeline"].get(workers)
            augmented = rate.get("augmented_images_per_second")
            rows.append([f"{row['image_size']} px", workers, f"{rate['images_per_second']:.1f}",
                         f"{augmented:.1f}" if augmented is not None else "–",
                         f"{row['step_images_per_second']:.1f}", f"{rate['loader_over_step']:.1f}",
                         f"{rate['augmented_over_step']:.1f}" if augmented is not None else "–",
                         f"{pipeline:.1f}" if pipeline is not None else "–"])  # fmt: skip
    header = ["input", "workers", "loader img/s", "with mosaic + affine", "training step img/s", "loader / step",
              "augmented / step", "loader + step img/s"]  # fmt: skip
    return _table(header, rows) + "\n\nThe loader is not the bottleneck when loader / step ≥ 1."


def section_quality(record: dict[str, Any]) -> str:
    keys = ("map", "map_50", "map_75", "map_small")
    rows = []
    for name, row in record["contenders"].items():
        final = row["final"]
        relative = record["map_relative_to_fcos"].get(name)
        rows.append([row["label"], f"{row['parameters'] / 1e6:.1f} M", row["steps"], f"{row['images_per_second']:.1f}"]
                    + [_fixed(final[k], 3) for k in keys] + [_fixed(relative, 2)])  # fmt: skip
    settings = record["settings"]
    text = _table(
        ["model", "parameters", "steps", "img/s", "mAP", "mAP50", "mAP75", "mAP small", "mAP / FCOS"], rows
    )
    text += (f"\n\nEach model trained for **{settings['minutes']:g} min** of wall-clock time on {settings['threads']} "
             f"thread(s), {settings['image_size']} px, batch {settings['batch']}, then evaluated (EMA weights) on the "
             f"arena validation split (autocast {settings.get('amp', 'None')}). Goal: ours (default recipe) ≥ {record['goal_vs_fcos']}× the mAP of FCOS.")  # fmt: skip
    return text


def section_gpu(record: dict[str, Any]) -> str:
    rows = [[name, _ms(row["median_s"]), f"{row['images_per_second']:.1f}", f"{row['first_step_seconds']:.1f}"]
            for name, row in record["variants"].items()]  # fmt: skip
    settings = record["settings"]
    return _table(["variant", "ms / step", "images/s", "first step (s)"], rows) + (
        f"\n\n{settings['config']} model, {settings['image_size']} px, batch {settings['batch']}, AMP {settings['amp']}."
    )


def _map_at(curve: list[dict[str, Any]], seconds: float) -> float | None:
    """The mAP of the last curve point at or before ``seconds`` of training (None before the first)."""
    done = [point["map"] for point in curve if point["train_seconds"] <= seconds]
    return done[-1] if done else None


def _ap_pair(ap: dict[str, float | None]) -> str:
    """``"AP50 / AP"`` of one class; "n/a" where the class has no GT in the split (AP undefined: null)."""
    if ap["ap50"] is None or ap["ap"] is None or not math.isfinite(ap["ap50"]):
        return "n/a"
    return f"{ap['ap50']:.3f} / {ap['ap']:.3f}"


YOLO_GOAL_MINUTES, YOLO_GOAL_RATIO = 30.0, 1.5  # issue 12: ours ≥ 1.5× YOLO's mAP at every point up to 30 min


def _ratio(value: float) -> str:
    """``"2.15×"``; "> 100×" where the peer's mAP is next to zero (4e-5 after a few epochs: no figure to read)."""
    return f"{value:.2f}×" if value < 100 else "> 100×"


def _lowest_ratio(ratios: list[tuple[float, float]]) -> str:
    """The lowest ``(minutes, ours / theirs)`` ratio up to :data:`YOLO_GOAL_MINUTES`, against the goal."""
    early = [value for minutes, value in ratios if minutes <= YOLO_GOAL_MINUTES]
    return _goal(min(early), YOLO_GOAL_RATIO, at_most=False) if early else "–"


def _crossing(ratios: list[tuple[float, float]], name: str) -> str:
    """Where the lead changes hands along ``(minutes, ours / theirs)``, e.g. "yolov8n ahead at 6.4 min; ours
    ahead from 9.7 min", or "none within 29.6 min (ours ahead throughout)". A tie counts as ``name`` ahead."""
    changes, leader = [], None
    for minutes, value in ratios:
        ahead = "ours" if value > 1.0 else name
        if ahead != leader:
            changes.append(f"{ahead} ahead {'from' if changes else 'at'} {minutes:.1f} min")
            leader = ahead
    if len(changes) == 1:
        return f"none within {ratios[-1][0]:.1f} min ({leader} ahead throughout)"
    return "; ".join(changes) or "–"


def _clock_sentence(settings: dict[str, Any]) -> str:
    """What the minutes of a YOLO comparison count (``settings["clock"]``, recorded since ours' clock pauses)."""
    if settings.get("clock") == "training":
        return "Both clocks count training only: YOLO does not validate while it trains, ours pauses to."
    return (
        "Ours' clock counts its evaluation after every epoch as well (measured before it paused for them), "
        "YOLO's counts training only: a handicap for ours."
    )


def section_yolo(record: dict[str, Any]) -> str:
    contenders = record["contenders"]
    rows = [[row["label"], len(row["curve"]), f"{row['final'].get('map', float('nan')):.4f}",
             f"{row['final'].get('map_50', float('nan')):.4f}",
             f"{row['curve'][-1]['train_seconds'] / 60:.1f}" if row["curve"] else "–"]
            for row in contenders.values()]  # fmt: skip
    text = _table(["model", "epochs", "mAP", "mAP50", "minutes"], rows)
    ours = contenders.get("ours")
    if ours and ours["curve"]:
        lines = []
        for name, row in contenders.items():
            if name == "ours" or not row["curve"]:
                continue
            ratios = []
            for point in ours["curve"]:
                theirs = _map_at(row["curve"], point["train_seconds"])
                if theirs:
                    ratios.append((point["train_seconds"] / 60, point["map"] / theirs))
            listed = ", ".join(f"{minutes:.1f} min: {_ratio(value)}" for minutes, value in ratios) or "–"
            lines.append([f"ours / {name}", listed, _lowest_ratio(ratios), _crossing(ratios, name)])
        header = ["mAP ratio at equal wall-clock", "at each of our evaluations",
                  f"lowest up to {YOLO_GOAL_MINUTES:g} min", "crossing"]  # fmt: skip
        text += "\n\n" + _table(header, lines, "llll")
    with_classes = {name: row for name, row in contenders.items() if row.get("per_class")}
    if with_classes:
        classes = list(next(iter(with_classes.values()))["per_class"])
        rows = [
            [name, *(_ap_pair(row["per_class"][name]) for row in with_classes.values())] for name in classes
        ]
        text += "\n\nFinal model, per class (AP50 / AP):\n\n" + _table(["class", *with_classes], rows)
    for row in contenders.values():
        if row.get("picture"):
            text += f"\n\n![{row['label']}: validation predictions]({SITE_PLOT_DIR}/{row['picture']})"
    settings = record["settings"]
    lanes = settings.get("lanes", 1)
    cores = (
        f"each on one pinned core ({lanes} side by side)"
        if lanes > 1
        else f"{settings['threads']} CPU threads"
    )
    text += (f"\n\nData `{settings['data']}`, {settings['imgsz']} px, batch {settings['batch']}, "
             f"{cores}, {settings['minutes']} min each. {_clock_sentence(settings)}")  # fmt: skip
    optimizers = sorted({row["optimizer"] for row in contenders.values() if row.get("optimizer")})
    if optimizers:  # recorded since ultralytics 8.4 changed what optimizer=auto picks
        version = record["machine"]["versions"].get("ultralytics")
        text += f" YOLO: ultralytics {version}, optimizer {', '.join(optimizers)}."
    return text


def section_loss(record: dict[str, Any]) -> str:
    from detector.config import LossConfig, load_config

    settings, parts = record["settings"], []
    minutes = settings["minutes"] if isinstance(settings["minutes"], list) else [settings["minutes"]]
    for index, (data, rows) in enumerate(record["summary"].items()):
        table = [[f"`{loss}`" + (" (calibrated)" if loss != "focal" else ""), f"{row['map_mean']:.4f}",
                  f"{row['map_min']:.4f} – {row['map_max']:.4f}", f"{row['map_50_mean']:.4f}", row["seeds"]]
                 for loss, row in rows.items()]  # fmt: skip
        budget = minutes[index] if len(minutes) > 1 else minutes[0]
        size = "the config's image size" if data == "arena" else f"{settings['imgsz']} px"
        parts.append(
            f"**{data}** ({budget:g} min per run, {size})\n\n"
            + _table(["loss.cls", "mAP (mean)", "range over seeds", "mAP50", "seeds"], table)
        )
    lanes = settings.get("lanes", 1)
    cores = (
        f"{lanes} runs at a time, each on one pinned core" if lanes > 1 else f"{settings['threads']} threads"
    )
    best, default = record.get("best_calibrated"), LossConfig().cls
    config_cls = load_config(settings["config"]).loss.cls
    own = f"; `{settings['config']}` sets `{config_cls}` (its yaml says why)" if config_cls != default else ""
    parts.append(f"Each run: `{settings['config']}` with `loss.cls` set, from scratch, {cores}. "
                 f"Best calibrated loss (mean mAP over the data sets): `{best}`; the package's default is "
                 f"`{default}`{own}.")  # fmt: skip
    if best is not None and best != default:
        parts.append(f'!!! warning "The default is not the best calibrated loss of this ablation"\n'
                     f"    Switching `loss.cls` to `{best}` changes the shipped configs: the demo figures and "
                     "the benchmarks measured on them must be measured again with it.")  # fmt: skip
    return "\n\n".join(parts)


# Benchmarks that `make bench` does not run (an optional extra, long budgets): how to measure them.
_WITH_YOLO = 'install the peer with `pip install -e ".[bench]"`, then run `python -m benchmarks.bench_yolo'
NOT_IN_MAKE_BENCH = {
    "loss": "run `python -m benchmarks.bench_loss` (4 losses × 2 seeds × the budget)",
    "yolo": f"{_WITH_YOLO} --data data/arena --imgsz 320 --config arena_cpu --minutes 30 --lanes 2 "
    "--peers ours yolov8n`",
    "yolo_chess": f"{_WITH_YOLO} --data ../shared/datasets/chess-pieces --imgsz 416 --config roboflow_cpu "
    "--minutes 30 --lanes 2 --peers ours yolov8n --out benchmarks/results/yolo_chess.json`",
    "yolo_chess_seed1": f"{_WITH_YOLO} --data ../shared/datasets/chess-pieces --imgsz 416 --config roboflow_cpu "
    "--minutes 30 --lanes 2 --peers ours yolov8n --seed 1 --out benchmarks/results/yolo_chess_seed1.json`",
    "yolo11": f"{_WITH_YOLO} --data data/arena --config arena_cpu --minutes 30 --lanes 2 --peers ours yolo11n "
    "--out benchmarks/results/yolo11.json`",
    "yolo_60": f"{_WITH_YOLO} --data data/arena --config arena_cpu --minutes 60 --lanes 2 --peers ours yolov8n "
    "--out benchmarks/results/yolo_60.json`",
    "yolo_chess_60": f"{_WITH_YOLO} --data ../shared/datasets/chess-pieces --imgsz 416 --config roboflow_cpu "
    "--minutes 60 --lanes 2 --peers ours yolov8n --out benchmarks/results/yolo_chess_60.json`",
}

SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("Training step (row 1)", "train_step", section_train_step),
    ("Inference (row 2)", "inference", section_inference),
    ("Assigner (row 3)", "assigner", section_assigner),
    ("COCO evaluation (row 4)", "eval", section_eval),
    ("Data loading (row 5)", "data", section_data),
    ("Quality at equal training time", "quality", section_quality),
    ("Against ultralytics YOLO at equal wall-clock: the arena", "yolo", section_yolo),
    ("Against ultralytics YOLO at equal wall-clock: the chess export", "yolo_chess", section_yolo),
    ("The same, another seed (1) for both", "yolo_chess_seed1", section_yolo),
    ("Against ultralytics YOLO11n at equal wall-clock: the arena", "yolo11", section_yolo),
    ("Against ultralytics YOLOv8n to 60 minutes: the arena", "yolo_60", section_yolo),
    ("Against ultralytics YOLOv8n to 60 minutes: the chess export", "yolo_chess_60", section_yolo),
    ("Classification loss ablation", "loss", section_loss),
    ("GPU: ResNet-50 training throughput at 640 px", "gpu", section_gpu),
]


def staleness(record: dict[str, Any]) -> str | None:
    """Why ``record`` may no longer describe what ships, or None when every config it measured is unchanged.

    A result records the fingerprint of each shipped config it used (:func:`benchmarks.common.provenance`);
    it is stale when a shipped config's fingerprint differs today, when that config is gone, or when the
    result predates provenance (then nobody can tell which model it measured).
    """
    from detector.config import ConfigError, config_fingerprint, load_config

    measured = record.get("provenance")
    if not isinstance(measured, dict):
        return "it was measured before results recorded their config, so it may describe a model that no longer ships"
    reasons = []
    for name, fingerprint in (measured.get("configs") or {}).items():
        try:
            current = config_fingerprint(load_config(name), measured.get("varied") or ())
        except ConfigError:
            reasons.append(f"the config `{name}` it measured no longer loads")
            continue
        if current != fingerprint:
            reasons.append(
                f"the shipped config `{name}` changed since (fingerprint {fingerprint} then, {current} now)"
            )
    if not reasons:
        return None
    return "; ".join(reasons) + f" — measured at commit {measured.get('commit') or 'unknown'}"


def _stale_banner(text: str) -> str:
    """A red "Stale" admonition holding ``text``."""
    return f'!!! danger "Stale"\n    {text}'


def render_markdown(results_dir: Path = RESULTS_DIR) -> str:
    """The page's generated part: one section per benchmark (CPU results, then the ``-cuda`` ones).

    A section whose result is stale (:func:`staleness`) opens with a red banner, and the page opens with the list
    of stale sections.
    """
    results = load_results(results_dir)
    parts, stale_titles = [], []
    for title, stem, render in SECTIONS:
        for suffix, device in (("", "CPU"), ("-cuda", "GPU")):
            record = results.get(stem + suffix)
            if record is None and (suffix or stem == "gpu"):
                continue
            heading = f"## {title}" + (f" — {device}" if suffix and stem != "gpu" else "")
            if record is None:
                how = NOT_IN_MAKE_BENCH.get(stem, "run `make bench`")
                parts.append(f"{heading}\n\n*Not measured yet: {how}.*")
                continue
            try:
                body = render(record)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
                body = f"*Result file `{stem + suffix}.json` has an unexpected format ({error!r}): rerun `make bench`.*"
            reason = staleness(record)
            if reason is not None:
                stale_titles.append(heading.removeprefix("## "))
                # the result's own command: `make bench` runs only some benchmarks, each with its arguments
                command = record.get("command") or "make bench"
                banner = _stale_banner(f"This result is stale: {reason}. Measure it again with `{command}`.")
                body = banner + "\n\n" + body
            plot = Path(results_dir) / f"{stem + suffix}.png"
            if plot.exists():
                body += f"\n\n![{title}]({SITE_PLOT_DIR}/{plot.name})"
            parts.append(f"{heading}\n\n{body}\n\n{_provenance(record)}")
    if "gpu-cuda" not in results:
        parts.append("## GPU\n\n*Not measured yet: no CUDA GPU on the machine that ran `make bench`.*")
    parts.append(f"## Reproduce\n\n```bash\n{REPRODUCE}\n```")
    if stale_titles:
        listed = ", ".join(stale_titles)
        parts.insert(
            0,
            _stale_banner(
                f"{len(stale_titles)} section(s) were measured on configs that no longer ship ({listed}); "
                "each names the command that measures it again."
            ),
        )
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(render_markdown())
