"""pytest set-up shared by the unit tests and the notebook tests.

The lessons are stored as MyST Markdown notebooks (jupytext), not as ``.ipynb`` files, so
nbval cannot collect them by itself. The collector below reads each lesson with
``course_utils.lessons.read_lesson`` and hands the notebook to nbval; everything else (one
kernel per notebook, started in ``notebooks/``; ``# NBVAL_*`` cell markers) is nbval's own.

Notebook tests run in the ``smoke`` profile unless ``COURSE_PROFILE`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbval.plugin

from course_utils.lessons import is_lesson, read_lesson


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
