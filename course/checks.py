"""Exercise tests that speak to learners: registration, diagnoses and the notebook check cells.

An exercise test is a plain function of one argument, ``impl`` (a namespace holding the learner's
definitions), registered with :func:`exercise`::

    @exercise("1.1")
    def test_xywh_to_xyxy_hand_computed(impl):
        got = impl.xywh_to_xyxy(torch.tensor([[10.0, 20.0, 30.0, 40.0]]))
        expect_close(got, torch.tensor([[10.0, 20.0, 40.0, 60.0]]), "boxes",
                     hint="x2 = x + w: a box is given by its top-left corner and its size")

pytest runs it with the ``impl`` fixture (``--impl solutions`` or ``--impl chapters``); the notebook's
check cell runs the very same functions through :func:`check` and prints ✓, "not implemented yet" or
the first failure's diagnosis.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import linecache
import sys
import sysconfig
import traceback
import types
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from course.exercises import (
    EXERCISE_ID,
    CheckCall,
    check_calls,
    exercise_key,
    exercise_owners,
    load_exercises,
)
from course.hints import after_failed_attempt
from course.paths import REPO_ROOT, SOLUTIONS_DIR, chapter_files

ExerciseTest = Callable[[Any], None]
# {exercise id: {test name: test}}; keyed by name so that importing a test file twice does not run it twice
REGISTRY: dict[str, dict[str, ExerciseTest]] = defaultdict(dict)
NOT_IMPLEMENTED = "not implemented yet"


class CheckFailure(AssertionError):
    """A learner-facing test failure: the message is the diagnosis."""


def exercise(exercise_id: str) -> Callable[[ExerciseTest], ExerciseTest]:
    """Register ``fn`` as a test of exercise ``exercise_id`` (``"6.3"``) and mark it for pytest."""

    def register(fn: ExerciseTest) -> ExerciseTest:
        REGISTRY[exercise_id][fn.__name__] = fn
        fn.exercise_id = exercise_id
        try:
            import pytest
        except ImportError:  # pragma: no cover - notebooks without pytest still work
            return fn
        return pytest.mark.exercise(exercise_id)(fn)

    return register


SUMMARY_NUMEL = 16  # tensors with more entries are summarised in diagnoses, not printed whole
MAX_DIAGNOSIS_LINES = 15


def _describe(value: Any) -> str:
    """A tensor as its values when small, else as shape, dtype, range and its first few values."""
    if not isinstance(value, torch.Tensor):
        return repr(value)
    value = value.detach().cpu()
    if value.numel() <= SUMMARY_NUMEL:
        return f"{' '.join(str(value).split())}  (shape {list(value.shape)}, {value.dtype})"
    flat = value.flatten()
    head = ", ".join(f"{v:.4g}" if value.is_floating_point() else str(v) for v in flat[:6].tolist())
    numbers = flat.double()
    return (
        f"shape {list(value.shape)}, {value.dtype}, min {numbers.min().item():.4g}, "
        f"max {numbers.max().item():.4g}, first values [{head}, ...]"
    )


def shorten(diagnosis: str, max_lines: int = MAX_DIAGNOSIS_LINES) -> str:
    """At most ``max_lines`` lines of a diagnosis (the hint comes first, so the tail is what goes)."""
    lines = diagnosis.splitlines()
    if len(lines) <= max_lines:
        return diagnosis
    return "\n".join([*lines[: max_lines - 1], f"... ({len(lines) - max_lines + 1} more lines)"])


def expect(condition: bool, diagnosis: str) -> None:
    """Fail with ``diagnosis`` unless ``condition``."""
    if not condition:
        raise CheckFailure(diagnosis)


def expect_shape(got: Any, shape: tuple[int, ...] | list[int], what: str, hint: str = "") -> None:
    """Fail unless ``got`` is a tensor of exactly ``shape``."""
    if not isinstance(got, torch.Tensor):
        raise CheckFailure(f"{what}: expected a tensor of shape {list(shape)}, got {type(got).__name__}")
    if list(got.shape) != list(shape):
        raise CheckFailure(
            f"{what}: expected shape {list(shape)}, got {list(got.shape)}" + (f"\n{hint}" if hint else "")
        )


def expect_close(
    got: Any, expected: torch.Tensor, what: str, hint: str = "", atol: float = 1e-5, rtol: float = 1e-5
) -> None:
    """Fail unless ``got`` equals ``expected`` within tolerance; the message shows both and the worst entry."""
    expected = torch.as_tensor(expected)
    expect_shape(got, tuple(expected.shape), what, hint)
    got_f, exp_f = got.detach().double().cpu(), expected.detach().double().cpu()
    if torch.allclose(got_f, exp_f, atol=atol, rtol=rtol, equal_nan=True):
        return
    diff = (got_f - exp_f).abs().nan_to_num(float("inf"))
    worst = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.numel() else ()
    lines = [f"{what} differ: max abs diff {diff.max().item():.6g} at index {list(worst)}"]
    if hint:
        lines.append(hint)
    if diff.numel() > SUMMARY_NUMEL:
        lines.append(f"  at that index: expected {exp_f[worst].item():.6g}, got {got_f[worst].item():.6g}")
    lines += [f"  expected: {_describe(expected)}", f"  got:      {_describe(got)}"]
    raise CheckFailure("\n".join(lines))


def stub_exercise(error: BaseException | None) -> str | None:
    """The exercise id that a stub's ``NotImplementedError("Exercise 6.3 · ...")`` names, else None.

    Looks through the chain of causes too, so a test that wraps the stub's error in its own diagnosis
    still reports a stub, not a failure.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        match = EXERCISE_ID.search(str(error)) if isinstance(error, NotImplementedError) else None
        if match:
            return f"{match.group(1)}.{match.group(2)}"
        error = error.__cause__ or error.__context__
    return None


