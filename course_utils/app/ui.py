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
* ``build_app()`` wires them to widgets: a gallery of test slices, a file
  upload, a model menu (a missing checkpoint shows which lesson makes it, and the other
  models keep working), the probabilities and the overlay.

The same app runs inside JupyterLab and, with Voilà, as a standalone web page:
``python -m course_utils.app serve`` extracts the lesson's cells tagged ``app`` into a
small notebook and serves it (``course_utils.app.serve``).

A course demo, not a diagnostic tool: the models saw one public dataset of 2-D slices, the
probabilities are not calibrated certainties, and a heat map is not a segmentation.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from PIL import Image

from ..data.images import ImageLoadError
from ..data.source import DatasetNotFoundError, locate_dataset
from ..files import CourseFileError
from ..profiles import current_profile
from ..training.checkpoints import CheckpointMissingError, checkpoint_path
from ..training.inference import TrainedModel, load_lesson_model
from .analysis import Analysis, analyse
from .figures import figure_png, overlay_figure, probability_figure, probability_label
from .guard import REJECT_MESSAGE, Guard, TrainingIndex, load_guard, training_index
from .gallery import GalleryItem, gallery, load_gallery_image
from .upload import UploadError, decode_upload


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


# Validation slices per class the guard is fitted on, by profile (None: the whole validation split).
GUARD_VAL_PER_CLASS = {"full": None, "smoke": 25}
# What keeps the guard or the training index from being made: the dataset or its cache is missing or damaged.
SAFETY_ERRORS = (FileNotFoundError, CourseFileError, ImageLoadError)


class GuardShelf:
    """Each model's out-of-distribution guard and the index of training images, made on first
    use (``course_utils.app.guard``). Without validation data there is no guard: ``guard``
    returns ``None`` and ``notes`` say why, and the app answers without it."""

    def __init__(self, profile: str | None = None, enabled: bool = True,
                 guard_loader: Callable[..., Guard] = load_guard,
                 index_loader: Callable[[], TrainingIndex] = training_index):
        self.per_class = GUARD_VAL_PER_CLASS.get(profile or current_profile())
        self.enabled = enabled
        self.guard_loader, self.index_loader = guard_loader, index_loader
        self.guards: dict[str, Guard | None] = {}
        self.notes: dict[str, str] = {}

    def guard(self, trained: TrainedModel) -> Guard | None:
        if self.enabled and trained.lesson not in self.guards:
            try:
                self.guards[trained.lesson] = self.guard_loader(trained, self.per_class)
            except SAFETY_ERRORS as error:
                self.guards[trained.lesson] = None
                self.notes["guard"] = f"No out-of-distribution guard (it needs the validation images): {error}"
        return self.guards.get(trained.lesson)

    def index(self) -> TrainingIndex | None:
        if not self.enabled or "index" in self.notes:
            return None
        try:
            return self.index_loader()
        except SAFETY_ERRORS as error:
            self.notes["index"] = f"Cannot check whether an image is a training image: {error}"
            return None


# ------------------------------------------------------------------------------------------
# The widget app
# ------------------------------------------------------------------------------------------


#: The status box's background and text colour for each kind of message. An answer is green when
#: it agrees with the slice's known label, amber when it does not (amber too: the guard's refusal),
#: and neutral when there is no known label to compare it with (an upload).
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    "error": ("#fdecea", "#b71c1c"), "info": ("#e8f4fd", "#0d47a1"), "warn": ("#fff4e5", "#8a4b00"),
    "agree": ("#edf7ed", "#1b5e20"), "disagree": ("#fff4e5", "#8a4b00"), "unlabelled": ("#f2f2f2", "#333333"),
}


def _message(text: str, kind: str) -> str:
    background, colour = STATUS_COLOURS[kind]
    return (f'<div class="mri-app-{kind}" style="background:{background};color:{colour};padding:6px 10px;'
            f'border-radius:4px;white-space:pre-wrap;overflow-wrap:anywhere;font-family:inherit">'
            f'{html.escape(text)}</div>')


