"""Tests of the NumPy training loop: determinism, early stopping, weight snapshots, data prep."""

import numpy as np
import pytest

from course_utils.numpy_nn.layers import mlp
from course_utils.numpy_nn.train import (EarlyStopping, Standardizer, evaluate, fit, flip_horizontal,
                                         get_weights, minibatches, set_weights)
from course_utils.numpy_nn.optim import Adam


def blobs(n: int = 120, d: int = 6, seed: int = 0, noise: float = 1.0):
    """Three well separated Gaussian clusters: a task a small MLP learns in a few epochs."""
    centres = np.random.default_rng(123).normal(0, 3, size=(3, d))  # the same task for every seed
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    return centres[y] + rng.normal(0, noise, size=(n, d)), y


def small_model(seed: int = 0, dropout: float = 0.0):
    return mlp([6, 16, 3], activation="relu", init="he", rng=np.random.default_rng(seed), dropout=dropout)


def test_fit_learns_and_is_deterministic_from_a_seed():
    (x, y), val = blobs(seed=0), blobs(seed=1)
    runs = []
    for _ in range(2):
        model = small_model(seed=3, dropout=0.2)
        history = fit(model, Adam(model, lr=1e-2), (x, y), val, epochs=5, batch_size=16, seed=7, progress=False)
        runs.append((history, get_weights(model)))
    (h1, w1), (h2, w2) = runs
    assert h1.val_loss == h2.val_loss and h1.train_acc == h2.train_acc
    for a, b in zip(w1, w2):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    assert h1.train_loss[-1] < h1.train_loss[0]
    assert h1.val_acc[-1] > 0.8
    assert len(h1.epochs) == 5 and h1.stopped_epoch == 5 and h1.best_epoch is None


def test_a_different_shuffling_seed_gives_a_different_run():
    (x, y), val = blobs(seed=0), blobs(seed=1)
    losses = []
    for seed in (0, 1):
        model = small_model(seed=3)
        losses.append(fit(model, Adam(model, lr=1e-2), (x, y), val, epochs=2, batch_size=16,
                          seed=seed, progress=False).val_loss)
    assert losses[0] != losses[1]


def test_early_stopping_counts_patience_and_keeps_the_best_epoch():
    model = small_model()
    stopper = EarlyStopping(patience=3, monitor="val_loss")
    values = [1.0, 0.8, 0.9, 0.7, 0.75, 0.71, 0.72, 0.5]
    stops = []
    for epoch, value in enumerate(values, start=1):
        for params, _ in model.parameters():
            params["W"][...] = epoch  # weights that tell which epoch they belong to
        stops.append(stopper.step(value, model, epoch))
    # best 0.7 at epoch 4; epochs 5, 6, 7 fail to improve -> stop requested at epoch 7
    assert stops == [False] * 6 + [True, False]
    stopper = EarlyStopping(patience=3)
    for epoch, value in enumerate(values[:7], start=1):
        for params, _ in model.parameters():
            params["W"][...] = epoch
        if stopper.step(value, model, epoch):
            break
    assert stopper.best_epoch == 4 and stopper.best_value == 0.7 and epoch == 7
    stopper.restore(model)
    for params, _ in model.parameters():
        assert np.all(params["W"] == 4)


def test_early_stopping_on_accuracy_prefers_higher_and_respects_min_delta():
    model = small_model()
    stopper = EarlyStopping(patience=2, monitor="val_acc", min_delta=0.01)
    assert not stopper.step(0.50, model, 1)
    assert not stopper.step(0.505, model, 2)  # not better by more than min_delta
    assert stopper.step(0.509, model, 3)  # second epoch without improvement: stop
    assert stopper.best_epoch == 1


def test_fit_with_early_stopping_restores_the_best_epochs_weights():
    """40 noisy training points and a wide hidden layer: the network soon fits the noise and
    validation loss rises. The run must stop `patience` epochs after the best epoch and
    come back holding exactly the weights it had at that epoch."""
    x, y = blobs(n=40, seed=0, noise=3.0)
    val = blobs(n=200, seed=1, noise=3.0)
    model = mlp([6, 64, 3], activation="relu", init="he", rng=np.random.default_rng(0))
    snapshots = []

    class Recorder(EarlyStopping):
        def step(self, value, model, epoch):
            snapshots.append(get_weights(model))
            return super().step(value, model, epoch)

    history = fit(model, Adam(model, lr=1e-2), (x, y), val, epochs=60, batch_size=8, seed=0,
                  early_stopping=Recorder(patience=5), progress=False)
    best = history.best_epoch
    assert best == int(np.argmin(history.val_loss)) + 1
    assert history.stopped_epoch == len(history.val_loss) == best + 5 < 60
    for restored, saved in zip(get_weights(model), snapshots[best - 1]):
        for name in restored:
            np.testing.assert_array_equal(restored[name], saved[name])
    assert evaluate(model, *val)[0] == pytest.approx(min(history.val_loss))
    assert evaluate(model, *val)[0] < history.val_loss[-1]


def test_set_weights_writes_in_place_and_checks_shape():
    model = small_model()
    arrays = [params["W"] for params, _ in model.parameters()]
    saved = get_weights(model)
    for params, _ in model.parameters():
        params["W"] += 1.0
    set_weights(model, saved)
    assert all(params["W"] is a for (params, _), a in zip(model.parameters(), arrays))
    np.testing.assert_array_equal(model.parameters()[0][0]["W"], saved[0]["W"])
    with pytest.raises(ValueError):
        set_weights(model, saved[:1])


def test_minibatches_cover_every_index_once():
    batches = list(minibatches(10, 4, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    assert np.concatenate(list(minibatches(5, 2, None))).tolist() == [0, 1, 2, 3, 4]


def test_standardizer_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    train, test = rng.normal(5, 2, size=(500, 3)), rng.normal(9, 2, size=(50, 3))
    scaler = Standardizer.fit(train, eps=0.0)
    z = scaler(train)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-12)
    assert scaler(test).mean() > 1.5  # the test set keeps its shift: nothing was fitted on it


def test_flip_horizontal_mirrors_rows_of_some_images():
    x = np.arange(2 * 9, dtype=float).reshape(2, 9)
    rng = np.random.default_rng(1)
    out = flip_horizontal(np.repeat(x, 20, axis=0), rng)
    mirrored = x.reshape(2, 3, 3)[:, :, ::-1].reshape(2, 9)
    is_flipped = [np.array_equal(row, mirrored[i // 20]) for i, row in enumerate(out)]
    is_same = [np.array_equal(row, x[i // 20]) for i, row in enumerate(out)]
    assert all(f or s for f, s in zip(is_flipped, is_same))
    assert 5 < sum(is_flipped) < 35


def test_plot_sweep_draws_the_selected_run_and_rejects_unknown_values():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils.numpy_nn.train import History, plot_sweep

    runs = {p: History(train_loss=[1.0, 0.5], val_loss=[1.5, 0.9 + p], train_acc=[0.5, 0.9],
                       val_acc=[0.4, 0.8 - p]) for p in (0.0, 0.5)}
    fig = plot_sweep(runs, 0.5)
    assert "0.5" in fig.axes[0].get_title() and "1.400" in fig.axes[0].get_title()
    val_line = fig.axes[1].get_lines()[1]
    np.testing.assert_allclose(val_line.get_ydata(), [0.8, 0.3])
    plt.close(fig)
    with pytest.raises(KeyError):
        plot_sweep(runs, 0.3)
