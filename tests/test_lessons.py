"""Every lesson follows the course's shape, and the notebook reader does what it promises.

These tests read the lesson files as text; executing them is nbval's job (`make notebooks`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from course_utils.lessons import lessons, read_lesson

LESSONS = lessons()


def test_there_are_lessons():
    assert LESSONS and LESSONS[0].name.startswith("00_")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_shape(path: Path):
    text = path.read_text(encoding="utf-8")
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.md", path.name), "lessons are named NN_slug.md"
    assert re.search(rf"^# {path.name[:2]} — ", text, re.M), "title '# NN — Title'"
    for heading in ("Learning goals", "## Recap", "## Exercises", "## References"):
        assert heading in text, f"missing {heading!r}"
    assert "setup(" in text, "lessons call course_utils.profiles.setup()"
    notebook = read_lesson(str(path))
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, "a lesson runs code"
    hidden = [c for c in code if "hide-cell" in c.metadata.get("tags", [])]
    assert hidden, "exercise solutions are hidden code cells"
    assert all(c.metadata.get("jupyter", {}).get("source_hidden") for c in hidden), \
        "hidden solutions are also collapsed in JupyterLab"
    markers = [c.source.splitlines()[0] for c in code if c.source.startswith("# NBVAL")]
    assert not markers, (f"test markers in the code a reader sees: {markers}; use the cell's "
                         "tags instead (e.g. tags: [nbval-ignore-output])")


def test_expected_output_becomes_a_checked_output(tmp_path):
    lesson = tmp_path / "demo.md"
    lesson.write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  display_name: Python 3\n  language: python\n  name: python3\n---\n\n"
        "```{code-cell} ipython3\n---\nexpected_output: |\n  4\n---\nprint(2 + 2)\n```\n\n"
        "```{code-cell} ipython3\nprint('free')\n```\n"
    )
    checked, free = read_lesson(str(lesson)).cells
    assert checked.outputs[0].text == "4\n" and "nbval-check-output" in checked.metadata["tags"]
    assert free.outputs == [] and "tags" not in free.metadata
