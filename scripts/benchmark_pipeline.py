"""Training throughput of the course's data pipeline against a naive one, lesson 08's training step.

    python scripts/benchmark_pipeline.py [--batches 30] [--runs 3]

Four configurations run lesson 08's training (``course_utils.benchmarks.lesson08_throughput``:
the lesson's ``SmallCNN`` widths, AdamW, label smoothing, one-cycle, and
``train.train_one_epoch``, the function ``fit`` runs) on 96 px slices in batches of 64, each
in a fresh Python process (the allocator can only be set at start-up):

1. **naive**: what a first PyTorch tutorial writes: torchvision ``ImageFolder`` decodes every
   JPEG on every epoch and applies PIL transforms (grayscale, resize, flip, small affine,
   brightness/contrast) in the main process (``num_workers=0``, the ``DataLoader`` default);
   the network in PyTorch's default memory format (NCHW); glibc's default allocator (the
   process runs with ``COURSE_DEFAULT_ALLOCATOR=1``);
2. **naive, channels-last**: the same, with the lesson's channels-last memory format;
3. **cached, default allocator**: lesson 08's loader: images decoded once into a ``uint8``
   tensor (``course_utils.data``), the same augmentations on whole batches of tensors,
   channels-last;
4. **course**: lesson 08's loader, channels-last and the tuned allocator
   (``profiles.tune_allocator``).

All four wait for work as the course does on an idle computer (PyTorch's default OpenMP
waiting, ``COURSE_OMP_WAIT=default``; set ``COURSE_OMP_WAIT`` to measure another policy).
``--runs`` repeats the four in turn; it prints the machine (CPU model, instruction set,
threads), images per second of every run, and the ratio course / naive per run with its
median and range, and the share of each step (memory format, cache, allocator). The first
batches (warm-up) are not timed. Run it alone on the machine (on shared machines under a lock).
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


def naive_loader(size: int, batch_size: int):
    """What a first PyTorch tutorial does: decode and transform every JPEG with PIL, every epoch."""
    import torch
    from torchvision import datasets, transforms

    from course_utils.data import get_dataset

    tf = transforms.Compose([
        transforms.Grayscale(1),
        transforms.Resize((size, size)),
        transforms.RandomHorizontalFlip(),
        transforms.RandomAffine(degrees=0, translate=(0.05, 0.05), scale=(0.95, 1.05)),
        transforms.ColorJitter(brightness=0.1, contrast=0.1),
        transforms.ToTensor(),
        transforms.Normalize([0.5], [0.25]),
    ])
    dataset = datasets.ImageFolder(str(get_dataset(download=False) / "Training"), transform=tf)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))


def measure(mode: str, batches: int, threads: int | None, channels_last: bool) -> dict:
    """Train ``batches`` batches of lesson 08 in this process and return the throughput."""
    import time

    from course_utils.profiles import OPENMP_VARIABLES, setup, tune_allocator

    tuned = tune_allocator()  # a no-op when COURSE_DEFAULT_ALLOCATOR is set
    setup(seed=0, threads=threads, verbose=False)
    from course_utils.benchmarks import LESSON08_BATCH, LESSON08_SIZE, lesson08_loader, lesson08_throughput
    from course_utils.speed import machine

    started = time.perf_counter()
    if mode == "naive":
        loader = naive_loader(LESSON08_SIZE, LESSON08_BATCH)
    else:
        loader = lesson08_loader()
    setup_seconds = time.perf_counter() - started
    result = lesson08_throughput(loader, batches=batches, channels_last=channels_last)
    return result | {"mode": mode, "channels_last": channels_last, "allocator_tuned": tuned,
                     "setup_seconds": setup_seconds, "machine": machine(),
                     "openmp": " ".join(f"{k}={os.environ[k]}" for k in OPENMP_VARIABLES if k in os.environ)
                     or "PyTorch's default"}


CONFIGS = [
    ("naive", "naive: ImageFolder + PIL every batch, NCHW, default allocator", False,
     {"COURSE_DEFAULT_ALLOCATOR": "1"}),
    ("naive", "naive, channels-last", True, {"COURSE_DEFAULT_ALLOCATOR": "1"}),
    ("cached", "cached uint8 tensors, channels-last, default allocator", True, {"COURSE_DEFAULT_ALLOCATOR": "1"}),
    ("cached", "cached tensors, channels-last, tuned allocator (the course)", True, {}),
]


def run_config(mode: str, channels_last: bool, extra_env: dict, args) -> dict:
    # Every configuration waits the same way: what the course chooses on an idle computer
    # (PyTorch's default), unless COURSE_OMP_WAIT says otherwise. Left to `auto`, a neighbour
    # busy for a moment could give one configuration sleeping threads and the next spinning ones.
    wait = {"COURSE_OMP_WAIT": os.environ.get("COURSE_OMP_WAIT") or "default"}
    env = {k: v for k, v in os.environ.items() if k != "COURSE_DEFAULT_ALLOCATOR"} | wait | extra_env
    command = [sys.executable, __file__, "--worker", mode, "--batches", str(args.batches),
               "--threads", str(args.threads)] + (["--channels-last"] if channels_last else [])
    out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"the {mode} worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per configuration")
    parser.add_argument("--runs", type=int, default=3, help="times the three configurations are measured")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: what setup() picks)")
    parser.add_argument("--worker", choices=["naive", "cached"], help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # inside a child process: measure one configuration, print JSON
        print(json.dumps(measure(args.worker, args.batches, args.threads or None, args.channels_last)))
        return 0

    from course_utils.speed import machine_line

    speeds: list[list[float]] = [[] for _ in CONFIGS]
    for run in range(args.runs):
        for i, (mode, label, channels_last, extra_env) in enumerate(CONFIGS):
            result = run_config(mode, channels_last, extra_env, args)
            if run == 0 and i == 0:
                print(f"lesson 08 training step, 96 px, batch 64, {args.batches} timed batches after 3 warm-up; "
                      f"{machine_line(result['machine'])}")
            speeds[i].append(result["images_per_second"])
            print(f"  run {run + 1}: {label:<62} {result['images_per_second']:6.1f} img/s "
                  f"(allocator tuned: {result['allocator_tuned']}, set-up {result['setup_seconds']:.1f} s, "
                  f"OpenMP: {result['openmp']})", flush=True)

    def ratio(top: int, bottom: int) -> list[float]:
        return [a / b for a, b in zip(speeds[top], speeds[bottom])]

    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):.2f}x (range {min(values):.2f}-{max(values):.2f}x)"

    print(f"\ncourse pipeline / naive pipeline over {args.runs} runs: {spread(ratio(3, 0))}")
    print(f"  of which channels-last: {spread(ratio(1, 0))}; cached tensors: {spread(ratio(2, 1))}; "
          f"tuned allocator: {spread(ratio(3, 2))}")
    print("| pipeline | " + " | ".join(f"run {run + 1}" for run in range(args.runs)) + " |")
    print("|---|" + "---|" * args.runs)
    for (_, label, _, _), values in zip(CONFIGS, speeds):
        print(f"| {label} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    print("| course / naive | " + " | ".join(f"{r:.2f}×" for r in ratio(3, 0)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
