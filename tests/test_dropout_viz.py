"""Tests of lesson 05's dropout explorer: masks from ``dropout_forward`` on a trained network's
hidden layer, the mean that the 1/(1-p) scaling keeps, and single-mask against eval-mode accuracy."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_utils.numpy_nn.layers import mlp
from course_utils.numpy_nn.optim import Adam
from course_utils.numpy_nn.train import fit, predict_logits
from course_utils.widgets import dropout as viz
from course_utils import figure_style as style
from course_utils.widgets.dropout import (accuracy_curve, check_drop_probability, explore_dropout, first_hidden, masked_logits,
                                          masked_means)


@pytest.fixture(scope="module")
def hidden_row():
    """One image's hidden layer as ReLU makes it: about half the units exactly zero."""
    return np.maximum(np.random.default_rng(1).normal(size=512), 0.0)


@pytest.fixture(scope="module")
def trained():
    """A small MLP with dropout, trained on four well separated blobs (a few seconds at most)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3.0, size=(4, 20))
    y = rng.integers(0, 4, size=600)
    x = centres[y] + rng.normal(size=(600, 20))
    model = mlp([20, 64, 32, 4], rng=np.random.default_rng(0), dropout=0.3)
    fit(model, Adam(model, lr=3e-3), (x[:400], y[:400]), (x[400:], y[400:]), epochs=15, batch_size=64,
        seed=0, progress=False)
    return model, x[400:], y[400:]


@pytest.mark.parametrize("p", [1.0, 1.5, -0.1, float("nan")])
def test_rates_outside_zero_to_one_are_refused_with_the_range(p, hidden_row, trained):
    model, x, y = trained
    for call in (lambda: check_drop_probability(p), lambda: masked_means(hidden_row, p),
                 lambda: masked_logits(model, first_hidden(model, x), p, np.random.default_rng(0)),
                 lambda: accuracy_curve(model, first_hidden(model, x), y, rates=[0.0, p]),
                 lambda: explore_dropout(p, hidden_row, accuracy_curve(model, first_hidden(model, x), y, [0.0]))):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            call()
    plt.close("all")


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_the_scaling_keeps_the_mean_activation(p, hidden_row):
    stats = masked_means(hidden_row, p, n_masks=2000, seed=0)
    assert stats.reference == pytest.approx(hidden_row.mean())
    # within 2 %: without the 1/(1-p) scaling the mean would be off by a factor 1 - p (20 % or more)
    assert stats.mean == pytest.approx(stats.reference, rel=0.02)
    assert stats.unscaled.mean() == pytest.approx((1 - p) * stats.reference, rel=0.02)


def test_the_spread_over_masks_grows_with_p_as_the_theory_says(hidden_row):
    rates = (0.1, 0.3, 0.5, 0.7, 0.9)
    spreads = [masked_means(hidden_row, p, n_masks=2000, seed=0).spread for p in rates]
    assert np.all(np.diff(spreads) > 0)
    # the mean of D units each kept with probability 1-p and scaled by 1/(1-p) has variance
    # p/(1-p) * sum(h^2) / D^2
    for p, spread in zip(rates, spreads):
        theory = np.sqrt(p / (1 - p) * np.sum(hidden_row**2)) / hidden_row.size
        assert spread == pytest.approx(theory, rel=0.1)


def test_p_zero_changes_nothing(hidden_row, trained):
    stats = masked_means(hidden_row, 0.0, n_masks=50)
    np.testing.assert_allclose(stats.scaled, hidden_row.mean(), rtol=1e-12)
    assert stats.spread == pytest.approx(0.0, abs=1e-12)
    model, x, y = trained
    model.train()  # the model's own dropout layers must not act either
    logits = masked_logits(model, first_hidden(model, x), 0.0, np.random.default_rng(0))
    assert all(layer.training for layer in model.layers)  # its mode is given back
    np.testing.assert_allclose(logits, predict_logits(model, x), rtol=1e-10, atol=1e-12)


def test_first_hidden_is_the_first_linear_layer_and_relu(trained):
    model, x, _ = trained
    W, b = model.layers[0].params["W"], model.layers[0].params["b"]
    np.testing.assert_allclose(first_hidden(model, x), np.maximum(x @ W + b, 0.0))


def test_every_hidden_layer_gets_a_mask_and_masks_differ(trained, monkeypatch):
    model, x, _ = trained
    calls, original = [], viz.dropout_forward

    def counting(h, p, train, rng=None):
        calls.append(h.shape)
        return original(h, p, train, rng)

    monkeypatch.setattr(viz, "dropout_forward", counting)
    hidden = first_hidden(model, x)
    a = masked_logits(model, hidden, 0.5, np.random.default_rng(0))
    assert calls == [(len(x), 64), (len(x), 32)]  # after both hidden layers, not after the output
    b = masked_logits(model, hidden, 0.5, np.random.default_rng(1))
    assert not np.allclose(a, b)


def test_single_masks_are_less_accurate_than_eval_mode_at_high_p(trained):
    model, x, y = trained
    curve = accuracy_curve(model, first_hidden(model, x), y, rates=[0.0, 0.5, 0.9], n_masks=4)
    assert curve.single_mask.shape == (3, 4)
    assert curve.eval_mode == pytest.approx(np.mean(predict_logits(model, x).argmax(1) == y))
    assert curve.eval_mode > 0.9  # the blobs are easy: a broken network, not noise, fails this
    np.testing.assert_array_equal(curve.at(0.0), curve.eval_mode)  # p = 0 is eval mode
    assert curve.at(0.9).mean() < curve.eval_mode - 0.05
    np.testing.assert_array_equal(curve.at(0.88), curve.at(0.9))


def test_the_figure_shows_dropped_units_and_kept_units_scaled(hidden_row, trained):
    model, x, y = trained
    curve = accuracy_curve(model, first_hidden(model, x), y, rates=[0.0, 0.5], n_masks=2)
    p, n_shown = 0.4, 3
    fig = explore_dropout(p, hidden_row, curve, image=np.zeros((32, 32)), label="glioma", n_shown=n_shown)
    unit_panels = [ax for ax in fig.axes if ax.images and ax.get_title().startswith(("hidden", "mask"))]
    assert len(unit_panels) == 1 + n_shown
    reference = np.asarray(unit_panels[0].images[0].get_array()).ravel()
    np.testing.assert_allclose(reference, hidden_row)
    for ax in unit_panels[1:]:
        shown = np.asarray(ax.images[0].get_array()).ravel()
        kept = shown != 0
        np.testing.assert_allclose(shown[kept], hidden_row[kept] / (1 - p))  # scaled by 1/(1-p)
        assert 0 < np.sum(~kept & (hidden_row > 0)) < np.sum(hidden_row > 0)  # some units dropped
    assert len(fig.axes) == 1 + 1 + n_shown + 1 + 2  # image, units, colour bar, means, accuracy
    assert fig.get_size_inches()[0] <= style.MAX_WIDTH  # it fits the book's column
    assert min(t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()) >= style.MIN_FONT_SIZE
    plt.close(fig)
