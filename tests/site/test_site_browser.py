"""The site as a learner sees it: every page opened in headless Chromium, offline.

For every page of the navigation (the landing page, every chapter, the package guide, the Benchmarks page, the
API reference, …): no console error, every image
loaded, math typeset (none left as raw LaTeX), code inside its column, no request to another host, the
search box finds "assigner", and on a chapter the exercise solutions are folded. A screenshot of each page goes to ``build/screenshots/``. The checks themselves are
shown to fail on small synthetic pages (and on a chapter page with MathJax blocked, as a CDN is offline).
"""

from __future__ import annotations

import nbformat
import pytest
import yaml

from course.browser import serve_directory
from course.notebooks import SITE_CHAPTERS_DIR
from course.paths import REPO_ROOT, SOLUTIONS_DIR, chapter_files
from course.site_checks import page_problems, search_problems

SEARCH_TERM = "assigner"
FOLDED_JS = "['details.solution', 'details.solution[open]'].map(s => document.querySelectorAll(s).length)"


def _nav_pages(nav: list) -> list[str]:
    """The URL (relative to the site) of every page in mkdocs.yml's nav, in order: ``""``, ``"setup/"``, …"""
    pages = []
    for entry in nav:
        for value in entry.values() if isinstance(entry, dict) else [entry]:
            if isinstance(value, list):
                pages += _nav_pages(value)
            else:
                stem = value.rsplit(".", 1)[0]
                pages.append("" if stem == "index" else f"{stem}/")
    return pages


PAGES = _nav_pages(yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())["nav"])


def _has_math(built_site, url: str) -> bool:
    """Whether a chapter's Markdown cells hold $…$ math (the Markdown pages: arithmatex marks them)."""
    if url.startswith("chapters/"):
        stem = url.split("/")[1]
        notebook = nbformat.read(SITE_CHAPTERS_DIR / f"{stem}.ipynb", as_version=4)
        return any("$" in cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    return 'class="arithmatex"' in (built_site / url / "index.html").read_text()


@pytest.fixture(scope="module")
def page(chromium):
    return chromium.open()


@pytest.mark.parametrize("url", PAGES, ids=lambda u: u.strip("/").replace("chapters/", "") or "index")
def test_page_in_the_browser(page, site_url, built_site, url, screenshot_dir):
    name = url.strip("/").replace("/", "_") or "index"
    problems = page_problems(page, site_url + url, expect_math=_has_math(built_site, url),
                             screenshot=screenshot_dir / f"{name}.png")  # fmt: skip
    if url.startswith("chapters/"):
        folded, opened = page.evaluate(FOLDED_JS)
        problems += [] if folded and not opened else [f"solutions: {folded} folded, {opened} shown open"]
    problems += search_problems(page, SEARCH_TERM)
    assert not problems, f"{url or 'index'}: " + "\n".join(problems)


def test_the_pages_checked_include_those_a_learner_reads_first():
    expected = ["", "guide/", "benchmarks/", *(f"chapters/{p.stem}/" for p in chapter_files(SOLUTIONS_DIR))]
    assert set(expected) <= set(PAGES), f"missing from mkdocs.yml's nav: {sorted(set(expected) - set(PAGES))}"


# ------------------------------------------------------------------------------- the checks can fail
@pytest.fixture(scope="module")
def bad_site(tmp_path_factory):
    """Tiny pages, each with one defect, served on their own port."""
    root = tmp_path_factory.mktemp("bad_site")
    pages = {
        "broken_image": '<img src="missing.png" alt="gone">',
        "console_error": "<script>console.error('boom: the page broke')</script>",
        "raw_math": "<p>The alignment metric $t = s^\\alpha \\cdot \\mathrm{IoU}^\\beta$ ranks them.</p>",
        "raw_arithmatex": '<p>A Markdown page: <span class="arithmatex">\\(t = s^\\alpha\\)</span>.</p>',
        "long_code": '<div class="md-content" style="width: 300px"><pre>' + "x = 1  # " * 40 + "</pre></div>",
    }
    for name, body in pages.items():
        (root / f"{name}.html").write_text(
            f"<!doctype html><html><head><title>{name}</title></head><body>{body}</body></html>"
        )
    with serve_directory(root) as url:
        yield url


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("broken_image", "image not loaded: "),
        ("console_error", "console.error: boom: the page broke"),
        ("raw_math", "math left as raw LaTeX"),
        ("raw_arithmatex", "(MathJax did not typeset it): …A Markdown page:  \\(t = s^\\alpha\\)"),
        ("long_code", "code runs out of its column"),
    ],
)
def test_a_defect_is_reported(chromium, bad_site, name, expected):
    page = chromium.open()
    problems = page_problems(page, f"{bad_site}{name}.html")
    assert any(expected in p for p in problems), f"{name}: {problems}"
    assert search_problems(page, SEARCH_TERM) == ["no search box on the page"]


def test_an_empty_search_is_reported(page, site_url):
    page_problems(page, site_url)
    assert search_problems(page, "zzqxjw") == ["search for 'zzqxjw' found nothing (No matching documents)"]


def test_math_from_an_unreachable_host_is_reported(chromium, site_url):
    """The failure this site had: MathJax from a CDN, offline. Blocking the shipped copy shows the same page."""
    page = chromium.open()
    page.block_urls(["*/assets/mathjax/*"])
    problems = page_problems(page, site_url + "chapters/06_tal/", expect_math=True)
    assert any("math left as raw LaTeX" in p for p in problems), problems
    assert any("MathJax did not start" in p for p in problems), problems
