"""The app's "I don't know" (course_utils.app.guard): scores, thresholds, the guard in the UI,
and the notice for images the model was trained on.

Most tests use hand-made scores, a tiny untrained model in a temporary checkpoint folder and
hand-made thumbnails; one test uses a real smoke-profile model when a lesson has saved one and
the dataset is there, and is skipped otherwise.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from course_utils import app, data, training
from course_utils.data.images import model_pixels
from course_utils.files import UnreadableFileError
from course_utils.training import calibration

SIZE = 32  # the size of the tiny model in tests/conftest.py (checkpoints, trained)
REAL = os.environ.get(data.DATA_ENV)
HAS_DATA = bool(REAL and Path(REAL, "Training").is_dir())


def _slice(seed: int = 0, width: int = 120, height: int = 100) -> np.ndarray:
    """A bright textured disc on black, roughly like an axial slice, off-centre so that its
    mirror image differs from it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = width * rng.uniform(0.35, 0.45), height * rng.uniform(0.45, 0.55)
    disc = ((xx - cx) ** 2 + (yy - cy) ** 2) < (rng.uniform(0.3, 0.4) * min(width, height)) ** 2
    lesion = ((xx - cx - rng.uniform(-15, 15)) ** 2 + (yy - cy - rng.uniform(-15, 15)) ** 2) < 100
    return (disc * (100 + rng.integers(0, 60, (height, width))) + 90 * (disc & lesion)).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue()


def _validation(n: int = 24) -> data.ImageSet:
    images = torch.stack([torch.from_numpy(model_pixels(Image.fromarray(_slice(s)), SIZE)) for s in range(n)])
    return data.ImageSet(images, torch.arange(n) % 4, [f"Training/x/{s}.png" for s in range(n)])


# ------------------------------------------------------------------------------------------
# Scores and thresholds
# ------------------------------------------------------------------------------------------


def test_threshold_keeps_exactly_the_asked_share():
    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    assert app.threshold_keeping(scores, 0.6) == 3.0       # ⌈0.6·5⌉ = 3rd smallest: keeps 3 of 5
    assert app.threshold_keeping(scores, 0.61) == 4.0      # 3.05 → 4 needed
    assert app.threshold_keeping(scores, 0.2) == 1.0
    assert app.threshold_keeping(scores, 1.0) == 5.0
    for keep in (0.2, 0.4, 0.6, 0.8, 0.95, 0.99):
        t = app.threshold_keeping(np.arange(100.0), keep)
        assert (np.arange(100.0) <= t).sum() == math.ceil(keep * 100 - 1e-9)
    assert app.threshold_keeping(np.array([1.0, 1.0, 1.0, 2.0]), 0.5) == 1.0  # ties: keeps 3
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            app.threshold_keeping(scores, bad)
    with pytest.raises(ValueError):
        app.threshold_keeping(np.array([]), 0.9)


def test_central_range_leaves_out_the_tails_evenly():
    scores = np.random.default_rng(0).permutation(np.arange(200.0))
    assert app.central_range(scores, 0.99) == (1.0, 198.0)   # one score out on each side
    assert app.central_range(scores, 0.9) == (10.0, 189.0)   # ten out on each side
    assert app.central_range(scores, 1.0) == (0.0, 199.0)


def test_energy_score_formula_by_hand():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1000.0, 0.0, -5.0]])
    by_hand = [-math.log(math.e + math.e ** 2 + math.e ** 3), -math.log(3), -1000.0]
    assert np.allclose(app.energy_score(logits), by_hand, rtol=0, atol=1e-12)  # no overflow at 1000
    t = 2.0
    by_hand_t = [-t * math.log(sum(math.exp(z / t) for z in row)) for row in logits[:2]]
    assert np.allclose(app.energy_score(logits[:2], t), by_hand_t)
    assert np.allclose(app.energy_score(logits), -torch.logsumexp(torch.tensor(logits), 1).numpy())
    assert np.allclose(app.max_softmax(np.array([[0.1, 0.7, 0.2]])), [0.7])


