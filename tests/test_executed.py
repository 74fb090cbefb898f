"""The record of a tested lesson run, and the book's use of it (course_utils.executed).

The recorder is fed the messages a kernel publishes, built here by hand in the form the
Jupyter messaging protocol gives them, and must keep what nbclient (the book's executor)
keeps: cell outputs, widget state with buffers, and what Output widgets capture.
"""

from __future__ import annotations

import base64
import textwrap

import jupytext
import nbformat
import pytest
from jupyter_cache import get_cache

from course_utils.executed import KernelRecorder, executed_notebook, prime_book_cache, save_executed

LESSON = textwrap.dedent("""\
    ---
    jupytext:
      text_representation:
        extension: .md
        format_name: myst
    kernelspec:
      display_name: Python 3
      language: python
      name: python3
    ---

    # A lesson

    ```{code-cell} ipython3
    print("hello")
    ```

    Some prose.

    ```{code-cell} ipython3
    1 + 1
    ```
    """)


def message(msg_type: str, parent: str, **content) -> dict:
    buffers = content.pop("buffers", [])
    return {"msg_type": msg_type, "header": {"msg_type": msg_type}, "parent_header": {"msg_id": parent},
            "content": content, "buffers": buffers}


def stream(parent: str, text: str, name: str = "stdout") -> dict:
    return message("stream", parent, name=name, text=text)


def comm(msg_type: str, parent: str, comm_id: str, state: dict, buffers=(), **extra) -> dict:
    return message(msg_type, parent, comm_id=comm_id, data={"state": state, **extra},
                   buffers=list(buffers))


def output_widget_state() -> dict:
    return {"_model_module": "@jupyter-widgets/output", "_model_name": "OutputModel",
            "_model_module_version": "1.0.0", "msg_id": "", "outputs": []}


@pytest.fixture
def lesson(tmp_path):
    path = tmp_path / "01_a_lesson.md"
    path.write_text(LESSON, encoding="utf-8")
    return path


def test_cell_outputs_and_streams_joined():
    rec = KernelRecorder()
    rec.started_cell("print('a')", "m1")
    assert rec.observe(stream("m1", "a\n"))
    assert rec.observe(stream("m1", "b\n"))
    assert rec.observe(stream("m1", "oops\n", name="stderr"))
    rec.observe(stream("other-request", "not ours\n"))
    assert [(o.output_type, o.name, o.text) for o in rec.cell_outputs[0]] == [
        ("stream", "stdout", "a\nb\n"), ("stream", "stderr", "oops\n")]


def test_clear_output_now_and_on_next_output():
    rec = KernelRecorder()
    rec.started_cell("x", "m1")
    rec.observe(stream("m1", "first\n"))
    rec.observe(message("clear_output", "m1", wait=False))
    assert rec.cell_outputs[0] == []
    rec.observe(stream("m1", "second\n"))
    rec.observe(message("clear_output", "m1", wait=True))
    assert rec.cell_outputs[0][0].text == "second\n"  # kept until the next output
    rec.observe(stream("m1", "third\n"))
    assert [o.text for o in rec.cell_outputs[0]] == ["third\n"]


def test_output_widget_captures_what_its_request_prints():
    rec = KernelRecorder()
    rec.started_cell("interact(...)", "m1")
    assert rec.observe(comm("comm_open", "m1", "w1", output_widget_state()))
    rec.observe(comm("comm_msg", "m1", "w1", {"msg_id": "m1"}, method="update"))
    figure = message("display_data", "m1", data={"image/png": "iVBO", "text/plain": "<Figure>"},
                     metadata={})
    assert rec.observe(figure) is False  # captured: nbval must not see it under the cell
    rec.observe(comm("comm_msg", "m1", "w1", {"msg_id": ""}, method="update"))
    assert rec.observe(stream("m1", "after\n"))  # capture ended: back under the cell
    outputs = rec.widget_state["w1"]["outputs"]
    assert [o.output_type for o in outputs] == ["display_data"]
    assert [o.text for o in rec.cell_outputs[0]] == ["after\n"]


