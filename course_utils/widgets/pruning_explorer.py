"""Lesson 14's sparsity slider: one sparsity, its magnitude threshold, and what it costs.

The lesson measures once, on a grid of sparsities, the validation accuracy of the trained
network pruned without retraining and the latency of each pruned network; the slider then
only *draws*:

* ``magnitude_threshold``: the threshold τ that magnitude pruning uses at sparsity ``s``
  (the weights with ``|w| ≤ τ`` go), the same count as ``training.pruning.magnitude_masks``;
* ``curve_point``: where the marker for the chosen sparsity sits on a measured curve, and
  whether that point was measured or lies between two measured points;
* ``pruning_explorer_figure``: the callback, a histogram of one layer's magnitudes with τ,
  and the accuracy and latency curves with a marker at the chosen sparsity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..training.pruning import check_fraction


Curve = tuple[Sequence[float], Sequence[float]]  # (share of weights removed, value)


def magnitude_threshold(magnitudes: np.ndarray, sparsity: float) -> float:
    """The pruning threshold at ``sparsity``: the ``round(sparsity · n)``-th smallest of the
    ``n`` magnitudes, so magnitude pruning removes the weights with ``|w| ≤ τ``.

    With distinct magnitudes that is exactly ``round(sparsity · n)`` weights, the count
    ``magnitude_masks`` removes (Python's ``round``: halves go to the even number). When
    nothing is removed the threshold is ``-inf``. ``sparsity`` must be in [0, 1).
    """
    check_fraction(sparsity)
    values = np.abs(np.asarray(magnitudes, dtype=np.float64)).ravel()
    if values.size == 0:
        raise ValueError("magnitude_threshold needs at least one weight magnitude, got an empty array")
    removed = int(round(sparsity * values.size))
    if removed == 0:
        return float("-inf")
    return float(np.partition(values, removed - 1)[removed - 1])


def curve_point(xs: Sequence[float], ys: Sequence[float], x: float, atol: float = 1e-9) -> tuple[float, bool]:
    """The value of a measured curve at ``x``, and whether it was measured there.

    At a grid point (``x`` equal to some ``xs[i]`` up to ``atol``) it is the measured ``ys[i]``
    (the first one if a point repeats) and ``True``; between two grid points it is the
    straight line between them and ``False``, so the figure can draw it as an estimate.
    ``xs`` must be non-decreasing and ``x`` inside ``[xs[0], xs[-1]]``: a curve is not
    extrapolated.
    """
    xs_, ys_ = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    if xs_.ndim != 1 or xs_.shape != ys_.shape or xs_.size == 0:
        raise ValueError(f"xs and ys must be 1-D and of one length, got shapes {xs_.shape} and {ys_.shape}")
    if np.any(np.diff(xs_) < 0):
        raise ValueError(f"xs must be non-decreasing, got {xs_.tolist()}")
    if not xs_[0] - atol <= x <= xs_[-1] + atol:
        raise ValueError(f"x = {x!r} lies outside the measured range [{xs_[0]}, {xs_[-1]}]")
    hits = np.flatnonzero(np.abs(xs_ - x) <= atol)
    if hits.size:
        return float(ys_[hits[0]]), True
    right = int(np.searchsorted(xs_, x))  # xs_[right - 1] < x < xs_[right]
    share = (x - xs_[right - 1]) / (xs_[right] - xs_[right - 1])
    return float(ys_[right - 1] + share * (ys_[right] - ys_[right - 1])), False


def _curves(ax, curves: Mapping[str, Curve], sparsity: float, fmt: str, atol: float) -> None:
    """Draw each curve with a marker at ``sparsity``: filled if measured (within ``atol``),
    hollow if interpolated."""
    for k, (name, (xs, ys)) in enumerate(curves.items()):
        ax.plot(xs, ys, "-o", color=f"C{k}", ms=3, lw=1.2, label=name)
        if xs[0] - atol <= sparsity <= xs[-1] + atol:
            y, measured = curve_point(xs, ys, sparsity, atol)
            ax.plot([sparsity], [y], "o", ms=10, color=f"C{k}", mfc=f"C{k}" if measured else "white", mew=2,
                    gid=f"marker: {name}")
            ax.annotate(format(y, fmt), (sparsity, y), textcoords="offset points", xytext=(8, 4),
                        fontsize=8, color=f"C{k}")
    ax.axvline(sparsity, color="0.4", lw=0.8, ls=":")


def _retrained(ax, points: Mapping[str, Curve], first_colour: int) -> None:
    """Draw retrained points as stars, in colours after those of the curves."""
    for k, (name, (xs, ys)) in enumerate(points.items(), start=first_colour):
        ax.plot(xs, ys, "*", ms=10, color=f"C{k}", mec="black", mew=0.5, label=f"{name}, retrained")


def pruning_explorer_figure(sparsity: float, magnitudes: np.ndarray, layer: np.ndarray, layer_name: str,
                            accuracy: Mapping[str, Curve], latency: Mapping[str, Curve],
                            retrained_accuracy: Mapping[str, Curve] | None = None,
                            retrained_latency: Mapping[str, Curve] | None = None,
                            latency_unit: str = "ms per batch",
                            latency_noise: tuple[float, float] | None = None) -> plt.Figure:
    """Lesson 14's slider: what pruning a share ``sparsity`` of the weights does.

    Left: the magnitudes ``|w|`` of one layer (``layer``, called ``layer_name``) with the
    global threshold τ computed from ``magnitudes`` (all prunable weights), and the share of
    this layer at or below it (a linear count axis, so the shaded area is the share removed).
    Below it, left and right: the measured ``accuracy`` and ``latency`` curves (name → (share removed, value)), each with a marker at ``sparsity`` (filled where
    measured, hollow where interpolated), and optional retrained points as stars.
    ``latency_noise``: ``(low, high)``, the spread of latencies that should be equal (e.g.
    networks doing the same arithmetic), drawn as a grey band: a latency inside it cannot be
    told from noise. One legend under both panels (same colours in both). Only draws;
    everything is measured before.
    """
    tau = magnitude_threshold(magnitudes, sparsity)
    weights = np.abs(np.asarray(layer, dtype=np.float64)).ravel()
    fig = plt.figure(figsize=(9, 8))   # two rows: readable at a page's width
    grid = fig.add_gridspec(2, 2, height_ratios=[0.8, 1])
    ax_h, ax_a, ax_t = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    counts, edges = np.histogram(weights, bins=120)
    ax_h.stairs(counts, edges, fill=True, color="0.6")
    if np.isfinite(tau):
        ax_h.axvspan(edges[0], tau, color="tab:red", alpha=0.15)
        ax_h.axvline(tau, color="tab:red", lw=1.5, label=f"τ = {tau:.4f}")
        ax_h.legend(fontsize=9, loc="upper right")
    ax_h.set(xlabel="|w|", ylabel="number of weights",
             title=f"{layer_name}: {np.mean(weights <= tau):.0%} of it at or below τ\n"
                   f"(global threshold for {sparsity:.0%} of all weights)")
    # magnitude pruning removes round(s·n) of the n weights, so its measured share differs from
    # s by up to half a weight: within one weight, a curve's point counts as measured at s
    one_weight = 1.0 / np.asarray(magnitudes).size
    _curves(ax_a, accuracy, sparsity, ".3f", one_weight)
    if latency_noise is not None:
        low, high = sorted(float(v) for v in latency_noise)
        ax_t.axhspan(low, high, color="0.5", alpha=0.25, lw=0, label=f"timing noise: {low:.1f}–{high:.1f}")
    _curves(ax_t, latency, sparsity, ".1f", one_weight)
    if retrained_accuracy:
        _retrained(ax_a, retrained_accuracy, len(accuracy))
    if retrained_latency:
        _retrained(ax_t, retrained_latency, len(latency))
    ax_a.set(xlabel="share of conv + linear weights removed", ylabel="validation accuracy", ylim=(0, 1.02),
             title="Accuracy (stars: after retraining)")
    ax_t.set(xlabel="share of conv + linear weights removed", ylabel=latency_unit, ylim=(0, None),
             title="Latency (median, CPU)")
    entries: dict[str, object] = {}
    for ax in (ax_a, ax_t):
        ax.grid(alpha=0.3)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.93, wspace=0.28, hspace=0.42)  # tight_layout: 0.7 s a move
    return fig
