"""Lesson 13's temperature explorer (course_utils.widgets.calibration_viz) and the temperature
checks it relies on: T = 1 changes nothing, the fitted T lowers an over-confident model's ECE,
an invalid T is refused, the figure marks T and the fitted T."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from course_utils.training import calibration
from course_utils.widgets import calibration_viz


def overconfident_case(n: int = 3000, k: int = 4, seed: int = 0):
    """Probabilities calibrated by construction, then sharpened as by T = 1/3."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.2, (n, k))
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(k, p=p) for p in true_probs])
    return calibration.apply_temperature(true_probs, 1 / 3), labels


def test_temperature_one_leaves_the_probabilities_unchanged():
    probs, labels = overconfident_case(200)
    assert np.allclose(calibration.apply_temperature(probs, 1.0), probs, atol=1e-9)
    curve = calibration_viz.scaled_reliability(probs, labels, 1.0)
    assert np.isclose(curve.ece, calibration.expected_calibration_error(probs, labels))


def test_fitted_temperature_lowers_the_ece_of_an_overconfident_model():
    probs, labels = overconfident_case()
    fitted = calibration.fit_temperature(probs, labels)
    assert fitted > 2   # over-confident: it must soften
    at_fitted, at_one = calibration_viz.ece_by_temperature(probs, labels, np.array([fitted, 1.0]))
    assert at_fitted <= at_one and at_fitted < 0.5 * at_one
    # the ECE curve falls from sharp temperatures towards the fitted one
    eces = calibration_viz.ece_by_temperature(probs, labels, np.array([0.25, 0.5, 1.0]))
    assert eces[0] > eces[1] > eces[2]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_temperature_raises_a_clear_error(bad):
    probs, labels = overconfident_case(50)
    with pytest.raises(ValueError, match="finite number above 0"):
        calibration.apply_temperature(probs, bad)
    with pytest.raises(ValueError, match="finite number above 0"):
        calibration_viz.temperature_figure(probs, labels, bad)


def test_temperature_figure_marks_the_temperature_and_the_fitted_one():
    probs, labels = overconfident_case(400)
    temperatures = np.geomspace(0.25, 8, 11)
    eces = calibration_viz.ece_by_temperature(probs, labels, temperatures)
    fig = calibration_viz.temperature_figure(probs, labels, 2.0, fitted=3.0, title="synthetic",
                                             temperatures=temperatures, eces=eces)
    diagram, curve = fig.axes
    assert diagram.get_title() == "synthetic"
    legend = [t.get_text() for t in curve.get_legend().get_texts()]
    expected = calibration.expected_calibration_error(calibration.apply_temperature(probs, 2.0), labels)
    assert f"T = 2.00: ECE {expected:.3f}" in legend
    assert any(t.startswith("fitted T = 3.00") for t in legend)
    assert any(t.startswith("T = 2.00 (ECE") for t in (x.get_text() for x in diagram.get_legend().get_texts()))


def test_fitted_temperature_sharpens_an_underconfident_model():
    """The other direction, the one label-smoothed models take: probabilities calibrated by
    construction, then softened as by T = 2, must be fitted with T < 1 (about 1/2)."""
    probs, labels = overconfident_case()
    calibrated = calibration.apply_temperature(probs, 3.0)      # undo the T = 1/3 of the helper
    timid = calibration.apply_temperature(calibrated, 2.0)
    fitted = calibration.fit_temperature(timid, labels)
    assert 0.35 < fitted < 0.7
    assert (calibration.apply_temperature(timid, 0.5).max(1) > timid.max(1)).all()   # T < 1 raises every confidence
    at_fitted, at_one = calibration_viz.ece_by_temperature(timid, labels, np.array([fitted, 1.0]))
    assert at_fitted < 0.5 * at_one


def test_temperature_axis_reads_plain_numbers():
    probs, labels = overconfident_case(200)
    fig = calibration_viz.temperature_figure(probs, labels, 0.5, temperatures=np.geomspace(0.25, 8, 6))
    formatter = fig.axes[1].xaxis.get_major_formatter()
    assert [formatter(t, 0) for t in (0.25, 0.5, 1.0, 8.0)] == ["0.25", "0.5", "1", "8"]   # not 2^-2 …
