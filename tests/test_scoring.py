"""Test scores count each same-slice group once; paired comparisons against hand-computed cases
and scipy/statsmodels-free exact values."""

from __future__ import annotations

import numpy as np
import pytest

from course_utils.data import read_grouped_split
from course_utils.training import scoring
from course_utils.training.metrics import wilson_interval


def test_mcnemar_exact_matches_the_binomial_by_hand():
    # A right alone on 1 image, B right alone on 6: p = 2 * P(X <= 1), X ~ Bin(7, 1/2) = 2 * 8/128.
    a = np.array([1, 0, 0, 0, 0, 0, 0, 1, 1], bool)
    b = np.array([0, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    a_only, b_only, p = scoring.mcnemar_exact(a, b)
    assert (a_only, b_only) == (2, 6)
    assert p == pytest.approx(2 * (1 + 8 + 28) / 256)
    assert scoring.mcnemar_exact(a, a)[2] == 1.0


def test_mcnemar_matches_scipy_binomtest():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    a, b = rng.random(200) < 0.8, rng.random(200) < 0.7
    a_only, b_only, p = scoring.mcnemar_exact(a, b)
    assert p == pytest.approx(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def test_paired_comparison_counts_copies_once():
    # Groups: g0 has 3 copies (A right on all, B wrong on all), g1..g3 single images where B is right, A wrong.
    groups = np.array([0, 0, 0, 1, 2, 3])
    a = np.array([1, 1, 1, 0, 0, 0], bool)
    b = ~a
    result = scoring.compare_paired(a, b, groups, n_resamples=2000)
    # Per group: A wins 1 group, B wins 3: difference (1 - 3) / 4 = -0.5 (per image it would be 0).
    assert result.difference == pytest.approx(-0.5)
    assert (result.a_only, result.b_only, result.n_groups) == (1, 3, 4)
    assert result.low <= result.difference <= result.high


def test_paired_comparison_detects_a_real_difference_and_not_a_fake_one():
    rng = np.random.default_rng(0)
    groups = np.arange(600)
    truth_hard = rng.random(600) < 0.2
    a = ~truth_hard
    b = a.copy()
    b[rng.choice(np.flatnonzero(a), 40, replace=False)] = False  # B makes 40 more mistakes
    strong = scoring.compare_paired(a, b, groups)
    assert strong.difference == pytest.approx(40 / 600)
    assert strong.p_value < 0.001 and strong.low > 0
    assert "beats" in strong.verdict("A", "B")
    c = a.copy()
    flip = rng.choice(600, 6, replace=False)
    c[flip] = ~c[flip]  # a handful of images either way
    weak = scoring.compare_paired(a, c, groups)
    assert weak.p_value > 0.05 and "cannot tell" in weak.verdict()


def test_paired_comparison_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="lengths differ"):
        scoring.compare_paired([1, 0], [1], [0, 1])


def test_score_test_uses_groups_and_wilson():
    rows = [r for r in read_grouped_split() if r["split"] == "test"]
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(r["slice_group"], []).append(r)
    multi = next(g for g in by_group.values() if len(g) >= 2)
    singles = [g[0] for g in by_group.values() if len(g) == 1][:3]
    chosen = multi[:2] + singles
    files = [r["relpath"] for r in chosen]
    y_true = np.zeros(len(files), int)
    y_pred = np.array([0, 1, 0, 1, 1])  # the copied slice half right, one of three singles right
    score = scoring.score_test(y_true, y_pred, files, split="grouped", classes=("a",))
    assert score.n_groups == 4 and score.n_images == 5
    assert score.accuracy == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert score.image_accuracy == pytest.approx(2 / 5)
    assert (score.low, score.high) == pytest.approx(wilson_interval(score.accuracy * 4, 4))
    assert score.recalls == {"a": pytest.approx(score.accuracy)}
    record = score.as_record()
    assert record["test_n"] == 4 and record["split"] == "grouped" and "recall_a" in record
    assert "n = 4 same-slice groups (5 images" in str(score)


def test_seed_summary():
    assert scoring.seed_summary([0.9, 0.92, 0.91]) == "mean 91.00 %, range 90.00–92.00 % over 3 seeds"
    with pytest.raises(ValueError):
        scoring.seed_summary([])
