"""Keep the browser test of the book out of the unit-test run.

``make unit`` runs ``pytest tests``; the browser test needs a built book and Chromium, so it
is collected only when ``tests/browser`` (or a file in it) is named on the command line, as
``make book-test`` does. The other tests in this folder (the table of contents) are fast and
always run.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
BROWSER_TESTS = {"test_book.py", "test_voila_app.py"}


def _named_explicitly(config) -> bool:
    for arg in config.args:
        path = Path(str(arg).split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config):
    if collection_path.name in BROWSER_TESTS and not _named_explicitly(config):
        return True
    return None
