"""The book's table of contents lists every lesson exactly once, in the right part.

Fast (no build, no browser), so it runs with the unit tests.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"


def _load_make_toc():
    spec = importlib.util.spec_from_file_location("make_toc", ROOT / "book" / "make_toc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_toc = _load_make_toc()


def toc_files(text: str) -> list[str]:
    return re.findall(r"^\s*- file: (\S+)\s*$", text, flags=re.M)


def jupytext_notebooks() -> list[Path]:
    """Every Markdown notebook in notebooks/ (the notebook tests' rule: a jupytext header)."""
    found = []
    for path in sorted(NOTEBOOK_DIR.glob("*.md")):
        head = path.read_text(encoding="utf-8")[:400]
        if head.startswith("---") and "jupytext:" in head:
            found.append(path)
    return found


def test_every_notebook_is_a_lesson_of_the_toc():
    """No notebook is silently left out because of its name."""
    assert make_toc.find_lessons() == jupytext_notebooks()


def test_generated_toc_lists_every_lesson_exactly_once():
    files = toc_files(make_toc.render_toc(make_toc.find_lessons()))
    lessons = [f"notebooks/{p.stem}" for p in jupytext_notebooks()]
    assert sorted(f for f in files if f.startswith("notebooks/")) == sorted(lessons)
    assert len(files) == len(set(files)), "a page appears twice in the table of contents"
    assert files[-2:] == ["results", "references"]


def test_committed_toc_is_up_to_date():
    committed = make_toc.TOC_PATH.read_text(encoding="utf-8")
    expected = make_toc.render_toc(make_toc.find_lessons())
    assert committed == expected, "book/_toc.yml is out of date: run `python book/make_toc.py`"


def test_lessons_go_to_their_syllabus_part(tmp_path):
    header = "---\njupytext:\n  text_representation:\n    extension: .md\n---\n# x\n"
    for name in ["00_the_data.md", "05_overfitting.md", "06_pytorch.md", "11_efficientnet.md",
                 "13_honest_evaluation.md", "15_app.md"]:
        (tmp_path / name).write_text(header)
    (tmp_path / "notes.md").write_text(header)           # not NN_slug: not a lesson
    (tmp_path / "07_draft.md").write_text("# no header\n")  # no jupytext header: not a lesson
    lessons = make_toc.find_lessons(tmp_path)
    assert [p.name[:2] for p in lessons] == ["00", "05", "06", "11", "13", "15"]
    parts = [make_toc.part_of(p) for p in lessons]
    assert parts[0].startswith("Part 0")
    assert parts[1].startswith("Part I ")
    assert parts[2].startswith("Part II ")
    assert parts[3].startswith("Part III ")
    assert parts[4].startswith("Part IV ")
    assert parts[5].startswith("Part V ")
    text = make_toc.render_toc(lessons)
    assert text.count("caption:") == 7  # six parts with lessons + back matter
    assert toc_files(text).index("notebooks/05_overfitting") < toc_files(text).index("notebooks/06_pytorch")


def test_a_part_without_lessons_is_left_out(tmp_path):
    header = "---\njupytext:\n---\n"
    (tmp_path / "09_resnets.md").write_text(header)
    text = make_toc.render_toc(make_toc.find_lessons(tmp_path))
    assert "Part III" in text and "Part 0" not in text and "Part I " not in text


def test_book_reaches_the_lessons_through_one_link():
    link = ROOT / "book" / "notebooks"
    assert link.is_symlink(), "book/notebooks must link to ../notebooks (one source per lesson)"
    assert link.resolve() == NOTEBOOK_DIR.resolve()


def bib_keys() -> list[str]:
    text = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    return re.findall(r"^@\w+\{([^,\s]+),", text, flags=re.M)


def test_bibliography_keys_are_unique():
    keys = bib_keys()
    assert len(keys) > 40
    assert len(keys) == len(set(keys))
    for key in ["he2016deep", "tan2019efficientnet", "selvaraju2017gradcam", "adebayo2018sanity",
                "nickparvar2021brain", "cheng2015enhanced"]:
        assert key in keys


@pytest.mark.parametrize("page", [p.name for p in jupytext_notebooks()] + ["intro.md"])
def test_every_citation_is_in_the_bibliography(page):
    path = NOTEBOOK_DIR / page if page != "intro.md" else ROOT / "book" / page
    cited = set()
    for group in re.findall(r"\{cite(?::[a-z]+)?\}`([^`]+)`", path.read_text(encoding="utf-8")):
        cited.update(key.strip() for key in group.split(","))
    missing = sorted(cited - set(bib_keys()))
    assert not missing, f"{page} cites keys missing from book/references.bib: {missing}"
