"""Exercise regions of the solution notebooks: stub generation and loading definitions.

A solution notebook (``solutions/NN_slug.py``, jupytext py:percent) marks each exercise's code the
nbgrader way, with the stub message after the opening marker::

    def xywh_to_xyxy(boxes_xywh):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION Exercise 1.1 · xywh_to_xyxy: x2 = x + w, y2 = y + h
        x, y, w, h = boxes_xywh.unbind(-1)
        return torch.stack((x, y, x + w, y + h), dim=-1)
        ### END SOLUTION

:func:`make_chapter` replaces each region by ``raise NotImplementedError("Exercise 1.1 · ...")`` at the
region's indentation; :func:`load_exercises` executes only a notebook's definitions (imports, functions,
classes, ALL_CAPS constants) so that tests can call them without running the chapter's heavy cells.
"""

from __future__ import annotations

import ast
import re
import types
from dataclasses import dataclass, field
from pathlib import Path

from course.paths import SOLUTIONS_DIR, chapter_files

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
EXERCISE_ID = re.compile(r"Exercise (\d+)\.(\d+)")
STUB_COMMENT = "# YOUR CODE HERE"


def exercise_key(exercise_id: str) -> tuple[int, ...]:
    """Sort key of an exercise id: ``"6.10"`` after ``"6.9"``."""
    return tuple(int(part) for part in exercise_id.split("."))


class ExerciseMarkupError(ValueError):
    """A solution notebook whose BEGIN/END SOLUTION markers do not pair up or carry no message."""


@dataclass(frozen=True)
class Region:
    """One ``BEGIN … END SOLUTION`` region: its exercise, message and 1-based line span (markers included)."""

    exercise_id: str
    message: str
    begin_line: int
    end_line: int
    indent: str
    owner: str  # the top-level definition that contains the region


def find_regions(source: str, filename: str = "<notebook>") -> list[Region]:
    """All solution regions of a py:percent notebook, in order, with the definition that owns each."""
    lines = source.splitlines()
    owners = _top_level_spans(source, filename)
    regions, open_at = [], None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if open_at is not None:
                raise ExerciseMarkupError(
                    f"{filename}:{number}: {BEGIN} inside the region opened at line {open_at}"
                )
            open_at = number
        elif stripped.startswith(END):
            if open_at is None:
                raise ExerciseMarkupError(f"{filename}:{number}: {END} without a matching {BEGIN}")
            regions.append(_region(lines, open_at, number, owners, filename))
            open_at = None
    if open_at is not None:
        raise ExerciseMarkupError(f"{filename}:{open_at}: {BEGIN} is never closed by {END}")
    return regions


def _region(lines: list[str], begin: int, end: int, owners: dict, filename: str) -> Region:
    marker = lines[begin - 1]
    message = marker.strip()[len(BEGIN) :].strip()
    match = EXERCISE_ID.match(message)
    if not match:
        raise ExerciseMarkupError(
            f"{filename}:{begin}: the marker must carry the stub message, "
            f"e.g. '{BEGIN} Exercise 1.1 · xywh_to_xyxy: hint'; found {marker.strip()!r}"
        )
    owner = next((name for name, (first, last) in owners.items() if first <= begin <= last), None)
    if owner is None:
        raise ExerciseMarkupError(
            f"{filename}:{begin}: a solution region must sit inside a top-level def/class"
        )
    indent = marker[: len(marker) - len(marker.lstrip())]
    exercise_id = f"{match.group(1)}.{match.group(2)}"
    return Region(exercise_id, message, begin, end, indent, owner)


def _top_level_spans(source: str, filename: str) -> dict[str, tuple[int, int]]:
    tree = ast.parse(source, filename=filename)
    return {
        node.name: (node.lineno, node.end_lineno)
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def make_chapter(source: str, filename: str = "<notebook>", only: set[str] | None = None) -> str:
    """The learner's version of a solution notebook: each solution region becomes a stub.

    With ``only``, just the regions of those exercise ids are stubbed (the stub-failure proof uses this).
    """
    lines = source.splitlines()
    out: list[str] = []
    cursor = 1
    for region in find_regions(source, filename):
        if only is not None and region.exercise_id not in only:
            continue
        out.extend(lines[cursor - 1 : region.begin_line - 1])
        out.append(f"{region.indent}{STUB_COMMENT}")
        out.append(f"{region.indent}raise NotImplementedError({region.message!r})")
        cursor = region.end_line + 1
    out.extend(lines[cursor - 1 :])
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def exercise_owners(source: str, filename: str = "<notebook>") -> dict[str, set[str]]:
    """``{exercise_id: {names of the top-level definitions that hold its regions}}``."""
    owners: dict[str, set[str]] = {}
    for region in find_regions(source, filename):
        owners.setdefault(region.exercise_id, set()).add(region.owner)
    return owners


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)
    return False


def load_exercises(path: str | Path, source: str | None = None) -> types.ModuleType:
    """Execute only the definitions of a notebook file and return them as a module.

    Kept: imports, ``def``/``class`` statements and ``ALL_CAPS = ...`` constants (which chapters keep cheap).
    Everything else (figures, training cells, check cells) is skipped, so importing is fast and silent.
    ``source`` replaces the file's text (``path`` then only names the module).
    """
    path = Path(path)
    source = path.read_text() if source is None else source
    tree = ast.parse(source, filename=str(path))
    tree.body = [node for node in tree.body if _is_definition(node)]
    module = types.ModuleType(path.stem)
    module.__file__ = str(path)
    exec(compile(tree, str(path), "exec"), module.__dict__)
    return module


@dataclass(frozen=True)
class CheckCall:
    """A notebook's top-level check cell ``target = check("6.3", definitions..., fallback=expression)``."""

    exercise_id: str
    target: str  # the name the cell rebinds (the first definition's when the call is not assigned)
    fallback: str | None  # the fallback expression's source, None without one
    fallback_node: ast.expr | None = field(compare=False, repr=False)
    line: int = 0


def check_calls(source: str, filename: str = "<notebook>") -> list[CheckCall]:
    """The ``check(...)`` calls at the top level of a notebook, in notebook order."""
    calls = []
    for node in ast.parse(source, filename=filename).body:
        call = node.value if isinstance(node, (ast.Assign, ast.Expr)) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check"):
            continue
        first = call.args[0] if call.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            raise ExerciseMarkupError(
                f"{filename}:{node.lineno}: check() takes the exercise id first, e.g. '6.3'"
            )
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
        else:
            target = next((a.id for a in call.args[1:] if isinstance(a, ast.Name)), "")
        fallback = next((k.value for k in call.keywords if k.arg == "fallback"), None)
        text = None if fallback is None else ast.get_source_segment(source, fallback)
        calls.append(CheckCall(first.value, target, text, fallback, node.lineno))
    return calls


def solution_messages(solutions_dir: Path | None = None) -> dict[str, str]:
    """``{exercise id: stub message}`` of every solution notebook (``Exercise 6.3 · select_topk: phrase``)."""
    messages = {}
    for path in chapter_files(solutions_dir or SOLUTIONS_DIR):
        for region in find_regions(path.read_text(), str(path)):
            messages.setdefault(region.exercise_id, region.message)
    return messages
