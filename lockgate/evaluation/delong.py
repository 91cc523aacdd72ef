"""DeLong's test of two correlated ROC AUCs on the same rows (the fast algorithm of Sun & Xu).

The binary alternative to the paired bootstrap for ROC AUC: a normal-theory interval and
two-sided p-value of ``AUC(challenger) - AUC(champion)`` from DeLong's structural components,
computed by midranks in ``O(n log n)`` per model. A gate picks it with
``Gate(comparison="delong")``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, SpecError
from lockgate.evaluation.metric_checks import check_alpha
from lockgate.evaluation.results import PairedComparison
from lockgate.tasks import catalog as _tasks
from lockgate.tasks import metrics as _metrics
from lockgate.tasks.inputs import as_labels, as_scores

__all__ = ["delong_test"]

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]
_BoolArray = npt.NDArray[np.bool_]


def _midranks(x: _FloatArray) -> _FloatArray:
    """1-based ranks of ``x`` with tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)  # 1-based rank of the last of each group
    mid = ends - (counts - 1) / 2.0
    return np.asarray(mid[inverse.reshape(-1)], dtype=np.float64)


def _delong_components(y: _IntArray, scores: _FloatArray) -> tuple[_FloatArray, _FloatArray]:
    """DeLong's structural components by midranks (Sun & Xu 2014), O(n log n) per model.

    Args:
        y: Labels in {0, 1}.
        scores: ``(k, n)`` scores of ``k`` models.

    Returns:
        ``(v10, v01)``: ``(k, m)`` per-positive and ``(k, n)`` per-negative components;
        ``v10[r, i]`` is the share of negatives that positive ``i`` outranks (ties 1/2) and
        ``v01[r, j]`` the share of positives that outrank negative ``j``.
    """
    positives = scores[:, y == 1]
    negatives = scores[:, y == 0]
    m = positives.shape[1]
    n = negatives.shape[1]
    v10 = np.empty((scores.shape[0], m), dtype=np.float64)
    v01 = np.empty((scores.shape[0], n), dtype=np.float64)
    for r in range(scores.shape[0]):
        rank_pos = _midranks(positives[r])
        rank_neg = _midranks(negatives[r])
        rank_all = _midranks(np.concatenate([positives[r], negatives[r]]))
        v10[r] = (rank_all[:m] - rank_pos) / n
        v01[r] = 1.0 - (rank_all[m:] - rank_neg) / m
    return v10, v01


def delong_test(
    y: Any, p_a: Any, p_b: Any, *, alpha: float = 0.05, task: str = "binary"
) -> PairedComparison:
    """DeLong's test of two correlated ROC AUCs on the same rows (fast algorithm of Sun & Xu).

    ``delta = AUC(a) - AUC(b)``; its variance is ``S_aa + S_bb - 2 S_ab`` with
    ``S = S10 / m + S01 / n`` from the covariance (``ddof=1``) of DeLong's structural components
    over the ``m`` positives and ``n`` negatives. The interval is ``delta +- z_(1-alpha/2) * se``
    (not clipped to [-1, 1]) and the p-value is two-sided from the normal distribution. Model
    ``a`` is reported as the challenger and ``b`` as the champion. When ``se`` is 0 (e.g.
    identically ranked scores), ``delta == 0`` gives ``z = 0`` and ``p = 1``, any other
    ``delta`` gives an infinite ``z`` and ``p = 0``.

    Args:
        y: True labels in {0, 1}, at least two of each.
        p_a: Scores of model a (the challenger); only their order matters.
        p_b: Scores of model b (the champion).
        alpha: One minus the confidence level of the interval.
        task: Must be ``"binary"``: DeLong's variance is that of a two-class ROC AUC.

    Returns:
        The :class:`PairedComparison` with ``metric="roc_auc"`` and ``method="delong"``.

    Raises:
        SpecError: When ``alpha`` is not in (0, 1) or ``task`` is not binary.
        EmptyDataError: When there are no rows.
        DataError: On invalid input or fewer than two positives or two negatives.

    Example:
        >>> y = [0, 0, 0, 1, 1, 1]
        >>> t = delong_test(y, [0.1, 0.3, 0.6, 0.4, 0.8, 0.9], [0.1, 0.3, 0.6, 0.4, 0.8, 0.9])
        >>> t.delta, t.z, t.p_value
        (0.0, 0.0, 1.0)
    """
    if _tasks.check_task(task) != "binary" or any(
        np.ndim(p) == 2 and np.shape(p)[1] > 1 for p in (p_a, p_b)
    ):
        raise SpecError(
            f"DeLong's test was asked for task {task!r} (or for (n, k) class probabilities); "
            f"rule: DeLong's test compares two binary ROC AUCs only; fix: use "
            f"paired_bootstrap(..., task={task!r}) or Gate(comparison='paired_bootstrap')"
        )
    check_alpha(alpha)
    y_int = as_labels(y)
    n_rows = int(y_int.shape[0])
    a = as_scores(p_a, name="p_a", n=n_rows, unit_interval=False)
    b = as_scores(p_b, name="p_b", n=n_rows, unit_interval=False)
    m = int(y_int.sum())
    n = n_rows - m
    if m < 2 or n < 2:
        raise DataError(
            f"DeLong's test needs at least 2 positives and 2 negatives, y has {m} positive(s) and "
            f"{n} negative(s); rule: the variance of an AUC is estimated from both classes; fix: "
            f"evaluate on a larger or stratified split"
        )
    auc_a = _metrics.roc_auc(y_int, a)
    auc_b = _metrics.roc_auc(y_int, b)
    v10, v01 = _delong_components(y_int, np.vstack([a, b]))
    s = np.cov(v10) / m + np.cov(v01) / n
    variance = max(float(s[0, 0] + s[1, 1] - 2.0 * s[0, 1]), 0.0)
    se = math.sqrt(variance)
    delta = auc_a - auc_b
    if se > 0.0:
        z = delta / se
        p_value = math.erfc(abs(z) / math.sqrt(2.0))
    elif delta == 0.0:
        z, p_value = 0.0, 1.0
    else:
        z, p_value = math.copysign(math.inf, delta), 0.0
    half = NormalDist().inv_cdf(1.0 - alpha / 2.0) * se
    return PairedComparison(
        metric="roc_auc",
        higher_is_better=True,
        challenger=auc_a,
        champion=auc_b,
        delta=delta,
        lower=delta - half,
        upper=delta + half,
        p_value=float(p_value),
        alpha=float(alpha),
        se=se,
        n=n_rows,
        positives=m,
        method="delong",
        z=float(z),
    )


# --------------------------------------------------------------------------------------------
