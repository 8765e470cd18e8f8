"""``make lab`` as a learner meets it: as root too, a chapter's .py opens as a notebook, with a running kernel.

The real ``make lab`` runs on a copy of chapter 1 (with the repository's ``jupytext.toml``) on a free port without
a token; headless Chromium opens JupyterLab, double-clicks ``01_dataset.py`` in the file browser and must see the
notebook view (cells, the chapter's title) and a started kernel, idle or busy, without a "Select Kernel" dialog.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from course.browser import free_port, wait_for_http
from course.paths import CHAPTERS_DIR, REPO_ROOT

CHAPTER = "01_dataset"
STARTUP_TIMEOUT = 90.0  # seconds for the server, then for each step in the browser (2 busy cores: ~10 s each)
FILE_ITEM_JS = """(() => {
  const item = [...document.querySelectorAll('.jp-DirListing-item')].find(e => e.textContent.includes('%s'));
  const box = item && item.getBoundingClientRect();
  return box && box.width ? [box.x + box.width / 2, box.y + box.height / 2] : null;
})()"""
NOTEBOOK_JS = """(() => {
  const panel = [...document.querySelectorAll('.jp-NotebookPanel')].find(p => p.offsetParent !== null);
  const kernel = panel && panel.querySelector('.jp-Toolbar-kernelName')?.textContent.trim();
  const status = document.querySelector('#jp-main-statusbar')?.textContent || '';
  if (!panel || !kernel || kernel === 'No Kernel' || !/\\| (Idle|Busy)/.test(status)) return null;
  return {
    title: panel.querySelector('.jp-MarkdownOutput h1')?.textContent.replace('¶', '').trim(),
    cells: panel.querySelectorAll('.jp-Cell').length,
    kernel,
    status: status.match(/\\| (Idle|Busy)/)[1],
    editors: document.querySelectorAll('.jp-FileEditor').length,
  };
})()"""


@pytest.fixture
def lab(tmp_path):
    """``make lab`` on a copy of the chapter; yields (base URL, lab folder); the server is stopped after."""
    lab_dir = tmp_path / "chapters"
    lab_dir.mkdir()
    shutil.copy(CHAPTERS_DIR / f"{CHAPTER}.py", lab_dir)
    shutil.copy(REPO_ROOT / "jupytext.toml", lab_dir)
    port = free_port()
    args = f"--no-browser --port={port} --ServerApp.port_retries=0 --IdentityProvider.token= --ServerApp.password="
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "user-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}  # fmt: skip
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(["make", "-s", "lab", f"LAB_DIR={lab_dir}", f"LAB_ARGS={args}"], cwd=REPO_ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/status", STARTUP_TIMEOUT, server)
        yield f"http://127.0.0.1:{port}/", lab_dir
    except Exception:
        log.flush()
        print((tmp_path / "lab.log").read_text()[-3000:])
        raise
    finally:
        if server.poll() is None:
            # make, jupyter lab and its kernel: the process group this test started
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


def test_a_chapter_opens_as_a_notebook_with_a_kernel(lab, chromium, screenshot_dir):
    url, lab_dir = lab
    source = (lab_dir / f"{CHAPTER}.py").read_text()
    title = re.search(r"^# # (.+)$", source, re.MULTILINE).group(1)
    paired = json.loads((lab_dir / f"{CHAPTER}.ipynb").read_text())
    assert paired["metadata"]["kernelspec"]["name"] == "python3", (
        "make lab did not give the .ipynb a kernelspec"
    )

    page = chromium.open()
    page.goto(url + "lab")
    page.double_click(*page.wait_for(FILE_ITEM_JS % f"{CHAPTER}.py", timeout=STARTUP_TIMEOUT))
    seen = page.wait_for(NOTEBOOK_JS, timeout=STARTUP_TIMEOUT)
    page.screenshot(screenshot_dir / "lab_01_dataset.png")
    assert seen["title"] == title, (
        f"the notebook view shows {seen['title']!r}, not the chapter's title {title!r}"
    )
    assert seen["cells"] > 10 and seen["editors"] == 0, f"{CHAPTER}.py did not open as a notebook: {seen}"
    assert not page.evaluate("!!document.querySelector('.jp-Dialog')"), "a dialog (Select Kernel?) is open"
    assert (lab_dir / f"{CHAPTER}.py").read_text() == source, "opening the chapter changed its .py"
