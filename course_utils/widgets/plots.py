"""Figures the lessons draw again and again: learning curves, confusion matrices, image
grids with predictions, feature maps.

Every function draws one figure and returns it (the notebook then calls ``plt.show()``).
Sizes follow the course's figure style (``course_utils.figure_style``): no wider than
``MAX_WIDTH``; a grid with more images than fit across gets more rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from ..figure_style import MAX_WIDTH, PAGE_WIDTH, columns_that_fit

MISTAKE_COLOR = "tab:red"
CORRECT_COLOR = "tab:green"


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x)


def plot_history(history, title: str | None = None, show_lr: bool | None = None):
    """Learning curves: loss and accuracy per epoch for training and validation.

    The best epoch (``history.best_epoch``) is marked with a dotted line. A third panel
    shows the learning rate when it changed during the run (``show_lr=None``: automatic).
    Several histories can be compared by passing a dict ``{label: history}``.
    """
    histories = history if isinstance(history, dict) else {"": history}
    if show_lr is None:
        show_lr = any(len(set(np.round(h.lr, 12))) > 1 for h in histories.values())
    ncols = 3 if show_lr else 2
    fig, axes = plt.subplots(1, ncols, figsize=(PAGE_WIDTH if ncols == 2 else MAX_WIDTH, 3.2))
    for i, (label, h) in enumerate(histories.items()):
        color = f"C{i}"
        prefix = f"{label} " if label else ""
        for ax, key in zip(axes, ("loss", "acc")):
            ax.plot(h.epochs, getattr(h, f"train_{key}"), "--", color=color, label=f"{prefix}train")
            ax.plot(h.epochs, getattr(h, f"val_{key}"), "-o", ms=3, color=color, label=f"{prefix}validation")
            if h.best_epoch:
                ax.axvline(h.best_epoch, color=color, ls=":", lw=1)
        if show_lr:
            axes[2].plot(h.epochs, h.lr, "-o", ms=3, color=color, label=label or None)
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    axes[0].legend()
    if show_lr:
        axes[2].set(xlabel="epoch", ylabel="learning rate (start of epoch)", title="learning rate", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(cm, classes: Sequence[str], normalize: bool = True, title: str | None = None, ax=None):
    """Confusion matrix with counts in every cell (rows: true class, columns: prediction).

    With ``normalize=True`` the colours show each row's fractions (the recall of that class
    on the diagonal) and each cell reads "count / percent of the row".
    """
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows != 0)
    shown = frac if normalize else cm
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.2, 1.1 * len(classes) + 1.6))
    else:
        fig = ax.figure
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            text = f"{cm[i, j]}\n{100 * frac[i, j]:.1f}%" if normalize else f"{cm[i, j]}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if shown[i, j] > 0.6 * shown.max() else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the row" if normalize else "count")
    fig.tight_layout()
    return fig


def show_image_grid(images, titles: Sequence[str] | None = None, ncols: int = 8,
                    title_colors: Sequence[str] | None = None, suptitle: str | None = None,
                    cmap: str = "gray", size: float = 1.6):
    """Show images in a grid. ``images``: ``(N, H, W)`` or ``(N, 1, H, W)`` array or tensor.

    Each image is scaled to its own minimum and maximum, so standardised and raw images
    both display well. Each panel is ``size`` inches wide; ``figure_style.columns_that_fit``
    decides how many go across (the rest go to more rows), so that titles stay readable.
    """
    images = _to_numpy(images)
    if images.ndim == 4:
        images = images[:, 0]
    n = len(images)
    ncols = columns_that_fit(n, size, ncols)
    nrows = max(1, -(-n // ncols))
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.2 * title_lines + 0.1) * nrows),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap=cmap)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9, color=title_colors[i] if title_colors is not None else "black")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_predictions(images, y_true, y_pred, classes: Sequence[str], probs=None, ncols: int = 8,
                     suptitle: str | None = None, size: float = 1.8):
    """Image grid titled "true → predicted" (and the probability of the prediction):
    green when the prediction is right, red when it is a mistake."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    titles, colors = [], []
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        title = f"{classes[t]}\n→ {classes[p]}"
        if probs is not None:
            title += f" {np.asarray(probs)[i, p]:.2f}"
        titles.append(title)
        colors.append(CORRECT_COLOR if t == p else MISTAKE_COLOR)
    return show_image_grid(images, titles, ncols=ncols, title_colors=colors, suptitle=suptitle, size=size)


def plot_feature_maps(feature_maps, n: int = 16, ncols: int = 8, title: str | None = None, size: float = 1.3):
    """The first ``n`` channels of a layer's output for one image, one panel per channel.

    ``feature_maps``: ``(C, H, W)`` or ``(1, C, H, W)`` (see ``models.feature_maps``).
    """
    maps = _to_numpy(feature_maps)
    if maps.ndim == 4:
        maps = maps[0]
    n = min(n, len(maps))
    titles = [f"channel {c}" for c in range(n)]
    fig = show_image_grid(maps[:n], titles, ncols=ncols, cmap="viridis", size=size)
    if title:
        fig.suptitle(f"{title} — {maps.shape[0]} channels of {maps.shape[1]}×{maps.shape[2]}")
        fig.tight_layout()
    return fig
