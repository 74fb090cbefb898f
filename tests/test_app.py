"""The lesson-15 app (course_utils.app): uploads, preprocessing, predictions, the widgets.

Models are tiny checkpoints written to a temporary folder (``COURSE_CHECKPOINT_DIR``), so
these tests never depend on a lesson having run. Tests marked ``real_data`` also use the
real dataset when ``BRAIN_MRI_DIR`` points at it.
"""

from __future__ import annotations

import datetime
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils import app, data, explain, training
from course_utils.models import SmallCNN
from course_utils.training import ModelCard, save_checkpoint
from course_utils.figure_style import MAX_WIDTH

REAL = os.environ.get(data.DATA_ENV)
real_data = pytest.mark.skipif(
    not (REAL and Path(REAL, "Testing").is_dir()), reason=f"${data.DATA_ENV} not set to the dataset"
)
SIZE = 32  # the size of the tiny model in tests/conftest.py (checkpoints, trained)


def _slice(width: int = 120, height: int = 100, seed: int = 0) -> np.ndarray:
    """A bright textured disc on black, roughly like an axial slice: a bright rim (skull) and
    dark folds inside, so that its roughness lies in the range of real slices (the app's guard
    refuses images smoother or rougher than those)."""
    yy, xx = np.mgrid[0:height, 0:width]
    r2 = (xx - width / 2) ** 2 + (yy - height / 2) ** 2
    radius = 0.4 * min(width, height)
    disc = r2 < radius ** 2
    rng = np.random.default_rng(seed)
    folds = np.sin(xx / 2.0) * np.cos(yy / 2.4) > 0.3
    img = disc * (100 + rng.integers(0, 120, (height, width)) - 90 * folds) + 80 * (disc & (r2 > (0.85 * radius) ** 2))
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------
# decode_upload
# ------------------------------------------------------------------------------------------


def test_decodes_every_format_and_mode_to_gray():
    gray = _slice()
    img = Image.fromarray(gray, "L")
    rgb = Image.merge("RGB", [img] * 3)
    rgba = rgb.convert("RGBA")
    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:, :10] = 0
    rgba.putalpha(Image.fromarray(alpha))
    files = {
        "gray.jpg": _encode(img, "JPEG", quality=95),
        "rgb.jpg": _encode(rgb, "JPEG", quality=95),
        "rgba.png": _encode(rgba, "PNG"),
        "palette.png": _encode(rgb.quantize(32), "PNG"),
        "sixteen.png": _encode(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"),
        "png-named.jpg": _encode(img, "PNG"),
        "gray.bmp": _encode(img, "BMP"),
    }
    for name, content in files.items():
        decoded = app.decode_upload(content, name)
        assert decoded.mode == "L" and decoded.size == (120, 100), name
    # lossless formats come back exactly; transparency becomes black, not white
    assert np.array_equal(np.asarray(app.decode_upload(files["png-named.jpg"])), gray)
    # 16-bit: stretched to the full 8-bit range, like data.load_image (this slice's minimum is 0)
    stretched = np.round(gray.astype(np.float64) * 255 / gray.max()).astype(np.uint8)
    assert np.array_equal(np.asarray(app.decode_upload(files["sixteen.png"])), stretched)
    assert np.asarray(app.decode_upload(files["rgba.png"]))[:, :10].max() == 0
    # a memoryview (what ipywidgets' FileUpload hands over) works too
    assert app.decode_upload(memoryview(files["gray.bmp"])).size == (120, 100)


def test_decoding_follows_exif_orientation():
    img = Image.fromarray(_slice(120, 100), "L")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°: displayed as 100 wide, 120 high
    content = _encode(img, "JPEG", exif=exif.tobytes())
    assert app.decode_upload(content).size == (100, 120)


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "empty"),
    ("notes.txt", b"these are notes, not pixels\n" * 5, "not an image"),
    ("fake.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 40, "could not be decoded|not an image"),
])
def test_refuses_empty_and_non_images(name, content, message):
    with pytest.raises(app.UploadError, match=message) as error:
        app.decode_upload(content, name)
    assert name in str(error.value)
    assert isinstance(error.value, data.ImageLoadError)  # callers may catch the general error


def test_refuses_truncated_tiny_and_oversized_files():
    img = Image.fromarray(_slice(), "L")
    with pytest.raises(app.UploadError, match="could not be decoded"):
        app.decode_upload(_encode(img, "JPEG")[:600], "cut.jpg")
    with pytest.raises(app.UploadError, match="at least 32 px"):
        app.decode_upload(_encode(img.resize((20, 20)), "PNG"), "icon.png")
    with pytest.raises(app.UploadError, match="accepts files up to"):
        app.decode_upload(_encode(img, "PNG"), "big.png", max_bytes=1000)
    with pytest.raises(app.UploadError, match="over 0 megapixels"):
        app.decode_upload(_encode(img, "PNG"), "many.png", max_pixels=100 * 100)


def test_decompression_bomb_helper_is_a_real_png():
    small = Image.open(io.BytesIO(app.decompression_bomb_png(300, 200)))
    small.load()
    assert small.size == (300, 200) and small.mode == "L" and small.getextrema() == (0, 0)


@pytest.mark.parametrize("side", [8000, 20000])  # above the app's limit; above Pillow's own limit
def test_refuses_huge_images_before_decoding(side, monkeypatch):
    bomb = app.decompression_bomb_png(side, side)
    assert len(bomb) < side * side / 500  # tiny file, huge image
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self) or None)
    start = time.perf_counter()
    with pytest.raises(app.UploadError, match="megapixels") as error:
        app.decode_upload(bomb, "bomb.png")
    assert time.perf_counter() - start < 2.0
    assert not decoded, "the pixels were decoded before the size was checked"
    assert "bomb.png" in str(error.value)


# ------------------------------------------------------------------------------------------
# prepare, predict, explain
# ------------------------------------------------------------------------------------------


def test_prepare_pads_resizes_and_normalises_like_training(trained):
    img = Image.fromarray(_slice(120, 60), "L")
    one = app.prepare(trained, img, "x")
    expected = np.asarray(data.square_resize(img, SIZE))
    assert one.images.shape == (1, SIZE, SIZE) and one.images.dtype == torch.uint8
    assert np.array_equal(one.images[0].numpy(), expected)
    assert one.images[0, 0].max() == 0  # the padding above a wide image is black
    x = trained.preprocess(one)
    assert torch.allclose(x, (one.images[:, None].float() / 255 - 0.2) / 0.3)
    assert torch.equal(trained.preprocess(img), x)  # a PIL image goes the same way


def test_predict_probabilities_match_the_lesson_pipeline(trained):
    img = Image.fromarray(_slice(), "L")
    probs = app.predict_probabilities(trained, img)
    assert probs.shape == (4,) and abs(probs.sum() - 1) < 1e-6 and (probs > 0).all()
    reference, _ = trained.predict(app.prepare(trained, img))
    assert np.allclose(probs, reference[0])
    threads = torch.get_num_threads()
    with app.one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == threads


def test_flip_averaging_is_used_when_the_lesson_chose_it(trained):
    img = Image.fromarray(_slice(seed=3), "L")
    x = trained.preprocess(app.prepare(trained, img))
    with torch.no_grad():
        plain = trained.model(x).softmax(1)[0].numpy()
        flipped = trained.model(x.flip(-1)).softmax(1)[0].numpy()
    assert np.allclose(app.predict_probabilities(trained, img), plain, atol=1e-6)
    trained.card = trained.card.replace(flips=True)
    assert np.allclose(app.predict_probabilities(trained, img), (plain + flipped) / 2, atol=1e-6)


def test_analyse_explains_the_top_class_with_grad_cam(trained):
    img = Image.fromarray(_slice(seed=1), "L")
    result = app.analyse(trained, img, "upload x.png")
    assert result.top == int(np.argmax(result.probabilities))
    assert result.pixels.shape == (SIZE, SIZE) and result.pixels.dtype == np.uint8
    assert result.cam.shape == (SIZE, SIZE) and result.cam.min() >= 0 and result.cam.max() <= 1
    x = trained.preprocess(app.prepare(trained, img))
    expected = explain.grad_cam(trained.model, explain.default_target_layer(trained.model), x, result.top)[0]
    assert np.allclose(result.cam, expected.numpy(), atol=1e-6)
    assert result.top_class in result.summary() and result.true_label is None


