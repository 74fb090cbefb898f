"""Classification metrics from a confusion matrix, written out so a learner can read them.

Rows of a confusion matrix are the true classes, columns the predicted ones. For class
``k``, with ``TP`` its diagonal entry, ``FP`` the rest of its column, ``FN`` the rest of its
row and ``TN`` everything else:

* precision   = TP / (TP + FP)   — of the slices called ``k``, how many are ``k``;
* recall      = TP / (TP + FN)   — of the ``k`` slices, how many were found (sensitivity);
* specificity = TN / (TN + FP)   — of the other slices, how many were *not* called ``k``;
* F1          = harmonic mean of precision and recall.

**Undefined ratios.** When a denominator is zero (a class that is never predicted has no
precision; a class absent from the data has no recall) the value is defined as **0.0**,
as scikit-learn does with ``zero_division=0``, and no warning is raised: a class the model
never predicts gets no credit for precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as class ``j``."""
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def safe_divide(numerator, denominator) -> np.ndarray:
    """``numerator / denominator`` elementwise, 0.0 where the denominator is 0 (no warning)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


@dataclass
class ClassificationReport:
    """Per-class precision, recall, F1, specificity and support, with their averages.

    ``macro`` averages the classes equally; ``weighted`` weights each class by its support
    (its number of true samples). Print it for a table.
    """

    classes: tuple[str, ...]
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    specificity: np.ndarray
    support: np.ndarray
    accuracy: float

    COLUMNS = ("precision", "recall", "f1", "specificity", "support")

    def _average(self, weights: np.ndarray | None) -> dict[str, float]:
        out = {c: float(np.average(getattr(self, c), weights=weights)) for c in self.COLUMNS[:-1]}
        out["support"] = int(self.support.sum())
        return out

    @property
    def macro(self) -> dict[str, float]:
        return self._average(None)

    @property
    def weighted(self) -> dict[str, float]:
        total = self.support.sum()
        return self._average(self.support if total else None)

    def row(self, cls: str) -> dict[str, float]:
        """The metrics of one class, by name."""
        k = self.classes.index(cls)
        return {c: (int if c == "support" else float)(getattr(self, c)[k]) for c in self.COLUMNS}

    def to_dict(self) -> dict[str, dict[str, float]]:
        """``{class: {metric: value}}`` plus ``"macro avg"`` and ``"weighted avg"`` rows."""
        table = {cls: self.row(cls) for cls in self.classes}
        table["macro avg"] = self.macro
        table["weighted avg"] = self.weighted
        return table

    def __str__(self) -> str:
        width = max(len(name) for name in [*self.classes, "weighted avg"])
        lines = [" " * width + "".join(f"{c:>13}" for c in self.COLUMNS)]
        for name, row in self.to_dict().items():
            if name == "macro avg":
                lines.append("")
            cells = "".join(f"{row[c]:>13d}" if c == "support" else f"{row[c]:>13.3f}" for c in self.COLUMNS)
            lines.append(f"{name:>{width}}{cells}")
        lines.append(f"\n{'accuracy':>{width}}{self.accuracy:>13.3f}")
        return "\n".join(lines)

    __repr__ = __str__


def per_class_report(cm: np.ndarray, classes: Sequence[str]) -> ClassificationReport:
    """Precision, recall, F1, specificity and support of every class, from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(classes)} classes")
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp  # predicted k, but another class
    fn = cm.sum(axis=1) - tp  # class k, but predicted another
    tn = cm.sum() - tp - fp - fn
    precision = safe_divide(tp, tp + fp)
    recall = safe_divide(tp, tp + fn)
    return ClassificationReport(
        classes=tuple(classes),
        precision=precision,
        recall=recall,
        f1=safe_divide(2 * precision * recall, precision + recall),
        specificity=safe_divide(tn, tn + fp),
        support=cm.sum(axis=1),
        accuracy=float(safe_divide(tp.sum(), cm.sum())),
    )


def roc_auc_ovr(probs: np.ndarray, y_true) -> dict[str, np.ndarray | float]:
    """One-vs-rest ROC-AUC: each class's probability scored against "any other class".

    Returns ``{"per_class": array (C,), "macro": float, "weighted": float}``. A class with
    no positive (or no negative) sample has no ROC curve; its AUC is NaN and it is left out
    of the averages. Uses scikit-learn's ``roc_auc_score`` (ties handled correctly).
    """
    from sklearn.metrics import roc_auc_score  # here: heavy, only when needed

    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true).ravel()
    n_classes = probs.shape[1]
    aucs = np.full(n_classes, np.nan)
    support = np.array([(y_true == k).sum() for k in range(n_classes)])
    for k in range(n_classes):
        positives = y_true == k
        if 0 < positives.sum() < len(y_true):
            aucs[k] = roc_auc_score(positives, probs[:, k])
    defined = ~np.isnan(aucs)
    macro = float(aucs[defined].mean()) if defined.any() else float("nan")
    weighted = float(np.average(aucs[defined], weights=support[defined])) if defined.any() else float("nan")
    return {"per_class": aucs, "macro": macro, "weighted": weighted}


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (95 % for ``z = 1.96``).

    Unlike the normal approximation p ± z·sqrt(p(1-p)/n) it stays inside [0, 1] and is not
    zero-width at p = 0 or 1. ``n`` must count *independent* trials: for a test set full of
    copies of one slice, pass the number of groups, not of images (``group_accuracy``).
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def group_accuracy(y_true, y_pred, groups) -> tuple[float, int]:
    """Accuracy counting each group once: ``(accuracy, number of groups)``.

    Every image weighs 1 / (size of its group), so each group (e.g. a same-slice group of
    ``course_utils.data.grouping``: copies of one slice) contributes its share of correct
    predictions, between 0 and 1, and the groups are averaged. A slice stored five times is
    one observation, not five; use the number of groups as ``n`` of ``wilson_interval``.
    """
    y_true, y_pred, groups = (np.asarray(a).ravel() for a in (y_true, y_pred, groups))
    if not (len(y_true) == len(y_pred) == len(groups)):
        raise ValueError(f"lengths differ: {len(y_true)} labels, {len(y_pred)} predictions, {len(groups)} groups")
    _, group_index, size = np.unique(groups, return_inverse=True, return_counts=True)
    weights = 1.0 / size[group_index]
    return float(np.sum(weights * (y_true == y_pred)) / len(size)), int(len(size))


