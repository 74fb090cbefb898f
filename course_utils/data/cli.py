"""The command line of the data package: ``python -m course_utils.data {download,verify,cache}``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from ..files import CourseFileError
from .cache import build_cache
from .images import ImageLoadError
from .source import (DatasetIncompleteError, DatasetNotFoundError, download_dataset, locate_dataset, read_manifest,
                     verify_dataset)

T = TypeVar("T")


# --------------------------------------------------------------------------------------
# Command line: python -m course_utils.data {download,verify,cache}
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help="download and verify the dataset into data/")
    dl.add_argument("--force", action="store_true", help="download again even if a copy exists")
    dl.add_argument("--timeout", type=float, default=60.0,
                    help="seconds of silence after which a source is given up (default 60)")
    dl.add_argument("--deadline", type=float, default=3600.0,
                    help="seconds for the whole download, all sources together (default 3600)")
    sub.add_parser("verify", help="check the dataset against the manifest")
    cache = sub.add_parser("cache", help="decode the dataset into cached tensors")
    cache.add_argument("sizes", nargs="*", type=int, default=[32, 96, 160])
    args = parser.parse_args(argv)
    try:
        if args.command == "download":
            download_dataset(force=args.force, read_timeout=args.timeout, deadline=args.deadline)
        elif args.command == "verify":
            root = locate_dataset()
            verify_dataset(root)
            print(f"{root}: all {len(read_manifest())} files match the manifest.")
        else:
            for size in args.sizes:
                build_cache(size)
    except (DatasetNotFoundError, DatasetIncompleteError, ImageLoadError, CourseFileError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def timed_command(module: str, doc: str, choices: list[str], argv: list[str] | None,
                  make: Callable[[], T], verb: str) -> tuple[str, T]:
    """The command line of a data module that computes one thing over the whole dataset
    (``python -m course_utils.data.audit``, ``... .grouping``): parse ``command`` (one of
    ``choices``), run ``make()``, say how long it took; returns ``(command, result)``."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.splitlines()[0])
    parser.add_argument("command", choices=choices)
    command = parser.parse_args(argv).command
    start = time.perf_counter()
    result = make()
    print(f"{verb} {len(result.files)} images in {time.perf_counter() - start:.1f} s")
    return command, result
