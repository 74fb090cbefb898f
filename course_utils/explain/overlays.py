"""Heat-map overlays that keep the MRI visible under a Grad-CAM map.

The maps are drawn with ``HEAT_CMAP`` ("inferno"), a perceptually uniform colour map: equal
steps in the map's value look like equal steps in colour, and its brightness rises
monotonically, so the strongest evidence is also the brightest colour and the map still reads
in gray print or to a reader with a colour-vision deficiency. The rainbow "jet" map, common in
Grad-CAM figures, does neither: its bright yellow and cyan bands suggest edges that are not in
the map. Every figure of a map carries a colour bar (``add_heat_colorbar``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..figure_style import MIN_FONT_SIZE, columns_that_fit
from .gradcam import EPS

HEAT_CMAP = "inferno"
"""The colour map of every Grad-CAM and saliency figure in the course (see the module docstring)."""

HEAT_LABEL = "map value (0 = none, 1 = strongest)"


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


def overlay(image, cam, alpha: float = 0.5, cmap: str = HEAT_CMAP) -> np.ndarray:
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
                  cmap: str = HEAT_CMAP):
    """A grid of overlays, one per image (``images`` ``(N, [C,] H, W)``, ``cams`` ``(N, H, W)``).

    One colour bar at the right reads for every panel (the maps are all in [0, 1]). Each panel
    is ``size`` inches wide; ``figure_style.columns_that_fit`` decides how many go across
    (the rest go to more rows), so that the grid fits the page and its titles stay readable.
    """
    import matplotlib.pyplot as plt  # here: only when drawing

    n = len(cams)
    ncols = columns_that_fit(n, size, ncols)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.4) * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(overlay(images[i], cams[i], alpha, cmap))
            if titles is not None:
                ax.set_title(titles[i], fontsize=MIN_FONT_SIZE, color=title_colors[i] if title_colors else "black")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    add_heat_colorbar(fig, list(axes.flat), cmap)
    return fig


def add_heat_colorbar(fig, axes, cmap: str = HEAT_CMAP, label: str = HEAT_LABEL):
    """A colour bar for maps in [0, 1] drawn with ``cmap``, beside ``axes`` (one or several).

    In an overlay a pixel's colour covers the MRI in proportion to its value, so a low value
    shows mostly the gray image; the bar gives the colour at full strength.
    """
    import matplotlib  # here: only when drawing

    scale = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap=cmap)
    bar = fig.colorbar(scale, ax=axes, fraction=0.025 if isinstance(axes, list) and len(axes) > 1 else 0.046,
                       pad=0.02, shrink=0.9)
    bar.set_label(label, fontsize=MIN_FONT_SIZE)
    bar.ax.tick_params(labelsize=MIN_FONT_SIZE)
    return bar
