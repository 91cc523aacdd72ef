"""Statistics of a champion-vs-challenger evaluation: bootstrap intervals, paired tests,
calibration and per-slice metrics. Pure functions over numpy arrays (pandas only for slices).

Conventions:

- **Stratified bootstrap.** By default every replicate resamples the positives and the negatives
  separately, each with replacement and to its own original count, so every replicate keeps the
  class balance of the data. Rare-positive sets (fraud, 0.1 % positives) therefore never yield a
  replicate without positives, and the interval describes the sampling variability of the
  metric at the observed prevalence. Pass ``stratified=False`` for the classic row bootstrap;
  its replicates with a single class (where the metric is undefined) are skipped and counted.
- **Percentile intervals.** The ``1 - alpha`` interval is the ``alpha / 2`` and
  ``1 - alpha / 2`` quantiles (numpy's default linear interpolation) of the usable replicates;
  the point estimate is the metric on the full data, from :mod:`lockgate.tasks.metrics`.
- **Vectorised replicates.** Replicates are drawn and evaluated in chunks (at most 200, and at
  most about two million drawn rows, at a time), which bounds memory; there is no Python loop
  over replicates. The mean losses (``brier``, ``log_loss``) are gathered and averaged per
  replicate. For the ranking metrics a replicate is reduced to how often it drew each (label,
  score group) cell, and ROC AUC, average precision and recall at a false-positive rate follow
  from cumulative sums of those counts without sorting again; every replicate value equals
  :mod:`lockgate.tasks.metrics` on the resampled rows (exactly for ROC AUC and recall, to rounding
  for the others).
- **Tasks.** Every function takes ``task`` (``"binary"`` by default, see
  :data:`lockgate.tasks.catalog.TASKS`). Multiclass replicates are stratified by class (each class
  resampled to its own count, so no class vanishes) and regression replicates are plain row
  resamples (``stratified`` has no effect: there are no classes). Their metrics are vectorised
  the same way: mean losses and hit rates are gathered per replicate, macro F1 and the worst
  class recall follow from per-replicate confusion counts, the one-vs-rest AUC from the rank
  cells of each class, and r2 from gathered sums (a replicate with a constant target is skipped
  and counted, like a single-class replicate). DeLong's test is binary-only.
- **Determinism.** The same data, options and ``seed`` give the same result; two calls with the
  same ``seed`` on the same rows draw the same replicates, so :func:`bootstrap_ci` on either
  model and :func:`paired_bootstrap` see identical resamples.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(2000) < 0.1).astype(int)
    >>> p = 1 / (1 + np.exp(-(rng.normal(size=2000) + 2 * y - 2)))
    >>> ci = bootstrap_ci(y, p, metric="roc_auc", n_boot=200)
    >>> ci.lower < ci.estimate < ci.upper
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, EmptyDataError, SchemaError, SpecError
from lockgate.tasks import catalog as _tasks
from lockgate.tasks import metrics as _metrics
from lockgate.tasks.metrics import _as_labels, _as_scores

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "HIGHER_IS_BETTER",
    "Calibration",
    "CalibrationBin",
    "Interval",
    "PairedComparison",
    "ResidualSummary",
    "SliceResult",
    "bootstrap_ci",
    "bucketize",
    "calibration",
    "delong_test",
    "paired_bootstrap",
    "residual_summary",
    "slice_metrics",
    "top_label_calibration",
]

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

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]
_BoolArray = npt.NDArray[np.bool_]

_PROBABILITY_METRICS = frozenset({"brier", "log_loss"})
_BOTH_CLASSES_METRICS = frozenset({"recall_at_fpr", "roc_auc"})
_LOG_LOSS_EPS = 1e-15  # the clipping bound of lockgate.tasks.metrics.log_loss
_MAX_CHUNK = 200  # replicates evaluated together
_CHUNK_ELEMENTS = 1 << 21  # drawn rows per chunk (replicates x rows), bounds the memory
_MIN_BOOT = 10


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Converts a value to plain JSON types; non-finite floats become ``None``."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in value]
    if is_dataclass(value) and hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def _fields_dict(obj: Any) -> dict[str, Any]:
    return {f.name: _jsonable(getattr(obj, f.name)) for f in fields(obj)}


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap percentile confidence interval.

    Attributes:
        metric: the metric's name, a key of :data:`HIGHER_IS_BETTER`.
        estimate: the metric on the full data.
        lower: the ``alpha / 2`` quantile of the usable replicates.
        upper: the ``1 - alpha / 2`` quantile of the usable replicates.
        alpha: one minus the confidence level.
        se: the bootstrap standard error (standard deviation of the usable replicates).
        n: rows in the data.
        positives: rows with label 1 (binary; ``None`` for the other tasks).
        n_boot: replicates drawn.
        n_used: replicates where the metric was defined.
        n_skipped: replicates skipped because the metric was undefined on them (a single
            class; a missing class for multiclass; a constant target for r2).
        stratified: whether classes were resampled separately.
        seed: the random seed.
        method: always ``"percentile_bootstrap"``.

    Example:
        >>> iv = Interval("roc_auc", 0.8, 0.75, 0.85, 0.05, 0.025, 1000, 100, 1000, 1000, 0,
        ...               True, 0)
        >>> iv.contains(0.78), iv.to_dict()["upper"]
        (True, 0.85)
    """

    metric: str
    estimate: float
    lower: float
    upper: float
    alpha: float
    se: float
    n: int
    positives: int | None
    n_boot: int
    n_used: int
    n_skipped: int
    stratified: bool
    seed: int
    method: str = "percentile_bootstrap"

    @property
    def confidence(self) -> float:
        """The confidence level, ``1 - alpha``."""
        return 1.0 - self.alpha

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the closed interval ``[lower, upper]``."""
        return self.lower <= value <= self.upper

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values (non-finite floats become ``None``)."""
        return {**_fields_dict(self), "confidence": _jsonable(self.confidence)}


