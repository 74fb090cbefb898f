"""How progress bars end (course_utils.progress): an early-stopped run closes green and says so,
a run cut short for another reason keeps tqdm's red, and the training loops use the rule."""

import numpy as np
import pytest
import torch
from tqdm.notebook import tqdm as notebook_tqdm
from tqdm.std import tqdm as text_tqdm

from course_utils.numpy_nn import train as numpy_train
from course_utils.numpy_nn.layers import Linear, Sequential
from course_utils.numpy_nn.optim import SGD
from course_utils.progress import finish


def _notebook_bar(total: int, done: int):
    bar = notebook_tqdm(total=total, desc="epochs", display=False)
    bar.update(done)
    return bar


def _style(bar) -> tuple[str, float, float]:
    progress = bar.container.children[1]
    return progress.bar_style, progress.value, progress.max


def test_plain_close_before_the_total_is_red():
    """The behaviour `finish` exists to correct: tqdm's own close paints a short bar red."""
    bar = _notebook_bar(30, 8)
    bar.close()
    assert _style(bar)[0] == "danger"


def test_early_stop_closes_green_with_the_epochs_run_as_total():
    bar = _notebook_bar(30, 8)
    finish(bar, "epochs", stopped_early=True)
    assert _style(bar) == ("success", 8, 8)
    assert bar.total == 8
    assert "stopped\u2007early" in bar.container.children[0].value  # tqdm pads with figure spaces


def test_a_run_cut_short_for_another_reason_stays_red():
    bar = _notebook_bar(30, 8)
    finish(bar, "epochs", stopped_early=False)
    assert _style(bar)[0] == "danger"
    assert "stopped" not in bar.container.children[0].value


def test_a_finished_run_closes_green_and_unchanged():
    bar = _notebook_bar(30, 30)
    finish(bar, "epochs")
    assert _style(bar) == ("success", 30, 30)


def test_text_and_disabled_bars():
    bar = text_tqdm(total=30, desc="epochs", disable=False, file=open("/dev/null", "w"))
    bar.update(5)
    finish(bar, "epochs", stopped_early=True)
    assert bar.total == 5 and "stopped early" in bar.desc
    quiet = text_tqdm(total=30, disable=True)
    finish(quiet, "epochs", stopped_early=True)  # nothing to draw, nothing raised


@pytest.fixture
def bars_made(monkeypatch) -> list:
    """Every bar a training loop makes (``tqdm.auto.tqdm`` replaced by a text bar writing nowhere)."""
    made = []

    def recording_tqdm(*args, **kwargs):
        bar = text_tqdm(*args, file=open("/dev/null", "w"), **kwargs)
        made.append(bar)
        return bar

    monkeypatch.setattr("tqdm.auto.tqdm", recording_tqdm)
    return made


def test_numpy_fit_marks_its_bar_when_early_stopping_ends_it(bars_made):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.integers(0, 2, size=64)
    model = Sequential(Linear(4, 2, rng=rng))
    stopper = numpy_train.EarlyStopping(patience=1, monitor="val_loss")
    history = numpy_train.fit(model, SGD(model, lr=50.0), (x, y), (x, y), epochs=40, batch_size=16,
                              early_stopping=stopper, desc="run")
    assert len(history.seconds) < 40, "the test needs a run that stops early"
    assert bars_made[0].total == len(history.seconds) and bars_made[0].desc.startswith("run, stopped early")


def test_fit_marks_its_bar_when_early_stopping_ends_it(bars_made):
    from course_utils.training.loop import fit

    torch.manual_seed(0)
    x, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = torch.nn.Linear(3, 2)
    history = fit(model, loader, loader, epochs=30, optimizer=torch.optim.SGD(model.parameters(), lr=5.0),
                  device=torch.device("cpu"), early_stopping=1, monitor="val_loss", progress=True)
    assert history.stopped_early and len(history) < 30, "the test needs a run that stops early"
    assert bars_made[0].total == len(history) and bars_made[0].desc.startswith("epochs, stopped early")
