"""The course site builds with ``mkdocs build --strict`` and shows each chapter with its figures."""

from __future__ import annotations

import pytest

from course.paths import REPO_ROOT, SOLUTIONS_DIR, chapter_files


@pytest.mark.parametrize("solution", chapter_files(SOLUTIONS_DIR), ids=lambda p: p.stem)
def test_chapter_page_has_figures_and_folded_solutions(built_site, solution):
    page = built_site / "chapters" / solution.stem / "index.html"
    assert page.exists(), f"{page} was not built: is the chapter in mkdocs.yml's nav?"
    html = page.read_text()
    assert 'src="data:image/png;base64' in html, (
        f"{solution.stem}: no figure on the page (were the outputs kept?)"
    )
    assert "<details" in html and "Solution" in html, f"{solution.stem}: exercise solutions are not folded"
    assert "Traceback" not in html, f"{solution.stem}: an error is shown on the page"


def test_every_chapter_is_in_the_navigation():
    nav = (REPO_ROOT / "mkdocs.yml").read_text()
    for solution in chapter_files(SOLUTIONS_DIR):
        assert f"chapters/{solution.stem}.ipynb" in nav, f"{solution.stem} is missing from mkdocs.yml nav"


@pytest.mark.parametrize("page", ["index.html", "setup/index.html", "api/data/index.html"])
def test_fixed_pages_exist(built_site, page):
    assert (built_site / page).exists()


def test_api_reference_has_the_python_api_and_export():
    """The user-facing modules have reference pages in the nav (their rendering: the strict build above)."""
    nav = (REPO_ROOT / "mkdocs.yml").read_text()
    pages = {page: (REPO_ROOT / "site" / "api" / f"{page}.md").read_text() for page in ("inference", "data")}
    assert "api/inference.md" in nav and "api/data.md" in nav
    for module in ("detector.api", "detector.inference", "detector.export", "detector.errors"):
        assert f"::: {module}\n" in pages["inference"], f"{module} is not on the API reference"
    for module in ("detector.data.images", "detector.data.augment"):
        assert f"::: {module}\n" in pages["data"], f"{module} is not on the API reference"


def test_course_map_lists_every_exercise():
    """The course map page names each exercise (id and definition) of every solution notebook."""
    from course.exercises import find_regions

    course_map = (REPO_ROOT / "site" / "course-map.md").read_text()
    for solution in chapter_files(SOLUTIONS_DIR):
        for region in find_regions(solution.read_text(), str(solution)):
            assert f"| {region.exercise_id} | `{region.owner}`" in course_map, (
                f"site/course-map.md does not list exercise {region.exercise_id} · {region.owner} of {solution.name}"
            )


def test_runtimes_page_lists_every_notebook(built_site):
    page = (built_site / "runtimes" / "index.html").read_text()
    for solution in chapter_files(SOLUTIONS_DIR):
        assert solution.stem in page, f"the runtime table lacks {solution.stem} (run the nbval step first)"
