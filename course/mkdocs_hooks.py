"""mkdocs hooks: pages whose tables come from measured files, never typed in.

- ``site/runtimes.md`` holds ``<!-- notebook-runtimes -->``, replaced by a table of
  ``build/notebook_runtimes.json`` (written by the nbval run of ``make test``, see ``course.pytest_notebooks``);
- ``site/benchmarks.md`` holds ``<!-- benchmarks -->``, replaced by the tables of ``benchmarks/results/*.json``
  (written by ``make bench``), whose plots are added to the build.
"""

from __future__ import annotations

import json
import platform

from mkdocs.structure.files import File

from benchmarks.report import BENCHMARKS_MARKER, plot_files, render_markdown
from course.paths import BUILD_DIR

RUNTIMES_MARKER = "<!-- notebook-runtimes -->"
BUDGET_SECONDS = 180  # COURSE.md: each chapter notebook executes in ≤ 3 minutes on 2 CPU cores


def runtimes_table() -> str:
    path = BUILD_DIR / "notebook_runtimes.json"
    if not path.exists():
        return "*No measurement yet: `make test` writes `build/notebook_runtimes.json`.*"
    runtimes = json.loads(path.read_text())
    stems = sorted({key.split("/", 1)[1] for key in runtimes})
    rows = ["| notebook | solutions (s) | chapters, on stubs (s) | within 3 min |", "|---|---:|---:|:---:|"]
    total = 0.0
    for stem in stems:
        cells = []
        ok = True
        for kind in ("solutions", "chapters"):
            entry = runtimes.get(f"{kind}/{stem}")
            if entry is None:
                cells.append("–")
                continue
            total += entry["seconds"]
            ok = ok and entry["passed"] and entry["seconds"] <= BUDGET_SECONDS
            cells.append(f"{entry['seconds']:.0f}" + ("" if entry["passed"] else " (failed)"))
        rows.append(f"| `{stem}` | {cells[0]} | {cells[1]} | {'✓' if ok else '✗'} |")
    rows.append(f"| **all notebooks** | | **{total / 60:.1f} min** | |")
    machine = f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    return "\n".join(rows) + f"\n\nMeasured by the last `make test` on this machine ({machine})."


def on_files(files, config):
    for uri, path in plot_files():
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if RUNTIMES_MARKER in markdown:
        markdown = markdown.replace(RUNTIMES_MARKER, runtimes_table())
    if BENCHMARKS_MARKER in markdown:
        markdown = markdown.replace(BENCHMARKS_MARKER, render_markdown())
    return markdown
