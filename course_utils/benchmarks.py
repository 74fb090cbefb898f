"""What the speed benchmarks in ``scripts/`` share: lesson 08's training timed, and busy neighbours.

``lesson08_throughput`` trains lesson 08's network exactly as the lesson does (the same
``SmallCNN`` configuration, channels-last, AdamW, label smoothing, a one-cycle schedule and
``train.train_one_epoch``, the function ``fit`` runs every epoch) on batches from any loader,
and times it. ``busy_processes`` starts programs that keep CPU cores busy, as a browser or a
second notebook does on a learner's computer, and always stops them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice

import torch
from torch import nn

from .data import MRIDataset, load_splits, make_loader, train_augmentation
from .models.cnn import LESSON08_CNN, SmallCNN
from .training.loop import CountingLoader, train_one_epoch

#: Lesson 08's training data: 96 px slices in batches of 64.
LESSON08_SIZE, LESSON08_BATCH = 96, 64


def lesson08_loader(size: int = LESSON08_SIZE, batch_size: int = LESSON08_BATCH):
    """Lesson 08's training loader: cached slices, batch augmentation, standardised, shuffled."""
    train_set, _, _ = load_splits(size=size)
    pixels = train_set.float_images()
    dataset = MRIDataset(train_set, transform=train_augmentation(), mean=pixels.mean().item(),
                         std=pixels.std().item())
    return make_loader(dataset, batch_size=batch_size, shuffle=True, seed=0)


def lesson08_throughput(loader, *, batches: int = 30, warmup: int = 3,
                        device: torch.device | str = "cpu", channels_last: bool = True) -> dict:
    """Images per second of lesson 08's training on ``warmup + batches`` batches of ``loader``.

    The first ``warmup`` batches are not timed (first calls allocate memory and choose
    convolution kernels); the loader's own work (augmentation, decoding) is timed, as in
    the lesson. ``channels_last=False`` keeps PyTorch's default memory format (NCHW), as code
    written without the course does; the lesson trains channels-last.
    Returns ``{"images": ..., "seconds": ..., "images_per_second": ...}``.
    """
    device = torch.device(device)
    torch.manual_seed(0)
    model = SmallCNN(**LESSON08_CNN).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=warmup + batches)
    step = dict(device=device, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1), batch_scheduler=schedule,
                channels_last=channels_last)
    stream = iter(loader)
    train_one_epoch(model, islice(stream, warmup), optimizer, **step)
    timed = CountingLoader(islice(stream, batches))
    began = time.perf_counter()
    train_one_epoch(model, timed, optimizer, **step)
    seconds = time.perf_counter() - began
    if timed.images == 0:
        raise ValueError(f"the loader ran out after the {warmup} warm-up batches; it needs {warmup + batches}")
    return {"images": timed.images, "seconds": seconds, "images_per_second": timed.images / seconds}


#: A busy neighbour: pure Python spinning on one core until its time is up.
_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def busy_processes(count: int, seconds: float = 600) -> Iterator[list[subprocess.Popen]]:
    """Start ``count`` processes that each keep one core busy, and stop them on leaving.

    Each also stops by itself after ``seconds``, so none can outlive a crashed benchmark.
    """
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            procs.append(subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=seconds)]))
        time.sleep(0.5 if count else 0)  # let them reach their loops
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
