"""Train / validation / test splits: the stratified one and the grouped one.

``load_splits`` splits the official ``Training/`` folder, stratified by class;
``load_grouped_split`` uses ``grouped_split.csv`` (made by ``course_utils.data.grouping``)
so that no slice or scan group is in two parts.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from .cache import ImageSet, load_images
from .source import SPLITS


GROUPED_SPLIT_PATH = Path(__file__).with_name("grouped_split.csv")


def stratified_split(labels, val_fraction: float = 0.15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a train/validation split that keeps each class's share in both parts."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        n_val = int(round(len(members) * val_fraction))
        val.extend(members[:n_val].tolist())
        train.extend(members[n_val:].tolist())
    return np.array(sorted(train)), np.array(sorted(val))


def load_splits(size: int, val_fraction: float = 0.15, seed: int = 0) -> tuple[ImageSet, ImageSet, ImageSet]:
    """``(train, val, test)``: ``Training/`` split stratified into train and validation.

    The official ``Testing/`` folder is returned untouched; use it only for the final score,
    never to choose a model or a hyper-parameter.
    """
    training = load_images("Training", size)
    train_idx, val_idx = stratified_split(training.labels.numpy(), val_fraction, seed)
    return training.subset(train_idx), training.subset(val_idx), load_images("Testing", size)


def read_grouped_split(path: Path | None = None) -> list[dict[str, str]]:
    """The rows of ``grouped_split.csv``: ``relpath, label, split, slice_group, scan_group``.

    ``split`` is ``train``, ``val``, ``test`` or ``excluded`` (a slice filed under two
    labels). The file is made by ``course_utils.data.grouping``; see its docstring for how the
    groups are found and what they cannot guarantee.
    """
    path = Path(path or GROUPED_SPLIT_PATH)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing. Recreate it with:  python -m course_utils.data.grouping write-split")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_grouped_split(size: int, path: Path | None = None) -> tuple[ImageSet, ImageSet, ImageSet]:
    """``(train, val, test)`` of the grouped split at ``size`` px, from both dataset folders.

    All 7023 images are pooled and split so that no same-slice or same-scan group crosses a
    boundary (``course_utils.data.grouping``); unlike the official split, the test set holds no
    copy of a training image. ``grouped_split_groups(test.files)`` gives each image's group.
    """
    rows = read_grouped_split(path)
    pooled = [load_images(split, size) for split in SPLITS]
    files = [f for s in pooled for f in s.files]
    position = {f: i for i, f in enumerate(files)}
    missing = [r["relpath"] for r in rows if r["relpath"] not in position]
    if missing:
        raise ValueError(f"{len(missing)} files of {path or GROUPED_SPLIT_PATH} are not in the dataset, "
                         f"e.g. {missing[0]}; recreate it with  python -m course_utils.data.grouping write-split")
    everything = ImageSet(torch.cat([s.images for s in pooled]), torch.cat([s.labels for s in pooled]), files)
    return tuple(everything.subset([position[r["relpath"]] for r in rows if r["split"] == name])
                 for name in ("train", "val", "test"))


def grouped_split_groups(files: list[str], level: str = "slice_group", path: Path | None = None) -> np.ndarray:
    """The group id (``"slice_group"`` or ``"scan_group"``) of each of ``files`` in the grouped
    split, e.g. to score a test set counting each same-slice group once
    (``course_utils.training.metrics.group_accuracy``)."""
    group_of = {r["relpath"]: int(r[level]) for r in read_grouped_split(path)}
    return np.array([group_of[f] for f in files])
