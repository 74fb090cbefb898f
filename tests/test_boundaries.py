"""The single neuron of lesson 01: AND/OR learnable, XOR not; the slider callback draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_utils import figure_style as style
from course_utils.widgets.decision_boundaries import (bce_loss, gate, lr_experiment_figure, neuron_predict,
                                                      plot_decision_boundary, probability_colorbar, train_neuron)
from course_utils.numpy_nn.gradcheck import numerical_gradient, rel_error
from course_utils.numpy_nn.layers import sigmoid


@pytest.mark.parametrize("name", ["AND", "OR", "NAND"])
def test_a_neuron_learns_linearly_separable_gates(name):
    X, y = gate(name)
    w, b, hist = train_neuron(X, y, lr=1.0, steps=2000)
    assert hist.accuracy[-1] == 1.0
    assert hist.loss[-1] < hist.loss[0] / 4
    np.testing.assert_array_equal(neuron_predict(w, b)(X) > 0.5, y == 1)


def test_a_neuron_cannot_learn_xor():
    X, y = gate("XOR")
    _, _, hist = train_neuron(X, y, lr=1.0, steps=2000, w0=np.array([0.3, -0.2]), b0=0.1)
    assert max(hist.accuracy) <= 0.75
    assert hist.loss[-1] > 0.69  # stuck near log 2: the best it can do is p = 1/2 everywhere


def test_neuron_gradient_is_the_gradient_of_the_loss():
    X, y = gate("OR")
    w, b = np.array([0.4, -0.7]), 0.2
    _, _, hist = train_neuron(X, y, lr=1.0, steps=1, w0=w, b0=b)
    step = hist.weights[0] - hist.weights[1]  # = lr * gradient
    wb = np.append(w, b)
    numeric = numerical_gradient(lambda: bce_loss(sigmoid(X @ wb[:2] + wb[2]), y), wb)
    assert rel_error(step, numeric) < 1e-7


def test_plot_decision_boundary_and_slider_callback():
    X, y = gate("AND")
    ax = plot_decision_boundary(lambda p: sigmoid(p @ np.array([5.0, 5.0]) - 7.5), X, y)
    assert len(ax.collections) >= 3  # filled contours, boundary line, points
    plt.close("all")
    for lr in (0.01, 1.0, 50.0):
        fig = lr_experiment_figure(lr=lr, steps=50, gate_name="OR")
        assert len(fig.axes) == 3  # loss, boundary, and the boundary's colour bar
        assert fig.axes[0].lines[0].get_ydata().shape == (51,)
        assert fig.axes[2].get_ylabel() == "P(class 1)"
        plt.close(fig)


def test_slider_figure_fits_the_column_with_readable_text():
    fig = lr_experiment_figure(lr=0.5, steps=20, gate_name="AND")
    assert fig.get_size_inches()[0] <= style.MAX_WIDTH
    texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels())]
    assert min(t.get_fontsize() for t in texts) >= style.MIN_FONT_SIZE
    plt.close(fig)


def test_shared_probability_colorbar_spans_zero_to_one():
    fig, axes = plt.subplots(1, 2)
    X, y = gate("OR")
    for ax in axes:
        plot_decision_boundary(lambda p: sigmoid(p @ np.array([4.0, 4.0]) - 2.0), X, y, ax=ax)
    bar = probability_colorbar(fig, list(axes))
    assert bar.ax.get_ylabel() == "P(class 1)"
    assert (bar.vmin, bar.vmax) == (0.0, 1.0)
    assert len(fig.axes) == 3  # one bar for both panels
    plt.close(fig)
