"""How far predictions can be taken at their word: reliability diagrams and regression residuals.

:func:`calibration` bins binary probabilities exactly like scikit-learn's
``calibration_curve`` and reports each bin's mean prediction against its observed rate with the
expected and maximum calibration errors; :func:`top_label_calibration` does the same for a
multiclass model's top-label confidence against its accuracy; :func:`residual_summary` describes
a regression model's residuals and its mean target per quantile bin of the prediction.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from lockgate.errors import SpecError
from lockgate.evaluation.results import Calibration, CalibrationBin, ResidualSummary
from lockgate.tasks.inputs import as_labels, as_scores, validate_multiclass, validate_regression

__all__ = ["calibration", "residual_summary", "top_label_calibration"]


def calibration(
    y: Any, p: Any, *, bins: int = 10, strategy: Literal["quantile", "uniform"] = "quantile"
) -> Calibration:
    """Reliability diagram: per-bin mean prediction and observed rate, with ECE and MCE.

    Binning follows ``sklearn.calibration.calibration_curve`` exactly. Edges are
    ``linspace(0, 1, bins + 1)`` (``uniform``) or the ``linspace(0, 1, bins + 1) * 100``
    percentiles of ``p`` (``quantile``, numpy's linear interpolation). Bin ``k`` holds the
    rows with ``edges[k] < p <= edges[k + 1]``, except that bin 0 also holds everything up to
    ``edges[1]`` and the last bin everything above ``edges[-2]`` (so ``p == 0`` lands in bin 0
    and a prediction exactly on an inner edge in the bin below it). Tied predictions can make
    quantile edges coincide; the empty bins are left out of :attr:`Calibration.bins`, which
    then lines up with sklearn's ``prob_pred`` / ``prob_true``.

    Args:
        y: True labels in {0, 1}.
        p: Predicted probabilities of label 1 in ``[0, 1]``.
        bins: Number of bins, at least 1.
        strategy: ``"quantile"`` (equal-count bins) or ``"uniform"`` (equal-width bins).

    Returns:
        The :class:`Calibration`.

    Raises:
        SpecError: On an invalid ``bins`` or ``strategy``.
        EmptyDataError: When there are no rows.
        DataError: On invalid input.

    Example:
        >>> cal = calibration([0, 1, 0, 1], [0.25, 0.75, 0.5, 1.0], bins=2, strategy="quantile")
        >>> cal.edges, cal.observed_rate, cal.mean_predicted
        ((0.25, 0.625, 1.0), (0.0, 1.0), (0.375, 0.875))
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise SpecError(
            f"bins={bins!r} is invalid; rule: the number of bins must be an integer >= 1; fix: "
            f"pass e.g. bins=10"
        )
    if strategy not in ("quantile", "uniform"):
        raise SpecError(
            f"strategy={strategy!r} is unknown; rule: the binning strategy must be 'quantile' or "
            f"'uniform'; fix: pass strategy='quantile' for equal-count bins"
        )
    y_int = as_labels(y)
    p_float = as_scores(p, name="p", n=int(y_int.shape[0]), unit_interval=True)
    n_bins = int(bins)
    if strategy == "quantile":
        edges = np.percentile(p_float, np.linspace(0.0, 1.0, n_bins + 1) * 100)
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p_float)
    counts = np.bincount(ids, minlength=n_bins)
    sums = np.bincount(ids, weights=p_float, minlength=n_bins)
    hits = np.bincount(ids, weights=y_int.astype(np.float64), minlength=n_bins)
    n = int(y_int.shape[0])
    result_bins: list[CalibrationBin] = []
    ece = 0.0
    mce = 0.0
    for k in np.flatnonzero(counts):
        count = int(counts[k])
        item = CalibrationBin(
            index=int(k),
            lower=float(edges[k]),
            upper=float(edges[k + 1]),
            count=count,
            positives=round(float(hits[k])),
            mean_predicted=float(sums[k] / count),
            observed_rate=float(hits[k] / count),
        )
        result_bins.append(item)
        ece += count / n * item.gap
        mce = max(mce, item.gap)
    return Calibration(
        strategy=strategy,
        n_bins=n_bins,
        edges=tuple(float(e) for e in edges),
        bins=tuple(result_bins),
        ece=float(ece),
        mce=float(mce),
        n=n,
    )