@dataclass(frozen=True)
class PairedComparison:
    """Challenger versus champion on the same rows: ``delta = challenger - champion``.

    Attributes:
        metric: the metric's name.
        higher_is_better: the metric's direction (:data:`HIGHER_IS_BETTER`).
        challenger: the challenger's metric on the full data.
        champion: the champion's metric on the full data.
        delta: ``challenger - champion``.
        lower: lower end of the ``1 - alpha`` interval of ``delta``.
        upper: upper end of the ``1 - alpha`` interval of ``delta``.
        p_value: two-sided p-value of the null hypothesis ``delta == 0``.
        alpha: one minus the confidence level.
        se: the standard error of ``delta``.
        n: rows.
        positives: rows with label 1 (binary; ``None`` for the other tasks).
        method: ``"paired_bootstrap"`` or ``"delong"``.
        z: the z statistic (DeLong only; infinite when ``se`` is 0 but ``delta`` is not).
        n_boot: replicates drawn (bootstrap only).
        n_used: usable replicates (bootstrap only).
        n_skipped: replicates skipped for a single class (bootstrap only).
        stratified: whether classes were resampled separately (bootstrap only).
        seed: the random seed (bootstrap only).

    Example:
        >>> c = PairedComparison("log_loss", False, 0.30, 0.32, -0.02, -0.03, -0.01, 0.001,
        ...                      0.05, 0.005, 5000, 400, "paired_bootstrap")
        >>> c.improvement > 0, c.challenger_better, c.to_dict()["significant"]
        (True, True, True)
    """

    metric: str
    higher_is_better: bool
    challenger: float
    champion: float
    delta: float
    lower: float
    upper: float
    p_value: float
    alpha: float
    se: float
    n: int
    positives: int | None
    method: str
    z: float | None = None
    n_boot: int | None = None
    n_used: int | None = None
    n_skipped: int | None = None
    stratified: bool | None = None
    seed: int | None = None

    @property
    def improvement(self) -> float:
        """``delta`` signed so that a positive value means the challenger is better."""
        return self.delta if self.higher_is_better else -self.delta

    @property
    def significant(self) -> bool:
        """Whether the interval of ``delta`` excludes 0."""
        return not (self.lower <= 0.0 <= self.upper)

    @property
    def challenger_better(self) -> bool:
        """Whether the challenger is significantly better than the champion."""
        return self.significant and self.improvement > 0.0

    @property
    def challenger_worse(self) -> bool:
        """Whether the challenger is significantly worse than the champion."""
        return self.significant and self.improvement < 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields and the derived verdicts as JSON-able values (no NaN or inf)."""
        return {
            **_fields_dict(self),
            "improvement": _jsonable(self.improvement),
            "significant": self.significant,
            "challenger_better": self.challenger_better,
            "challenger_worse": self.challenger_worse,
        }


@dataclass(frozen=True)
class CalibrationBin:
    """One non-empty bin of a reliability diagram.

    Attributes:
        index: the bin's position among all ``n_bins`` bins (0-based; empty bins are omitted).
        lower: the bin's lower edge (exclusive, except for bin 0, which takes everything up to
            its upper edge).
        upper: the bin's upper edge (inclusive, except for the last bin, which takes everything
            above its lower edge).
        count: rows in the bin.
        positives: rows with label 1 in the bin.
        mean_predicted: the mean predicted probability of the bin's rows.
        observed_rate: the share of label 1 among the bin's rows.

    Example:
        >>> b = CalibrationBin(0, 0.0, 0.1, 10, 1, 0.05, 0.1)
        >>> round(b.gap, 2)
        0.05
    """

    index: int
    lower: float
    upper: float
    count: int
    positives: int
    mean_predicted: float
    observed_rate: float

    @property
    def gap(self) -> float:
        """``|observed_rate - mean_predicted|``."""
        return abs(self.observed_rate - self.mean_predicted)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values."""
        return _fields_dict(self)


@dataclass(frozen=True)
class Calibration:
    """A reliability diagram and its summary errors.

    Attributes:
        strategy: ``"quantile"`` or ``"uniform"``.
        n_bins: bins requested.
        edges: the ``n_bins + 1`` bin edges.
        bins: the non-empty bins, in order.
        ece: expected calibration error, ``sum(count / n * gap)`` over the bins.
        mce: maximum calibration error, the largest gap of a non-empty bin.
        n: rows.

    Example:
        >>> cal = calibration([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9], bins=2, strategy="uniform")
        >>> [b.count for b in cal.bins], round(cal.ece, 3)
        ([2, 2], 0.175)
    """

    strategy: str
    n_bins: int
    edges: tuple[float, ...]
    bins: tuple[CalibrationBin, ...]
    ece: float
    mce: float
    n: int

    @property
    def mean_predicted(self) -> tuple[float, ...]:
        """Mean predicted probability per non-empty bin (sklearn's ``prob_pred``)."""
        return tuple(b.mean_predicted for b in self.bins)

    @property
    def observed_rate(self) -> tuple[float, ...]:
        """Observed positive rate per non-empty bin (sklearn's ``prob_true``)."""
        return tuple(b.observed_rate for b in self.bins)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values, bins as a list of dicts."""
        return _fields_dict(self)


@dataclass(frozen=True)
class SliceResult:
    """A metric on the rows of one slice (one value of one column).

    Attributes:
        column: the slice column.
        value: the slice value as a JSON-able scalar (``None`` for missing values).
        rows: rows in the slice.
        positives: rows with label 1 in the slice (binary; ``None`` for the other tasks).
        metric: the metric's name.
        metric_value: the metric, or ``None`` when it is undefined on the slice.
        reason: why ``metric_value`` is ``None`` (too few rows, a single class), else ``None``.

    Example:
        >>> s = SliceResult("country", "FR", 12, 0, "roc_auc", None, "single class")
        >>> s.defined, s.label
        (False, 'country=FR')
    """

    column: str
    value: str | int | float | bool | None
    rows: int
    positives: int | None
    metric: str
    metric_value: float | None
    reason: str | None

    @property
    def defined(self) -> bool:
        """Whether the metric could be computed on the slice."""
        return self.metric_value is not None

    @property
    def label(self) -> str:
        """``"column=value"``, with ``missing`` for a missing value."""
        return f"{self.column}={'missing' if self.value is None else self.value}"

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values."""
        return {**_fields_dict(self), "label": self.label}


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_metric(metric: Any, task: str = "binary") -> str:
    if _tasks.check_task(task) != "binary":
        return _tasks._check_task_metric(task, metric)
    if not isinstance(metric, str) or metric not in HIGHER_IS_BETTER:
        raise SpecError(
            f"metric={metric!r} is unknown; rule: the metric must be one of "
            f"{sorted(HIGHER_IS_BETTER)}; fix: pass e.g. metric='roc_auc'"
        )
    return metric


