"""Percentile bootstrap intervals of one metric and the paired bootstrap of challenger vs champion.

:func:`bootstrap_ci` gives a metric's point estimate on the full data with its ``1 - alpha``
percentile interval; :func:`paired_bootstrap` gives ``delta = challenger - champion`` on the same
resampled rows, its interval and a two-sided p-value. Both are stratified by default (each class
resampled to its own count), take ``task`` (binary, multiclass, regression), refuse a metric
undefined on the full data, and require that at least half of the replicates be usable. The
replicates come from :mod:`lockgate.evaluation.resampling`; the conventions are those of
:mod:`lockgate.evaluation.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, SpecError
from lockgate.evaluation.metric_checks import (
    HIGHER_IS_BETTER,
    PROBABILITY_METRICS,
    binary_metric,
    check_alpha,
    check_metric,
    require_defined,
)
from lockgate.evaluation.resampling import replicates_many, task_replicates
from lockgate.evaluation.results import Interval, PairedComparison
from lockgate.tasks import catalog as _tasks
from lockgate.tasks.inputs import (
    as_class_indices,
    as_labels,
    as_probability_matrix,
    as_scores,
    as_targets,
)

__all__ = ["Bootstraps", "bootstrap_ci", "bootstrap_models", "paired_bootstrap"]

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]
_BoolArray = npt.NDArray[np.bool_]

_MIN_BOOT = 10


def _check_bootstrap_options(*, n_boot: Any, alpha: Any, seed: Any) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < _MIN_BOOT:
        raise SpecError(
            f"n_boot={n_boot!r} is invalid; rule: the number of bootstrap replicates must be an "
            f"integer >= {_MIN_BOOT}; fix: pass n_boot=1000 (the default) or more"
        )
    check_alpha(alpha)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SpecError(
            f"seed={seed!r} is invalid; rule: the seed must be a non-negative integer so that "
            f"results are reproducible; fix: pass e.g. seed=0"
        )


def _require_usable(valid: _BoolArray, *, metric: str, n_boot: int, stratified: bool) -> int:
    n_used = int(valid.sum())
    if 2 * n_used < n_boot:
        hint = (
            "evaluate on more rows"
            if stratified
            else "pass stratified=True (resamples each class separately) or evaluate on more rows"
        )
        raise DataError(
            f"only {n_used} of {n_boot} bootstrap replicates of {metric} were usable (the others "
            f"held a single class); rule: at least half of the replicates must be usable; fix: "
            f"{hint}"
        )
    return n_used


def _prepare(
    task: str, y: Any, preds: Sequence[Any], names: Sequence[str]
) -> tuple[npt.NDArray[Any], list[_FloatArray]]:
    """Validated labels (class indices or float targets) and predictions of a non-binary task."""
    out: list[_FloatArray] = []
    labels: npt.NDArray[Any] | None = None
    for pred, name in zip(preds, names, strict=True):
        if task == "multiclass":
            probs = as_probability_matrix(pred, name=name)
            if out and probs.shape[1] != out[0].shape[1]:
                raise DataError(
                    f"{name} has {probs.shape[1]} classes but {names[0]} has "
                    f"{out[0].shape[1]}; rule: compared models must predict the same classes; "
                    f"fix: reorder the columns to one classes tuple"
                )
            y_idx = as_class_indices(y, k=int(probs.shape[1]))
            if y_idx.shape[0] != probs.shape[0]:
                raise DataError(
                    f"{name} has {probs.shape[0]} rows but y has {y_idx.shape[0]}; rule: labels "
                    f"and probabilities must have the same length; fix: score exactly the rows "
                    f"you evaluate"
                )
            labels, pred_arr = y_idx, probs
        else:
            labels = as_targets(y)
            pred_arr = as_scores(pred, name=name, n=int(labels.shape[0]), unit_interval=False)
        out.append(pred_arr)
    assert labels is not None
    return labels, out


def _require_defined_task(task: str, metric: str, y: npt.NDArray[Any]) -> None:
    """Raises DataError when ``metric`` is undefined on the full data (multiclass, regression)."""
    if metric == "roc_auc_ovr" and np.unique(y).shape[0] < 2:
        raise DataError(
            f"roc_auc_ovr is undefined with a single class: y holds only class index "
            f"{np.unique(y).tolist()}; rule: at least two classes must occur; fix: evaluate on a "
            f"larger or stratified split"
        )
    if metric == "r2" and float(np.min(y)) == float(np.max(y)):
        raise DataError(
            f"r2 is undefined for a constant target: every y equals {y[0]!r}; rule: r2 compares "
            f"with the variance of y, which must be positive; fix: evaluate on a larger split, or "
            f"gate on rmse or mae"
        )


def _usable_task(valid: _BoolArray, *, task: str, metric: str, n_boot: int) -> int:
    n_used = int(valid.sum())
    if 2 * n_used < n_boot:
        why = "had a constant target" if task == "regression" else "lacked a class"
        fix = "evaluate on more rows" if task == "regression" else "pass stratified=True"
        raise DataError(
            f"only {n_used} of {n_boot} bootstrap replicates of {metric} were usable (the others "
            f"{why}); rule: at least half of the replicates must be usable; fix: {fix}"
        )
    return n_used


@dataclass(frozen=True)
class _Replicates:
    """The replicates of one or two models' metric and what the result records about them."""

    reps: _FloatArray
    valid: _BoolArray
    estimates: list[float]
    n: int
    positives: int | None
    n_used: int
    stratified: bool

    def common_fields(self, *, metric: str, alpha: float, n_boot: int, seed: int) -> dict[str, Any]:
        """The fields that :class:`Interval` and :class:`PairedComparison` share."""
        return {
            "metric": metric,
            "alpha": float(alpha),
            "n": self.n,
            "positives": self.positives,
            "n_boot": int(n_boot),
            "n_used": self.n_used,
            "n_skipped": int(n_boot) - self.n_used,
            "stratified": self.stratified,
            "seed": int(seed),
        }


