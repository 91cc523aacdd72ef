"""The results of the evaluation statistics: frozen records with JSON-able ``to_dict``.

:class:`Interval` (a metric with its bootstrap interval), :class:`PairedComparison` (challenger
minus champion, by paired bootstrap or DeLong), :class:`CalibrationBin` and :class:`Calibration`
(a reliability diagram), :class:`ResidualSummary` (a regression model's residuals) and
:class:`SliceResult` (a metric on one slice). ``to_dict`` turns every field into plain JSON types,
non-finite floats into ``None``, so a report holding them is valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import numpy as np

__all__ = [
    "Calibration",
    "CalibrationBin",
    "Interval",
    "PairedComparison",
    "ResidualSummary",
    "SliceResult",
]


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
        >>> from lockgate.evaluation.reliability import calibration
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
        >>> from lockgate.evaluation.reliability import residual_summary
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
