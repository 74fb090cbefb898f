"""Train / validation / test splits: the grouped one (the course's default) and the official one.

``load_splits(size)`` returns the grouped split (``load_grouped_split``): it uses
``grouped_split.csv`` (made by ``course_utils.data.grouping``) so that no same-slice or
same-scan group is in two parts. ``load_splits(size, "official")`` splits the official
``Training/`` folder, stratified by class, and keeps ``Testing/`` as the test set.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from ..profiles import SPLIT_CHOICES, SPLIT_VARIABLE, current_split
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


def load_splits(size: int, split: str | None = None, val_fraction: float = 0.15,
                seed: int = 0) -> tuple[ImageSet, ImageSet, ImageSet]:
    """``(train, val, test)`` at ``size`` px: the course's grouped split unless told otherwise.

    ``split="grouped"`` (the default, ``load_grouped_split``): all 7023 images pooled and split
    so that no copy or neighbouring slice crosses train / validation / test.
    ``split="official"``: the ``Training/`` folder split stratified into train and validation
    (``val_fraction``, ``seed``) and the ``Testing/`` folder untouched, for comparison with
    published figures; most of its test images have a copy in ``Training/``.
    ``None`` takes the environment's choice (``COURSE_SPLIT``, default grouped). Either way the
    test part is for the final score only, never to choose a model or a hyper-parameter.
    """
    split = split or current_split()
    if split == "grouped":
        return load_grouped_split(size)
    if split == "official":
        training = load_images("Training", size)
        train_idx, val_idx = stratified_split(training.labels.numpy(), val_fraction, seed)
        return training.subset(train_idx), training.subset(val_idx), load_images("Testing", size)
    raise ValueError(f"split={split!r} is not a split; use one of {', '.join(SPLIT_CHOICES)} "
                     f"(or set {SPLIT_VARIABLE})")


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
