"""What initialisation does to a deep network: per-layer activations and gradients.

Lesson 04 builds a deep MLP (``nn_numpy.mlp``), pushes one batch through it and back, and
looks at every hidden layer: how spread out are its activations, and how large is the
gradient that reaches it? With a bad initial scale both shrink (vanish) or grow (explode)
geometrically with depth; Xavier/Glorot and He/Kaiming pick the scale that keeps them level.

The functions here only *measure* and *draw*; the layers come from ``course_utils.numpy_nn.layers``.
``explore_init`` is the callback of the lesson's slider: a plain function, so it can be
tested and called without widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np

from ..numpy_nn.layers import ACTIVATIONS, Linear, Sequential, mlp, softmax_cross_entropy
from .. import figure_style as style


Array = np.ndarray


@dataclass
class LayerStats:
    """What one forward and backward pass looked like, hidden layer by hidden layer.

    ``activations[l]``: the output of hidden layer ``l`` (after its activation function);
    ``act_grads[l]``: ``dL/d activations[l]``, the gradient that reaches that output;
    ``weight_grads[l]``: ``dL/dW`` of the ``Linear`` layer that feeds hidden layer ``l``.
    Index 0 is the layer next to the input. ``loss`` is the cross-entropy of the batch.
    """

    activations: list[Array] = field(default_factory=list)
    act_grads: list[Array] = field(default_factory=list)
    weight_grads: list[Array] = field(default_factory=list)
    loss: float = float("nan")
    label: str = ""

    @property
    def depth(self) -> int:
        return len(self.activations)

    def activation_std(self) -> Array:
        """Standard deviation of each hidden layer's activations."""
        return np.array([a.std() for a in self.activations])

    def gradient_std(self) -> Array:
        """Standard deviation of the gradient with respect to each hidden layer's output."""
        return np.array([g.std() for g in self.act_grads])

    def weight_grad_norm(self) -> Array:
        """Frobenius norm of ``dL/dW`` for each hidden layer's weights."""
        return np.array([np.linalg.norm(g) for g in self.weight_grads])


def deep_mlp(in_dim: int, depth: int = 10, width: int = 256, n_classes: int = 4,
             activation: str = "tanh", init: str = "xavier", scale: float = 0.01,
             seed: int = 0) -> Sequential:
    """``depth`` hidden layers of ``width`` units (``Linear -> activation``) and a linear output.

    ``init`` and ``scale`` are passed to ``nn_numpy.init_weights`` for every layer
    (``scale`` is the standard deviation of ``"normal"`` and ignored otherwise).
    """
    sizes = [in_dim] + [width] * depth + [n_classes]
    return mlp(sizes, activation=activation, init=init, rng=np.random.default_rng(seed), scale=scale)


def layer_statistics(model: Sequential, x: Array, y: Array, label: str = "") -> LayerStats:
    """Run ``x`` forward and the cross-entropy gradient backward, recording every hidden layer.

    The network is walked layer by layer (the same ``forward``/``backward`` calls that
    ``Sequential`` makes) so that the output of each activation layer, and the gradient
    arriving at it, can be kept.
    """
    model.eval()
    activation_types = tuple(ACTIVATIONS.values())
    stats = LayerStats(label=label)
    h = x
    for layer in model.layers:
        h = layer.forward(h)
        if isinstance(layer, activation_types):
            stats.activations.append(h)
    stats.loss, dout = softmax_cross_entropy(h, y)
    hidden_grads, weight_grads = [], []
    for layer in reversed(model.layers):
        if isinstance(layer, activation_types):
            hidden_grads.append(dout)
        dout = layer.backward(dout)
        if isinstance(layer, Linear):
            weight_grads.append(layer.grads["W"])
    stats.act_grads = hidden_grads[::-1]
    # the last Linear (the output layer) feeds no hidden layer: drop it
    stats.weight_grads = weight_grads[::-1][: stats.depth]
    return stats


def _shared_range(arrays: list[Array], quantile: float = 99.5) -> float:
    """A symmetric x-range that holds ``quantile`` % of the values of every array."""
    tops = [np.percentile(np.abs(a), quantile) for a in arrays if a.size]
    top = max(tops) if tops else 1.0
    return top if np.isfinite(top) and top > 0 else 1.0


