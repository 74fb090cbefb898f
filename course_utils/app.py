"""The lesson-15 app: pick or upload an MRI slice, pick a trained model, see what it says.

The app is a thin layer of widgets over plain functions, each of which a unit test calls:

* ``decode_upload(payload, name)``: the bytes of an uploaded file → an 8-bit grayscale
  image, or an ``UploadError`` whose message says what is wrong (empty file, not an image,
  too many pixels, truncated...). The pixel count is read from the file's header and checked
  *before* the pixels are decoded, so a small file that claims to be a 20000 × 20000 image
  (a "decompression bomb") is refused without filling the memory.
* ``prepare(trained, image)``: the image → exactly the input the model was trained on, by the
  same functions that built the training cache (``square_resize``, then the checkpoint's own
  normalisation through ``TrainedModel.inputs``).
* ``predict_probabilities`` and ``grad_cam_map``: the model's softmax output, scored as the
  lesson that trained it scored (flip averaging if it chose it), and the Grad-CAM map of
  the top class at the usual target layer (lesson 12).
* ``analyse`` bundles both; ``result_figure``, ``probability_figure`` and
  ``overlay_figure`` draw the result with matplotlib's object API (no pyplot state, so
  widget callbacks never leak figures).
* ``build_app()`` wires them to widgets: a gallery of official Testing slices, a file
  upload, a model menu (a missing checkpoint shows which lesson makes it, and the other
  models keep working), the probabilities and the overlay.

The same app runs inside JupyterLab and, with Voilà, as a standalone web page:
``python -m course_utils.app serve`` extracts the lesson's cells tagged ``app`` into a
small notebook and serves it (``app_notebook`` and ``main`` below).

A course demo, not a diagnostic tool: the models saw one public dataset of 2-D slices, the
probabilities are not calibrated certainties, and a heat map is not a segmentation.
"""

from __future__ import annotations

import html
import io
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import (CLASSES, DatasetNotFoundError, ImageLoadError, ImageSet, load_image, locate_dataset,
                   project_root, read_manifest, square_resize, to_grayscale)
from .files import CourseFileError, atomic_write_text
from .lesson_models import CheckpointMissingError, TrainedModel, checkpoint_path, load_lesson_model
from .profiles import current_profile

# Limits on uploads. The dataset's largest slice is 1920 × 1080 (about 2 megapixels) and
# most are 512 × 512 (0.26 megapixels); 40 megapixels leaves a wide margin for real scans
# and photos while refusing files that would need gigabytes once decoded.
MAX_PIXELS = 40_000_000
MAX_BYTES = 30 * 1024 * 1024
MIN_SIDE = 32
# The app pads every image to a square before resizing it (as the training cache did), so a
# long thin strip would become a huge square: 50000 × 32 px is 1.6 megapixels but pads to
# 2500. MRI slices are close to square (the dataset's widest is 16:9); 10:1 leaves room.
MAX_ASPECT = 10.0

# The models the app offers, in course order, and what each one is.
MODEL_NAMES: dict[str, str] = {
    "08": "lesson 08: small CNN, trained from scratch",
    "10": "lesson 10: EfficientNet-Lite0, transfer learning",
    "11": "lesson 11: EfficientNet-Lite0, fine-tuned",
}
PREFERRED = ("11", "10", "08")  # the default model: the first of these that exists

DISCLAIMER = ("A course demo, not a diagnostic tool. The models learned from one public dataset of "
              "2-D slices; their probabilities are softmax outputs, not calibrated certainties "
              "(lesson 13), and the heat map shows what raised the top score, not where a tumour is "
              "(lesson 12). Never use it to make a decision about a person.")


class UploadError(ImageLoadError):
    """An uploaded file the app cannot use; the message says why and what to do."""


# ------------------------------------------------------------------------------------------
# From uploaded bytes to a grayscale image
# ------------------------------------------------------------------------------------------


