"""Occlusion sensitivity (Zeiler & Fergus, 2014): hide one patch at a time and watch the score.

The most direct question one can ask a classifier about a region is "what if it were not
there?". Occlusion answers it by experiment instead of by gradient: slide a square patch of
side ``patch`` with step ``stride`` over the (already preprocessed) image, fill the patch with
a ``baseline`` value, and record how much the probability of the target class drops,

    drop(window) = p_c(x) − p_c(x with the window filled).

Each pixel's value is the mean drop over all the windows that cover it, so the map is in
probability units: 0.3 means "hiding this region costs the class 0.3 of probability", a
negative value means hiding it *raises* the class. Unlike Grad-CAM's maps, these are not
rescaled to [0, 1], so two images' maps can be compared.

The baseline is a choice, and the map depends on it. For these MRI slices the course fills
the patch with *black* (pixel value 0, i.e. ``(0 − mean) / std`` in the model's input space,
see ``black_level``): the scanner's background and the padding to a square are black, so a
black patch looks like "no tissue here", something the model saw in every training image. A
grey patch (the dataset mean, 0 in input space) would look like a square object the model
never saw, and its drop would mix "the region is missing" with "there is a strange square".

The occluded copies of one image are scored in batches (``batch_size`` copies per forward
pass), which is many times faster than one pass per window.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from .gradcam import target_classes


def black_level(mean: float, std: float) -> float:
    """The value a black pixel (0) has in a model's input space, ``(0 − mean) / std``."""
    if std <= 0:
        raise ValueError(f"std must be positive, not {std}: take mean and std from the model's card")
    return (0.0 - mean) / std


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """Where the windows start along one axis: every ``stride`` pixels, plus a last window
    flush with the edge, so every pixel is covered at least once."""
    if not 1 <= patch <= size:
        raise ValueError(f"the patch ({patch} px) must be between 1 px and the image size ({size} px)")
    if stride < 1:
        raise ValueError(f"the stride must be at least 1 px, not {stride}")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def occluded_copies(image: torch.Tensor, windows: Sequence[tuple[int, int]], patch: int, baseline: float,
                    batch_size: int) -> Iterator[torch.Tensor]:
    """Batches of copies of one image ``(C, H, W)``, each with one window filled with ``baseline``."""
    for first in range(0, len(windows), batch_size):
        chunk = windows[first:first + batch_size]
        copies = image.expand(len(chunk), *image.shape).clone()
        for copy, (top, left) in zip(copies, chunk):
            copy[:, top:top + patch, left:left + patch] = baseline
        yield copies


def class_probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax of one forward pass of ``model`` (already in evaluation mode), ``(N, classes)``."""
    logits = model(x)
    if logits.ndim != 2:
        raise ValueError(f"the model must return scores of shape (N, classes), not {tuple(logits.shape)}")
    return logits.float().softmax(dim=1)


def check_images(x: torch.Tensor) -> None:
    """Raise a clear error unless ``x`` is a batch of preprocessed images ``(N, C, H, W)``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected a batch of preprocessed images (N, C, H, W), not {shape}: "
                         "use TrainedModel.preprocess, and x[i:i+1] for one image")


@torch.no_grad()
def occlusion_map(model: nn.Module, x: torch.Tensor, targets: int | Sequence[int] | None = None,
                  patch: int = 16, stride: int = 8, baseline: float = 0.0, batch_size: int = 64) -> torch.Tensor:
    """Occlusion sensitivity maps ``(N, H, W)``: the drop in the target class's probability.

    ``x``: preprocessed images ``(N, C, H, W)``; ``targets``: ``None`` (each image's predicted
    class), a class index, or one index per image; ``patch``/``stride``: the window's side and
    step in pixels; ``baseline``: the value the window is filled with, in the model's input
    space (``black_level(card.mean, card.std)`` for black). The maps explain one forward pass
    of ``model`` (no flip averaging), like Grad-CAM's. The model is put in evaluation mode
    for the call and returned to its previous mode afterwards.
    """
    check_images(x)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    height, width = x.shape[-2:]
    windows = [(top, left) for top in window_starts(height, patch, stride)
               for left in window_starts(width, patch, stride)]
    was_training = model.training
    model.eval()
    try:
        reference = class_probabilities(model, x)
        classes = target_classes(targets, reference)
        maps = torch.zeros(len(x), height, width)
        for n, (image, k) in enumerate(zip(x, classes.tolist())):
            scores = torch.cat([class_probabilities(model, copies)[:, k]
                                for copies in occluded_copies(image, windows, patch, baseline, batch_size)])
            maps[n] = spread_drops(reference[n, k] - scores, windows, patch, (height, width))
    finally:
        model.train(was_training)
    return maps


def spread_drops(drops: torch.Tensor, windows: Sequence[tuple[int, int]], patch: int,
                 size: tuple[int, int]) -> torch.Tensor:
    """A pixel map from one drop per window: each pixel gets the mean drop of the windows over it."""
    total, count = torch.zeros(size), torch.zeros(size)
    for drop, (top, left) in zip(drops.tolist(), windows):
        total[top:top + patch, left:left + patch] += drop
        count[top:top + patch, left:left + patch] += 1
    return total / count