def test_figures_render_to_png(trained, monkeypatch):
    result = app.analyse(trained, Image.fromarray(_slice(), "L"), "x", "glioma")
    for make in (app.result_figure, app.probability_figure, app.overlay_figure):
        fig = make(result)
        png = app.figure_png(fig)
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        assert Image.open(io.BytesIO(png)).size[0] > 200
        assert fig.get_size_inches()[0] <= MAX_WIDTH   # shown at full size in the book's column
    bars = [ax for ax in app.overlay_figure(result).axes if ax.get_ylabel() == "Grad-CAM (0 to 1)"]
    assert not result.rejected and len(bars) == 1  # the overlay's colour bar
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    app.show_figure(app.result_figure(result))
    assert len(shown) == 1 and shown[0].data.startswith(b"\x89PNG")
    table = app.probability_table(result)
    assert table.count("<tr") == 4 and "font-weight:bold" in table


# ------------------------------------------------------------------------------------------
# Models and the gallery
# ------------------------------------------------------------------------------------------


def test_available_models_and_shelf(checkpoints):
    assert app.available_models(profile="smoke") == {"08": True, "10": False, "11": False}
    calls = []

    def loader(lesson, profile):
        calls.append(lesson)
        return training.load_lesson_model(lesson, profile)

    shelf = app.ModelShelf("smoke", loader)
    assert shelf.get("08") is shelf.get("08") and calls == ["08"]  # loaded once
    with pytest.raises(training.CheckpointMissingError, match="lesson 10"):
        shelf.get("10")


def test_gallery_is_stratified_repeatable_and_from_the_test_split():
    items = app.gallery(per_class=3, seed=0)
    assert len(items) == 12 and items == app.gallery(per_class=3, seed=0)
    assert [i.label for i in items] == [c for c in data.CLASSES for _ in range(3)]
    split_of = {r["relpath"]: r["split"] for r in data.read_grouped_split()}
    assert all(split_of[i.relpath] == "test" and f"/{i.label}/" in i.relpath for i in items)
    assert app.gallery(per_class=3, seed=1) != items


@real_data
def test_gallery_slice_through_the_upload_path_equals_the_training_cache(trained):
    item = app.gallery(1)[0]
    path = data.locate_dataset() / item.relpath
    from_upload = app.prepare(trained, app.decode_upload(path.read_bytes(), item.relpath)).images[0]
    cached = data.cache._decode_for_cache((str(path), SIZE))  # what load_images stores for this file
    assert np.array_equal(from_upload.numpy(), cached)
    assert np.array_equal(np.asarray(app.load_gallery_image(item)), np.asarray(data.load_image(path)))


# ------------------------------------------------------------------------------------------
# The widget app
# ------------------------------------------------------------------------------------------


def _upload_value(name: str, content: bytes) -> tuple[dict, ...]:
    """What ipywidgets' FileUpload holds after a browser upload."""
    return ({"name": name, "type": "", "size": len(content), "content": memoryview(content),
             "last_modified": datetime.datetime(2024, 1, 1)},)


def test_app_answers_errors_and_keeps_working(checkpoints):
    box = app.build_app(items=[], profile="smoke")
    ui = box.app
    assert ui.model_menu.value == "08"  # the only model that exists
    labels = dict((lesson, label) for label, lesson in ui.model_menu.options)
    assert "not trained yet: run lesson 11" in labels["11"] and "not trained" not in labels["08"]
    assert "mri-app-info" in ui.status.value and ui.analysis is None

    good = _encode(Image.fromarray(_slice(), "L"), "PNG")
    ui.upload.value = _upload_value("scan.png", good)          # through the widget's observer
    assert ui.analysis is not None and "mri-app-unlabelled" in ui.status.value  # an upload: no known label
    assert "No known label" in ui.status.value and "folder label" not in ui.status.value
    assert ui.chart.value[:4] == b"\x89PNG" and ui.overlay.value[:4] == b"\x89PNG"
    assert ui.chart.layout.display is None and ui.table.value.count("<tr") == 4
    assert len(ui.upload.value) == 1                             # the label reads (1): the file shown

    for name, content, message in (("notes.txt", b"hello", "not an image"), ("empty.png", b"", "empty"),
                                   ("bomb.png", app.decompression_bomb_png(8000, 8000), "megapixels")):
        ui.upload.value = _upload_value(name, content)
        assert "mri-app-error" in ui.status.value and message in ui.status.value, name
        assert ui.analysis is None and ui.chart.layout.display == "none" and ui.table.value == ""

    ui.upload.value = _upload_value("scan.png", good)          # works again after errors
    assert ui.analysis is not None and "mri-app-unlabelled" in ui.status.value

    ui.model_menu.value = "11"                                   # missing: message names the lesson
    assert "mri-app-error" in ui.status.value and "lesson 11" in ui.status.value
    assert "notebooks/11_" in ui.status.value and "other models still work" in ui.status.value
    assert ui.analysis is None
    ui.model_menu.value = "08"                                   # the other model still works
    assert ui.analysis is not None and ui.analysis.lesson == "08"


@pytest.mark.parametrize("cut", [0.0, 0.1, 0.5])
def test_a_damaged_checkpoint_is_explained_in_the_app(checkpoints, cut):
    path = training.checkpoint_path("08", "smoke")
    payload = path.read_bytes()
    path.write_bytes(payload[: int(len(payload) * cut)])
    ui = app.build_app(items=[], profile="smoke").app
    ui.handle_upload(_encode(Image.fromarray(_slice(), "L"), "PNG"), "scan.png")
    status = ui.status.value
    assert "mri-app-error" in status and "Unexpected error" not in status
    assert f"Cannot read {path}" in status and "run lesson 08 again" in status
    assert "other models still work" in status and ui.analysis is None


def test_a_checkpoint_of_another_architecture_is_explained_in_the_app(checkpoints):
    path = training.checkpoint_path("08", "smoke")
    card = ModelCard.from_checkpoint(torch.load(path, weights_only=False))
    other = SmallCNN(widths=(4, 8), hidden=0)  # weights that do not fit the network the card names
    save_checkpoint(path, other, metric="val_loss", value=0.5, card=card, force=True)
    ui = app.build_app(items=[], profile="smoke").app
    ui.handle_upload(_encode(Image.fromarray(_slice(), "L"), "PNG"), "scan.png")
    status = ui.status.value
    assert "Unexpected error" not in status and "size mismatch" not in status
    assert "widths=(8, 16)" in status and "widths=(4, 8)" in status and "its model card describes" in status


def test_app_reports_unexpected_errors_instead_of_raising(checkpoints):
    ui = app.build_app(items=[], profile="smoke").app

    def broken(lesson, profile):
        raise RuntimeError("disk on fire")

    ui.shelf = app.ModelShelf("smoke", broken)
    ui.handle_upload(_encode(Image.fromarray(_slice(), "L"), "PNG"), "scan.png")
    assert "RuntimeError" in ui.status.value and "disk on fire" in ui.status.value


