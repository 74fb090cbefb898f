"""Training throughput of the course's data pipeline against a naive one, same model.

    python scripts/benchmark_pipeline.py [--batches 30] [--size 96] [--batch-size 64]

Three configurations train the lesson-08 ``SmallCNN`` at 96 px for the same number of
batches, each in a fresh Python process (the allocator can only be set at start-up):

1. **naive**: torchvision ``ImageFolder`` decodes every JPEG on every epoch and applies PIL
   transforms (grayscale, resize, flip, small affine, brightness/contrast), with glibc's
   default allocator (the process runs with ``COURSE_DEFAULT_ALLOCATOR=1``);
2. **cached, default allocator**: images decoded once into a ``uint8`` tensor
   (``course_utils.data``), the same augmentations on tensors, default allocator;
3. **course**: cached tensors and the tuned allocator (``profiles.tune_allocator``).

It prints images per second for each and the ratio course / naive. The first batches
(warm-up) are not timed. Run it alone on the machine (on shared machines under a lock).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WARMUP = 3


def measure(mode: str, batches: int, size: int, batch_size: int, threads: int) -> dict:
    """Train ``batches`` batches in this process and return the throughput."""
    from course_utils.profiles import tune_allocator

    tuned = tune_allocator()  # a no-op when COURSE_DEFAULT_ALLOCATOR is set
    import torch
    from torch import nn

    from course_utils.data import MRIDataset, get_dataset, load_images, make_loader, train_augmentation
    from course_utils.models import SmallCNN

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    if mode == "naive":
        from torchvision import datasets, transforms

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
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                             generator=torch.Generator().manual_seed(0))
    else:
        train = load_images("Training", size)
        dataset = MRIDataset(train, transform=train_augmentation(), mean=0.5, std=0.25)
        loader = make_loader(dataset, batch_size=batch_size, shuffle=True, seed=0)
    setup_seconds = time.perf_counter() - started

    model = SmallCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == WARMUP:
            t0, seen = time.perf_counter(), 0
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(y)
        if i + 1 == WARMUP + batches:
            break
    seconds = time.perf_counter() - t0
    return {"mode": mode, "allocator_tuned": tuned, "images": seen, "seconds": seconds,
            "images_per_second": seen / seconds, "setup_seconds": setup_seconds}


CONFIGS = [
    ("naive", "ImageFolder + PIL, JPEG decoded every time, default allocator", {"COURSE_DEFAULT_ALLOCATOR": "1"}),
    ("cached", "cached uint8 tensors, default allocator", {"COURSE_DEFAULT_ALLOCATOR": "1"}),
    ("cached", "cached uint8 tensors + tuned allocator (the course)", {}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per configuration")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", choices=["naive", "cached"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:  # inside a child process: measure one configuration, print JSON
        print(json.dumps(measure(args.worker, args.batches, args.size, args.batch_size, args.threads)))
        return 0

    print(f"SmallCNN at {args.size} px, batch {args.batch_size}, {args.batches} timed batches "
          f"after {WARMUP} warm-up, {args.threads} threads")
    results = []
    for mode, label, extra_env in CONFIGS:
        env = {k: v for k, v in os.environ.items() if k != "COURSE_DEFAULT_ALLOCATOR"} | extra_env
        command = [sys.executable, __file__, "--worker", mode, "--batches", str(args.batches),
                   "--size", str(args.size), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return out.returncode
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"  {label:<66} {result['images_per_second']:7.1f} img/s "
              f"(allocator tuned: {result['allocator_tuned']}, set-up {result['setup_seconds']:.1f} s)", flush=True)
    naive, course = results[0]["images_per_second"], results[-1]["images_per_second"]
    print(f"course pipeline / naive pipeline: {course / naive:.2f}x")
    print(f"  of which cached tensors: {results[1]['images_per_second'] / naive:.2f}x, "
          f"tuned allocator: {course / results[1]['images_per_second']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
