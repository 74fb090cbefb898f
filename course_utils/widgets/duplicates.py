"""Lesson 13's duplicate-threshold explorer: which pairs a similarity threshold calls copies.

The audit (``course_utils.data.audit``) calls two images near duplicates when the correlation
of their 64 px thumbnails, best of four orientations, reaches a threshold. Whether a number is
the right one is judged by *looking* at the pairs on either side of it, and by how many pairs
and images it flags. The pure pieces:

* ``flagged_counts``: pairs and distinct images at or above each threshold (a curve);
* ``pairs_around``: the ``k`` pairs just at or above a threshold and the ``k`` just below it;

and the slider's callback ``threshold_figure``, which draws both from candidate pairs that the
lesson computes once (``audit.similar_pairs`` with a low threshold), so each move only sorts
and loads a few images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter, ScalarFormatter
import numpy as np

from ..figure_style import MAX_WIDTH


def _similarities(pairs: dict[str, np.ndarray]) -> np.ndarray:
    """The pairs' similarities as a 1-D float array, checked against ``i`` and ``j``."""
    similarity = np.asarray(pairs["similarity"], dtype=np.float64)
    if not (len(similarity) == len(pairs["i"]) == len(pairs["j"])):
        raise ValueError(f"pairs have {len(pairs['i'])} i, {len(pairs['j'])} j and {len(similarity)} similarities; "
                         "pass one dict from audit.similar_pairs (the arrays must have one entry per pair)")
    return similarity


