"""One adversarial example: the fast gradient sign method (FGSM; Goodfellow et al., 2015).

Near an input ``x`` the loss is almost linear, ``L(x + δ) ≈ L(x) + δ·∇ₓL``. Among all
changes with every pixel moved by at most ε (``‖δ‖∞ ≤ ε``), the one that raises this linear
approximation most is ``δ = ε·sign(∇ₓL)``, and it raises it by ``ε·‖∇ₓL‖₁``: a sum over all
pixels, so a change far too small to see in any one pixel can add up to a large change of the
score. FGSM takes that one step,

    x' = x + ε · sign(∇ₓ L(model(x), y)),

with ``L`` the cross-entropy of the true label ``y``.

ε is given in *pixel* units (pixels in [0, 1], so ε = 1/255 is one grey level of an 8-bit
image), while the model sees standardised inputs ``(pixel − mean) / std``. One pixel unit is
``1 / std`` input units, so the step is taken in input space with ``ε / std``; the result is
clipped to the valid pixel range, so the perturbed image is still an image. Every input
changes by at most ε pixel units, and most by exactly ε (only those clipped at black or white
change less).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .occlusion import check_images, class_probabilities


@dataclass
class AdversarialExample:
    """Inputs before and after an FGSM step, in the model's input space, with the model's
    probabilities for both. ``epsilon`` is in pixel units, ``step`` the same in input units."""

    original: torch.Tensor        # (N, C, H, W)
    perturbed: torch.Tensor       # (N, C, H, W)
    labels: torch.Tensor          # (N,) the labels whose loss was raised
    epsilon: float
    step: float
    original_probs: torch.Tensor  # (N, classes)
    perturbed_probs: torch.Tensor

    @property
    def original_predictions(self) -> torch.Tensor:
        return self.original_probs.argmax(dim=1)

    @property
    def perturbed_predictions(self) -> torch.Tensor:
        return self.perturbed_probs.argmax(dim=1)

    @property
    def flipped(self) -> torch.Tensor:
        """Which images' predicted class changed, ``(N,)`` booleans."""
        return self.original_predictions != self.perturbed_predictions

    def pixel_change(self, std: float) -> torch.Tensor:
        """``x' − x`` in pixel units (the same ``std`` as the attack used)."""
        return (self.perturbed - self.original) * std


def input_gradient(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``∇ₓ`` of the summed cross-entropy of ``labels``, for the model in evaluation mode.

    Only the input's gradient is computed: the parameters' ``.grad`` stay untouched.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, [x])
    return gradient


def fgsm(model: nn.Module, x: torch.Tensor, labels: int | Sequence[int] | torch.Tensor, epsilon: float,
         mean: float = 0.0, std: float = 1.0, pixel_range: tuple[float, float] = (0.0, 1.0)) -> AdversarialExample:
    """One FGSM step of size ``epsilon`` (pixel units) on preprocessed images ``x`` ``(N, C, H, W)``.

    ``labels``: the true class of each image (or one for all); ``mean``, ``std``: the model's
    input standardisation (``card.mean``, ``card.std``); ``pixel_range``: where pixels must stay.
    The model is put in evaluation mode and returned to its previous mode afterwards.
    """
    check_images(x)
    if not epsilon >= 0:
        raise ValueError(f"epsilon is a size in pixel units and must be >= 0, not {epsilon}")
    if std <= 0:
        raise ValueError(f"std must be positive, not {std}: take mean and std from the model's card")
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.ndim == 0:
        labels = labels.expand(len(x))
    if labels.shape != (len(x),):
        raise ValueError(f"{labels.numel()} labels for a batch of {len(x)} images")
    step = epsilon / std
    low, high = ((value - mean) / std for value in pixel_range)
    was_training = model.training
    model.eval()
    try:
        gradient = input_gradient(model, x, labels)
        perturbed = (x + step * gradient.sign()).clamp(low, high).detach()
        with torch.no_grad():
            before, after = class_probabilities(model, x), class_probabilities(model, perturbed)
    finally:
        model.train(was_training)
    return AdversarialExample(x.detach(), perturbed, labels, float(epsilon), step, before, after)