def decode_upload(payload: bytes | memoryview, name: str = "the file", max_pixels: int = MAX_PIXELS,
                  max_bytes: int = MAX_BYTES, min_side: int = MIN_SIDE) -> Image.Image:
    """Decode an uploaded file into an 8-bit grayscale (mode ``"L"``) PIL image.

    Handles what ``course_utils.data.load_image`` handles (JPEG or PNG whatever the name
    says, RGB, RGBA over black, palette, 16-bit, EXIF rotation) and refuses, with an
    ``UploadError`` naming the file:

    * an empty file, or one larger than ``max_bytes``;
    * a file that is not an image Pillow can read (a text file, a PDF...);
    * an image with more than ``max_pixels`` pixels, checked from the header *before*
      decoding (Pillow reads the size without touching the pixel data);
    * an image smaller than ``min_side`` px on a side (nothing left to classify);
    * a long thin strip (more than ``MAX_ASPECT`` : 1), whose padding to a square would
      need a huge image (``check_dimensions``);
    * an image whose data is damaged or cut short.
    """
    payload = bytes(payload)
    if not payload:
        raise UploadError(f"{name} is empty (0 bytes). Choose an image file (JPEG or PNG).")
    if len(payload) > max_bytes:
        raise UploadError(f"{name} is {len(payload) / 2**20:.0f} MB; the app accepts files up to "
                          f"{max_bytes / 2**20:.0f} MB.")
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 megapixels; the check below refuses those anyway.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(payload))  # reads the header only
        with img:
            check_dimensions(img.size, name, max_pixels, min_side)
            img.load()
            return to_grayscale(ImageOps.exif_transpose(img))
    except UploadError:
        raise
    except Image.DecompressionBombError as error:
        raise UploadError(f"{name} has far more than {max_pixels / 1e6:.0f} megapixels ({error}); the app "
                          f"refuses it before decoding. Resize it and try again.") from error
    except UnidentifiedImageError as error:
        raise UploadError(f"{name} is not an image the app can read. Upload a JPEG or PNG "
                          f"(BMP, TIFF and GIF work too).") from error
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        raise UploadError(f"{name} looks like an image but could not be decoded ({error}). "
                          f"Is the file complete?") from error


def check_dimensions(size: tuple[int, int], name: str = "the file", max_pixels: int = MAX_PIXELS,
                     min_side: int = MIN_SIDE, max_aspect: float = MAX_ASPECT) -> None:
    """Refuse, with an ``UploadError``, any size whose decoding or padding would be too large.

    Checked from the header, before anything is allocated: the pixels themselves
    (``width × height``), the shape (a strip longer than ``max_aspect`` : 1), and the square
    that ``square_resize`` pads the image to (``side × side``, ``side = max(width, height)``).
    """
    width, height = size
    if width * height > max_pixels:
        raise UploadError(
            f"{name} is {width} × {height} px ({width * height / 1e6:.0f} megapixels); the app "
            f"refuses images over {max_pixels / 1e6:.0f} megapixels before decoding them "
            f"(an MRI slice has well under 1). Resize it and try again.")
    if min(width, height) < min_side:
        raise UploadError(f"{name} is only {width} × {height} px; the app needs at least "
                          f"{min_side} px on each side.")
    side = max(width, height)
    if side / min(width, height) > max_aspect or side * side > max_pixels:
        raise UploadError(
            f"{name} is {width} × {height} px, a strip {side / min(width, height):.0f} times longer than it "
            f"is wide. The app pads images to a square before resizing them, which would make it "
            f"{side} × {side} px ({side * side / 1e6:.0f} megapixels); it accepts shapes up to "
            f"{max_aspect:g}:1 and squares up to {max_pixels / 1e6:.0f} megapixels. "
            f"Crop the image to the slice and try again.")


