"""Lesson 03's 2-D surfaces, gradients and slider callback."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from course_utils.numpy_nn.gradcheck import numerical_gradient, rel_error
from course_utils import figure_style as style
from course_utils.widgets.optimizer_paths import (REGRESSION_EXTENT, REGRESSION_START, LinearRegression2D,
                                                  draw_surface, optimize_path, optimizer_paths_figure,
                                                  rosenbrock, rosenbrock_grad)


def test_gradients_match_numerical_gradients():
    problem = LinearRegression2D()
    w = np.array([0.7, 1.3])
    assert rel_error(problem.grad(w), numerical_gradient(lambda: float(problem.loss(w)), w)) < 1e-7
    assert rel_error(rosenbrock_grad(w), numerical_gradient(lambda: float(rosenbrock(w)), w)) < 1e-7


def test_minibatch_gradient_is_unbiased():
    problem = LinearRegression2D()
    rng = np.random.default_rng(0)
    w = np.array([0.0, 0.0])
    mean = np.mean([problem.grad(w, rng, batch_size=10) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(mean, problem.grad(w), rtol=0.02)


def test_surface_is_ill_conditioned_and_momentum_beats_plain_gd():
    problem = LinearRegression2D()
    assert problem.condition_number() > 50
    gap = lambda path: float(problem.loss(path[-1]) - problem.loss(problem.w_star))
    sgd = optimize_path("sgd", problem.grad, REGRESSION_START, lr=0.05, steps=100)
    momentum = optimize_path("momentum", problem.grad, REGRESSION_START, lr=0.05, steps=100)
    assert gap(momentum) < gap(sgd) / 10


def test_divergence_stops_the_path():
    problem = LinearRegression2D()
    path = optimize_path("sgd", problem.grad, REGRESSION_START, lr=1.0, steps=1000)
    assert len(path) < 1001 and np.all(np.isfinite(path))


def test_slider_callback_draws_each_optimizer():
    for name in ("sgd", "momentum", "rmsprop", "adam"):
        fig = optimizer_paths_figure(optimizer=name, lr=0.05, beta=0.8, batch_size=10, steps=30)
        assert len(fig.axes) == 3  # path, loss, and the surface's colour bar
        assert fig.get_size_inches()[0] <= style.MAX_WIDTH
        legends = [t for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert legends and min(t.get_fontsize() for t in legends) >= style.MIN_FONT_SIZE
        plt.close(fig)


def test_surface_colours_have_a_logarithmic_colour_bar():
    problem = LinearRegression2D()
    fig, ax = plt.subplots()
    contours = draw_surface(problem.loss, REGRESSION_EXTENT, ax)
    assert contours.get_cmap().name == style.SEQUENTIAL
    assert contours.norm.vmin > 0 and type(contours.norm).__name__ == "LogNorm"
    assert len(fig.axes) == 2 and "loss" in fig.axes[1].get_ylabel()
    plt.close(fig)
