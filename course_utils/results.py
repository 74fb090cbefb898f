"""The course's results table: numbers measured by full-profile runs, kept in git.

A lesson calls ``record(...)`` with what it measured (accuracy on the official test split,
minutes, ...). Only ``full``-profile runs on the complete dataset are written: a smoke run's
numbers say nothing about the method, so ``record`` just prints them. The table lives in
``results/results.json``; ``python -m course_utils.results`` renders it as Markdown into
``results/RESULTS.md`` (which the README and the book show).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from .files import CourseFileError, atomic_write_text, json_load, read_or_explain
from .profiles import current_profile

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
RESULTS_JSON = RESULTS_DIR / "results.json"
RESULTS_MD = RESULTS_DIR / "RESULTS.md"


def machine_summary() -> str:
    """Where a number was measured, e.g. ``"cpu, 2 threads"``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu, {torch.get_num_threads()} threads"


def load_results(path: Path = RESULTS_JSON) -> dict:
    """The results table (``{}`` if there is none yet); an unreadable file raises
    ``UnreadableFileError`` saying how to get the committed table back."""
    if not path.is_file():
        return {}
    return read_or_explain(
        path, json_load, check=_is_table,
        made_by="full-profile lesson runs (course_utils.results.record); the table is kept in git",
        fix=f"restore the committed table with:  git checkout -- {path.name}  (run in {path.parent})")


def _is_table(content) -> str | None:
    if not isinstance(content, dict):
        return f"it holds a {type(content).__name__}, not the table of results (a JSON object)"
    return None


def record(lesson: str, name: str, path: Path = RESULTS_JSON, **numbers) -> dict:
    """Record one result row, e.g. ``record("05", "NumPy MLP + dropout", test_acc=0.915, minutes=1.2)``.

    The row is keyed by ``lesson`` and ``name``: a new full-profile run replaces the old row.
    Returns the row. In the smoke profile the row is printed, not saved.
    """
    row = {
        "lesson": lesson,
        "name": name,
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in numbers.items()},
        "machine": machine_summary(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if current_profile() != "full" or os.environ.get("COURSE_NO_RECORD"):
        print(f"(not recorded: {current_profile()} profile) {row}")
        return row
    table = load_results(path)
    table[f"{lesson}/{name}"] = row
    atomic_write_text(path, json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    print(f"recorded in {path.name}: {row}")
    return row


#: Readable headers for the numbers lessons record (others are shown under their own name).
HEADERS = {
    "name": "model / run",
    "val_acc": "validation acc.",
    "test_acc": "official test acc.",
    "official_acc": "official test acc.",
    "clean_acc": "leakage-free test acc.",
    "leaked_acc": "acc. on leaked test images",
    "clean_n": "leakage-free test images",
    "minutes": "minutes",
    "epochs": "epochs",
}


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def to_markdown(table: dict) -> str:
    """Render the results as Markdown: one table per lesson, with the columns that lesson records.

    Lessons record different things (accuracies, minutes, sparsity, latency...), so each
    lesson's table has only its own columns, in the order they were first recorded, then
    where and when they were measured.
    """
    by_lesson: dict[str, list[dict]] = {}
    for row in table.values():
        by_lesson.setdefault(str(row["lesson"]), []).append(row)
    blocks = []
    for lesson in sorted(by_lesson):
        rows = by_lesson[lesson]
        columns = ["name"]
        for row in rows:
            columns += [k for k in row if k not in columns and k not in ("lesson", "machine", "date")]
        columns += ["machine", "date"]
        lines = [f"## Lesson {lesson}", "",
                 "| " + " | ".join(HEADERS.get(c, c.replace("_", " ")) for c in columns) + " |",
                 "|" + "---|" * len(columns)]
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def main() -> int:
    try:
        table = load_results()
    except CourseFileError as error:
        print(error, file=sys.stderr)
        return 1
    atomic_write_text(
        RESULTS_MD,
        "# Results (full profile, measured)\n\n"
        "Written by `python -m course_utils.results` from `results/results.json`; every row "
        "comes from a full-profile run of the lesson named.\n\n" + to_markdown(table)
    )
    print(f"wrote {RESULTS_MD} ({len(table)} rows) on {platform.node() or sys.platform}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
