"""pytest set-up shared by the unit tests and the notebook tests.

The lessons are stored as MyST Markdown notebooks (jupytext), not as ``.ipynb`` files, so
nbval cannot collect them by itself. The collector below reads each lesson with
``course_utils.lessons.read_lesson`` and hands the notebook to nbval; everything else (one
kernel per notebook, started in ``notebooks/``; ``# NBVAL_*`` cell markers) is nbval's own.

While nbval runs a lesson, a ``KernelRecorder`` (``course_utils.executed``) keeps what a
notebook front end would keep of the kernel's messages; when every cell of the lesson passed,
the run is saved for the book (``book/_build/executed/<profile>/``), so that ``make book``
shows this tested run instead of executing the lesson a second time.

Notebook tests run in the ``smoke`` profile unless ``COURSE_PROFILE`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbval.plugin
import pytest

from course_utils.executed import KernelRecorder, save_executed
from course_utils.lessons import is_lesson, read_lesson
from course_utils.profiles import current_profile


class MarkdownNotebook(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, reading the notebook with ``read_lesson`` and recording its run."""

    recorder: KernelRecorder | None = None
    failed = False

    def collect(self):
        read = nbval.plugin.nbformat.read
        nbval.plugin.nbformat.read = read_lesson
        try:
            yield from super().collect()
        finally:
            nbval.plugin.nbformat.read = read

    def setup(self):
        super().setup()
        self.recorder = recorder = KernelRecorder()
        kernel = self.kernel
        get_message = kernel.get_message

        def execute_cell_input(cell_input, allow_stdin=None):
            # As a notebook runs a cell: with history, so that IPython reads the cell's own
            # last line (a trailing `;` hides its value) and numbers the cells.
            msg_id = kernel.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin,
                                       stop_on_error=False)
            recorder.started_cell(cell_input, msg_id)
            return msg_id

        def get_message_seen(stream, timeout=None):
            while True:
                msg = get_message(stream, timeout=timeout)
                if stream != "iopub" or recorder.observe(msg):
                    return msg  # else an Output widget captured it: nbval does not see it

        kernel.execute_cell_input = execute_cell_input
        kernel.get_message = get_message_seen

    def teardown(self):
        try:
            if self.recorder is not None and not self.failed:
                try:
                    save_executed(Path(self.fspath), self.recorder, current_profile())
                except ValueError as error:  # a skipped cell: this run cannot stand for the lesson
                    print(f"not saved for the book: {error}")
        finally:
            super().teardown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and isinstance(item.parent, MarkdownNotebook):
        item.parent.failed = True


def pytest_configure(config):
    if config.option.nbval or config.option.nbval_lax:
        os.environ.setdefault("COURSE_PROFILE", "smoke")


def pytest_collect_file(file_path: Path, parent):
    opt = parent.config.option
    if (opt.nbval or opt.nbval_lax) and is_lesson(file_path):
        return MarkdownNotebook.from_parent(parent, path=file_path)
    return None
