"""Run the browser test of the built book several times, idle and with both cores busy.

The book's browser test must never depend on timing. This script is how that is checked:
it runs ``make book-test`` RUNS times in a row on an idle machine, then RUNS times while
BUSY processes (pure-Python spin loops, started and stopped by this script) keep every core
busy, and prints each run's result and time. It exits non-zero if any run failed.

Usage (after ``make book``)::

    python scripts/repeat_book_test.py              # 5 idle + 5 busy runs
    python scripts/repeat_book_test.py --runs 2 --busy 0
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spin(stop_at: float) -> None:
    """Keep one core busy until ``stop_at`` (a time.monotonic() value) — bounded in time."""
    x = 0
    while time.monotonic() < stop_at:
        for _ in range(100_000):
            x += 1


def run_once(label: str, index: int) -> tuple[bool, float]:
    start = time.monotonic()
    done = subprocess.run(["make", "book-test"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - start
    summary = [line for line in done.stdout.splitlines() if " passed" in line or " failed" in line]
    ok = done.returncode == 0
    print(f"{label} run {index}: {'pass' if ok else 'FAIL'} in {seconds:.1f} s  "
          f"{summary[-1].strip('= ') if summary else ''}", flush=True)
    if not ok:
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n", flush=True)
    return ok, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per condition (default 5)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2,
                        help="busy processes in the second condition (default: one per core; 0 skips it)")
    parser.add_argument("--max-minutes", type=float, default=60,
                        help="the busy processes stop by themselves after this long")
    args = parser.parse_args()

    results = [run_once("idle", i + 1) for i in range(args.runs)]
    if args.busy:
        stop_at = time.monotonic() + 60 * args.max_minutes
        workers = [mp.Process(target=spin, args=(stop_at,), daemon=True) for _ in range(args.busy)]
        for worker in workers:
            worker.start()
        try:
            results += [run_once(f"busy×{args.busy}", i + 1) for i in range(args.runs)]
        finally:
            for worker in workers:
                worker.terminate()
                worker.join()
    failed = sum(not ok for ok, _ in results)
    times = [seconds for _, seconds in results]
    print(f"{len(results) - failed} passed, {failed} failed "
          f"(times {min(times):.1f}–{max(times):.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