def test_guard_check_names_each_failed_test():
    guard = app.Guard(temperature=2.0, energy_threshold=-2.0, black_range=(0.2, 0.8), n_val=10)
    logits = np.array([[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    pixels = np.zeros((3, 10, 10), np.uint8)
    pixels[:, :, 5:] = 200        # half black: inside the range
    pixels[2] = 0                 # all black: outside it
    ok, unsure, blank = guard.check(logits, pixels)
    assert ok.accepted and ok.reasons == () and ok.black_share == 0.5
    assert not unsure.accepted and "energy score -1.39 is above -2.00" in unsure.explain()
    assert not blank.accepted and "100% of its pixels are black" in blank.explain()
    probs = np.array([0.7, 0.1, 0.1, 0.1])
    assert np.allclose(guard.calibrate(probs), calibration.apply_temperature(probs[None], 2.0)[0])
    assert guard.calibrate(probs).argmax() == 0 and guard.calibrate(probs).max() < 0.7


def test_roughness_by_hand_and_the_guard_refuses_noise_by_it():
    stripes = np.zeros((1, 4, 4), np.uint8)
    stripes[:, :, 1::2] = 255          # horizontal neighbours differ fully (1), vertical ones not (0): 0.5;
    assert app.roughness(stripes) == pytest.approx([1.0])   # ... over a mean absolute deviation of 0.5
    assert app.roughness(np.full((1, 8, 8), 77, np.uint8)) == pytest.approx([0.0])   # blank: 0, not 0/0
    rng = np.random.default_rng(0)
    uniform = rng.integers(0, 256, (1, 256, 256)).astype(np.uint8)
    assert app.roughness(uniform) == pytest.approx([4 / 3], abs=0.02)     # E|U - V| / E|U - 1/2|
    weak = np.clip(rng.normal(128, 10, (1, 256, 256)), 0, 255).astype(np.uint8)
    assert app.roughness(weak) == pytest.approx([2 / np.sqrt(2)], abs=0.05)  # Gaussian: same ratio at any level
    guard = app.Guard(temperature=1.0, energy_threshold=1e9, black_range=(0.0, 1.0), n_val=10,
                      roughness_range=(0.05, 0.6))
    ramp = np.tile(np.linspace(0, 255, 128).astype(np.uint8), (1, 128, 1))   # smoother than any slice
    verdicts = guard.check(np.zeros((3, 4)), np.concatenate([uniform[:, :128, :128], weak[:, :128, :128], ramp]))
    assert not verdicts[0].accepted and "roughness" in verdicts[0].explain()
    assert not verdicts[1].accepted and not verdicts[2].accepted and verdicts[2].roughness < 0.05


def test_fit_guard_uses_validation_quantiles_and_temperature(trained):
    val = _validation()
    guard = app.fit_guard(trained, val, energy_keep=0.75, image_keep=0.9)
    x = trained.preprocess(val)
    energies = app.energy_score(app.model_logits(trained, x))
    assert guard.energy_threshold == app.threshold_keeping(energies, 0.75)
    assert (energies <= guard.energy_threshold).sum() == 18               # 75 % of 24
    assert guard.black_range == app.central_range(app.guard.black_share(val.images), 0.9)
    assert guard.roughness_range == app.central_range(app.roughness(val.images), 0.9)
    probs, _ = trained.predict(x)
    assert guard.temperature == pytest.approx(calibration.fit_temperature(probs, val.labels.numpy()))
    assert guard.n_val == 24


def test_load_guard_caches_next_to_the_checkpoint(trained, monkeypatch):
    monkeypatch.setattr(app.guard, "validation_images", lambda t, per_class=None: _validation())
    first = app.load_guard(trained, per_class=6)
    path = trained.path.with_name(trained.path.stem + ".guard.json")
    assert path.is_file()

    def refit(*args, **kwargs):
        raise AssertionError("refitted although the cache matches")

    monkeypatch.setattr(app.guard, "fit_guard", refit)
    assert app.load_guard(trained, per_class=6) == first                 # read back
    with pytest.raises(AssertionError, match="refitted"):
        app.load_guard(trained, per_class=7)                             # other validation images
    path.write_text("{ damaged", encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="guard.json"):
        app.load_guard(trained, per_class=6)


# ------------------------------------------------------------------------------------------
# A real smoke-profile model rejects noise and blank images
# ------------------------------------------------------------------------------------------


def _real_smoke_model():
    if not HAS_DATA:
        pytest.skip(f"${data.DATA_ENV} not set to the dataset: no validation images to fit the guard")
    for lesson in ("08", "11", "10"):
        if training.checkpoint_path(lesson, "smoke").is_file():
            return training.load_lesson_model(lesson, "smoke")
    reason = "no smoke-profile checkpoint of lesson 08, 10 or 11: run one of them with COURSE_PROFILE=smoke"
    if os.environ.get("COURSE_TESTS_NEED_CHECKPOINTS"):  # `make notebooks` runs this test after the lessons
        pytest.fail(reason)
    pytest.skip(reason)


def test_a_real_smoke_model_rejects_noise_and_blank_images():
    trained = _real_smoke_model()
    guard = app.fit_guard(trained, app.guard.validation_images(trained, per_class=25))
    rng = np.random.default_rng(0)
    strangers = [rng.integers(0, 256, (200, 200), dtype=np.uint8),
                 np.clip(rng.normal(128, 40, (200, 200)), 0, 255).astype(np.uint8),
                 np.zeros((200, 200), np.uint8), np.full((200, 200), 255, np.uint8)]
    pixels = np.stack([model_pixels(Image.fromarray(s), trained.size) for s in strangers])
    x = torch.cat([trained.preprocess(Image.fromarray(s)) for s in strangers])
    verdicts = guard.check(app.model_logits(trained, x), pixels)
    assert [v.accepted for v in verdicts] == [False] * 4, [v.reasons for v in verdicts]


# ------------------------------------------------------------------------------------------
# Memorised images
# ------------------------------------------------------------------------------------------


def _index(n: int = 6) -> app.TrainingIndex:
    thumbs = torch.stack([torch.from_numpy(model_pixels(Image.fromarray(_slice(s)), 64)) for s in range(n)])
    return app.TrainingIndex(thumbs, [f"Training/glioma/g{s}.png" for s in range(n)])


def test_index_finds_a_training_image_and_its_mirror():
    index = _index()
    image = Image.fromarray(_slice(3))
    exact = index.match(image)
    assert exact.file == "Training/glioma/g3.png" and exact.orientation == "as is"
    assert exact.similarity == pytest.approx(1.0, abs=1e-5)
    mirrored = index.match(ImageOps.mirror(image))
    assert mirrored.file == "Training/glioma/g3.png" and mirrored.orientation == "flipped left-right"
    assert "copy (flipped left-right) of the training image Training/glioma/g3.png" in mirrored.notice()
    assert index.match(Image.fromarray(_slice(99))) is None               # a new slice: no notice
    assert index.nearest(Image.fromarray(_slice(99))).similarity < index.threshold


@pytest.mark.skipif(not HAS_DATA, reason=f"${data.DATA_ENV} not set to the dataset")
def test_the_real_index_finds_a_training_file_and_its_mirror():
    index = app.training_index()
    relpath = index.files[10]
    image = data.load_image(data.locate_dataset() / relpath)
    assert index.match(image).file == relpath
    mirror = index.match(ImageOps.mirror(image))
    assert mirror is not None and mirror.similarity > 0.999


# ------------------------------------------------------------------------------------------
# The app: a rejection instead of a label, and the memorised-image notice
# ------------------------------------------------------------------------------------------


def _guarded_app(guard: app.Guard, index: app.TrainingIndex | None = None):
    ui = app.build_app(items=[], profile="smoke").app
    ui.safety = app.GuardShelf("smoke", guard_loader=lambda trained, per_class: guard,
                               index_loader=lambda: index or _index())
    return ui


def test_app_shows_the_rejection_instead_of_a_label(trained):
    guard = app.Guard(temperature=1.5, energy_threshold=1e9, black_range=(0.2, 0.9), n_val=10)
    ui = _guarded_app(guard)
    ui.handle_upload(_png(np.zeros((100, 100), np.uint8)), "black.png")
    assert ui.analysis.rejected and "mri-app-warn" in ui.status.value
    assert app.REJECT_MESSAGE in ui.status.value and "100% of its pixels are black" in ui.status.value
    assert ui.analysis.top_class not in ui.status.value                   # no label
    assert ui.chart.layout.display == "none" and ui.chart.value == b"" and ui.table.value == ""
    assert ui.overlay.layout.display == "none"
    assert "no answer" in ui.analysis.summary() and app.REJECT_MESSAGE in ui.analysis.summary()
    assert app.figure_png(app.result_figure(ui.analysis)).startswith(b"\x89PNG")

    ui.handle_upload(_png(_slice(42)), "scan.png")                      # a slice-like image: an answer
    assert not ui.analysis.rejected and "mri-app-unlabelled" in ui.status.value
    assert ui.analysis.top_class in ui.status.value and "temperature-scaled (T = 1.50" in ui.status.value
    assert ui.chart.layout.display is None and ui.table.value.count("<tr") == 4
    raw = app.predict_probabilities(trained, Image.fromarray(_slice(42)))
    assert np.allclose(ui.analysis.probabilities, calibration.apply_temperature(raw[None], 1.5)[0])


def test_app_says_when_the_image_is_a_training_image_or_its_mirror(trained):
    guard = app.Guard(temperature=1.0, energy_threshold=1e9, black_range=(0.0, 1.0), n_val=10)
    ui = _guarded_app(guard)
    ui.handle_upload(_png(_slice(2)), "copy.png")
    assert "copy of the training image Training/glioma/g2.png" in ui.notice.value
    assert "proves nothing" in ui.notice.value
    ui.handle_upload(_png(_slice(2)[:, ::-1].copy()), "mirror.png")
    assert "copy (flipped left-right) of the training image Training/glioma/g2.png" in ui.notice.value
    ui.handle_upload(_png(_slice(77)), "new.png")
    assert ui.notice.value == ""
    ui.handle_upload(b"not an image", "notes.txt")                       # an error clears the notice
    assert ui.notice.value == ""


def test_app_without_validation_data_answers_and_says_it_has_no_guard(trained):
    def missing(trained, per_class):
        raise data.DatasetNotFoundError("no dataset here")

    ui = app.build_app(items=[], profile="smoke").app
    ui.safety = app.GuardShelf("smoke", guard_loader=missing, index_loader=lambda: _index())
    ui.handle_upload(_png(np.zeros((100, 100), np.uint8)), "black.png")
    assert ui.analysis is not None and not ui.analysis.rejected and "mri-app-unlabelled" in ui.status.value
    assert "No out-of-distribution guard" in ui.notice.value and "no dataset here" in ui.notice.value
    assert "softmax probability (not a calibrated certainty)" in ui.status.value
