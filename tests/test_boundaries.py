"""The single neuron of lesson 01: AND/OR learnable, XOR not; the slider callback draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_utils.widgets.decision_boundaries import (bce_loss, gate, lr_experiment_figure, neuron_predict,
                                                      plot_decision_boundary, train_neuron)
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
        assert len(fig.axes) == 2
        assert fig.axes[0].lines[0].get_ydata().shape == (51,)
        plt.close(fig)
