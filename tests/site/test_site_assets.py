"""The built site is self-contained and each chapter page links its notebook, tests and package module."""

from __future__ import annotations

import json
import re

import pytest

from course import demo
from course.mkdocs_hooks import MATHJAX_COMPONENT, MATHJAX_SITE_DIR, chapter_links
from course.paths import REPO_ROOT, SOLUTIONS_DIR, chapter_files
from course.site_checks import external_assets


def test_no_page_loads_anything_from_another_host(built_site):
    found = external_assets(built_site)
    assert not found, "assets from another host (offline they do not load):\n" + "\n".join(found[:20])


def test_the_scan_finds_each_kind_of_external_asset(tmp_path):
    (tmp_path / "page.html").write_text(
        '<html><head><script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/css?family=Roboto">'
        '<link rel="preconnect" href="https://fonts.example.net">'
        '<link rel="canonical" href="https://example.org/page/">'  # not an asset
        "<style>@import 'https://example.org/a.css';</style></head><body>"
        '<img src="http://example.org/a.png"><img src="local.png"><a href="https://example.org">a link</a>'
        '<script type="module">const m = await import("https://cdn.example.org/mermaid.mjs");</script>'
        '<script src="assets/local.js"></script></body></html>'
    )
    (tmp_path / "style.css").write_text("@font-face { src: url(https://fonts.example.org/r.woff2); }")
    found = external_assets(tmp_path)
    assert len(found) == 7, found
    for url in ("cdn.example.org/mathjax.js", "fonts.example.org/css", "fonts.example.net", "a.css", "a.png",
                "mermaid.mjs", "r.woff2"):  # fmt: skip
        assert any(url in f for f in found), f"{url} was not reported: {found}"


def test_mathjax_and_its_fonts_are_in_the_site(built_site):
    mathjax = built_site / MATHJAX_SITE_DIR
    assert (mathjax / MATHJAX_COMPONENT).is_file(), (
        f"{mathjax / MATHJAX_COMPONENT} missing (see mkdocs_hooks.py)"
    )
    assert list(mathjax.glob("output/chtml/fonts/woff-v2/*.woff")), "MathJax's fonts were not copied"
    page = (built_site / "chapters" / "06_tal" / "index.html").read_text()
    assert f'src="../../{MATHJAX_SITE_DIR}/{MATHJAX_COMPONENT}"' in page


@pytest.mark.parametrize("solution", chapter_files(SOLUTIONS_DIR), ids=lambda p: p.stem)
def test_chapter_page_links_notebook_tests_and_module(built_site, solution):
    stem = solution.stem
    page_dir = built_site / "chapters" / stem
    html = (page_dir / "index.html").read_text()
    header = re.search(r'<div class="chapter-links">.*?</div>', html, re.DOTALL)
    assert header, f"chapters/{stem}: no chapter-links header (course/mkdocs_hooks.py, on_page_content)"
    header = header.group(0)
    assert f'href="{stem}.ipynb"' in header and (page_dir / f"{stem}.ipynb").is_file(), "notebook not linked"
    tests = f"tests/chapters/test_{stem}.py"
    assert tests in header and (REPO_ROOT / tests).is_file(), f"{tests} not named or missing"
    modules = chapter_links()[stem]
    assert modules, f"site/course-map.md links no package module for {stem}"
    for module, api_page in modules:
        assert (REPO_ROOT / module).exists(), f"site/course-map.md names {module}, which does not exist"
        assert f'href="../../{api_page}/"' in header and (built_site / api_page / "index.html").is_file()


def test_landing_page_figures_come_from_the_record(built_site):
    source = (REPO_ROOT / "site" / "index.md").read_text()
    assert demo.DEMO_MARKER in source
    assert not re.search(r"mAP\w*\s+0\.\d", source), (
        "site/index.md types a figure in: it must come from the record"
    )
    html = (built_site / "index.html").read_text()
    record = demo.DEMO_DIR / demo.RECORD_NAME
    if not record.exists():
        assert "No <code>make train</code> run has been recorded yet" in html
        return
    figures = json.loads(record.read_text())
    assert f"mAP {figures['map']:.2f}, mAP50 {figures['map_50']:.2f}" in html
    assert (built_site / "assets" / "demo" / demo.PICTURE_NAME).is_file()
