"""What the app shows for one image: the model's probabilities and its Grad-CAM map.

The image is prepared once (``TrainedModel.preprocess``), scored as the lesson that trained
the model scored (``TrainedModel.predict``), and explained by Grad-CAM at the usual layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..data.cache import ImageSet
from ..data.source import CLASSES
from ..explain.gradcam import default_target_layer, grad_cam
from ..training.inference import TrainedModel
from .guard import REJECT_MESSAGE, Guard, TrainingIndex, TrainingMatch, Verdict, model_logits


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
    training cache (pad to a square with black, resize bilinearly); ``trained.preprocess``
    of it is the normalised tensor the model takes. The label is unknown: -1."""
    return trained.image_set(image, name)


def predict_probabilities(trained: TrainedModel, image: Image.Image | torch.Tensor) -> np.ndarray:
    """Softmax probabilities ``(n_classes,)`` for one image (or its prepared input), scored as
    the lesson that trained the model scored (with test-time flip averaging if it chose it),
    on the CPU."""
    x = image if torch.is_tensor(image) else trained.preprocess(image)
    with one_thread():
        probs, _ = trained.predict(x, device="cpu")
    return probs[0]


def grad_cam_map(trained: TrainedModel, image: Image.Image | torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM map ``(size, size)`` in [0, 1] for class ``target`` at the model's usual
    target layer (its last convolutional stage), from the unflipped image (or its prepared input)."""
    x = image if torch.is_tensor(image) else trained.preprocess(image)
    trained.model.cpu()
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
    verdict: Verdict | None = None          # the guard's, when the app has one
    memorised: TrainingMatch | None = None  # the training image this one copies, if any
    temperature: float | None = None        # the probabilities are scaled by it (None: raw softmax)

    @property
    def rejected(self) -> bool:
        """The guard says the image is unlike the slices the model was trained on."""
        return self.verdict is not None and not self.verdict.accepted

    @property
    def top(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def top_class(self) -> str:
        return self.classes[self.top]

    def summary(self) -> str:
        truth = f" (folder says {self.true_label})" if self.true_label else ""
        if self.rejected:
            return f"{self.source}{truth}, model of lesson {self.lesson}: no answer. {REJECT_MESSAGE}."
        ranked = np.argsort(self.probabilities)[::-1]
        parts = ", ".join(f"{self.classes[k]} {self.probabilities[k]:.1%}" for k in ranked)
        return f"{self.source}{truth}, model of lesson {self.lesson}: {parts}"


def analyse(trained: TrainedModel, image: Image.Image, source: str = "image", true_label: str | None = None,
            guard: Guard | None = None, index: TrainingIndex | None = None) -> Analysis:
    """Probabilities and the Grad-CAM map of the top class for one image, prepared once.

    With a ``guard``: its verdict, and probabilities scaled by its temperature; with an
    ``index``: the training image this one copies (as is or mirrored), if any."""
    prepared = prepare(trained, image, source)  # once: the pixels shown and the input scored
    pixels, x = prepared.images[0].numpy(), trained.preprocess(prepared)
    probs = predict_probabilities(trained, x)
    verdict = temperature = None
    if guard is not None:
        with one_thread():
            verdict = guard.check(model_logits(trained, x), pixels[None])[0]
        probs, temperature = guard.calibrate(probs), guard.temperature
    top = int(np.argmax(probs))
    return Analysis(trained.lesson, source, pixels, probs, grad_cam_map(trained, x, top), trained.card.classes,
                    true_label, verdict, index.match(image) if index is not None else None, temperature)
