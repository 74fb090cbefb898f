"""The app's gallery: a few slices of the grouped split's test part, picked reproducibly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.images import load_image
from ..data.source import CLASSES, locate_dataset
from ..data.splits import read_grouped_split


# ------------------------------------------------------------------------------------------
# The gallery: a few slices of the test split, which no lesson's model trained on
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
    """``per_class`` slices of each class from the grouped split's test part (no copy of them
    is among the training images), chosen at random (repeatably, from the split's manifest:
    nothing is decoded) and listed class by class."""
    rng = np.random.default_rng(seed)
    rows = read_grouped_split()
    items = []
    for label in CLASSES:
        entries = [r["relpath"] for r in rows if r["split"] == "test" and r["label"] == label]
        chosen = sorted(rng.choice(len(entries), size=min(per_class, len(entries)), replace=False))
        items += [GalleryItem(entries[i], label) for i in chosen]
    return items


def load_gallery_image(item: GalleryItem | str, root: Path | None = None) -> Image.Image:
    """The gallery slice as a grayscale image, read from the dataset folder like the cache."""
    relpath = item.relpath if isinstance(item, GalleryItem) else item
    return load_image((root or locate_dataset()) / relpath)
