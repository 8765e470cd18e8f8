"""A pytest plugin for the nbval run: keep each notebook's outputs and runtime.

nbval executes every cell but throws the outputs away. This plugin writes the executed notebooks to
``build/executed/{solutions,chapters}/`` (the site renders the solution ones, so nothing runs twice) and
each notebook's wall time to ``build/notebook_runtimes.json``. Load it with ``-p course.pytest_notebooks``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

from course.paths import BUILD_DIR

EXECUTED_DIR = BUILD_DIR / "executed"
RUNTIMES_FILE = BUILD_DIR / "notebook_runtimes.json"

_notebooks: dict[Path, nbformat.NotebookNode] = {}
_seconds: defaultdict[Path, float] = defaultdict(float)
_failed: set[Path] = set()


def _is_nbval_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    if not _is_nbval_cell(item):
        yield
        return
    path = Path(str(item.parent.fspath))
    start = time.perf_counter()
    outcome = yield
    _seconds[path] += time.perf_counter() - start
    if outcome.excinfo is not None:
        _failed.add(path)
    outputs = getattr(item, "test_outputs", None) or []
    count = item.cell_num + 1
    for output in outputs:
        if output.get("output_type") in ("execute_result", "display_data"):
            output.setdefault("metadata", {})
        if output.get("output_type") == "execute_result":
            output["execution_count"] = count
    item.cell.outputs = outputs
    item.cell.execution_count = count
    _notebooks[path] = item.parent.nb


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _notebooks:
        return
    runtimes = json.loads(RUNTIMES_FILE.read_text()) if RUNTIMES_FILE.exists() else {}
    for path, notebook in _notebooks.items():
        kind = path.parent.name
        target = EXECUTED_DIR / kind / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if path not in _failed:
            nbformat.write(notebook, target)
        runtimes[f"{kind}/{path.stem}"] = {"seconds": round(_seconds[path], 1), "passed": path not in _failed}
    RUNTIMES_FILE.parent.mkdir(parents=True, exist_ok=True)
    RUNTIMES_FILE.write_text(json.dumps(dict(sorted(runtimes.items())), indent=1) + "\n")
