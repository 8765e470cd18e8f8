"""Command-line tasks on the notebooks: regenerate ``chapters/``, build ``.ipynb`` files for nbval and the site.

python -m course.notebooks exercises          # chapters/NN_slug.py from solutions/NN_slug.py
python -m course.notebooks ipynb OUT_DIR      # solutions/ and chapters/ as .ipynb under OUT_DIR
python -m course.notebooks site               # executed solution notebooks → site/chapters/ (solutions and answers folded)
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from pathlib import Path

import jupytext
import nbformat

from course.exercises import BEGIN, END, find_regions, make_chapter
from course.paths import BUILD_DIR, CHAPTERS_DIR, REPO_ROOT, SOLUTIONS_DIR, chapter_files

EXECUTED_DIR = BUILD_DIR / "executed"
SITE_CHAPTERS_DIR = REPO_ROOT / "site" / "chapters"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_exercises() -> list[Path]:
    """Regenerate every ``chapters/NN_slug.py``; returns the files that changed."""
    changed = []
    CHAPTERS_DIR.mkdir(exist_ok=True)
    for solution in chapter_files(SOLUTIONS_DIR):
        chapter = CHAPTERS_DIR / solution.name
        text = make_chapter(solution.read_text(), str(solution))
        if not chapter.exists() or chapter.read_text() != text:
            chapter.write_text(text)
            changed.append(chapter)
    return changed


def to_notebook(path: Path) -> nbformat.NotebookNode:
    """A py:percent file as an (unexecuted) notebook with the python3 kernel."""
    notebook = jupytext.read(path)
    notebook.metadata["kernelspec"] = KERNELSPEC
    notebook.metadata.pop("jupytext", None)
    return notebook


def write_ipynb(out_dir: Path, only: list[str] | None = None) -> list[Path]:
    """``solutions/*.py`` and ``chapters/*.py`` → ``OUT_DIR/{solutions,chapters}/*.ipynb``."""
    written = []
    for source_dir in (SOLUTIONS_DIR, CHAPTERS_DIR):
        target_dir = out_dir / source_dir.name
        target_dir.mkdir(parents=True, exist_ok=True)
        for path in chapter_files(source_dir):
            if only and not any(path.stem.startswith(o) for o in only):
                continue
            target = target_dir / f"{path.stem}.ipynb"
            nbformat.write(to_notebook(path), target)
            written.append(target)
    return written


def _fold_solutions(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """For the site: show each exercise cell as its stub, with the solution in a folded block after it."""
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        if cell.cell_type != "code" or BEGIN not in cell.source:
            continue
        solution = cell.source
        regions = find_regions(solution)
        cell.source = make_chapter(solution).rstrip("\n")
        titles = ", ".join(sorted({r.message.split(":")[0] for r in regions}))
        code = "\n".join(line for line in solution.splitlines() if BEGIN not in line and END not in line)
        folded = (
            f'<details class="solution"><summary>Solution · {html.escape(titles)}</summary>\n'
            f'<pre><code class="language-python">{html.escape(code)}</code></pre>\n</details>'
        )
        cells.append(nbformat.v4.new_markdown_cell(folded))
    notebook.cells = cells
    return notebook


ANSWER_TAG = "answer"


def _text_outputs(cell: nbformat.NotebookNode) -> str:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(output.get("text", ""))
        elif "text/plain" in output.get("data", {}):
            texts.append(output["data"]["text/plain"])
    return "".join(texts).rstrip("\n")


def _fold_answers(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """For the site: each ``answer``-tagged cell (collapsed in Jupyter) becomes a folded "Answer" block.

    A markdown answer stays markdown inside ``<details>`` (blank lines around it, so it is still rendered);
    a code answer shows its code and its text output.
    """
    for index, cell in enumerate(notebook.cells):
        if ANSWER_TAG not in cell.metadata.get("tags", []):
            continue
        if cell.cell_type == "markdown":
            body = f"\n\n{cell.source}\n\n"
        else:
            output = _text_outputs(cell)
            body = f'<pre><code class="language-python">{html.escape(cell.source)}</code></pre>\n'
            if output:
                body += f"<pre>{html.escape(output)}</pre>\n"
        folded = nbformat.v4.new_markdown_cell(
            f'<details class="answer"><summary>Answer</summary>\n{body}</details>'
        )
        folded.metadata["tags"] = [ANSWER_TAG]
        notebook.cells[index] = folded
    return notebook


def write_site_chapters() -> list[Path]:
    """Executed solution notebooks (from the nbval run, or executed now) → ``site/chapters/``."""
    from nbclient import NotebookClient

    SITE_CHAPTERS_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for path in chapter_files(SOLUTIONS_DIR):
        executed = EXECUTED_DIR / "solutions" / f"{path.stem}.ipynb"
        if executed.exists() and executed.stat().st_mtime >= path.stat().st_mtime:
            notebook = nbformat.read(executed, as_version=4)
        else:
            print(f"executing {path.relative_to(REPO_ROOT)} for the site ...", file=sys.stderr)
            notebook = to_notebook(path)
            NotebookClient(
                notebook, timeout=900, resources={"metadata": {"path": str(path.parent)}}
            ).execute()
        target = SITE_CHAPTERS_DIR / f"{path.stem}.ipynb"
        nbformat.write(_fold_answers(_fold_solutions(notebook)), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course.notebooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="task", required=True)
    sub.add_parser("exercises", help="regenerate chapters/ from solutions/")
    ipynb = sub.add_parser("ipynb", help="write .ipynb copies of solutions/ and chapters/")
    ipynb.add_argument("out_dir", type=Path)
    ipynb.add_argument("--only", nargs="*", help="chapter prefixes, e.g. 01 06")
    sub.add_parser("site", help="executed, solution-folded notebooks into site/chapters/")
    args = parser.parse_args(argv)
    if args.task == "exercises":
        changed = write_exercises()
        print(
            f"{len(changed)} chapter notebook(s) regenerated"
            + "".join(f"\n  {p.relative_to(REPO_ROOT)}" for p in changed)
        )
    elif args.task == "ipynb":
        print(json.dumps([str(p) for p in write_ipynb(args.out_dir, args.only)], indent=1))
    else:
        for path in write_site_chapters():
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