def top_label_calibration(
    y: Any, p: Any, *, bins: int = 10, strategy: Literal["quantile", "uniform"] = "quantile"
) -> Calibration:
    """Multiclass top-label calibration: the arg-max class's probability against its accuracy.

    Each row contributes its highest class probability (the confidence) and whether that class is
    the true one; the reliability diagram and ECE are those of :func:`calibration` on these
    pairs, so a bin's ``observed_rate`` is the accuracy of the rows predicted with about that
    confidence (``positives`` counts the correct rows).

    Args:
        y: Class indices ``0..k-1``.
        p: Class probabilities ``(n, k)``, rows summing to 1.
        bins: Number of bins, at least 1.
        strategy: ``"quantile"`` or ``"uniform"``.

    Returns:
        The :class:`Calibration` of confidence against correctness.

    Raises:
        SpecError: On an invalid ``bins`` or ``strategy``.
        EmptyDataError: When there are no rows.
        DataError: On invalid input.

    Example:
        >>> cal = top_label_calibration([0, 1], [[0.75, 0.25], [0.75, 0.25]], bins=1)
        >>> cal.mean_predicted, cal.observed_rate
        ((0.75,), (0.5,))
    """
    y_idx, probs = validate_multiclass(y, p)
    correct = (np.argmax(probs, axis=1) == y_idx).astype(np.int64)
    return calibration(correct, probs.max(axis=1), bins=bins, strategy=strategy)


def residual_summary(y: Any, pred: Any, *, bins: int = 10) -> ResidualSummary:
    """Summary of the residuals ``y - pred`` and mean target per quantile bin of ``pred``.

    Bins follow :func:`calibration`'s quantile edges and membership on the predictions.

    Args:
        y: Regression targets (finite floats).
        pred: Predictions (finite floats), same length.
        bins: Number of prediction bins, at least 1.

    Returns:
        The :class:`ResidualSummary`.

    Raises:
        SpecError: On an invalid ``bins``.
        EmptyDataError: When there are no rows.
        DataError: On invalid input.

    Example:
        >>> residual_summary([0.0, 1.0], [0.5, 0.5], bins=1).abs_p90
        0.5
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise SpecError(
            f"bins={bins!r} is invalid; rule: the number of bins must be an integer >= 1; fix: "
            f"pass e.g. bins=10"
        )
    y_float, p_float = validate_regression(y, pred)
    residual = y_float - p_float
    levels = (5, 25, 50, 75, 95)
    values = np.percentile(residual, levels)
    abs_p90, abs_p95 = np.percentile(np.abs(residual), [90, 95])
    n_bins = int(bins)
    edges = np.percentile(p_float, np.linspace(0.0, 1.0, n_bins + 1) * 100)
    ids = np.searchsorted(edges[1:-1], p_float)
    counts = np.bincount(ids, minlength=n_bins)
    pred_sums = np.bincount(ids, weights=p_float, minlength=n_bins)
    y_sums = np.bincount(ids, weights=y_float, minlength=n_bins)
    out_bins = tuple(
        {
            "lower": float(edges[k]),
            "upper": float(edges[k + 1]),
            "count": int(counts[k]),
            "mean_predicted": float(pred_sums[k] / counts[k]),
            "mean_actual": float(y_sums[k] / counts[k]),
        }
        for k in np.flatnonzero(counts)
    )
    return ResidualSummary(
        n=int(y_float.shape[0]),
        mean=float(residual.mean()),
        std=float(residual.std()),
        quantiles={f"p{q:02d}": float(v) for q, v in zip(levels, values, strict=True)},
        abs_p90=float(abs_p90),
        abs_p95=float(abs_p95),
        bins=out_bins,
    )
