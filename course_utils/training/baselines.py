"""Small classifiers on fixed features, trained in seconds: the yardsticks of lesson 13.

To measure how much a split flatters, lesson 13 trains the *same* cheap models on the
official split and on the grouped split and scores each on its own test part. They must be
cheap enough to train twice inside the lesson: a multinomial logistic regression
(``hidden=()``) or a small multilayer perceptron on fixed feature vectors, such as the
pixels of a 32 px thumbnail or the features of a frozen pretrained backbone
(``course_utils.training.features``).

``fit_feature_classifier`` standardises the features with the training set's mean and
standard deviation (kept with the model, so new data is scaled the same way), then trains
with Adam, an L2 penalty and mini-batches in a fixed order (``seed``): the same call gives
the same model on the same machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class FeatureClassifier:
    """A trained classifier on feature vectors and the standardisation it was trained with."""

    model: nn.Module
    mean: torch.Tensor
    std: torch.Tensor

    @torch.no_grad()
    def probabilities(self, x) -> np.ndarray:
        """``(N, classes)`` softmax probabilities for features ``x`` ``(N, D)``."""
        self.model.eval()
        z = (torch.as_tensor(x, dtype=torch.float32) - self.mean) / self.std
        return torch.softmax(self.model(z), dim=1).numpy()

    def predict(self, x) -> np.ndarray:
        """The most probable class per row of ``x``."""
        return self.probabilities(x).argmax(axis=1)


def feature_network(n_features: int, n_classes: int, hidden: Sequence[int] = (), dropout: float = 0.0) -> nn.Module:
    """A linear layer (``hidden=()``: logistic regression) or an MLP with ReLU hidden layers of
    the given widths, each followed by dropout when ``dropout > 0``."""
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout else [])
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def fit_feature_classifier(x, y, *, hidden: Sequence[int] = (), n_classes: int | None = None, epochs: int = 30,
                           lr: float = 1e-3, weight_decay: float = 1e-4, dropout: float = 0.0,
                           batch_size: int = 128, seed: int = 0) -> FeatureClassifier:
    """Train a classifier on features ``x`` ``(N, D)`` with labels ``y`` ``(N,)``.

    Features are standardised per dimension with the training mean and standard deviation
    (a constant dimension is left unscaled). ``weight_decay`` is an L2 penalty on every
    weight (Adam's ``weight_decay``), the usual regularisation of a logistic regression.
    """
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as feature rows, and at least one: got {len(x)} rows, {len(y)} labels")
    n_classes = n_classes or int(y.max()) + 1
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    z = (x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = feature_network(x.shape[1], n_classes, hidden, dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(z), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss_fn(model(z[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    return FeatureClassifier(model, mean, std)
