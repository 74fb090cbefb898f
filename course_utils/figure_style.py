"""The course's figure style: sizes for the book's text column, readable type, honest colour.

A lesson's figure is shown at the width of the book's text column (about 700 pixels on a
1280-pixel screen), or at its own width in JupyterLab. Matplotlib draws at 100 dots per inch,
so a figure ``PAGE_WIDTH`` inches wide is about as wide as the column: its 10-point text is
shown at 10 points. A 16-inch figure would be shrunk to 43 % and its legend to 4 points.
Hence the three rules every lesson figure follows:

* **Width.** ``PAGE_WIDTH`` for a figure that fills the column (``figsize(height)``), at most
  ``MAX_WIDTH``; a grid with more panels than fit gets more rows, not more width.
* **Type.** No text below ``MIN_FONT_SIZE`` points (panel titles in a grid included).
* **Colour.** Values are drawn with perceptually uniform colour maps (``SEQUENTIAL`` for
  magnitudes, ``DIVERGING`` for signed values around zero; Grad-CAM uses
  ``course_utils.explain.overlays.HEAT_CMAP``) and every map that encodes a value has a colour
  bar. Rainbow maps such as "jet" show bands that are not in the data.

``apply()`` sets matplotlib's defaults to these; ``course_utils.profiles.setup()`` calls it, so
every lesson starts with the style.
"""

from __future__ import annotations

PAGE_WIDTH = 7.2
"""Inches: at 100 dpi about the width of the book's text column (720 px)."""

MAX_WIDTH = 9.0
"""Inches: the widest any lesson figure may be (shown at no less than about 77 %)."""

DPI = 100
"""Dots per inch of figures in notebooks and in the book."""

MIN_FONT_SIZE = 8.0
"""Points: the smallest text in a figure (tick labels, panel titles, annotations)."""

SEQUENTIAL = "viridis"
"""Colour map for magnitudes (0 to max): perceptually uniform, readable in gray."""

DIVERGING = "RdBu_r"
"""Colour map for signed values around 0 (red positive, blue negative), always with vmin = -vmax."""

RC_PARAMS: dict[str, object] = {
    "figure.figsize": (PAGE_WIDTH, 3.4),
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 11,
    "image.cmap": SEQUENTIAL,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
"""The matplotlib defaults ``apply()`` sets."""


def apply() -> None:
    """Set matplotlib's defaults to the course style (``RC_PARAMS``)."""
    import matplotlib  # here: a lesson without figures never loads matplotlib for this

    matplotlib.rcParams.update(RC_PARAMS)


def figsize(height: float, width: float = PAGE_WIDTH) -> tuple[float, float]:
    """``(width, height)`` in inches for a figure in the text column; refuses wider than ``MAX_WIDTH``."""
    if not 0 < width <= MAX_WIDTH:
        raise ValueError(f"a figure {width} in wide is shown shrunk below "
                         f"{100 * PAGE_WIDTH / width:.0f} %; use at most {MAX_WIDTH} in (more rows instead)")
    if height <= 0:
        raise ValueError(f"height must be positive, got {height}")
    return (float(width), float(height))


def columns_that_fit(panels: int, panel_width: float, wanted: int) -> int:
    """How many of ``panels`` panels, each ``panel_width`` inches wide, go across: ``wanted``
    at most, and no more than fit in ``MAX_WIDTH`` (the rest go to further rows)."""
    return max(1, min(wanted, panels, int(MAX_WIDTH // panel_width)))


def grid_shape(panels: int, max_columns: int = 4) -> tuple[int, int]:
    """``(rows, columns)`` for ``panels`` small panels: at most ``max_columns`` across the column."""
    if panels < 1 or max_columns < 1:
        raise ValueError(f"need at least one panel and one column, got {panels} and {max_columns}")
    columns = min(panels, max_columns)
    return (-(-panels // columns), columns)
