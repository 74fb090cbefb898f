"""Calibration (course_utils.training.calibration): ECE by hand, and temperature scaling that finds the
temperature used to make overconfident probabilities."""

from __future__ import annotations

import numpy as np

from course_utils.training import calibration


def test_ece_by_hand():
    # Two bins used: confidence 0.9 (2 right of 2) and 0.6 (1 right of 2).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 0, 1, 1])
    curve = calibration.reliability_curve(probs, labels, n_bins=10)
    assert curve.count.sum() == 4
    # bin of 0.9: |1.0 - 0.9| = 0.1, weight 1/2; bin of 0.6: |0.5 - 0.6| = 0.1, weight 1/2
    assert np.isclose(curve.ece, 0.1)
    assert np.isclose(calibration.expected_calibration_error(np.eye(3), np.arange(3)), 0.0)


def test_temperature_scaling_recovers_the_distortion():
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    logits = rng.normal(0, 1.5, (n, k))
    true_probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(k, p=p) for p in true_probs])   # calibrated by construction
    overconfident = calibration.apply_temperature(true_probs, 0.5)  # logits doubled
    t = calibration.fit_temperature(overconfident, labels)
    assert 1.8 < t < 2.2
    fixed = calibration.apply_temperature(overconfident, t)
    assert calibration.expected_calibration_error(fixed, labels) < calibration.expected_calibration_error(overconfident, labels)
    assert (fixed.argmax(1) == overconfident.argmax(1)).all()  # the prediction never changes
