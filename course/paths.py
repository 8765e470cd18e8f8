"""Where things are: the repository root, the course's data and build folders."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO_ROOT / "solutions"
CHAPTERS_DIR = REPO_ROOT / "chapters"
DATA_DIR = REPO_ROOT / "data"
BUILD_DIR = REPO_ROOT / "build"
SHARED_DATASETS_DIR = REPO_ROOT.parent / "shared" / "datasets"


def chapter_files(directory: Path = SOLUTIONS_DIR) -> list[Path]:
    """The chapter notebooks (``NN_slug.py``) of a folder, in course order."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.py"))
