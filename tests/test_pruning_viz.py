"""Lesson 14's sparsity slider: the threshold, the marker on a measured curve, the figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import to_rgba
import numpy as np
import pytest
import torch

from course_utils.training.pruning import _smallest_removed
from course_utils.widgets.pruning_explorer import curve_point, magnitude_threshold, pruning_explorer_figure

# 10 distinct magnitudes, signs mixed, in no particular order
WEIGHTS = np.array([0.7, -0.05, 0.3, -0.9, 0.12, -0.01, 0.45, 0.2, -0.6, 0.08])


@pytest.mark.parametrize("sparsity, removed, tau", [(0.0, 0, -np.inf), (0.1, 1, 0.01), (0.3, 3, 0.08),
                                                    (0.25, 2, 0.05),  # round(2.5) = 2 (half to even)
                                                    (0.5, 5, 0.2), (0.9, 9, 0.7), (0.99, 10, 0.9)])
def test_threshold_removes_exactly_round_s_n_weights_by_hand(sparsity, removed, tau):
    found = magnitude_threshold(WEIGHTS, sparsity)
    assert found == pytest.approx(tau)
    assert int(np.sum(np.abs(WEIGHTS) <= found)) == removed == round(sparsity * WEIGHTS.size)


@pytest.mark.parametrize("sparsity", [0.0, 0.15, 0.5, 0.85, 0.95])
def test_threshold_agrees_with_the_library_masks(sparsity):
    magnitudes = np.random.default_rng(1).permutation(np.linspace(0.001, 1.0, 1000))
    keep = _smallest_removed(torch.from_numpy(magnitudes), sparsity).numpy()
    assert np.array_equal(~keep, magnitudes <= magnitude_threshold(magnitudes, sparsity))


def test_threshold_grows_with_sparsity():
    magnitudes = np.abs(np.random.default_rng(0).normal(size=5000))
    taus = [magnitude_threshold(magnitudes, s) for s in np.linspace(0.01, 0.99, 50)]
    assert np.all(np.diff(taus) >= 0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_the_unit_interval_raises(bad):
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        magnitude_threshold(WEIGHTS, bad)


def test_threshold_of_no_weights_raises():
    with pytest.raises(ValueError, match="empty"):
        magnitude_threshold(np.array([]), 0.5)


def test_curve_point_measured_at_grid_points_interpolated_between():
    xs, ys = [0.0, 0.5, 0.9], [0.8, 0.6, 0.2]
    assert curve_point(xs, ys, 0.5) == (0.6, True)
    assert curve_point(xs, ys, 0.0) == (0.8, True)
    assert curve_point(xs, ys, 0.9) == (0.2, True)
    y, measured = curve_point(xs, ys, 0.25)          # halfway from 0.8 to 0.6
    assert not measured and y == pytest.approx(0.7)
    y, measured = curve_point(xs, ys, 0.8)           # three quarters from 0.6 to 0.2
    assert not measured and y == pytest.approx(0.3)


def test_curve_point_with_a_repeated_grid_point_takes_the_first():
    assert curve_point([0.0, 0.4, 0.4, 1.0 - 1e-3], [1.0, 2.0, 3.0, 4.0], 0.4) == (2.0, True)
    y, measured = curve_point([0.0, 0.4, 0.4, 0.8], [1.0, 2.0, 3.0, 5.0], 0.6)
    assert not measured and y == pytest.approx(4.0)  # between the second 0.4 (3.0) and 0.8 (5.0)


@pytest.mark.parametrize("x", [-0.01, 0.95])
def test_curve_point_does_not_extrapolate(x):
    with pytest.raises(ValueError, match="outside the measured range"):
        curve_point([0.0, 0.5, 0.9], [1.0, 0.5, 0.1], x)


def test_curve_point_rejects_unsorted_or_mismatched_curves():
    with pytest.raises(ValueError, match="non-decreasing"):
        curve_point([0.0, 0.6, 0.5], [1.0, 0.5, 0.1], 0.2)
    with pytest.raises(ValueError, match="one length"):
        curve_point([0.0, 0.5], [1.0, 0.5, 0.1], 0.2)


def _figure_inputs():
    rng = np.random.default_rng(0)
    magnitudes = np.abs(rng.normal(size=300_000))
    grid = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95]
    accuracy = {"magnitude": (grid, [0.9, 0.9, 0.88, 0.8, 0.6, 0.3, 0.25]),
                "channels": ([0.0, 0.12, 0.33, 0.5, 0.72, 0.9, 0.95], [0.9, 0.7, 0.5, 0.4, 0.3, 0.25, 0.25])}
    latency = {"magnitude": (grid, [20.0] * 7), "channels": (accuracy["channels"][0], [20, 17, 12, 8, 5, 2, 1.5])}
    retrained = {"one-shot": ([0.3, 0.9], [0.9, 0.7])}
    return magnitudes, magnitudes[:200_000], accuracy, latency, retrained


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.65])
def test_figure_has_three_panels_and_markers_on_the_curves(sparsity):
    magnitudes, layer, accuracy, latency, retrained = _figure_inputs()
    fig = pruning_explorer_figure(sparsity, magnitudes, layer, "features.3.0.weight", accuracy, latency,
                                  retrained_accuracy=retrained, retrained_latency={"one-shot": ([0.3, 0.9], [20, 20])})
    fig.canvas.draw()
    try:
        ax_h, ax_a, ax_t = fig.axes
        assert "features.3.0.weight" in ax_h.get_title()
        assert f"{sparsity:.0%}" in ax_h.get_title()
        # one vertical line at tau in the histogram, unless nothing is removed
        assert len(ax_h.lines) == (0 if sparsity == 0 else 1)
        if sparsity:
            assert ax_h.lines[0].get_xdata()[0] == pytest.approx(magnitude_threshold(magnitudes, sparsity))
        # the marker of each curve sits on the curve at the chosen sparsity
        markers = [line for line in ax_a.lines if str(line.get_gid()).startswith("marker")]
        assert len(markers) == 2
        for line, (xs, ys) in zip(markers, accuracy.values()):
            assert line.get_xdata()[0] == sparsity
            y, measured = curve_point(xs, ys, sparsity)
            assert line.get_ydata()[0] == pytest.approx(y)
            assert (to_rgba(line.get_markerfacecolor()) != to_rgba("white")) == measured  # hollow: interpolated
    finally:
        plt.close(fig)


def test_figure_draws_the_timing_noise_band_only_when_given():
    magnitudes, layer, accuracy, latency, _ = _figure_inputs()
    fig = pruning_explorer_figure(0.5, magnitudes, layer, "features.3.0.weight", accuracy, latency,
                                  latency_noise=(21.5, 19.0))
    try:
        ax_t = fig.axes[2]
        bands = [p for p in ax_t.patches if p.get_label().startswith("timing noise")]
        assert len(bands) == 1
        band = bands[0]   # a Rectangle (matplotlib >= 3.9) or a Polygon, y in data units
        ys = [band.get_y(), band.get_y() + band.get_height()] if hasattr(band, "get_height") else band.get_xy()[:, 1]
        assert min(ys) == pytest.approx(19.0) and max(ys) == pytest.approx(21.5)   # low and high, in either order
        assert "timing noise: 19.0–21.5" in [t.get_text() for t in fig.legends[0].get_texts()]
    finally:
        plt.close(fig)
    fig = pruning_explorer_figure(0.5, magnitudes, layer, "features.3.0.weight", accuracy, latency)
    try:
        assert not [p for p in fig.axes[2].patches if p.get_label().startswith("timing noise")]
    finally:
        plt.close(fig)


def test_curve_point_tolerance_decides_measured():
    xs, ys = [0.0, 0.7000004, 0.8], [0.9, 0.5, 0.3]
    assert curve_point(xs, ys, 0.7)[1] is False                     # default: 1e-9, off by 4e-7
    assert curve_point(xs, ys, 0.7, atol=1e-6) == (0.5, True)


def test_a_share_within_one_weight_of_the_grid_counts_as_measured():
    """Magnitude pruning removes round(s·n) weights, so the measured share is s only up to half
    a weight (0.7 · 425104 is not a whole number): its marker must still be filled."""
    magnitudes, layer, accuracy, latency, _ = _figure_inputs()
    n = magnitudes.size
    grid = [0.0, 0.1 + 0.4 / n, 0.3 - 0.3 / n, 0.5, 0.7 + 0.5 / n, 0.9, 0.95]
    accuracy = {"magnitude": (grid, accuracy["magnitude"][1]), "channels": accuracy["channels"]}
    fig = pruning_explorer_figure(0.7, magnitudes, layer, "features.3.0.weight", accuracy, latency)
    try:
        marker = [line for line in fig.axes[1].lines if line.get_gid() == "marker: magnitude"][0]
        assert to_rgba(marker.get_markerfacecolor()) != to_rgba("white")   # filled: measured
        assert marker.get_ydata()[0] == pytest.approx(0.6)
        channels = [line for line in fig.axes[1].lines if line.get_gid() == "marker: channels"][0]
        assert to_rgba(channels.get_markerfacecolor()) == to_rgba("white")  # 0.72 measured, 0.7 is read off a line
    finally:
        plt.close(fig)
