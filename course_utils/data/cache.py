"""Decoded, cached image sets: the dataset as one ``uint8`` tensor per resolution.

``load_images(split, size)`` decodes the dataset once (``build_cache``) into
``data/cache/`` and afterwards loads it in about a second.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import UnreadableFileError, atomic_torch_save, dict_with, read_or_explain, torch_load
from .images import load_image, model_pixels
from .source import CLASSES, SPLITS, _memory, cache_dir, get_dataset, manifest_digest, read_manifest, verify_dataset


# Bump when the decoding or resizing below changes, so old caches are rebuilt.
CACHE_VERSION = 1


def _decode_for_cache(args: tuple[str, int]) -> np.ndarray:
    path, size = args
    return model_pixels(load_image(path), size)


# --------------------------------------------------------------------------------------
# Decoded, cached image sets
# --------------------------------------------------------------------------------------


@dataclass
class ImageSet:
    """A set of images in memory: ``images`` is ``uint8 (N, H, W)``, ``labels`` ``int64 (N,)``.

    ``files`` holds each image's path relative to the dataset folder, e.g.
    ``"Training/glioma/Tr-gl_0010.jpg"``, so every prediction can be traced to its file.
    """

    images: torch.Tensor
    labels: torch.Tensor
    files: list[str]
    classes: tuple[str, ...] = CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "ImageSet":
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], [self.files[i] for i in index.tolist()], self.classes)

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels, minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))

    def sample_per_class(self, n: int, seed: int = 0) -> "ImageSet":
        """A stratified random subset with at most ``n`` images of each class."""
        rng = np.random.default_rng(seed)
        labels = self.labels.numpy()
        chosen = []
        for k in range(len(self.classes)):
            members = np.flatnonzero(labels == k)
            chosen.extend(rng.permutation(members)[:n].tolist())
        return self.subset(sorted(chosen))

    def float_images(self) -> torch.Tensor:
        """Images as ``float32 (N, 1, H, W)`` in ``[0, 1]``."""
        return self.images.unsqueeze(1).float().div_(255)


def cache_path(size: int) -> Path:
    return cache_dir() / f"brain-mri-{size}px-v{CACHE_VERSION}.pt"


def build_cache(size: int, root: Path | None = None, workers: int | None = None) -> Path:
    """Decode every image of both splits once at ``size`` px and save one tensor file.

    The file is written atomically (``course_utils.files.atomic_write``): an interrupted run
    or a full disk never leaves a broken or half-written cache behind.
    """
    from tqdm.auto import tqdm  # here: only when a bar is shown

    root = Path(root) if root else get_dataset()
    verify_dataset(root)
    entries = read_manifest()
    paths = [str(root / e.relpath) for e in entries]
    workers = workers or min(4, os.cpu_count() or 1)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        arrays = list(
            tqdm(
                pool.map(_decode_for_cache, [(p, size) for p in paths], chunksize=64),
                total=len(paths),
                desc=f"decoding {len(paths)} images at {size}px",
            )
        )
    payload = {
        "images": torch.from_numpy(np.stack(arrays)),
        "labels": torch.tensor([CLASSES.index(e.label) for e in entries], dtype=torch.long),
        "files": [e.relpath for e in entries],
        "manifest": manifest_digest(),
        "version": CACHE_VERSION,
    }
    target = atomic_torch_save(payload, cache_path(size))
    print(f"Decoded {len(paths)} images at {size}px in {time.perf_counter() - start:.1f} s -> {target}")
    return target
CACHE_KEYS = ("images", "labels", "files", "manifest", "version")


def _read_cache(size: int) -> dict | None:
    path = cache_path(size)
    if not path.is_file():
        return None
    key = (str(path), path.stat().st_mtime)
    if key in _memory:
        return _memory[key]
    try:
        payload = read_or_explain(path, torch_load, made_by="build_cache", fix="",
                                  check=dict_with(*CACHE_KEYS))
    except UnreadableFileError as error:  # a cache is disposable: rebuild it
        print(f"Rebuilding the image cache {path.name}: {error.reason}.")
        return None
    if payload.get("manifest") != manifest_digest() or payload.get("version") != CACHE_VERSION:
        return None
    _memory.clear()  # keep one resolution in memory at a time
    _memory[key] = payload
    return payload


def load_images(split: str, size: int) -> ImageSet:
    """All images of ``split`` (``"Training"`` or ``"Testing"``) at ``size`` × ``size`` px.

    The first call decodes the whole dataset (a few seconds per resolution) and caches it;
    later calls read the cache.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    payload = _read_cache(size)
    if payload is None:
        build_cache(size)
        payload = _read_cache(size)
    prefix = split + "/"
    index = [i for i, f in enumerate(payload["files"]) if f.startswith(prefix)]
    lo, hi = index[0], index[-1] + 1  # the manifest is sorted by split, so this is one slice
    return ImageSet(payload["images"][lo:hi], payload["labels"][lo:hi], payload["files"][lo:hi])
