"""The app's gallery: a few slices of the official Testing split, picked reproducibly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import load_image
from ..data.source import CLASSES, locate_dataset, read_manifest


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