def test_app_without_dataset_still_accepts_uploads(checkpoints, monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setenv("COURSE_DATA_HOME", str(tmp_path / "home"))
    ui = app.build_app(profile="smoke").app
    assert ui.gallery_menu.options == () and "No gallery" in ui.status.value
    ui.handle_upload(_encode(Image.fromarray(_slice(), "L"), "PNG"), "scan.png")
    assert ui.analysis is not None


@real_data
def test_app_gallery_selection(checkpoints):
    items = app.gallery(1)
    ui = app.build_app(items=items, profile="smoke").app
    assert ui.gallery_menu.value == items[0].relpath and ui.analysis.true_label == items[0].label
    ui.upload.value = _upload_value("notes.txt", b"text")
    assert ui.gallery_menu.value is None and "mri-app-error" in ui.status.value
    ui.gallery_menu.value = items[2].relpath                     # choosing a slice answers again
    assert ui.analysis is not None and ui.analysis.true_label == items[2].label
    assert ui.upload.value == ()                                 # no upload shown: the label reads (0)
    agrees = ui.analysis.top_class == items[2].label
    assert f"mri-app-{'agree' if agrees else 'disagree'}" in ui.status.value
    assert f"folder label ({items[2].label})" in ui.status.value


def test_answer_status_says_whether_the_answer_agrees_with_the_known_label():
    assert app.answer_status("glioma", "glioma") == ("agree", "It agrees with the slice's folder label (glioma).")
    kind, text = app.answer_status("notumor", "glioma")
    assert kind == "disagree" and "disagrees" in text and "(glioma)" in text
    kind, text = app.answer_status("notumor", None)
    assert kind == "unlabelled" and "No known label" in text
    # amber for a disagreement (like the guard's refusal), green for agreement, neutral without a label
    assert app.STATUS_COLOURS["disagree"] == app.STATUS_COLOURS["warn"] != app.STATUS_COLOURS["agree"]
    assert len({app.STATUS_COLOURS[k] for k in ("agree", "disagree", "unlabelled", "error")}) == 4


def test_status_box_colour_follows_the_known_label(checkpoints):
    ui = app.build_app(items=[], profile="smoke").app
    ui.handle_upload(_encode(Image.fromarray(_slice(), "L"), "PNG"), "scan.png")
    top = ui.analysis.top_class
    other = next(c for c in data.CLASSES if c != top)
    for label, kind in ((top, "agree"), (other, "disagree"), (None, "unlabelled")):
        ui.set_image(ui.image, "slice x", label)
        background = app.STATUS_COLOURS[kind][0]
        assert f'class="mri-app-{kind}"' in ui.status.value and background in ui.status.value, label
        assert ("folder label" in ui.status.value) == (label is not None)


def test_upload_label_counts_the_file_shown_and_layout_fits_a_phone(checkpoints):
    image = Image.fromarray(_slice(), "L")
    item = app.GalleryItem(relpath="Testing/glioma/x.png", label="glioma")
    ui = app.build_app(items=[], profile="smoke").app
    ui.items = {item.relpath: item}
    ui.upload.value = _upload_value("scan.png", _encode(image, "PNG"))
    assert len(ui.upload.value) == 1 and ui.source == "upload scan.png"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("course_utils.app.ui.load_gallery_image", lambda item: image)
        ui.choose_gallery(item.relpath)
    assert ui.upload.value == () and ui.true_label == "glioma"    # (0): the slice shown is not an upload
    assert ui.upload.layout.flex == "0 0 auto"                    # never squeezed to "U..."
    for menu in (ui.model_menu, ui.gallery_menu):                 # no fixed width wider than a phone
        assert (menu.layout.width, menu.layout.max_width, menu.layout.min_width) == ("100%", "480px", "0")


# ------------------------------------------------------------------------------------------
# Standalone (Voilà)
# ------------------------------------------------------------------------------------------


def test_app_notebook_keeps_only_tagged_cells(tmp_path):
    lesson = tmp_path / "lesson.md"
    lesson.write_text("""---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---

# Title

```{code-cell} ipython3
print("lesson only")
```

```{code-cell} ipython3
---
tags: [app]
---
from course_utils.app import build_app

build_app()
```
""", encoding="utf-8")
    notebook = app.app_notebook(lesson)
    assert [c.source for c in notebook.cells] == ["from course_utils.app import build_app\n\nbuild_app()"]
    assert notebook.metadata.kernelspec.name == "python3"
    path = app.write_app_notebook(tmp_path / "out" / "app.ipynb", lesson)
    assert path.is_file() and "build_app()" in path.read_text(encoding="utf-8")
    lesson.write_text(lesson.read_text(encoding="utf-8").replace("tags: [app]", "tags: [other]"), encoding="utf-8")
    with pytest.raises(ValueError, match="no code cell tagged"):
        app.app_notebook(lesson)


def test_the_lesson_has_one_app_cell():
    cells = app.app_notebook().cells
    assert len(cells) == 1 and "build_app()" in cells[0].source


def test_voila_command():
    command = app.voila_command("nb.ipynb", port=9999)
    assert command[1] == "-c" and "voila" in command[2] and command[3] == "nb.ipynb"
    assert "--port=9999" in command and "--Voila.ip=127.0.0.1" in command and "--no-browser" in command
    assert app.WEBSOCKET_MAX_BYTES > app.MAX_BYTES  # large uploads reach the app's own check
    assert f"'websocket_max_message_size': {app.WEBSOCKET_MAX_BYTES}" in command[2]
    compile(command[2], "<voila launcher>", "exec")
