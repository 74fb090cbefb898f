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


FIGURE_NAME = re.compile(r"fig-(\d\d)-[a-z0-9-]+")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_figures_have_a_caption_a_name_and_alt_text(path: Path):
    """A cell that shows a figure on the page (``plt.show()`` at its top level, not in a
    hidden solution or a slider cell) carries MyST-NB figure metadata: a caption, a name
    ``fig-NN-...`` (the book numbers it) and alt text that describes it."""
    notebook = read_lesson(str(path))
    names, problems = [], []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        shows = re.search(r"^(plt\.show\(\)|app\.show_figure\()", cell.source, re.M)
        if not shows or any(t in tags for t in ("hide-cell", "remove-output", "remove-cell")):
            continue
        first = cell.source.splitlines()[0][:60]
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        alt = str(cell.metadata.get("mystnb", {}).get("image", {}).get("alt", ""))
        if not figure.get("caption"):
            problems.append(f"no caption: {first}")
        name = str(figure.get("name", ""))
        match = FIGURE_NAME.fullmatch(name)
        if not match or match.group(1) != path.name[:2]:
            problems.append(f"name {name!r} is not fig-{path.name[:2]}-...: {first}")
        names.append(name)
        if len(alt) < 40 or re.search(r"\.(png|jpe?g|svg)\b", alt):
            problems.append(f"alt text missing or too short ({alt!r}): {first}")
        if len(re.findall(r"^plt\.show\(\)", cell.source, re.M)) > 1:
            problems.append(f"two figures in one captioned cell (split it): {first}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"figure names used twice: {duplicates}"
    assert not problems, "\n".join(problems)


BARE_URL = re.compile(r"(?<![<(\"'`/])\bhttps?://\S+")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_web_addresses_in_the_text_are_links(path: Path):
    """MyST does not turn a bare address into a link: the text writes ``<https://...>`` or
    ``[words](https://...)``."""
    notebook = read_lesson(str(path))
    bare = [m.group(0) for cell in notebook.cells if cell.cell_type == "markdown"
            for m in BARE_URL.finditer(cell.source)]
    assert not bare, f"addresses a reader cannot click: {bare}"
