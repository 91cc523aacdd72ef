"""Binary-classification metrics in pure, vectorised numpy.

Every function takes the true labels ``y`` (0/1, bool or 0.0/1.0) and the predicted probability
of label 1 ``p`` (finite floats; ``log_loss`` and ``brier`` also need them in ``[0, 1]``) and
returns a Python float. The definitions match scikit-learn's:

- :func:`roc_auc` equals ``sklearn.metrics.roc_auc_score`` (computed as the Mann-Whitney U
  statistic with midranks for tied scores, exact in integer arithmetic up to the final division);
- :func:`pr_auc` equals ``sklearn.metrics.average_precision_score`` (step-wise average precision,
  not the trapezoidal area);
- :func:`log_loss` equals ``sklearn.metrics.log_loss`` for probabilities inside
  ``[eps, 1 - eps]`` (scikit-learn clips at the dtype's machine epsilon instead of ``eps``);
- :func:`brier` equals ``sklearn.metrics.brier_score_loss``.

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

from lockgate.errors import DataError, EmptyDataError, SpecError

__all__ = [
    "brier",
    "classification_metrics",
    "log_loss",
    "pr_auc",
    "recall_at_fpr",
    "roc_auc",
]

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


def _as_1d(values: Any, *, name: str) -> npt.NDArray[Any]:
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise DataError(
            f"{name} could not be read as an array ({exc}); rule: metrics and statistics need a 1-D array "
            f"of numbers; fix: pass a numpy array, list or pandas Series"
        ) from exc
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(
            f"{name} has shape {arr.shape}; rule: metrics and statistics need a 1-D array (one value per "
            f"row); fix: pass the probability of label 1 only, e.g. p[:, 1]"
        )
    return arr


def _as_labels(y: Any, *, name: str = "y") -> _IntArray:
    arr = _as_1d(y, name=name)
    if arr.shape[0] == 0:
        raise EmptyDataError(
            f"{name} is empty; rule: metrics and statistics need at least one row; fix: evaluate on a "
            f"non-empty split"
        )
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{name} has dtype {arr.dtype} that is not numeric; rule: labels must be 0 or 1; "
            f"fix: encode the positive class as 1 and the negative class as 0"
        ) from exc
    bad = ~((as_float == 0.0) | (as_float == 1.0))
    if bad.any():
        examples = np.unique(arr[bad])[:5].tolist()
        raise DataError(
            f"{name} holds {int(bad.sum())} value(s) other than 0 and 1 (e.g. {examples}); rule: "
            f"labels must be 0 or 1 (NaN is not allowed); fix: drop unlabelled rows and encode "
            f"the positive class as 1"
        )
    return as_float.astype(np.int64)


def _as_scores(p: Any, *, name: str, n: int, unit_interval: bool) -> _FloatArray:
    arr = _as_1d(p, name=name)
    if arr.shape[0] != n:
        raise DataError(
            f"{name} has {arr.shape[0]} values but y has {n}; rule: labels and scores must have "
            f"the same length; fix: score exactly the rows you evaluate"
        )
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{name} has dtype {arr.dtype} that is not numeric; rule: scores must be finite "
            f"floats; fix: pass the model's predicted probabilities"
        ) from exc
    finite = np.isfinite(as_float)
    if not finite.all():
        raise DataError(
            f"{name} holds {int((~finite).sum())} non-finite value(s) (NaN or inf); rule: scores "
            f"must be finite; fix: check the model for diverged weights or non-finite inputs"
        )
    if unit_interval and ((as_float < 0.0) | (as_float > 1.0)).any():
        raise DataError(
            f"{name} holds values outside [0, 1] (min {as_float.min()!r}, max "
            f"{as_float.max()!r}); rule: this metric needs probabilities; fix: apply the "
            f"sigmoid to raw scores"
        )
    return as_float


def _validate(y: Any, p: Any, *, unit_interval: bool = False) -> tuple[_IntArray, _FloatArray]:
    """Checks and converts labels and probabilities.

    Args:
        y: True labels, values in {0, 1}.
        p: Predicted probabilities of label 1 (scores for the ranking metrics).
        unit_interval: Whether ``p`` must lie in ``[0, 1]``.

    Returns:
        ``(y, p)`` as int64 and float64 arrays.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On a length mismatch, labels outside {0, 1} or non-finite probabilities.
    """
    y_arr = _as_1d(y, name="y")
    p_arr = _as_1d(p, name="p")
    if y_arr.shape[0] != p_arr.shape[0]:
        raise DataError(
            f"y has {y_arr.shape[0]} values but p has {p_arr.shape[0]}; rule: labels and "
            f"probabilities must have the same length; fix: score exactly the rows you evaluate"
        )
    if y_arr.shape[0] == 0:
        raise EmptyDataError(
            "y and p are empty; rule: metrics need at least one row; fix: evaluate on a "
            "non-empty split"
        )
    y_int = _as_labels(y_arr, name="y")
    return y_int, _as_scores(p_arr, name="p", n=len(y_int), unit_interval=unit_interval)


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
    y_int, p_float = _validate(y, p)
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
    y_int, p_float = _validate(y, p)
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
    y_int, p_float = _validate(y, p, unit_interval=True)
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
    y_int, p_float = _validate(y, p, unit_interval=True)
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
    y_int, p_float = _validate(y, p)
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
    y_int, p_float = _validate(y, p, unit_interval=True)
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
