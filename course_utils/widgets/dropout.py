"""Inside a dropout layer: what inverted dropout does to a trained network's activations.

Lesson 05 trains its MLP with inverted dropout (``course_utils.numpy_nn.layers.dropout_forward``)
and then evaluates it with dropout switched off. This module lets a learner move the drop
probability ``p`` over that trained network, applied to real validation images, and see three
things at once:

* what one random mask does to one image's first hidden layer (units dropped, the kept ones
  scaled up by ``1 / (1 - p)``);
* that the scaling keeps the layer's mean activation where it is without dropout, while the
  spread from mask to mask grows with ``p`` (and where the mean would go without the scaling);
* how accurate single-mask (training-mode) predictions are, against the one deterministic
  evaluation-mode prediction: why dropout is switched off at test time.

The masks come from ``dropout_forward`` itself; nothing here re-implements dropout. The heavy
part (the first hidden layer of every validation image, and the accuracy curve) is computed
once in the lesson; ``explore_dropout``, the slider's callback, only draws masks for one image.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from ..numpy_nn.layers import ACTIVATIONS, Sequential, check_drop_probability, dropout_forward
from .. import figure_style as style


Array = np.ndarray

_ACTIVATION_TYPES = tuple(ACTIVATIONS.values())


def _first_activation(model: Sequential) -> int:
    """Index in ``model.layers`` of the first activation layer (the end of hidden layer 1)."""
    for i, layer in enumerate(model.layers):
        if isinstance(layer, _ACTIVATION_TYPES):
            return i
    raise ValueError(f"the model has no hidden layer (no activation among {model.layers}); "
                     "build it with course_utils.numpy_nn.layers.mlp and at least one hidden size")


def first_hidden(model: Sequential, x: Array) -> Array:
    """The first hidden layer's activations (after its activation function, before any dropout)
    for every row of ``x``, in evaluation mode: what dropout acts on. Compute it once."""
    was_training = any(layer.training for layer in model.layers)
    model.eval()
    h = x
    for layer in model.layers[: _first_activation(model) + 1]:
        h = layer.forward(h)
    if was_training:
        model.train()
    return h


def masked_logits(model: Sequential, hidden: Array, p: float, rng: np.random.Generator) -> Array:
    """Logits of a *single-mask* prediction at drop rate ``p``, continuing from ``first_hidden``.

    Every image gets its own random inverted-dropout mask (``dropout_forward``) after every
    hidden layer, as in training mode, whatever rate the model was trained with. Everything
    else runs in evaluation mode (so the model's own ``Dropout`` layers do nothing). With
    ``p = 0`` this is exactly the evaluation-mode prediction.
    """
    p = check_drop_probability(p)
    was_training = any(layer.training for layer in model.layers)
    model.eval()
    h, _ = dropout_forward(hidden, p, train=True, rng=rng)
    for layer in model.layers[_first_activation(model) + 1:]:
        h = layer.forward(h)  # in evaluation mode, the model's own Dropout layers pass h through
        if isinstance(layer, _ACTIVATION_TYPES):
            h, _ = dropout_forward(h, p, train=True, rng=rng)
    if was_training:
        model.train()
    return h


@dataclass(frozen=True)
class MaskedMeans:
    """One hidden layer of one image under ``n`` random masks at drop rate ``p``.

    ``reference``: the layer's mean activation without dropout; ``scaled``: its mean under
    each mask, with inverted dropout's ``1 / (1 - p)`` scaling. Without the scaling every
    mask's mean would be ``(1 - p)`` times as large (``unscaled``).
    """

    p: float
    reference: float
    scaled: Array

    @property
    def unscaled(self) -> Array:
        return self.scaled * (1.0 - self.p)

    @property
    def mean(self) -> float:
        """The mean over masks: close to ``reference`` (that is what the scaling is for)."""
        return float(self.scaled.mean())

    @property
    def spread(self) -> float:
        """Standard deviation over masks: 0 at ``p = 0``, growing like ``sqrt(p / (1 - p))``."""
        return float(self.scaled.std())


def masked_means(h: Array, p: float, n_masks: int = 500, seed: int = 0) -> MaskedMeans:
    """The mean of one image's hidden activations ``h`` (one row) under ``n_masks`` masks.

    The same ``seed`` draws the same uniform numbers at every ``p``, so a larger ``p`` drops a
    superset of the units a smaller one drops: moving a slider up only ever darkens more units.
    """
    p = check_drop_probability(p)
    h = np.asarray(h, dtype=float).ravel()
    out, _ = dropout_forward(np.broadcast_to(h, (n_masks, h.size)), p, train=True,
                             rng=np.random.default_rng(seed))
    return MaskedMeans(p=p, reference=float(h.mean()), scaled=out.mean(axis=1))


@dataclass(frozen=True)
class AccuracyCurve:
    """Accuracy of single-mask predictions, ``single_mask[i, k]`` for rate ``rates[i]`` and mask
    draw ``k``, and of the one evaluation-mode prediction (``eval_mode``), on the same images."""

    rates: Array
    single_mask: Array
    eval_mode: float

    def at(self, p: float) -> Array:
        """The single-mask accuracies at the rate of the grid closest to ``p``."""
        return self.single_mask[int(np.argmin(np.abs(self.rates - p)))]


def accuracy_curve(model: Sequential, hidden: Array, y: Array, rates, n_masks: int = 5,
                   seed: int = 0) -> AccuracyCurve:
    """Single-mask accuracy at every rate of ``rates`` (``n_masks`` draws each) and the
    evaluation-mode accuracy, from the precomputed ``first_hidden`` activations of images ``y``."""
    rates = np.array([check_drop_probability(p) for p in rates])
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    single = np.array([[np.mean(masked_logits(model, hidden, p, rng).argmax(axis=1) == y)
                        for _ in range(n_masks)] for p in rates])
    eval_acc = float(np.mean(masked_logits(model, hidden, 0.0, rng).argmax(axis=1) == y))
    return AccuracyCurve(rates=rates, single_mask=single, eval_mode=eval_acc)


def _draw_units(ax: plt.Axes, units: Array, vmax: float, title: str) -> plt.cm.ScalarMappable:
    """One image's hidden units as a grid (16 x 32 for 512 units), black = 0."""
    side = int(np.sqrt(units.size / 2)) if units.size % 2 == 0 else 0
    shape = (side, 2 * side) if side and 2 * side * side == units.size else (1, units.size)
    im = ax.imshow(units.reshape(shape), cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return im


def explore_dropout(p: float, h: Array, curve: AccuracyCurve, image: Array | None = None,
                    label: str = "", n_shown: int = 3, n_masks: int = 500, seed: int = 0) -> plt.Figure:
    """The slider callback of lesson 05: inverted dropout at rate ``p`` on a trained network.

    Top: the image, its first hidden layer ``h`` without dropout, and under ``n_shown`` random
    masks (colour scale fixed at twice the largest activation, so that the kept units' scaling
    shows). Bottom left: the layer's mean activation under ``n_masks`` masks, with and without
    the ``1 / (1 - p)`` scaling, against the mean without dropout. Bottom right: ``curve``,
    the precomputed single-mask accuracy against ``p``, and the evaluation-mode accuracy.
    ``image`` (2-D pixels) and ``label`` only decorate the first panel. Only the one image's
    masks are drawn here, so a slider move stays fast; the same ``seed`` at a larger ``p``
    drops a superset of the units.
    """
    p = check_drop_probability(p)
    h = np.asarray(h, dtype=float).ravel()
    stats = masked_means(h, p, n_masks, seed)
    shown, _ = dropout_forward(np.broadcast_to(h, (n_shown, h.size)), p, train=True,
                               rng=np.random.default_rng(seed))
    # Fixed positions, no layout engine: a slider move must redraw quickly. Three panels a row
    # (image, layer, masks), then the two plots: the figure keeps the page width (``style``).
    unit_rows = -(-(2 + n_shown) // 3)
    height = 2.0 + 1.7 * unit_rows + 3.1
    fig = plt.figure(figsize=style.figsize(height))
    units_bottom = 1 - (0.75 + 1.7 * unit_rows) / height
    top = fig.add_gridspec(unit_rows, 3, left=0.02, right=0.88, top=1 - 0.75 / height, bottom=units_bottom,
                           wspace=0.12, hspace=0.75)
    bottom = fig.add_gridspec(1, 2, left=0.09, right=0.98, top=units_bottom - 0.55 / height,
                              bottom=0.5 / height, wspace=0.3)
    ax_image = fig.add_subplot(top[0, 0])
    if image is not None:
        ax_image.imshow(image, cmap="gray")
    ax_image.set_title(f"the image\n{label}")
    ax_image.axis("off")
    vmax = 2.0 * float(h.max()) if h.max() > 0 else 1.0
    im = _draw_units(fig.add_subplot(top[0, 1]), h, vmax, f"hidden layer 1, no dropout\nmean {h.mean():.3f}")
    active = h > 0
    for k in range(n_shown):
        _draw_units(fig.add_subplot(top[(k + 2) // 3, (k + 2) % 3]), shown[k], vmax,
                    f"mask {k + 1}: {int(np.sum(active & (shown[k] == 0)))} of {active.sum()}\n"
                    f"active units dropped\nmean {shown[k].mean():.3f}")
    fig.colorbar(im, cax=fig.add_axes((0.91, units_bottom + 0.2 / height, 0.015, (1.7 * unit_rows - 0.75) / height)),
                 label="activation")
    _draw_means(fig.add_subplot(bottom[0, 0]), stats)
    _draw_accuracy(fig.add_subplot(bottom[0, 1]), curve, p)
    fig.suptitle(f"inverted dropout at p = {p:.2f} on a trained network")
    return fig


def _draw_means(ax: plt.Axes, stats: MaskedMeans) -> None:
    """Histogram of the layer's mean under each mask, scaled and unscaled, on a fixed range."""
    top = 2.0 * stats.reference if stats.reference > 0 else 1.0
    bins = np.linspace(0.0, top, 61)
    ax.hist(np.clip(stats.scaled, 0, top), bins=bins, histtype="stepfilled", color="tab:blue", alpha=0.8,
            label=f"with 1/(1-p): mean {stats.mean:.3f}, std {stats.spread:.3f}")
    ax.hist(np.clip(stats.unscaled, 0, top), bins=bins, histtype="stepfilled", color="tab:gray", alpha=0.6,
            label=f"without scaling: mean {stats.unscaled.mean():.3f}")
    ax.axvline(stats.reference, color="black", ls="--", label=f"no dropout: {stats.reference:.3f}")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, 1.45 * ax.get_ylim()[1])  # headroom: the legend sits above the bars
    ax.set_xlabel("mean activation of hidden layer 1 (this image)")
    ax.set_ylabel(f"masks (of {stats.scaled.size})")
    ax.set_title("the scaling keeps the mean;\nthe spread grows with p")
    ax.legend(fontsize=style.MIN_FONT_SIZE, loc="upper right")


def _draw_accuracy(ax: plt.Axes, curve: AccuracyCurve, p: float) -> None:
    """Single-mask accuracy (mean and range over draws) against p, the eval-mode line, and p."""
    ax.fill_between(curve.rates, curve.single_mask.min(axis=1), curve.single_mask.max(axis=1),
                    color="tab:orange", alpha=0.3, label="single mask: range over draws")
    ax.plot(curve.rates, curve.single_mask.mean(axis=1), "o-", color="tab:orange", ms=3,
            label="single mask (training mode): mean")
    ax.axhline(curve.eval_mode, color="tab:green", label=f"no dropout (evaluation mode): {curve.eval_mode:.3f}")
    ax.axvline(p, color="black", lw=1, ls=":", label=f"p = {p:.2f}")
    ax.set_xlabel("drop probability p")
    ax.set_ylabel("validation accuracy")
    ax.set_title("one random mask per image\nvs dropout switched off")
    ax.grid(alpha=0.3)
    low, high = ax.get_ylim()
    ax.set_yticks([t for t in ax.get_yticks() if low <= t <= high])  # no accuracy ticks in the headroom
    ax.set_ylim(low, high + 0.9 * (high - low))  # headroom: the legend sits above the curves
    ax.legend(fontsize=style.MIN_FONT_SIZE, loc="upper right")
