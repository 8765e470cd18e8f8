"""What the learner's notebook may show: fallbacks imported (never the answer beside the stub), stub messages
that are one conceptual phrase, and hints in levels for every exercise."""

from __future__ import annotations

import ast
import re

import pytest

from course.exercises import check_calls, exercise_key, find_regions
from course.hints import load_hints
from course.paths import SOLUTIONS_DIR, chapter_files

SOLUTIONS = chapter_files(SOLUTIONS_DIR)
# the package, the course's reference implementations, and torchvision (the independent reference the
# tests compare with): imported, so the learner does not read the answer beside the stub
FALLBACK_PACKAGES = ("detector", "course", "torchvision")
STUB_MESSAGE = re.compile(r"Exercise (?P<id>\d+\.\d+) · (?P<name>\w+): (?P<phrase>.+)")
MAX_STUB_MESSAGE = 95  # "at most ~90 characters" (issue 11), with a little room for a long exercise name
CODE_LIKE = re.compile(r"[()\[\]=`]")


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """``{name bound by a top-level import: the module it comes from}``."""
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name
    return names


def _bound_in_notebook(tree: ast.Module) -> set[str]:
    """Names a notebook binds at its top level (def, class, assignment, loop targets; not function locals)."""
    names, todo = set(), list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return names


def fallback_problem(node: ast.expr, imported: dict[str, str], bound: set[str]) -> str | None:
    """Why a check cell's fallback shows the answer in the notebook, or None when it is an imported name.

    Allowed: ``name`` or ``module.name`` whose root was imported from ``detector`` or ``course`` and is
    not redefined in the notebook. Anything else (a lambda, arithmetic, a call, a notebook definition)
    is computed or defined where the learner reads it.
    """
    root = node
    while isinstance(root, ast.Attribute):
        root = root.value
    if not isinstance(root, ast.Name):
        return f"is computed in the notebook ({type(node).__name__.lower()}: {ast.unparse(node)[:60]})"
    if root.id in bound and root.id not in imported:
        return f"{ast.unparse(node)} is defined in the notebook"
    source = imported.get(root.id)
    if source is None or root.id in bound:
        return f"{ast.unparse(node)} is not an import (or is rebound in the notebook)"
    if source.split(".")[0] not in FALLBACK_PACKAGES:
        return f"{ast.unparse(node)} comes from {source}, not from detector, course or torchvision"
    return None


def _fallback_cases():
    for path in SOLUTIONS:
        for call in check_calls(path.read_text(), str(path)):
            if call.fallback_node is not None:
                yield pytest.param(path, call, id=f"{path.stem}-{call.exercise_id}")


@pytest.mark.parametrize(("path", "call"), list(_fallback_cases()))
def test_check_cell_fallback_is_imported_from_the_package(path, call):
    tree = ast.parse(path.read_text())
    problem = fallback_problem(call.fallback_node, _imported_names(tree), _bound_in_notebook(tree))
    assert problem is None, (
        f"solutions/{path.name}:{call.line}: the fallback of Exercise {call.exercise_id} {problem}; a learner "
        f"reads the answer there. Import the package's version (detector, or course/reference/ch"
        f"{path.name[:2]}.py in the exercise's signature)."
    )


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("package_topk", None),
        ("reference.select_topk", None),
        ("lambda s: s * 2", "computed in the notebook"),
        ("local_topk", "defined in the notebook"),
        ("tv_nms", None),
        ("Image", "comes from PIL"),
        ("helper(3)", "computed in the notebook"),
    ],
)
def test_fallback_rule_on_hand_written_cases(expression, problem):
    notebook = ast.parse(
        "from detector.assigner import select_topk as package_topk\n"
        "from course.reference import ch06 as reference\n"
        "from torchvision.ops import nms as tv_nms\n"
        "from PIL import Image\n"
        "def local_topk(m):\n    reference = m\n    return reference\n"
    )
    node = ast.parse(expression, mode="eval").body
    found = fallback_problem(node, _imported_names(notebook), _bound_in_notebook(notebook))
    assert (found is None) if problem is None else (problem in found), found


def _messages():
    for path in SOLUTIONS:
        for region in find_regions(path.read_text(), str(path)):
            yield path, region


def _stub_message_problems(message: str) -> list[str]:
    match = STUB_MESSAGE.fullmatch(message)
    if match is None:
        return ["not of the form 'Exercise N.k · name: phrase'"]
    problems = []
    if len(message) > MAX_STUB_MESSAGE:
        problems.append(f"{len(message)} characters (at most {MAX_STUB_MESSAGE})")
    if CODE_LIKE.search(match["phrase"]):
        problems.append(f"code-like tokens {sorted(set(CODE_LIKE.findall(match['phrase'])))}")
    return problems


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_stub_messages_are_one_conceptual_phrase(path):
    bad = [
        f"  line {region.begin_line}: {region.message!r}: {', '.join(problems)}"
        for region in find_regions(path.read_text(), str(path))
        if (problems := _stub_message_problems(region.message))
    ]
    assert not bad, (
        f"solutions/{path.name}: stub messages must be 'Exercise N.k · name: <one conceptual phrase>', no code, "
        "no steps (the steps go to the hints):\n" + "\n".join(bad)
    )


@pytest.mark.parametrize(
    ("message", "ok"),
    [
        ("Exercise 1.1 · xywh_to_xyxy: a COCO box is its top-left corner plus its size", True),
        ("Exercise 3.1 · upsample_add: F.interpolate(coarse, size=lateral.shape[-2:]) + lateral", False),
        ("Exercise 6.3 · select_topk: the `k` best candidates", False),
        ("Exercise 6.3 · select_topk: " + "the best candidates of each ground truth, " * 2, False),
        ("select_topk: the best", False),
    ],
)
def test_stub_message_rule_on_hand_written_cases(message, ok):
    assert (not _stub_message_problems(message)) == ok


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_regions_of_one_exercise_share_its_message(path):
    messages: dict[str, set[str]] = {}
    for region in find_regions(path.read_text(), str(path)):
        messages.setdefault(region.exercise_id, set()).add(region.message)
    differing = {i: sorted(m) for i, m in messages.items() if len(m) > 1}
    assert not differing, f"solutions/{path.name}: one message per exercise, found {differing}"


def test_every_exercise_has_hints_at_levels_two_and_three():
    hints = load_hints()
    exercises = {region.exercise_id: path for path, region in _messages()}
    missing = [
        f"  {exercise_id}: {level} missing in course/hints/{path.stem}.yaml"
        for exercise_id, path in sorted(exercises.items(), key=lambda kv: exercise_key(kv[0]))
        for level in ("idea", "recipe")
        if not hints.get(exercise_id, {}).get(level, "").strip()
    ]
    unknown = sorted(set(hints) - set(exercises))
    assert not missing and not unknown, (
        "hints: "
        + "\n".join(missing)
        + (f"\n  hints for exercises that do not exist: {unknown}" if unknown else "")
    )
