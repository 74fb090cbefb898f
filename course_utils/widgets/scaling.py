"""Compound scaling as a picture (lesson 11): one coefficient φ against depth, width, resolution and cost.

``compound_scaling_figure`` is the callback of lesson 11's φ slider. Its four panels:

* the multipliers ``d = α^φ``, ``w = β^φ``, ``r = γ^φ``, with the published B0…B7 as dots;
* the cost factor ``d · w² · r²`` (exactly ``(α β² γ²)^φ``) against the ``2^φ`` it is meant
  to approximate, with the published models' own ``d · w² · r²``;
* the scaled network: one bar per MBConv stage, as long as its number of blocks (depth) and
  as tall as its channels (width), over B0's stages in outline;
* the input image: a square of side ``r · 224`` px over B0's 224 px.

All text is plain (``φ``, ``d·w²·r²``), not mathtext: every new figure parses its mathtext
anew, which took a quarter of the time a move of the slider costs.

The numbers come from ``course_utils.models.efficientnet`` (``compound_scale``,
``implied_phi``, ``scaled_stages``); the stages of B0 are read from torchvision once by the
lesson (``stage_shapes``) and passed in, so that the callback only draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, NullLocator

from ..figure_style import MAX_WIDTH
from ..models.efficientnet import (ALPHA, BASE_RESOLUTION, BETA, EFFICIENTNETS, GAMMA, Scaling, compound_scale,
                                   implied_phi, scaled_stages)

DIRECTIONS = (("depth", "d", ALPHA, "C0"), ("width", "w", BETA, "C1"), ("resolution", "r", GAMMA, "C2"))


def flops_factor(depth: float | np.ndarray, width: float | np.ndarray,
                 resolution: float | np.ndarray) -> float | np.ndarray:
    """Growth of the multiply-adds, ``d · w² · r²``: layers count once, channels and image side twice."""
    return depth * width ** 2 * resolution ** 2


def published_points(models: Mapping[str, Scaling] = EFFICIENTNETS) -> dict[str, dict[str, float]]:
    """Each published model's multipliers and ``d · w² · r²``, placed at the φ its resolution implies."""
    points = {}
    for name, s in models.items():
        r = s.resolution / BASE_RESOLUTION
        points[name] = {"phi": implied_phi(s)["resolution"], "depth": s.depth, "width": s.width,
                        "resolution": r, "flops": flops_factor(s.depth, s.width, r)}
    return points


def _phi_grid(phi_max: float, points: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """φ values for the rule's curves: up to ``phi_max`` or the last published model, if further."""
    return np.linspace(0.0, max(phi_max, *(p["phi"] for p in points.values())), 151)


def plot_multipliers(ax: Axes, phi: float | None = None, phi_max: float = 7.0,
                     models: Mapping[str, Scaling] = EFFICIENTNETS) -> None:
    """The three multipliers against φ, published models as dots, and (if given) a line at ``phi``."""
    points = published_points(models)
    grid = _phi_grid(phi_max, points)
    rule = compound_scale(grid)
    for key, letter, base, color in DIRECTIONS:
        ax.plot(grid, rule[key], color=color, label=f"{key} {letter} = {base}^φ")
        ax.plot([p["phi"] for p in points.values()], [p[key] for p in points.values()], "o", color=color, ms=5)
    ax.plot([], [], "o", color="0.4", ms=5, label="published B0…B7")   # a legend entry for the dots
    if phi is not None:
        now = compound_scale(phi)
        ax.axvline(phi, color="0.4", lw=1, ls="--")
        ax.set_title(f"φ = {phi:.1f}: d = {now['depth']:.2f}, w = {now['width']:.2f}, "
                     f"r = {now['resolution']:.2f}")
    ax.set(xlabel="φ (dots: published models, placed by resolution)",
           ylabel="multiplier relative to B0")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)


def plot_flops(ax: Axes, phi: float, phi_max: float = 7.0, models: Mapping[str, Scaling] = EFFICIENTNETS) -> None:
    """The cost factor ``d · w² · r²`` of the rule and of the published models, against ``2^φ`` (log scale)."""
    points = published_points(models)
    grid = _phi_grid(phi_max, points)
    rule = compound_scale(grid)
    ax.plot(grid, flops_factor(rule["depth"], rule["width"], rule["resolution"]), color="C3",
            label=f"d·w²·r² = {ALPHA * BETA**2 * GAMMA**2:.3f}^φ")
    ax.plot(grid, 2.0 ** grid, color="0.3", ls=":", label="2^φ")
    ax.plot([p["phi"] for p in points.values()], [p["flops"] for p in points.values()], "o", color="C3", ms=5,
            label="published B0…B7")
    now = compound_scale(phi)
    ax.plot([phi], [now["flops"]], "s", color="k", ms=7)
    ax.axvline(phi, color="0.4", lw=1, ls="--")
    ax.set_yscale("log", base=2)
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))   # 1, 2, 4, … as plain text
    ax.set(xlabel="φ", ylabel="multiply-adds relative to B0 (log scale)")
    ax.set_title(f"cost: d·w²·r² = {now['flops']:.1f}, 2^φ = {2.0 ** phi:.1f}")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)


