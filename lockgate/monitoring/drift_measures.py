"""One feature's drift: the measures (PSI, KS, Jensen-Shannon, Wasserstein, chi-square), their
thresholds and severities, and :func:`feature_drift`, which measures one reference/current pair.

The building blocks here (quantile bins, proportions, the KS finish, the result builders) are
shared by the batch engine (:mod:`lockgate.monitoring.drift`) and the streaming one
(:mod:`lockgate.monitoring.drift_stream`), so both compute exactly the same numbers. The
algorithms are described in :mod:`lockgate.monitoring.drift`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps
from scipy.spatial import distance as spd

from lockgate.errors import DataError, EmptyDataError, SchemaError, SpecError

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_EPS",
    "DriftThresholds",
    "FeatureDrift",
    "bin_proportions",
    "categorical_drift_from_counts",
    "category_counts",
    "check_params",
    "feature_drift",
    "jensen_shannon_distance",
    "kind_of",
    "ks_finish",
    "numeric_drift",
    "population_stability_index",
    "quantile_edges",
    "severity",
    "sorted_finite",
]

DEFAULT_BINS = 10
"""Number of reference-quantile bins for PSI and JSD."""

DEFAULT_EPS = 1e-4
"""Floor for a bin proportion in PSI (stands in for an empty bin)."""

Kind = Literal["numeric", "categorical"]
Severity = Literal["ok", "warn", "critical"]
PValueMethod = Literal["asymp", "limit"]

_KS_EXACT_MAX_N = 10_000  # scipy.stats._stats_py.MAX_AUTO_N
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "critical": 2}
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DriftThresholds:
    """Warn/critical thresholds; a metric at or above a threshold reaches that level.

    Attributes:
        psi_warn: PSI warn level.
        psi_critical: PSI critical level.
        ks_warn: KS statistic ``D`` warn level (numeric features only).
        ks_critical: KS statistic ``D`` critical level.
        jsd_warn: Jensen-Shannon distance warn level.
        jsd_critical: Jensen-Shannon distance critical level.
    """

    psi_warn: float = 0.1
    psi_critical: float = 0.2
    ks_warn: float = 0.05
    ks_critical: float = 0.1
    jsd_warn: float = 0.1
    jsd_critical: float = 0.2

    def __post_init__(self) -> None:
        """Checks that every pair satisfies ``0 <= warn <= critical``."""
        for name in ("psi", "ks", "jsd"):
            warn = getattr(self, f"{name}_warn")
            critical = getattr(self, f"{name}_critical")
            if not (0.0 <= warn <= critical) or math.isnan(warn) or math.isnan(critical):
                raise SpecError(
                    f"DriftThresholds {name}_warn={warn!r}, {name}_critical={critical!r}: "
                    f"thresholds must satisfy 0 <= warn <= critical; "
                    f"lower {name}_warn or raise {name}_critical."
                )


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature between a reference and a current sample.

    Attributes:
        feature: Feature (column) name.
        kind: ``"numeric"`` or ``"categorical"``.
        psi: Population stability index.
        jsd: Jensen-Shannon distance (natural log).
        ks: KS statistic ``D`` (numeric only, else ``None``).
        ks_pvalue: Asymptotic two-sided KS p-value (numeric only, else ``None``).
        wasserstein: Wasserstein-1 distance (numeric only, else ``None``).
        chi2_pvalue: Chi-square test p-value (categorical only, else ``None``).
        missing_ref: Share of missing values in the reference sample.
        missing_cur: Share of missing values in the current sample.
        missing_drift: ``abs(missing_cur - missing_ref)``.
        n_ref: Non-missing reference values.
        n_cur: Non-missing current values.
        n_bins: Bins (numeric, after de-duplicating edges) or categories actually used.
        severity: Worst level among PSI, KS and JSD.
    """

    feature: str
    kind: Kind
    psi: float
    jsd: float
    ks: float | None
    ks_pvalue: float | None
    wasserstein: float | None
    chi2_pvalue: float | None
    missing_ref: float
    missing_cur: float
    missing_drift: float
    n_ref: int
    n_cur: int
    n_bins: int
    severity: Severity

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-able dict; absent or non-finite metrics become ``None``."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out


