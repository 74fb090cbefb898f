"""Test scores with their uncertainty, and paired comparisons of two models.

A test accuracy is an estimate from a finite sample; the course never prints one without
its sample size and a 95 % interval. Two things make that honest on this dataset:

* **Copies count once.** Even the grouped split keeps copies of one slice *inside* a part
  (a test slice stored three times, mirrored). ``score_test`` counts each same-slice group
  once (``metrics.group_accuracy``) and uses the number of groups as ``n`` of the Wilson
  interval. The official ``Testing/`` images belong to the same groups (every dataset file is
  in ``grouped_split.csv``), so both splits are scored the same way; ``image_accuracy`` is the
  plain share of images, the number published reports give.
* **Two models on one test set are compared pairwise.** Their errors are correlated (the
  same hard slices), so comparing two intervals wastes information and can mislead.
  ``compare_paired`` looks at the per-group *differences*: a bootstrap over groups for the
  interval of the accuracy difference and a sign-flip (randomisation) test for its p-value.
  ``mcnemar_exact`` is the classic test on the images where exactly one model is right.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np

from ..data.source import CLASSES
from ..data.splits import grouped_split_groups
from ..profiles import current_split
from .metrics import group_accuracy, wilson_interval


@dataclass(frozen=True)
class TestScore:
    """A model's score on a test set: accuracy counting each same-slice group once, its
    Wilson 95 % interval over ``n_groups``, the plain image accuracy and per-class recall
    (also counting each group once)."""

    split: str
    accuracy: float
    low: float
    high: float
    n_groups: int
    n_images: int
    image_accuracy: float
    recalls: dict[str, float]

    def __str__(self) -> str:
        return (f"{100 * self.accuracy:.2f} % [{100 * self.low:.1f}, {100 * self.high:.1f}] on the {self.split} "
                f"test split, n = {self.n_groups} same-slice groups ({self.n_images} images; "
                f"{100 * self.image_accuracy:.2f} % of the images)")

    def recall_line(self) -> str:
        return "recall: " + ", ".join(f"{cls} {r:.3f}" for cls, r in self.recalls.items())

    def as_record(self) -> dict:
        """The numbers ``course_utils.results.record`` keeps for a test score."""
        return {"split": self.split, "test_acc": self.accuracy, "test_low": self.low, "test_high": self.high,
                "test_n": self.n_groups, "test_images": self.n_images, "test_image_acc": self.image_accuracy,
                **{f"recall_{cls}": r for cls, r in self.recalls.items()}}


def score_test(y_true, y_pred, files: Sequence[str], split: str | None = None,
               classes: Sequence[str] = CLASSES) -> TestScore:
    """Score predictions on test images ``files`` (paths inside the dataset folder).

    ``split`` names the split for the printout (default: the active one, ``COURSE_SPLIT``).
    """
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    groups = grouped_split_groups(list(files))
    accuracy, n = group_accuracy(y_true, y_pred, groups)
    low, high = wilson_interval(accuracy * n, n)
    recalls = {}
    for k, cls in enumerate(classes):
        members = y_true == k
        if members.any():
            recalls[cls] = group_accuracy(y_true[members], y_pred[members], groups[members])[0]
    return TestScore(split or current_split(), accuracy, low, high, n, len(y_true),
                     float(np.mean(y_true == y_pred)), recalls)


@dataclass(frozen=True)
class PairedComparison:
    """Model A minus model B on the same test images, each group counted once.

    ``difference`` is A's group accuracy minus B's; ``low``/``high`` its 95 % bootstrap
    interval (resampling groups); ``p_value`` the two-sided sign-flip test of "no difference";
    ``a_only``/``b_only`` the groups where only A (only B) is right on most copies.
    """

    difference: float
    low: float
    high: float
    p_value: float
    n_groups: int
    a_only: int
    b_only: int

    def verdict(self, a: str = "A", b: str = "B", alpha: float = 0.05) -> str:
        """One sentence a learner can act on, following the test."""
        if self.p_value >= alpha:
            return (f"no significant difference between {a} and {b} (p = {self.p_value:.2f}): the test set "
                    f"cannot tell them apart")
        better, worse = (a, b) if self.difference > 0 else (b, a)
        return f"{better} beats {worse} (p = {self.p_value:.3f})"

    def __str__(self) -> str:
        return (f"difference {100 * self.difference:+.2f} points [{100 * self.low:+.1f}, {100 * self.high:+.1f}], "
                f"p = {self.p_value:.3f}, n = {self.n_groups} groups ({self.a_only} only A right, "
                f"{self.b_only} only B right)")


def _group_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    _, index, size = np.unique(groups, return_inverse=True, return_counts=True)
    return np.bincount(index, weights=values) / size


def compare_paired(correct_a, correct_b, groups, n_resamples: int = 10_000, seed: int = 0) -> PairedComparison:
    """Compare two models scored on the same images: ``correct_a``/``correct_b`` are booleans
    per image, ``groups`` the same-slice group of each image.

    Each group contributes its share of correct copies, so a slice stored three times is one
    observation. The interval resamples groups with replacement; the p-value flips the sign
    of each group's difference at random (under "no difference" A and B are exchangeable).
    """
    a = np.asarray(correct_a, dtype=float).ravel()
    b = np.asarray(correct_b, dtype=float).ravel()
    groups = np.asarray(groups).ravel()
    if not (len(a) == len(b) == len(groups)):
        raise ValueError(f"lengths differ: {len(a)}, {len(b)} and {len(groups)} groups")
    diff = _group_means(a, groups) - _group_means(b, groups)
    n = len(diff)
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, n, size=(n_resamples, n))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    signs = rng.choice((-1.0, 1.0), size=(n_resamples, n))
    flipped = np.abs((signs * diff).mean(axis=1))
    p = (1 + np.sum(flipped >= abs(observed) - 1e-12)) / (n_resamples + 1)
    return PairedComparison(observed, float(low), float(high), float(min(1.0, p)), n,
                            int(np.sum(diff > 0)), int(np.sum(diff < 0)))


def mcnemar_exact(correct_a, correct_b) -> tuple[int, int, float]:
    """McNemar's exact test on paired images: ``(a_only, b_only, two-sided p)``.

    Only the images where exactly one model is right carry information; under "no
    difference" each of them is equally likely to favour A or B, so ``a_only`` follows a
    Binomial(a_only + b_only, 1/2). Treats images as independent: use ``compare_paired`` when
    the test set holds copies of one slice.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if len(a) != len(b):
        raise ValueError(f"lengths differ: {len(a)} and {len(b)}")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    n, k = a_only + b_only, min(a_only, b_only)
    if n == 0:
        return a_only, b_only, 1.0
    p = 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n
    return a_only, b_only, float(min(1.0, p))


def seed_summary(values: Sequence[float]) -> str:
    """Runs with several seeds as "mean 93.1 %, range 92.4–93.8 % over 3 seeds"."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values")
    return (f"mean {100 * np.mean(values):.2f} %, range {100 * min(values):.2f}–{100 * max(values):.2f} % "
            f"over {len(values)} seed{'s' if len(values) != 1 else ''}")
