"""Slider controls for a lesson's figure, only where someone can move them.

Every slider section of a lesson first draws its figure once at the default setting (that is
what the book and a printed run show), then calls ``live_controls`` to attach sliders to the
same callback. In JupyterLab this is exactly ``ipywidgets.interact``.

A run with nobody at the keyboard (``make lesson``, ``make book``) sets
``COURSE_LIVE_WIDGETS=0``: there ``live_controls`` prints one line and creates no widget. Two
reasons. Nobody can move a slider in such a run, and the book hides this cell's output anyway.
And the notebook runner these commands use can wait for ever on an ``interact`` cell whose
kernel has already finished (jupyter/nbclient#312, seen in lessons 03, 07, 13 and 14).
"""

from __future__ import annotations

import os
from typing import Any, Callable

LIVE_VARIABLE = "COURSE_LIVE_WIDGETS"
"""Environment variable: ``0`` (or ``off``, ``false``, ``no``) switches the live controls off."""

_OFF_VALUES = {"0", "off", "false", "no"}


def live_widgets_enabled() -> bool:
    """Whether ``live_controls`` creates widgets: yes unless ``COURSE_LIVE_WIDGETS`` says off.

    An unknown value is an error rather than a guess, so a typo cannot silently change a run.
    """
    raw = os.environ.get(LIVE_VARIABLE, "1").strip().lower()
    if raw in _OFF_VALUES:
        return False
    if raw in {"", "1", "on", "true", "yes"}:
        return True
    raise ValueError(f"{LIVE_VARIABLE}={raw!r}: use 1 (sliders on, the default) or 0 (off, "
                     "for runs without a person at the keyboard)")


def live_controls(function: Callable[..., Any], /, **controls: Any) -> Any:
    """Attach ``controls`` (ipywidgets sliders, dropdowns, ``fixed`` values) to ``function``.

    Returns what ``ipywidgets.interact`` returns (the function, now wired to a control panel),
    or ``None`` when the live controls are switched off (``COURSE_LIVE_WIDGETS=0``); then it
    prints one line that says so instead of showing controls nobody can move.
    """
    if not callable(function):
        raise TypeError(f"live_controls needs the figure's callback first, got {function!r}")
    if not live_widgets_enabled():
        name = getattr(function, "__name__", "<figure>")
        label = "this figure" if name.startswith("<") else f"{name}()"
        print(f"The sliders for {label} are off in this run "
              f"({LIVE_VARIABLE}=0, as in `make lesson` and `make book`); open the lesson in "
              "JupyterLab to move them. The figure above shows the default setting.")
        return None
    from ipywidgets import interact  # only where widgets are wanted

    return interact(function, **controls)
