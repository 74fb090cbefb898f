"""The cheap classifiers of lesson 13 (course_utils.training.baselines): a logistic regression
learns what is linearly separable and not XOR; an MLP learns XOR; training is repeatable and
does not depend on the features' scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_utils.training.baselines import FeatureClassifier, feature_network, fit_feature_classifier


def blobs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian clouds in 5 dimensions, one per class, well apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (4, 5))
    y = rng.integers(0, 4, n)
    return centres[y] + rng.normal(0, 1, (n, 5)), y


def xor(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2))
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)


def test_logistic_regression_separates_blobs():
    x, y = blobs()
    clf = fit_feature_classifier(x[:300], y[:300], epochs=40, lr=1e-2)
    assert isinstance(clf, FeatureClassifier)
    assert (clf.predict(x[300:]) == y[300:]).mean() > 0.95
    probs = clf.probabilities(x[300:])
    assert probs.shape == (100, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_a_hidden_layer_learns_xor_and_a_linear_model_cannot():
    x, y = xor()
    linear = fit_feature_classifier(x[:400], y[:400], epochs=60, lr=1e-2)
    mlp = fit_feature_classifier(x[:400], y[:400], hidden=(32,), epochs=60, lr=1e-2)
    assert (linear.predict(x[400:]) == y[400:]).mean() < 0.75
    assert (mlp.predict(x[400:]) == y[400:]).mean() > 0.9


def test_training_is_repeatable_and_scale_free():
    x, y = blobs()
    a = fit_feature_classifier(x, y, hidden=(16,), epochs=5, seed=3)
    b = fit_feature_classifier(x, y, hidden=(16,), epochs=5, seed=3)
    scaled = fit_feature_classifier(x * 1000 + 7, y, hidden=(16,), epochs=5, seed=3)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert np.allclose(a.probabilities(x), scaled.probabilities(x * 1000 + 7), atol=1e-4)


def test_constant_features_and_shapes():
    x, y = blobs(100)
    x[:, 2] = 5.0                                   # a constant column must not divide by zero
    clf = fit_feature_classifier(x, y, epochs=2)
    assert np.isfinite(clf.probabilities(x)).all()
    net = feature_network(10, 4, hidden=(8, 6), dropout=0.5)
    assert net(torch.zeros(3, 10)).shape == (3, 4)
    assert sum(isinstance(m, torch.nn.Dropout) for m in net) == 2
    with pytest.raises(ValueError, match="as many labels"):
        fit_feature_classifier(x, y[:10])
