"""Executed lessons: run each lesson once, under the notebook tests, and show that run in the book.

The notebook tests (nbval, ``make notebooks``) execute every lesson cell by cell, with every
``assert`` and every promised output checked. The book (``make book``) needs the same lessons
executed, with their outputs and the state of their widgets. Running every lesson twice would
double the time a check of the course takes, so the tests record what the kernel sent and save
each lesson that passed as an executed notebook; the book's build then takes those notebooks
into its execution cache instead of running the lessons again.

To record what a notebook front end would, :class:`KernelRecorder` reads every message the
kernel publishes and keeps, as ``nbclient`` (the book's executor) does:

* each cell's outputs (streams, displays, results, errors; ``clear_output`` honoured);
* every widget's state and binary buffers, from the widget messages, so that sliders and
  progress bars are drawn in the book from their saved state;
* what an ``Output`` widget captures (``interact`` draws its figure into one) goes into that
  widget's state, not into the cell.

``save_executed`` writes a lesson's run to ``book/_build/executed/<profile>/``;
``prime_book_cache`` puts those runs into the book's cache, under the key the book computes
from the lesson's code, so a lesson whose code has not changed since it was tested is not run
again.
"""

from __future__ import annotations

import base64
from pathlib import Path

import jupytext
import nbformat
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from nbformat.v4 import output_from_msg

from .files import atomic_write_text
from .lessons import LESSON_DIR, lessons


ROOT = LESSON_DIR.parent
EXECUTED_DIR = ROOT / "book" / "_build" / "executed"
OUTPUT_MESSAGES = ("stream", "display_data", "execute_result", "error")
OUTPUT_WIDGET = ("@jupyter-widgets/output", "OutputModel")


def executed_path(lesson: Path, profile: str, folder: Path = EXECUTED_DIR) -> Path:
    """Where the tested run of ``lesson`` in ``profile`` is saved."""
    return Path(folder) / profile / f"{Path(lesson).stem}.ipynb"


def _append(outputs: list, output: nbformat.NotebookNode) -> None:
    """Append an output, joining consecutive text of the same stream (as a front end shows it)."""
    last = outputs[-1] if outputs else None
    if (last is not None and last.output_type == "stream" and output.output_type == "stream"
            and last.name == output.name):
        last.text += output.text
    else:
        outputs.append(output)


class _OutputWidget:
    """The front end's side of one ``Output`` widget: the outputs it has captured."""

    def __init__(self, state: dict) -> None:
        self.state = state
        self.state["outputs"] = list(state.get("outputs", []))
        self.clear_before_next = False

    def output(self, msg: dict) -> None:
        if msg["msg_type"] == "clear_output":
            if msg["content"].get("wait"):
                self.clear_before_next = True
            else:
                self.state["outputs"] = []
            return
        if self.clear_before_next:
            self.state["outputs"] = []
            self.clear_before_next = False
        _append(self.state["outputs"], output_from_msg(msg))


class KernelRecorder:
    """Keeps what a notebook front end would keep from the kernel's messages.

    Call :meth:`started_cell` with the message id of each cell's execute request, in order,
    and :meth:`observe` with every IOPub message. ``observe`` returns False for a message that
    an ``Output`` widget captured (a front end would not show it under the cell either).
    """

    def __init__(self) -> None:
        self.cell_sources: list[str] = []
        self.cell_outputs: list[list] = []
        self._cell_of_request: dict[str, int] = {}
        self._clear_before_next: dict[int, bool] = {}
        self.widget_state: dict[str, dict] = {}
        self.widget_buffers: dict[str, dict[tuple, dict]] = {}
        self._output_widgets: dict[str, _OutputWidget] = {}
        self._capturing: dict[str, list[_OutputWidget]] = {}  # request id -> widgets, last wins

    def started_cell(self, source: str, msg_id: str) -> None:
        self._cell_of_request[msg_id] = len(self.cell_sources)
        self.cell_sources.append(source)
        self.cell_outputs.append([])

    def observe(self, msg: dict) -> bool:
        msg_type = msg["msg_type"]
        if msg_type in ("comm_open", "comm_msg"):
            self._widget_message(msg)
            return True
        if msg_type not in OUTPUT_MESSAGES + ("clear_output",):
            return True
        request = msg["parent_header"].get("msg_id")
        if self._capturing.get(request):
            self._capturing[request][-1].output(msg)
            return False
        cell = self._cell_of_request.get(request)
        if cell is not None:
            self._cell_output(cell, msg)
        return True

    def _cell_output(self, cell: int, msg: dict) -> None:
        outputs = self.cell_outputs[cell]
        if msg["msg_type"] == "clear_output":
            if msg["content"].get("wait"):
                self._clear_before_next[cell] = True
            else:
                outputs.clear()
            return
        if self._clear_before_next.pop(cell, False):
            outputs.clear()
        _append(outputs, output_from_msg(msg))

    def _widget_message(self, msg: dict) -> None:
        content = msg["content"]
        data = content.get("data", {})
        comm_id = content["comm_id"]
        if "state" not in data:  # a custom message, not a state change
            return
        state = self.widget_state.setdefault(comm_id, {})
        state.update(data["state"])
        if data.get("buffer_paths"):
            buffers = self.widget_buffers.setdefault(comm_id, {})
            for path, buffer in zip(data["buffer_paths"], msg.get("buffers", [])):
                buffers[tuple(path)] = {"data": base64.b64encode(bytes(buffer)).decode("ascii"),
                                        "encoding": "base64", "path": path}
        if msg["msg_type"] == "comm_open":
            if (state.get("_model_module"), state.get("_model_name")) == OUTPUT_WIDGET:
                self._output_widgets[comm_id] = _OutputWidget(state)
        widget = self._output_widgets.get(comm_id)
        if widget is not None and "msg_id" in data["state"]:
            self._capture(widget, data["state"]["msg_id"])

    def _capture(self, widget: _OutputWidget, request: str) -> None:
        """An Output widget starts (``request``) or stops (empty) capturing a request's output."""
        for stack in self._capturing.values():
            if widget in stack:
                stack.remove(widget)
        if request:
            self._capturing.setdefault(request, []).append(widget)

    def widgets_metadata(self) -> dict | None:
        """The notebook's ``widgets`` metadata, in the form nbclient writes it."""
        states = {}
        for comm_id, state in self.widget_state.items():
            if "_model_name" not in state:
                continue
            entry = {"model_name": state.get("_model_name"),
                     "model_module": state.get("_model_module"),
                     "model_module_version": state.get("_model_module_version"),
                     "state": state}
            if self.widget_buffers.get(comm_id):
                entry["buffers"] = list(self.widget_buffers[comm_id].values())
            states[comm_id] = entry
        if not states:
            return None
        return {"application/vnd.jupyter.widget-state+json":
                {"state": states, "version_major": 2, "version_minor": 0}}


def _code_sources(notebook: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


def executed_notebook(lesson: Path, recorder: KernelRecorder) -> nbformat.NotebookNode:
    """The lesson as read for the book, with the outputs and widget state of the recorded run.

    Raises ValueError when the recorded cells are not the lesson's code cells (a skipped cell,
    or a lesson edited during the run).
    """
    notebook = jupytext.read(str(lesson))
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if recorder.cell_sources != [cell.source for cell in code_cells]:
        raise ValueError(f"{lesson.name}: the recorded cells are not the lesson's code cells")
    for count, (cell, outputs) in enumerate(zip(code_cells, recorder.cell_outputs), start=1):
        cell.outputs = outputs
        cell.execution_count = count
        for output in outputs:
            if output.output_type == "execute_result":
                output.execution_count = count
    widgets = recorder.widgets_metadata()
    if widgets:
        notebook.metadata["widgets"] = widgets
    return notebook


def save_executed(lesson: Path, recorder: KernelRecorder, profile: str,
                  folder: Path = EXECUTED_DIR) -> Path:
    """Save a tested run of ``lesson`` for the book; returns the file written."""
    notebook = executed_notebook(Path(lesson), recorder)
    return atomic_write_text(executed_path(lesson, profile, folder), nbformat.writes(notebook))


def prime_book_cache(cache_path: str | Path, profile: str, lesson_files: list[Path] | None = None,
                     folder: Path = EXECUTED_DIR) -> tuple[list[str], list[str]]:
    """Put the tested runs of the lessons into the book's execution cache.

    A tested run is used when its code cells are exactly the lesson's code cells today; the
    latest tested run replaces whatever the cache held for that code. Returns (lessons whose
    tested run was taken in now, lessons the book will have to execute itself because there is
    neither a current tested run nor a cached one); a lesson whose run an earlier build
    already took in is in neither list.
    """
    cache = get_cache(str(cache_path))
    primed, missing = [], []
    for lesson in lessons() if lesson_files is None else lesson_files:
        notebook = jupytext.read(str(lesson))
        try:
            record = cache.match_cache_notebook(notebook)
        except KeyError:
            record = None
        saved = executed_path(lesson, profile, folder)
        if saved.is_file():
            stamp = saved.stat().st_mtime_ns
            if record is not None and record.data.get("tested_run") == stamp:
                continue  # taken in by an earlier build
            executed = nbformat.read(str(saved), as_version=4)
            if _code_sources(executed) == _code_sources(notebook):
                cache.cache_notebook_bundle(
                    CacheBundleIn(executed, str(lesson), data={"tested_run": stamp}),
                    check_validity=False, overwrite=True)
                primed.append(lesson.stem)
                continue
        if record is None:
            missing.append(lesson.stem)
    return primed, missing
