"""Does tuning glibc's allocator speed up CPU training? Measure it.

    python scripts/benchmark_allocator.py [--size 128] [--steps 30]

Runs the same training steps of torchvision's ResNet-18 (random weights, 4 classes) twice,
each in a fresh process: once with ``course_utils.profiles.tune_allocator()`` and once with
the default allocator (``COURSE_DEFAULT_ALLOCATOR=1``), and prints images/s for both.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def worker(size: int, steps: int, batch: int) -> float:
    import torch
    import torchvision

    from course_utils.profiles import setup

    setup(seed=0, verbose=False)
    model = torchvision.models.resnet18(num_classes=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 4, (batch,))
    for step in range(steps + 3):
        if step == 3:  # warm-up steps are not timed
            start = time.perf_counter()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(worker(args.size, args.steps, args.batch))
        return
    speeds = {}
    for label, extra in (("default allocator", {"COURSE_DEFAULT_ALLOCATOR": "1"}), ("tuned allocator", {})):
        env = {k: v for k, v in os.environ.items() if k != "COURSE_DEFAULT_ALLOCATOR"} | extra
        out = subprocess.run([sys.executable, __file__, "--worker", f"--size={args.size}",
                              f"--steps={args.steps}", f"--batch={args.batch}"],
                             env=env, check=True, capture_output=True, text=True).stdout
        speeds[label] = float(out.strip().splitlines()[-1])
        print(f"{label}: {speeds[label]:.1f} images/s (ResNet-18 training, {args.size}px, batch {args.batch})")
    print(f"speed-up: {speeds['tuned allocator'] / speeds['default allocator']:.2f}x")


if __name__ == "__main__":
    main()
