"""Training NumPy networks: the mini-batch loop, evaluation and early stopping.

Part I of the course trains the ``nn_numpy`` models with the ``optim_numpy`` optimisers.
The loop is always the same, so it lives here once:

1. shuffle the training set (with a seeded generator, so a run can be repeated exactly);
2. for each mini-batch: forward, softmax cross-entropy, backward, ``optimizer.step()``;
3. after each epoch, measure loss and accuracy on the training and validation sets in
   evaluation mode (dropout off), and let ``EarlyStopping`` decide whether to go on.

``EarlyStopping`` keeps a copy of the weights of the best epoch seen so far and, when the
monitored value has not improved for ``patience`` epochs, stops the run and puts those best
weights back. The data helpers flatten image sets and standardise them with statistics of
the *training* set only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..history import Evaluation, History
from ..progress import finish
from .layers import Sequential, softmax_cross_entropy


Array = np.ndarray
Augment = Callable[[Array, np.random.Generator], Array]

# --------------------------------------------------------------------------------------
# Data: flatten and standardise
# --------------------------------------------------------------------------------------


def to_arrays(image_set) -> tuple[Array, Array]:
    """An ``ImageSet`` as ``(x, y)``: ``x`` float64 ``(N, H*W)`` in ``[0, 1]``, ``y`` int64 ``(N,)``."""
    images = image_set.images.numpy()
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return x, image_set.labels.numpy().astype(np.int64)


@dataclass
class Standardizer:
    """Per-feature standardisation ``(x - mean) / std`` with statistics of the training set.

    The statistics are *fitted* on training images only and then *applied* unchanged to the
    validation and test images: computing them on the test set would leak information
    about it into the model. ``eps`` keeps always-black border pixels from dividing by 0.
    """

    mean: Array
    std: Array

    @classmethod
    def fit(cls, x_train: Array, eps: float = 1e-2) -> "Standardizer":
        return cls(mean=x_train.mean(axis=0), std=x_train.std(axis=0) + eps)

    def __call__(self, x: Array) -> Array:
        return (x - self.mean) / self.std


def flip_horizontal(x: Array, rng: np.random.Generator, side: int | None = None) -> Array:
    """Mirror a random half of a batch of flattened square images left-right (augmentation).

    Axial and coronal brain slices are roughly left-right symmetric and tumours occur on
    both sides, so a mirrored slice is another plausible slice of the same class (a mirrored
    sagittal slice faces the other way, as some of the dataset's sagittal slices already do).
    """
    side = side or int(round(np.sqrt(x.shape[1])))
    flip = rng.random(len(x)) < 0.5
    out = x.copy()
    out[flip] = x[flip].reshape(-1, side, side)[:, :, ::-1].reshape(int(flip.sum()), -1)
    return out


# --------------------------------------------------------------------------------------
# Weights: copy out and put back
# --------------------------------------------------------------------------------------


def get_weights(model: Sequential) -> list[dict[str, Array]]:
    """A deep copy of every parameter array of ``model`` (a snapshot, safe from later updates)."""
    return [{name: value.copy() for name, value in params.items()} for params, _ in model.parameters()]


def set_weights(model: Sequential, weights: list[dict[str, Array]]) -> None:
    """Write a snapshot from ``get_weights`` back into ``model``, in place.

    In place matters: optimisers hold references to the parameter arrays, so replacing the
    arrays would silently detach them from the optimiser.
    """
    pairs = model.parameters()
    if len(pairs) != len(weights):
        raise ValueError(f"model has {len(pairs)} parameter layers, snapshot has {len(weights)}")
    for (params, _), saved in zip(pairs, weights):
        for name, value in saved.items():
            params[name][...] = value


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


def minibatches(n: int, batch_size: int, rng: np.random.Generator | None) -> Iterator[Array]:
    """Index arrays of consecutive mini-batches of a shuffled ``range(n)``; the last may be smaller.
    ``rng=None`` keeps the order (for evaluation)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def predict_logits(model: Sequential, x: Array, batch_size: int = 1024) -> Array:
    """The model's logits for every row of ``x``, in evaluation mode (dropout off)."""
    was_training = any(layer.training for layer in model.layers)
    model.eval()
    out = np.concatenate([model.forward(x[idx]) for idx in minibatches(len(x), batch_size, None)])
    if was_training:
        model.train()
    return out


def evaluate(model: Sequential, x: Array, y: Array, batch_size: int = 1024) -> Evaluation:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)``, in evaluation mode (``loss, acc``)."""
    logits = predict_logits(model, x, batch_size)
    loss, _ = softmax_cross_entropy(logits, y)
    return Evaluation(loss, float(np.mean(logits.argmax(axis=1) == y)))


def train_one_epoch(model: Sequential, optimizer, x: Array, y: Array, batch_size: int,
                    rng: np.random.Generator, augment: Augment | None = None) -> float:
    """One pass over ``(x, y)`` in shuffled mini-batches; returns the mean mini-batch loss
    (measured in training mode, so with dropout on)."""
    model.train()
    total, count = 0.0, 0
    for idx in minibatches(len(x), batch_size, rng):
        xb = x[idx] if augment is None else augment(x[idx], rng)
        loss, dlogits = softmax_cross_entropy(model.forward(xb), y[idx])
        model.backward(dlogits)
        optimizer.step()
        total += loss * len(idx)
        count += len(idx)
    return total / count


class EarlyStopping:
    """Stop when the monitored value has not improved for ``patience`` epochs; keep the best weights.

    ``monitor`` is ``"val_loss"`` (lower is better) or ``"val_acc"`` (higher is better). An
    epoch counts as an improvement when it beats the best so far by more than ``min_delta``.
    ``step`` returns True when training should stop; ``restore`` writes the best epoch's
    weights back into the model.
    """

    def __init__(self, patience: int, monitor: str = "val_loss", min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if monitor not in ("val_loss", "val_acc"):
            raise ValueError(f"monitor must be 'val_loss' or 'val_acc', got {monitor!r}")
        self.patience, self.monitor, self.min_delta = patience, monitor, min_delta
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: list[dict[str, Array]] | None = None
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.monitor == "val_loss":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def step(self, value: float, model: Sequential, epoch: int) -> bool:
        """Record epoch ``epoch``'s monitored ``value``; True means: stop now."""
        if self.improved(value):
            self.best_value, self.best_epoch = value, epoch
            self.best_weights = get_weights(model)
            self.bad_epochs = 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self, model: Sequential) -> None:
        if self.best_weights is None:
            raise RuntimeError("no epoch has been recorded yet")
        set_weights(model, self.best_weights)


def fit(model: Sequential, optimizer, train: tuple[Array, Array], val: tuple[Array, Array], *,
        epochs: int, batch_size: int = 128, seed: int = 0, early_stopping: EarlyStopping | None = None,
        augment: Augment | None = None, progress: bool = True, desc: str = "training") -> History:
    """Train ``model`` for up to ``epochs`` epochs and return its ``History``.

    The shuffling order (and the augmentation's randomness) comes from ``seed``; dropout
    layers draw from their own generators, given when the model was built. With
    ``early_stopping`` the run ends once it says so and the model is left holding the weights
    of the best epoch (``history.best_epoch``).
    """
    from tqdm.auto import tqdm  # here: only when a bar is shown

    x_train, y_train = train
    x_val, y_val = val
    rng = np.random.default_rng(seed)
    history = History()
    bar = tqdm(total=epochs, desc=desc, disable=not progress)
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        history.batch_loss.append(train_one_epoch(model, optimizer, x_train, y_train, batch_size, rng, augment))
        for name, (x, y) in (("train", (x_train, y_train)), ("val", (x_val, y_val))):
            loss, acc = evaluate(model, x, y)
            getattr(history, f"{name}_loss").append(loss)
            getattr(history, f"{name}_acc").append(acc)
        history.seconds.append(time.perf_counter() - start)
        history.stopped_epoch = epoch
        bar.set_postfix(train_acc=f"{history.train_acc[-1]:.3f}", val_acc=f"{history.val_acc[-1]:.3f}",
                        refresh=False)
        bar.update()
        if early_stopping is not None:
            value = history.val_loss[-1] if early_stopping.monitor == "val_loss" else history.val_acc[-1]
            if early_stopping.step(value, model, epoch):
                break
    finish(bar, desc, stopped_early=len(history.seconds) < epochs)
    model.train()
    if early_stopping is not None:
        early_stopping.restore(model)
        history.best_epoch = early_stopping.best_epoch
    return history


def plot_curves(histories: dict[str, History], metric: str = "loss", ax=None, title: str | None = None):
    """Train (dashed) and validation (solid) curves of several runs on one axes, one colour per run;
    a dot marks the epoch each early-stopped run restored."""
    import matplotlib.pyplot as plt  # here: only when drawing

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        train, val = getattr(h, f"train_{metric}"), getattr(h, f"val_{metric}")
        ax.plot(h.epochs, train, "--", color=color, alpha=0.8)
        ax.plot(h.epochs, val, "-", color=color, label=name)
        if h.best_epoch is not None:
            ax.plot([h.best_epoch], [val[h.best_epoch - 1]], "o", color=color, ms=7)
    what = {"loss": "cross-entropy loss", "acc": "accuracy"}.get(metric, metric)
    ax.set_xlabel("epoch")
    ax.set_ylabel(what)
    ax.set_title(title or f"{what}: validation (solid), training (dashed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_sweep(histories: dict[float, History], selected: float, name: str = "dropout rate p"):
    """Runs that differ in one hyper-parameter (e.g. the dropout rate): the selected run's
    curves (left) and every run's final validation and training accuracy (right).

    Lesson 05 draws it for its dropout-rate sweep, selecting the rate with the best
    validation accuracy (``selected`` must be one of the keys).
    """
    import matplotlib.pyplot as plt  # here: only when drawing

    if selected not in histories:
        raise KeyError(f"no run for {name} = {selected}; have {sorted(histories)}")
    h = histories[selected]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(8.6, 3.4))
    ax_loss.plot(h.epochs, h.train_loss, "--", color="C0", label="training loss")
    ax_loss.plot(h.epochs, h.val_loss, "-", color="C0", label="validation loss")
    ax_loss.set_ylim(0, max(1.0, 1.1 * max(h.val_loss[1:] or h.val_loss)))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title(f"{name} = {selected}: min validation loss {min(h.val_loss):.3f}", fontsize=10)
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    values = sorted(histories)
    ax_acc.plot(values, [histories[v].train_acc[-1] for v in values], "s--", color="C1", label="training (last epoch)")
    ax_acc.plot(values, [histories[v].val_acc[-1] for v in values], "o-", color="C2", label="validation (last epoch)")
    ax_acc.axvline(selected, color="gray", lw=1)
    ax_acc.set_xlabel(name)
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy after the last epoch, every run", fontsize=10)
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    fig.tight_layout()
    return fig
