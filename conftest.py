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


class MarkdownNotebook(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, reading the notebook with jupytext."""

    def collect(self):
        read = nbval.plugin.nbformat.read
        nbval.plugin.nbformat.read = lambda path, as_version: jupytext.read(path, as_version=as_version)
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
