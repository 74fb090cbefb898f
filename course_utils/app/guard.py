"""Saying "I don't know": an out-of-distribution guard and a memorised-image check for the app.

A classifier's softmax always sums to one, so it answers noise, a black square or a cat
photo as confidently as a brain slice. The guard adds three pieces of evidence, each with a
threshold chosen on *validation* images (never the test set), and rejects an image that
fails any of them:

* the model's **energy score** ``E(x) = −T · log Σ_k exp(z_k / T)`` (Liu et al., 2020) with
  ``T = 1``: low (very negative) when some logit is large, i.e. when the input resembles what
  the model was trained on. An image is accepted if ``E ≤`` the threshold that keeps
  ``ENERGY_KEEP`` (95 %) of the validation images;
* the image's **share of black pixels** (lesson 13's ``black_share``): every slice of this
  dataset sits on a black background, noise and photos mostly do not, and a blank image is
  nothing but black or nothing but white. It must lie in the range that keeps the central
  ``IMAGE_KEEP`` (99 %) of validation images;
* the image's **roughness**: the mean absolute difference between neighbouring pixels,
  relative to the image's own contrast (its mean absolute deviation from its mean grey). An
  MRI slice is smooth inside each tissue, so neighbours differ far less than the image varies
  overall; in pixel noise neighbours are as different as any two pixels (a ratio above 1,
  whatever the noise's strength). It must lie in the range that keeps the central
  ``IMAGE_KEEP`` of validation images. A confident model is no defence
  here: a network trained on the grouped split can call noise "notumor" with high confidence,
  so its energy passes.

The probabilities the app shows are temperature-scaled (lesson 13's ``fit_temperature``,
fitted on the same validation images). The guard is fitted once per checkpoint and cached
next to it (``<checkpoint>.guard.json``, keyed by the checkpoint's SHA-256).

**Memorised images**: an image that is a training image, or a mirrored or re-encoded copy of
one, proves nothing when the model gets it right. ``TrainingIndex`` compares an image's
64 px thumbnail with every training thumbnail in four orientations, with lesson 13's
correlation of thumbnails and its near-duplicate threshold (``course_utils.data.audit``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import audit
from ..data.cache import ImageSet
from ..data.images import model_pixels
from ..data.source import sha256_of
from ..data.splits import load_splits
from ..files import atomic_write_text, json_load, read_or_explain
from ..profiles import current_split
from ..training.calibration import apply_temperature, fit_temperature
from ..training.inference import TrainedModel


ENERGY_KEEP = 0.95   # the energy threshold keeps this share of validation images
IMAGE_KEEP = 0.99    # the black-share range keeps this central share of validation images
REJECT_MESSAGE = "This does not look like a brain MRI slice of the kind the model was trained on"
GUARD_VERSION = 3    # bump when the guard's fields or rules change, so cached guards are refitted


# ------------------------------------------------------------------------------------------
# Scores and thresholds
# ------------------------------------------------------------------------------------------


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``−T · logsumexp(z / T)`` per row of ``logits (N, C)``: lower means more familiar."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1, keepdims=True)
    return -temperature * (top[:, 0] + np.log(np.exp(z - top).sum(axis=1)))


def max_softmax(probabilities: np.ndarray) -> np.ndarray:
    """The largest probability per row: the simplest confidence score (Hendrycks & Gimpel, 2017)."""
    return np.asarray(probabilities).max(axis=1)


def threshold_keeping(scores: np.ndarray, keep: float) -> float:
    """The smallest threshold ``t`` with ``scores ≤ t`` for at least ``keep`` of ``scores``.

    With ``n`` scores sorted ascending, it is the ``⌈keep · n⌉``-th one: exactly that many are
    kept when there are no ties, and no threshold below it keeps enough.
    """
    values = np.sort(np.asarray(scores, dtype=np.float64))
    if not len(values) or not 0 < keep <= 1:
        raise ValueError(f"need scores and 0 < keep <= 1, got {len(values)} scores and keep={keep}")
    return float(values[math.ceil(keep * len(values) - 1e-9) - 1])


def central_range(scores: np.ndarray, keep: float) -> tuple[float, float]:
    """``(low, high)`` leaving out at most ``(1 − keep) / 2`` of ``scores`` on each side."""
    tail = (1 - keep) / 2
    high = threshold_keeping(scores, 1 - tail)
    low = -threshold_keeping(-np.asarray(scores, dtype=np.float64), 1 - tail)
    return low, high


def model_logits(trained: TrainedModel, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Logits ``(N, C)`` of prepared inputs ``x`` on the CPU; with the mean of an image's and
    its mirror's logits when the model's lesson scored with flip averaging."""
    trained.model.cpu().eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            z = trained.model(batch).float()
            if trained.card.flips:
                z = (z + trained.model(batch.flip(-1)).float()) / 2
            out.append(z)
    return torch.cat(out).numpy()


