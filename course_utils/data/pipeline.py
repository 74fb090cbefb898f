"""The lesson pipeline: from an image size to loaders and normalisation statistics, in one call.

In the spirit of d2l's ``load_data_fashion_mnist(batch_size, resize)``: the lessons from 06 on
all need the same few steps, and each step is written here once.

* ``subset(images, per_class)``: all images, or a stratified sample (the smoke profile's);
* ``pixel_stats(images)``: the mean and standard deviation of the *training* pixels, which
  standardise every split (statistics of validation or test images would leak into the model);
* ``load_data(size, batch_size, ...)``: the grouped (or official) splits at ``size`` px (subsets if
  asked), their statistics and their loaders, as a ``LessonData``. Its ``loader(images,
  train=...)`` serves any other ``ImageSet`` the same way;
* ``serve(images, train, ...)``: one loader, for lessons whose images change size as they go.

Every random choice has its own seeded generator (the sample, the shuffling, the
augmentation), so building a pipeline draws nothing from the global random state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .cache import ImageSet
from .loaders import MRIDataset, make_loader, train_augmentation
from .splits import load_splits


def subset(images: ImageSet, per_class: int | None, seed: int = 0) -> ImageSet:
    """All images (``per_class=None``), or a stratified sample of ``per_class`` per class."""
    return images if per_class is None else images.sample_per_class(per_class, seed=seed)


def pixel_stats(images: ImageSet) -> tuple[float, float]:
    """Mean and standard deviation of the pixels of ``images``, scaled to [0, 1]."""
    pixels = images.float_images()
    return pixels.mean().item(), pixels.std().item()


def serve(images: ImageSet, train: bool = False, *, batch_size: int, eval_batch_size: int = 256,
          channels: int = 1, mean: float = 0.0, std: float = 1.0, augment: bool = True,
          seed: int = 0) -> torch.utils.data.DataLoader:
    """``images`` as model inputs ``(x - mean) / std`` with ``channels`` channels, in batches.

    ``train=True``: shuffled (with ``seed``) and, if ``augment``, augmented with
    ``train_augmentation(seed=seed)``, ``batch_size`` at a time; otherwise in order, without
    augmentation, ``eval_batch_size`` at a time.
    """
    transform = train_augmentation(seed=seed) if train and augment else None
    dataset = MRIDataset(images, transform=transform, channels=channels, mean=mean, std=std)
    return make_loader(dataset, batch_size=batch_size if train else eval_batch_size, shuffle=train, seed=seed)


@dataclass
class LessonData:
    """The three splits of a lesson, how they are normalised and served.

    ``train_loader`` shuffles (with ``seed``) and augments (``train_augmentation(seed=seed)``
    when ``augment``); ``val_loader`` and ``test_loader`` serve in order, without
    augmentation, ``eval_batch_size`` images at a time. Each loader is made once, on first use.
    """

    train: ImageSet
    val: ImageSet
    test: ImageSet
    mean: float
    std: float
    channels: int = 1
    batch_size: int = 64
    eval_batch_size: int = 256
    augment: bool = True
    seed: int = 0

    def loader(self, images: ImageSet, train: bool = False, seed: int | None = None) -> torch.utils.data.DataLoader:
        """``images`` served like the training split (``train=True``) or like the evaluation
        splits, with this pipeline's settings; ``seed`` (default: the pipeline's)."""
        return serve(images, train, batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                     channels=self.channels, mean=self.mean, std=self.std, augment=self.augment,
                     seed=self.seed if seed is None else seed)

    @cached_property
    def train_loader(self) -> torch.utils.data.DataLoader:
        return self.loader(self.train, train=True)

    @cached_property
    def val_loader(self) -> torch.utils.data.DataLoader:
        return self.loader(self.val)

    @cached_property
    def test_loader(self) -> torch.utils.data.DataLoader:
        return self.loader(self.test)

    def __repr__(self) -> str:
        return (f"LessonData(train {len(self.train)}, val {len(self.val)}, test {len(self.test)} images; "
                f"{self.channels} channel(s), (x - {self.mean:.4f}) / {self.std:.4f})")


def load_data(size: int, batch_size: int, *, per_class: tuple[int | None, int | None, int | None] = (None, None, None),
              channels: int = 1, mean: float | None = None, std: float | None = None, augment: bool = True,
              seed: int = 0, eval_batch_size: int = 256, split: str | None = None) -> LessonData:
    """The train / validation / test splits at ``size`` px, ready to train on.

    ``split`` is ``load_splits``'s: the grouped split unless ``"official"`` (or
    ``COURSE_SPLIT=official``) asks for the dataset's own folders.

    ``per_class`` samples each split (train, val, test) down to that many images per class
    (``None``: all). ``mean`` and ``std`` default to the training pixels' own (``pixel_stats``
    of the training split, after sampling); a pretrained network passes the statistics it was
    trained with. ``channels=3`` repeats the gray channel for ImageNet backbones.
    """
    splits = [subset(images, n) for images, n in zip(load_splits(size, split), per_class)]
    if mean is None or std is None:
        mean, std = pixel_stats(splits[0])
    return LessonData(*splits, mean=mean, std=std, channels=channels, batch_size=batch_size,
                      eval_batch_size=eval_batch_size, augment=augment, seed=seed)
