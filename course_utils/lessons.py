"""The lesson files themselves: which files are lessons, and how tests read them.

Lessons are MyST Markdown notebooks (jupytext) in ``notebooks/``. Text notebooks store no
outputs, so a cell whose printout is deterministic can state it in its metadata
(``expected_output: |`` among the cell's MyST options); ``read_lesson`` turns that into a
stored output that nbval compares with what the cell prints.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat

from .files import project_root

LESSON_DIR = project_root() / "notebooks"


def is_lesson(path: Path, folder: Path = LESSON_DIR) -> bool:
    """A lesson is ``NN_slug.md`` in ``notebooks/`` (or ``folder``), starting with a jupytext header.

    One rule for everything that looks for lessons: the notebook tests, the book's table of
    contents and the lesson checks.
    """
    path = Path(path)
    if (path.suffix != ".md" or not re.match(r"^\d{2}_", path.name) or not path.is_file()
            or path.resolve().parent != Path(folder).resolve()):
        return False
    with open(path, encoding="utf-8") as f:
        head = f.read(400)
    return head.startswith("---") and "jupytext:" in head


def lessons(folder: Path = LESSON_DIR) -> list[Path]:
    """All lesson files, in course order."""
    return sorted(p for p in Path(folder).glob("*.md") if is_lesson(p, folder))


def read_lesson(path: str | Path, as_version: int = 4) -> nbformat.NotebookNode:
    """Read a lesson with jupytext and attach the outputs that some cells promise.

    A cell with ``expected_output`` metadata gets that text as its stored output, an
    execution count, and nbval's ``nbval-check-output`` tag: under nbval the cell fails if it
    prints anything else.
    """
    notebook = jupytext.read(str(path), as_version=as_version)
    for cell in notebook.cells:
        expected = cell.metadata.get("expected_output") if cell.cell_type == "code" else None
        if expected is not None:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=expected)]
            cell.execution_count = 1  # nbval only compares cells that "ran"
            cell.metadata.setdefault("tags", []).append("nbval-check-output")
    return notebook