_LIBRARY_DIRS = tuple(
    {sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")}
    | {str(REPO_ROOT / folder) for folder in ("course", "detector", "tests")}
)


def _learner_frame(error: BaseException) -> tuple[str, int, str] | None:
    """The innermost frame of the traceback in the learner's code: (qualified name, line, source line)."""
    found = None
    tb = error.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if not code.co_filename.startswith(_LIBRARY_DIRS):
            name = getattr(code, "co_qualname", code.co_name)
            found = (name, tb.tb_lineno, (linecache.getline(code.co_filename, tb.tb_lineno) or "").strip())
        tb = tb.tb_next
    return found


def diagnose(error: BaseException, exercise_id: str) -> tuple[str, str]:
    """``(status, detail)`` of a test of ``exercise_id`` that raised ``error``: one line for a stub.

    ``"todo"`` when a stub raised (this exercise's, or an earlier one's that it uses, which the detail
    names), else ``"fail"`` with the diagnosis: a :class:`CheckFailure`'s message, or the error and the
    line of the learner's code that raised it (naming the earlier exercise when it lies in one).
    """
    stub = stub_exercise(error)
    if stub == exercise_id:
        return "todo", f"{exercise_id} {NOT_IMPLEMENTED}"
    if stub is not None:
        return "todo", f"{exercise_id} uses Exercise {stub}, which is {NOT_IMPLEMENTED}"
    if isinstance(error, CheckFailure):
        return "fail", shorten(str(error))
    lines = ["".join(traceback.format_exception_only(type(error), error)).strip()]
    frame = _learner_frame(error)
    if frame is not None:
        name, line, text = frame
        lines.append(f"raised in {name}, line {line}: {text}")
        owner = exercise_owner(exercise_id.split(".")[0], name.split(".")[0])
        if owner is not None and owner != exercise_id:
            lines.append(f"(that is your Exercise {owner}, which this exercise uses)")
    return "fail", shorten("\n".join(lines))


@functools.cache
def _owners(chapter: str) -> dict[str, str]:
    owners = {}
    for path in chapter_files(SOLUTIONS_DIR):
        if path.name.startswith(f"{int(chapter):02d}_"):
            for exercise_id, names in exercise_owners(path.read_text(), str(path)).items():
                owners.update(dict.fromkeys(names, exercise_id))
    return owners


def exercise_owner(chapter: str, name: str) -> str | None:
    """The exercise of chapter ``chapter`` whose solution lies in the top-level definition ``name``."""
    return _owners(chapter).get(name)


def chapter_test_module(chapter: int) -> types.ModuleType:
    """Import ``tests/chapters/test_NN_*.py`` (which registers its exercise tests)."""
    matches = sorted((REPO_ROOT / "tests" / "chapters").glob(f"test_{chapter:02d}_*.py"))
    if not matches:
        raise FileNotFoundError(f"no exercise tests for chapter {chapter} in tests/chapters/")
    path = matches[0]
    name = f"course_exercise_tests_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_exercise_tests(exercise_id: str, impl: Any) -> list[tuple[str, str, str]]:
    """Run every test of ``exercise_id`` against ``impl``: ``[(test name, status, detail)]``.

    ``status`` is ``"pass"``, ``"todo"`` (a stub raised NotImplementedError) or ``"fail"``; see :func:`diagnose`.
    """
    if exercise_id not in REGISTRY:
        chapter_test_module(int(exercise_id.split(".")[0]))
    results = []
    for test in REGISTRY.get(exercise_id, {}).values():
        try:
            test(impl)
        except Exception as error:  # noqa: BLE001 - every failure becomes a diagnosis
            results.append((test.__name__, *diagnose(error, exercise_id)))
        else:
            results.append((test.__name__, "pass", ""))
    if not results:
        raise KeyError(f"no tests are registered for exercise {exercise_id}")
    return results


def overall(statuses: list[str]) -> str:
    """One exercise's verdict from its tests' statuses: "fail" beats "todo" beats "pass"."""
    return "fail" if "fail" in statuses else "todo" if "todo" in statuses else "pass"


def blame_earlier(exercise_id: str, scope: dict[str, Any], earlier: list[tuple[str, str, Any]]) -> str | None:
    """Which earlier exercise a failure of ``exercise_id`` comes from, if one does.

    ``scope`` is the namespace the learner's definitions run in (the notebook's globals); ``earlier`` holds
    ``(exercise id, name, package version)`` of the earlier exercises whose learner's version is in use.
    Each is swapped for the package's version in turn; the first swap that makes every test of
    ``exercise_id`` pass names the culprit.
    """
    for earlier_id, name, fallback in earlier:
        mine = scope.get(name)
        if mine is fallback:
            continue
        scope[name] = fallback
        try:
            statuses = [s for _, s, _ in run_exercise_tests(exercise_id, types.SimpleNamespace(**scope))]
        finally:
            scope[name] = mine
        if overall(statuses) == "pass":
            return earlier_id
    return None


def verdict(
    exercise_id: str, name: str, results: list[tuple[str, str, str]], culprit: str | None = None
) -> str:
    """The lines a check cell (or ``make check``) prints for one exercise: ✓, one line for a stub, or ✗."""
    statuses = [s for _, s, _ in results]
    title = f"Exercise {exercise_id} · {name}"
    if overall(statuses) == "pass":
        return f"✓ {title}: " + (
            "its check passes" if len(results) == 1 else f"all {len(results)} checks pass"
        )
    if overall(statuses) == "todo":
        detail = next(d for _, s, d in results if s == "todo")
        return f"… {title}: {detail.removeprefix(exercise_id + ' ')}"
    test_name, _, detail = next(r for r in results if r[1] == "fail")
    failed = statuses.count("fail")
    lines = [f"✗ {title}: {failed} of {len(results)} checks {'fails' if failed == 1 else 'fail'}"]
    if culprit is not None:
        lines.append(
            f"  It passes with the package's version of Exercise {culprit}: the failure comes from your "
            f"{culprit}, which passes its own checks but not what {exercise_id} needs from it."
        )
    lines.append(f"  first failing check: {test_name}")
    lines.append("  " + detail.replace("\n", "\n  "))
    return "\n".join(lines)


# {exercise id: (name, fallback)} of the check cells run so far in this kernel, in notebook order
_FALLBACKS: dict[str, tuple[str, Any]] = {}


def check(exercise_id: str, *definitions: Any, fallback: Any = None) -> Any:
    """The check cell: run exercise ``exercise_id``'s tests on the definitions just written.

    The tests see the caller's globals (so helpers defined earlier in the notebook are visible) with
    ``definitions`` on top. Prints ✓, "not implemented yet" or the first diagnosis, and after a failing
    attempt the next level of hints (:mod:`course.hints`). When a failure goes away with the package's
    version of an earlier exercise, says so. Returns the (first) definition when every test passes, else
    ``fallback`` — the package's version, imported — so that the rest of the chapter still runs; with no
    fallback it returns the definition unchanged.
    """
    caller = inspect.currentframe().f_back.f_globals
    name = definitions[0].__name__ if definitions else exercise_id
    chapter = exercise_id.split(".")[0]
    earlier = [
        (earlier_id, target, package)
        for earlier_id, (target, package) in _FALLBACKS.items()
        if earlier_id.split(".")[0] == chapter and exercise_key(earlier_id) < exercise_key(exercise_id)
    ]
    if fallback is not None:
        _FALLBACKS[exercise_id] = (name, fallback)
    namespace = types.SimpleNamespace(**{k: v for k, v in caller.items() if not k.startswith("__")})
    for definition in definitions:
        setattr(namespace, definition.__name__, definition)
    results = run_exercise_tests(exercise_id, namespace)
    status = overall([s for _, s, _ in results])
    culprit = blame_earlier(exercise_id, caller, earlier) if status == "fail" else None
    print(verdict(exercise_id, name, results, culprit))
    if status == "fail":
        level = after_failed_attempt(exercise_id)
        if level is not None:
            print(f"  {level}")
        print(f'  (hint("{exercise_id}") shows every hint)')
    if status == "pass":
        return definitions[0] if definitions else None
    if fallback is not None:
        print("  (the rest of this chapter uses the package's version)")
        return fallback
    return definitions[0] if definitions else None


class NotebookReplay:
    """A learner's notebook judged the way its check cells judge it, without running the notebook.

    The check cell of an exercise rebinds the exercise's name to the package's version (its ``fallback``)
    when the learner's fails, so later exercises run on the package's version of unsolved earlier ones.
    :meth:`scope` rebuilds that: the notebook's definitions, with the fallback of every earlier check cell
    (as parsed from the notebook) whose exercise does not pass. ``make check`` and ``pytest --impl
    chapters`` use it, so each exercise is judged on its own, as in the notebook.
    """

    def __init__(self, path: Path):
        self.path = path
        self.source = path.read_text()
        self.calls = check_calls(self.source, str(path))
        load_exercises(path, self.source)  # a notebook whose definitions do not run fails here, once
        self._scopes: dict[str, types.ModuleType] = {}
        self._status: dict[str, str] = {}

    def _earlier(self, exercise_id: str) -> list[CheckCall]:
        index = next((i for i, c in enumerate(self.calls) if c.exercise_id == exercise_id), None)
        if index is None:
            return [c for c in self.calls if exercise_key(c.exercise_id) < exercise_key(exercise_id)]
        return [c for c in self.calls[:index] if c.exercise_id != exercise_id]

    def scope(self, exercise_id: str) -> types.ModuleType:
        """The notebook's definitions as exercise ``exercise_id``'s check cell sees them."""
        if exercise_id not in self._scopes:
            module = load_exercises(self.path, self.source)
            for call in self._earlier(exercise_id):
                if call.fallback is not None and self.status(call.exercise_id) != "pass":
                    setattr(module, call.target, eval(call.fallback, vars(module)))
            self._scopes[exercise_id] = module
        return self._scopes[exercise_id]

    def status(self, exercise_id: str) -> str:
        """``"pass"``, ``"todo"`` or ``"fail"``: the verdict of the exercise's check cell."""
        if exercise_id not in self._status:
            results = run_exercise_tests(exercise_id, self.scope(exercise_id))
            self._status[exercise_id] = overall([s for _, s, _ in results])
        return self._status[exercise_id]

    def culprit(self, exercise_id: str) -> str | None:
        """The earlier exercise a failure of ``exercise_id`` comes from (see :func:`blame_earlier`)."""
        module = self.scope(exercise_id)
        earlier = [
            (c.exercise_id, c.target, eval(c.fallback, vars(module)))
            for c in self._earlier(exercise_id)
            if c.fallback is not None and self.status(c.exercise_id) == "pass"
        ]
        return blame_earlier(exercise_id, vars(module), earlier)