def severity(value: float | None, *, warn: float, critical: float) -> Severity:
    """Classifies one metric value.

    Args:
        value: The metric; ``None`` or NaN counts as ``"ok"`` (nothing to flag).
        warn: Level at or above which the value is ``"warn"``.
        critical: Level at or above which the value is ``"critical"``.

    Returns:
        ``"ok"``, ``"warn"`` or ``"critical"``.
    """
    if value is None or math.isnan(value):
        return "ok"
    if value >= critical:
        return "critical"
    if value >= warn:
        return "warn"
    return "ok"


def check_params(bins: int, eps: float) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise SpecError(f"bins={bins!r}: must be an integer >= 2; pass e.g. bins=10.")
    if not (0.0 < eps < 1.0):
        raise SpecError(f"eps={eps!r}: must lie in (0, 1); pass e.g. eps=1e-4.")


def _require_sample(total: int, side: str, feature: str) -> None:
    """Raises EmptyDataError when one side's sample has no values at all."""
    if total == 0:
        raise EmptyDataError(
            f"feature {feature!r} ({side}): sample is empty; drift needs at least one value "
            f"on each side; pass a non-empty {side} sample."
        )


def _require_present(present: int, total: int, side: str, feature: str) -> None:
    """Raises EmptyDataError when every one of the ``total`` values of one side is missing."""
    if present == 0:
        raise EmptyDataError(
            f"feature {feature!r} ({side}): all {total} values are missing; drift needs at "
            f"least one non-missing value; fill or drop the feature."
        )


def sorted_finite(values: Any, side: str, feature: str) -> tuple[FloatArray, int]:
    """Returns the sorted non-NaN values and the total length (NaN included)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"feature {feature!r} ({side}): values are not numeric ({exc}); "
            f"pass kind='categorical' or cast the column to a float dtype."
        ) from exc
    arr = arr.ravel()
    total = arr.size
    _require_sample(total, side, feature)
    s = np.sort(arr)  # NaN sorts last
    n = int(np.searchsorted(s, np.nan, side="left")) if np.isnan(s[-1]) else total
    _require_present(n, total, side, feature)
    s = s[:n]
    if not (np.isfinite(s[0]) and np.isfinite(s[-1])):
        raise DataError(
            f"feature {feature!r} ({side}): contains an infinite value; drift metrics need "
            f"finite values; replace +-inf with NaN or clip them."
        )
    return s, total


def quantile_edges(ref: FloatArray, bins: int) -> FloatArray:
    """Inner bin edges: de-duplicated reference quantiles (numpy's 'linear' method)."""
    q = np.arange(1, bins, dtype=np.float64) / bins
    pos = q * (ref.size - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, ref.size - 1)
    t = pos - lo
    a, b = ref[lo], ref[hi]
    diff = b - a
    edges = np.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t)
    return np.unique(edges)


def bin_proportions(sorted_values: FloatArray, inner: FloatArray) -> FloatArray:
    """Proportions in ``(-inf, e1), [e1, e2), ..., [ek, inf)`` of an already sorted sample."""
    cuts = np.searchsorted(sorted_values, inner, side="left")
    counts = np.diff(np.concatenate(([0], cuts, [sorted_values.size])))
    return counts / sorted_values.size


