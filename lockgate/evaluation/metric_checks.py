"""The binary metrics the statistics know, their directions, and the checks every statistic runs.

:data:`HIGHER_IS_BETTER` names the binary metrics and which way each is better;
:func:`check_metric` checks a metric name against a task's catalog, :func:`check_alpha` an
interval's ``alpha``, :func:`require_defined` refuses a binary metric that is undefined on the
full data (a single class, no positives), and :func:`binary_metric` computes one with
:mod:`lockgate.tasks.metrics`. The bootstrap, the slices
and the plots share them, so each says the same thing in the same words.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, SpecError
from lockgate.tasks import catalog as _tasks
from lockgate.tasks import metrics as _metrics

__all__ = [
    "BOTH_CLASSES_METRICS",
    "HIGHER_IS_BETTER",
    "PROBABILITY_METRICS",
    "binary_metric",
    "check_alpha",
    "check_metric",
    "require_defined",
]


_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]

HIGHER_IS_BETTER: dict[str, bool] = {
    "brier": False,
    "log_loss": False,
    "pr_auc": True,
    "recall_at_fpr": True,
    "roc_auc": True,
}
"""Direction of every binary metric: ``True`` when a higher value is better.

The directions of every task's metrics are :func:`lockgate.tasks.catalog.higher_is_better`.
"""

PROBABILITY_METRICS = frozenset({"brier", "log_loss"})
"""The binary metrics that need probabilities in [0, 1] (mean losses), not just scores."""
BOTH_CLASSES_METRICS = frozenset({"recall_at_fpr", "roc_auc"})
"""The binary metrics undefined unless both labels occur."""


def check_alpha(alpha: Any) -> None:
    """Raises SpecError unless ``alpha`` (one minus the confidence level) is a number in (0, 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise SpecError(
            f"alpha={alpha!r} is invalid; rule: alpha (one minus the confidence level) must be in "
            f"(0, 1); fix: pass alpha=0.05 for a 95% interval"
        )


def check_metric(metric: Any, task: str = "binary") -> str:
    """Returns ``metric`` when ``task`` reports it; raises SpecError naming the allowed ones."""
    if _tasks.check_task(task) != "binary":
        return _tasks.check_task_metric(task, metric)
    if not isinstance(metric, str) or metric not in HIGHER_IS_BETTER:
        raise SpecError(
            f"metric={metric!r} is unknown; rule: the metric must be one of "
            f"{sorted(HIGHER_IS_BETTER)}; fix: pass e.g. metric='roc_auc'"
        )
    return metric


def require_defined(y: _IntArray, *, metric: str) -> None:
    """Raises DataError when ``metric`` is undefined on the full data."""
    positives = int(y.sum())
    negatives = int(y.shape[0]) - positives
    if metric in BOTH_CLASSES_METRICS and (positives == 0 or negatives == 0):
        raise DataError(
            f"{metric} is undefined with a single class: y has {positives} positive(s) and "
            f"{negatives} negative(s); rule: both labels 0 and 1 must occur; fix: evaluate on a "
            f"larger or stratified split"
        )
    if metric == "pr_auc" and positives == 0:
        raise DataError(
            f"pr_auc is undefined without positives: y has 0 positives among {y.shape[0]} rows; "
            f"rule: label 1 must occur; fix: evaluate on a larger or stratified split"
        )


def binary_metric(metric: str, y: _IntArray, p: _FloatArray, *, max_fpr: float) -> float:
    """A binary metric of checked labels and scores (:mod:`lockgate.tasks.metrics`)."""
    if metric == "roc_auc":
        return _metrics.roc_auc(y, p)
    if metric == "pr_auc":
        return _metrics.pr_auc(y, p)
    if metric == "log_loss":
        return _metrics.log_loss(y, p)
    if metric == "brier":
        return _metrics.brier(y, p)
    return _metrics.recall_at_fpr(y, p, max_fpr=max_fpr)
