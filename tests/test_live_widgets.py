"""``live_controls``: sliders in JupyterLab, none in unattended runs (COURSE_LIVE_WIDGETS=0)."""

import ipywidgets
import pytest

from course_utils.widgets.live import LIVE_VARIABLE, live_controls, live_widgets_enabled


def _figure(p=0.5):
    return p


def test_on_by_default_and_creates_the_controls(monkeypatch):
    monkeypatch.delenv(LIVE_VARIABLE, raising=False)
    assert live_widgets_enabled()
    slider = ipywidgets.FloatSlider(value=0.25, min=0.0, max=1.0)
    wired = live_controls(_figure, p=slider)
    assert wired is not None
    panel = wired.widget  # what ipywidgets.interact attaches: the control panel
    assert slider in panel.children
    assert panel.result == 0.25  # the callback ran once with the slider's value


@pytest.mark.parametrize("value", ["0", "off", "False", " no "])
def test_off_prints_a_line_and_creates_no_widget(monkeypatch, capsys, value):
    monkeypatch.setenv(LIVE_VARIABLE, value)
    assert not live_widgets_enabled()
    def no_widgets(*args, **kwargs):
        raise AssertionError("interact was called in a run with the live controls off")

    monkeypatch.setattr(ipywidgets, "interact", no_widgets)
    assert live_controls(_figure, p=0.5) is None
    out = capsys.readouterr().out
    assert "_figure()" in out and "JupyterLab" in out
    assert live_controls(lambda p: p, p=0.5) is None
    assert "this figure" in capsys.readouterr().out


def test_a_typo_is_an_error_not_a_guess(monkeypatch):
    monkeypatch.setenv(LIVE_VARIABLE, "of")
    with pytest.raises(ValueError, match="COURSE_LIVE_WIDGETS"):
        live_controls(_figure, p=0.5)


def test_the_callback_comes_first():
    with pytest.raises(TypeError, match="callback"):
        live_controls(ipywidgets.FloatSlider())