def _bootstrap(
    task: str,
    y: Any,
    preds: Sequence[Any],
    names: Sequence[str],
    *,
    metric: str,
    n_boot: int,
    seed: int,
    stratified: bool,
    max_fpr: float,
) -> _Replicates:
    """Validates the inputs and draws the replicates of every model in ``preds`` on shared rows."""
    return _bootstrap_many(
        task,
        y,
        preds,
        names,
        metrics=[metric],
        n_boot=n_boot,
        seed=seed,
        stratified=stratified,
        max_fpr=max_fpr,
    )[metric]


def _bootstrap_many(
    task: str,
    y: Any,
    preds: Sequence[Any],
    names: Sequence[str],
    *,
    metrics: Sequence[str],
    n_boot: int,
    seed: int,
    stratified: bool,
    max_fpr: float,
) -> dict[str, _Replicates]:
    """:func:`_bootstrap` of each of ``metrics``; binary draws the rows once for all of them."""
    if task != "binary":
        out: dict[str, _Replicates] = {}
        labels, arrays = _prepare(task, y, preds, names)  # converted once for every metric
        for metric in metrics:
            _require_defined_task(task, metric, labels)
            estimates = [_tasks.metric_value(task, metric, labels, a) for a in arrays]
            strat = bool(stratified) and task == "multiclass"
            reps, valid = task_replicates(
                task, metric, labels, arrays, n_boot=int(n_boot), seed=int(seed), stratified=strat
            )
            n_used = _usable_task(valid, task=task, metric=metric, n_boot=int(n_boot))
            n_rows = int(labels.shape[0])
            out[metric] = _Replicates(reps, valid, estimates, n_rows, None, n_used, strat)
        return out
    y_int = as_labels(y)
    n = int(y_int.shape[0])
    # converted once; the probability check once, where the first metric needing it comes
    scores = [
        as_scores(pred, name=name, n=n, unit_interval=False)
        for pred, name in zip(preds, names, strict=True)
    ]
    unit_checked = False
    estimates_of: dict[str, list[float]] = {}
    for metric in metrics:  # each metric's checks, in order, as one call per metric makes them
        if metric in PROBABILITY_METRICS and not unit_checked:
            for s, name in zip(scores, names, strict=True):
                as_scores(s, name=name, n=n, unit_interval=True)
            unit_checked = True
        require_defined(y_int, metric=metric)
        estimates_of[metric] = [binary_metric(metric, y_int, s, max_fpr=max_fpr) for s in scores]
    drawn = replicates_many(
        list(metrics),
        y_int,
        scores,
        n_boot=int(n_boot),
        seed=int(seed),
        stratified=bool(stratified),
        max_fpr=max_fpr,
    )
    positives = int(y_int.sum())
    result: dict[str, _Replicates] = {}
    for metric in metrics:
        reps, valid = drawn[metric]
        n_used = _require_usable(valid, metric=metric, n_boot=int(n_boot), stratified=stratified)
        result[metric] = _Replicates(
            reps, valid, estimates_of[metric], n, positives, n_used, bool(stratified)
        )
    return result


def _percentiles(values: _FloatArray, alpha: float) -> tuple[float, float]:
    """The ``alpha / 2`` and ``1 - alpha / 2`` quantiles of ``values``."""
    lower, upper = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lower), float(upper)