def black_share(pixels: np.ndarray | torch.Tensor) -> np.ndarray:
    """Lesson 13's share of (near-)black pixels for ``uint8`` images ``(N, H, W)``."""
    return audit.black_share(torch.as_tensor(np.asarray(pixels)))


def roughness(pixels: np.ndarray | torch.Tensor) -> np.ndarray:
    """How much neighbouring pixels differ, relative to how much the image varies overall, for
    ``uint8`` images ``(N, H, W)``: the mean absolute difference between horizontal and
    vertical neighbours divided by the mean absolute deviation from the image's mean.

    Near 0 for smooth images (and 0 for a blank one); 4/3 for independent uniform noise
    (E|U - V| = 1/3 against E|U - 1/2| = 1/4), and about as much for any pixel noise, however
    strong: dividing by the image's own contrast makes the score blind to the noise's level.
    """
    x = (pixels.float() if isinstance(pixels, torch.Tensor)
         else torch.as_tensor(np.array(pixels, dtype=np.float32))) / 255   # a copy: read-only arrays too
    across = (x[:, :, 1:] - x[:, :, :-1]).abs().mean(dim=(1, 2))
    down = (x[:, 1:, :] - x[:, :-1, :]).abs().mean(dim=(1, 2))
    contrast = (x - x.mean(dim=(1, 2), keepdim=True)).abs().mean(dim=(1, 2))
    return (((across + down) / 2) / contrast.clamp_min(1e-6)).numpy()


