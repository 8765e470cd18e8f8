"""Hints in levels, kept out of the chapter text.

Level 1 is the stub message's phrase (``Exercise 6.3 · select_topk: <phrase>`` in ``solutions/``); levels 2
(``idea``: the method in words) and 3 (``recipe``: the steps) live in ``course/hints/NN_slug.yaml``
(format: ``course/hints/README.md``). A check cell prints level 2 at the first failing attempt (✗) of an
exercise in a kernel session and level 3 from the second on; a stub that is still unwritten (…) counts as
no attempt. On request, every level at once::

    from course.hints import hint
    hint("6.3")              # in a notebook (from course import hint)
    make hint EX=6.3         # in a shell
"""

from __future__ import annotations

import argparse
import functools
from collections import Counter
from pathlib import Path

import yaml

from course.exercises import exercise_key, solution_messages

HINTS_DIR = Path(__file__).resolve().parent / "hints"
LEVEL_KEYS = {2: "idea", 3: "recipe"}
LEVEL_NAMES = {1: "the task", 2: "the idea", 3: "the recipe"}

# failing attempts (✗) per exercise id in this kernel session
_failed_attempts: Counter[str] = Counter()


def _chapter(exercise_id: str) -> int:
    try:
        return int(exercise_id.split(".")[0])
    except ValueError:
        raise ValueError(f"an exercise id looks like '6.3', got {exercise_id!r}") from None


@functools.cache
def stub_phrases() -> dict[str, str]:
    """``{exercise id: phrase}``: level 1, the text after ``name:`` in each solution region's marker."""
    return {i: message.split(":", 1)[-1].strip() for i, message in solution_messages().items()}


def load_hints(hints_dir: Path = HINTS_DIR) -> dict[str, dict[str, str]]:
    """Every ``NN_slug.yaml`` of ``hints_dir`` merged: ``{exercise id: {"idea": ..., "recipe": ...}}``.

    Raises ``ValueError`` naming the file when an entry is not a mapping of text, belongs to another
    chapter than the file's number, or appears in two files.
    """
    hints: dict[str, dict[str, str]] = {}
    for path in sorted(hints_dir.glob("[0-9][0-9]_*.yaml")):
        entries = yaml.safe_load(path.read_text()) or {}
        if not isinstance(entries, dict):
            raise ValueError(
                f"{path}: expected a mapping of exercise ids to hints, found {type(entries).__name__}"
            )
        for exercise_id, levels in entries.items():
            exercise_id = str(exercise_id)
            if _chapter(exercise_id) != int(path.name[:2]):
                raise ValueError(
                    f"{path}: exercise {exercise_id} belongs in the file of chapter {_chapter(exercise_id)}"
                )
            if exercise_id in hints:
                raise ValueError(f"{path}: exercise {exercise_id} has hints in another file too")
            if not isinstance(levels, dict) or not all(isinstance(v, str) for v in levels.values()):
                raise ValueError(f"{path}: exercise {exercise_id} needs 'idea:' and 'recipe:' texts")
            hints[exercise_id] = {key: " ".join(text.split()) for key, text in levels.items()}
    return hints


def hint_text(exercise_id: str, level: int) -> str | None:
    """The text of one level (1, 2 or 3) of ``exercise_id``'s hints; None when it is not written."""
    if level == 1:
        return stub_phrases().get(exercise_id)
    return load_hints().get(exercise_id, {}).get(LEVEL_KEYS[level])


def _format(exercise_id: str, level: int, text: str) -> str:
    return f"Hint {level}/3 for Exercise {exercise_id} ({LEVEL_NAMES[level]}): {text}"


def hint(exercise_id: str, level: int = 3) -> None:
    """Print the hints of ``exercise_id`` (``"6.3"``) from level 1 up to ``level``."""
    exercise_id = str(exercise_id)
    if exercise_id not in stub_phrases():
        print(
            f"There is no exercise {exercise_id}: the ids are {', '.join(sorted(stub_phrases(), key=exercise_key))}"
        )
        return
    for current in range(1, level + 1):
        text = hint_text(exercise_id, current)
        if text is None:
            print(
                f"(no level-{current} hint for {exercise_id} yet in course/hints/{_chapter(exercise_id):02d}_*.yaml)"
            )
        else:
            print(_format(exercise_id, current, text))


def after_failed_attempt(exercise_id: str) -> str | None:
    """Count one failing attempt (✗) and return the hint it earns: level 2 at the first, 3 from the second."""
    _failed_attempts[exercise_id] += 1
    level = 2 if _failed_attempts[exercise_id] == 1 else 3
    text = hint_text(exercise_id, level)
    return None if text is None else _format(exercise_id, level, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make hint EX=N.k", description="print an exercise's hints (all levels)"
    )
    parser.add_argument("exercise_id", help="the exercise, e.g. 6.3")
    parser.add_argument(
        "--level", type=int, choices=(1, 2, 3), default=3, help="up to this level (default 3)"
    )
    args = parser.parse_args(argv)
    hint(args.exercise_id, args.level)
    return 0 if args.exercise_id in stub_phrases() else 2


if __name__ == "__main__":
    raise SystemExit(main())
