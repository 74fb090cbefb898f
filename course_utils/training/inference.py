"""One inference path: a trained model and its model card, from an image to probabilities.

``TrainedModel`` holds a network and the ``ModelCard`` saved with it.
``preprocess(image)`` prepares an image (a PIL image or an ``ImageSet``) exactly as the
training inputs were prepared: square, resized, normalised; ``predict(x, flips=...)``
scores the prepared inputs as the lesson that trained the model scored (test-time flip
averaging if that lesson chose it, mixed precision handled by
``course_utils.training.loop.predict``). The app (lesson 15), Grad-CAM (lesson 12) and the
honest evaluation (lesson 13) all go this way, preparing each image once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.cache import ImageSet
from ..data.images import model_pixels
from ..data.loaders import MRIDataset, make_loader
from ..profiles import current_profile
from .checkpoints import (CheckpointMissingError, ModelCard, checkpoint_path, missing_message, read_checkpoint,
                          rebuild)
from .loop import predict


@dataclass
class TrainedModel:
    """A trained model and how to feed it (its ``card``: size, channels, normalisation, flips)."""

    lesson: str
    model: nn.Module
    card: ModelCard
    path: Path

    @property
    def size(self) -> int:
        return self.card.size

    @property
    def channels(self) -> int:
        return self.card.channels

    def image_set(self, image: Image.Image, name: str = "image") -> ImageSet:
        """One image as a one-image ``ImageSet`` at the model's size, made exactly like the
        training cache (grayscale, padded to a square with black, resized bilinearly).
        The label is unknown: -1."""
        pixels = model_pixels(image, self.size)
        return ImageSet(torch.from_numpy(pixels)[None], torch.tensor([-1]), [name])

    def dataset(self, images: ImageSet) -> MRIDataset:
        """``images`` (at ``self.size`` px) served as this model's inputs, without augmentation."""
        if images.images.shape[-1] != self.size:
            raise ValueError(f"lesson {self.lesson}'s model expects {self.size} px images, "
                             f"not {images.images.shape[-1]} px; load them with size={self.size}")
        return MRIDataset(images, channels=self.channels, mean=self.card.mean, std=self.card.std)

    def preprocess(self, images: ImageSet | Image.Image) -> torch.Tensor:
        """The input batch ``(N, channels, size, size)`` the model takes for ``images``."""
        if isinstance(images, Image.Image):
            images = self.image_set(images)
        return self.dataset(images)[list(range(len(images)))][0]

    def predict(self, x: ImageSet | torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 64,
                flips: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (N, C), labels (N,))`` for an ``ImageSet`` or for inputs that
        ``preprocess`` made (their labels are unknown: -1), scored as the lesson that trained
        the model scored (``flips=None``: flip averaging if its card says so)."""
        if isinstance(x, ImageSet):
            batches = make_loader(self.dataset(x), batch_size=batch_size, shuffle=False)
        else:
            batches = [(x[i:i + batch_size], torch.full((len(x[i:i + batch_size]),), -1))
                       for i in range(0, len(x), batch_size)]
        self.model.to(device)
        return predict(self.model, batches, device, flips=self.card.flips if flips is None else flips)

    def __repr__(self) -> str:
        return (f"TrainedModel(lesson {self.lesson}: {self.card.architecture}, {self.size} px, "
                f"{self.channels} channel(s), from {self.path.name})")


def load_lesson_model(lesson: str, profile: str | None = None) -> TrainedModel:
    """Load the model lesson ``lesson`` ("08", "09", "10" or "11") trained in ``profile``.

    Raises ``CheckpointMissingError`` (naming the lesson to run) if it is not there yet,
    ``UnreadableFileError`` (naming the lesson to re-run) if it is damaged.
    """
    profile = profile or current_profile()
    path = checkpoint_path(lesson, profile)
    if not path.is_file():
        raise CheckpointMissingError(missing_message(lesson, path, profile))
    checkpoint = read_checkpoint(path)
    card = ModelCard.from_checkpoint(checkpoint, path)
    model = rebuild(card, checkpoint["model"], path, checkpoint.get("architecture"))
    return TrainedModel(lesson=lesson, model=model, card=card, path=path)
