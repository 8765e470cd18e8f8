"""Shared pytest wiring: ``--impl`` (whose notebooks the exercise tests run against) and the learner's summary.

With ``--impl solutions`` (the default) the exercise tests run on the reference notebooks. With any other
folder (``--impl chapters``: the learner's notebooks, as ``make check CH=N`` runs them) each exercise is
judged as its notebook check cell judges it (:class:`course.checks.NotebookReplay`: the package's version of
unsolved earlier exercises), tracebacks are replaced by one line per stub and a short diagnosis per failing
exercise, and the summary comes last.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from course.checks import NotebookReplay, diagnose, overall, verdict
from course.exercises import exercise_key, load_exercises, solution_messages
from course.paths import REPO_ROOT, SOLUTIONS_DIR


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        default="solutions",
        help="the folder of notebooks the exercise tests run against: solutions (default), chapters "
        "(yours) or any folder holding NN_slug.py notebooks",
    )


def _impl_dir(config: pytest.Config) -> Path:
    path = Path(config.getoption("--impl"))
    path = path if path.is_absolute() else REPO_ROOT / path
    if not path.is_dir():
        raise pytest.UsageError(
            f"--impl {config.getoption('--impl')}: no such folder (try solutions or chapters)"
        )
    return path.resolve()


def _judged_as_notebook(config: pytest.Config) -> bool:
    return _impl_dir(config) != SOLUTIONS_DIR.resolve()


def pytest_configure(config: pytest.Config) -> None:
    if _judged_as_notebook(config):
        config.option.tbstyle = "no"  # the exercises section below says what went wrong, briefly
        config.option.reportchars = ""


_modules: dict[Path, object] = {}
_replays: dict[Path, NotebookReplay] = {}


@pytest.fixture
def impl(request: pytest.FixtureRequest):
    """The definitions of the chapter notebook named by the test module's ``CHAPTER``.

    Against a learner's folder: as the exercise's check cell sees them (earlier unsolved exercises replaced
    by the package's version).
    """
    path = _impl_dir(request.config) / f"{request.module.CHAPTER}.py"
    if not path.exists():
        pytest.fail(f"{path} does not exist: --impl names a folder holding {path.name}", pytrace=False)
    marker = request.node.get_closest_marker("exercise")
    if marker is None or not _judged_as_notebook(request.config):
        if path not in _modules:
            _modules[path] = load_exercises(path)
        return _modules[path]
    if path not in _replays:
        try:
            _replays[path] = NotebookReplay(path)
        except Exception as error:  # noqa: BLE001 - said once, instead of once per test
            detail = "".join(traceback.format_exception_only(type(error), error)).rstrip()
            pytest.exit(f"{path} does not run, so no exercise can be checked:\n{detail}", returncode=1)
    return _replays[path].scope(marker.args[0])


# {exercise id: (notebook path, [(test name, status, detail)])}
_results: dict[str, tuple[Path, list[tuple[str, str, str]]]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    marker = item.get_closest_marker("exercise")
    if marker is None:
        return
    exercise_id = marker.args[0]
    report = outcome.get_result()
    report.exercise_id = exercise_id
    if call.when != "call" and not report.failed:
        return
    if call.excinfo is None:
        status, detail = "pass", ""
    else:
        status, detail = diagnose(call.excinfo.value, exercise_id)
    path = _impl_dir(item.config) / f"{item.module.CHAPTER}.py"
    _results.setdefault(exercise_id, (path, []))[1].append((item.name, status, detail))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _results or not _judged_as_notebook(config):
        return
    terminalreporter.section("exercises, judged as your notebook's check cells judge them")
    names = solution_messages()
    passed = 0
    for exercise_id in sorted(_results, key=exercise_key):
        path, results = _results[exercise_id]
        status = overall([s for _, s, _ in results])
        passed += status == "pass"
        culprit = _replays[path].culprit(exercise_id) if status == "fail" and path in _replays else None
        name = names.get(exercise_id, "").split("·")[-1].split(":")[0].strip() or exercise_id
        terminalreporter.write_line(verdict(exercise_id, name, results, culprit))
    unsolved = [
        e for e in sorted(_results, key=exercise_key) if overall([s for _, s, _ in _results[e][1]]) != "pass"
    ]
    more = f" · next: Exercise {unsolved[0]} (hints: make hint EX={unsolved[0]})" if unsolved else ""
    terminalreporter.write_line(f"{passed} of {len(_results)} exercises pass{more}")
