"""The course machinery: chapters/ is generated from solutions/, and every stub fails its own tests."""

from __future__ import annotations

import pytest

from course.checks import NOT_IMPLEMENTED, REGISTRY, chapter_test_module, run_exercise_tests, verdict
from course.exercises import ExerciseMarkupError, exercise_owners, find_regions, load_exercises, make_chapter
from course.paths import CHAPTERS_DIR, SOLUTIONS_DIR, chapter_files

SOLUTIONS = chapter_files(SOLUTIONS_DIR)


def _chapter_number(path) -> int:
    return int(path.stem.split("_")[0])


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_chapter_notebook_is_generated_from_its_solution(solution):
    chapter = CHAPTERS_DIR / solution.name
    assert chapter.exists(), f"{chapter} is missing: run `make exercises`"
    expected = make_chapter(solution.read_text(), str(solution))
    assert chapter.read_text() == expected, f"{chapter} is out of date with {solution}: run `make exercises`"


def _stub_cases():
    for solution in SOLUTIONS:
        for exercise_id in exercise_owners(solution.read_text(), str(solution)):
            yield pytest.param(solution.stem, exercise_id, id=f"{solution.stem}-{exercise_id}")


@pytest.mark.parametrize(("chapter", "exercise_id"), list(_stub_cases()))
def test_each_stub_fails_its_own_tests_with_not_implemented(chapter, exercise_id):
    """Stub exactly one exercise, keep every other solution: each of its tests must stop at the stub."""
    chapter_test_module(int(chapter.split("_")[0]))
    tests = list(REGISTRY.get(exercise_id, {}).values())
    assert tests, f"exercise {exercise_id} of {chapter} has no registered tests"
    path = SOLUTIONS_DIR / f"{chapter}.py"
    impl = load_exercises(path, source=make_chapter(path.read_text(), str(path), only={exercise_id}))
    results = run_exercise_tests(exercise_id, impl)
    assert [detail for *_, detail in results] == [f"{exercise_id} {NOT_IMPLEMENTED}"] * len(tests), (
        f"{chapter}: with only Exercise {exercise_id} stubbed, each of its tests must stop at the stub's "
        f"NotImplementedError (raised, or the cause of the test's own error): {results}"
    )
    line = verdict(exercise_id, "name", run_exercise_tests(exercise_id, impl))
    assert (
        line == f"… Exercise {exercise_id} · name: {NOT_IMPLEMENTED}"
    )  # what the check cell prints: one line


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_every_registered_exercise_has_a_solution_region(solution):
    chapter = _chapter_number(solution)
    chapter_test_module(chapter)
    registered = {i for i in REGISTRY if int(i.split(".")[0]) == chapter and REGISTRY[i]}
    marked = set(exercise_owners(solution.read_text(), str(solution)))
    assert registered == marked, (
        f"tests for {sorted(registered - marked)}, regions without tests {sorted(marked - registered)}"
    )
    assert 3 <= len(marked) <= 6, f"{solution.name}: a chapter has 3–6 exercises, found {len(marked)}"


SAMPLE = '''# %%
import math

LIMIT = 3

def area(w, h):
    """Exercise 9.9."""
    ### BEGIN SOLUTION Exercise 9.9 · area: width times height
    return w * h
    ### END SOLUTION

# %%
print(area(2, 3))
heavy = [area(i, i) for i in range(LIMIT)]
'''


def test_make_chapter_replaces_region_by_named_stub():
    chapter = make_chapter(SAMPLE)
    assert "return w * h" not in chapter
    assert "    raise NotImplementedError('Exercise 9.9 · area: width times height')" in chapter
    assert chapter.count("\n") == SAMPLE.count("\n") - 1  # two markers + one line become comment + raise


def test_load_exercises_keeps_definitions_only(tmp_path, capsys):
    path = tmp_path / "99_sample.py"
    path.write_text(SAMPLE)
    module = load_exercises(path)
    assert module.area(2, 3) == 6 and module.LIMIT == 3
    assert not hasattr(module, "heavy")
    assert capsys.readouterr().out == ""  # the print cell did not run


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f():\n    ### BEGIN SOLUTION Exercise 1.1 · f: x\n    return 1\n", "never closed"),
        ("def f():\n    pass\n    ### END SOLUTION\n", "without a matching"),
        (
            "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n",
            "must carry the stub message",
        ),
        ("### BEGIN SOLUTION Exercise 1.1 · f: x\nx = 1\n### END SOLUTION\n", "inside a top-level"),
    ],
)
def test_bad_markup_is_reported_with_its_line(source, message):
    with pytest.raises(ExerciseMarkupError, match=message):
        find_regions(source, "nb.py")


def _register_sample_tests():
    from course.checks import exercise, expect_close

    @exercise("99.1")
    def test_doubles(impl):
        import torch

        expect_close(
            impl.double(torch.tensor([1.0, 2.0])),
            torch.tensor([2.0, 4.0]),
            "doubled values",
            hint="multiply by two",
        )


def test_check_cell_reports_pass_todo_and_diagnosis(capsys):
    import torch

    from course.checks import check

    _register_sample_tests()

    def double(x):
        return 2 * x

    assert check("99.1", double) is double
    assert "✓ Exercise 99.1 · double" in capsys.readouterr().out

    def double(x):  # noqa: F811 - a learner's stub
        raise NotImplementedError("Exercise 99.1 · double: hint")

    fallback = lambda x: 2 * x
    assert check("99.1", double, fallback=fallback) is fallback
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "package's version" in out

    def double(x):  # noqa: F811 - a wrong answer
        return x + torch.tensor([1.0, 1.0])

    check("99.1", double)
    out = capsys.readouterr().out
    assert "✗ Exercise 99.1" in out and "max abs diff 1" in out and "multiply by two" in out
