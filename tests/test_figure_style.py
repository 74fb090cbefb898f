"""The figure style (course_utils.figure_style): applied by setup(), and kept by every lesson."""

import re

import matplotlib
import pytest

from course_utils.lessons import LESSON_DIR
from course_utils.profiles import setup
from course_utils import figure_style as style

ROOT = LESSON_DIR.parent
FIGSIZE = re.compile(r"figsize\s*=\s*\(\s*([0-9.]+)\s*,")


def test_setup_applies_the_style():
    matplotlib.rcParams["font.size"] = 4.0
    setup(seed=0, threads=1, verbose=False)
    for key, value in style.RC_PARAMS.items():
        current = matplotlib.rcParams[key]
        assert (tuple(current) if isinstance(value, tuple) else current) == value, key
    assert matplotlib.rcParams["figure.figsize"][0] == style.PAGE_WIDTH
    assert min(matplotlib.rcParams[k] for k in ("xtick.labelsize", "ytick.labelsize", "legend.fontsize")) \
        >= style.MIN_FONT_SIZE


def test_figsize_refuses_figures_wider_than_the_page_allows():
    assert style.figsize(3.0) == (style.PAGE_WIDTH, 3.0)
    with pytest.raises(ValueError, match="shrunk below 45 %"):
        style.figsize(3.0, width=16)
    with pytest.raises(ValueError):
        style.figsize(0.0)


@pytest.mark.parametrize("panels, expected", [(1, (1, 1)), (4, (1, 4)), (5, (2, 4)), (8, (2, 4)), (16, (4, 4))])
def test_grid_shape(panels, expected):
    assert style.grid_shape(panels) == expected


@pytest.mark.parametrize("panels, width, wanted, expected", [(6, 1.9, 6, 4), (3, 1.9, 6, 3), (8, 1.6, 8, 5), (1, 12.0, 4, 1)])
def test_columns_that_fit(panels, width, wanted, expected):
    assert style.columns_that_fit(panels, width, wanted) == expected


def test_no_figure_in_the_course_is_wider_than_max_width():
    """Every literal figsize in the lessons and the library fits the book's column."""
    too_wide = []
    for path in sorted([*(ROOT / "notebooks").glob("[0-9][0-9]_*.md"), *(ROOT / "course_utils").rglob("*.py")]):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in FIGSIZE.finditer(line):
                if float(match.group(1)) > style.MAX_WIDTH:
                    too_wide.append(f"{path.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not too_wide, "figures wider than style.MAX_WIDTH:\n" + "\n".join(too_wide)
