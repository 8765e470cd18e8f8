"""Check cells and ``make check``: judged alike, stubs in one line, short diagnoses, blame of an earlier
exercise, hints in levels, the battery helper and folded answers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import jupytext
import nbformat
import pytest
import torch
from nbconvert.filters.markdown_mistune import markdown2html_mistune

import course.hints
import course.mistakes
from course.checks import (
    MAX_DIAGNOSIS_LINES,
    NotebookReplay,
    diagnose,
    exercise,
    exercise_owner,
    expect,
    expect_close,
    run_exercise_tests,
    verdict,
)
from course.exercises import check_calls, make_chapter
from course.mistakes import assert_caught, edit
from course.notebooks import _fold_answers, to_notebook
from course.paths import REPO_ROOT, SOLUTIONS_DIR

# Two exercises where the second builds on the first, as in the chapters; 98.1 has a package version.
CHAIN = '''# %%
import functools
import operator

from course import check


def double(x):
    """Twice ``x``."""
    ### BEGIN SOLUTION Exercise 98.1 · double: twice the value
    return 2 * x
    ### END SOLUTION


# %%
double = check("98.1", double, fallback=functools.partial(operator.mul, 2))


def quadruple(x):
    """Four times ``x``, by doubling twice."""
    ### BEGIN SOLUTION Exercise 98.2 · quadruple: double the double
    return double(double(x))
    ### END SOLUTION


# %%
quadruple = check("98.2", quadruple)
'''
RIGHT_DOUBLE = "return 2 * x"
SLIPPED_DOUBLE = "return x + 1"  # passes double(1) == 2, wrong elsewhere: 98.2 catches it
CAUGHT_DOUBLE = "return 3 * x"


@exercise("98.1")
def double_of_one(impl):
    expect(impl.double(1) == 2, "double(1) should be 2: twice the value")


@exercise("98.2")
def quadruple_of_three(impl):
    got = impl.quadruple(3)
    expect(got == 12, f"quadruple(3) should be 12, got {got}")


def _notebook(tmp_path, source: str):
    path = tmp_path / "98_chain.py"
    path.write_text(source)
    return path


def test_check_calls_are_parsed_in_notebook_order():
    calls = check_calls(CHAIN)
    assert [(c.exercise_id, c.target, c.fallback) for c in calls] == [
        ("98.1", "double", "functools.partial(operator.mul, 2)"),
        ("98.2", "quadruple", None),
    ]


def test_replay_uses_the_package_version_of_an_unsolved_earlier_exercise(tmp_path):
    replay = NotebookReplay(_notebook(tmp_path, make_chapter(CHAIN, only={"98.1"})))
    assert replay.status("98.1") == "todo"
    assert replay.scope("98.2").double(5) == 10  # the fallback, not the stub
    assert replay.status("98.2") == "pass"


def test_replay_uses_the_package_version_of_a_failing_earlier_exercise(tmp_path):
    replay = NotebookReplay(_notebook(tmp_path, CHAIN.replace(RIGHT_DOUBLE, CAUGHT_DOUBLE)))
    assert replay.status("98.1") == "fail"
    assert replay.status("98.2") == "pass"
    assert replay.scope("98.1").double(5) == 15  # its own test still sees the learner's version


def test_replay_blames_an_earlier_exercise_that_passes_its_checks_but_is_wrong(tmp_path):
    replay = NotebookReplay(_notebook(tmp_path, CHAIN.replace(RIGHT_DOUBLE, SLIPPED_DOUBLE)))
    assert replay.status("98.1") == "pass" and replay.status("98.2") == "fail"
    assert replay.culprit("98.2") == "98.1"
    results = run_exercise_tests("98.2", replay.scope("98.2"))
    text = verdict("98.2", "quadruple", results, replay.culprit("98.2"))
    assert "package's version of Exercise 98.1" in text and "quadruple(3) should be 12, got 5" in text


def test_a_stub_is_one_line_naming_the_exercise_it_waits_for(tmp_path):
    no_fallback = CHAIN.replace(", fallback=functools.partial(operator.mul, 2)", "")
    replay = NotebookReplay(_notebook(tmp_path, make_chapter(no_fallback, only={"98.1", "98.2"})))
    assert verdict("98.1", "double", run_exercise_tests("98.1", replay.scope("98.1"))) == (
        "… Exercise 98.1 · double: not implemented yet"
    )
    solved_second = NotebookReplay(_notebook(tmp_path, make_chapter(no_fallback, only={"98.1"})))
    line = verdict("98.2", "quadruple", run_exercise_tests("98.2", solved_second.scope("98.2")))
    assert line == "… Exercise 98.2 · quadruple: uses Exercise 98.1, which is not implemented yet"


def test_the_notebook_check_cells_blame_and_give_hints_in_levels(monkeypatch, capsys):
    monkeypatch.setattr(course.hints, "_failed_attempts", Counter())
    monkeypatch.setattr(course.hints, "load_hints", lambda: {"98.2": {"idea": "IDEA", "recipe": "RECIPE"}})
    source = CHAIN.replace(RIGHT_DOUBLE, SLIPPED_DOUBLE)
    exec(compile(source, "<98_chain>", "exec"), {})
    first = capsys.readouterr().out
    assert "✓ Exercise 98.1" in first and "✗ Exercise 98.2" in first
    assert "package's version of Exercise 98.1" in first
    assert "Hint 2/3 for Exercise 98.2 (the idea): IDEA" in first and "RECIPE" not in first
    exec(compile(source, "<98_chain>", "exec"), {})
    assert "Hint 3/3 for Exercise 98.2 (the recipe): RECIPE" in capsys.readouterr().out
    exec(compile(make_chapter(CHAIN), "<98_chain>", "exec"), {})
    stubs = capsys.readouterr().out
    assert "Hint" not in stubs  # an unwritten stub is no attempt
    assert "… Exercise 98.2 · quadruple: not implemented yet" in stubs


def test_hint_prints_every_level_and_the_cli_names_unknown_ids(monkeypatch, capsys):
    monkeypatch.setattr(course.hints, "stub_phrases", lambda: {"98.2": "double the double"})
    monkeypatch.setattr(course.hints, "load_hints", lambda: {"98.2": {"idea": "IDEA", "recipe": "RECIPE"}})
    course.hints.hint("98.2")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "Hint 1/3 for Exercise 98.2 (the task): double the double",
        "Hint 2/3 for Exercise 98.2 (the idea): IDEA",
        "Hint 3/3 for Exercise 98.2 (the recipe): RECIPE",
    ]
    assert course.hints.main(["98.9"]) == 2
    assert "There is no exercise 98.9: the ids are 98.2" in capsys.readouterr().out


def test_load_hints_names_the_file_of_a_misplaced_entry(tmp_path):
    (tmp_path / "06_tal.yaml").write_text('"7.1":\n  idea: a\n  recipe: b\n')
    with pytest.raises(ValueError, match=r"06_tal.yaml: exercise 7.1 belongs in the file of chapter 7"):
        course.hints.load_hints(tmp_path)


def test_diagnoses_summarise_large_tensors_and_put_the_hint_first():
    expected = torch.arange(400.0).reshape(100, 4)
    got = expected.clone()
    got[37, 2] += 1
    with pytest.raises(AssertionError) as caught:
        expect_close(got, expected, "boxes", hint="HINT: look at row 37")
    lines = str(caught.value).splitlines()
    assert len(lines) <= MAX_DIAGNOSIS_LINES and lines[1] == "HINT: look at row 37"
    assert "index [37, 2]" in lines[0] and "expected 150, got 151" in str(caught.value)
    assert "shape [100, 4]" in str(caught.value) and "tensor(" not in str(caught.value)


def test_an_error_in_the_learners_code_is_located_in_a_few_lines(tmp_path):
    path = _notebook(tmp_path, CHAIN.replace(RIGHT_DOUBLE, "return [x][1]"))
    replay = NotebookReplay(path)
    status, detail = diagnose(_raised(lambda: replay.scope("98.1").double(1)), "98.1")
    assert status == "fail" and detail.splitlines()[0] == "IndexError: list index out of range"
    assert detail.splitlines()[1] == "raised in double, line 11: return [x][1]"
    assert exercise_owner("6", "select_topk") == "6.3"  # how an error inside an earlier exercise is named


def _raised(fn) -> BaseException:
    try:
        fn()
    except Exception as error:  # noqa: BLE001 - the error is what the test inspects
        return error
    raise AssertionError("expected an error")


def test_assert_caught_passes_on_a_caught_mistake_and_fails_on_others(tmp_path, monkeypatch):
    monkeypatch.setattr(course.mistakes, "SOLUTIONS_DIR", tmp_path)
    _notebook(tmp_path, CHAIN)
    diagnoses = assert_caught(
        "98_chain",
        "98.2",
        "doubling once",
        diagnosis=r"should be 12",
        quadruple=edit("double(double(x))", "double(x)"),
    )
    assert diagnoses == ["quadruple(3) should be 12, got 6"]
    assert_caught(
        "98_chain", "98.2", "tripling", diagnosis="got 9", quadruple="def quadruple(x):\n    return 3 * x\n"
    )
    assert_caught("98_chain", "98.1", "adding", diagnosis="twice", double=lambda x: x + 2)
    with pytest.raises(AssertionError, match="is not caught by any test"):
        assert_caught(
            "98_chain", "98.1", "plus one", diagnosis="twice", double=edit(RIGHT_DOUBLE, SLIPPED_DOUBLE)
        )
    with pytest.raises(AssertionError, match="no diagnosis matches"):
        assert_caught(
            "98_chain", "98.1", "tripling", diagnosis="negative", double=edit(RIGHT_DOUBLE, CAUGHT_DOUBLE)
        )
    with pytest.raises(AssertionError, match="is not caught"):  # a stub is "todo", not a caught mistake
        assert_caught(
            "98_chain",
            "98.1",
            "a stub",
            diagnosis=".",
            double=edit(RIGHT_DOUBLE, "raise NotImplementedError('Exercise 98.1 · x')"),
        )
    with pytest.raises(ValueError, match="does not occur"):
        assert_caught("98_chain", "98.1", "typo", diagnosis=".", double=edit("3 * x", "x"))


ANSWERS = """# %% [markdown]
# **Question.** Why?

