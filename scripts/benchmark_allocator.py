"""Does tuning glibc's allocator speed up CPU training? Measure it.

    python scripts/benchmark_allocator.py [--size 128] [--steps 30]

Runs the same training steps of a network (the course's SmallCNN or torchvision's
ResNet-18, random weights, 4 classes) in fresh processes, alternating: with
``course_utils.profiles.tune_allocator()`` and with the default allocator
(``COURSE_DEFAULT_ALLOCATOR=1``). Prints the median images/s of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time


def worker(model_name: str, size: int, steps: int, batch: int) -> float:
    import torch
    import torchvision

    from course_utils.models import SmallCNN
    from course_utils.profiles import setup

    setup(seed=0, verbose=False)
    if model_name == "resnet18":
        model, channels = torchvision.models.resnet18(num_classes=4), 3
    else:
        model, channels = SmallCNN(), 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, channels, size, size)
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
    parser.add_argument("--model", choices=["smallcnn", "resnet18"], default="smallcnn")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(worker(args.model, args.size, args.steps, args.batch))
        return
    runs: dict[str, list[float]] = {"default allocator": [], "tuned allocator": []}
    for _ in range(args.repeats):
        for label, extra in (("default allocator", {"COURSE_DEFAULT_ALLOCATOR": "1"}), ("tuned allocator", {})):
            env = {k: v for k, v in os.environ.items() if k != "COURSE_DEFAULT_ALLOCATOR"} | extra
            out = subprocess.run([sys.executable, __file__, "--worker", f"--model={args.model}",
                                  f"--size={args.size}", f"--steps={args.steps}", f"--batch={args.batch}"],
                                 env=env, check=True, capture_output=True, text=True).stdout
            runs[label].append(float(out.strip().splitlines()[-1]))
    speeds = {label: statistics.median(values) for label, values in runs.items()}
    for label, values in runs.items():
        print(f"{label}: median {speeds[label]:.1f} images/s, runs {[round(v, 1) for v in values]} "
              f"({args.model} training, {args.size}px, batch {args.batch})")
    print(f"speed-up: {speeds['tuned allocator'] / speeds['default allocator']:.2f}x")


if __name__ == "__main__":
    main()