def answer_status(top_class: str, true_label: str | None) -> tuple[str, str]:
    """The kind of status box an answer gets, and the sentence that says why.

    ``"agree"`` (green) when the model's top class is the image's known label (a gallery
    slice's folder in the dataset), ``"disagree"`` (amber) when it is not, so that a wrong
    answer never looks like a success, and ``"unlabelled"`` (neutral) when there is no known
    label to compare with (an upload): then the colour says nothing about right or wrong.
    """
    if true_label is None:
        return "unlabelled", "No known label to compare it with (only the test slices have one)."
    if top_class == true_label:
        return "agree", f"It agrees with the slice's folder label ({true_label})."
    return "disagree", f"It disagrees with the slice's folder label ({true_label}): the model is wrong here."


def probability_table(analysis: Analysis) -> str:
    """The probabilities as a small HTML table (readable text next to the chart)."""
    bold = ' style="font-weight:bold"'
    rows = "".join(
        f"<tr{bold if k == analysis.top else ''}><td>{html.escape(c)}</td>"
        f'<td style="text-align:right;padding-left:1em">{p:.1%}</td></tr>'
        for k, (c, p) in enumerate(zip(analysis.classes, analysis.probabilities)))
    return f'<table class="mri-app-probabilities" style="line-height:1.3">{rows}</table>'


def notices_html(analysis: Analysis, notes: dict[str, str]) -> str:
    """The notes under the status line: a memorised training image, a missing guard."""
    texts = ([analysis.memorised.notice()] if analysis.memorised else []) + list(notes.values())
    return "".join(_message(text, "info") for text in texts)


