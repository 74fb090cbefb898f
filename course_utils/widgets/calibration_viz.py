"""Lesson 13's temperature explorer: the reliability diagram as the temperature T moves.

Temperature scaling divides a model's logits by one number T before the softmax
(``course_utils.training.calibration``). Moving T by hand shows what fitting it does: T < 1
pushes every confidence towards 1 (the diagram's points slide right and, for a small enough T,
end below the diagonal: over-confident), T > 1 pulls them towards 1 / (number of classes) (they
slide left and end above it: under-confident), and somewhere in between the expected
calibration error (ECE) is smallest. An under-confident model (points above the diagonal at
T = 1) needs T < 1, an over-confident one T > 1. The pure pieces:

* ``scaled_reliability``: the reliability curve of the probabilities scaled by T;
* ``ece_by_temperature``: the ECE at each of several temperatures (the curve beside the diagram);

and the slider's callback ``temperature_figure``. The probabilities are passed in, computed
once by the lesson; a move rescales a few thousand rows, which takes milliseconds.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, NullFormatter
import numpy as np

from ..training.calibration import (ReliabilityCurve, apply_temperature, check_temperature,
                                    expected_calibration_error, plot_reliability, reliability_curve)
from ..figure_style import figsize


def scaled_reliability(probs: np.ndarray, labels: np.ndarray, temperature: float, n_bins: int = 10) -> ReliabilityCurve:
    """The reliability curve of ``probs`` after temperature scaling by ``temperature``."""
    return reliability_curve(apply_temperature(probs, temperature), labels, n_bins)


def ece_by_temperature(probs: np.ndarray, labels: np.ndarray, temperatures: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """The ECE of ``probs`` scaled by each of ``temperatures`` (one value per temperature)."""
    return np.array([expected_calibration_error(apply_temperature(probs, t), labels, n_bins) for t in temperatures])


def temperature_figure(probs: np.ndarray, labels: np.ndarray, temperature: float, fitted: float | None = None,
                       title: str = "", temperatures: np.ndarray | None = None, eces: np.ndarray | None = None,
                       n_bins: int = 10):
    """The slider's figure: left, the reliability diagram as trained (T = 1) and at
    ``temperature``; right, the ECE against T (log scale) with ``temperature`` marked and, when
    given, the ``fitted`` temperature (fitted on other data, e.g. validation).

    ``temperatures`` / ``eces``: the ECE curve, precomputed once with ``ece_by_temperature``
    (default: computed here on 41 temperatures from 1/8 to 8). Returns the figure.
    """
    temperature = check_temperature(temperature)
    if temperatures is None:
        temperatures = np.geomspace(0.125, 8, 41)
    if eces is None:
        eces = ece_by_temperature(probs, labels, temperatures, n_bins)
    fig, (left, right) = plt.subplots(1, 2, figsize=figsize(3.9), gridspec_kw={"width_ratios": [1.1, 1]})
    curves = {"as trained (T = 1)": reliability_curve(probs, labels, n_bins),
              f"T = {temperature:.2f}": scaled_reliability(probs, labels, temperature, n_bins)}
    plot_reliability(curves, title=title or None, ax=left)
    right.plot(temperatures, eces, color="tab:gray", label="ECE at each T")
    here = curves[f"T = {temperature:.2f}"].ece
    right.plot([temperature], [here], "o", color="tab:orange", label=f"T = {temperature:.2f}: ECE {here:.3f}")
    if fitted is not None:
        at_fitted = expected_calibration_error(apply_temperature(probs, fitted), labels, n_bins)
        right.axvline(fitted, color="tab:green", ls="--", lw=1, label=f"fitted T = {fitted:.2f}: ECE {at_fitted:.3f}")
    right.axvline(1.0, color="tab:blue", ls=":", lw=1, label="T = 1 (as trained)")
    right.set_xscale("log", base=2)
    right.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))   # 0.25, not 2^-2
    right.xaxis.set_minor_formatter(NullFormatter())
    right.set(xlabel="temperature T (log scale)", ylabel="ECE", title="calibration error against T")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig
