"""pytest set-up shared by the unit tests and the notebook tests.

The lessons are stored as MyST Markdown notebooks (jupytext), not as ``.ipynb`` files, so
nbval cannot collect them by itself. The collector below reads each lesson through
``jupytext.read`` and hands the notebook to nbval; everything else (one kernel per
notebook, started in ``notebooks/``; ``# NBVAL_*`` cell markers) is nbval's own behaviour.

Notebook tests run in the ``smoke`` profile unless ``COURSE_PROFILE`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import jupytext
import nbformat
import nbval.plugin

NOTEBOOK_DIR = Path(__file__).parent / "notebooks"


def is_lesson(path: Path) -> bool:
    """A lesson is a Markdown file in ``notebooks/`` with a jupytext header."""
    if path.suffix != ".md" or path.parent != NOTEBOOK_DIR:
        return False
    with open(path, encoding="utf-8") as f:
        head = f.read(400)
    return head.startswith("---") and "jupytext:" in head


def read_lesson(path: str, as_version: int = 4) -> nbformat.NotebookNode:
    """Read a lesson with jupytext and attach the outputs that some cells promise.

    Text notebooks store no outputs, so a deterministic cell states its expected printout in
    its metadata (``expected_output: |`` in the cell's MyST options). Such a cell gets that
    text as its stored output and nbval's ``nbval-check-output`` tag: the test fails if the
    cell prints anything else.
    """
    notebook = jupytext.read(path, as_version=as_version)
    for cell in notebook.cells:
        expected = cell.metadata.get("expected_output") if cell.cell_type == "code" else None
        if expected is not None:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=expected)]
            cell.execution_count = 1  # nbval only compares cells that "ran"
            cell.metadata.setdefault("tags", []).append("nbval-check-output")
    return notebook


class MarkdownNotebook(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, reading the notebook with ``read_lesson``."""

    def collect(self):
        read = nbval.plugin.nbformat.read
        nbval.plugin.nbformat.read = read_lesson
        try:
            yield from super().collect()
        finally:
            nbval.plugin.nbformat.read = read


def pytest_configure(config):
    if config.option.nbval or config.option.nbval_lax:
        os.environ.setdefault("COURSE_PROFILE", "smoke")


def pytest_collect_file(file_path: Path, parent):
    opt = parent.config.option
    if (opt.nbval or opt.nbval_lax) and is_lesson(file_path):
        return MarkdownNotebook.from_parent(parent, path=file_path)
    return None
