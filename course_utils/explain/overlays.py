"""Heat-map overlays that keep the MRI visible under a Grad-CAM map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .gradcam import EPS


# ------------------------------------------------------------------------------------------
# Overlays
# ------------------------------------------------------------------------------------------


def _as_2d(image) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().float().numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:  # (C, H, W): the channels of a repeated gray image are equal
        image = image.mean(axis=0)
    return image


def overlay(image, cam, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """An RGB image ``(H, W, 3)`` in [0, 1]: the gray MRI with the heat map blended on top.

    The MRI is scaled to [0, 1] per image (standardised inputs display too). The heat map's
    opacity at each pixel is ``alpha × map``: where the map is zero the MRI shows unchanged,
    where it is highest the colour covers a share ``alpha`` of the pixel.
    """
    import matplotlib  # here: only when drawing

    gray = _as_2d(image)
    gray = (gray - gray.min()) / max(float(gray.max() - gray.min()), EPS)
    heat_map = _as_2d(cam).clip(0, 1)
    if heat_map.shape != gray.shape:
        raise ValueError(f"map {heat_map.shape} and image {gray.shape} differ in size; upsample the map")
    colours = matplotlib.colormaps[cmap](heat_map)[..., :3]
    opacity = alpha * heat_map[..., None]
    return ((1 - opacity) * gray[..., None] + opacity * colours).clip(0.0, 1.0)


def show_overlays(images, cams, titles: Sequence[str] | None = None, alpha: float = 0.5, ncols: int = 6,
                  title_colors: Sequence[str] | None = None, suptitle: str | None = None, size: float = 1.9,
                  cmap: str = "jet"):
    """A grid of overlays, one per image (``images`` ``(N, [C,] H, W)``, ``cams`` ``(N, H, W)``)."""
    import matplotlib.pyplot as plt  # here: only when drawing

    n = len(cams)
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.4) * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(overlay(images[i], cams[i], alpha, cmap))
            if titles is not None:
                ax.set_title(titles[i], fontsize=8, color=title_colors[i] if title_colors else "black")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig
