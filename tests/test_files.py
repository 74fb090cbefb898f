"""Files the course writes and reads back (course_utils.files) and what happens when they are damaged.

Checkpoints cut short at several lengths, a checkpoint of another network, a damaged "last
state", a full disk while writing, a results table that is not a table: each must give one
clear message naming the file, what made it and the fix, and none may leave a learner stuck.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from course_utils import files, training, results
from course_utils.files import (FileWriteError, UnreadableFileError, atomic_torch_save, atomic_write,
                                atomic_write_text, move_aside, partial_files, read_or_explain)
from course_utils.models import SmallCNN
from course_utils.training import (ArchitectureMismatchError, fit, last_state_path, load_checkpoint, load_model,
                                   read_checkpoint, save_checkpoint)

# Where a file is cut: empty, 10 %, half, 90 %, all but the last byte.
CUTS = [0.0, 0.1, 0.5, 0.9, -1]


def truncate(path: Path, cut: float) -> bytes:
    """Cut ``path`` to a fraction of its bytes (``-1``: drop the last byte); return the old bytes."""
    payload = path.read_bytes()
    keep = len(payload) - 1 if cut == -1 else int(len(payload) * cut)
    path.write_bytes(payload[:keep])
    return payload


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    return tmp_path


def small_cnn(widths=(8, 16), seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN(widths=widths, hidden=0).eval()


def save_lesson08(model: SmallCNN, value: float = 1.0) -> Path:
    path = training.checkpoint_path("08", "smoke")
    meta = {"config": model.config, "size": 32, "mean": 0.2, "std": 0.3, "lesson": "08"}
    assert save_checkpoint(path, model, metric="val_loss", value=value, meta=meta)
    return path


# ---------------------------------------------------------------- the writer


def test_atomic_write_replaces_in_one_step(tmp_path):
    target = tmp_path / "a" / "b.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two" and partial_files(target) == []


def test_a_failing_writer_leaves_the_old_file_and_no_debris(tmp_path):
    target = tmp_path / "state.pt"
    atomic_torch_save({"a": 1}, target)

    def broken(f):
        f.write(b"half of it")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        atomic_write(target, broken)
    assert torch.load(target) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_a_full_disk_is_one_clear_error_and_leaves_no_debris(tmp_path, monkeypatch):
    target = tmp_path / "big.pt"

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(FileWriteError) as info:
        atomic_torch_save({"a": 1}, target)
    message = str(info.value)
    assert str(target) in message and "No space left on device" in message and "free some disk space" in message
    assert isinstance(info.value, OSError)
    assert list(tmp_path.iterdir()) == []


def test_debris_of_a_killed_writer_is_swept_by_the_next_write(tmp_path):
    target = tmp_path / "model.pt"
    dead = tmp_path / "model.pt.999999999-abcdef.partial"  # no such process
    dead.write_bytes(b"half")
    alive = tmp_path / f"model.pt.{os.getppid()}-abcdef.partial"  # a running process: maybe writing now
    alive.write_bytes(b"busy")
    atomic_torch_save({"a": 1}, target)
    assert not dead.exists() and alive.exists()


# ---------------------------------------------------------------- the reader


def test_reader_names_file_maker_and_fix(tmp_path):
    path = tmp_path / "thing.json"
    path.write_text("{not json")
    with pytest.raises(UnreadableFileError) as info:
        read_or_explain(path, files.json_load, made_by="the thing maker", fix="make it again")
    message = str(info.value)
    assert str(path) in message and "the thing maker" in message and "make it again" in message
    with pytest.raises(FileNotFoundError):
        read_or_explain(tmp_path / "absent", files.json_load, made_by="x", fix="y")


def test_move_aside_keeps_the_bytes(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"damaged")
    first, second = move_aside(path), None
    path.write_bytes(b"damaged again")
    second = move_aside(path)
    assert not path.exists() and first != second
    assert first.name.startswith("m.pt.damaged-") and first.read_bytes() == b"damaged"
    assert second.read_bytes() == b"damaged again"


# ---------------------------------------------------------------- damaged checkpoints


@pytest.mark.parametrize("cut", CUTS)
def test_truncated_lesson_checkpoint_names_file_lesson_and_fix(checkpoints, cut):
    path = save_lesson08(small_cnn())
    truncate(path, cut)
    with pytest.raises(UnreadableFileError) as info:
        training.load_lesson_model("08", profile="smoke")
    message = str(info.value)
    assert str(path) in message
    assert "lesson 08" in message and "notebooks/08_" in message and "'smoke' profile" in message
    assert "run lesson 08 again" in message and "COURSE_PROFILE=smoke" in message
    assert "lesson08_cnn.pt.damaged-" in message
    assert "Traceback" not in message and len(message.splitlines()) == 3


@pytest.mark.parametrize("cut", CUTS)
def test_saving_over_a_truncated_checkpoint_moves_it_aside(checkpoints, cut, capsys):
    path = save_lesson08(small_cnn(seed=0), value=0.5)
    old = truncate(path, cut)
    retrained = small_cnn(seed=1)
    # A worse value than the (unreadable) stored one: the damaged file cannot count as better.
    assert save_lesson08(retrained, value=0.9)
    out = capsys.readouterr().out
    assert "could not be read" in out and "treating it as absent" in out
    aside = list(checkpoints.glob("smoke/lesson08_cnn.pt.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == old[:len(aside[0].read_bytes())]
    assert aside[0].name in out
    loaded = training.load_lesson_model("08", profile="smoke")
    expected = retrained.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.model.state_dict().items())


def test_a_file_that_is_not_a_checkpoint_is_explained(tmp_path):
    path = tmp_path / "model.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(UnreadableFileError, match="holds a list"):
        read_checkpoint(path)
    message = str(pytest.raises(UnreadableFileError, load_checkpoint, path).value)
    assert "course_utils.training.fit" in message and "damaged-" in message


def test_rerunning_a_lesson_over_a_damaged_checkpoint_trains_and_saves(checkpoints, capsys):
    torch.manual_seed(0)
    x, y = torch.randn(32, 8), torch.arange(32) % 2
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    path = training.checkpoint_path("08", "smoke")
    path.write_bytes(b"PK\x03\x04 cut short")
    model = nn.Sequential(nn.Linear(8, 2))
    history = fit(model, data, data, epochs=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                  device="cpu", checkpoint=path, progress=False)
    assert len(history) == 2
    assert read_checkpoint(path)["epoch"] == history.best_epoch
    assert len(list(path.parent.glob("lesson08_cnn.pt.damaged-*"))) == 1


@pytest.mark.parametrize("cut", [0.0, 0.5])
def test_a_damaged_last_state_does_not_block_resuming(tmp_path, cut, capsys):
    torch.manual_seed(0)
    x, y = torch.randn(32, 8), torch.arange(32) % 2
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    path = tmp_path / "run.pt"

    def run(epochs: int):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 2))
        return fit(model, data, data, epochs=epochs, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                   device="cpu", checkpoint=path, resume=True, progress=False)

    run(2)
    truncate(last_state_path(path), cut)
    capsys.readouterr()
    history = run(3)
    out = capsys.readouterr().out
    assert "Cannot resume from run.last.pt" in out and "starts from the first epoch" in out
    assert len(history) == 3  # trained from the start, not stuck
    assert len(list(tmp_path.glob("run.last.pt.damaged-*"))) == 1


# ---------------------------------------------------------------- another architecture


def test_loading_another_architecture_names_both(checkpoints):
    path = save_lesson08(small_cnn(widths=(8, 16)))
    other = SmallCNN(widths=(4, 8), hidden=0)
    with pytest.raises(ArchitectureMismatchError) as info:
        load_checkpoint(path, other)
    message = str(info.value)
    assert str(path) in message
    assert "widths=(8, 16)" in message and "widths=(4, 8)" in message
    assert "in the checkpoint" in message and "size mismatch" not in message


def test_resuming_into_another_architecture_names_both(tmp_path):
    x, y = torch.randn(16, 8), torch.arange(16) % 2
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    path = tmp_path / "run.pt"
    first = nn.Sequential(nn.Linear(8, 2))
    fit(first, data, data, epochs=1, optimizer=torch.optim.SGD(first.parameters(), lr=0.1), device="cpu",
        checkpoint=path, progress=False)
    wider = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ArchitectureMismatchError) as info:
        fit(wider, data, data, epochs=2, optimizer=torch.optim.SGD(wider.parameters(), lr=0.1), device="cpu",
            checkpoint=path, resume=True, progress=False)
    message = str(info.value)
    assert "Sequential with 18 parameters" in message and "Sequential with 46 parameters" in message
    assert "resume=False" in message


def test_load_model_explains_a_damaged_file(tmp_path):
    path = tmp_path / "lesson11_efficientnet.pt"
    path.write_bytes(b"")
    with pytest.raises(UnreadableFileError, match="empty or cut short"):
        load_model(path)


# ---------------------------------------------------------------- the results table


def test_results_are_written_atomically_and_a_damaged_table_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "full")
    monkeypatch.delenv("COURSE_NO_RECORD", raising=False)
    path = tmp_path / "results.json"
    results.record("05", "mlp", path=path, test_acc=0.9)
    assert json.loads(path.read_text())["05/mlp"]["test_acc"] == 0.9 and partial_files(path) == []
    path.write_text("[1, 2]")
    with pytest.raises(UnreadableFileError) as info:
        results.record("05", "mlp", path=path, test_acc=0.9)
    assert "git checkout -- results.json" in str(info.value) and str(path) in str(info.value)