# --------------------------------------------------------------------------------------
# Screening: one class against all the others, at a threshold
# --------------------------------------------------------------------------------------


def screening_score(probs, negative_class: int) -> np.ndarray:
    """The probability of "anything but ``negative_class``": ``1 - probs[:, negative_class]``.

    For the four-class MRI model with ``negative_class`` = *notumor* this is P(tumour): the
    three tumour classes' probabilities added up, so a slice the model hesitates between
    glioma and meningioma still counts fully as "tumour".
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or not 0 <= negative_class < probs.shape[1]:
        raise ValueError(f"probs must be (N, C) with 0 <= negative_class < C; got shape {probs.shape} "
                         f"and negative_class {negative_class}")
    return 1.0 - probs[:, negative_class]


@dataclass
class Screening:
    """Sensitivity and specificity of "score >= threshold means positive", with counts.

    ``tp``: positives called positive; ``fn``: positives missed; ``tn``: negatives called
    negative; ``fp``: negatives called positive (false alarms). The intervals are 95 % Wilson
    intervals (``wilson_interval``), which assume independent images.
    """

    threshold: float
    tp: int
    fn: int
    tn: int
    fp: int

    @property
    def n_positive(self) -> int:
        return self.tp + self.fn

    @property
    def n_negative(self) -> int:
        return self.tn + self.fp

    @property
    def sensitivity(self) -> float:
        return self.tp / self.n_positive

    @property
    def specificity(self) -> float:
        return self.tn / self.n_negative

    @property
    def sensitivity_ci(self) -> tuple[float, float]:
        return wilson_interval(self.tp, self.n_positive)

    @property
    def specificity_ci(self) -> tuple[float, float]:
        return wilson_interval(self.tn, self.n_negative)

    def __str__(self) -> str:
        (s_lo, s_hi), (c_lo, c_hi) = self.sensitivity_ci, self.specificity_ci
        return (f"threshold {self.threshold:.4g}: sensitivity {self.sensitivity:.3f} "
                f"({self.tp}/{self.n_positive}, 95 % CI {s_lo:.3f}-{s_hi:.3f}), specificity "
                f"{self.specificity:.3f} ({self.tn}/{self.n_negative}, 95 % CI {c_lo:.3f}-{c_hi:.3f})")


def _positives(scores, labels, negative_class: int) -> tuple[np.ndarray, np.ndarray]:
    """``scores`` as float64 and whether each label is a positive; both groups must be present."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {len(scores)} vs {len(labels)}")
    positive = labels != negative_class
    if positive.all() or not positive.any():
        raise ValueError(f"screening needs both positive and negative images (class {negative_class}); "
                         f"got {int(positive.sum())} positive of {len(labels)}")
    return scores, positive


def binary_screening(probs, labels, negative_class: int, threshold: float) -> Screening:
    """Screen with a multi-class model: positive = any class but ``negative_class``.

    A slice is called positive when ``screening_score`` (1 - P(negative class)) is at least
    ``threshold``; a positive slice is one whose true label is not ``negative_class``. Which
    tumour class the model would name does not matter here: only "tumour or not".
    """
    scores, positive = _positives(screening_score(probs, negative_class), labels, negative_class)
    called = scores >= threshold
    return Screening(threshold=float(threshold), tp=int((called & positive).sum()), fn=int((~called & positive).sum()),
                     tn=int((~called & ~positive).sum()), fp=int((called & ~positive).sum()))


def threshold_for_sensitivity(probs, labels, negative_class: int, target: float) -> float:
    """The highest threshold whose sensitivity on ``(probs, labels)`` is at least ``target``.

    With the positives' scores sorted from high to low, a threshold at the k-th highest calls
    at least k of them positive; k = ceil(target * positives) is the fewest that reach the
    target, and the highest threshold gives the most specificity. Choose it on validation
    data: on the test set it would be fitted to the very images it is judged on.
    """
    if not 0 < target <= 1:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    scores, positive = _positives(screening_score(probs, negative_class), labels, negative_class)
    ranked = np.sort(scores[positive])[::-1]
    k = int(np.ceil(target * len(ranked) - 1e-9))  # - 1e-9: 0.98 * 50 is 49.000000000000004 in floats
    return float(ranked[max(k, 1) - 1])


def screening_table(probs, labels, negative_class: int, thresholds) -> list[Screening]:
    """``binary_screening`` at each of ``thresholds``: the trade-off, one row per threshold."""
    return [binary_screening(probs, labels, negative_class, t) for t in thresholds]
