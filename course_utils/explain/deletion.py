"""Do the maps point at what the model uses? Deletion and insertion curves (Petsiuk et al., 2018).

A saliency map ranks the pixels from most to least important. If the ranking is faithful to
the model, then

* **deletion**: removing the pixels in that order (filling them with a baseline, here black)
  should make the probability of the explained class fall *fast*: a low area under the curve;
* **insertion**: starting from a blurred copy of the image and putting the original pixels
  back in that order should make the probability rise *fast*: a high area under the curve.

Each curve has ``steps + 1`` points, at the fractions 0, 1/steps, ..., 1 of the pixels
changed; the area under it (trapezoid rule on [0, 1]) is one number per image and map. A
score means little alone: the same curve for a *random* ranking (``random_saliency``) is the
baseline every map must beat. All channels of a pixel change together; ties in a map (the
flat blocks of an occlusion map) are broken at random, with a seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision.transforms.functional as TF
from torch import nn

from .gradcam import target_classes
from .occlusion import check_images, class_probabilities


def pixel_ranking(saliency: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """For maps ``(N, H, W)``: each pixel's place in its map's order, most salient first
    (``(N, H·W)``, 0 = the most salient pixel). Ties are broken at random (``seed``)."""
    if saliency.ndim != 3:
        raise ValueError(f"expected saliency maps (N, H, W), not {tuple(saliency.shape)}")
    flat = saliency.detach().float().reshape(len(saliency), -1)
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(flat.shape[1], generator=generator)
    order = shuffle[torch.argsort(-flat[:, shuffle], dim=1, stable=True)]   # pixel indices, best first
    places = torch.empty_like(order)
    places.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return places


def random_saliency(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A map of independent uniform noise: the random ranking every real map must beat."""
    return torch.rand(tuple(shape), generator=torch.Generator().manual_seed(seed))


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` blurred with a Gaussian of ``sigma`` pixels: the start of insertion."""
    check_images(x)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    kernel = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma])


@torch.no_grad()
def reveal_curves(model: nn.Module, start: torch.Tensor, end: torch.Tensor, saliency: torch.Tensor,
                  targets: int | Sequence[int] | None = None, steps: int = 32, batch_size: int = 64,
                  seed: int = 0) -> torch.Tensor:
    """Probabilities ``(N, steps + 1)`` of the target class as the pixels of ``end`` replace
    those of ``start`` in the order of ``saliency``, most salient first.

    Point ``i`` has the first ``round(i / steps · H·W)`` pixels replaced. ``targets``: ``None``
    (the class the model predicts for ``start``), a class index, or one per image. The model is in evaluation mode during the call.
    """
    check_images(start)
    if end.shape != start.shape:
        raise ValueError(f"start {tuple(start.shape)} and end {tuple(end.shape)} must have the same shape")
    if saliency.shape != (start.shape[0], *start.shape[-2:]):
        raise ValueError(f"expected one map per image, {(start.shape[0], *start.shape[-2:])}, "
                         f"not {tuple(saliency.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, not {steps}")
    n, _, height, width = start.shape
    places = pixel_ranking(saliency, seed).reshape(n, 1, 1, height, width)
    counts = torch.round(torch.linspace(0, height * width, steps + 1)).long().reshape(-1, 1, 1, 1)
    was_training = model.training
    model.eval()
    try:
        classes = target_classes(targets, class_probabilities(model, start))
        curves = torch.zeros(n, steps + 1)
        for i in range(n):
            frames = torch.where(places[i] < counts, end[i], start[i])          # (steps + 1, C, H, W)
            probs = torch.cat([class_probabilities(model, frames[j:j + batch_size])
                               for j in range(0, len(frames), batch_size)])
            curves[i] = probs[:, classes[i]]
    finally:
        model.train(was_training)
    return curves


def deletion_curves(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor,
                    targets: int | Sequence[int] | None = None, baseline: float = 0.0, steps: int = 32,
                    batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """Deletion: from the image to an all-``baseline`` image, most salient pixels first.
    ``(N, steps + 1)`` probabilities of the target class (default: the predicted class)."""
    return reveal_curves(model, x, torch.full_like(x, baseline), saliency, targets, steps, batch_size, seed)


def insertion_curves(model: nn.Module, x: torch.Tensor, saliency: torch.Tensor,
                     targets: int | Sequence[int] | None = None, sigma: float = 5.0, steps: int = 32,
                     batch_size: int = 64, seed: int = 0) -> torch.Tensor:
    """Insertion: from a blurred copy (``sigma`` px) back to the image, most salient pixels
    first. ``(N, steps + 1)`` probabilities of the target class (default: the class predicted
    for the *image*, not for its blurred copy)."""
    if targets is None:
        targets = predicted_classes(model, x).tolist()
    return reveal_curves(model, blurred(x, sigma), x, saliency, targets, steps, batch_size, seed)


@torch.no_grad()
def predicted_classes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The class of one forward pass for each image, ``(N,)``, in evaluation mode."""
    was_training = model.training
    model.eval()
    try:
        return class_probabilities(model, x).argmax(dim=1)
    finally:
        model.train(was_training)


def area_under_curve(curves: torch.Tensor) -> torch.Tensor:
    """Area under each curve ``(N, steps + 1)`` sampled evenly on [0, 1] (trapezoid rule), ``(N,)``."""
    if curves.ndim != 2 or curves.shape[1] < 2:
        raise ValueError(f"expected curves (N, points >= 2), not {tuple(curves.shape)}")
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)
