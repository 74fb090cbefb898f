"""Every file the course writes, written atomically; every file it reads back, read safely.

The course keeps its work in files: decoded image caches, feature caches, checkpoints, the
"last state" a run resumes from, the results table. Two rules keep a learner from getting
stuck on a damaged one:

* **One writer.** ``atomic_write`` writes into a temporary file beside the target
  (``<name>.<pid>-<random>.partial``), flushes it to disk, then renames it over the target in one
  step. A crash, a full disk or a kill at any moment leaves either the old file or the new
  one, never half of one; on an error the temporary file is removed, and those that a killed
  process could not remove are swept away by the next write of the same file.
* **One reader.** ``read_or_explain`` turns *any* failure to read a file (truncated, empty,
  not what it should hold) into one ``UnreadableFileError`` whose message names the file,
  what made it and how to fix it, instead of a deep traceback from ``pickle`` or ``zipfile``.

``move_aside`` renames a damaged file to ``<name>.damaged-<timestamp>`` so that a new file
can take its place while the old bytes stay available for a look.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import torch

T = TypeVar("T")

PARTIAL_SUFFIX = ".partial"


# The project's folder, and paths as a learner reads them


def project_root() -> Path:
    """The course's top folder (the one with ``pyproject.toml``)."""
    return Path(__file__).resolve().parent.parent


def shown_path(path: str | Path) -> str:
    """``path`` as a learner should read it: relative to the project folder when inside it.

    Printed outputs then say ``checkpoints/full/lesson10_transfer.pt`` on every machine instead
    of the absolute path of one computer.
    """
    path = Path(path)
    try:
        return path.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


class CourseFileError(RuntimeError):
    """A file of the course could not be read or written; the message says which and why."""


class UnreadableFileError(CourseFileError):
    """A file exists but cannot be read back as what it should hold."""

    def __init__(self, path: Path, reason: str, made_by: str, fix: str):
        self.path, self.reason, self.made_by, self.fix = Path(path), reason, made_by, fix
        super().__init__(f"Cannot read {path}: {reason}.\n"
                         f"It was made by {made_by}.\n"
                         f"Fix: {fix}")


class FileWriteError(CourseFileError, OSError):
    """Writing a file failed (a full disk, no permission); nothing half-written was left."""


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` still runs (to tell a live writer's temporary file from debris)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def partial_files(path: Path) -> list[Path]:
    """The temporary files ``atomic_write`` makes for ``path`` (``<name>.<pid>-<random>.partial``)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f"{path.name}.*{PARTIAL_SUFFIX}"))


def sweep_partials(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that no longer run (a process
    killed mid-write cannot clean up after itself). Returns the files removed."""
    removed = []
    for partial in partial_files(path):
        owner = partial.name[len(Path(path).name) + 1:-len(PARTIAL_SUFFIX)].split("-")[0]
        if owner.isdigit() and not pid_alive(int(owner)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def atomic_write(path: str | Path, writer: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``writer(binary_file)`` so that it is never seen half-written.

    The bytes go to ``<name>.<pid>-<random>.partial`` in the same folder, are flushed to disk, and
    the temporary file is renamed over ``path``. On any error (including Ctrl+C) the
    temporary file is removed and the old ``path``, if any, is untouched; an ``OSError``
    (a full disk, no permission) becomes a ``FileWriteError`` naming the file.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(3)}{PARTIAL_SUFFIX}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_partials(path)
        with open(tmp, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise FileWriteError(_write_message(path, error)) from error
        raise
    return path


def _write_message(path: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    hint = ("free some disk space" if error.errno in (errno.ENOSPC, errno.EDQUOT)
            else f"check that {path.parent} exists and is writable")
    return (f"Could not write {path}: {reason}. Nothing half-written was left behind "
            f"(the previous version, if any, is unchanged). To fix it, {hint} and run again.")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)``, atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path``, atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """Write a CSV table (``\\n`` line ends) to ``path``, atomically (see ``atomic_write``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, EOFError) or "Ran out of input" in text:
        return "the file is empty or cut short"
    if "PytorchStreamReader" in text or "zip archive" in text or "central directory" in text:
        return "the file is cut short or damaged (its archive is unreadable)"
    if isinstance(error, OSError) and error.errno == errno.EINVAL:
        return "the file is cut short or damaged"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def read_or_explain(path: str | Path, reader: Callable[[Path], T], *, made_by: str, fix: str,
                    check: Callable[[T], str | None] | None = None) -> T:
    """``reader(path)``, or one ``UnreadableFileError`` naming the file, its maker and the fix.

    ``check(content)`` may return a sentence saying why the content is not what it should
    be (a cache that holds a list instead of a dictionary...); that is reported the same way.
    A missing file raises ``FileNotFoundError`` as usual: callers decide what absence means.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "No such file", str(path))
    try:
        content = reader(path)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as error:  # any damage: truncated zip, bad pickle, wrong encoding...
        raise UnreadableFileError(path, _reason(error), made_by, fix) from error
    problem = check(content) if check is not None else None
    if problem:
        raise UnreadableFileError(path, problem, made_by, fix)
    return content


def torch_load(path: Path, weights_only: bool = True) -> Any:
    """``torch.load`` onto the CPU (a reader for ``read_or_explain``)."""
    return torch.load(path, map_location="cpu", weights_only=weights_only)


def json_load(path: Path) -> Any:
    """Parse a JSON file (a reader for ``read_or_explain``)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dict_with(*keys: str) -> Callable[[Any], str | None]:
    """A ``check`` for ``read_or_explain``: the content must be a dict holding ``keys``."""
    def check(content: Any) -> str | None:
        if not isinstance(content, dict):
            return f"it holds a {type(content).__name__}, not the dictionary the course writes"
        missing = [k for k in keys if k not in content]
        if missing:
            return f"it lacks the entries {missing} that the course writes"
        return None
    return check


def move_aside(path: str | Path) -> Path:
    """Rename a damaged ``path`` to ``<name>.damaged-<YYYYmmdd-HHMMSS>`` and return the new path.

    The bytes are kept (for a look, or to send to someone), out of the way of a new file.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    os.replace(path, target)
    return target
