"""The training kit: fit, early stopping, schedulers, checkpoints, resume, determinism.

Everything runs on a tiny synthetic problem (two Gaussian blobs per class in 8 dimensions)
with a tiny MLP, so the whole file takes a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import course_utils.training.loop as train_mod
from course_utils.training import (History, checkpoint_dir, evaluate, fit, last_state_path, load_checkpoint,
                                   predict, read_checkpoint, save_checkpoint)


def make_data(n: int = 96, seed: int = 0) -> torch.utils.data.TensorDataset:
    centers = torch.randn(3, 8, generator=torch.Generator().manual_seed(42)) * 2  # same classes for every split
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = centers[y] + torch.randn(n, 8, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def loader(ds, shuffle: bool, seed: int = 0, batch_size: int = 16):
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                                       generator=torch.Generator().manual_seed(seed))


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def run(epochs: int = 4, seed: int = 0, **kwargs):
    model = make_model(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train_dl, val_dl = loader(make_data(96, 0), True, seed), loader(make_data(48, 1), False)
    hist = fit(model, train_dl, val_dl, epochs=epochs, optimizer=opt, device="cpu", progress=False, **kwargs)
    return model, hist


def test_fit_learns_and_fills_history():
    model, hist = run(epochs=6)
    assert len(hist) == 6 and hist.epochs == [1, 2, 3, 4, 5, 6]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"):
        assert len(getattr(hist, key)) == 6
    assert hist.val_loss[-1] < hist.val_loss[0]
    assert hist.val_acc[-1] >= 0.9
    assert evaluate(model, loader(make_data(48, 1), False), "cpu")["acc"] == pytest.approx(hist.val_acc[-1])
    probs, labels = predict(model, loader(make_data(48, 1), False), "cpu")
    assert probs.shape == (48, 3) and labels.shape == (48,)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert hist.best_epoch == int(np.argmin(hist.val_loss)) + 1


def test_same_seed_same_numbers():
    _, a = run(epochs=3, seed=5)
    _, b = run(epochs=3, seed=5)
    _, c = run(epochs=3, seed=6)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss and a.val_acc == b.val_acc
    assert a.train_loss != c.train_loss


def scripted_evaluate(losses, snapshots):
    """Replace ``evaluate``: return the scripted validation losses, remember the weights."""
    calls = iter(losses)

    def fake(model, loader, device, loss_fn=None, **kwargs):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"loss": next(calls), "acc": 0.5}

    return fake


def test_early_stopping_restores_best_epoch(monkeypatch):
    snapshots: list[dict] = []
    losses = [1.0, 0.6, 0.4, 0.5, 0.45, 0.7, 0.3, 0.2]  # best 0.4 at epoch 3, then 3 worse epochs
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate(losses, snapshots))
    model, hist = run(epochs=8, early_stopping=3)
    assert hist.stopped_early and len(hist) == 6 and hist.best_epoch == 3
    assert hist.best() == 0.4
    for name, value in model.state_dict().items():
        assert torch.equal(value, snapshots[2][name]), name
    assert not torch.equal(snapshots[2]["0.weight"], snapshots[5]["0.weight"])


def test_without_early_stopping_the_last_weights_stay(monkeypatch):
    snapshots: list[dict] = []
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate([0.5, 0.1, 0.9], snapshots))
    model, hist = run(epochs=3)
    assert hist.best_epoch == 2 and not hist.stopped_early
    assert torch.equal(model.state_dict()["0.weight"], snapshots[-1]["0.weight"])


def test_reduce_lr_on_plateau_halves_the_rate(monkeypatch):
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate([1.0] * 5, []))
    _, hist = run(epochs=5, reduce_lr_on_plateau=1)
    # epoch 1 sets the reference; after more than `patience` epochs without improvement
    # (epochs 2 and 3) the rate halves, and the count starts again
    np.testing.assert_allclose(hist.lr, [1e-2, 1e-2, 1e-2, 5e-3, 5e-3])


def test_one_cycle_steps_per_batch():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_dl, val_dl = loader(make_data(96, 0), True), loader(make_data(48, 1), False)
    epochs = 3
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=epochs * len(train_dl))
    hist = fit(model, train_dl, val_dl, epochs=epochs, optimizer=opt, device="cpu", scheduler=sched,
               scheduler_step="batch", progress=False)
    assert sched.last_epoch == epochs * len(train_dl)  # stepped once per batch, never past the end
    assert hist.lr[0] == pytest.approx(0.1 / 25)       # starts at max_lr / div_factor,
    assert hist.lr[1] > 20 * hist.lr[0]                # warms up to near max_lr,
    assert hist.lr[2] < hist.lr[1]                     # then anneals


def test_divergence_stops_the_run():
    def nan_loss(logits, y):
        return nn.functional.cross_entropy(logits, y) * math.nan

    _, hist = run(epochs=5, loss_fn=nan_loss)
    assert hist.diverged and len(hist) == 1 and hist.best_epoch is None


def test_worse_checkpoint_never_replaces_better(tmp_path):
    path = tmp_path / "m.pt"
    good, bad, better = make_model(1), make_model(2), make_model(3)
    assert save_checkpoint(path, good, metric="val_acc", value=0.90)
    assert not save_checkpoint(path, bad, metric="val_acc", value=0.80)
    assert not save_checkpoint(path, bad, metric="val_acc", value=0.90)   # a tie keeps the old one
    assert not save_checkpoint(path, bad, metric="val_loss", value=0.01)  # not comparable: kept
    restored = make_model(9)
    ckpt = load_checkpoint(path, restored)
    assert ckpt["metric"] == {"name": "val_acc", "value": 0.90, "mode": "max"}
    assert torch.equal(restored[0].weight, good[0].weight)
    assert save_checkpoint(path, better, metric="val_acc", value=0.95, meta={"size": 96})
    ckpt = load_checkpoint(path, restored)
    assert torch.equal(restored[0].weight, better[0].weight) and ckpt["meta"] == {"size": 96}
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary files left behind


def test_fit_keeps_a_better_stored_checkpoint(tmp_path):
    path = tmp_path / "m.pt"
    champion = make_model(7)
    save_checkpoint(path, champion, metric="val_loss", value=1e-6)
    run(epochs=2, checkpoint=path)
    assert torch.equal(read_checkpoint(path)["model"]["0.weight"], champion[0].weight)
    assert last_state_path(path).is_file()  # the run's own state is still kept for resuming


def test_fit_saves_best_epoch(tmp_path, monkeypatch):
    snapshots: list[dict] = []
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate([0.9, 0.3, 0.8], snapshots))
    path = tmp_path / "m.pt"
    run(epochs=3, checkpoint=path, meta={"note": "x"})
    ckpt = read_checkpoint(path)
    assert ckpt["epoch"] == 2 and ckpt["metric"]["value"] == 0.3 and ckpt["meta"] == {"note": "x"}
    assert torch.equal(ckpt["model"]["0.weight"], snapshots[1]["0.weight"])
    assert History.from_dict(ckpt["history"]).val_loss == [0.9, 0.3]


def test_resume_continues_the_history_exactly(tmp_path):
    path = tmp_path / "m.pt"
    _, full = run(epochs=4, seed=3)
    _, first = run(epochs=2, seed=3, checkpoint=path)
    model, resumed = run(epochs=4, seed=11, checkpoint=path, resume=True)  # another seed: state comes from the file
    assert len(first) == 2 and len(resumed) == 4
    assert resumed.train_loss[:2] == first.train_loss
    # the random states are restored too, so the resumed run equals an uninterrupted one
    np.testing.assert_allclose(resumed.train_loss, full.train_loss, rtol=1e-6)
    np.testing.assert_allclose(resumed.val_loss, full.val_loss, rtol=1e-6)


def test_checkpoint_dir_is_per_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert checkpoint_dir() == tmp_path / "smoke" and (tmp_path / "smoke").is_dir()
    assert checkpoint_dir("full") == tmp_path / "full"


def test_plot_history_marks_the_best_epoch():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils.widgets.plots import plot_history

    h = History(train_loss=[1, .5, .4], train_acc=[.5, .7, .8], val_loss=[1, .6, .7], val_acc=[.5, .7, .6],
                lr=[1e-3, 1e-3, 1e-4], seconds=[1, 1, 1], best_epoch=2)
    fig = plot_history(h)
    assert len(fig.axes) == 3  # the learning rate changed: a third panel
    assert [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_linestyle() == ":"] == [2]
    plt.close(fig)
    fig = plot_history({"a": h, "b": h}, show_lr=False)
    assert len(fig.axes) == 2 and len(fig.axes[0].get_legend().texts) == 4
    plt.close(fig)


def test_resume_is_exact_with_the_course_loader_and_augmentation(tmp_path):
    """The shuffling and augmentation generators of course_utils.data are saved and restored."""
    from course_utils.data import ImageSet, MRIDataset, make_loader, train_augmentation
    from course_utils.models import SmallCNN

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 4
    images = (torch.rand(48, 16, 16, generator=g) * 80 + labels[:, None, None] * 40).to(torch.uint8)
    data = ImageSet(images, labels, [f"f{i}" for i in range(48)])

    def go(epochs, seed, **kwargs):
        torch.manual_seed(seed)
        model = SmallCNN(widths=(4, 8), hidden=0, dropout=0.2)
        dl = make_loader(MRIDataset(data, transform=train_augmentation(seed=seed)), batch_size=16, shuffle=True,
                         seed=seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return fit(model, dl, None, epochs=epochs, optimizer=opt, device="cpu", progress=False, **kwargs)

    path = tmp_path / "cnn.pt"
    full = go(4, seed=1)
    go(2, seed=1, checkpoint=path)
    resumed = go(4, seed=2, checkpoint=path, resume=True)
    assert resumed.train_loss == full.train_loss and resumed.train_acc == full.train_acc


def test_patience_zero_is_a_real_patience(monkeypatch):
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate([1.0, 0.5, 0.6, 0.7], []))
    _, hist = run(epochs=4, reduce_lr_on_plateau=0)
    np.testing.assert_allclose(hist.lr, [1e-2, 1e-2, 1e-2, 5e-3])  # halved after epoch 3, the first miss
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate([1.0, 0.5, 0.6, 0.7], []))
    _, hist = run(epochs=4, early_stopping=0)
    assert hist.stopped_early and len(hist) == 3
