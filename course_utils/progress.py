"""How a progress bar ends: the one rule shared by both training loops.

In a notebook, ``tqdm``'s widget turns red when the bar closes before its total, the colour
it uses for an error or an interrupt. A run that early stopping ended on purpose is no error:
``finish`` makes the bar's total the epochs that were actually run (so it closes green,
"12/12") and puts "stopped early" in its label. A run that diverged keeps its red bar: that
one did fail.
"""

from __future__ import annotations


def finish(bar, label: str, stopped_early: bool = False) -> None:
    """Close ``bar`` (a ``tqdm.auto`` bar labelled ``label``, advanced with ``bar.update()``).

    The loops call ``update`` themselves rather than iterate over the bar: a ``for`` loop
    over a bar that is left with ``break`` closes the bar (red) before this can run.
    """
    if stopped_early and not bar.disable:
        bar.set_description(f"{label}, stopped early", refresh=False)
        bar.total = bar.n
        widget = getattr(bar, "container", None)  # the notebook bar draws a separate widget
        if widget is not None:
            widget.children[1].max = bar.n
        bar.refresh()
    bar.close()
