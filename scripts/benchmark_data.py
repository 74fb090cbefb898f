"""Benchmark the data pipeline: first decode, cached load, and a DataLoader epoch.

    python scripts/benchmark_data.py [--size 96]

The first decode runs into a temporary data home, so it is a true first decode even when the
project's cache already exists. Prints the three figures recorded in the README.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from course_utils import data
from course_utils.profiles import setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    setup(seed=0)
    root = data.locate_dataset()

    with tempfile.TemporaryDirectory() as home:
        os.environ["COURSE_DATA_HOME"] = home
        start = time.perf_counter()
        data.build_cache(args.size, root=root)
        decode = time.perf_counter() - start
        data._memory.clear()
        start = time.perf_counter()
        train, val, test = data.load_splits(args.size)
        load = time.perf_counter() - start

    dataset = data.MRIDataset(train, transform=data.train_augmentation(), mean=0.2, std=0.2)
    loader = data.make_loader(dataset, args.batch_size, shuffle=True)
    start = time.perf_counter()
    n = sum(len(y) for _, y in loader)
    epoch = time.perf_counter() - start

    print(f"first decode + verify of {len(train) + len(val) + len(test)} images at {args.size}px: {decode:.1f} s")
    print(f"cached load of train/val/test splits: {load:.2f} s")
    print(f"DataLoader epoch with augmentation: {n} images in {epoch:.1f} s = {n / epoch:.0f} images/s")


if __name__ == "__main__":
    main()
