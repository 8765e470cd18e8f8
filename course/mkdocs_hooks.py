"""mkdocs hooks: pages whose figures come from measured files, never typed in, and a self-contained site.

- ``site/runtimes.md`` holds ``<!-- notebook-runtimes -->``, replaced by a table of
  ``build/notebook_runtimes.json`` (written by the nbval run of ``make test``, see ``course.pytest_notebooks``);
- ``site/benchmarks.md`` holds ``<!-- benchmarks -->``, replaced by the tables of ``benchmarks/results/*.json``
  (written by ``make bench``), whose plots are added to the build;
- ``site/index.md`` holds ``<!-- demo -->``, replaced by the recorded ``make train`` run (``course.demo``);
- MathJax is copied into the site from the ``django-static-mathjax`` wheel (nothing is loaded from a CDN), and
  the notebook pages lose nbconvert's loader of mermaid.js (a CDN script; the chapters have no diagrams);
- each chapter page starts with its links: the notebook, its tests, its package module (from the course map).
"""

from __future__ import annotations

import html
import json
import platform
import re
from pathlib import Path

from mkdocs.structure.files import File
from mkdocs.utils import get_relative_url

from benchmarks.report import BENCHMARKS_MARKER, plot_files
from benchmarks.report import render_markdown as render_benchmarks
from course import demo
from course.paths import BUILD_DIR, REPO_ROOT

MATHJAX_SITE_DIR = "assets/mathjax"
MATHJAX_COMPONENT = "tex-chtml.js"  # TeX in, HTML+CSS out; mkdocs.yml's extra_javascript loads it
MERMAID_LOADER = re.compile(r'<script type="module">(?:(?!</script>).)*?jp-Mermaid.*?</script>', re.DOTALL)
# a row of site/course-map.md's first table: | 6 | [Title](chapters/06_tal.ipynb) | 6 | [`detector/x.py`](api/x.md) |
COURSE_MAP_ROW = re.compile(
    r"^\| (\d+) \| \[[^]]+\]\(chapters/(\w+)\.ipynb\) \| \d+ \| ([^|]+) \|", re.MULTILINE
)
MODULE_LINK = re.compile(r"\[`([^`]+)`\]\(([^)]+)\.md\)")

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


def mathjax_files() -> list[tuple[str, Path]]:
    """``(site path, file)`` of MathJax's component, its fonts and the extensions it loads on demand."""
    try:
        import mathjax
    except ImportError as error:
        raise RuntimeError(
            "MathJax is not installed: the site ships it from the django-static-mathjax package "
            "(the docs extra of pyproject.toml; `make docs` installs it)"
        ) from error
    root = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    paths = [root / MATHJAX_COMPONENT, *(p for p in root.glob("*/**/*") if p.is_file())]
    return [(f"{MATHJAX_SITE_DIR}/{p.relative_to(root).as_posix()}", p) for p in paths]


def chapter_links() -> dict[str, list[tuple[str, str]]]:
    """``{chapter stem: [(module path, API page .md), ...]}`` from the first table of ``site/course-map.md``."""
    course_map = (REPO_ROOT / "site" / "course-map.md").read_text()
    return {stem: MODULE_LINK.findall(modules) for _, stem, modules in COURSE_MAP_ROW.findall(course_map)}


def chapter_header(stem: str, modules: list[tuple[str, str]], page_url: str) -> str:
    """HTML links of a chapter page: its notebook (download), its tests, its package modules (API pages)."""
    number = int(stem[:2])
    module_links = ", ".join(
        f'<a href="{get_relative_url(f"{md}/", page_url)}"><code>{html.escape(module)}</code></a>'
        for module, md in modules
    )
    return (
        '<div class="chapter-links">'
        f'Notebook: <a href="{stem}.ipynb" download><code>{stem}.ipynb</code></a> (this page as a notebook); '
        f"yours is <code>chapters/{stem}.py</code> (<code>make lab</code>) · "
        f"Tests: <code>tests/chapters/test_{stem}.py</code> (<code>make check CH={number}</code>) · "
        f"In the package: {module_links} · "
        f'<a href="{get_relative_url("course-map/", page_url)}">Course map</a></div>\n'
    )


def on_files(files, config):
    for uri, path in [*plot_files(), *mathjax_files()]:
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if RUNTIMES_MARKER in markdown:
        markdown = markdown.replace(RUNTIMES_MARKER, runtimes_table())
    if BENCHMARKS_MARKER in markdown:
        markdown = markdown.replace(BENCHMARKS_MARKER, render_benchmarks())
    if demo.DEMO_MARKER in markdown:
        markdown = markdown.replace(demo.DEMO_MARKER, demo.render_markdown())
    return markdown


def on_page_content(content: str, page, config, files) -> str:
    source = page.file.src_uri
    if not (source.startswith("chapters/") and source.endswith(".ipynb")):
        return content
    stem = Path(source).stem
    links = chapter_links()
    if stem not in links:
        raise ValueError(f"site/course-map.md: no row for {source} in its first table (add one)")
    return chapter_header(stem, links[stem], page.url) + MERMAID_LOADER.sub("", content)
