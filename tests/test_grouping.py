"""Same-slice matching survives mirrors, rotations, shifts, re-framing and contrast changes;
same-scan groups do not chain; the committed grouped split is reproducible and leak-free;
the group-weighted score and the Wilson interval match hand-computed values."""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_audit import phantom

from course_utils import data
from course_utils.data import audit
from course_utils.data import grouping
from course_utils.training import metrics

REAL = os.environ.get(data.DATA_ENV)
real_data = pytest.mark.skipif(
    not (REAL and Path(REAL, "Training").is_dir()), reason=f"${data.DATA_ENV} not set to the dataset"
)


# ------------------------------------------------------------------------------------------
# Robust matching on synthetic slices
# ------------------------------------------------------------------------------------------


def reframed(img: Image.Image) -> Image.Image:
    """The brain rescaled to 70 % and put off-centre on a larger black canvas."""
    small = img.resize((int(img.width * 0.7), int(img.height * 0.7)), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (img.width + 40, img.height + 20), 0)
    canvas.paste(small, (50, 12))
    return canvas


def gamma(img: Image.Image, g: float = 0.5) -> Image.Image:
    return img.point(lambda p: int(round(255 * (p / 255) ** g)))


COPIES = {
    "rotated 90°": lambda img: img.transpose(Image.Transpose.ROTATE_90),
    "rotated 270° and mirrored": lambda img: img.transpose(Image.Transpose.TRANSVERSE),
    "mirrored left-right": lambda img: img.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "shifted by one pixel": lambda img: Image.fromarray(np.roll(np.asarray(img), (1, 1), axis=(0, 1))),
    "border added, rescaled": reframed,
    "gamma 0.5": gamma,
    "gamma 2": lambda img: gamma(img, 2.0),
    "gamma 2, reframed, rotated 90°": lambda img: gamma(reframed(img), 2.0).transpose(Image.Transpose.ROTATE_90),
}


def cached(images: list[Image.Image], size: int = grouping.SOURCE_SIZE) -> torch.Tensor:
    """What the course caches: padded to a square, resized, uint8 ``(N, size, size)``."""
    return torch.from_numpy(np.stack([np.asarray(data.square_resize(im, size)) for im in images]))


def robust_scores(images: list[Image.Image]) -> dict[tuple[int, int], float]:
    """Aligned 64 px similarity of every candidate pair ``(i, j)``."""
    source = cached(images)
    pairs = grouping.robust_pairs(grouping.aligned_thumbnails(source, grouping.SEARCH_SIZE),
                                  grouping.aligned_thumbnails(source, grouping.FINE_SIZE))
    return {(int(a), int(b)): float(s) for a, b, s in zip(pairs["i"], pairs["j"], pairs["fine"])}


def test_copies_match_whatever_was_done_to_them():
    original = phantom(5)
    images = [original] + [make(original) for make in COPIES.values()]
    scores = robust_scores(images)
    for k, kind in enumerate(COPIES, start=1):
        assert scores.get((0, k), 0.0) >= grouping.SLICE_THRESHOLD, kind


def test_the_old_audit_misses_rotated_and_reframed_copies():
    """Why the robust matching exists: the four-orientation, padded-thumbnail audit misses these."""
    original = phantom(5)
    kinds = ["rotated 90°", "border added, rescaled", "gamma 2, reframed, rotated 90°"]
    images = [original] + [COPIES[k](original) for k in kinds]
    near = audit.similar_pairs(cached(images, 64), cached(images, 32))
    assert {(0, k) for k in range(1, 4)}.isdisjoint(zip(near["i"].tolist(), near["j"].tolist()))


def test_different_slices_do_not_match():
    images = [phantom(seed) for seed in range(10)]
    images += [reframed(images[0]), gamma(images[1])]       # copies must not make others match
    scores = robust_scores(images)
    copies = {(0, 10), (1, 11)}
    assert all(s < grouping.SLICE_THRESHOLD for pair, s in scores.items() if pair not in copies)


def test_equalise_ignores_monotone_contrast_changes():
    x = torch.rand(2, 8, 8) * 140 + 100     # all foreground, before and after the change
    y = 255 * (x / 255) ** 1.7
    assert torch.allclose(grouping.equalise(x), grouping.equalise(y))
    assert (grouping.equalise(torch.zeros(1, 4, 4)) == 0).all()  # no foreground: all background


