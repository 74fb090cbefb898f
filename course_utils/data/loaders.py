"""PyTorch datasets and loaders: an ``ImageSet`` served as normalised input batches.

``MRIDataset`` turns a cached ``ImageSet`` into ``(x, y)`` tensors (channels, normalisation,
optional batch augmentation); ``make_loader`` serves it in a reproducible order.
"""

from __future__ import annotations


import numpy as np
import torch

from .cache import ImageSet


# --------------------------------------------------------------------------------------
# PyTorch datasets and loaders
# --------------------------------------------------------------------------------------


class BatchAugmentation:
    """Light, random augmentation of a whole batch at once, with its own random numbers.

    Input and output: ``float32 (B, 1, H, W)`` in ``[0, 1]``. Each image draws its own
    parameters: a left-right flip with probability ``flip``; a zoom by a factor in
    ``[1 - scale, 1 + scale]`` and a shift of up to ``shift`` × the image size (one
    ``grid_sample`` call for the batch); brightness and contrast factors in
    ``[1 - brightness, 1 + brightness]`` and ``[1 - contrast, 1 + contrast]``.

    Working on batches rather than single images makes augmentation about as cheap as a
    copy, and the private generator makes it repeatable from ``seed``.
    """

    def __init__(self, flip: float = 0.5, brightness: float = 0.1, contrast: float = 0.1,
                 shift: float = 0.05, scale: float = 0.05, seed: int = 0):
        self.flip, self.brightness, self.contrast = flip, brightness, contrast
        self.shift, self.scale = shift, scale
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.flip:
            flipped = torch.rand(n, generator=self.generator) < self.flip
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
        if self.shift or self.scale:
            zoom = self._uniform(n, 1 - self.scale, 1 + self.scale)
            theta = torch.zeros(n, 2, 3)
            theta[:, 0, 0] = theta[:, 1, 1] = 1 / zoom  # sample a smaller window = zoom in
            theta[:, :, 2] = self._uniform(2 * n, -2 * self.shift, 2 * self.shift).view(n, 2)
            grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            x = torch.nn.functional.grid_sample(x, grid, align_corners=False)
        if self.brightness or self.contrast:
            b = self._uniform(n, 1 - self.brightness, 1 + self.brightness)[:, None, None, None]
            c = self._uniform(n, 1 - self.contrast, 1 + self.contrast)[:, None, None, None]
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x * b - mean * b) * c + mean * b).clamp_(0, 1)
        return x

    def __repr__(self) -> str:
        return (f"BatchAugmentation(flip={self.flip}, shift={self.shift}, scale={self.scale}, "
                f"brightness={self.brightness}, contrast={self.contrast})")


def train_augmentation(flip: float = 0.5, brightness: float = 0.1, contrast: float = 0.1,
                       shift: float = 0.05, scale: float = 0.05, seed: int = 0) -> BatchAugmentation:
    """The light augmentation the course uses on MRI slices.

    Left-right flips are safe for axial brain slices (the brain is roughly symmetric and
    tumours occur on both sides); small shifts and zooms mimic framing differences; brightness
    and contrast mimic scanner settings. Rotations are left out: they cost accuracy here.
    """
    return BatchAugmentation(flip, brightness, contrast, shift, scale, seed)


class MRIDataset(torch.utils.data.Dataset):
    """Serves ``(image, label)`` pairs from an ``ImageSet`` as float tensors.

    Each image becomes ``float32 (channels, H, W)``: scaled to ``[0, 1]``, augmented by
    ``transform`` (a callable on a float batch ``(B, 1, H, W)``, such as
    ``train_augmentation()``), then standardised as ``(x - mean) / std``.
    ``channels=3`` repeats the gray channel for ImageNet models.

    Indexing with a list of indices returns a whole batch ``(x (B, C, H, W), y (B,))`` in one
    step; ``make_loader`` uses this, which keeps the per-image Python overhead out of training.
    """

    def __init__(self, images: ImageSet, transform=None, channels: int = 1,
                 mean: float = 0.0, std: float = 1.0):
        self.images = images
        self.transform = transform
        self.channels = channels
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return len(self.images)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).float().div_(255)  # (B, 1, H, W) in [0, 1]
        if self.transform is not None:
            x = self.transform(x)
        x = (x - self.mean) / self.std
        return x.expand(-1, self.channels, -1, -1) if self.channels != 1 else x

    def __getitem__(self, index):
        if isinstance(index, (list, tuple, torch.Tensor, np.ndarray)):
            index = torch.as_tensor(index, dtype=torch.long)
            return self._prepare(self.images.images[index]), self.images.labels[index]
        return self._prepare(self.images.images[index : index + 1])[0], int(self.images.labels[index])


def make_loader(dataset: MRIDataset, batch_size: int, shuffle: bool, seed: int = 0,
                drop_last: bool = False, sampler: torch.utils.data.Sampler | None = None) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` that yields whole batches and whose order depends only on ``seed``.

    The images already sit in memory, so loading happens in the main process
    (``num_workers=0``): no start-up cost, and the same order on every run. ``sampler``
    replaces the default order (e.g. a ``DistributedSampler`` that gives each process its
    own shard); ``shuffle`` and ``seed`` then belong to it.
    """
    if sampler is None:
        generator = torch.Generator().manual_seed(seed)
        sampler = (torch.utils.data.RandomSampler(dataset, generator=generator) if shuffle
                   else torch.utils.data.SequentialSampler(dataset))
    batches = torch.utils.data.BatchSampler(sampler, batch_size, drop_last=drop_last)
    # batch_size=None: each "index" the sampler yields is a list, and MRIDataset turns
    # the whole list into one batch.
    return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=batches, num_workers=0)