def _check_bootstrap_options(*, n_boot: Any, alpha: Any, seed: Any) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < _MIN_BOOT:
        raise SpecError(
            f"n_boot={n_boot!r} is invalid; rule: the number of bootstrap replicates must be an "
            f"integer >= {_MIN_BOOT}; fix: pass n_boot=1000 (the default) or more"
        )
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise SpecError(
            f"alpha={alpha!r} is invalid; rule: alpha (one minus the confidence level) must be in "
            f"(0, 1); fix: pass alpha=0.05 for a 95% interval"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SpecError(
            f"seed={seed!r} is invalid; rule: the seed must be a non-negative integer so that "
            f"results are reproducible; fix: pass e.g. seed=0"
        )


def _require_defined(y: _IntArray, *, metric: str) -> None:
    """Raises DataError when ``metric`` is undefined on the full data."""
    positives = int(y.sum())
    negatives = int(y.shape[0]) - positives
    if metric in _BOTH_CLASSES_METRICS and (positives == 0 or negatives == 0):
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


def _point(metric: str, y: _IntArray, p: _FloatArray, *, max_fpr: float) -> float:
    if metric == "roc_auc":
        return _metrics.roc_auc(y, p)
    if metric == "pr_auc":
        return _metrics.pr_auc(y, p)
    if metric == "log_loss":
        return _metrics.log_loss(y, p)
    if metric == "brier":
        return _metrics.brier(y, p)
    return _metrics.recall_at_fpr(y, p, max_fpr=max_fpr)


# --------------------------------------------------------------------------------------------
# Vectorised bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RankCells:
    """One model's rows as ordered (label, score group) cells, for the ranking metrics.

    The groups keep every distinct positive score and merge the negatives that fall strictly
    between two consecutive distinct positive scores: group ``2k + 1`` holds the rows scored
    exactly ``u_k`` (the k-th distinct positive score, ascending) and group ``2k`` the negatives
    scored strictly between ``u_(k-1)`` and ``u_k``. Merging those negatives changes neither
    ROC AUC, average precision nor recall at a false-positive rate (every threshold that matters
    sits on a positive score), and with rare positives it shrinks the count arrays a hundredfold.
    ``cell = label * width + group`` with ``width = 2 * M + 1``.
    """

    cell: _IntArray
    width: int

    @classmethod
    def of(cls, y: _IntArray, p: _FloatArray) -> _RankCells:
        u = np.unique(p[y == 1])
        lo = np.searchsorted(u, p, side="left")
        tied = np.zeros(p.shape[0], dtype=np.bool_)
        inside = lo < u.shape[0]
        tied[inside] = u[lo[inside]] == p[inside]
        group = 2 * lo.astype(np.int64) + tied
        width = 2 * int(u.shape[0]) + 1
        return cls(cell=y * width + group, width=width)


_Parts = list[tuple[_IntArray, npt.NDArray[np.integer[Any]]]]


def _draws(y: _IntArray, *, n_boot: int, seed: int, stratified: bool) -> Iterator[_Parts]:
    """Yields, per chunk of replicates, ``[(source_rows, draws), ...]``.

    ``draws[r, i]`` indexes ``source_rows``: replicate ``r`` takes row ``source_rows[draws[r, i]]``.
    Stratified resampling has one part per class present, the row bootstrap a single part.
    """
    strata = None
    if stratified:
        strata = [rows for rows in (np.flatnonzero(y == 1), np.flatnonzero(y == 0)) if rows.size]
    return _draws_from(strata, n=int(y.shape[0]), n_boot=n_boot, seed=seed)


def _draws_from(
    strata: list[_IntArray] | None, *, n: int, n_boot: int, seed: int
) -> Iterator[_Parts]:
    """The replicates of :func:`_draws` over ``strata`` (row sets; None: all ``n`` rows)."""
    rng = np.random.default_rng(seed)
    sources = strata if strata is not None else [np.arange(n, dtype=np.int64)]
    chunk = max(1, min(_MAX_CHUNK, _CHUNK_ELEMENTS // n))
    dtype = np.int32 if n < 2**31 else np.int64
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        yield [
            (rows, rng.integers(0, rows.size, size=(size, rows.size), dtype=dtype))
            for rows in sources
        ]


def _cell_counts(model: _RankCells, parts: _Parts) -> _IntArray:
    """How often each replicate drew each cell: shape ``(replicates, 2, width)``."""
    width = 2 * model.width
    size = parts[0][1].shape[0]
    offsets = (np.arange(size, dtype=np.int64) * width)[:, None]
    counts = np.zeros(size * width, dtype=np.int64)
    for rows, draws in parts:
        keys = model.cell[rows][draws]
        keys += offsets
        counts += np.bincount(keys.ravel(), minlength=size * width)
    return counts.reshape(size, 2, model.width)


def _ranking_from_counts(
    metric: str, counts: _IntArray, *, max_fpr: float
) -> tuple[_FloatArray, _BoolArray]:
    """A ranking metric of each replicate from its cell counts, and whether it is defined.

    The formulas are those of :mod:`lockgate.tasks.metrics` applied to the resampled rows: a cell
    drawn ``k`` times stands for ``k`` tied rows, and an undrawn cell adds nothing.
    """
    neg = counts[:, 0, :]
    pos = counts[:, 1, :]
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    if metric == "roc_auc":
        valid = (n_pos > 0) & (n_neg > 0)
        below = np.cumsum(neg, axis=1)
        below -= neg  # negatives scored strictly below each cell
        below *= 2
        below += neg
        twice_u = np.einsum("rg,rg->r", pos, below)  # exact Mann-Whitney U, doubled
        value = twice_u / np.maximum(2 * n_pos * n_neg, 1)
    else:
        pos_desc = pos[:, ::-1]  # highest score first
        tps = np.cumsum(pos_desc, axis=1)
        fps = np.cumsum(neg[:, ::-1], axis=1)
        if metric == "pr_auc":
            valid = n_pos > 0
            precision = tps / np.maximum(tps + fps, 1)
            value = np.einsum("rg,rg->r", pos_desc, precision) / np.maximum(n_pos, 1)
        else:
            valid = (n_pos > 0) & (n_neg > 0)
            admissible = fps / np.maximum(n_neg, 1)[:, None] <= max_fpr
            value = np.where(admissible, tps, 0).max(axis=1) / np.maximum(n_pos, 1)
    return np.asarray(value, dtype=np.float64), np.asarray(valid, dtype=np.bool_)


def _row_losses(metric: str, y: _IntArray, p: _FloatArray) -> _FloatArray:
    """Per-row loss whose mean is ``brier`` or ``log_loss`` (as in :mod:`lockgate.tasks.metrics`)."""
    if metric == "brier":
        return np.square(p - y)
    clipped = np.clip(p, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
    return np.asarray(-np.where(y == 1, np.log(clipped), np.log1p(-clipped)), dtype=np.float64)


def _replicates(
    metric: str,
    y: _IntArray,
    scores: Sequence[_FloatArray],
    *,
    n_boot: int,
    seed: int,
    stratified: bool,
    max_fpr: float,
) -> tuple[_FloatArray, _BoolArray]:
    """The metric of every model on every replicate, ``(len(scores), n_boot)``, and validity.

    All models are evaluated on the same resampled rows. The mean losses (brier, log_loss) are
    gathered and averaged directly and are always defined; the ranking metrics go through the
    cell counts, and their validity depends only on the class counts of a replicate, the same
    for every model.
    """
    out = np.empty((len(scores), n_boot), dtype=np.float64)
    valid = np.ones(n_boot, dtype=np.bool_)
    n = float(y.shape[0])
    losses = [_row_losses(metric, y, p) for p in scores] if metric in _PROBABILITY_METRICS else []
    models = [] if losses else [_RankCells.of(y, p) for p in scores]
    start = 0
    for parts in _draws(y, n_boot=n_boot, seed=seed, stratified=stratified):
        size = parts[0][1].shape[0]
        window = slice(start, start + size)
        for k, loss in enumerate(losses):
            total = np.zeros(size, dtype=np.float64)
            for rows, draws in parts:
                total += loss[rows][draws].sum(axis=1)
            out[k, window] = total / n
        for k, model in enumerate(models):
            out[k, window], ok = _ranking_from_counts(
                metric, _cell_counts(model, parts), max_fpr=max_fpr
            )
            if k == 0:
                valid[window] = ok
        start += size
    return out, valid


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


# --------------------------------------------------------------------------------------------
# Multiclass and regression
# --------------------------------------------------------------------------------------------


def _prepare(
    task: str, y: Any, preds: Sequence[Any], names: Sequence[str]
) -> tuple[npt.NDArray[Any], list[_FloatArray]]:
    """Validated labels (class indices or float targets) and predictions of a non-binary task."""
    out: list[_FloatArray] = []
    labels: npt.NDArray[Any] | None = None
    for pred, name in zip(preds, names, strict=True):
        if task == "multiclass":
            probs = _metrics._as_probability_matrix(pred, name=name)
            if out and probs.shape[1] != out[0].shape[1]:
                raise DataError(
                    f"{name} has {probs.shape[1]} classes but {names[0]} has "
                    f"{out[0].shape[1]}; rule: compared models must predict the same classes; "
                    f"fix: reorder the columns to one classes tuple"
                )
            y_idx = _metrics._as_class_indices(y, k=int(probs.shape[1]))
            if y_idx.shape[0] != probs.shape[0]:
                raise DataError(
                    f"{name} has {probs.shape[0]} rows but y has {y_idx.shape[0]}; rule: labels "
                    f"and probabilities must have the same length; fix: score exactly the rows "
                    f"you evaluate"
                )
            labels, pred_arr = y_idx, probs
        else:
            labels = _metrics._as_targets(y)
            pred_arr = _as_scores(pred, name=name, n=int(labels.shape[0]), unit_interval=False)
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


def _task_draws(
    task: str, y: npt.NDArray[Any], *, n_boot: int, seed: int, stratified: bool
) -> Iterator[_Parts]:
    """Like :func:`_draws`: multiclass strata are the classes (ascending), regression has none."""
    strata = None
    if task == "multiclass" and stratified:
        strata = [np.flatnonzero(y == c) for c in np.unique(y)]
    return _draws_from(strata, n=int(y.shape[0]), n_boot=n_boot, seed=seed)


def _gathered_sum(values: _FloatArray, parts: _Parts) -> _FloatArray:
    """Per replicate, the sum of ``values`` over its drawn rows."""
    size = parts[0][1].shape[0]
    total = np.zeros(size, dtype=np.float64)
    for rows, draws in parts:
        total += values[rows][draws].sum(axis=1)
    return total


def _confusion_counts(keys: _IntArray, k: int, parts: _Parts) -> _IntArray:
    """Per replicate, the confusion counts ``(replicates, k, k)`` of the drawn rows."""
    size = parts[0][1].shape[0]
    width = k * k
    offsets = (np.arange(size, dtype=np.int64) * width)[:, None]
    counts = np.zeros(size * width, dtype=np.int64)
    for rows, draws in parts:
        drawn = keys[rows][draws] + offsets
        counts += np.bincount(drawn.ravel(), minlength=size * width)
    return counts.reshape(size, k, k)


def _task_replicates(
    task: str,
    metric: str,
    y: npt.NDArray[Any],
    preds: Sequence[_FloatArray],
    *,
    n_boot: int,
    seed: int,
    stratified: bool,
) -> tuple[_FloatArray, _BoolArray]:
    """:func:`_replicates` for multiclass and regression: ``(len(preds), n_boot)`` and validity.

    A replicate is valid when the metric is defined on it: for multiclass every class of the
    full data must occur in it (always so when stratified), for r2 its target must not be
    constant; the other metrics are always defined.
    """
    out = np.empty((len(preds), n_boot), dtype=np.float64)
    valid = np.ones(n_boot, dtype=np.bool_)
    n = float(y.shape[0])
    present = np.unique(y) if task == "multiclass" else np.empty(0, dtype=np.int64)
    k = int(preds[0].shape[1]) if task == "multiclass" else 0
    rows_at = np.arange(y.shape[0])
    row_values: list[_FloatArray] = []
    keys: list[_IntArray] = []
    cells: list[list[_RankCells]] = []
    if metric == "log_loss":
        row_values = [
            -np.log(np.clip(p[rows_at, y], _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)) for p in preds
        ]
    elif metric == "top1_accuracy":
        row_values = [(np.argmax(p, axis=1) == y).astype(np.float64) for p in preds]
    elif metric in ("macro_f1", "min_class_recall"):
        keys = [(y * k + np.argmax(p, axis=1)).astype(np.int64) for p in preds]
    elif metric == "roc_auc_ovr":
        cells = [
            [_RankCells.of((y == c).astype(np.int64), p[:, c]) for c in present] for p in preds
        ]
    elif metric in ("rmse", "r2"):
        row_values = [np.square(p - y) for p in preds]
    else:  # mae
        row_values = [np.abs(p - y) for p in preds]
    centred = y - float(np.mean(y)) if metric == "r2" else y
    start = 0
    for parts in _task_draws(task, y, n_boot=n_boot, seed=seed, stratified=stratified):
        size = parts[0][1].shape[0]
        window = slice(start, start + size)
        start += size
        ok = np.ones(size, dtype=np.bool_)
        if task == "multiclass" and not stratified:
            drawn_classes = _confusion_counts(y.astype(np.int64) * k, k, parts).sum(axis=2)
            ok &= (drawn_classes[:, present] > 0).all(axis=1)
        if metric == "r2":
            low = np.min([centred[rows][draws].min(axis=1) for rows, draws in parts], axis=0)
            high = np.max([centred[rows][draws].max(axis=1) for rows, draws in parts], axis=0)
            ok &= high > low
            first = _gathered_sum(centred, parts)
            second = _gathered_sum(np.square(centred), parts)
            ss_tot = np.maximum(second - np.square(first) / n, 0.0)
        for m, values in enumerate(row_values):
            total = _gathered_sum(values, parts)
            if metric == "rmse":
                out[m, window] = np.sqrt(total / n)
            elif metric == "r2":
                out[m, window] = 1.0 - total / np.where(ok, ss_tot, 1.0)
            else:
                out[m, window] = total / n
        for m, model_keys in enumerate(keys):
            counts = _confusion_counts(model_keys, k, parts)
            out[m, window] = (
                _metrics._f1_from_confusion(counts)
                if metric == "macro_f1"
                else _metrics._min_recall_from_confusion(counts)
            )
        for m, per_class in enumerate(cells):
            aucs = np.empty((len(per_class), size), dtype=np.float64)
            for c, model in enumerate(per_class):
                aucs[c], defined = _ranking_from_counts(
                    "roc_auc", _cell_counts(model, parts), max_fpr=0.0
                )
                ok &= defined
            out[m, window] = aucs.mean(axis=0)
        valid[window] = ok
    return out, valid


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


def _interval_from(
    reps: _FloatArray,
    valid: _BoolArray,
    *,
    metric: str,
    estimate: float,
    alpha: float,
    n: int,
    positives: int | None,
    n_boot: int,
    n_used: int,
    stratified: bool,
    seed: int,
) -> Interval:
    used = reps[valid]
    lower, upper = np.quantile(used, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Interval(
        metric=metric,
        estimate=estimate,
        lower=float(lower),
        upper=float(upper),
        alpha=float(alpha),
        se=float(np.std(used, ddof=1)),
        n=n,
        positives=positives,
        n_boot=n_boot,
        n_used=n_used,
        n_skipped=n_boot - n_used,
        stratified=stratified,
        seed=seed,
    )


def _paired_from(
    reps: _FloatArray,
    valid: _BoolArray,
    *,
    metric: str,
    higher_is_better: bool,
    estimates: tuple[float, float],
    alpha: float,
    n: int,
    positives: int | None,
    n_boot: int,
    n_used: int,
    stratified: bool,
    seed: int,
) -> PairedComparison:
    deltas = reps[0, valid] - reps[1, valid]
    lower, upper = np.quantile(deltas, [alpha / 2.0, 1.0 - alpha / 2.0])
    at_most_zero = int((deltas <= 0.0).sum())
    at_least_zero = int((deltas >= 0.0).sum())
    p_value = min(1.0, 2.0 * (min(at_most_zero, at_least_zero) + 1) / (n_used + 1))
    return PairedComparison(
        metric=metric,
        higher_is_better=higher_is_better,
        challenger=estimates[0],
        champion=estimates[1],
        delta=estimates[0] - estimates[1],
        lower=float(lower),
        upper=float(upper),
        p_value=float(p_value),
        alpha=float(alpha),
        se=float(np.std(deltas, ddof=1)),
        n=n,
        positives=positives,
        method="paired_bootstrap",
        n_boot=n_boot,
        n_used=n_used,
        n_skipped=n_boot - n_used,
        stratified=stratified,
        seed=seed,
    )


def _task_bootstrap(
    task: str,
    y: Any,
    preds: Sequence[Any],
    names: Sequence[str],
    *,
    metric: str,
    n_boot: int,
    seed: int,
    stratified: bool,
) -> tuple[npt.NDArray[Any], list[float], _FloatArray, _BoolArray, int, bool]:
    """Shared body of the non-binary bootstrap: labels, estimates, replicates, usable count."""
    labels, arrays = _prepare(task, y, preds, names)
    _require_defined_task(task, metric, labels)
    estimates = [_tasks.metric_value(task, metric, labels, a) for a in arrays]
    strat = bool(stratified) and task == "multiclass"
    reps, valid = _task_replicates(
        task, metric, labels, arrays, n_boot=int(n_boot), seed=int(seed), stratified=strat
    )
    n_used = _usable_task(valid, task=task, metric=metric, n_boot=int(n_boot))
    return labels, estimates, reps, valid, n_used, strat


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
    _check_metric(metric, task)
    _check_bootstrap_options(n_boot=n_boot, alpha=alpha, seed=seed)
    if task != "binary":
        labels, estimates, reps_t, valid_t, used_t, strat = _task_bootstrap(
            task, y, [p], ["p"], metric=metric, n_boot=n_boot, seed=seed, stratified=stratified
        )
        return _interval_from(
            reps_t[0],
            valid_t,
            metric=metric,
            estimate=estimates[0],
            alpha=float(alpha),
            n=int(labels.shape[0]),
            positives=None,
            n_boot=int(n_boot),
            n_used=used_t,
            stratified=strat,
            seed=int(seed),
        )
    y_int = _as_labels(y)
    p_float = _as_scores(
        p, name="p", n=int(y_int.shape[0]), unit_interval=metric in _PROBABILITY_METRICS
    )
    _require_defined(y_int, metric=metric)
    estimate = _point(metric, y_int, p_float, max_fpr=max_fpr)
    reps, valid = _replicates(
        metric,
        y_int,
        [p_float],
        n_boot=int(n_boot),
        seed=int(seed),
        stratified=bool(stratified),
        max_fpr=max_fpr,
    )
    n_used = _require_usable(valid, metric=metric, n_boot=int(n_boot), stratified=stratified)
    return _interval_from(
        reps[0],
        valid,
        metric=metric,
        estimate=estimate,
        alpha=float(alpha),
        n=int(y_int.shape[0]),
        positives=int(y_int.sum()),
        n_boot=int(n_boot),
        n_used=n_used,
        stratified=bool(stratified),
        seed=int(seed),
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
    _check_metric(metric, task)
    _check_bootstrap_options(n_boot=n_boot, alpha=alpha, seed=seed)
    if task != "binary":
        labels, estimates, reps_t, valid_t, used_t, strat = _task_bootstrap(
            task,
            y,
            [p_challenger, p_champion],
            ["p_challenger", "p_champion"],
            metric=metric,
            n_boot=n_boot,
            seed=seed,
            stratified=stratified,
        )
        return _paired_from(
            reps_t,
            valid_t,
            metric=metric,
            higher_is_better=_tasks.higher_is_better(task, metric),
            estimates=(estimates[0], estimates[1]),
            alpha=float(alpha),
            n=int(labels.shape[0]),
            positives=None,
            n_boot=int(n_boot),
            n_used=used_t,
            stratified=strat,
            seed=int(seed),
        )
    y_int = _as_labels(y)
    n = int(y_int.shape[0])
    unit = metric in _PROBABILITY_METRICS
    challenger = _as_scores(p_challenger, name="p_challenger", n=n, unit_interval=unit)
    champion = _as_scores(p_champion, name="p_champion", n=n, unit_interval=unit)
    _require_defined(y_int, metric=metric)
    est_challenger = _point(metric, y_int, challenger, max_fpr=max_fpr)
    est_champion = _point(metric, y_int, champion, max_fpr=max_fpr)
    reps, valid = _replicates(
        metric,
        y_int,
        [challenger, champion],
        n_boot=int(n_boot),
        seed=int(seed),
        stratified=bool(stratified),
        max_fpr=max_fpr,
    )
    n_used = _require_usable(valid, metric=metric, n_boot=int(n_boot), stratified=stratified)
    return _paired_from(
        reps,
        valid,
        metric=metric,
        higher_is_better=HIGHER_IS_BETTER[metric],
        estimates=(est_challenger, est_champion),
        alpha=float(alpha),
        n=n,
        positives=int(y_int.sum()),
        n_boot=int(n_boot),
        n_used=n_used,
        stratified=bool(stratified),
        seed=int(seed),
    )


# --------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------


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
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise SpecError(
            f"alpha={alpha!r} is invalid; rule: alpha (one minus the confidence level) must be in "
            f"(0, 1); fix: pass alpha=0.05 for a 95% interval"
        )
    y_int = _as_labels(y)
    n_rows = int(y_int.shape[0])
    a = _as_scores(p_a, name="p_a", n=n_rows, unit_interval=False)
    b = _as_scores(p_b, name="p_b", n=n_rows, unit_interval=False)
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
# Calibration
# --------------------------------------------------------------------------------------------


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
    y_int = _as_labels(y)
    p_float = _as_scores(p, name="p", n=int(y_int.shape[0]), unit_interval=True)
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
    y_idx, probs = _metrics._validate_multiclass(y, p)
    correct = (np.argmax(probs, axis=1) == y_idx).astype(np.int64)
    return calibration(correct, probs.max(axis=1), bins=bins, strategy=strategy)


@dataclass(frozen=True)
class ResidualSummary:
    """Residuals ``y - prediction`` of a regression model, and its calibration by prediction.

    Attributes:
        n: rows.
        mean: the mean residual (positive: the model predicts too low on average).
        std: the standard deviation of the residuals (``ddof=0``).
        quantiles: residual quantiles ``{"p05", "p25", "p50", "p75", "p95"}``.
        abs_p90: the 90th percentile of ``|residual|``: the half-width of a 90% split-conformal
            interval ``prediction +- abs_p90`` on rows like these.
        abs_p95: the same for 95%.
        bins: per quantile bin of the prediction, ``{lower, upper, count, mean_predicted,
            mean_actual}`` (a regression reliability diagram); empty bins are left out.

    Example:
        >>> r = residual_summary([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 4.0], bins=2)
        >>> r.mean, [b["count"] for b in r.bins]
        (0.0, [2, 2])
    """

    n: int
    mean: float
    std: float
    quantiles: dict[str, float]
    abs_p90: float
    abs_p95: float
    bins: tuple[dict[str, float | int], ...]

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values."""
        return _fields_dict(self)


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
    y_float, p_float = _metrics._validate_regression(y, pred)
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


# --------------------------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------------------------


def _slice_value(value: Any) -> str | int | float | bool | None:
    """A slice value as a JSON-able scalar (``None`` for missing)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _slice_groups(series: pd.Series) -> tuple[npt.NDArray[np.intp], list[Any]]:
    """Integer codes (-1: missing) and the values they stand for, in a stable order."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        # Every category is reported, empty ones too (e.g. a bucket nobody fell into).
        return np.asarray(series.cat.codes, dtype=np.intp), list(series.cat.categories)
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:  # values that cannot be ordered (mixed types)
        codes, uniques = pd.factorize(series, sort=False)
    return np.asarray(codes, dtype=np.intp), list(uniques)


def _slice_metric(
    y: _IntArray, p: _FloatArray, *, metric: str, min_rows: int, max_fpr: float
) -> tuple[float | None, str | None]:
    rows = int(y.shape[0])
    positives = int(y.sum())
    negatives = rows - positives
    if rows < min_rows:
        return None, f"too few rows: {rows} < min_rows={min_rows}"
    if metric in _BOTH_CLASSES_METRICS and (positives == 0 or negatives == 0):
        return None, (
            f"single class: {positives} positive(s) and {negatives} negative(s); {metric} needs "
            f"both labels"
        )
    if metric == "pr_auc" and positives == 0:
        return None, "no positives: pr_auc needs at least one row with label 1"
    return _point(metric, y, p, max_fpr=max_fpr), None


def _task_slice_metric(
    task: str, metric: str, y: npt.NDArray[Any], p: _FloatArray, *, min_rows: int
) -> tuple[float | None, str | None]:
    rows = int(y.shape[0])
    if rows < min_rows:
        return None, f"too few rows: {rows} < min_rows={min_rows}"
    if metric == "roc_auc_ovr" and np.unique(y).shape[0] < 2:
        return None, "single class: roc_auc_ovr needs at least two classes"
    if metric == "r2" and float(np.min(y)) == float(np.max(y)):
        return None, "constant target: r2 needs a target that varies"
    return _tasks.metric_value(task, metric, y, p), None


def slice_metrics(
    frame: pd.DataFrame,
    *,
    y_col: str,
    p_col: str | Sequence[str],
    slice_cols: str | Sequence[str],
    metric: str,
    min_rows: int,
    max_fpr: float = 0.01,
    task: str = "binary",
) -> list[SliceResult]:
    """A metric per value of each slice column, ``None`` with a reason where it is undefined.

    Slices of a column are reported in sorted value order (category order for categorical
    columns, whose empty categories are reported too, with 0 rows), missing values last as
    value ``None``. A slice's metric is undefined when it has fewer than ``min_rows`` rows, or a
    single class (``roc_auc``, ``recall_at_fpr``, multiclass ``roc_auc_ovr``), or no positives
    (``pr_auc``), or a constant target (``r2``).

    Args:
        frame: One row per scored example.
        y_col: The label column (binary 0/1, multiclass class indices, regression targets).
        p_col: The predicted-probability column (binary), the prediction column (regression),
            or for multiclass the k probability columns in class order.
        slice_cols: One column name or several; use :func:`bucketize` for numeric columns.
        metric: One of the task's metrics (:func:`lockgate.tasks.catalog.task_metric_names`).
        min_rows: The fewest rows a slice needs for its metric to be reported (>= 1).
        max_fpr: The false-positive-rate bound of ``recall_at_fpr``.
        task: ``"binary"`` (default), ``"multiclass"`` or ``"regression"``.

    Returns:
        One :class:`SliceResult` per (column, value), columns in the order given.

    Raises:
        SpecError: On an unknown metric, no slice columns or an invalid ``min_rows``.
        SchemaError: When a named column is missing.
        EmptyDataError: When the frame has no rows.
        DataError: On invalid labels or probabilities.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"y": [0, 1, 0, 1, 0, 0], "p": [.2, .7, .4, .6, .1, .3],
        ...                    "country": ["FR", "FR", "FR", "FR", "DE", "DE"]})
        >>> [(s.value, s.metric_value, s.reason is None) for s in slice_metrics(
        ...     df, y_col="y", p_col="p", slice_cols="country", metric="roc_auc", min_rows=2)]
        [('DE', None, False), ('FR', 1.0, True)]
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"frame is a {type(frame).__name__}; rule: slice_metrics needs a pandas DataFrame; "
            f"fix: pass pd.DataFrame(...) with the label, probability and slice columns"
        )
    _check_metric(metric, task)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int | np.integer) or min_rows < 1:
        raise SpecError(
            f"min_rows={min_rows!r} is invalid; rule: the minimum slice size must be an integer "
            f">= 1; fix: pass e.g. min_rows=100"
        )
    columns = [slice_cols] if isinstance(slice_cols, str) else list(slice_cols)
    if not columns:
        raise SpecError(
            "slice_cols is empty; rule: at least one slice column is needed; fix: pass e.g. "
            "slice_cols=['country']"
        )
    p_cols = [p_col] if isinstance(p_col, str) else list(p_col)
    if (task == "multiclass") == isinstance(p_col, str):
        raise SpecError(
            f"p_col={p_col!r} does not fit task {task!r}; rule: multiclass slices need the list "
            f"of k probability columns in class order, the other tasks one column; fix: pass "
            f"p_col=['p_0', 'p_1', ...] for multiclass, p_col='p' otherwise"
        )
    missing = [c for c in (y_col, *p_cols, *columns) if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"column(s) {missing} are not in the frame (columns: {list(frame.columns)[:20]}); "
            f"rule: the label, probability and slice columns must exist; fix: check the names "
            f"or add the columns (bucketize numeric ones)"
        )
    if len(frame) == 0:
        raise EmptyDataError(
            "frame has no rows; rule: slice metrics need at least one row; fix: evaluate on a "
            "non-empty split"
        )
    y: npt.NDArray[Any]
    p: _FloatArray
    if task == "binary":
        y = _as_labels(frame[y_col].to_numpy(), name=y_col)
        p = _as_scores(
            frame[p_cols[0]].to_numpy(),
            name=p_cols[0],
            n=int(y.shape[0]),
            unit_interval=metric in _PROBABILITY_METRICS,
        )
    elif task == "multiclass":
        y, p = _metrics._validate_multiclass(
            frame[y_col].to_numpy(), frame[p_cols].to_numpy(dtype=np.float64)
        )
    else:
        y, p = _metrics._validate_regression(frame[y_col].to_numpy(), frame[p_cols[0]].to_numpy())
    results: list[SliceResult] = []
    for column in columns:
        codes, uniques = _slice_groups(frame[column])
        order = np.argsort(codes, kind="stable")
        sizes = np.bincount(codes + 1, minlength=len(uniques) + 1)  # slot 0: missing
        groups = np.split(order, np.cumsum(sizes)[:-1])
        keyed = [(uniques[k], groups[k + 1]) for k in range(len(uniques))]
        if sizes[0]:
            keyed.append((None, groups[0]))
        for value, rows in keyed:
            if task == "binary":
                value_metric, reason = _slice_metric(
                    np.asarray(y[rows], dtype=np.int64),
                    p[rows],
                    metric=metric,
                    min_rows=int(min_rows),
                    max_fpr=max_fpr,
                )
            else:
                value_metric, reason = _task_slice_metric(
                    task, metric, y[rows], p[rows], min_rows=int(min_rows)
                )
            results.append(
                SliceResult(
                    column=str(column),
                    value=_slice_value(value),
                    rows=int(rows.shape[0]),
                    positives=int(y[rows].sum()) if task == "binary" else None,
                    metric=metric,
                    metric_value=value_metric,
                    reason=reason,
                )
            )
    return results


def _format_edge(value: float) -> str:
    return f"{value:g}"


def bucketize(
    values: Any, *, edges: Sequence[float], labels: Sequence[str] | None = None
) -> pd.Series:
    """Numeric values into ordered, labelled buckets (amount buckets, age bands) for slicing.

    ``k`` strictly increasing edges make ``k + 1`` buckets, left-closed and right-open:
    ``(-inf, e0)``, ``[e0, e1)``, ..., ``[e_last, inf)``; every finite or infinite value lands in
    one of them and NaN stays missing. The default labels are ``"<e0"``, ``"[e0, e1)"``, ...,
    ``">=e_last"``.

    Args:
        values: Numbers (array, list or Series; a Series keeps its index and name).
        edges: Strictly increasing finite bucket edges, at least one.
        labels: ``len(edges) + 1`` distinct bucket names, in order.

    Returns:
        An ordered categorical Series whose categories are the labels (empty buckets included).

    Raises:
        SpecError: On invalid edges or labels.
        DataError: When the values are not numeric.

    Example:
        >>> bucketize([5, 10, 250, 40], edges=[10, 100], labels=["small", "mid", "large"]).tolist()
        ['small', 'mid', 'large', 'mid']
    """
    import pandas as pd

    try:
        e = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"edges={edges!r} are not numbers; rule: bucket edges must be finite numbers; fix: "
            f"pass e.g. edges=[10, 100, 1000]"
        ) from exc
    if e.ndim != 1 or e.shape[0] == 0 or not np.isfinite(e).all() or (np.diff(e) <= 0).any():
        raise SpecError(
            f"edges={edges!r} are invalid; rule: at least one finite edge, strictly increasing; "
            f"fix: sort the edges and drop duplicates, e.g. edges=[10, 100, 1000]"
        )
    if labels is None:
        names = [f"<{_format_edge(e[0])}"]
        names += [f"[{_format_edge(lo)}, {_format_edge(hi)})" for lo, hi in itertools.pairwise(e)]
        names.append(f">={_format_edge(e[-1])}")
    else:
        names = list(labels)
        if (
            len(names) != e.shape[0] + 1
            or len(set(names)) != len(names)
            or not all(isinstance(x, str) for x in names)
        ):
            raise SpecError(
                f"labels={names!r} are invalid for {e.shape[0]} edge(s); rule: one distinct "
                f"string label per bucket, len(edges) + 1 = {e.shape[0] + 1} in all; fix: add or "
                f"remove labels (or pass labels=None for the default names)"
            )
    index = values.index if isinstance(values, pd.Series) else None
    name = values.name if isinstance(values, pd.Series) else None
    try:
        if isinstance(values, pd.Series):
            v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            v = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"values could not be read as numbers ({exc}); rule: bucketize needs numeric values; "
            f"fix: convert the column to float first (or slice on it directly if categorical)"
        ) from exc
    codes = np.searchsorted(e, v, side="right")
    codes[np.isnan(v)] = -1
    categorical = pd.Categorical.from_codes(codes, categories=pd.Index(names), ordered=True)
    return pd.Series(categorical, index=index, name=name)
