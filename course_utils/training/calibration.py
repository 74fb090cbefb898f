"""Calibration: do a model's probabilities mean what they say?

A model is *calibrated* if, among the images it labels with confidence 0.8, about 80 % are
right. The **reliability diagram** bins predictions by confidence (the largest probability)
and plots each bin's accuracy against its mean confidence; the **expected calibration error**
(ECE, Guo et al., 2017) is the gap between the two, averaged over bins weighted by their size:

    ECE = Σ_b (n_b / N) · |accuracy_b − confidence_b|.

**Temperature scaling** divides the logits by one number ``T`` before the softmax, fitted by
minimising the negative log-likelihood on *validation* data. ``T > 1`` softens overconfident
probabilities, ``T < 1`` sharpens under-confident ones (label smoothing, for one, trains
models to be under-confident); the predicted class never changes, so accuracy does not either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..numpy_nn.layers import softmax


@dataclass
class ReliabilityCurve:
    """Per confidence bin: edges, mean confidence, accuracy and count (empty bins: NaN, 0)."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def ece(self) -> float:
        filled = self.count > 0
        weights = self.count[filled] / self.count.sum()
        return float((weights * np.abs(self.accuracy[filled] - self.confidence[filled])).sum())


def reliability_curve(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> ReliabilityCurve:
    """Bin the predictions by confidence into ``n_bins`` equal-width bins of (0, 1]."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=n_bins) / count
    return ReliabilityCurve(edges, mean_conf, accuracy, count)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (0 = perfectly calibrated)."""
    return reliability_curve(probs, labels, n_bins).ece


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a constant per row, which the softmax ignores."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))


def check_temperature(temperature: float) -> float:
    """``temperature`` as a float, or a ValueError: T must be a finite number above 0."""
    t = float(temperature)
    if not np.isfinite(t) or t <= 0:
        raise ValueError(f"temperature T = {temperature!r}: it divides the logits, so it must be a finite "
                         "number above 0 (T > 1 softens the probabilities, T < 1 sharpens them)")
    return t


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: the probabilities a temperature-scaled model would give."""
    return softmax(logits_from_probs(probs) / check_temperature(temperature))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T`` that minimises the negative log-likelihood of ``labels``.

    Fit it on validation data, never on the test set. One parameter, optimised as
    ``log T`` (so ``T`` stays positive) with L-BFGS.
    """
    z = torch.tensor(logits_from_probs(probs))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def plot_reliability(curves: dict[str, ReliabilityCurve], title: str | None = None, ax=None):
    """Reliability diagram: accuracy against confidence per bin, one line per curve, with the
    diagonal of perfect calibration and each curve's ECE in the legend."""
    import matplotlib.pyplot as plt  # here: only when drawing

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfectly calibrated")
    for name, curve in curves.items():
        filled = curve.count > 0
        ax.plot(curve.confidence[filled], curve.accuracy[filled], "-o", ms=4, label=f"{name} (ECE {curve.ece:.3f})")
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="confidence (largest probability)", ylabel="accuracy in the bin")
    ax.set_title(title or "Reliability diagram", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return ax.figure
