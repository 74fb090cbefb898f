"""A single neuron trained by gradient descent, logic gates, and decision-boundary plots.

Lesson 01 trains one sigmoid neuron, ``p = sigma(w . x + b)``, on the truth tables of AND, OR
and XOR, and draws where it puts the boundary ``w . x + b = 0``. Lesson 02 reuses the plotting
for multi-layer networks. ``lr_experiment_figure`` is the callback of lesson 01's
learning-rate slider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import BoundaryNorm

from ..numpy_nn.layers import sigmoid
from .. import figure_style as style

PROBABILITY_CMAP = style.DIVERGING
"""Colour map of ``P(class 1)``: diverging, centred on the decision threshold 1/2 (blue = class 0,
red = class 1, as the points), symmetric because the levels run from 0 to 1."""

PROBABILITY_LEVELS = np.linspace(0.0, 1.0, 11)
"""Filled-contour levels of ``P(class 1)``: ten bands of 0.1."""


GATE_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
GATES: dict[str, np.ndarray] = {
    "AND": np.array([0, 0, 0, 1]),
    "OR": np.array([0, 1, 1, 1]),
    "NAND": np.array([1, 1, 1, 0]),
    "XOR": np.array([0, 1, 1, 0]),
}


def gate(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The four inputs ``(4, 2)`` and the 0/1 outputs ``(4,)`` of a logic gate."""
    return GATE_INPUTS.copy(), GATES[name.upper()].copy()


@dataclass
class NeuronHistory:
    """What ``train_neuron`` records at every step (step 0 = before training)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)  # (w1, w2, ..., b) per step


def bce_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))``, clipped away from log 0."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def train_neuron(X: np.ndarray, y: np.ndarray, lr: float = 0.5, steps: int = 500,
                 w0: np.ndarray | None = None, b0: float = 0.0) -> tuple[np.ndarray, float, NeuronHistory]:
    """Fit ``p = sigma(X w + b)`` to 0/1 labels by full-batch gradient descent on the mean
    binary cross-entropy.

    The gradient is short because sigmoid and cross-entropy cancel (as softmax and
    cross-entropy do): with ``z = X w + b`` and ``p = sigma(z)``,

        dL/dz_n = (p_n - y_n) / N,    dL/dw = X^T dL/dz,    dL/db = sum_n dL/dz_n,

    and each step moves against the gradient: ``w <- w - lr dL/dw``, ``b <- b - lr dL/db``.
    Returns the final ``w``, ``b`` and the history of every step.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.zeros(X.shape[1]) if w0 is None else np.array(w0, dtype=np.float64)
    b = float(b0)
    hist = NeuronHistory()
    for step in range(steps + 1):
        p = sigmoid(X @ w + b)
        hist.loss.append(bce_loss(p, y))
        hist.accuracy.append(float(np.mean((p > 0.5) == (y > 0.5))))
        hist.weights.append(np.append(w, b))
        if step == steps:
            break
        dz = (p - y) / len(y)
        w = w - lr * (X.T @ dz)
        b = b - lr * dz.sum()
    return w, b, hist


def plot_decision_boundary(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray,
                           ax: plt.Axes | None = None, title: str = "", margin: float = 0.5,
                           resolution: int = 200, colorbar: bool = False, point_size: float = 60) -> plt.Axes:
    """Colour the plane by ``predict(points) -> P(class 1)`` and draw the 0.5 contour (the
    decision boundary) and the data points (class 0 circles, class 1 crosses).

    ``colorbar=True`` gives this panel its own colour bar; for several panels side by side,
    draw them without and add one shared bar with ``probability_colorbar``."""
    ax = ax if ax is not None else plt.gca()
    lo, hi = X.min(axis=0) - margin, X.max(axis=0) + margin
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([g0.ravel(), g1.ravel()])
    prob = np.asarray(predict(grid)).reshape(g0.shape)
    ax.contourf(g0, g1, prob, levels=PROBABILITY_LEVELS, cmap=PROBABILITY_CMAP, alpha=0.55)
    if prob.min() < 0.5 < prob.max():
        ax.contour(g0, g1, prob, levels=[0.5], colors="k", linewidths=2)
    y = np.asarray(y)
    edge = "k" if point_size >= 20 else "none"
    ax.scatter(*X[y == 0].T, marker="o", s=point_size, c="tab:blue", edgecolors=edge, label="class 0", zorder=3)
    ax.scatter(*X[y == 1].T, marker="X", s=1.3 * point_size, c="tab:red", edgecolors=edge, label="class 1", zorder=3)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_title(title)
    if colorbar:
        probability_colorbar(ax.figure, ax)
    return ax


def probability_colorbar(fig: plt.Figure, axes: plt.Axes | list[plt.Axes]) -> Colorbar:
    """One colour bar ``P(class 1)`` for the ``axes`` drawn by ``plot_decision_boundary``
    (same colour map, bands and transparency), so that a row of panels shares one key."""
    norm = BoundaryNorm(PROBABILITY_LEVELS, plt.get_cmap(PROBABILITY_CMAP).N)
    mappable = ScalarMappable(norm=norm, cmap=PROBABILITY_CMAP)
    bar = fig.colorbar(mappable, ax=axes, label="P(class 1)", ticks=PROBABILITY_LEVELS[::2], alpha=0.55)
    return bar


def neuron_predict(w: np.ndarray, b: float) -> Callable[[np.ndarray], np.ndarray]:
    """``points -> sigma(points . w + b)``, for ``plot_decision_boundary``."""
    return lambda points: sigmoid(points @ w + b)


def lr_experiment_figure(lr: float = 0.5, steps: int = 200, gate_name: str = "OR") -> plt.Figure:
    """Lesson 01's learning-rate slider: train one neuron on ``gate_name`` with learning rate
    ``lr`` from zero weights, then show the loss curve and the final decision boundary.

    Too small a rate crawls; a larger one converges faster here (the loss of a single sigmoid
    neuron is convex); an enormous one makes huge first steps that saturate the sigmoid.
    """
    X, y = gate(gate_name)
    w, b, hist = train_neuron(X, y, lr=lr, steps=steps)
    fig, (ax_loss, ax_b) = plt.subplots(1, 2, figsize=style.figsize(3.8), layout="constrained")
    ax_loss.plot(hist.loss, color="tab:purple")
    ax_loss.set_xlabel("gradient-descent step")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_yscale("log")
    ax_loss.set_title(f"{gate_name}, learning rate {lr:g}\nfinal loss {hist.loss[-1]:.3g}")
    ax_loss.grid(alpha=0.3)
    plot_decision_boundary(neuron_predict(w, b), X, y, ax=ax_b, colorbar=True,
                           title=f"boundary after {steps} steps\n(accuracy {hist.accuracy[-1]:.0%})")
    return fig