def test_dihedral_gives_eight_distinct_orientations():
    x = torch.arange(9.0).view(1, 3, 3)
    views = {tuple(grouping.dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(views) == 8


# ------------------------------------------------------------------------------------------
# Groups
# ------------------------------------------------------------------------------------------


def test_slice_groups_are_connected_components_numbered_by_first_member():
    ids = grouping.slice_groups(6, [(np.array([4, 1]), np.array([5, 3]))])
    assert ids.tolist() == [0, 1, 2, 1, 3, 3]


def test_scan_groups_do_not_chain_and_keep_copies_and_sizes_together():
    n = 8
    similarity = torch.zeros(n, n)
    for a in range(5):                       # a chain 0-1-2-3-4-5 of neighbours at 0.9
        similarity[a, a + 1] = similarity[a + 1, a] = 0.9
    similarity[6, 7] = similarity[7, 6] = 0.99   # alike, but of different original sizes
    sizes = [(512, 512)] * 6 + [(512, 512), (256, 256)]
    slice_ids = np.array([0, 0, 1, 2, 3, 4, 5, 6])  # images 0 and 1 are copies of one slice
    scan = grouping.scan_groups(slice_ids, similarity, sizes, threshold=0.8)
    assert scan[0] == scan[1]                             # same slice => same scan
    assert np.bincount(scan).max() < 6                     # single linkage would join 0..5
    assert scan[6] != scan[7]
    chain = audit.connected_groups(n, *np.nonzero(np.triu(similarity.numpy() >= 0.8)))
    assert max(map(len, chain)) == 6                       # what connected components would do


def test_conflicting_groups_lists_groups_with_two_labels():
    groups = np.array([0, 0, 1, 1, 2])
    labels = np.array([1, 3, 2, 2, 0])
    assert grouping.conflicting_groups(groups, labels) == [[0, 1]]


# ------------------------------------------------------------------------------------------
# Scores
# ------------------------------------------------------------------------------------------


def test_group_accuracy_counts_each_group_once():
    # group 0: 2 of 3 right; group 1: 1 of 1; group 2: 0 of 1  ->  (2/3 + 1 + 0) / 3
    accuracy, n = metrics.group_accuracy([0, 0, 0, 1, 1], [0, 0, 1, 1, 0], [7, 7, 7, 3, 9])
    assert n == 3 and accuracy == pytest.approx(5 / 9)
    with pytest.raises(ValueError, match="lengths differ"):
        metrics.group_accuracy([0], [0, 1], [0])


def test_wilson_interval_matches_hand_computation():
    low, high = metrics.wilson_interval(8, 10)
    assert (low, high) == pytest.approx((0.4902, 0.9433), abs=5e-5)
    assert metrics.wilson_interval(0, 20)[0] == 0.0 and metrics.wilson_interval(20, 20)[1] == 1.0
    assert 0 < metrics.wilson_interval(20, 20)[0] < 1


# ------------------------------------------------------------------------------------------
# The committed split, on the real dataset
# ------------------------------------------------------------------------------------------

OFFICIAL_TEST = {"glioma": 300, "meningioma": 306, "notumor": 405, "pituitary": 300}


@real_data
def test_no_group_crosses_a_boundary_and_the_test_set_looks_like_the_official_one():
    rows = data.read_grouped_split()
    assert [r["relpath"] for r in rows] == [e.relpath for e in data.read_manifest()]
    for level in ("slice_group", "scan_group"):
        splits_of = {}
        for r in rows:
            if r["split"] == "excluded":
                continue
            splits_of.setdefault(r[level], set()).add(r["split"])
        assert all(len(s) == 1 for s in splits_of.values()), level
    scan_of_slice = {}
    for r in rows:
        scan_of_slice.setdefault(r["slice_group"], set()).add(r["scan_group"])
    assert all(len(s) == 1 for s in scan_of_slice.values())  # same-slice groups nest in same-scan groups
    test = Counter(r["label"] for r in rows if r["split"] == "test")
    assert abs(sum(test.values()) - 1311) < 0.05 * 1311
    for label, n in OFFICIAL_TEST.items():
        assert abs(test[label] / sum(test.values()) - n / 1311) < 0.03
    val = sum(r["split"] == "val" for r in rows)
    assert 0.5 * 1311 < val <= 1.1 * 1311


@real_data
def test_conflicting_slices_are_excluded():
    rows = data.read_grouped_split()
    excluded = {r["relpath"] for r in rows if r["split"] == "excluded"}
    # the same slice is filed under meningioma and under pituitary
    assert {"Training/meningioma/Tr-me_1311.jpg", "Training/pituitary/Tr-pi_0043.jpg"} <= excluded
    by_group = {}
    for r in rows:
        by_group.setdefault(r["slice_group"], []).append(r)
    for members in by_group.values():
        mixed = len({r["label"] for r in members}) > 1
        assert all((r["split"] == "excluded") == mixed for r in members)


@real_data
def test_load_grouped_split_follows_the_file():
    train, val, test = data.load_grouped_split(32)
    rows = data.read_grouped_split()
    for part, name in ((train, "train"), (val, "val"), (test, "test")):
        wanted = [r for r in rows if r["split"] == name]
        assert part.files == [r["relpath"] for r in wanted]
        assert [part.classes[k] for k in part.labels.tolist()] == [r["label"] for r in wanted]
    groups = data.grouped_split_groups(test.files)
    assert len(set(groups.tolist())) < len(test)  # copies inside the test set share a group


@real_data
def test_recomputed_split_is_byte_identical(tmp_path):
    """The whole pipeline from the cached thumbnails (about 40 s on two cores)."""
    path = tmp_path / "grouped_split.csv"
    grouping.write_grouped_split(path)
    assert path.read_bytes() == data.GROUPED_SPLIT_PATH.read_bytes()
