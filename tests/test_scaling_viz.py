"""Tests of lesson 11's compound-scaling slider: the numbers behind it and the figure it draws."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from course_utils.models import efficientnet as E
from course_utils.widgets.scaling import compound_scaling_figure, flops_factor, published_points

B0_STAGES = [(16, 1), (24, 2), (40, 2), (80, 3), (112, 3), (192, 4), (320, 1)]  # the paper's Table 1


@pytest.fixture(scope="module")
def b0_stages():
    return E.stage_shapes("b0")


def test_flops_factor_by_hand():
    assert flops_factor(2.0, 3.0, 0.5) == pytest.approx(4.5)   # 2 · 9 · 0.25
    assert flops_factor(1.0, 2.0, 1.0) == pytest.approx(4.0)   # twice the channels: four times the cost


def test_cost_at_phi_one_is_alpha_beta_squared_gamma_squared():
    s = E.compound_scale(1.0)
    product = flops_factor(s["depth"], s["width"], s["resolution"])
    assert product == pytest.approx(1.2 * 1.1 ** 2 * 1.15 ** 2)
    assert product == pytest.approx(1.92, abs=0.005)
    assert product == pytest.approx(s["flops"])


def test_cost_grows_with_phi_and_stays_below_two_to_the_phi():
    phis = np.arange(0.0, 7.01, 0.1)
    s = E.compound_scale(phis)
    product = flops_factor(s["depth"], s["width"], s["resolution"])
    np.testing.assert_allclose(product, s["flops"])
    for key in ("depth", "width", "resolution", "flops"):
        assert np.all(np.diff(s[key]) > 0), key
    assert np.all(product[1:] < 2.0 ** phis[1:])   # α β² γ² = 1.92 < 2


@pytest.mark.parametrize("phi", [-0.1, np.array([0.0, 1.0, -1.0])])
def test_negative_phi_is_refused(phi):
    with pytest.raises(ValueError, match="phi must be >= 0"):
        E.compound_scale(phi)


@pytest.mark.parametrize("phi", [-0.5, 7.5])
def test_figure_refuses_phi_outside_the_slider(phi, b0_stages):
    with pytest.raises(ValueError, match=r"phi must lie in \[0, 7"):
        compound_scaling_figure(phi, b0_stages)


def test_implied_phi_inverts_the_rule():
    phis = E.implied_phi(E.Scaling(width=1.1 ** 3, depth=1.2 ** 2, resolution=448, dropout=0.2))
    assert phis["width"] == pytest.approx(3.0)
    assert phis["depth"] == pytest.approx(2.0)
    assert phis["resolution"] == pytest.approx(math.log(2) / math.log(1.15))
    assert E.implied_phi(E.EFFICIENTNETS["b0"]) == {"width": 0.0, "depth": 0.0, "resolution": 0.0}


def test_published_points_use_the_published_multipliers():
    points = published_points()
    assert list(points) == list(E.EFFICIENTNETS)
    assert points["b0"] == {"phi": 0.0, "depth": 1.0, "width": 1.0, "resolution": 1.0, "flops": 1.0}
    assert points["b7"]["flops"] == pytest.approx(3.1 * 2.0 ** 2 * (600 / 224) ** 2)
    assert points["b7"]["phi"] == pytest.approx(math.log(600 / 224) / math.log(1.15))


def test_stage_shapes_read_b0_from_torchvision(b0_stages):
    assert b0_stages == B0_STAGES


@pytest.mark.parametrize("name", ["b3", "b7"])
def test_scaled_stages_rebuild_torchvision_models_from_b0(name, b0_stages):
    s = E.EFFICIENTNETS[name]
    assert E.scaled_stages(b0_stages, s.width, s.depth) == E.stage_shapes(name)


def stage_rectangles(ax):
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    filled = [(round(r.get_height()), round(r.get_width())) for r in rects if r.get_fill()]
    outline = [(round(r.get_height()), round(r.get_width())) for r in rects if not r.get_fill()]
    return filled, outline


def test_figure_shows_the_scaled_network(b0_stages):
    phi = 3.0
    fig = compound_scaling_figure(phi, b0_stages)
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 4
        multipliers, cost, network, image = fig.axes
        # both top panels say in their legend what the dots are
        for ax in (multipliers, cost):
            assert "published B0…B7" in [t.get_text() for t in ax.get_legend().get_texts()]
        s = E.compound_scale(phi)
        filled, outline = stage_rectangles(network)
        assert filled == E.scaled_stages(b0_stages, s["width"], s["depth"])
        assert outline == b0_stages
        square = [p for p in image.patches if p.get_fill()][0]
        assert square.get_width() == pytest.approx(224 * 1.15 ** phi)
        assert f"{s['flops']:.1f}" in cost.get_title() and f"{2 ** phi:.1f}" in cost.get_title()
        # the limits are those of phi = 7, so that the picture grows with the slider
        assert image.get_xlim()[1] == pytest.approx(1.05 * 224 * 1.15 ** 7)
    finally:
        plt.close(fig)


def test_figure_at_phi_zero_is_b0(b0_stages):
    fig = compound_scaling_figure(0.0, b0_stages)
    try:
        filled, outline = stage_rectangles(fig.axes[2])
        assert filled == outline == b0_stages
    finally:
        plt.close(fig)


def test_figure_fits_the_page_with_readable_text(b0_stages):
    from course_utils import figure_style as style

    style.apply()
    fig = compound_scaling_figure(3.0, b0_stages)
    try:
        assert fig.get_size_inches()[0] <= style.MAX_WIDTH
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        assert texts and min(t.get_fontsize() for t in texts) >= style.MIN_FONT_SIZE
    finally:
        plt.close(fig)
