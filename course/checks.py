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

import importlib.util
import inspect
import sys
import traceback
import types
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from course.paths import REPO_ROOT

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


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            text = str(value.detach().cpu()).replace("\n", "\n    ")
        return f"{text}  (shape {list(value.shape)}, {value.dtype})"
    return repr(value)


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
    lines = [
        f"{what} differ: max abs diff {diff.max().item():.6g} at index {list(worst)}",
        f"  expected: {_describe(expected)}",
        f"  got:      {_describe(got)}",
    ]
    if hint:
        lines.append(hint)
    raise CheckFailure("\n".join(lines))


def _is_not_implemented(error: BaseException) -> bool:
    return isinstance(error, NotImplementedError)


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


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

    ``status`` is ``"pass"``, ``"todo"`` (a stub raised NotImplementedError) or ``"fail"``.
    """
    if exercise_id not in REGISTRY:
        chapter_test_module(int(exercise_id.split(".")[0]))
    results = []
    for test in REGISTRY.get(exercise_id, {}).values():
        try:
            test(impl)
        except Exception as error:  # noqa: BLE001 - every failure becomes a diagnosis
            if _is_not_implemented(error):
                results.append((test.__name__, "todo", first_line(error)))
            elif isinstance(error, CheckFailure):
                results.append((test.__name__, "fail", str(error)))
            else:
                detail = "".join(traceback.format_exception_only(type(error), error)).strip()
                results.append(
                    (test.__name__, "fail", f"{detail}\n(raised inside your code; see the traceback above)")
                )
                traceback.print_exc(limit=-3)
        else:
            results.append((test.__name__, "pass", ""))
    if not results:
        raise KeyError(f"no tests are registered for exercise {exercise_id}")
    return results


def check(exercise_id: str, *definitions: Any, fallback: Any = None) -> Any:
    """The check cell: run exercise ``exercise_id``'s tests on the definitions just written.

    The tests see the caller's globals (so helpers defined earlier in the notebook are visible) with
    ``definitions`` on top. Prints ✓, "not implemented yet" or the first diagnosis. Returns the
    (first) definition when every test passes, else ``fallback`` — the package's version — so that the
    rest of the chapter still runs; with no fallback it returns the definition unchanged.
    """
    caller = inspect.currentframe().f_back.f_globals
    namespace = types.SimpleNamespace(**{k: v for k, v in caller.items() if not k.startswith("__")})
    for definition in definitions:
        setattr(namespace, definition.__name__, definition)
    results = run_exercise_tests(exercise_id, namespace)
    name = definitions[0].__name__ if definitions else exercise_id
    failed = [r for r in results if r[1] == "fail"]
    todo = [r for r in results if r[1] == "todo"]
    if not failed and not todo:
        print(f"✓ Exercise {exercise_id} · {name}: all {len(results)} checks pass")
        return definitions[0] if definitions else None
    if failed:
        test_name, _, detail = failed[0]
        print(f"✗ Exercise {exercise_id} · {name}: {len(failed)} of {len(results)} checks fail")
        print(f"  first failing check: {test_name}\n  " + detail.replace("\n", "\n  "))
    else:
        print(f"… Exercise {exercise_id} · {name}: {NOT_IMPLEMENTED}")
    if fallback is not None:
        print("  (the rest of this chapter uses the detector package's version)")
        return fallback
    return definitions[0] if definitions else None