def flagged_counts(pairs: dict[str, np.ndarray], thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How many pairs, and how many distinct images, a threshold flags: ``(pairs, images)``.

    A pair is flagged at ``t`` when its similarity is ``>= t``; an image when at least one of
    its pairs is. Both counts are non-increasing in ``t``. Computed with one sort: an image is
    flagged up to its best pair's similarity.
    """
    similarity = _similarities(pairs)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    ends = np.concatenate([pairs["i"], pairs["j"]]).astype(np.int64)
    best = np.full(int(ends.max()) + 1 if len(ends) else 0, -np.inf)
    np.maximum.at(best, ends, np.concatenate([similarity, similarity]))
    best = np.sort(best[np.isfinite(best)])
    n_pairs = len(similarity) - np.searchsorted(np.sort(similarity), thresholds, side="left")
    n_images = len(best) - np.searchsorted(best, thresholds, side="left")
    return n_pairs, n_images


def pairs_around(pairs: dict[str, np.ndarray], threshold: float, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` pairs just at or above ``threshold`` (lowest similarity first) and
    of the ``k`` just below it (highest first): the borderline cases a threshold decides.

    Fewer are returned where fewer exist on a side. Ties are broken by pair index.
    """
    if k < 0:
        raise ValueError(f"k = {k}: ask for zero or more pairs on each side")
    similarity = _similarities(pairs)
    order = np.argsort(similarity, kind="stable")
    cut = np.searchsorted(similarity[order], threshold, side="left")
    above = order[cut : cut + k]
    below = order[max(cut - k, 0) : cut][::-1]
    return above, below


def _pair_caption(pairs: dict[str, np.ndarray], p: int, labels: np.ndarray, classes: Sequence[str],
                  orientations: Sequence[str] | None) -> str:
    """``s=0.99123, notumor / notumor`` and, when known, the orientation that matched.

    The similarity is cut (not rounded) to 5 decimals, so that a pair just below a threshold
    such as 0.99 never reads 0.99000."""
    a, b = int(pairs["i"][p]), int(pairs["j"][p])
    shown = np.floor(float(pairs["similarity"][p]) * 1e5 + 1e-6) / 1e5   # + 1e-6: 0.57 * 1e5 is 56999.99…
    text = f"s={shown:.5f}\n{classes[labels[a]]} / {classes[labels[b]]}"
    if orientations is not None and "orientation" in pairs:
        text += f"\n{orientations[int(pairs['orientation'][p])]}"
    return text


def fit_tile(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (2-D) resampled (nearest pixel) to fit a ``size`` × ``size`` tile, aspect kept,
    centred on black: so pairs of any sizes can share one mosaic (one axes draws fast)."""
    image = np.asarray(image)
    if image.ndim != 2 or min(image.shape) == 0:
        raise ValueError(f"expected a 2-D grey image, got shape {image.shape}; load it in mode 'L' "
                         "(course_utils.data.load_image does)")
    scale = size / max(image.shape)
    h, w = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    rows = np.minimum((np.arange(h) / scale).astype(int), image.shape[0] - 1)
    cols = np.minimum((np.arange(w) / scale).astype(int), image.shape[1] - 1)
    tile = np.zeros((size, size), dtype=np.float64)
    top, left = (size - h) // 2, (size - w) // 2
    tile[top : top + h, left : left + w] = image[rows][:, cols]
    return tile


def threshold_figure(pairs: dict[str, np.ndarray], threshold: float, load_image: Callable[[int], np.ndarray],
                     labels: np.ndarray, classes: Sequence[str], k: int = 3, audit_threshold: float | None = None,
                     orientations: Sequence[str] | None = None, curve: np.ndarray | None = None, tile: int = 128):
    """The slider's figure: flagged pairs and images against the threshold (with a marker at
    ``threshold``), and below it the ``k`` pairs just above and the ``k`` just below it, each
    pair drawn one image above the other with its similarity and labels.

    ``pairs``: candidate pairs (``audit.similar_pairs`` at a threshold below the slider's range);
    ``load_image(index)``: the 2-D grey picture of image ``index`` (e.g. its original file),
    shown in a ``tile`` px square; ``labels``: the class index of every image; ``curve``: the
    thresholds of the count curve (default: 200 steps over the pairs' range). The pairs share
    one mosaic image, so a move redraws two axes, not a dozen. Returns the figure.
    """
    similarity = _similarities(pairs)
    if curve is None:
        low = float(similarity.min()) if len(similarity) else threshold
        curve = np.linspace(min(low, threshold), 1.0, 200)
    n_pairs, n_images = flagged_counts(pairs, curve)
    here_pairs, here_images = (int(n[0]) for n in flagged_counts(pairs, np.array([threshold])))
    above, below = pairs_around(pairs, threshold, k)

    fig, (ax, mosaic_ax) = plt.subplots(2, 1, figsize=(min(1.45 * 2 * k + 0.6, MAX_WIDTH), 6.6), height_ratios=[1, 1.7])
    ax.plot(curve, n_pairs, label="pairs flagged")
    ax.plot(curve, n_images, label="images in a flagged pair")
    ax.plot([threshold, threshold], [here_pairs, here_images], "ko", ms=5)
    ax.axvline(threshold, color="k", lw=1, label=f"threshold {threshold:.3f}: {here_pairs} pairs, {here_images} images")
    if audit_threshold is not None:
        ax.axvline(audit_threshold, color="tab:red", ls="--", lw=2, zorder=3,  # visible over the black line
                   label=f"the audit's threshold {audit_threshold}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())   # plain numbers: faster to draw than 10^x labels
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="similarity threshold", ylabel="count (log)")
    ax.legend(fontsize=8, loc="lower left")

    gap = tile // 8
    mosaic = np.full((2 * tile + gap, 2 * k * (tile + gap) - gap), np.nan)
    for n, chosen in enumerate((above, below)):
        for m, p in enumerate(chosen):
            x = (n * k + m) * (tile + gap)
            mosaic[:tile, x : x + tile] = fit_tile(load_image(int(pairs["i"][p])), tile)
            mosaic[tile + gap :, x : x + tile] = fit_tile(load_image(int(pairs["j"][p])), tile)
            mosaic_ax.text(x + tile / 2, -4, _pair_caption(pairs, int(p), labels, classes, orientations),
                           ha="center", va="bottom", fontsize=8, color="tab:red" if n == 0 else "tab:blue")
    mosaic_ax.imshow(np.ma.masked_invalid(mosaic), cmap="gray", interpolation="nearest")
    mosaic_ax.set_xticks([k * (tile + gap) / 2 - gap / 2, (3 * k * (tile + gap)) / 2 - gap / 2],
                         [f"{len(above)} pairs just above (flagged)", f"{len(below)} pairs just below (not flagged)"])
    mosaic_ax.tick_params(length=0, labelsize=9)
    mosaic_ax.set_yticks([])
    for spine in mosaic_ax.spines.values():
        spine.set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.97, bottom=0.04, hspace=0.5)
    return fig
