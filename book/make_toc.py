"""Write the book's table of contents (``book/_toc.yml``) from the lessons that exist.

Every lesson ``notebooks/NN_slug.md`` (a Markdown notebook with a jupytext header) is placed
once, in the part of the syllabus its number belongs to; parts without a lesson are left
out. The book reaches the lessons through the link ``book/notebooks -> ../notebooks``, so
each lesson has one source file, shared by JupyterLab, the notebook tests and the book.

    python book/make_toc.py           # rewrite book/_toc.yml
    python book/make_toc.py --check   # exit 1 if book/_toc.yml is out of date

``make book`` runs it before every build, so a new lesson appears in the book by itself.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from course_utils.lessons import lessons

BOOK_DIR = Path(__file__).resolve().parent
TOC_PATH = BOOK_DIR / "_toc.yml"

#: The syllabus' parts: (caption, first lesson number, last lesson number).
PARTS: list[tuple[str, int, int]] = [
    ("Part 0 — The data", 0, 0),
    ("Part I — NumPy: neurons, backprop, optimisation", 1, 5),
    ("Part II — PyTorch and convolutional networks", 6, 8),
    ("Part III — ResNets, transfer learning, EfficientNet", 9, 11),
    ("Part IV — Grad-CAM and honest evaluation", 12, 13),
    ("Part V — Beyond", 14, 99),
]



def find_lessons(folder: Path | None = None) -> list[Path]:
    """Every lesson file, sorted by name (so by lesson number): the rule of
    ``course_utils.lessons``, the same one the notebook tests use to collect lessons."""
    return lessons(folder) if folder is not None else lessons()


def part_of(lesson: Path) -> str:
    """The caption of the part a lesson belongs to, from its number (``NN_slug.md``)."""
    if not re.match(r"^\d{2}_", lesson.name):
        raise ValueError(f"{lesson.name}: a lesson's file name starts with its two-digit number, e.g. 14_slug.md")
    number = int(lesson.name[:2])
    for caption, first, last in PARTS:
        if first <= number <= last:
            return caption
    raise ValueError(f"{lesson.name}: lesson number {number} belongs to no part of the syllabus")


def render_toc(lessons: list[Path]) -> str:
    """The ``_toc.yml`` text (Jupyter Book's ``jb-book`` format) for these lessons."""
    lines = [
        "# Written by book/make_toc.py from the lessons in notebooks/ -- do not edit by hand;",
        "# run `python book/make_toc.py` (make book does) after adding or renaming a lesson.",
        "format: jb-book",
        "root: intro",
        "parts:",
    ]
    for caption, _, _ in PARTS:
        members = [p for p in lessons if part_of(p) == caption]
        if not members:
            continue
        lines += [f'  - caption: "{caption}"', "    chapters:"]
        lines += [f"      - file: notebooks/{p.stem}" for p in members]
    lines += ['  - caption: "Back matter"', "    chapters:", "      - file: results",
              "      - file: references"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if _toc.yml is out of date")
    args = parser.parse_args(argv)
    lessons = find_lessons()
    text = render_toc(lessons)
    current = TOC_PATH.read_text(encoding="utf-8") if TOC_PATH.is_file() else ""
    if args.check:
        if current != text:
            print(f"{TOC_PATH} is out of date: run `python book/make_toc.py`", file=sys.stderr)
            return 1
        print(f"{TOC_PATH.name} is up to date ({len(lessons)} lessons)")
        return 0
    if current != text:
        TOC_PATH.write_text(text, encoding="utf-8")
    print(f"{TOC_PATH.name}: {len(lessons)} lessons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
