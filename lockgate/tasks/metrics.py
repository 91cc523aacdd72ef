"""Metrics of the three supported tasks in pure, vectorised numpy.

Tasks (:data:`lockgate.tasks.catalog.TASKS`) and what a model predicts for each:

- ``"binary"``: labels ``y`` in {0, 1}; ``p`` the probability of label 1, shape ``(n,)``;
- ``"multiclass"``: labels ``y`` class indices ``0..k-1`` (the position of the class in the
  model's ``classes``); ``p`` the class probabilities, shape ``(n, k)``, rows summing to 1;
- ``"regression"``: targets ``y`` and predictions, finite floats, shape ``(n,)``.

The catalog in :mod:`lockgate.tasks.catalog` (``task_metric_names``, ``metric_direction``,
``default_primary``, ``task_metrics``) says which metrics each task reports, which way each is better and which
one a gate compares by default:

==============  ==================================================================  ==========
task            metrics (direction)                                                 primary
==============  ==================================================================  ==========
binary          roc_auc (+), pr_auc (+), log_loss (-), brier (-), recall_at_fpr (+)  roc_auc
multiclass      log_loss (-), top1_accuracy (+), macro_f1 (+), min_class_recall (+),  log_loss
                roc_auc_ovr (+)
regression      rmse (-), mae (-), r2 (+)                                           rmse
==============  ==================================================================  ==========

A metric name means the same thing and has the same direction in every task that lists it
(``log_loss`` on two classes is the binary log loss). The multiclass primary metric is the log
loss: it is a strictly proper scoring rule over the full probability vector (it rewards
calibrated probabilities, not only the arg-max), it is smooth, so the paired bootstrap of a
challenger against a champion is far less noisy than for accuracy or F1, and it is defined on
every row and every slice. Per-class recall is reported per class in the evaluation report and is
gated through ``min_class_recall`` (the worst class), which does not depend on the class names.
Regression models predict a point only, so no interval metric is in the catalog;
:func:`interval_coverage` scores an interval when a model supplies one.

Binary functions take the true labels ``y`` (0/1, bool or 0.0/1.0) and the predicted probability
of label 1 ``p`` (finite floats; ``log_loss`` and ``brier`` also need them in ``[0, 1]``) and
return a Python float. The definitions match scikit-learn's: the true labels ``y`` (0/1, bool or 0.0/1.0) and the predicted probability
of label 1 ``p`` (finite floats; ``log_loss`` and ``brier`` also need them in ``[0, 1]``) and
returns a Python float. The definitions match scikit-learn's:

- :func:`roc_auc` equals ``sklearn.metrics.roc_auc_score`` (computed as the Mann-Whitney U
  statistic with midranks for tied scores, exact in integer arithmetic up to the final division);
- :func:`pr_auc` equals ``sklearn.metrics.average_precision_score`` (step-wise average precision,
  not the trapezoidal area);
- :func:`log_loss` equals ``sklearn.metrics.log_loss`` for probabilities inside
  ``[eps, 1 - eps]`` (scikit-learn clips at the dtype's machine epsilon instead of ``eps``);
- :func:`brier` equals ``sklearn.metrics.brier_score_loss``.

Multiclass and regression (also cross-checked against scikit-learn in the tests):

- :func:`multiclass_log_loss` equals ``sklearn.metrics.log_loss(y, p, labels=range(k))`` for
  probabilities inside ``[eps, 1 - eps]``;
- :func:`top1_accuracy` equals ``accuracy_score(y, p.argmax(axis=1))`` (ties go to the lower
  class index, as ``argmax``);
- :func:`macro_f1` equals ``f1_score(y, p.argmax(axis=1), average="macro")``: the mean F1 over
  the classes that occur in ``y`` or among the predictions;
- :func:`roc_auc_ovr` equals ``roc_auc_score(y, p, multi_class="ovr", average="macro")`` when
  every class occurs in ``y``; a class absent from ``y`` (whose one-vs-rest AUC is undefined) is
  left out of the mean instead of refusing the whole metric;
- :func:`rmse`, :func:`mae` and :func:`r2` equal ``root_mean_squared_error``,
  ``mean_absolute_error`` and ``r2_score``; ``r2`` of a constant target is undefined and raises
  instead of scikit-learn's 0.0 or 1.0.

Invalid input raises :class:`~lockgate.errors.EmptyDataError` (no rows) or
:class:`~lockgate.errors.DataError` (length mismatch, labels outside {0, 1}, a single class where
the metric is undefined, non-finite or out-of-range probabilities). This module imports neither
torch nor lightgbm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, SpecError
from lockgate.tasks.inputs import (
    as_scores,
    validate_binary,
    validate_multiclass,
    validate_regression,
)

__all__ = [
    "brier",
    "classification_metrics",
    "confusion_matrix",
    "f1_from_confusion",
    "interval_coverage",
    "log_loss",
    "macro_f1",
    "mae",
    "min_class_recall",
    "min_recall_from_confusion",
    "multiclass_log_loss",
    "multiclass_metrics",
    "per_class_recall",
    "pr_auc",
    "r2",
    "recall_at_fpr",
    "regression_metrics",
    "rmse",
    "roc_auc",
    "roc_auc_ovr",
    "top1_accuracy",
]


_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


def _require_both_classes(y: _IntArray, *, metric: str) -> tuple[int, int]:
    """Returns ``(positives, negatives)`` or raises DataError when one class is absent."""
    positives = int(y.sum())
    negatives = int(y.shape[0] - positives)
    if positives == 0 or negatives == 0:
        raise DataError(
            f"{metric} is undefined with a single class: y has {positives} positive(s) and "
            f"{negatives} negative(s); rule: both labels 0 and 1 must occur; fix: evaluate on a "
            f"larger or stratified split"
        )
    return positives, negatives


def _descending_curve(y: _IntArray, p: _FloatArray) -> tuple[_IntArray, _IntArray]:
    """Cumulative true and false positives at each distinct threshold, highest score first.

    Returns:
        ``(tps, fps)``: counts of positives and negatives scored ``>= t`` for each distinct
        score ``t`` in decreasing order (the same points scikit-learn's curves use).
    """
    order = np.argsort(-p, kind="mergesort")
    p_sorted = p[order]
    y_sorted = y[order]
    last_of_group = np.flatnonzero(np.diff(p_sorted) != 0.0)
    ends = np.concatenate([last_of_group, [p_sorted.shape[0] - 1]])
    tps = np.cumsum(y_sorted, dtype=np.int64)[ends]
    fps = (ends + 1).astype(np.int64) - tps
    return tps, fps


def roc_auc(y: Any, p: Any) -> float:
    """Area under the ROC curve, as the Mann-Whitney U statistic with midranks for ties.

    Args:
        y: True labels in {0, 1}.
        p: Scores or probabilities of label 1 (any finite floats; only their order matters).

    Returns:
        The probability that a random positive scores above a random negative (ties count 1/2).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or when only one class occurs.
    """
    y_int, p_float = validate_binary(y, p)
    positives, negatives = _require_both_classes(y_int, metric="roc_auc")
    _, inverse, counts = np.unique(p_float, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts, dtype=np.int64) - counts  # 0-based first rank of each tie group
    # Twice the 1-based midrank of each group, an integer: 2 * start + count + 1.
    twice_midrank = 2 * starts + counts.astype(np.int64) + 1
    twice_rank_sum = int(twice_midrank[inverse.reshape(-1)][y_int == 1].sum())
    twice_u = twice_rank_sum - positives * (positives + 1)
    return float(twice_u / (2 * positives * negatives))


def pr_auc(y: Any, p: Any) -> float:
    """Average precision (area under the precision-recall curve, step-wise).

    Same definition as ``sklearn.metrics.average_precision_score``:
    ``sum_n (R_n - R_{n-1}) * P_n`` over the distinct score thresholds.

    Args:
        y: True labels in {0, 1}.
        p: Scores or probabilities of label 1.

    Returns:
        The average precision in ``[0, 1]``.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or when there is no positive label.
    """
    y_int, p_float = validate_binary(y, p)
    positives = int(y_int.sum())
    if positives == 0:
        raise DataError(
            f"pr_auc is undefined without positives: y has 0 positives among {y_int.shape[0]} "
            f"rows; rule: label 1 must occur; fix: evaluate on a larger or stratified split"
        )
    tps, fps = _descending_curve(y_int, p_float)
    precision = tps / (tps + fps)
    recall_steps = np.diff(tps, prepend=0) / positives
    return float(np.sum(recall_steps * precision))


def log_loss(y: Any, p: Any, *, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to ``[eps, 1 - eps]``.

    Args:
        y: True labels in {0, 1}.
        p: Probabilities of label 1 in ``[0, 1]``.
        eps: Clipping bound that keeps the loss finite for probabilities of exactly 0 or 1.

    Returns:
        The mean negative log-likelihood.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input.
        SpecError: When ``eps`` is not in ``(0, 0.5)``.
    """
    if not (isinstance(eps, int | float) and math.isfinite(eps) and 0.0 < eps < 0.5):
        raise SpecError(
            f"eps={eps!r} is invalid; rule: the clipping bound must be in (0, 0.5); fix: keep "
            f"the default 1e-15"
        )
    y_int, p_float = validate_binary(y, p, unit_interval=True)
    clipped = np.clip(p_float, eps, 1.0 - eps)
    per_row = np.where(y_int == 1, np.log(clipped), np.log1p(-clipped))
    return float(-np.mean(per_row))


def brier(y: Any, p: Any) -> float:
    """Brier score: the mean squared difference between probability and label.

    Args:
        y: True labels in {0, 1}.
        p: Probabilities of label 1 in ``[0, 1]``.

    Returns:
        ``mean((p - y) ** 2)``.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input.
    """
    y_int, p_float = validate_binary(y, p, unit_interval=True)
    return float(np.mean(np.square(p_float - y_int)))


def recall_at_fpr(y: Any, p: Any, *, max_fpr: float = 0.01) -> float:
    """Highest recall (true-positive rate) reachable with a false-positive rate <= ``max_fpr``.

    A threshold ``t`` flags the rows with ``p >= t``; only the distinct scores are thresholds,
    so tied rows are flagged together. With no admissible threshold the recall is 0.0.

    Args:
        y: True labels in {0, 1}.
        p: Scores or probabilities of label 1.
        max_fpr: The largest false-positive rate allowed, in ``[0, 1]``.

    Returns:
        The recall at the best admissible threshold.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or when only one class occurs.
        SpecError: When ``max_fpr`` is not in ``[0, 1]``.
    """
    if not (isinstance(max_fpr, int | float) and math.isfinite(max_fpr) and 0 <= max_fpr <= 1):
        raise SpecError(
            f"max_fpr={max_fpr!r} is invalid; rule: a false-positive rate lies in [0, 1]; fix: "
            f"pass e.g. 0.01 for one false alarm per hundred negatives"
        )
    y_int, p_float = validate_binary(y, p)
    positives, negatives = _require_both_classes(y_int, metric="recall_at_fpr")
    tps, fps = _descending_curve(y_int, p_float)
    admissible = fps / negatives <= max_fpr
    if not admissible.any():
        return 0.0
    # fps grows as the threshold falls, so the admissible points are a prefix of the curve.
    return float(tps[admissible].max() / positives)


def classification_metrics(y: Any, p: Any, *, max_fpr: float = 0.01) -> dict[str, float]:
    """All metrics of this module for one set of predictions.

    Args:
        y: True labels in {0, 1}; both classes must occur.
        p: Probabilities of label 1 in ``[0, 1]``.
        max_fpr: The false-positive-rate bound of ``recall_at_fpr``.

    Returns:
        ``{"roc_auc", "pr_auc", "log_loss", "brier", "recall_at_fpr", "n", "positives",
        "positive_rate"}``; ``n`` and ``positives`` are ints, the rest floats.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or when only one class occurs.
        SpecError: When ``max_fpr`` is not in ``[0, 1]``.
    """
    y_int, p_float = validate_binary(y, p, unit_interval=True)
    positives, _ = _require_both_classes(y_int, metric="classification_metrics")
    n = int(y_int.shape[0])
    return {
        "roc_auc": roc_auc(y_int, p_float),
        "pr_auc": pr_auc(y_int, p_float),
        "log_loss": log_loss(y_int, p_float),
        "brier": brier(y_int, p_float),
        "recall_at_fpr": recall_at_fpr(y_int, p_float, max_fpr=max_fpr),
        "n": n,
        "positives": positives,
        "positive_rate": positives / n,
    }


# --------------------------------------------------------------------------------------------
# Multiclass
# --------------------------------------------------------------------------------------------
def multiclass_log_loss(y: Any, p: Any, *, eps: float = 1e-15) -> float:
    """Mean cross-entropy of the true class, its probability clipped to ``[eps, 1 - eps]``.

    Args:
        y: Class indices ``0..k-1``.
        p: Class probabilities ``(n, k)``, rows summing to 1.
        eps: Clipping bound that keeps the loss finite for a probability of exactly 0.

    Returns:
        ``mean(-log p[i, y_i])``.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input.
        SpecError: When ``eps`` is not in ``(0, 0.5)``.

    Example:
        >>> round(multiclass_log_loss([0, 2], [[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]), 4)
        0.4581
    """
    if not (isinstance(eps, int | float) and math.isfinite(eps) and 0.0 < eps < 0.5):
        raise SpecError(
            f"eps={eps!r} is invalid; rule: the clipping bound must be in (0, 0.5); fix: keep "
            f"the default 1e-15"
        )
    y_idx, probs = validate_multiclass(y, p)
    true_class = probs[np.arange(y_idx.shape[0]), y_idx]
    return float(-np.mean(np.log(np.clip(true_class, eps, 1.0 - eps))))


def confusion_matrix(y: Any, p: Any) -> _IntArray:
    """Counts ``(k, k)``: row = true class, column = arg-max predicted class.

    Example:
        >>> confusion_matrix([0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]).tolist()
        [[1, 0], [1, 1]]
    """
    y_idx, probs = validate_multiclass(y, p)
    k = int(probs.shape[1])
    keys = y_idx * k + np.argmax(probs, axis=1)
    return np.bincount(keys, minlength=k * k).astype(np.int64).reshape(k, k)


def f1_from_confusion(counts: _IntArray) -> _FloatArray:
    """Macro F1 of confusion matrices ``(..., k, k)`` over the classes that occur at all."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    true = counts.sum(axis=-1)
    predicted = counts.sum(axis=-2)
    denominator = true + predicted  # 2 tp + fp + fn
    present = denominator > 0
    f1 = np.where(present, 2 * tp / np.maximum(denominator, 1), 0.0)
    return np.asarray(f1.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1), dtype=np.float64)


def min_recall_from_confusion(counts: _IntArray) -> _FloatArray:
    """The lowest recall among the classes present in ``y``, of confusion matrices."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    true = counts.sum(axis=-1)
    recall = np.where(true > 0, tp / np.maximum(true, 1), np.inf)
    return np.asarray(recall.min(axis=-1), dtype=np.float64)


def top1_accuracy(y: Any, p: Any) -> float:
    """Share of rows whose highest-probability class is the true class.

    Example:
        >>> top1_accuracy([0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
        0.6666666666666666
    """
    y_idx, probs = validate_multiclass(y, p)
    return float(np.mean(np.argmax(probs, axis=1) == y_idx))


def macro_f1(y: Any, p: Any) -> float:
    """Unweighted mean F1 over the classes that occur in ``y`` or among the predictions.

    Example:
        >>> round(macro_f1([0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]), 4)
        0.6667
    """
    return float(f1_from_confusion(confusion_matrix(y, p)))


def per_class_recall(y: Any, p: Any) -> list[float | None]:
    """Recall of each class index; ``None`` for a class that does not occur in ``y``.

    Example:
        >>> per_class_recall([0, 1, 1], [[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.7, 0.3, 0.0]])
        [1.0, 0.5, None]
    """
    counts = confusion_matrix(y, p)
    true = counts.sum(axis=1)
    return [float(counts[c, c] / true[c]) if true[c] else None for c in range(counts.shape[0])]


def min_class_recall(y: Any, p: Any) -> float:
    """The lowest per-class recall among the classes that occur in ``y`` (the worst class).

    Example:
        >>> min_class_recall([0, 1, 1], [[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
        0.5
    """
    return float(min_recall_from_confusion(confusion_matrix(y, p)))


def roc_auc_ovr(y: Any, p: Any) -> float:
    """One-vs-rest ROC AUC, averaged without weights over the classes present in ``y``.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or when fewer than two classes occur in ``y``.

    Example:
        >>> roc_auc_ovr([0, 1, 2], [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
        1.0
    """
    y_idx, probs = validate_multiclass(y, p)
    present = np.unique(y_idx)
    if present.shape[0] < 2:
        raise DataError(
            f"roc_auc_ovr is undefined with a single class: y holds only class index "
            f"{present.tolist()}; rule: at least two classes must occur; fix: evaluate on a "
            f"larger or stratified split"
        )
    return float(np.mean([roc_auc(y_idx == c, probs[:, c]) for c in present]))


def multiclass_metrics(y: Any, p: Any) -> dict[str, float]:
    """Every multiclass catalog metric (see :func:`lockgate.tasks.catalog.task_metrics`)."""
    from lockgate.tasks.catalog import task_metrics  # the catalog builds on this module

    return task_metrics("multiclass", y, p)


# --------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------


def rmse(y: Any, pred: Any) -> float:
    """Root mean squared error.

    Example:
        >>> rmse([0.0, 0.0], [3.0, 3.0])
        3.0
    """
    y_float, pred_float = validate_regression(y, pred)
    return float(np.sqrt(np.mean(np.square(pred_float - y_float))))


def mae(y: Any, pred: Any) -> float:
    """Mean absolute error.

    Example:
        >>> mae([0.0, 0.0], [3.0, -4.0])
        3.5
    """
    y_float, pred_float = validate_regression(y, pred)
    return float(np.mean(np.abs(pred_float - y_float)))


def r2(y: Any, pred: Any) -> float:
    """Coefficient of determination, ``1 - SS_res / SS_tot``.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or a constant target (``SS_tot == 0``: undefined).

    Example:
        >>> r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
        1.0
    """
    y_float, pred_float = validate_regression(y, pred)
    ss_tot = float(np.sum(np.square(y_float - y_float.mean())))
    if ss_tot == 0.0:
        raise DataError(
            f"r2 is undefined for a constant target: every y equals {y_float[0]!r}; rule: r2 "
            f"compares with the variance of y, which must be positive; fix: evaluate on a larger "
            f"split, or gate on rmse or mae"
        )
    return float(1.0 - np.sum(np.square(y_float - pred_float)) / ss_tot)


def interval_coverage(y: Any, lower: Any, upper: Any) -> float:
    """Share of targets inside their predicted interval ``[lower, upper]``.

    Not in the regression catalog: lockgate's models predict a point only. Use it to check a
    model that supplies intervals (a 90% interval should cover about 0.9).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or an interval with ``lower > upper``.

    Example:
        >>> interval_coverage([1.0, 5.0], [0.0, 0.0], [2.0, 2.0])
        0.5
    """
    y_float, lo = validate_regression(y, lower)
    hi = as_scores(upper, name="upper", n=int(y_float.shape[0]), unit_interval=False)
    if (lo > hi).any():
        row = int(np.argmax(lo > hi))
        raise DataError(
            f"interval {row} has lower {lo[row]!r} > upper {hi[row]!r}; rule: lower <= upper; "
            f"fix: pass the interval ends in order"
        )
    return float(np.mean((lo <= y_float) & (y_float <= hi)))


def regression_metrics(y: Any, pred: Any) -> dict[str, float]:
    """Every regression catalog metric (see :func:`lockgate.tasks.catalog.task_metrics`)."""
    from lockgate.tasks.catalog import task_metrics  # the catalog builds on this module

    return task_metrics("regression", y, pred)