def population_stability_index(p_ref: FloatArray, p_cur: FloatArray, eps: float) -> float:
    e = np.maximum(p_ref, eps)
    a = np.maximum(p_cur, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon_distance(p_ref: FloatArray, p_cur: FloatArray) -> float:
    return float(spd.jensenshannon(p_ref, p_cur))


def _ks_wasserstein(
    ref: FloatArray, cur: FloatArray, pvalue_method: PValueMethod
) -> tuple[float, float, float]:
    """KS statistic, asymptotic p-value and Wasserstein-1 from two sorted samples.

    The samples are merged in O(n) from one ``searchsorted``; the cumulative counts of each
    sample along the merge give both CDFs. KS is evaluated at the last element of each run of
    equal values, where the counts equal scipy's ``searchsorted(..., side='right')`` ones, so
    ``D`` is computed with the same float operations as scipy and matches it exactly.
    """
    n1, n2 = ref.size, cur.size
    n = n1 + n2
    slots = np.searchsorted(cur, ref, side="left") + np.arange(n1)
    is_ref = np.zeros(n, dtype=bool)
    is_ref[slots] = True
    merged = np.empty(n, dtype=np.float64)
    merged[slots] = ref
    merged[~is_ref] = cur
    # counts as float64 (exact below 2**53): the divisions see the same values as scipy's
    c1 = np.cumsum(is_ref, dtype=np.float64)
    c2 = np.arange(1.0, n + 1.0) - c1
    cdf_diff = c1 / n1 - c2 / n2
    deltas = np.diff(merged)
    wasserstein = float(np.dot(np.abs(cdf_diff[:-1]), deltas))
    # the last element of each run of equal values (bar the final); without ties, every one
    distinct = deltas != 0
    if distinct.all():
        at_ends = cdf_diff[:-1] if n > 1 else np.zeros(1)
    else:
        ends = np.flatnonzero(distinct)
        at_ends = cdf_diff[ends] if ends.size else np.zeros(1)
    d, pvalue = ks_finish(float(at_ends.min()), float(at_ends.max()), n1, n2, pvalue_method)
    return d, pvalue, wasserstein


def ks_finish(
    lowest: float, highest: float, n1: int, n2: int, pvalue_method: PValueMethod
) -> tuple[float, float]:
    """KS ``D`` (lattice-snapped like scipy for small samples) and p-value.

    Args:
        lowest: Smallest ``c1 / n1 - c2 / n2`` over the evaluation points.
        highest: Largest one.
        n1: Reference size.
        n2: Current size.
        pvalue_method: See `feature_drift`.
    """
    # Final point: both CDFs are 1, diff 0.0 exactly as in scipy.
    min_s = float(np.clip(-min(lowest, 0.0), 0, 1))
    max_s = max(highest, 0.0)
    d = min_s if min_s > max_s else max_s
    m, k = sorted([float(n1), float(n2)], reverse=True)
    en = m * k / (m + k)
    if pvalue_method == "asymp":
        pvalue = float(np.clip(sps.kstwo.sf(d, np.round(en)), 0, 1))
    else:
        pvalue = float(np.clip(sps.kstwobign.sf(math.sqrt(en) * d), 0, 1))
    if max(n1, n2) <= _KS_EXACT_MAX_N:
        # scipy's default method="auto" goes "exact" here and snaps D onto the lattice h / lcm.
        lcm = (n1 // math.gcd(n1, n2)) * n2
        d = int(np.round(d * lcm)) * 1.0 / lcm
    return d, pvalue


def _worst(levels: Iterable[Severity]) -> Severity:
    return max(levels, key=lambda s: _RANK[s])


def _numeric(
    reference: Any,
    current: Any,
    *,
    feature: str,
    bins: int,
    eps: float,
    th: DriftThresholds,
    pvalue_method: PValueMethod,
) -> FeatureDrift:
    ref, total_ref = sorted_finite(reference, "reference", feature)
    cur, total_cur = sorted_finite(current, "current", feature)
    inner = quantile_edges(ref, bins)
    p_ref = bin_proportions(ref, inner)
    p_cur = bin_proportions(cur, inner)
    psi = population_stability_index(p_ref, p_cur, eps)
    jsd = jensen_shannon_distance(p_ref, p_cur)
    ks, ks_p, wd = _ks_wasserstein(ref, cur, pvalue_method)
    return numeric_drift(
        feature,
        psi=psi,
        jsd=jsd,
        ks=ks,
        ks_pvalue=ks_p,
        wasserstein=wd,
        n_ref=int(ref.size),
        n_cur=int(cur.size),
        total_ref=total_ref,
        total_cur=total_cur,
        n_bins=int(p_ref.size),
        th=th,
    )


def numeric_drift(
    feature: str,
    *,
    psi: float,
    jsd: float,
    ks: float,
    ks_pvalue: float,
    wasserstein: float,
    n_ref: int,
    n_cur: int,
    total_ref: int,
    total_cur: int,
    n_bins: int,
    th: DriftThresholds,
) -> FeatureDrift:
    """A numeric result from its metrics: missing shares and the worst severity added."""
    return _with_missing_and_severity(
        feature,
        "numeric",
        (
            severity(psi, warn=th.psi_warn, critical=th.psi_critical),
            severity(ks, warn=th.ks_warn, critical=th.ks_critical),
            severity(jsd, warn=th.jsd_warn, critical=th.jsd_critical),
        ),
        counts=(n_ref, n_cur, total_ref, total_cur),
        psi=psi,
        jsd=jsd,
        ks=ks,
        ks_pvalue=ks_pvalue,
        wasserstein=wasserstein,
        n_bins=n_bins,
    )


def _with_missing_and_severity(
    feature: str,
    kind: Kind,
    levels: Iterable[Severity],
    *,
    counts: tuple[int, int, int, int],
    psi: float,
    jsd: float,
    n_bins: int,
    ks: float | None = None,
    ks_pvalue: float | None = None,
    wasserstein: float | None = None,
    chi2_pvalue: float | None = None,
) -> FeatureDrift:
    """The result of one feature: its measures, the missing shares and the worst of ``levels``.

    ``counts`` is ``(n_ref, n_cur, total_ref, total_cur)``: the non-missing values and all
    values (NaN included) on each side. The measures a kind lacks (KS and Wasserstein of a
    categorical feature, chi-squared of a numeric one) stay None.
    """
    n_ref, n_cur, total_ref, total_cur = counts
    miss_ref = 1.0 - n_ref / total_ref
    miss_cur = 1.0 - n_cur / total_cur
    return FeatureDrift(
        feature=feature,
        kind=kind,
        psi=psi,
        jsd=jsd,
        ks=ks,
        ks_pvalue=ks_pvalue,
        wasserstein=wasserstein,
        chi2_pvalue=chi2_pvalue,
        missing_ref=miss_ref,
        missing_cur=miss_cur,
        missing_drift=abs(miss_cur - miss_ref),
        n_ref=n_ref,
        n_cur=n_cur,
        n_bins=n_bins,
        severity=_worst(levels),
    )


def category_counts(values: Any, side: str, feature: str) -> tuple[pd.Series, int]:
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    total = len(series)
    _require_sample(total, side, feature)
    counts = series.value_counts(dropna=True, sort=False)
    counts = counts[counts > 0]
    _require_present(int(counts.sum()), total, side, feature)
    return counts, total


def _categorical(
    reference: Any, current: Any, *, feature: str, eps: float, th: DriftThresholds
) -> FeatureDrift:
    ref_counts, total_ref = category_counts(reference, "reference", feature)
    cur_counts, total_cur = category_counts(current, "current", feature)
    return categorical_drift_from_counts(
        ref_counts, total_ref, cur_counts, total_cur, feature=feature, eps=eps, th=th
    )


def categorical_drift_from_counts(
    ref_counts: pd.Series,
    total_ref: int,
    cur_counts: pd.Series,
    total_cur: int,
    *,
    feature: str,
    eps: float,
    th: DriftThresholds,
) -> FeatureDrift:
    """Categorical drift from the non-zero counts per category and the totals (NaN included)."""
    union = ref_counts.index.union(cur_counts.index, sort=False)
    order = sorted(range(len(union)), key=lambda i: (type(union[i]).__name__, str(union[i])))
    union = union[order]
    rc = ref_counts.reindex(union, fill_value=0).to_numpy(dtype=np.float64)
    cc = cur_counts.reindex(union, fill_value=0).to_numpy(dtype=np.float64)
    n_ref, n_cur = float(rc.sum()), float(cc.sum())
    p_ref, p_cur = rc / n_ref, cc / n_cur
    psi = population_stability_index(p_ref, p_cur, eps)
    jsd = jensen_shannon_distance(p_ref, p_cur)
    chi2_p = 1.0  # one category on both sides: the distributions cannot differ
    if union.size >= 2:
        chi2_p = float(sps.chi2_contingency(np.vstack([rc, cc])).pvalue)
    return _with_missing_and_severity(
        feature,
        "categorical",
        (
            severity(psi, warn=th.psi_warn, critical=th.psi_critical),
            severity(jsd, warn=th.jsd_warn, critical=th.jsd_critical),
        ),
        counts=(int(n_ref), int(n_cur), total_ref, total_cur),
        psi=psi,
        jsd=jsd,
        chi2_pvalue=chi2_p,
        n_bins=int(union.size),
    )


def feature_drift(
    reference: Any,
    current: Any,
    *,
    feature: str = "feature",
    kind: Kind = "numeric",
    bins: int = DEFAULT_BINS,
    eps: float = DEFAULT_EPS,
    thresholds: DriftThresholds = DriftThresholds(),
    ks_pvalue_method: PValueMethod = "asymp",
) -> FeatureDrift:
    """Measures the drift of one feature.

    Args:
        reference: Reference sample (array-like or Series); NaN/None are missing values.
        current: Current sample.
        feature: Name recorded in the result and in error messages.
        kind: ``"numeric"`` (PSI, KS, JSD, Wasserstein) or ``"categorical"``
            (PSI, JSD, chi-square).
        bins: Reference-quantile bins for numeric PSI/JSD (at least 2).
        eps: Floor for a proportion in PSI, in (0, 1).
        thresholds: Severity thresholds.
        ks_pvalue_method: ``"asymp"`` (default): scipy's ``kstwo.sf``, bit-identical to
            ``ks_2samp(method="asymp")`` but up to ~0.5 s per call for large samples with a
            p-value between about 1e-200 and 1e-3; ``"limit"``: the limiting Kolmogorov
            distribution ``kstwobign.sf(sqrt(n1 n2 / (n1 + n2)) D)``, microseconds, within
            about 1% of ``"asymp"`` for samples of 100k+ values.

    Returns:
        The metrics and the worst severity.

    Raises:
        EmptyDataError: A sample is empty or entirely missing.
        SchemaError: A numeric sample cannot be read as floats.
        DataError: A numeric sample holds an infinite value.
        SpecError: ``kind``, ``bins`` or ``eps`` is invalid.
    """
    check_params(bins, eps)
    if ks_pvalue_method not in ("asymp", "limit"):
        raise SpecError(
            f"ks_pvalue_method={ks_pvalue_method!r}: must be 'asymp' or 'limit'; pass one."
        )
    if kind == "numeric":
        return _numeric(
            reference,
            current,
            feature=feature,
            bins=int(bins),
            eps=eps,
            th=thresholds,
            pvalue_method=ks_pvalue_method,
        )
    if kind == "categorical":
        return _categorical(reference, current, feature=feature, eps=eps, th=thresholds)
    raise SpecError(f"kind={kind!r}: must be 'numeric' or 'categorical'; pass one of them.")


def kind_of(series: pd.Series, side: str) -> Kind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    if (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return "categorical"
    raise SchemaError(
        f"column {series.name!r} ({side}) has dtype {dtype}: drift supports numeric, bool, "
        f"string, object and category columns; cast it or leave it out of features."
    )