def test_widget_state_with_buffers_in_nbclient_form():
    rec = KernelRecorder()
    rec.started_cell("w", "m1")
    state = {"_model_name": "IntSliderModel", "_model_module": "@jupyter-widgets/controls",
             "_model_module_version": "2.0.0", "value": 1}
    rec.observe(comm("comm_open", "m1", "s1", state))
    rec.observe(comm("comm_msg", "m1", "s1", {"value": 5}, method="update"))
    rec.observe(comm("comm_msg", "m1", "s1", {"data": None}, method="update",
                     buffer_paths=[["data"]], buffers=[b"\x00\x01"]))
    rec.observe(comm("comm_msg", "m1", "x1", {"value": 3}))  # no model name: not a widget
    meta = rec.widgets_metadata()["application/vnd.jupyter.widget-state+json"]
    assert meta["version_major"] == 2 and set(meta["state"]) == {"s1"}
    saved = meta["state"]["s1"]
    assert saved["model_name"] == "IntSliderModel" and saved["state"]["value"] == 5
    assert saved["buffers"] == [{"data": base64.b64encode(b"\x00\x01").decode(), "encoding": "base64",
                                 "path": ["data"]}]


def test_no_widgets_no_metadata():
    assert KernelRecorder().widgets_metadata() is None


def recorded_run(lesson) -> KernelRecorder:
    rec = KernelRecorder()
    rec.started_cell('print("hello")', "m1")
    rec.observe(stream("m1", "hello\n"))
    rec.started_cell("1 + 1", "m2")
    rec.observe(message("execute_result", "m2", data={"text/plain": "2"}, metadata={},
                        execution_count=7))
    return rec


def test_executed_notebook_is_the_lesson_with_outputs(lesson):
    notebook = executed_notebook(lesson, recorded_run(lesson))
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2]
    assert code[0].outputs[0].text == "hello\n"
    assert code[1].outputs[0].data["text/plain"] == "2" and code[1].outputs[0].execution_count == 2
    assert [c.cell_type for c in notebook.cells] == [c.cell_type for c in jupytext.read(str(lesson)).cells]


def test_a_run_that_skipped_a_cell_is_refused(lesson):
    rec = KernelRecorder()
    rec.started_cell('print("hello")', "m1")
    with pytest.raises(ValueError, match="not the lesson's code cells"):
        executed_notebook(lesson, rec)


def test_book_cache_takes_the_tested_run_under_the_books_key(lesson, tmp_path):
    folder, cache_dir = tmp_path / "executed", tmp_path / "cache"
    assert prime_book_cache(cache_dir, "smoke", [lesson], folder) == ([], [lesson.stem])
    saved = save_executed(lesson, recorded_run(lesson), "smoke", folder)
    assert saved == folder / "smoke" / f"{lesson.stem}.ipynb"
    assert not list(saved.parent.glob("*.partial"))
    assert prime_book_cache(cache_dir, "smoke", [lesson], folder) == ([lesson.stem], [])
    # the book looks the lesson up by its code, read as the book reads it
    cache = get_cache(str(cache_dir))
    record = cache.match_cache_notebook(jupytext.read(str(lesson)))
    cached = cache.get_cache_bundle(record.pk).nb
    assert [c.outputs for c in cached.cells if c.cell_type == "code"][0][0]["text"] == "hello\n"
    # taken in once: a second build finds it already there
    assert prime_book_cache(cache_dir, "smoke", [lesson], folder) == ([], [])


def test_book_cache_ignores_a_run_of_older_code(lesson, tmp_path):
    folder, cache_dir = tmp_path / "executed", tmp_path / "cache"
    save_executed(lesson, recorded_run(lesson), "smoke", folder)
    lesson.write_text(LESSON.replace("1 + 1", "2 + 2"), encoding="utf-8")
    assert prime_book_cache(cache_dir, "smoke", [lesson], folder) == ([], [lesson.stem])
    with pytest.raises(KeyError):
        get_cache(str(cache_dir)).match_cache_notebook(jupytext.read(str(lesson)))


def test_saved_run_is_a_valid_notebook(lesson, tmp_path):
    saved = save_executed(lesson, recorded_run(lesson), "full", tmp_path)
    nbformat.validate(nbformat.read(str(saved), as_version=4))