def plot_layer_histograms(stats: LayerStats, title: str | None = None, bins: int = 50,
                          max_columns: int = 5) -> plt.Figure:
    """Histograms of every hidden layer: the activations (blue, upper block of rows) and the
    gradients reaching them (red, lower block), one panel per layer, ``max_columns`` layers a row.

    Every block shares one x-range, so a layer whose values have collapsed towards zero shows
    as a thin spike next to its neighbours; each panel's title gives its standard deviation.
    A deep network gets more rows, not more width, so the figure fits the page (``style``).
    """
    depth = stats.depth
    block_rows, columns = style.grid_shape(max(depth, 1), max_columns)
    fig = plt.figure(figsize=style.figsize(0.3 + 1.55 * 2 * block_rows))
    grid = fig.add_gridspec(2 * block_rows, columns)
    rows = [("activations", stats.activations, "tab:blue"), ("gradients", stats.act_grads, "tab:red")]
    for r, (name, arrays, color) in enumerate(rows):
        top = _shared_range(arrays)
        first = None
        for l, a in enumerate(arrays):
            ax = fig.add_subplot(grid[r * block_rows + l // columns, l % columns], sharey=first)
            first = first or ax
            _draw_layer_histogram(ax, a, top, bins, color)
            ax.set_title(f"L{l + 1}  std {a.std():.1e}")
            if l % columns == 0:
                ax.set_ylabel(name)
    fig.suptitle(title or stats.label or "per-layer activations and gradients")
    fig.tight_layout()
    return fig


def _draw_layer_histogram(ax: plt.Axes, a: Array, top: float, bins: int, color: str) -> None:
    """One layer's values on the symmetric range ``[-top, top]``; exact zeros (ReLU) are counted
    in a note instead of drawn, since their spike would dwarf the rest."""
    values = a.ravel()
    zeros = float(np.mean(values == 0))
    if zeros > 0.05:
        values = values[values != 0]
        ax.text(0.97, 0.95, f"{zeros:.0%} = 0", transform=ax.transAxes, ha="right", va="top",
                fontsize=style.MIN_FONT_SIZE)
    if values.size:
        ax.hist(np.clip(values, -top, top), bins=bins, range=(-top, top), color=color, density=True)
    else:
        ax.axvline(0.0, color=color, lw=3)
    ax.set_xlim(-top, top)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)  # it would hide a bar at -top (tanh saturated at -1)
    ax.tick_params(axis="x", labelsize=style.MIN_FONT_SIZE)
    ax.set_xticks([-top, 0, top])
    ax.set_xticklabels([f"{-top:.2g}", "0", f"{top:.2g}"])


def plot_std_per_layer(stats_list: list[LayerStats], title: str | None = None) -> plt.Figure:
    """Standard deviation of activations and of gradients against depth, one line per run,
    on a log scale (a straight sloping line is geometric growth or decay). The legend sits
    under both panels so the figure keeps the page width."""
    legend_rows = -(-len(stats_list) // 3)
    height = 3.4 + 0.25 * legend_rows
    fig, (ax_a, ax_g) = plt.subplots(1, 2, figsize=style.figsize(height))
    for stats in stats_list:
        layers = np.arange(1, stats.depth + 1)
        ax_a.plot(layers, np.maximum(stats.activation_std(), 1e-30), marker="o", label=stats.label)
        ax_g.plot(layers, np.maximum(stats.gradient_std(), 1e-30), marker="o", label=stats.label)
    for ax, name in ((ax_a, "std of activations"), (ax_g, "std of gradient dL/dh")):
        ax.set_yscale("log")
        ax.set_xlabel("hidden layer")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    handles, labels = ax_g.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, (0.1 + 0.22 * legend_rows) / height, 1, 1))  # room for the legend
    return fig


def distinct_units(W: Array, tol: float = 1e-12) -> int:
    """How many *different* hidden units a weight matrix ``W`` (fan_in, fan_out) describes.

    Unit ``j`` is column ``W[:, j]``; two units are the same when their columns agree to
    ``tol``. After zero (or any constant) initialisation every column stays identical, so
    the answer stays 1 however long the network trains: the symmetry is never broken.
    """
    columns = np.asarray(W).T
    representatives: list[Array] = []
    for column in columns:
        if not any(np.max(np.abs(column - r)) <= tol for r in representatives):
            representatives.append(column)
    return len(representatives)


INIT_CHOICES = ("normal", "xavier", "he", "zeros")
ACTIVATION_CHOICES = ("tanh", "relu", "sigmoid", "gelu")


def explore_init(x: Array, y: Array, activation: str = "tanh", init: str = "normal",
                 log10_scale: float = -2.0, depth: int = 10, width: int = 256,
                 seed: int = 0) -> plt.Figure:
    """The slider callback of lesson 04: build a ``depth``-layer MLP with this activation and
    initialisation, run the batch ``(x, y)`` through it and back, draw the histograms.

    ``log10_scale`` sets the standard deviation ``10**log10_scale`` of ``"normal"``
    initialisation (a log slider: useful scales span several orders of magnitude).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    scale = 10.0**log10_scale
    model = deep_mlp(x.reshape(len(x), -1).shape[1], depth=depth, width=width, activation=activation,
                     init=init, scale=scale, seed=seed)
    what = f"normal, std {scale:.2g}" if init == "normal" else init
    stats = layer_statistics(model, x, y, label=f"{activation}, {what}")
    return plot_layer_histograms(stats)
