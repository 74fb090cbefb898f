"""Metrics against values computed by hand and against scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from course_utils.training.metrics import (binary_screening, confusion_matrix, per_class_report, roc_auc_ovr, safe_divide,
                                           screening_score, screening_table, threshold_for_sensitivity,
                                           wilson_interval)

# 3 classes; class "c" occurs once and is never predicted.
#            predicted a  b  c
CM = np.array([[5, 1, 0],   # true a (6)
               [2, 3, 0],   # true b (5)
               [1, 0, 0]])  # true c (1)
Y_TRUE = np.repeat([0, 0, 1, 1, 2], [5, 1, 2, 3, 1])
Y_PRED = np.repeat([0, 1, 0, 1, 0], [5, 1, 2, 3, 1])


def test_confusion_matrix_counts_true_rows_predicted_columns():
    assert np.array_equal(confusion_matrix(Y_TRUE, Y_PRED, 3), CM)
    assert np.array_equal(confusion_matrix([1, 1], [0, 1], 3), [[0, 0, 0], [1, 1, 0], [0, 0, 0]])
    rng = np.random.default_rng(0)
    yt, yp = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert np.array_equal(confusion_matrix(yt, yp, 4), skm.confusion_matrix(yt, yp, labels=range(4)))
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)


def test_report_matches_hand_computed_values():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division warnings may leak
        r = per_class_report(CM, ("a", "b", "c"))
    # class a: TP 5, FP 3, FN 1, TN 3; class b: TP 3, FP 1, FN 2, TN 6; class c: TP 0, FP 0, FN 1, TN 11
    np.testing.assert_allclose(r.precision, [5 / 8, 3 / 4, 0.0])  # c is never predicted: defined as 0
    np.testing.assert_allclose(r.recall, [5 / 6, 3 / 5, 0.0])
    np.testing.assert_allclose(r.f1, [10 / 14, 6 / 9, 0.0])       # F1 = 2TP / (2TP + FP + FN)
    np.testing.assert_allclose(r.specificity, [3 / 6, 6 / 7, 11 / 11])
    assert r.support.tolist() == [6, 5, 1]
    assert r.accuracy == pytest.approx(8 / 12)
    assert r.macro["precision"] == pytest.approx((5 / 8 + 3 / 4 + 0) / 3)
    assert r.weighted["recall"] == pytest.approx((5 + 3 + 0) / 12)  # weighted recall = accuracy
    assert r.macro["support"] == 12
    assert r.row("b") == {"precision": 0.75, "recall": 0.6, "f1": pytest.approx(2 / 3),
                          "specificity": pytest.approx(6 / 7), "support": 5}
    text = str(r)
    assert "macro avg" in text and "weighted avg" in text and "specificity" in text


def test_report_agrees_with_scikit_learn():
    rng = np.random.default_rng(1)
    yt = rng.integers(0, 4, 300)
    yp = np.where(rng.random(300) < 0.7, yt, rng.integers(0, 3, 300))  # class 3 rarely predicted
    r = per_class_report(confusion_matrix(yt, yp, 4), "wxyz")
    p, rec, f1, sup = skm.precision_recall_fscore_support(yt, yp, labels=range(4), zero_division=0)
    np.testing.assert_allclose(r.precision, p)
    np.testing.assert_allclose(r.recall, rec)
    np.testing.assert_allclose(r.f1, f1)
    assert r.support.tolist() == sup.tolist()
    assert r.macro["f1"] == pytest.approx(skm.f1_score(yt, yp, average="macro", zero_division=0))
    assert r.weighted["f1"] == pytest.approx(skm.f1_score(yt, yp, average="weighted", zero_division=0))


def test_empty_class_and_safe_divide_raise_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = per_class_report(np.zeros((2, 2), dtype=int), ("x", "y"))
        assert safe_divide([1, 2], [0, 4]).tolist() == [0.0, 0.5]
    assert r.accuracy == 0.0 and r.precision.tolist() == [0.0, 0.0] and r.specificity.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        per_class_report(CM, ("a", "b"))


def test_roc_auc_ovr():
    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y] * 0.8 + 0.1
    assert roc_auc_ovr(perfect, y)["per_class"].tolist() == [1.0, 1.0, 1.0]
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 120)
    probs = rng.dirichlet(np.ones(4), 120) + np.eye(4)[y] * 0.3
    probs /= probs.sum(axis=1, keepdims=True)
    auc = roc_auc_ovr(probs, y)
    assert auc["macro"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert auc["weighted"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="weighted"))
    # a class absent from y_true has no ROC curve: NaN, left out of the averages
    y3 = np.array([0, 1, 0, 1])
    p3 = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.4, 0.5, 0.1]])
    auc3 = roc_auc_ovr(p3, y3)
    assert np.isnan(auc3["per_class"][2]) and auc3["macro"] == pytest.approx(1.0)


def test_plot_confusion_matrix_writes_counts_and_row_percentages():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_utils.widgets.plots import plot_confusion_matrix

    fig = plot_confusion_matrix(CM, ("a", "b", "c"))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts[0] == "5\n83.3%" and texts[-1] == "0\n0.0%" and len(texts) == 9
    plt.close(fig)


# Screening: 7 slices, classes (glioma, notumor, pituitary); notumor (1) is the negative class.
#                     P(glioma) P(notumor) P(pituitary)   score = 1 - P(notumor)
SCREEN_PROBS = np.array([[0.90, 0.05, 0.05],   # 0.95, tumour
                         [0.30, 0.40, 0.30],   # 0.60, tumour
                         [0.10, 0.50, 0.40],   # 0.50, tumour (exactly at 0.5)
                         [0.05, 0.80, 0.15],   # 0.20, tumour (missed at 0.5)
                         [0.20, 0.70, 0.10],   # 0.30, no tumour
                         [0.25, 0.45, 0.30],   # 0.55, no tumour (false alarm at 0.5)
                         [0.01, 0.98, 0.01]])  # 0.02, no tumour
SCREEN_LABELS = np.array([0, 2, 2, 0, 1, 1, 1])


def test_screening_score_adds_up_every_class_but_the_negative_one():
    np.testing.assert_allclose(screening_score(SCREEN_PROBS, 1), [0.95, 0.60, 0.50, 0.20, 0.30, 0.55, 0.02])
    with pytest.raises(ValueError):
        screening_score(SCREEN_PROBS, 3)


def test_binary_screening_counts_by_hand():
    s = binary_screening(SCREEN_PROBS, SCREEN_LABELS, negative_class=1, threshold=0.5)
    # positives (labels 0, 2): scores 0.95, 0.60, 0.50, 0.20 -> three at or above 0.5 (the tie counts)
    # negatives (label 1): scores 0.30, 0.55, 0.02 -> 0.55 is a false alarm
    assert (s.tp, s.fn, s.tn, s.fp) == (3, 1, 2, 1)
    assert (s.n_positive, s.n_negative) == (4, 3)
    assert s.sensitivity == pytest.approx(3 / 4) and s.specificity == pytest.approx(2 / 3)
    assert s.sensitivity_ci == wilson_interval(3, 4) and s.specificity_ci == wilson_interval(2, 3)
    # Wilson, by hand for 3/4: centre (0.75 + 1.96^2/8) / (1 + 1.96^2/4) = 0.5936...
    low, high = s.sensitivity_ci
    assert (low + high) / 2 == pytest.approx((0.75 + 1.96**2 / 8) / (1 + 1.96**2 / 4))
    assert "3/4" in str(s) and "2/3" in str(s)
    strict = binary_screening(SCREEN_PROBS, SCREEN_LABELS, 1, threshold=0.56)
    assert (strict.tp, strict.fn, strict.tn, strict.fp) == (2, 2, 3, 0)
    everyone = binary_screening(SCREEN_PROBS, SCREEN_LABELS, 1, threshold=0.0)
    assert everyone.sensitivity == 1.0 and everyone.specificity == 0.0


def test_binary_screening_needs_both_groups():
    with pytest.raises(ValueError, match="both positive and negative"):
        binary_screening(SCREEN_PROBS[:4], SCREEN_LABELS[:4], 1, 0.5)  # no notumor slice
    with pytest.raises(ValueError):
        binary_screening(SCREEN_PROBS, SCREEN_LABELS[:5], 1, 0.5)


def test_threshold_for_sensitivity_is_the_highest_that_reaches_it():
    # positives' scores from high to low: 0.95, 0.60, 0.50, 0.20
    assert threshold_for_sensitivity(SCREEN_PROBS, SCREEN_LABELS, 1, 0.75) == pytest.approx(0.50)
    assert threshold_for_sensitivity(SCREEN_PROBS, SCREEN_LABELS, 1, 0.76) == pytest.approx(0.20)
    assert threshold_for_sensitivity(SCREEN_PROBS, SCREEN_LABELS, 1, 1.0) == pytest.approx(0.20)
    assert threshold_for_sensitivity(SCREEN_PROBS, SCREEN_LABELS, 1, 0.01) == pytest.approx(0.95)
    for target in (0.25, 0.5, 0.75, 1.0):
        t = threshold_for_sensitivity(SCREEN_PROBS, SCREEN_LABELS, 1, target)
        assert binary_screening(SCREEN_PROBS, SCREEN_LABELS, 1, t).sensitivity >= target
    # 0.98 of 50 positives is 49 in exact arithmetic (49.000000000000004 in floats): the 49th score
    scores = np.linspace(1, 0.02, 50)
    probs = np.vstack([np.column_stack([1 - scores, scores]), [[1.0, 0.0]]])  # class 0 is the negative one
    labels = np.r_[np.ones(50, dtype=int), 0]
    assert threshold_for_sensitivity(probs, labels, 0, 0.98) == pytest.approx(scores[48])
    with pytest.raises(ValueError):
        threshold_for_sensitivity(SCREEN_PROBS, SCREEN_LABELS, 1, 0.0)


def test_screening_table_and_scikit_learn_roc_agree():
    scores = screening_score(SCREEN_PROBS, 1)
    rows = screening_table(SCREEN_PROBS, SCREEN_LABELS, 1, np.sort(scores)[::-1])  # every score as a threshold
    fpr, tpr, sk_thresholds = skm.roc_curve(SCREEN_LABELS != 1, scores, drop_intermediate=False)
    for row in rows:
        k = int(np.flatnonzero(np.isclose(sk_thresholds, row.threshold))[0])
        assert row.sensitivity == pytest.approx(tpr[k]) and 1 - row.specificity == pytest.approx(fpr[k])