def bootstrap_ci(
    y: Any,
    p: Any,
    *,
    metric: str,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    max_fpr: float = 0.01,
    task: str = "binary",
) -> Interval:
    """Point estimate and percentile bootstrap confidence interval of one metric.

    The bootstrap is stratified by default: each replicate resamples the positives and the
    negatives separately (with replacement, each to its original count), so every replicate has
    the data's class balance and is usable even when positives are rare. With
    ``stratified=False`` rows are resampled together and replicates with a single class are
    skipped (reported in ``n_skipped``).

    Args:
        y: True labels in {0, 1}.
        p: Predicted probabilities (any finite scores for the ranking metrics).
        metric: One of ``roc_auc``, ``pr_auc``, ``log_loss``, ``brier``, ``recall_at_fpr``.
        n_boot: Bootstrap replicates (at least 10; 1000 or more for reporting).
        alpha: One minus the confidence level.
        seed: Seed of the random generator (same seed, same replicates).
        stratified: Whether to resample the classes separately.
        max_fpr: The false-positive-rate bound of ``recall_at_fpr``.
        task: ``"binary"``, ``"multiclass"`` (``y`` class indices, ``p`` probabilities
            ``(n, k)``, stratified by class) or ``"regression"`` (``p`` the predictions; plain
            row resampling whatever ``stratified`` says). ``metric`` must be one of the task's
            (:func:`lockgate.tasks.catalog.task_metric_names`).

    Returns:
        The :class:`Interval` (``positives`` is ``None`` unless binary).

    Raises:
        SpecError: On an unknown metric or invalid options.
        EmptyDataError: When there are no rows.
        DataError: On invalid input, when the metric is undefined on the full data, or when
            fewer than half of the replicates are usable.

    Example:
        >>> iv = bootstrap_ci([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9],
        ...                   metric="brier", n_boot=100)
        >>> iv.lower <= iv.estimate <= iv.upper, iv.n_skipped
        (True, 0)
    """
    check_metric(metric, task)
    _check_bootstrap_options(n_boot=n_boot, alpha=alpha, seed=seed)
    r = _bootstrap(
        task,
        y,
        [p],
        ["p"],
        metric=metric,
        n_boot=n_boot,
        seed=seed,
        stratified=stratified,
        max_fpr=max_fpr,
    )
    return _interval(r, 0, metric=metric, alpha=alpha, n_boot=n_boot, seed=seed)


def _interval(
    r: _Replicates, k: int, *, metric: str, alpha: float, n_boot: int, seed: int
) -> Interval:
    """Model ``k``'s :class:`Interval` from its replicates."""
    used = r.reps[k][r.valid]
    lower, upper = _percentiles(used, alpha)
    return Interval(
        **r.common_fields(metric=metric, alpha=alpha, n_boot=n_boot, seed=seed),
        estimate=r.estimates[k],
        lower=lower,
        upper=upper,
        se=float(np.std(used, ddof=1)),
    )


def paired_bootstrap(
    y: Any,
    p_challenger: Any,
    p_champion: Any,
    *,
    metric: str,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    max_fpr: float = 0.01,
    task: str = "binary",
) -> PairedComparison:
    """Paired bootstrap of ``delta = metric(challenger) - metric(champion)``.

    Both models are scored on the same resampled rows in every replicate (stratified as in
    :func:`bootstrap_ci`), so their correlation is kept. The interval is the percentile interval
    of the replicate deltas; the two-sided p-value is
    ``min(1, 2 * min(#{delta* <= 0} + 1, #{delta* >= 0} + 1) / (n_used + 1))``, consistent with
    the interval (it is below ``alpha`` about when the interval excludes 0) and never exactly 0.

    Args:
        y: True labels in {0, 1}.
        p_challenger: The challenger's predicted probabilities.
        p_champion: The champion's predicted probabilities.
        metric: One of the keys of :data:`HIGHER_IS_BETTER`.
        n_boot: Bootstrap replicates (at least 10).
        alpha: One minus the confidence level.
        seed: Seed of the random generator.
        stratified: Whether to resample the classes separately.
        max_fpr: The false-positive-rate bound of ``recall_at_fpr``.
        task: As in :func:`bootstrap_ci`; both models' predictions have the task's shape.

    Returns:
        The :class:`PairedComparison` with ``method="paired_bootstrap"``.

    Raises:
        SpecError: On an unknown metric or invalid options.
        EmptyDataError: When there are no rows.
        DataError: On invalid input, when the metric is undefined on the full data, or when
            fewer than half of the replicates are usable.

    Example:
        >>> y = [0, 0, 1, 1, 0, 1, 0, 1]
        >>> p = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.3, 0.6]
        >>> same = paired_bootstrap(y, p, p, metric="roc_auc", n_boot=50)
        >>> same.delta, same.lower, same.upper, same.p_value
        (0.0, 0.0, 0.0, 1.0)
    """
    check_metric(metric, task)
    _check_bootstrap_options(n_boot=n_boot, alpha=alpha, seed=seed)
    r = _bootstrap(
        task,
        y,
        [p_challenger, p_champion],
        ["p_challenger", "p_champion"],
        metric=metric,
        n_boot=n_boot,
        seed=seed,
        stratified=stratified,
        max_fpr=max_fpr,
    )
    return _paired(r, metric=metric, alpha=alpha, n_boot=n_boot, seed=seed, task=task)


