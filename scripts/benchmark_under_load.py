"""Lesson 08's training speed on an idle and on a busy computer, for two OpenMP wait policies.

    python scripts/benchmark_under_load.py [--batches 30] [--repeats 1] [--late 1] [--record]

A learner's computer is never idle: a browser, JupyterLab and the book run beside the
lesson. This script times lesson 08's training (``course_utils.benchmarks.lesson08_throughput``,
the same model, step and data pipeline as the lesson) with 0, 1 and 2 busy background
processes that it starts and stops itself (pure-Python loops, one core each), for

* **default**: the OpenMP runtime's own waiting, as PyTorch has it without the course
  (its idle threads spin for a while before they sleep), and
* **course**: the policy the course chooses (``COURSE_OMP_WAIT=auto``,
  ``course_utils.profiles.apply_openmp_policy``): when the course is imported it watches the
  computer for 0.2 s and makes the threads sleep while they wait (passive) if other programs
  keep half a core or more busy, else it keeps the runtime's default.

Each measurement runs in a fresh Python process, because OpenMP reads its settings once,
when PyTorch loads; the busy processes are already running when it starts, so ``auto`` sees
them. ``--late`` adds rows where the worker imports the course (and PyTorch) on the idle
computer and starts the busy processes only afterwards, as when a learner opens a browser
after the kernel started: ``auto`` cannot see that load. It prints images/s and the ratios
busy/idle and course/default.
``--record`` stores the idle speed with the course's policy in ``results/speed.json``,
the reference against which lessons judge whether their training runs slow.
Run it alone on the machine (on shared machines under a lock).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: OpenMP variables set by the policies below; each worker starts without any of them.
OPENMP_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "COURSE_OMP_WAIT")


def policies(names: str) -> dict[str, dict[str, str]]:
    """Environment of each policy measured: ``course`` is the course's choice (nothing set),
    any other name a value of ``COURSE_OMP_WAIT`` (``default``: the runtime's own waiting)."""
    from course_utils.profiles import OMP_WAIT_VARIABLE

    return {name: {} if name == "course" else {OMP_WAIT_VARIABLE: name} for name in names.split(",")}


def worker(batches: int, threads: int, late_busy: int = 0) -> dict:
    """Measure in this process (its environment already holds the policy); with ``late_busy``,
    start that many busy processes after the course and PyTorch are loaded, then measure."""
    from course_utils.profiles import openmp_decision, setup

    setup(seed=0, threads=threads, verbose=False)
    from course_utils.benchmarks import busy_processes, lesson08_loader, lesson08_throughput
    from course_utils.speed import machine

    loader = lesson08_loader()
    with busy_processes(late_busy):
        result = lesson08_throughput(loader, batches=batches)
    return result | {"machine": machine(), "policy": {k: os.environ.get(k) for k in OPENMP_VARIABLES},
                     "decision": openmp_decision()}


def run_worker(env_extra: dict[str, str], batches: int, threads: int, late_busy: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES} | env_extra
    command = [sys.executable, __file__, "--worker", "--batches", str(batches), "--threads", str(threads),
               "--late-busy", str(late_busy)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed ({env_extra}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: what setup() picks)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per cell (the median is shown)")
    parser.add_argument("--loads", default="0,1,2", help="numbers of busy background processes")
    parser.add_argument("--compare", default="default,course",
                        help="policies: course, or COURSE_OMP_WAIT values (default, passive, active, a spin count)")
    parser.add_argument("--late", default="", help="numbers of busy processes started after the import, e.g. 1")
    parser.add_argument("--record", action="store_true", help="store the idle course speed in results/speed.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--late-busy", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.batches, args.threads or None, args.late_busy)))
        return 0

    from course_utils.benchmarks import busy_processes
    from course_utils.speed import machine_line, record_speed

    loads = [int(n) for n in args.loads.split(",")]
    late = [int(n) for n in args.late.split(",") if n.strip()]
    compared = policies(args.compare)
    table: dict[tuple[str, str], list[float]] = {}
    info = None
    rows = [(str(n), n, 0) for n in loads] + [(f"{n}, started after import", 0, n) for n in late]
    for _ in range(args.repeats):  # each repeat measures every cell once: slow spells of a shared machine spread
        for row, load, late_busy in rows:
            with busy_processes(load):
                for name, env in compared.items():
                    if late_busy and name != "course":
                        continue  # the other policies do not look at the computer: as with `load`
                    result = run_worker(env, args.batches, args.threads, late_busy)
                    info = info or result["machine"]
                    table.setdefault((name, row), []).append(result["images_per_second"])
                    print(f"  {name:<8} {row} busy: {result['images_per_second']:6.1f} img/s  "
                          f"{result['policy']}", flush=True)
    speed = {cell: statistics.median(values) for cell, values in table.items()}
    idle = rows[0][0]
    print(f"\nlesson 08 training, {args.batches} timed batches of 64 at 96 px; {machine_line(info)}")
    print(f"median of {args.repeats} run(s) per cell, images/s (share of the same policy's idle speed)\n")
    ratio = {"course", "default"} <= set(compared)
    print("| busy processes | " + " | ".join(compared) + (" | course / default |" if ratio else " |"))
    print("|---|" + "---|" * (len(compared) + ratio))
    for row, load, late_busy in rows:
        cells = [f"{speed[name, row]:.1f} ({speed[name, row] / speed[name, idle]:.0%})" if (name, row) in speed
                 else "—" for name in compared]
        same = (row if not late_busy else str(late_busy))
        last = (f" {speed['course', row] / speed['default', same]:.2f}× |"
                if ratio and ("default", same) in speed else (" — |" if ratio else ""))
        print(f"| {row} | " + " | ".join(cells) + " |" + last)
    if args.record and 0 in loads and "course" in compared:
        written = record_speed("lesson08_cnn", speed["course", "0"], "scripts/benchmark_under_load.py", info)
        print(f"\nidle course speed {'recorded in' if written else 'not faster than the one in'} results/speed.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
