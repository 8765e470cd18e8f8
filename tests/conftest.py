"""Shared pytest wiring: ``--impl`` (whose notebooks the exercise tests run against) and the learner's summary."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from course.checks import NOT_IMPLEMENTED, first_line
from course.exercises import load_exercises
from course.paths import REPO_ROOT

IMPL_DIRS = ("solutions", "chapters")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        default="solutions",
        choices=IMPL_DIRS,
        help="run the exercise tests against solutions/ (default) or the learner's chapters/",
    )


_loaded: dict[str, object] = {}


@pytest.fixture
def impl(request: pytest.FixtureRequest):
    """The definitions of the chapter notebook named by the test module's ``CHAPTER``."""
    chapter = request.module.CHAPTER
    path = REPO_ROOT / request.config.getoption("--impl") / f"{chapter}.py"
    if str(path) not in _loaded:
        _loaded[str(path)] = load_exercises(path)
    return _loaded[str(path)]


_summary: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    exercise_id = getattr(report, "exercise_id", None)
    if exercise_id is None or (report.when != "call" and report.passed):
        return
    if report.passed:
        status = ("pass", "")
    elif report.failed and "NotImplementedError" in str(report.longrepr):
        status = ("todo", NOT_IMPLEMENTED)
    elif report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        status = ("fail", first_line(Exception(crash.message if crash else str(report.longrepr))))
    else:
        return
    _summary.setdefault(exercise_id, []).append(status)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    marker = item.get_closest_marker("exercise")
    if marker is not None:
        outcome.get_result().exercise_id = marker.args[0]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _summary or config.getoption("--impl") != "chapters":
        return
    write = terminalreporter.write_line
    terminalreporter.section("exercises")
    for exercise_id, statuses in sorted(_summary.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))):
        kinds = [s for s, _ in statuses]
        if all(k == "pass" for k in kinds):
            write(f"  ✓ Exercise {exercise_id}")
        elif "fail" in kinds:
            detail = next(d for s, d in statuses if s == "fail")
            write(f"  ✗ Exercise {exercise_id}: {detail}")
        else:
            write(f"  … Exercise {exercise_id}: {NOT_IMPLEMENTED}")
