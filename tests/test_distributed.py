"""Tests for course_utils.training.distributed: the lesson-08 training run under torchrun and DDP.

The sharding tests need no process group. The end-to-end tests launch real processes on
the CPU (gloo backend), as ``torchrun`` does on a multi-GPU machine with NCCL, and train a
few steps on a small real subset (``BRAIN_MRI_DIR`` must point at the dataset).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_utils import data
from course_utils.models import unwrap
from course_utils.training.distributed import DistInfo, distributed_loader, replicas_identical
from course_utils.models import SmallCNN
from course_utils.training.loop import _set_epoch
from course_utils.training import load_model, read_checkpoint

REAL = os.environ.get(data.DATA_ENV)
real_data = pytest.mark.skipif(
    not (REAL and Path(REAL, "Training").is_dir()), reason=f"${data.DATA_ENV} not set to the dataset"
)


class Indices(torch.utils.data.Dataset):
    """A dataset whose batch is the list of its indices: shows which items a process gets."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index):
        return torch.as_tensor(index), torch.zeros(len(index), dtype=torch.long)


def _epoch(loader) -> list[int]:
    return [int(i) for x, _ in loader for i in x]


def test_shards_are_disjoint_cover_the_data_and_reshuffle_each_epoch():
    cpu = torch.device("cpu")
    loaders = [distributed_loader(Indices(40), batch_size=8, info=DistInfo(r, 2, r, cpu), seed=3) for r in range(2)]
    first = [_epoch(loader) for loader in loaders]
    assert all(len(batch) == 4 for batch, _ in loaders[0])  # global batch 8 = 2 processes x 4
    assert not set(first[0]) & set(first[1])
    assert sorted(first[0] + first[1]) == list(range(40))
    for loader in loaders:
        _set_epoch(loader, 1)  # what fit does at the start of every epoch
    second = [_epoch(loader) for loader in loaders]
    assert sorted(second[0] + second[1]) == list(range(40))
    assert second[0] != first[0]  # a new permutation...
    again = distributed_loader(Indices(40), batch_size=8, info=DistInfo(0, 2, 0, cpu), seed=3)
    _set_epoch(again, 1)
    assert _epoch(again) == second[0]  # ...that depends only on the seed and the epoch


def test_global_batch_must_split_evenly():
    with pytest.raises(ValueError, match="divisible"):
        distributed_loader(Indices(10), batch_size=7, info=DistInfo(0, 2, 0, torch.device("cpu")))


def test_single_process_helpers():
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    model = SmallCNN(widths=(4, 8))
    assert info.is_main and not info.distributed
    assert unwrap(model) is model
    assert replicas_identical(model, info)


def _train(tmp_path: Path, processes: int) -> tuple[Path, Path]:
    out, checkpoint = tmp_path / f"replicas{processes}", tmp_path / f"cnn{processes}.pt"
    args = ["-m", "course_utils.training.distributed", "--epochs", "2", "--size", "32", "--per-class", "8",
            "--batch-size", "16", "--checkpoint", str(checkpoint), "--save-replicas", str(out)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    else:
        command = [sys.executable, *args]
    env = {**os.environ, "COURSE_PROFILE": "smoke", "COURSE_THREADS": "1", "COURSE_CHECKPOINT_DIR": str(tmp_path)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert f"weights identical across {processes} process(es): True" in done.stdout
    return out, checkpoint


def _assert_trained_checkpoint(checkpoint: Path) -> None:
    saved = read_checkpoint(checkpoint)
    assert not any(k.startswith("module.") for k in saved["model"])  # loads without the DDP wrapper
    model, card = load_model(checkpoint)  # rebuilt from its model card alone
    assert type(model) is SmallCNN and card.extra["world_size"] >= 1
    torch.manual_seed(0)  # the seed every process starts from: the initial weights
    initial = SmallCNN(**card.config).state_dict()
    assert not torch.equal(initial["features.0.0.weight"], saved["model"]["features.0.0.weight"])


@real_data
def test_one_process_trains_and_saves_a_plain_checkpoint(tmp_path):
    out, checkpoint = _train(tmp_path, processes=1)
    assert sorted(p.name for p in out.iterdir()) == ["rank0.pt"]
    _assert_trained_checkpoint(checkpoint)


@real_data
def test_two_gloo_processes_end_with_identical_weights(tmp_path):
    out, checkpoint = _train(tmp_path, processes=2)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    _assert_trained_checkpoint(checkpoint)
    assert load_model(checkpoint)[1].extra["world_size"] == 2
