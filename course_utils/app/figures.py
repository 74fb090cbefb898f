"""The app's figures, drawn with matplotlib's object API (no pyplot state, so widget
callbacks never leak figures)."""

from __future__ import annotations

import io
import textwrap

import numpy as np

from ..explain.overlays import add_heat_colorbar, overlay
from ..figure_style import figsize
from .analysis import Analysis
from .guard import REJECT_MESSAGE


# ------------------------------------------------------------------------------------------
# Figures (matplotlib's object API: no global pyplot state)
# ------------------------------------------------------------------------------------------


def _draw_probabilities(ax, analysis: Analysis) -> None:
    k = len(analysis.classes)
    colours = ["tab:orange" if i == analysis.top else "tab:blue" for i in range(k)]
    bars = ax.barh(range(k), analysis.probabilities, color=colours)
    ax.set_yticks(range(k), analysis.classes)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.18)
    ax.set_xlabel(textwrap.fill(probability_label(analysis), 34), fontsize=8)   # two lines in a narrow panel
    for bar, p in zip(bars, analysis.probabilities):
        ax.text(bar.get_width() + 0.02, bar.get_y() + bar.get_height() / 2, f"{p:.1%}", va="center", fontsize=9)
    ax.set_title(f"model of lesson {analysis.lesson}", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def probability_label(analysis: Analysis) -> str:
    """What the probabilities are: raw softmax, or scaled by a temperature fitted on validation."""
    if analysis.temperature is None:
        return "softmax probability (not a calibrated certainty)"
    return f"probability, temperature-scaled (T = {analysis.temperature:.2f}, fitted on validation)"


def _draw_rejection(ax, analysis: Analysis) -> None:
    """In place of the probabilities: the guard's refusal and its reasons, no bars."""
    ax.axis("off")
    reasons = "\n".join(textwrap.fill(r, 48) for r in analysis.verdict.reasons)
    ax.text(0.0, 0.95, textwrap.fill(REJECT_MESSAGE + ".", 44), fontsize=10, weight="bold", va="top",
            color="#8a4b00", transform=ax.transAxes)
    ax.text(0.0, 0.55, reasons, fontsize=8, va="top", transform=ax.transAxes)
    ax.set_title(f"model of lesson {analysis.lesson}: no answer", fontsize=10)


def _draw_image(ax, analysis: Analysis, alpha: float | None) -> None:

    if alpha is None:
        ax.imshow(analysis.pixels, cmap="gray", vmin=0, vmax=255)
        truth = f"\nfolder: {analysis.true_label}" if analysis.true_label else "\nclass unknown (upload)"
        ax.set_title(f"input, {analysis.pixels.shape[-1]} px{truth}", fontsize=9)
    elif analysis.rejected:  # no answer, so no map of what raised it
        ax.text(0.5, 0.5, "no Grad-CAM:\nno answer", ha="center", va="center", fontsize=9, transform=ax.transAxes)
    else:
        ax.imshow(overlay(analysis.pixels.astype(np.float32), analysis.cam, alpha))
        ax.set_title(f"Grad-CAM for {analysis.top_class}\n({analysis.probabilities[analysis.top]:.1%})", fontsize=9)
        add_heat_colorbar(ax.figure, ax, label="Grad-CAM (0 to 1)")
    ax.axis("off")


def result_figure(analysis: Analysis, alpha: float = 0.5):
    """Input, Grad-CAM overlay and probabilities side by side (the lesson's static figure)."""
    from matplotlib.figure import Figure  # here: only when drawing

    # the page's width; the constrained layout makes room for the map's colour bar without
    # shrinking the images as tight_layout does
    fig = Figure(figsize=figsize(3.2), layout="constrained")
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.2, 1.4]})
    _draw_image(axes[0], analysis, None)
    _draw_image(axes[1], analysis, alpha)
    (_draw_rejection if analysis.rejected else _draw_probabilities)(axes[2], analysis)
    fig.suptitle(f"{analysis.source} (course demo, not a diagnosis)", fontsize=10)
    return fig


def probability_figure(analysis: Analysis):
    """The class probabilities as a horizontal bar chart, the top class highlighted."""
    from matplotlib.figure import Figure  # here: only when drawing

    fig = Figure(figsize=(4.6, 2.6))
    _draw_probabilities(fig.subplots(), analysis)
    fig.tight_layout()
    return fig


def overlay_figure(analysis: Analysis, alpha: float = 0.5):
    """The input as the model sees it and its Grad-CAM overlay for the top class."""
    from matplotlib.figure import Figure  # here: only when drawing

    fig = Figure(figsize=(5.0, 2.8))
    axes = fig.subplots(1, 2)
    _draw_image(axes[0], analysis, None)
    _draw_image(axes[1], analysis, alpha)
    fig.tight_layout()
    return fig


def figure_png(fig, dpi: int = 96) -> bytes:
    """A figure as PNG bytes (for ``ipywidgets.Image``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    return buffer.getvalue()


def show_figure(fig, dpi: int = 96) -> None:
    """Display a figure made with the object API in a notebook, as a PNG.

    Such figures are not known to pyplot, and whether ``display(fig)`` draws them depends on
    whether pyplot's inline backend has been started yet; a PNG displays the same everywhere.
    """
    from IPython.display import Image as PNG, display  # here: only in a notebook

    display(PNG(data=figure_png(fig, dpi)))
