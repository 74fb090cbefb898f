"""The lesson-08 training run on one process, a GPU, or several processes (torchrun + DDP).

The lessons train with ``course_utils.training.fit``. This module runs that same ``fit``,
unchanged, in the three settings a learner may meet:

* one process on the CPU (what every lesson does)::

      python -m course_utils.training.distributed --epochs 28

* one GPU, with bfloat16 mixed precision (``fit`` turns it on for CUDA by itself)::

      python -m course_utils.training.distributed --device cuda --epochs 28

* several processes with PyTorch's own launcher: one per GPU (NCCL), or, on a CPU, gloo::

      torchrun --standalone --nproc_per_node=2 -m course_utils.training.distributed --epochs 28

What changes with several processes, and nothing else does:

1. ``init_distributed`` joins the process group that ``torchrun`` describes in environment
   variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...).
2. Each process sees its own shard of every epoch (``DistributedSampler``), so the global
   batch (``--batch-size``) is split over the processes.
3. The model is wrapped in ``DistributedDataParallel``: it copies rank 0's weights to every
   process at the start and averages the gradients of all processes in ``backward``, so
   every replica takes the same optimizer step and the weights stay identical
   (``replicas_identical`` checks that, exactly).
4. Only rank 0 writes the checkpoint and prints progress.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..data.loaders import MRIDataset, make_loader, train_augmentation
from ..data.pipeline import pixel_stats, subset
from ..data.source import CLASSES
from ..data.splits import load_splits
from ..files import atomic_torch_save
from ..models.cnn import SmallCNN
from ..models.inspection import unwrap
from ..profiles import setup, threads_from_env
from .checkpoints import ModelCard, checkpoint_dir
from .loop import evaluate, fit



@dataclass
class DistInfo:
    """Where this process stands: its rank among ``world_size`` processes, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints; the others stay quiet."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group that ``torchrun`` set up, or stay a single process.

    ``device``: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA if available). With CUDA each process
    takes the GPU of its ``LOCAL_RANK``; the backend is NCCL on GPUs and gloo on the CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU here")
    where = torch.device(f"cuda:{local_rank}" if kind == "cuda" else "cpu")
    if kind == "cuda":
        torch.cuda.set_device(where)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if kind == "cuda" else "gloo"))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=where)


def distributed_loader(dataset, batch_size: int, info: DistInfo, shuffle: bool = True,
                       seed: int = 0) -> torch.utils.data.DataLoader:
    """Like ``course_utils.data.make_loader``, but each process gets its own shard.

    ``batch_size`` is the *global* batch: each of the ``world_size`` processes takes
    ``batch_size // world_size`` images per step, so one optimizer step sees as many
    images as in a single-process run. ``fit`` calls ``sampler.set_epoch`` every epoch,
    which reshuffles the shards the same way in every process.
    """
    if batch_size % info.world_size:
        raise ValueError(f"the global batch size {batch_size} must be divisible by {info.world_size} processes")
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                                  shuffle=shuffle, seed=seed)
    return make_loader(dataset, batch_size // info.world_size, shuffle, sampler=sampler)


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """The model on this process's device; wrapped in DDP when there are several processes."""
    model = model.to(info.device)
    if not info.distributed:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


@torch.no_grad()
def replicas_identical(model: nn.Module, info: DistInfo) -> bool:
    """True when every process holds exactly the same weights and buffers (bit for bit)."""
    state = unwrap(model).state_dict()
    flat = torch.cat([t.detach().float().flatten().cpu() for t in state.values()])
    if not info.distributed:
        return True
    gathered = [torch.empty_like(flat) for _ in range(info.world_size)]
    dist.all_gather(gathered, flat)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m course_utils.training.distributed",
                                     description="Train the lesson-08 CNN with course_utils.training.fit "
                                                 "on one process, a GPU, or several processes (torchrun).")
    parser.add_argument("--epochs", type=int, default=28)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch, split over the processes")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--per-class", type=int, default=None,
                        help="training and validation images per class (default: all)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: CUDA if available")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="where rank 0 saves the best model (default: checkpoints/<profile>/distributed_cnn.pt)")
    parser.add_argument("--save-replicas", type=Path, default=None,
                        help="a folder where every rank saves its final weights (rank<R>.pt), to compare them")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:

    args = parse_args(argv)
    # The same seed in every process (the same initial weights everywhere); the CPU cores
    # shared out between the processes of this machine.
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = threads_from_env(default=max(1, (os.cpu_count() or 1) // local_processes))
    setup(seed=args.seed, threads=threads, verbose=int(os.environ.get("RANK", "0")) == 0)
    info = init_distributed(args.device)
    try:
        train_set, val_set, test_set = load_splits(args.size)
        train_set, val_set = (subset(s, args.per_class or None, seed=args.seed) for s in (train_set, val_set))
        mean, std = pixel_stats(train_set)
        train_ds = MRIDataset(train_set, transform=train_augmentation(seed=args.seed + info.rank), mean=mean, std=std)
        train_loader = distributed_loader(train_ds, args.batch_size, info, shuffle=True, seed=args.seed)
        val_loader = make_loader(MRIDataset(val_set, mean=mean, std=std), 256, shuffle=False)  # whole split, every rank

        config = dict(in_channels=1, n_classes=len(CLASSES), widths=(16, 32, 64, 128, 256), hidden=128, dropout=0.3)
        model = wrap_model(SmallCNN(**config), info)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr,
                                                       total_steps=args.epochs * len(train_loader))
        checkpoint = args.checkpoint or checkpoint_dir() / "distributed_cnn.pt"
        card = ModelCard(architecture="SmallCNN", config=config, size=args.size, mean=mean, std=std,
                         extra={"world_size": info.world_size})
        if info.is_main:
            print(f"{info.world_size} process(es) on {info.device}; global batch {args.batch_size}, "
                  f"{len(train_loader)} steps per epoch per process")
        start = time.perf_counter()
        history = fit(model, train_loader, val_loader, epochs=args.epochs, optimizer=optimizer, device=info.device,
                      scheduler=schedule, scheduler_step="batch", progress=info.is_main,
                      checkpoint=checkpoint if info.is_main else None, card=card)
        minutes = (time.perf_counter() - start) / 60
        identical = replicas_identical(model, info)
        if args.save_replicas is not None:
            atomic_torch_save(unwrap(model).state_dict(), args.save_replicas / f"rank{info.rank}.pt")
        if info.is_main:
            test_loader = make_loader(MRIDataset(test_set, mean=mean, std=std), 256, shuffle=False)
            test = evaluate(unwrap(model), test_loader, info.device)
            print(f"{len(history)} epochs in {minutes:.2f} min; final val_acc {history.val_acc[-1]:.4f}; "
                  f"test_acc {test['acc']:.4f}; weights identical across {info.world_size} process(es): {identical}")
        if not identical:
            raise RuntimeError("the replicas' weights differ after training")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