# ------------------------------------------------------------------------------------------
# The guard
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the guard says about one image: accepted or not, and why."""

    accepted: bool
    energy: float
    black_share: float
    roughness: float = 0.0
    reasons: tuple[str, ...] = ()

    def explain(self) -> str:
        """One sentence per failed check (empty when accepted)."""
        return " ".join(self.reasons)


@dataclass(frozen=True)
class Guard:
    """Thresholds fitted on validation images of one checkpoint, and its temperature."""

    temperature: float
    energy_threshold: float
    black_range: tuple[float, float]
    n_val: int
    roughness_range: tuple[float, float] = (0.0, 1.0)
    energy_keep: float = ENERGY_KEEP
    image_keep: float = IMAGE_KEEP
    checkpoint_sha256: str = ""
    version: int = GUARD_VERSION
    validation: str = field(default="", compare=False)  # which validation images, in words

    def check(self, logits: np.ndarray, pixels: np.ndarray) -> list[Verdict]:
        """A ``Verdict`` per image, from its logits ``(N, C)`` and pixels ``uint8 (N, H, W)``."""
        energies, shares, rough = energy_score(logits), black_share(pixels), roughness(pixels)
        low, high = self.black_range
        smooth, coarse = self.roughness_range
        verdicts = []
        for e, s, r in zip(energies, shares, rough):
            reasons = []
            if e > self.energy_threshold:
                reasons.append(f"The model's energy score {e:.2f} is above {self.energy_threshold:.2f}, the "
                               f"threshold that keeps {self.energy_keep:.0%} of validation slices.")
            if not low <= s <= high:
                reasons.append(f"{s:.0%} of its pixels are black; {self.image_keep:.0%} of validation slices "
                               f"have between {low:.0%} and {high:.0%}.")
            if not smooth <= r <= coarse:
                reasons.append(f"Its roughness {r:.2f} (how much neighbouring pixels differ, relative to its "
                               f"contrast) is outside {smooth:.2f} to {coarse:.2f}, the range of "
                               f"{self.image_keep:.0%} of validation slices.")
            verdicts.append(Verdict(not reasons, float(e), float(s), float(r), tuple(reasons)))
        return verdicts

    def calibrate(self, probabilities: np.ndarray) -> np.ndarray:
        """Temperature-scaled probabilities (lesson 13): same ranking, more honest confidence."""
        return apply_temperature(np.atleast_2d(probabilities), self.temperature).reshape(np.shape(probabilities))


def fit_guard(trained: TrainedModel, val: ImageSet, energy_keep: float = ENERGY_KEEP,
              image_keep: float = IMAGE_KEEP, validation: str = "") -> Guard:
    """Fit the temperature and the three thresholds on validation images ``val`` (at the model's size)."""
    x = trained.preprocess(val)
    probs, labels = trained.predict(x, "cpu")
    labels = val.labels.numpy()
    logits = model_logits(trained, x)
    return Guard(temperature=fit_temperature(probs, labels),
                 energy_threshold=threshold_keeping(energy_score(logits), energy_keep),
                 black_range=central_range(black_share(val.images), image_keep), n_val=len(val),
                 roughness_range=central_range(roughness(val.images), image_keep),
                 energy_keep=energy_keep, image_keep=image_keep, checkpoint_sha256=sha256_of(trained.path),
                 validation=validation)


def guard_path(trained: TrainedModel) -> Path:
    """Where the guard of a checkpoint is cached: next to it, ``<name>.guard.json``."""
    return trained.path.with_name(trained.path.stem + ".guard.json")


def validation_images(trained: TrainedModel, per_class: int | None = None) -> ImageSet:
    """The validation split the lessons held out (all, or ``per_class`` per class), at the model's size."""
    val = load_splits(trained.size)[1]
    return val if per_class is None else val.sample_per_class(per_class, seed=0)


def load_guard(trained: TrainedModel, per_class: int | None = None) -> Guard:
    """The checkpoint's guard: read from its cache if it was fitted on this very checkpoint
    with the same validation images and rules, else fitted now and cached."""
    path, sha = guard_path(trained), sha256_of(trained.path)
    validation = (f"{current_split()} split's validation part, "
                  f"{'all images' if per_class is None else f'{per_class} per class'}")
    if path.is_file():
        stored = read_or_explain(path, json_load, made_by="course_utils.app.guard.load_guard",
                                 fix=f"delete {path.name}; the app fits the guard again")
        if (stored.get("checkpoint_sha256") == sha and stored.get("validation") == validation
                and stored.get("version") == GUARD_VERSION):
            stored["black_range"] = tuple(stored["black_range"])
            stored["roughness_range"] = tuple(stored["roughness_range"])
            return Guard(**stored)
    guard = fit_guard(trained, validation_images(trained, per_class), validation=validation)
    atomic_write_text(path, json.dumps(asdict(guard), indent=1) + "\n")
    return guard


# ------------------------------------------------------------------------------------------
# Memorised images: is this (a copy of) a training image?
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingMatch:
    """The most similar training image of a query: its file, correlation and orientation."""

    file: str
    similarity: float
    orientation: str

    def notice(self) -> str:
        how = "" if self.orientation == "as is" else f" ({self.orientation})"
        return (f"This image is a copy{how} of the training image {self.file} (thumbnail correlation "
                f"{self.similarity:.3f}). A model trained on it may simply remember it, so a right "
                f"answer here proves nothing about new images.")


class TrainingIndex:
    """Thumbnails of the training images, ready to be compared with any query image.

    The descriptors (``audit.descriptors``: mean removed, length 1) of the training
    thumbnails are computed once; a query is compared in lesson 13's four orientations
    (flipping the query instead of the training set gives the same correlations).
    """

    def __init__(self, thumbnails: torch.Tensor, files: list[str],
                 threshold: float = audit.NEAR_DUPLICATE_THRESHOLD):
        self.size = int(thumbnails.shape[-1])
        self.files = list(files)
        self.threshold = threshold
        self.reference = audit.descriptors(thumbnails)

    def nearest(self, image: Image.Image) -> TrainingMatch:
        """The training image most similar to ``image`` (in any of four orientations)."""
        query = torch.from_numpy(model_pixels(image, self.size))[None]
        scores = torch.stack([audit.descriptors(o)[0] @ self.reference.T for o in audit.orientations(query)])
        best, which = scores.max(dim=0)
        j = int(best.argmax())
        return TrainingMatch(self.files[j], float(best[j]), audit.ORIENTATIONS[int(which[j])])

    def match(self, image: Image.Image) -> TrainingMatch | None:
        """The nearest training image if it is a copy (at or above the threshold), else ``None``."""
        nearest = self.nearest(image)
        return nearest if nearest.similarity >= self.threshold else None


@lru_cache(maxsize=1)
def training_index(size: int = audit.FINE_SIZE) -> TrainingIndex:
    """The index of the training split (the grouped split's training part, which lessons 08–11
    train on), from the course's cached ``size`` px thumbnails; built once per process.

    In the smoke profile the lessons train on a sample of this split, so a match means "in
    the split the model learns from", which the full-profile models saw entirely."""
    train = load_splits(size)[0]
    return TrainingIndex(train.images, train.files)
