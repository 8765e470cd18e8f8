"""Tests of the tests: a plausible wrong solution must fail its exercise's tests with a diagnosis naming it.

:func:`assert_caught` loads the definitions of ``solutions/<chapter>.py``, swaps in the wrong versions, runs
the exercise's tests the way a check cell does (:func:`course.checks.run_exercise_tests`) and asserts that
at least one test *fails* (not "not implemented", not an error escaping the test) with a diagnosis that
matches ``diagnosis`` (a regular expression, searched). A wrong version is given per definition name as

- ``edit(old, new)`` (or a tuple of edits): the solution's own definition with the text ``old`` replaced —
  the usual way, since most slips are one token;
- a string: the source of the whole wrong definition, executed among the notebook's definitions (so it can
  use the notebook's imports and helpers);
- a function or class defined in the test file.

Example (``tests/course/test_mistakes_01_dataset.py``)::

    from course.mistakes import assert_caught, edit

    def test_xywh_to_xyxy_that_adds_half_the_size_is_caught():
        assert_caught(
            "01_dataset", "1.1", "centre-based conversion",
            diagnosis=r"top-left corner",
            xywh_to_xyxy=edit("x + w", "x + w / 2"),
        )
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from dataclasses import dataclass
from typing import Any

from course.checks import run_exercise_tests
from course.exercises import load_exercises
from course.paths import SOLUTIONS_DIR


@dataclass(frozen=True)
class Edit:
    """Replace every occurrence of ``old`` by ``new`` in a definition's source."""

    old: str
    new: str


def edit(old: str, new: str) -> Edit:
    """A one-token slip: the solution's definition with ``old`` replaced by ``new`` (it must occur)."""
    return Edit(old, new)


def _definition_source(source: str, name: str, filename: str) -> str:
    lines = source.splitlines()
    for node in ast.parse(source, filename=filename).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            return "\n".join(lines[first - 1 : node.end_lineno])
    raise KeyError(f"{filename} has no top-level definition named {name!r}")


def _wrong_version(module: Any, name: str, wrong: Any, source: str, filename: str) -> Any:
    if isinstance(wrong, Edit):
        wrong = (wrong,)
    if isinstance(wrong, tuple):
        text = _definition_source(source, name, filename)
        for change in wrong:
            if change.old not in text:
                raise ValueError(f"edit of {name} in {filename}: {change.old!r} does not occur in its source")
            text = text.replace(change.old, change.new)
        wrong = text
    if isinstance(wrong, str):
        right = getattr(module, name)
        exec(compile(wrong, f"<wrong {name}>", "exec"), vars(module))
        if getattr(module, name) is right:
            raise ValueError(f"the wrong source given for {name} does not define {name}")
        return getattr(module, name)
    return wrong


def assert_caught(
    chapter: str, exercise_id: str, mistake: str, *, diagnosis: str | re.Pattern, **replacements: Any
) -> list[str]:
    """Assert that exercise ``exercise_id``'s tests catch ``mistake`` with a matching diagnosis.

    Args:
        chapter: the notebook's stem, ``"06_tal"`` (its definitions come from ``solutions/06_tal.py``).
        exercise_id: ``"6.3"``: whose tests run.
        mistake: what the learner got wrong, in words (shown when the battery itself fails).
        diagnosis: a regular expression that some failing test's message must contain (``re.search``).
        replacements: ``name=wrong version`` for each definition to swap (see the module docstring).

    Returns:
        The diagnoses of the failing tests, for further assertions.
    """
    path = SOLUTIONS_DIR / f"{chapter}.py"
    source = path.read_text()
    module = load_exercises(path)
    if not replacements:
        raise ValueError(
            f"{mistake!r}: give the wrong version(s), e.g. select_topk=edit('largest=True', ...)"
        )
    for name, wrong in replacements.items():
        if not hasattr(module, name):
            raise KeyError(f"{path.name} defines no {name!r} to replace")
        # a function's globals are the module's namespace, so dependants of ``name`` see the wrong one too
        setattr(module, name, _wrong_version(module, name, wrong, source, str(path)))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        results = run_exercise_tests(exercise_id, module)
    statuses = "\n".join(
        f"  {status:4}  {test}: {detail.splitlines()[0] if detail else ''}"
        for test, status, detail in results
    )
    failures = [detail for _, status, detail in results if status == "fail"]
    assert failures, f"Exercise {exercise_id}: the mistake {mistake!r} is not caught by any test:\n{statuses}"
    pattern = re.compile(diagnosis) if isinstance(diagnosis, str) else diagnosis
    assert any(pattern.search(detail) for detail in failures), (
        f"Exercise {exercise_id}: the mistake {mistake!r} fails, but no diagnosis matches {pattern.pattern!r}:\n"
        + "\n---\n".join(failures)
    )
    return failures