class ClassifierApp:
    """The app's state and callbacks; ``container`` is the widget to display.

    Every callback catches the errors a learner can cause (a bad file, a missing model) and
    shows them in the status line, so the app keeps working; anything unexpected is shown
    too, with its type, rather than lost in a log.
    """

    def __init__(self, lessons: Sequence[str] = tuple(MODEL_NAMES), items: Sequence[GalleryItem] | None = None,
                 profile: str | None = None, loader: Callable[..., TrainedModel] = load_lesson_model,
                 per_class: int = 3, alpha: float = 0.5, guarded: bool = True):
        import ipywidgets as w  # here: only when the app is built

        self.shelf = ModelShelf(profile, loader)
        self.safety = GuardShelf(self.shelf.profile, guarded)
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
        # Menus as wide as the page allows, at most 480 px, and allowed to shrink below their
        # longest option (min_width 0); rows wrap on a narrow screen (a phone).
        menu = dict(width="100%", max_width="480px", min_width="0")
        self.model_menu = w.Dropdown(options=options, value=default, description="Model",
                                     layout=w.Layout(**menu), style={"description_width": "70px"})
        self.gallery_menu = w.Dropdown(options=[(i.title, i.relpath) for i in items], value=None,
                                       description="Test slice", layout=w.Layout(**menu),
                                       style={"description_width": "70px"})
        # No icon: it is a Font Awesome glyph, a font that an offline page may not be able to load.
        # The widget writes the number of files it holds after the label: (1) while an uploaded
        # file is what the app shows, (0) otherwise (choosing a test slice empties it). It never
        # shrinks, so the label stays readable.
        self.upload = w.FileUpload(accept="", multiple=False, description="Upload an image", icon="",
                                   tooltip="Upload an image; (1) while the uploaded file is the one shown",
                                   layout=w.Layout(width="auto", flex="0 0 auto"))
        self.status = w.HTML()
        self.notice = w.HTML()  # memorised image, missing guard
        # Pictures no wider than their column (no margin: it would reach past it), shrunk on a phone.
        picture = dict(display="none", object_fit="contain", max_width="100%", margin="0")
        self.chart = w.Image(format="png", layout=w.Layout(**picture))
        self.overlay = w.Image(format="png", layout=w.Layout(**picture))
        self.table = w.HTML()
        for widget, name in ((self.status, "status"), (self.notice, "notice"), (self.chart, "chart"), (self.overlay, "overlay"),
                             (self.table, "table"), (self.upload, "upload"), (self.model_menu, "model"),
                             (self.gallery_menu, "gallery")):
            widget.add_class(f"mri-app-{name}")
        self.container = w.VBox([
            self.header,
            w.HBox([self.model_menu]),  # in a row, a menu shrinks (by its margins too) to fit
            w.HBox([self.gallery_menu, w.HTML("&nbsp;or&nbsp;"), self.upload],
                   layout=w.Layout(flex_flow="row wrap", align_items="center")),
            self.status,
            self.notice,
            w.HBox([self.overlay, w.VBox([self.chart, self.table], layout=w.Layout(max_width="100%"))],
                   layout=w.Layout(flex_flow="row wrap", align_items="flex-start")),
        ], layout=w.Layout(max_width="100%"))
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
        # The file stays in the widget, whose label then reads (1): the file shown was uploaded.

    def choose_gallery(self, relpath: str) -> None:
        """Show a gallery slice (by its path in the dataset folder)."""
        item = self.items[relpath]
        self.upload.value = ()  # no uploaded file is shown now: the label reads (0), any file can come next
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
            self.analysis = analyse(trained, self.image, self.source, self.true_label,
                                    self.safety.guard(trained), self.safety.index())
        except (CheckpointMissingError, CourseFileError, ImageLoadError) as error:
            self.clear_result()
            self.show(f"{error}\nThe other models still work: choose one above.", "error")
            return
        except Exception as error:  # shown, not swallowed: the app must keep answering
            self.clear_result()
            self.show(f"Unexpected error ({type(error).__name__}): {error}", "error")
            return
        if self.analysis.rejected:
            self.show_rejection(lesson)
        else:
            self.show_answer(lesson)
        self.notice.value = notices_html(self.analysis, self.safety.notes)

    def show_answer(self, lesson: str) -> None:
        """The model's answer: probabilities (chart and table), Grad-CAM overlay, status line."""
        self.chart.value = figure_png(probability_figure(self.analysis))
        self.overlay.value = figure_png(overlay_figure(self.analysis, self.alpha))
        self.chart.layout.display = self.overlay.layout.display = None
        self.table.value = probability_table(self.analysis)
        kind, comparison = answer_status(self.analysis.top_class, self.true_label)
        self.show(f"{self.source}: the lesson-{lesson} model's top class is {self.analysis.top_class} "
                  f"({self.analysis.probabilities[self.analysis.top]:.1%}, {probability_label(self.analysis)}).\n"
                  f"{comparison}", kind)

    def show_rejection(self, lesson: str) -> None:
        """No answer: the guard's message and reasons; no chart, no table, no map."""
        analysis = self.analysis
        self.clear_result()
        self.analysis = analysis
        truth = f" (folder: {self.true_label})" if self.true_label else ""
        self.show(f"{self.source}{truth}: {REJECT_MESSAGE}, so the lesson-{lesson} model gives no answer.\n"
                  f"{analysis.verdict.explain()}", "warn")

    def clear_result(self) -> None:
        self.analysis = None
        self.notice.value = ""
        self.chart.layout.display = self.overlay.layout.display = "none"
        self.chart.value = self.overlay.value = b""
        self.table.value = ""

    def show(self, text: str, kind: str) -> None:
        self.status.value = _message(text, kind)


def build_app(lessons: Sequence[str] = tuple(MODEL_NAMES), items: Sequence[GalleryItem] | None = None,
              profile: str | None = None, per_class: int = 3, alpha: float = 0.5, guarded: bool = True):
    """The whole app as one widget (display it in a notebook, or serve it with Voilà).

    ``lessons``: the models offered; ``items``: the gallery (default ``per_class`` Testing
    slices per class); ``profile``: whose checkpoints (default: ``COURSE_PROFILE``).
    The returned ``VBox`` keeps its controller in ``.app`` (for tests and exercises).
    """
    app = ClassifierApp(lessons, items, profile, per_class=per_class, alpha=alpha, guarded=guarded)
    app.container.app = app
    return app.container