def _draw_stages(ax: Axes, stages: Sequence[tuple[int, int]], filled: bool) -> None:
    """Stages side by side: each a rectangle ``blocks`` long and ``channels`` tall."""
    colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, len(stages)))
    x = 0
    for (channels, blocks), color in zip(stages, colors):
        if filled:
            ax.add_patch(Rectangle((x, 0), blocks, channels, facecolor=color, edgecolor="white", lw=0.5))
        else:
            ax.add_patch(Rectangle((x, 0), blocks, channels, fill=False, edgecolor="k", ls="--", lw=1))
        x += blocks


def plot_stages(ax: Axes, phi: float, base_stages: Sequence[tuple[int, int]], phi_max: float = 7.0) -> None:
    """The scaled network's MBConv stages (filled) over the base network's (dashed outline).

    The axes' limits are those of ``phi_max``, so that the picture grows as φ does.
    """
    now, largest = compound_scale(phi), compound_scale(phi_max)
    stages = scaled_stages(list(base_stages), now["width"], now["depth"])
    biggest = scaled_stages(list(base_stages), largest["width"], largest["depth"])
    _draw_stages(ax, stages, filled=True)
    _draw_stages(ax, base_stages, filled=False)
    ax.set_xlim(0, 1.03 * sum(b for _, b in biggest))
    ax.set_ylim(0, 1.05 * max(c for c, _ in biggest))
    ax.set(xlabel="blocks, stage after stage (depth)", ylabel="channels of the stage (width)")
    ax.set_title(f"network: {sum(b for _, b in stages)} blocks, last stage {stages[-1][0]} channels\n"
                 f"(B0, dashed: {sum(b for _, b in base_stages)}, {base_stages[-1][0]})")


def plot_input(ax: Axes, phi: float, phi_max: float = 7.0) -> None:
    """The input image as a square of side ``r · 224`` px over B0's 224 px (dashed)."""
    side = BASE_RESOLUTION * compound_scale(phi)["resolution"]
    limit = 1.05 * BASE_RESOLUTION * compound_scale(phi_max)["resolution"]
    ax.add_patch(Rectangle((0, 0), side, side, facecolor="C2", alpha=0.5))
    ax.add_patch(Rectangle((0, 0), BASE_RESOLUTION, BASE_RESOLUTION, fill=False, edgecolor="k", ls="--"))
    ax.set_xlim(0, limit)
    ax.set_ylim(0, limit)
    ax.set_aspect("equal")
    ax.set(xlabel="pixels (resolution)", ylabel="pixels")
    ax.set_title(f"input: {side:.0f} x {side:.0f} px\n(B0, dashed: {BASE_RESOLUTION})")


def compound_scaling_figure(phi: float, base_stages: Sequence[tuple[int, int]], phi_max: float = 7.0,
                            models: Mapping[str, Scaling] = EFFICIENTNETS) -> Figure:
    """Lesson 11's slider callback: the network that compound coefficient ``phi`` makes of B0.

    ``base_stages`` are B0's ``(channels, blocks)`` per MBConv stage
    (``efficientnet.stage_shapes("b0")``, computed once by the caller). Raises ``ValueError``
    for ``phi`` outside ``[0, phi_max]``.
    """
    if not 0 <= phi <= phi_max:
        raise ValueError(f"compound_scaling_figure: phi must lie in [0, {phi_max}] (got {phi}); "
                         "phi = 0 is B0 and the published models end near phi = 7 (B7)")
    fig, axes = plt.subplots(2, 2, figsize=(MAX_WIDTH, 7.4))   # the widest a lesson figure may be
    plot_multipliers(axes[0, 0], phi, phi_max, models)
    plot_flops(axes[0, 1], phi, phi_max, models)
    plot_stages(axes[1, 0], phi, base_stages, phi_max)
    plot_input(axes[1, 1], phi, phi_max)
    # fixed margins: tight_layout would measure every label again on each move of the slider
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.07, top=0.93, wspace=0.28, hspace=0.42)
    return fig