def decompression_bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid PNG of ``width × height`` black pixels: small as a file, huge once decoded.

    20000 × 20000 is 400 megapixels, 400 MB as 8-bit gray, stored in about 0.4 MB because
    rows of zeros compress about 1000:1: the shape of a *decompression bomb*. For the lesson's
    demonstration and the tests; nothing else should need it.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(6)
    row = bytes(width + 1)  # a filter byte (0: none) and width black pixels
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------
# The gallery: a few slices of the official Testing split
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GalleryItem:
    """One test slice: its path inside the dataset folder and its class (from the folder)."""

    relpath: str
    label: str

    @property
    def title(self) -> str:
        return f"{self.label}: {Path(self.relpath).name}"


def gallery(per_class: int = 3, seed: int = 0) -> list[GalleryItem]:
    """``per_class`` slices of each class from the official Testing split, chosen at random
    (repeatably, from the manifest: nothing is decoded) and listed class by class."""
    rng = np.random.default_rng(seed)
    manifest = read_manifest()
    items = []
    for label in CLASSES:
        entries = [e for e in manifest if e.split == "Testing" and e.label == label]
        chosen = sorted(rng.choice(len(entries), size=min(per_class, len(entries)), replace=False))
        items += [GalleryItem(entries[i].relpath, label) for i in chosen]
    return items


def load_gallery_image(item: GalleryItem | str, root: Path | None = None) -> Image.Image:
    """The gallery slice as a grayscale image, read from the dataset folder like the cache."""
    relpath = item.relpath if isinstance(item, GalleryItem) else item
    return load_image((root or locate_dataset()) / relpath)


# ------------------------------------------------------------------------------------------
# The model's view: preprocessing, probabilities, Grad-CAM
# ------------------------------------------------------------------------------------------


