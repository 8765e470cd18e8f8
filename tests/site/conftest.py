"""The built site (one strict build per session) and a headless Chromium serving it, for the tests of ``tests/site``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from course.browser import Chromium, serve_directory
from course.paths import BUILD_DIR, REPO_ROOT

SITE_DIR = BUILD_DIR / "site"
SCREENSHOT_DIR = BUILD_DIR / "screenshots"


@pytest.fixture(scope="session")
def built_site():
    """Executed chapters into site/chapters (reusing the nbval run's outputs), then a strict build."""
    subprocess.run([sys.executable, "-m", "course.notebooks", "site"], cwd=REPO_ROOT, check=True)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(SITE_DIR)]
    result = subprocess.run(mkdocs, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return SITE_DIR


@pytest.fixture(scope="session")
def chromium():
    """One headless Chromium for the session (the system's; see course.browser)."""
    with Chromium() as browser:
        yield browser


@pytest.fixture(scope="session")
def site_url(built_site):
    """The built site served on a free localhost port."""
    with serve_directory(built_site) as url:
        yield url


@pytest.fixture(scope="session")
def screenshot_dir():
    """``build/screenshots/``: a picture of each page the browser tests open, for a person to look at."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