# %% [markdown] tags=["answer"] jupyter={"source_hidden": true}
# Because **of this**.

# %% tags=["answer"] jupyter={"source_hidden": true}
print(1 + 1)
"""


def test_answers_stay_collapsed_in_jupyter_and_fold_on_the_site(tmp_path):
    path = tmp_path / "98_answers.py"
    path.write_text(ANSWERS)
    assert make_chapter(ANSWERS) == ANSWERS  # the learner's file keeps the cells and their metadata
    notebook = to_notebook(path)
    answer, code = notebook.cells[1], notebook.cells[2]
    assert answer.metadata == {"tags": ["answer"], "jupyter": {"source_hidden": True}}
    assert code.metadata["jupyter"] == {"source_hidden": True}
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    cells = _fold_answers(notebook).cells
    assert cells[0].source == "**Question.** Why?"
    assert cells[1].source == (
        '<details class="answer"><summary>Answer</summary>\n\n\nBecause **of this**.\n\n</details>'
    )
    rendered = markdown2html_mistune(
        cells[1].source
    )  # the site's markdown renderer (mkdocs-jupyter, nbconvert)
    assert "<strong>of this</strong>" in rendered and rendered.rstrip().endswith("</details>")
    assert cells[2].cell_type == "markdown" and cells[2].source.startswith('<details class="answer">')
    assert "print(1 + 1)" in cells[2].source and "<pre>2</pre>" in cells[2].source


def test_answer_cells_of_the_chapters_are_tagged_for_folding():
    """Every answer cell a chapter marks carries the collapsed-cell metadata (a typo would show the answer)."""
    for path in sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.py")):
        for cell in jupytext.read(path).cells:
            if "answer" in cell.metadata.get("tags", []):
                assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, (
                    f'solutions/{path.name}: an answer cell without jupyter={{"source_hidden": true}}: '
                    f"{cell.source[:60]!r}"
                )


@pytest.mark.slow
def test_make_check_on_a_partly_solved_chapter_judges_as_the_notebook(tmp_path):
    """``pytest --impl DIR`` on chapter 6 with 6.3 and 6.6 solved: the solved ones pass (6.6 on the package's
    6.1, 6.2, 6.4, 6.5), each stub is one line, no traceback, the summary last."""
    solution = (SOLUTIONS_DIR / "06_tal.py").read_text()
    (tmp_path / "06_tal.py").write_text(make_chapter(solution, only={"6.1", "6.2", "6.4", "6.5"}))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/chapters/test_06_tal.py",
            "--impl",
            str(tmp_path),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=300,
    )
    out = run.stdout
    assert run.returncode == 1, out
    assert "Traceback" not in out and "NotImplementedError" not in out, out
    lines = out.splitlines()
    summary = lines[lines.index(next(line for line in lines if "judged as your notebook" in line)) :]
    assert summary[1:7] == [
        "… Exercise 6.1 · candidate_mask: not implemented yet",
        "… Exercise 6.2 · alignment_metric: not implemented yet",
        summary[3],
        "… Exercise 6.4 · resolve_conflicts: not implemented yet",
        "… Exercise 6.5 · soft_targets: not implemented yet",
        summary[6],
    ], out
    assert summary[3].startswith("✓ Exercise 6.3 · select_topk") and summary[6].startswith(
        "✓ Exercise 6.6"
    ), out
    assert (
        summary[7] == "2 of 6 exercises pass · next: Exercise 6.1 (hints: make hint EX=6.1)"
        and "failed" in summary[8]
        and len(summary) == 9
    ), out


def test_a_stub_wrapped_in_a_tests_own_diagnosis_is_still_a_stub():
    def wrapped():
        try:
            raise NotImplementedError("Exercise 98.1 · double: twice the value")
        except Exception as error:
            raise AssertionError("double raised with input 3: ...") from error

    assert diagnose(_raised(wrapped), "98.1") == ("todo", "98.1 not implemented yet")
    assert diagnose(_raised(wrapped), "98.2") == (
        "todo",
        "98.2 uses Exercise 98.1, which is not implemented yet",
    )


def test_a_notebook_whose_definitions_do_not_run_fails_once_when_loaded(tmp_path):
    with pytest.raises(NameError, match="undefined_decorator"):
        NotebookReplay(_notebook(tmp_path, CHAIN.replace("def double", "@undefined_decorator\ndef double")))
