"""Lesson 08's training speed on an idle and on a busy computer, for two OpenMP wait policies.

    python scripts/benchmark_under_load.py [--batches 30] [--repeats 1] [--record]

A learner's computer is never idle: a browser, JupyterLab and the book run beside the
lesson. This script times lesson 08's training (``course_utils.benchmarks.lesson08_throughput``,
the same model, step and data pipeline as the lesson) with 0, 1 and 2 busy background
processes that it starts and stops itself (pure-Python loops, one core each), for

* **default**: the OpenMP runtime's own waiting, as PyTorch has it without the course
  (its idle threads spin for a while before they sleep), and
* **course**: the policy ``setup()`` chooses (``course_utils.profiles.openmp_policy``).

Each measurement runs in a fresh Python process, because OpenMP reads its settings once,
when PyTorch loads. It prints images/s and the ratios busy/idle and course/default.
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


def worker(batches: int, threads: int) -> dict:
    """Measure in this process (its environment already holds the policy)."""
    from course_utils.profiles import setup

    setup(seed=0, threads=threads, verbose=False)
    from course_utils.benchmarks import lesson08_loader, lesson08_throughput
    from course_utils.speed import machine

    result = lesson08_throughput(lesson08_loader(), batches=batches)
    return result | {"machine": machine(), "policy": {k: os.environ.get(k) for k in OPENMP_VARIABLES}}


def run_worker(env_extra: dict[str, str], batches: int, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARIABLES} | env_extra
    command = [sys.executable, __file__, "--worker", "--batches", str(batches), "--threads", str(threads)]
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
    parser.add_argument("--record", action="store_true", help="store the idle course speed in results/speed.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.batches, args.threads or None)))
        return 0

    from course_utils.benchmarks import busy_processes
    from course_utils.speed import machine_line, record_speed

    loads = [int(n) for n in args.loads.split(",")]
    compared = policies(args.compare)
    table: dict[tuple[str, int], list[float]] = {}
    info = None
    for load in loads:
        with busy_processes(load):
            for _ in range(args.repeats):
                for name, env in compared.items():
                    result = run_worker(env, args.batches, args.threads)
                    info = info or result["machine"]
                    table.setdefault((name, load), []).append(result["images_per_second"])
                    print(f"  {name:<8} {load} busy: {result['images_per_second']:6.1f} img/s  "
                          f"{result['policy']}", flush=True)
    speed = {cell: statistics.median(values) for cell, values in table.items()}
    print(f"\nlesson 08 training, {args.batches} timed batches of 64 at 96 px; {machine_line(info)}")
    print(f"median of {args.repeats} run(s) per cell, images/s (share of the same policy's idle speed)\n")
    ratio = {"course", "default"} <= set(compared)
    print("| busy processes | " + " | ".join(compared) + (" | course / default |" if ratio else " |"))
    print("|---|" + "---|" * (len(compared) + ratio))
    for load in loads:
        cells = [f"{speed[name, load]:.1f} ({speed[name, load] / speed[name, loads[0]]:.0%})" for name in compared]
        last = f" {speed['course', load] / speed['default', load]:.2f}× |" if ratio else ""
        print(f"| {load} | " + " | ".join(cells) + " |" + last)
    if args.record and 0 in loads and "course" in compared:
        written = record_speed("lesson08_cnn", speed["course", 0], "scripts/benchmark_under_load.py", info)
        print(f"\nidle course speed {'recorded in' if written else 'not faster than the one in'} results/speed.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