def _paired(
    r: _Replicates, *, metric: str, alpha: float, n_boot: int, seed: int, task: str
) -> PairedComparison:
    """The :class:`PairedComparison` of model 0 (challenger) vs model 1 from their replicates."""
    deltas = r.reps[0, r.valid] - r.reps[1, r.valid]
    lower, upper = _percentiles(deltas, alpha)
    at_most_zero = int((deltas <= 0.0).sum())
    at_least_zero = int((deltas >= 0.0).sum())
    p_value = min(1.0, 2.0 * (min(at_most_zero, at_least_zero) + 1) / (r.n_used + 1))
    higher = HIGHER_IS_BETTER[metric] if task == "binary" else _tasks.higher_is_better(task, metric)
    return PairedComparison(
        **r.common_fields(metric=metric, alpha=alpha, n_boot=n_boot, seed=seed),
        higher_is_better=higher,
        challenger=r.estimates[0],
        champion=r.estimates[1],
        delta=r.estimates[0] - r.estimates[1],
        lower=lower,
        upper=upper,
        p_value=float(p_value),
        se=float(np.std(deltas, ddof=1)),
        method="paired_bootstrap",
    )


@dataclass(frozen=True)
class Bootstraps:
    """What :func:`bootstrap_models` gives: each model's intervals and the paired comparisons."""

    challenger: dict[str, Interval]
    champion: dict[str, Interval] | None
    paired: dict[str, PairedComparison] | None


def bootstrap_models(
    y: Any,
    p_challenger: Any,
    p_champion: Any = None,
    *,
    metrics: Sequence[str],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    max_fpr: float = 0.01,
    task: str = "binary",
) -> Bootstraps:
    """:func:`bootstrap_ci` of every metric for the challenger (and the champion) and
    :func:`paired_bootstrap` of every metric, from one set of replicates.

    The results are those of the calls one by one (the replicates depend only on ``y``,
    ``n_boot``, ``seed`` and ``stratified``; the mean losses to the last bits of a float sum),
    but the rows are drawn once: for a binary task every metric of both models comes from one
    pass over the replicates (:func:`lockgate.evaluation.resampling.replicates_many`), for the
    others one pass per metric serves both models. An evaluation report's intervals and
    comparisons cost about one metric's bootstrap instead of three times the metric count.

    Example:
        >>> y = [0, 0, 1, 1, 0, 1, 0, 1]
        >>> p = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.3, 0.6]
        >>> b = bootstrap_models(y, p, p, metrics=["roc_auc", "brier"], n_boot=50)
        >>> b.challenger["brier"] == bootstrap_ci(y, p, metric="brier", n_boot=50)
        True
        >>> b.paired["roc_auc"].delta
        0.0
    """
    for metric in metrics:
        check_metric(metric, task)
    _check_bootstrap_options(n_boot=n_boot, alpha=alpha, seed=seed)
    both = p_champion is not None
    r = _bootstrap_many(
        task,
        y,
        [p_challenger, p_champion] if both else [p_challenger],
        ["p_challenger", "p_champion"] if both else ["p"],
        metrics=metrics,
        n_boot=n_boot,
        seed=seed,
        stratified=stratified,
        max_fpr=max_fpr,
    )

    def interval(metric: str, k: int) -> Interval:
        return _interval(r[metric], k, metric=metric, alpha=alpha, n_boot=n_boot, seed=seed)

    def paired(metric: str) -> PairedComparison:
        return _paired(r[metric], metric=metric, alpha=alpha, n_boot=n_boot, seed=seed, task=task)

    return Bootstraps(
        challenger={m: interval(m, 0) for m in metrics},
        champion={m: interval(m, 1) for m in metrics} if both else None,
        paired={m: paired(m) for m in metrics} if both else None,
    )