@contextmanager
def one_thread():
    """Run PyTorch on one CPU thread inside the block, then restore the previous setting.

    The app scores one image at a time. For such tiny batches, splitting each operation
    across threads gains little, and when the machine is busy it can cost a lot: every
    operation waits for its slowest thread, and a busy 2-core machine made one forward pass
    of EfficientNet-Lite0 many times slower with two threads than with one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def prepare(trained: TrainedModel, image: Image.Image, name: str = "image") -> ImageSet:
    """``image`` as a one-image ``ImageSet`` at the model's size, made exactly like the
    training cache (pad to a square with black, resize bilinearly); ``trained.inputs`` of
    it is the normalised tensor the model takes. The label is unknown: -1."""
    gray = to_grayscale(image)
    pixels = np.asarray(square_resize(gray, trained.size), dtype=np.uint8)
    return ImageSet(torch.from_numpy(pixels.copy())[None], torch.tensor([-1]), [name])


def predict_probabilities(trained: TrainedModel, image: Image.Image) -> np.ndarray:
    """Softmax probabilities ``(n_classes,)`` for one image, scored as the lesson that trained
    the model scored (with test-time flip averaging if it chose it), on the CPU."""
    with one_thread():
        probs, _ = trained.predict(prepare(trained, image), device="cpu")
    return probs[0]


def grad_cam_map(trained: TrainedModel, image: Image.Image, target: int) -> np.ndarray:
    """Grad-CAM map ``(size, size)`` in [0, 1] for class ``target`` at the model's usual
    target layer (its last convolutional stage), from the unflipped image."""
    from .gradcam import default_target_layer, grad_cam

    trained.model.cpu()
    x = trained.inputs(prepare(trained, image))
    with one_thread():
        return grad_cam(trained.model, default_target_layer(trained.model), x, targets=int(target))[0].numpy()


@dataclass
class Analysis:
    """What the app shows for one image and one model."""

    lesson: str
    source: str                 # where the image came from: a gallery title or an upload's name
    pixels: np.ndarray          # uint8 (size, size): the image as the model sees it, before normalisation
    probabilities: np.ndarray   # (n_classes,), summing to 1
    cam: np.ndarray             # (size, size) in [0, 1]: Grad-CAM of the top class
    classes: tuple[str, ...] = CLASSES
    true_label: str | None = None  # known for gallery slices (their folder), not for uploads

    @property
    def top(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def top_class(self) -> str:
        return self.classes[self.top]

    def summary(self) -> str:
        ranked = np.argsort(self.probabilities)[::-1]
        parts = ", ".join(f"{self.classes[k]} {self.probabilities[k]:.1%}" for k in ranked)
        truth = f" (folder says {self.true_label})" if self.true_label else ""
        return f"{self.source}{truth}, model of lesson {self.lesson}: {parts}"


def analyse(trained: TrainedModel, image: Image.Image, source: str = "image",
            true_label: str | None = None) -> Analysis:
    """Probabilities and the Grad-CAM map of the top class for one image."""
    probs = predict_probabilities(trained, image)
    top = int(np.argmax(probs))
    pixels = prepare(trained, image, source).images[0].numpy()
    classes = tuple(trained.meta.get("classes") or CLASSES)
    return Analysis(trained.lesson, source, pixels, probs, grad_cam_map(trained, image, top), classes, true_label)


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
    ax.set_xlabel("softmax probability (not a calibrated certainty)", fontsize=8)
    for bar, p in zip(bars, analysis.probabilities):
        ax.text(bar.get_width() + 0.02, bar.get_y() + bar.get_height() / 2, f"{p:.1%}", va="center", fontsize=9)
    ax.set_title(f"model of lesson {analysis.lesson}", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_image(ax, analysis: Analysis, alpha: float | None) -> None:
    from .gradcam import overlay

    if alpha is None:
        ax.imshow(analysis.pixels, cmap="gray", vmin=0, vmax=255)
        truth = f"\nfolder: {analysis.true_label}" if analysis.true_label else "\nclass unknown (upload)"
        ax.set_title(f"input, {analysis.pixels.shape[-1]} px{truth}", fontsize=9)
    else:
        ax.imshow(overlay(analysis.pixels.astype(np.float32), analysis.cam, alpha))
        ax.set_title(f"Grad-CAM for {analysis.top_class}\n({analysis.probabilities[analysis.top]:.1%})", fontsize=9)
    ax.axis("off")


def result_figure(analysis: Analysis, alpha: float = 0.5):
    """Input, Grad-CAM overlay and probabilities side by side (the lesson's static figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.5]})
    _draw_image(axes[0], analysis, None)
    _draw_image(axes[1], analysis, alpha)
    _draw_probabilities(axes[2], analysis)
    fig.suptitle(f"{analysis.source} (course demo, not a diagnosis)", fontsize=10)
    fig.tight_layout()
    return fig


def probability_figure(analysis: Analysis):
    """The class probabilities as a horizontal bar chart, the top class highlighted."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 2.6))
    _draw_probabilities(fig.subplots(), analysis)
    fig.tight_layout()
    return fig


def overlay_figure(analysis: Analysis, alpha: float = 0.5):
    """The input as the model sees it and its Grad-CAM overlay for the top class."""
    from matplotlib.figure import Figure

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
    from IPython.display import Image as PNG, display

    display(PNG(data=figure_png(fig, dpi)))


# ------------------------------------------------------------------------------------------
# Models: which exist, loaded once each
# ------------------------------------------------------------------------------------------


def available_models(lessons: Sequence[str] = tuple(MODEL_NAMES), profile: str | None = None) -> dict[str, bool]:
    """For each lesson, whether its checkpoint exists in ``profile`` (nothing is loaded)."""
    profile = profile or current_profile()
    return {lesson: checkpoint_path(lesson, profile).is_file() for lesson in lessons}


class ModelShelf:
    """Loads each lesson's model on first use and keeps it; never trains anything.

    A missing checkpoint raises ``CheckpointMissingError`` (naming the lesson that makes it)
    every time it is asked for, so the model can appear later without restarting.
    """

    def __init__(self, profile: str | None = None, loader: Callable[..., TrainedModel] = load_lesson_model):
        self.profile = profile or current_profile()
        self.loader = loader
        self.loaded: dict[str, TrainedModel] = {}

    def get(self, lesson: str) -> TrainedModel:
        if lesson not in self.loaded:
            self.loaded[lesson] = self.loader(lesson, self.profile)
        return self.loaded[lesson]


# ------------------------------------------------------------------------------------------
# The widget app
# ------------------------------------------------------------------------------------------


def _message(text: str, kind: str) -> str:
    colours = {"error": ("#fdecea", "#b71c1c"), "info": ("#e8f4fd", "#0d47a1"), "ok": ("#edf7ed", "#1b5e20")}
    background, colour = colours[kind]
    return (f'<div class="mri-app-{kind}" style="background:{background};color:{colour};padding:6px 10px;'
            f'border-radius:4px;white-space:pre-wrap;font-family:inherit">{html.escape(text)}</div>')


def probability_table(analysis: Analysis) -> str:
    """The probabilities as a small HTML table (readable text next to the chart)."""
    bold = ' style="font-weight:bold"'
    rows = "".join(
        f"<tr{bold if k == analysis.top else ''}><td>{html.escape(c)}</td>"
        f'<td style="text-align:right;padding-left:1em">{p:.1%}</td></tr>'
        for k, (c, p) in enumerate(zip(analysis.classes, analysis.probabilities)))
    return f'<table class="mri-app-probabilities" style="line-height:1.3">{rows}</table>'


class ClassifierApp:
    """The app's state and callbacks; ``container`` is the widget to display.

    Every callback catches the errors a learner can cause (a bad file, a missing model) and
    shows them in the status line, so the app keeps working; anything unexpected is shown
    too, with its type, rather than lost in a log.
    """

    def __init__(self, lessons: Sequence[str] = tuple(MODEL_NAMES), items: Sequence[GalleryItem] | None = None,
                 profile: str | None = None, loader: Callable[..., TrainedModel] = load_lesson_model,
                 per_class: int = 3, alpha: float = 0.5):
        import ipywidgets as w

        self.shelf = ModelShelf(profile, loader)
        self.alpha = alpha
        self.image: Image.Image | None = None
        self.source = ""
        self.true_label: str | None = None
        self.analysis: Analysis | None = None
        self.dataset_message = ""
        if items is None:
            try:
                root = locate_dataset()
                items = [i for i in gallery(per_class) if (root / i.relpath).is_file()]
            except DatasetNotFoundError as error:
                items, self.dataset_message = [], str(error)
        self.items = {item.relpath: item for item in items}

        exists = available_models(lessons, self.shelf.profile)
        options = [(MODEL_NAMES.get(l, f"lesson {l}") + ("" if exists[l] else f" (not trained yet: run lesson {l})"), l)
                   for l in lessons]
        default = next((l for l in PREFERRED if exists.get(l)), lessons[0] if lessons else None)

        self.header = w.HTML(f"<h3>Brain MRI classifier (course demo)</h3>{_message(DISCLAIMER, 'info')}")
        self.model_menu = w.Dropdown(options=options, value=default, description="Model",
                                     layout=w.Layout(width="480px"), style={"description_width": "70px"})
        self.gallery_menu = w.Dropdown(options=[(i.title, i.relpath) for i in items], value=None,
                                       description="Test slice", layout=w.Layout(width="480px"),
                                       style={"description_width": "70px"})
        # No icon: it is a Font Awesome glyph, a font that an offline page may not be able to load.
        self.upload = w.FileUpload(accept="", multiple=False, description="Upload an image", icon="",
                                   layout=w.Layout(width="auto"))
        self.status = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(display="none", object_fit="contain"))
        self.overlay = w.Image(format="png", layout=w.Layout(display="none", object_fit="contain"))
        self.table = w.HTML()
        for widget, name in ((self.status, "status"), (self.chart, "chart"), (self.overlay, "overlay"),
                             (self.table, "table"), (self.upload, "upload"), (self.model_menu, "model"),
                             (self.gallery_menu, "gallery")):
            widget.add_class(f"mri-app-{name}")
        self.container = w.VBox([
            self.header,
            self.model_menu,
            w.HBox([self.gallery_menu, w.HTML("&nbsp;or&nbsp;"), self.upload]),
            self.status,
            w.HBox([self.overlay, w.VBox([self.chart, self.table])], layout=w.Layout(align_items="flex-start")),
        ])
        self.container.add_class("mri-app")

        self.model_menu.observe(lambda change: self.refresh(), names="value")
        self.gallery_menu.observe(self._on_gallery, names="value")
        self.upload.observe(self._on_upload, names="value")

        if self.dataset_message:
            self.show(f"No gallery: {self.dataset_message}\nUploading an image still works.", "error")
        elif items:
            self.gallery_menu.value = items[0].relpath  # analyses the first slice
        else:
            self.show("Choose a test slice or upload an image.", "info")

    # -- callbacks ---------------------------------------------------------------------------

    def _on_gallery(self, change) -> None:
        if change["new"] is not None:
            self.choose_gallery(change["new"])

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        entry = files[0]
        self.handle_upload(entry["content"], entry.get("name") or "the file")
        self.upload.value = ()  # the same file can be uploaded again

    def choose_gallery(self, relpath: str) -> None:
        """Show a gallery slice (by its path in the dataset folder)."""
        item = self.items[relpath]
        try:
            image = load_gallery_image(item)
        except (ImageLoadError, DatasetNotFoundError) as error:
            self.clear_result()
            self.show(str(error), "error")
            return
        self.set_image(image, item.title, item.label)

    def handle_upload(self, payload: bytes | memoryview, name: str) -> None:
        """Decode an uploaded file and show it, or explain why it cannot be used."""
        self.gallery_menu.value = None  # no gallery slice is selected now (re-selecting one works)
        try:
            image = decode_upload(payload, repr(name))
        except UploadError as error:
            self.image = None
            self.clear_result()
            self.show(str(error), "error")
            return
        self.set_image(image, f"upload {name}", None)

    def set_image(self, image: Image.Image, source: str, true_label: str | None) -> None:
        self.image, self.source, self.true_label = image, source, true_label
        self.refresh()

    def refresh(self) -> None:
        """Analyse the current image with the chosen model and redraw."""
        lesson = self.model_menu.value
        if self.image is None:
            return
        if lesson is None:
            self.show("No model to choose: run lesson 08, 10 or 11 first.", "error")
            return
        self.show(f"Analysing {self.source} with the model of lesson {lesson}...", "info")
        try:
            trained = self.shelf.get(lesson)
            self.analysis = analyse(trained, self.image, self.source, self.true_label)
        except (CheckpointMissingError, CourseFileError, ImageLoadError) as error:
            self.clear_result()
            self.show(f"{error}\nThe other models still work: choose one above.", "error")
            return
        except Exception as error:  # shown, not swallowed: the app must keep answering
            self.clear_result()
            self.show(f"Unexpected error ({type(error).__name__}): {error}", "error")
            return
        self.chart.value = figure_png(probability_figure(self.analysis))
        self.overlay.value = figure_png(overlay_figure(self.analysis, self.alpha))
        self.chart.layout.display = self.overlay.layout.display = None
        self.table.value = probability_table(self.analysis)
        truth = f" (folder: {self.true_label})" if self.true_label else ""
        self.show(f"{self.source}{truth}: the lesson-{lesson} model's top class is {self.analysis.top_class} "
                  f"({self.analysis.probabilities[self.analysis.top]:.1%}).", "ok")

    def clear_result(self) -> None:
        self.analysis = None
        self.chart.layout.display = self.overlay.layout.display = "none"
        self.chart.value = self.overlay.value = b""
        self.table.value = ""

    def show(self, text: str, kind: str) -> None:
        self.status.value = _message(text, kind)


def build_app(lessons: Sequence[str] = tuple(MODEL_NAMES), items: Sequence[GalleryItem] | None = None,
              profile: str | None = None, per_class: int = 3, alpha: float = 0.5):
    """The whole app as one widget (display it in a notebook, or serve it with Voilà).

    ``lessons``: the models offered; ``items``: the gallery (default ``per_class`` Testing
    slices per class); ``profile``: whose checkpoints (default: ``COURSE_PROFILE``).
    The returned ``VBox`` keeps its controller in ``.app`` (for tests and exercises).
    """
    app = ClassifierApp(lessons, items, profile, per_class=per_class, alpha=alpha)
    app.container.app = app
    return app.container


# ------------------------------------------------------------------------------------------
# Standalone: the lesson's app cells, served by Voilà
# ------------------------------------------------------------------------------------------

LESSON = "notebooks/15_mri_classifier_app.md"
APP_TAG = "app"


def app_notebook(lesson: str | Path | None = None, tag: str = APP_TAG):
    """The cells of the lesson tagged ``tag``, as a notebook (read with jupytext)."""
    import jupytext
    import nbformat

    source = jupytext.read(str(lesson or project_root() / LESSON))
    cells = [c for c in source.cells if tag in c.metadata.get("tags", [])]
    if not any(c.cell_type == "code" for c in cells):
        raise ValueError(f"no code cell tagged {tag!r} in {lesson or LESSON}")
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": source.metadata.get("kernelspec", {
        "display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"})})
    for cell in cells:
        cell.metadata.pop("tags", None)
        notebook.cells.append(cell)
    return notebook


def write_app_notebook(path: str | Path, lesson: str | Path | None = None) -> Path:
    """Write ``app_notebook(lesson)`` to ``path`` (an ``.ipynb``) and return the path."""
    import nbformat

    return atomic_write_text(path, nbformat.writes(app_notebook(lesson)).rstrip("\n") + "\n")


# The server drops websocket messages over 10 MiB (tornado's default), and with them any
# larger upload, silently. Voilà gets a limit above MAX_BYTES, so the app can say "too large".
WEBSOCKET_MAX_BYTES = 100 * 1024 * 1024


def voila_command(notebook: str | Path, port: int = 8866, ip: str = "127.0.0.1", browser: bool = False) -> list[str]:
    """The command line that serves ``notebook`` with Voilà on ``ip:port`` (no token).

    It is ``voila NOTEBOOK --port=PORT --Voila.ip=IP [--no-browser]`` with one setting more,
    the websocket message limit, given as a number (on the command line, traitlets would
    only take it as a deprecated dict literal or as a string).
    """
    launch = ("import sys; from voila.app import Voila; Voila.launch_instance(sys.argv[1:], "
              f"tornado_settings={{'websocket_max_message_size': {WEBSOCKET_MAX_BYTES}}})")
    command = [sys.executable, "-c", launch, str(notebook), f"--port={port}", f"--Voila.ip={ip}",
               "--show_tracebacks=True"]
    return command if browser else command + ["--no-browser"]


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    parser = argparse.ArgumentParser(prog="python -m course_utils.app",
                                     description="The lesson-15 MRI classifier app as a standalone web page (Voilà).")
    sub = parser.add_subparsers(dest="command", required=True)
    nb = sub.add_parser("notebook", help="write the app notebook (the lesson's cells tagged 'app')")
    nb.add_argument("path", nargs="?", default=str(project_root() / "build" / "app" / "mri_classifier_app.ipynb"))
    serve = sub.add_parser("serve", help="write the app notebook and serve it with Voilà")
    serve.add_argument("--port", type=int, default=8866)
    serve.add_argument("--ip", default="127.0.0.1")
    serve.add_argument("--browser", action="store_true", help="open a browser too")
    args = parser.parse_args(argv)
    if args.command == "notebook":
        print(write_app_notebook(args.path))
        return 0
    path = write_app_notebook(project_root() / "build" / "app" / "mri_classifier_app.ipynb")
    command = voila_command(path, args.port, args.ip, args.browser)
    print(f"Serving {path} at http://{args.ip}:{args.port}/ (profile {current_profile()}); Ctrl+C stops it.",
          flush=True)
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
