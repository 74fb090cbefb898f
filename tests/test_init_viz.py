"""Tests of the initialisation explorer: the statistics it measures and the figures it draws."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_utils.widgets.initialization import (deep_mlp, distinct_units, explore_init, layer_statistics,
                                                 plot_layer_histograms, plot_std_per_layer)
from course_utils.numpy_nn.layers import softmax_cross_entropy
from course_utils import figure_style as style


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 64)), rng.integers(0, 4, size=200)


def test_layer_statistics_records_every_hidden_layer_and_matches_the_model(batch):
    x, y = batch
    model = deep_mlp(64, depth=5, width=32, activation="tanh", init="xavier")
    stats = layer_statistics(model, x, y)
    assert stats.depth == 5
    assert [a.shape for a in stats.activations] == [(200, 32)] * 5
    assert [g.shape for g in stats.act_grads] == [(200, 32)] * 5
    assert [g.shape for g in stats.weight_grads] == [(64, 32)] + [(32, 32)] * 4
    loss, _ = softmax_cross_entropy(model.forward(x), y)
    assert stats.loss == pytest.approx(loss)
    # the last hidden layer's gradient is dL/dlogits pulled back through the output layer
    _, dlogits = softmax_cross_entropy(model.forward(x), y)
    np.testing.assert_allclose(stats.act_grads[-1], dlogits @ model.layers[-1].params["W"].T)
    assert np.all(np.abs(stats.activations[0]) <= 1)  # tanh outputs


def test_too_small_init_vanishes_and_he_keeps_relu_activations_level(batch):
    x, y = batch
    small = layer_statistics(deep_mlp(64, depth=8, width=128, activation="relu", init="normal", scale=0.01), x, y)
    he = layer_statistics(deep_mlp(64, depth=8, width=128, activation="relu", init="he"), x, y)
    large = layer_statistics(deep_mlp(64, depth=8, width=128, activation="relu", init="normal", scale=0.5), x, y)
    s, h, l = small.activation_std(), he.activation_std(), large.activation_std()
    assert s[-1] < 1e-6 * s[0]  # shrinks ~ (128 * 0.01^2 / 2)^(1/2) = 0.07 per layer
    assert 0.3 < h[-1] / h[0] < 3  # level: the point of He initialisation
    assert l[-1] > 1e4 * l[0]  # grows ~ (128 * 0.25 / 2)^(1/2) = 4 per layer


def test_tanh_with_large_init_saturates(batch):
    x, y = batch
    stats = layer_statistics(deep_mlp(64, depth=6, width=128, activation="tanh", init="normal", scale=1.0), x, y)
    assert np.mean(np.abs(stats.activations[-1]) > 0.99) > 0.5


def test_zero_init_gives_no_gradient_to_hidden_weights(batch):
    x, y = batch
    stats = layer_statistics(deep_mlp(64, depth=4, width=16, activation="tanh", init="zeros"), x, y)
    assert all(np.all(g == 0) for g in stats.weight_grads)
    assert all(np.all(a == 0) for a in stats.activations)


def test_distinct_units_counts_different_columns():
    W = np.zeros((5, 4))
    assert distinct_units(W) == 1
    W[:, 2] = 1.0
    assert distinct_units(W) == 2
    assert distinct_units(np.random.default_rng(0).normal(size=(5, 4))) == 4


def test_figures_have_one_panel_per_layer_and_line(batch):
    x, y = batch
    stats = [layer_statistics(deep_mlp(64, depth=3, width=16, init=m), x, y, label=m) for m in ("xavier", "zeros")]
    fig = plot_layer_histograms(stats[0])
    assert len(fig.axes) == 2 * 3
    plt.close(fig)
    fig = plot_layer_histograms(stats[1])  # all zeros must still draw
    plt.close(fig)
    fig = plot_std_per_layer(stats)
    assert [line.get_label() for line in fig.axes[1].get_lines()] == ["xavier", "zeros"]
    plt.close(fig)


def test_explore_init_is_the_slider_callback(batch):
    x, y = batch
    fig = explore_init(x, y, activation="relu", init="normal", log10_scale=-1.0, depth=4, width=16)
    assert len(fig.axes) == 8
    assert "std 0.1" in fig._suptitle.get_text()
    plt.close(fig)
    with pytest.raises(ValueError):
        explore_init(x, y, activation="softplus")


def _smallest_text(fig: plt.Figure) -> float:
    return min(t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text())


def test_a_ten_layer_network_fits_the_page_in_more_rows(batch):
    """Ten layers used to be one 16.5-inch row with 6.5-point labels, shrunk to 43 % in the book."""
    x, y = batch
    stats = layer_statistics(deep_mlp(64, depth=10, width=16, activation="relu", init="he"), x, y, label="relu, he")
    for fig in (plot_layer_histograms(stats), plot_std_per_layer([stats] * 6)):
        assert fig.get_size_inches()[0] <= style.MAX_WIDTH
        assert _smallest_text(fig) >= style.MIN_FONT_SIZE
        plt.close(fig)
    fig = plot_layer_histograms(stats)
    assert len(fig.axes) == 2 * 10
    assert [ax.get_title().split()[0] for ax in fig.axes] == [f"L{l}" for l in range(1, 11)] * 2
    plt.close(fig)
