"""What the gateway reports per model version, as the canary reads it: :class:`VersionStats`,
its counters, the prediction PSI between the champion's and the challenger's predictions
(:func:`psi`, :func:`prediction_psi`) and the PSI that sampling noise alone gives two samples of
their sizes (:func:`psi_noise`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from lockgate.gateway import prediction_sketch
from lockgate.serving.canary_policy import CanaryError

__all__ = [
    "COUNTERS",
    "VersionStats",
    "check_count",
    "prediction_counts",
    "prediction_psi",
    "psi",
    "psi_noise",
    "sketch_counts",
]

COUNTERS = ("requests", "errors", "schema_violations", "shadow_requests")
"""The counters of :class:`VersionStats` that count from the gateway's window start."""


@dataclass(frozen=True)
class VersionStats:
    """What the gateway reports for one model version (see the module's statistics contract).

    Attributes:
        requests: live requests received (failed ones included).
        errors: requests that failed (live and shadow).
        schema_violations: requests whose input broke the version's schema (live and shadow).
        p50_ms: median latency, None when not measured.
        p99_ms: 99th-percentile latency, None when not measured.
        mean_prediction: mean prediction, None when not measured.
        prediction_histogram: prediction counts in the gateway's bins (one-value outputs: 10 fixed
            bins over [0, 1]; multiclass: k counts of the predicted class); empty when not
            reported.
        shadow_requests: mirrored requests received (challenger only).
        shadow_mean_abs_diff: mean absolute difference from the champion's prediction on the
            mirrored requests, None when not measured.
        since: epoch seconds from which the counters count (the gateway's window start), None
            when unknown.
        prediction_sketch: ``(bin, count)`` pairs, sorted by bin, of the one-value outputs'
            :mod:`lockgate.gateway.prediction_sketch` (what a regression model is compared by); empty
            when not reported.

    Example:
        >>> VersionStats.from_dict({"requests": 10, "p99_ms": 12.5, "version": "v2"}).p99_ms
        12.5
    """

    requests: int = 0
    errors: int = 0
    schema_violations: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_prediction: float | None = None
    prediction_histogram: tuple[int, ...] = ()
    shadow_requests: int = 0
    shadow_mean_abs_diff: float | None = None
    since: float | None = None
    prediction_sketch: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        for name in COUNTERS:
            object.__setattr__(self, name, check_count(name, getattr(self, name)))
        hist = tuple(check_count("prediction_histogram bin", v) for v in self.prediction_histogram)
        object.__setattr__(self, "prediction_histogram", hist)
        object.__setattr__(self, "prediction_sketch", _sketch_pairs(self.prediction_sketch))
        for name in ("p50_ms", "p99_ms", "shadow_mean_abs_diff", "mean_prediction", "since"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CanaryError(f"{name} {value!r} must be a number or None")
            signed = name in ("mean_prediction", "since")
            if not math.isfinite(value) or (not signed and value < 0):
                rule = "finite" if signed else "finite, non-negative"
                raise CanaryError(
                    f"{name} {value!r} must be a {rule} number; report None when not measured"
                )
            object.__setattr__(self, name, float(value))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionStats:
        """Read the gateway's JSON for one version; keys other than the fields are ignored.

        Example:
            >>> VersionStats.from_dict({"requests": 3, "prediction_histogram": [1, 2]}).requests
            3
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "prediction_histogram" in values and values["prediction_histogram"] is None:
            values["prediction_histogram"] = ()
        if "prediction_histogram" in values:
            values["prediction_histogram"] = tuple(values["prediction_histogram"])
        if values.get("prediction_sketch") is None:
            values.pop("prediction_sketch", None)
        for name in COUNTERS:
            if values.get(name, 0) is None:
                values[name] = 0
        return cls(**values)

    @classmethod
    def from_gateway(cls, snapshot: Mapping[str, Any], *, version: str) -> VersionStats:
        """One version's stats from the gateway's ``GET /admin/stats/{name}`` answer.

        Live and shadow series are merged: ``requests`` are the live ones, ``shadow_requests``
        the mirrored ones; errors, schema violations and prediction histograms are summed over
        both; the prediction mean is weighted by prediction count; latencies come from the series
        with more latency samples (percentiles cannot be merged); ``shadow_mean_abs_diff`` is the
        shadow series' ``abs_diff.mean``; ``since`` is the snapshot's ``since_unix``. Missing keys
        read as zero or None.

        Raises:
            CanaryError: the snapshot has no entry for ``version``.

        Example:
            >>> snap = {"since_unix": 10.0, "versions": {"v2": {
            ...     "requests": 40, "errors": 1, "schema_violations": 0,
            ...     "latency_ms": {"p50": 3.0, "p99": 9.0, "samples": 39},
            ...     "prediction": {"count": 39, "mean": 0.2,
            ...                    "histogram": {"counts": [39] + [0] * 9}},
            ...     "shadow": {"requests": 100, "errors": 0, "schema_violations": 0,
            ...                "latency_ms": {"p50": 4.0, "p99": 12.0, "samples": 100},
            ...                "prediction": {"count": 100, "mean": 0.3,
            ...                               "histogram": {"counts": [0] * 9 + [100]}},
            ...                "abs_diff": {"mean": 0.05}}}}}
            >>> s = VersionStats.from_gateway(snap, version="v2")
            >>> s.requests, s.shadow_requests, s.errors, s.p99_ms, s.shadow_mean_abs_diff
            (40, 100, 1, 12.0, 0.05)
        """
        versions = snapshot.get("versions") or {}
        if version not in versions:
            raise CanaryError(
                f"version {version!r} is not in the gateway stats (versions: "
                f"{sorted(versions)}); route it first or check the pipeline name"
            )
        entry: Mapping[str, Any] = versions[version] or {}
        shadow: Mapping[str, Any] = entry.get("shadow") or {}
        # the gateway nests the live series under "live" next to flat totals; older
        # snapshots (and the examples here) put the live series at the top level
        live: Mapping[str, Any] = entry["live"] if isinstance(entry.get("live"), Mapping) else entry

        def num(series: Mapping[str, Any], *path: str) -> Any:
            value: Any = series
            for key in path:
                value = value.get(key) if isinstance(value, Mapping) else None
            return value

        def counts(series: Mapping[str, Any]) -> list[int]:
            return list(num(series, "prediction", "histogram", "counts") or [])

        hists = [h for h in (counts(live), counts(shadow)) if h]
        if len(hists) == 2 and len(hists[0]) != len(hists[1]):
            # a series that saw no prediction reports the default 10 empty bins
            hists = [h for h in hists if any(h)] or hists[:1]
        if len(hists) == 2 and len(hists[0]) != len(hists[1]):
            raise CanaryError(
                f"live and shadow prediction histograms of {version!r} have "
                f"{len(hists[0])} and {len(hists[1])} bins; the gateway must use the same bins"
            )
        histogram = tuple(sum(col) for col in zip(*hists, strict=True)) if hists else ()
        sketch: dict[int, int] = {}
        for series in (live, shadow):
            prediction_sketch.add(sketch, sketch_counts(num(series, "prediction", "sketch") or {}))
        weighted = [
            (int(num(s, "prediction", "count") or 0), num(s, "prediction", "mean"))
            for s in (live, shadow)
        ]
        weighted = [(c, mean) for c, mean in weighted if c and mean is not None]
        total = sum(c for c, _ in weighted)
        mean = sum(c * mean for c, mean in weighted) / total if total else None
        timing = max((live, shadow), key=lambda s: int(num(s, "latency_ms", "samples") or 0))
        return cls(
            requests=int(live.get("requests") or 0),
            errors=int(live.get("errors") or 0) + int(shadow.get("errors") or 0),
            schema_violations=int(live.get("schema_violations") or 0)
            + int(shadow.get("schema_violations") or 0),
            p50_ms=num(timing, "latency_ms", "p50"),
            p99_ms=num(timing, "latency_ms", "p99"),
            mean_prediction=mean,
            prediction_histogram=histogram,
            shadow_requests=int(shadow.get("requests") or 0),
            shadow_mean_abs_diff=num(shadow, "abs_diff", "mean"),
            since=snapshot.get("since_unix"),
            prediction_sketch=tuple(sorted(sketch.items())),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = asdict(self)
        out["prediction_histogram"] = list(self.prediction_histogram)
        out["prediction_sketch"] = {str(k): c for k, c in self.prediction_sketch}
        return out


def sketch_counts(value: Any) -> dict[int, int]:
    """A sketch given as ``{"bin": count}`` (JSON) or ``(bin, count)`` pairs, as ints."""
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[int, int] = {}
    try:
        for k, c in items:
            if isinstance(k, (bool, float)):
                raise ValueError(k)
            out[int(k)] = out.get(int(k), 0) + check_count("prediction_sketch count", c)
    except (TypeError, ValueError) as exc:
        raise CanaryError(
            f"prediction_sketch {value!r} is not a map of integer bins to counts ({exc}); report "
            "the gateway's prediction_sketch as it is, or leave it out"
        ) from None
    return out


def _sketch_pairs(value: Any) -> tuple[tuple[int, int], ...]:
    return tuple(sorted((k, c) for k, c in sketch_counts(value).items() if c))


def check_count(name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CanaryError(f"{name} {value!r} must be a non-negative integer count")
    return value


def psi(
    expected_counts: Sequence[float], actual_counts: Sequence[float], *, eps: float = 1e-4
) -> float:
    """Population stability index between two histograms over the same bins.

    Convention: each histogram is turned into proportions (count / total); every proportion below
    ``eps`` (an empty bin) is raised to ``eps`` without renormalising, so that the logarithm is
    defined; then ``PSI = sum((a - e) * ln(a / e))``. It is 0 for identical shapes and grows as
    they diverge; a common reading is < 0.1 stable, 0.1-0.25 moderate, > 0.25 a large shift.
    In :func:`decide`, ``expected`` is the champion's histogram and ``actual`` the challenger's.

    Raises:
        CanaryError: the histograms differ in length, are empty, hold a negative count or sum to
            zero.

    Example:
        >>> psi([50, 50], [50, 50])
        0.0
        >>> round(psi([90, 10], [50, 50]), 3)
        0.879
    """
    totals = _checked_totals(expected_counts, actual_counts, eps=eps)
    value = 0.0
    for e_count, a_count in zip(expected_counts, actual_counts, strict=True):
        e = max(e_count / totals[0], eps)
        a = max(a_count / totals[1], eps)
        value += (a - e) * math.log(a / e)
    return value


def _checked_totals(
    expected_counts: Sequence[float], actual_counts: Sequence[float], *, eps: float
) -> tuple[float, float]:
    """Both histograms' totals, once they are checked comparable (see :func:`psi`)."""
    if len(expected_counts) != len(actual_counts) or not expected_counts:
        raise CanaryError(
            f"histograms of {len(expected_counts)} and {len(actual_counts)} bins cannot be "
            "compared; both must have the same, non-zero number of bins"
        )
    if eps <= 0:
        raise CanaryError(f"eps {eps!r} must be > 0 (it replaces empty bins' proportions)")
    totals = []
    for name, counts in (("expected", expected_counts), ("actual", actual_counts)):
        if any(c < 0 or not math.isfinite(c) for c in counts):
            raise CanaryError(f"{name} histogram {list(counts)} has a negative or non-finite count")
        total = float(sum(counts))
        if total <= 0:
            raise CanaryError(f"{name} histogram {list(counts)} is empty; PSI needs counts")
        totals.append(total)
    return totals[0], totals[1]


def psi_noise(
    expected_counts: Sequence[float],
    actual_counts: Sequence[float],
    *,
    quantile: float = 0.99,
    draws: int = 2000,
    seed: int = 0,
    eps: float = 1e-4,
) -> float:
    """The ``quantile`` of the PSI between two samples of these sizes from one distribution.

    PSI is estimated from samples, and small ones differ by chance: two samples of 20
    predictions from the same model over 10 bins show a PSI of about 0.4 on average and above
    0.5 a quarter of the time, although the distributions are the same. This is the level of
    that noise: both histograms' counts are drawn ``draws`` times from their pooled proportions
    (what both come from if nothing changed), each pair's :func:`psi` is taken with the same
    ``eps``, and the ``quantile`` of those values is returned. A PSI above it is unlikely
    (probability ``1 - quantile``) from sampling alone. Deterministic: a fixed ``seed``.

    Raises:
        CanaryError: the histograms are not comparable (see :func:`psi`), or ``quantile`` is
            not in (0, 1).

    Example:
        >>> round(psi_noise([900] * 10, [2] * 10), 2)  # 20 challenger predictions: PSI 2.56
        2.56
        >>> psi_noise([90000] * 10, [20000] * 10) < 0.002
        True
    """
    totals = _checked_totals(expected_counts, actual_counts, eps=eps)  # psi's checks
    if not 0 < quantile < 1:
        raise CanaryError(f"quantile {quantile!r} must be in (0, 1), e.g. 0.99")
    expected = np.asarray(expected_counts, dtype=np.float64)
    actual = np.asarray(actual_counts, dtype=np.float64)
    sizes = [max(1, round(total)) for total in totals]
    pooled = (expected + actual) / (totals[0] + totals[1])
    rng = np.random.default_rng(seed)
    e = np.maximum(rng.multinomial(sizes[0], pooled, size=draws) / sizes[0], eps)
    a = np.maximum(rng.multinomial(sizes[1], pooled, size=draws) / sizes[1], eps)
    values = ((a - e) * np.log(a / e)).sum(axis=1)
    return float(np.quantile(values, quantile))


def prediction_counts(
    champion: VersionStats, challenger: VersionStats, *, task: str = "binary"
) -> tuple[list[int], list[int]] | None:
    """The champion's and the challenger's prediction counts over the same bins, per task.

    ``"binary"``: the gateway's 10 fixed bins of P(label 1) over [0, 1]. ``"multiclass"``: the
    distribution of the predicted class (the gateway's k argmax counts). ``"regression"``: both
    :mod:`lockgate.gateway.prediction_sketch` sketches rebinned on the deciles of the champion's
    (:func:`lockgate.gateway.prediction_sketch.quantile_keys`), the usual quantile bins at the
    sketch's ~1 % resolution. None when either side reported nothing to compare.

    Raises:
        CanaryError: an unknown task.
    """
    if task in ("binary", "multiclass"):
        mine, theirs = challenger.prediction_histogram, champion.prediction_histogram
        if not sum(mine) or not sum(theirs):
            return None
        return list(theirs), list(mine)
    if task != "regression":
        raise CanaryError(
            f"task {task!r} is unknown; rule: 'binary', 'multiclass' or 'regression' (the "
            "pipeline's ModelPipeline.task); fix: pass the spec's task"
        )
    reference, current = dict(champion.prediction_sketch), dict(challenger.prediction_sketch)
    if not sum(reference.values()) or not sum(current.values()):
        return None
    edges = prediction_sketch.quantile_keys(reference, bins=10)
    return prediction_sketch.rebin(reference, edges), prediction_sketch.rebin(current, edges)


def prediction_psi(
    champion: VersionStats, challenger: VersionStats, *, task: str = "binary"
) -> float | None:
    """PSI between the champion's and the challenger's predictions, per task: :func:`psi` of
    :func:`prediction_counts` (the champion is ``expected``).

    Returns:
        The PSI, or None when either side reported nothing to compare.

    Raises:
        CanaryError: an unknown task, or histograms of different bin counts (multiclass
            versions with different classes).

    Example:
        >>> a = VersionStats(prediction_sketch=((100, 50), (200, 50)))
        >>> b = VersionStats(prediction_sketch=((100, 90), (200, 10)))
        >>> round(prediction_psi(a, b, task="regression"), 3)
        0.879
    """
    counts = prediction_counts(champion, challenger, task=task)
    return None if counts is None else psi(*counts)
