"""Lesson 13's duplicate-threshold explorer (course_utils.widgets.duplicates): flagged counts by
hand, their monotonicity, the borderline pairs on the right sides of the threshold, the figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from course_utils.widgets import duplicates

# Five hand-made pairs over images 0..5: image 0 is in three pairs, image 5 in none.
PAIRS = {"i": np.array([0, 0, 1, 2, 0]), "j": np.array([1, 2, 3, 4, 3]),
         "similarity": np.array([0.999, 0.985, 0.991, 0.975, 0.990]), "orientation": np.array([0, 1, 0, 3, 2])}


def test_flagged_counts_by_hand():
    n_pairs, n_images = duplicates.flagged_counts(PAIRS, np.array([0.97, 0.98, 0.99, 0.995, 1.0]))
    # >= 0.97: all 5 pairs, images {0,1,2,3,4}; >= 0.98: 4 pairs, {0,1,2,3};
    # >= 0.99: pairs 0.999, 0.991, 0.990 -> {0,1,3}; >= 0.995: one pair {0,1}; >= 1.0: none
    assert n_pairs.tolist() == [5, 4, 3, 1, 0]
    assert n_images.tolist() == [5, 4, 3, 2, 0]
    # a threshold equal to a similarity flags that pair (>=, as the audit does)
    assert duplicates.flagged_counts(PAIRS, np.array([0.991]))[0].tolist() == [2]


def test_flagged_counts_never_increase_with_the_threshold():
    rng = np.random.default_rng(0)
    pairs = {"i": rng.integers(0, 50, 400), "j": rng.integers(50, 100, 400), "similarity": rng.uniform(0.9, 1.0, 400)}
    n_pairs, n_images = duplicates.flagged_counts(pairs, np.linspace(0.85, 1.01, 300))
    assert (np.diff(n_pairs) <= 0).all() and (np.diff(n_images) <= 0).all()
    assert n_pairs[0] == 400 and n_images[0] == len(np.unique(np.concatenate([pairs["i"], pairs["j"]])))
    assert n_pairs[-1] == 0 and n_images[-1] == 0


def test_pairs_around_picks_the_borderline_pairs_on_each_side():
    above, below = duplicates.pairs_around(PAIRS, 0.99, k=2)
    assert above.tolist() == [4, 2]          # 0.990 (at the threshold: flagged), then 0.991
    assert below.tolist() == [1, 3]          # 0.985, then 0.975
    assert (PAIRS["similarity"][above] >= 0.99).all() and (PAIRS["similarity"][below] < 0.99).all()
    above, below = duplicates.pairs_around(PAIRS, 0.9999, k=3)
    assert above.tolist() == [] and below.tolist() == [0, 2, 4]   # fewer than k where fewer exist
    above, below = duplicates.pairs_around(PAIRS, 0.5, k=3)
    assert above.tolist() == [3, 1, 4] and below.tolist() == []


def test_mismatched_pairs_and_negative_k_raise():
    with pytest.raises(ValueError, match="one entry per pair"):
        duplicates.flagged_counts({"i": np.array([0]), "j": np.array([1]), "similarity": np.array([0.9, 0.8])},
                                  np.array([0.5]))
    with pytest.raises(ValueError, match="k = -1"):
        duplicates.pairs_around(PAIRS, 0.99, k=-1)


def test_threshold_figure_shows_the_pairs_and_marks_the_threshold():
    loaded = []

    def load(index: int) -> np.ndarray:
        loaded.append(index)
        return np.full((8, 8), index, dtype=np.uint8)

    labels = np.array([0, 0, 1, 1, 2, 3])
    fig = duplicates.threshold_figure(PAIRS, 0.99, load, labels, ["a", "b", "c", "d"], k=2, audit_threshold=0.99,
                                      orientations=("as is", "lr", "ud", "180"))
    titles = [text.get_text() for text in fig.axes[1].texts]   # the captions over the mosaic, left to right
    assert titles[0].startswith("s=0.99000\na / b") and titles[0].endswith("ud")   # pair 4: images 0 and 3
    assert any(t.startswith("s=0.97500\nb / c") for t in titles)                    # pair 3, below
    assert sorted(loaded) == sorted([0, 3, 1, 3, 0, 2, 2, 4])                       # 4 pairs, 2 images each
    assert len(titles) == 4
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "threshold 0.990: 3 pairs, 3 images" in legend


def test_fit_tile_keeps_the_aspect_and_centres_on_black():
    image = np.arange(8 * 4, dtype=float).reshape(8, 4) + 1
    tile = duplicates.fit_tile(image, 4)
    assert tile.shape == (4, 4)
    assert (tile[:, [0, 3]] == 0).all() and (tile[:, 1:3] > 0).all()   # 4 x 2 image in the middle
    assert tile[0, 1] == image[0, 0] and tile[3, 2] == image[6, 2]
    with pytest.raises(ValueError, match="2-D grey image"):
        duplicates.fit_tile(np.zeros((4, 4, 3)), 4)


def test_a_similarity_just_below_a_threshold_never_reads_as_the_threshold():
    pairs = {"i": np.array([0, 1]), "j": np.array([1, 2]), "similarity": np.array([0.989996, 0.990004])}
    fig = duplicates.threshold_figure(pairs, 0.99, lambda index: np.ones((4, 4)), np.array([0, 0, 0]), ["a"], k=1)
    captions = [text.get_text() for text in fig.axes[1].texts]
    assert captions[0].startswith("s=0.99000\n")     # just above: 0.990004
    assert captions[1].startswith("s=0.98999\n")     # just below: 0.989996 rounds to 0.99000, cut it does not
