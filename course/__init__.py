"""Course machinery: exercise stubs, exercise tests with diagnoses, notebook check cells, shared resources."""

from course.checks import CheckFailure, check, exercise, expect, expect_close, expect_shape
from course.exercises import load_exercises, make_chapter
from course.hints import hint
from course.resources import arena_dir, device

__all__ = [
    "CheckFailure",
    "arena_dir",
    "check",
    "device",
    "exercise",
    "expect",
    "expect_close",
    "expect_shape",
    "hint",
    "load_exercises",
    "make_chapter",
]
