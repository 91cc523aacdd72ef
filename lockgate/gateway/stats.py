"""The gateway's statistics: cumulative counters and resettable windows per served version.

:class:`Stats` keeps, per public model, lockgate version and shadow flag, a :class:`_Series`:
cumulative counts and :class:`Histogram` buckets (what ``/metrics`` exposes,
:mod:`lockgate.gateway.metrics`) and a :class:`_Window` since the last reset (what
``GET /admin/stats/{name}`` answers: latency reservoir, prediction histogram and sketch, shadow
differences), plus the WAL's commit figures.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import random
import time
from bisect import bisect_left
from typing import Any, TypedDict

import numpy as np

from lockgate.gateway.prediction_sketch import key as _sketch_key
from lockgate.gateway.prediction_sketch import keys as _sketch_keys
from lockgate.gateway.routing import Route

__all__ = [
    "COMMIT_BUCKETS_S",
    "DIFF_BUCKETS",
    "LATENCY_BUCKETS_S",
    "PREDICTION_BUCKETS",
    "AdminStats",
    "AdminVersionStats",
    "Histogram",
    "Stats",
    "iso_utc",
]

LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.5,
    1.0,
)
PREDICTION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DIFF_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
COMMIT_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)


class AdminVersionStats(TypedDict):
    """One served version in ``GET /admin/stats/{name}`` (``AdminStats["versions"][version]``).

    Flat figures count live and shadow traffic together where the name says so; ``live`` and
    ``shadow`` are the detailed blocks of each window (counters, latency summary, prediction
    histogram and sketch; ``abs_diff`` in the shadow block, ``retried_on_champion`` in the live).
    """

    role: str
    requests: int
    answered: int
    shadow_requests: int
    errors: int
    schema_violations: int
    error_rate: float
    schema_violation_rate: float
    retried_on_champion: int
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    latency_samples: int
    mean_prediction: float | None
    prediction_histogram: list[int]
    prediction_kind: str | None
    prediction_sketch: dict[str, int]
    prediction_out_of_range: int
    shadow_mean_abs_diff: float | None
    shadow_max_abs_diff: float | None
    live: dict[str, Any]
    shadow: dict[str, Any]


class AdminStats(TypedDict):
    """The ``GET /admin/stats/{name}`` payload: one public model's windows since the last reset."""

    model: str
    since: str
    since_unix: float
    now: str
    route: dict[str, Any] | None
    histogram_edges: list[float]
    versions: dict[str, AdminVersionStats]
    shadow_dropped: int


class Histogram:
    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def observe_array(self, values: np.ndarray) -> None:
        if values.size <= 8:
            for v in values.tolist():
                self.observe(v)
            return
        idx = np.searchsorted(np.asarray(self.bounds), values, side="left")
        for i, c in enumerate(np.bincount(idx, minlength=len(self.counts)).tolist()):
            self.counts[i] += c
        self.total += float(values.sum())
        self.count += int(values.size)


class _Reservoir:
    """Uniform sample (Algorithm R) of a stream, bounded in size."""

    __slots__ = ("seen", "size", "values")

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            j = random.randrange(self.seen)
            if j < self.size:
                self.values[j] = value

    def summary(self, scale: float = 1.0) -> dict[str, float | int | None]:
        if not self.values:
            return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None, "samples": 0}
        arr = np.asarray(self.values) * scale
        p50, p90, p99 = np.quantile(arr, [0.5, 0.9, 0.99]).tolist()
        return {
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "mean": float(arr.mean()),
            "max": float(arr.max()),
            "samples": len(self.values),
        }


class _Window:
    """Counters since the last reset (what ``/admin/stats`` reports)."""

    def __init__(self) -> None:
        self.requests = 0
        self.answered = 0
        self.errors = 0
        self.violations = 0
        self.retried = 0
        self.latency = _Reservoir()
        self.pred_count = 0
        self.pred_sum = 0.0
        self.pred_bins = [0] * 10  # "probability": 10 bins over [0, 1]; "class": k argmax counts
        self.pred_kind = ""  # "" until the first prediction, then "probability" or "class"
        self.pred_sketch: dict[
            int, int
        ] = {}  # one-value outputs: lockgate.gateway.prediction_sketch
        self.pred_out_of_range = 0
        self.diff_count = 0
        self.diff_sum = 0.0
        self.diff_max = 0.0
        self.diffs = _Reservoir()

    def snapshot(self, *, shadow: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "answered": self.answered,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "schema_violations": self.violations,
            "schema_violation_rate": self.violations / self.requests if self.requests else 0.0,
            "latency_ms": self.latency.summary(1000.0),
            "prediction": {
                "count": self.pred_count,
                "mean": self.pred_sum / self.pred_count if self.pred_count else None,
                "kind": self.pred_kind or None,
                "histogram": {
                    "edges": (
                        None if self.pred_kind == "class" else [round(i / 10, 1) for i in range(11)]
                    ),
                    "counts": list(self.pred_bins),
                },
                "sketch": {str(k): c for k, c in sorted(self.pred_sketch.items())},
                "out_of_range": self.pred_out_of_range,
            },
        }
        if shadow:
            out["abs_diff"] = {
                "count": self.diff_count,
                "mean": self.diff_sum / self.diff_count if self.diff_count else None,
                "max": self.diff_max if self.diff_count else None,
                "p99": self.diffs.summary()["p99"],
            }
        else:
            out["retried_on_champion"] = self.retried
        return out


class _Series:
    """Cumulative metrics and a resettable window for one (model, version, shadow)."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.violations = 0
        self.retries = 0
        self.merged_calls = 0  # upstream calls that carried several requests' rows
        self.merged_requests = 0  # requests answered from such calls
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.prediction = Histogram(PREDICTION_BUCKETS)
        self.diff = Histogram(DIFF_BUCKETS)
        self.window = _Window()

    def merged(self, requests: int) -> None:
        """Count one merged upstream call that carried ``requests`` requests."""
        self.merged_calls += 1
        self.merged_requests += requests

    def observe(
        self,
        *,
        latency_s: float,
        error: str | None,
        violation: bool,
        predictions: np.ndarray | None,
        diffs: np.ndarray | None = None,
    ) -> None:
        w = self.window
        self.requests += 1
        w.requests += 1
        if violation:
            self.violations += 1
            w.violations += 1
            return
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
            w.errors += 1
            return
        w.answered += 1
        self.latency.observe(latency_s)
        w.latency.add(latency_s)
        if predictions is not None and predictions.size:
            if predictions.ndim == 2 and predictions.shape[1] > 1:
                _observe_classes(self.prediction, w, predictions)
            else:
                _observe_values(self.prediction, w, predictions.reshape(-1))
        if diffs is not None and diffs.size:
            self.diff.observe_array(diffs)
            w.diff_count += int(diffs.size)
            w.diff_sum += float(diffs.sum())
            w.diff_max = max(w.diff_max, float(diffs.max()))
            for d in diffs.tolist()[:64]:
                w.diffs.add(d)


def _observe_values(hist: Histogram, w: _Window, predictions: np.ndarray) -> None:
    """One value per row (binary P(label 1), a regression value): mean, 10 bins over [0, 1]
    (values outside count as out of range) and the value sketch (any finite value)."""
    if w.pred_kind == "class":  # the version changed width mid-window: not mixed in
        w.pred_out_of_range += int(predictions.size)
        return
    w.pred_kind = "probability"
    sketch = w.pred_sketch
    if predictions.size <= 8:  # the usual few rows: Python floats beat numpy reductions
        values = predictions.tolist()
        w.pred_count += len(values)
        w.pred_sum += sum(values)
        observe = hist.observe
        for p in values:
            observe(p)
            if 0.0 <= p <= 1.0:
                w.pred_bins[min(int(p * 10), 9)] += 1
            else:
                w.pred_out_of_range += 1
            if math.isfinite(p):
                k = _sketch_key(p)
                sketch[k] = sketch.get(k, 0) + 1
        return
    hist.observe_array(predictions)
    w.pred_count += int(predictions.size)
    w.pred_sum += float(predictions.sum())
    ok = (predictions >= 0.0) & (predictions <= 1.0)
    w.pred_out_of_range += int(predictions.size - ok.sum())
    bins = np.minimum((predictions[ok] * 10).astype(np.int64), 9)
    for i, c in enumerate(np.bincount(bins, minlength=10).tolist()):
        w.pred_bins[i] += c
    found, counts = np.unique(
        _sketch_keys(predictions[np.isfinite(predictions)]), return_counts=True
    )
    for k, c in zip(found.tolist(), counts.tolist(), strict=True):
        sketch[k] = sketch.get(k, 0) + c


def _observe_classes(hist: Histogram, w: _Window, outputs: np.ndarray) -> None:
    """k class probabilities per row (multiclass): the histogram counts the predicted class
    (argmax, k bins in column order); the mean and the Prometheus histogram take the top-class
    probability. A row with a value outside [0, 1] (or NaN) is out of range and not counted."""
    n, k = outputs.shape
    if w.pred_kind == "probability" or (w.pred_kind == "class" and len(w.pred_bins) != k):
        w.pred_out_of_range += n  # the version changed width mid-window: not mixed in
        return
    if w.pred_kind != "class":
        w.pred_kind = "class"
        w.pred_bins = [0] * k
    ok = ((outputs >= 0.0) & (outputs <= 1.0)).all(axis=1)
    w.pred_out_of_range += int(n - ok.sum())
    good = outputs[ok]
    if not good.shape[0]:
        return
    top = good.max(axis=1)
    hist.observe_array(top)
    w.pred_count += int(top.size)
    w.pred_sum += float(top.sum())
    for i, c in enumerate(np.bincount(good.argmax(axis=1), minlength=k).tolist()):
        w.pred_bins[i] += c


def _merged_bins(live: _Window, shadow: _Window) -> list[int]:
    """The live and shadow histograms added; a window that saw no prediction adds nothing."""
    if not shadow.pred_kind:
        return list(live.pred_bins)
    if not live.pred_kind:
        return list(shadow.pred_bins)
    if len(live.pred_bins) != len(shadow.pred_bins):
        return list(live.pred_bins)  # widths differ (a misconfigured version): live wins
    return [a + b for a, b in zip(live.pred_bins, shadow.pred_bins, strict=True)]


class Stats:
    """All gateway statistics: per public model, lockgate version and shadow flag."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, bool], _Series] = {}
        self.since: dict[str, float] = {}
        self.shadow_dropped: dict[str, int] = {}
        self.wal_commits = 0
        self.wal_records = 0
        self.wal_commit = Histogram(COMMIT_BUCKETS_S)
        self.wal_errors = 0
        self.segments_rolled = 0
        self.inflight = 0

    def get(self, model: str, version: str, shadow: bool) -> _Series:
        key = (model, version, shadow)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series()
            self.since.setdefault(model, time.time())
        return s

    def reset(self, model: str) -> float:
        now = time.time()
        self.since[model] = now
        for (m, _, _), s in self.series.items():
            if m == model:
                s.window = _Window()
        self.shadow_dropped.pop(model, None)
        return now

    def snapshot(self, model: str, route: Route | None) -> AdminStats:
        since = self.since.get(model, time.time())
        windows: dict[str, dict[bool, _Window]] = {}
        for (m, v, shadow), s in self.series.items():
            if m == model:
                windows.setdefault(v, {})[shadow] = s.window
        if route is not None:
            for v in route.versions:
                windows.setdefault(v, {})
        versions = {
            v: _version_snapshot(w.get(False, _Window()), w.get(True, _Window()), _role(route, v))
            for v, w in sorted(windows.items())
        }
        return {
            "model": model,
            "since": iso_utc(since),
            "since_unix": since,
            "now": iso_utc(time.time()),
            "route": None if route is None else route.to_json(),
            "histogram_edges": [round(i / 10, 1) for i in range(11)],
            "versions": versions,
            "shadow_dropped": self.shadow_dropped.get(model, 0),
        }


def _version_snapshot(live: _Window, shadow: _Window, role: str) -> AdminVersionStats:
    """Flat per-version stats (live + shadow where noted) plus detailed live/shadow blocks."""
    samples = live.latency.values + shadow.latency.values
    lat = np.asarray(samples) * 1000.0 if samples else None
    q = np.quantile(lat, [0.5, 0.9, 0.99]).tolist() if lat is not None else [None] * 3
    preds = live.pred_count + shadow.pred_count
    requests = live.requests
    errors = live.errors + shadow.errors
    violations = live.violations + shadow.violations
    total = live.requests + shadow.requests
    return {
        "role": role,
        "requests": requests,
        "answered": live.answered,
        "shadow_requests": shadow.requests,
        "errors": errors,
        "schema_violations": violations,
        "error_rate": errors / total if total else 0.0,
        "schema_violation_rate": violations / total if total else 0.0,
        "retried_on_champion": live.retried,
        "p50_ms": q[0],
        "p90_ms": q[1],
        "p99_ms": q[2],
        "latency_samples": len(samples),
        "mean_prediction": (live.pred_sum + shadow.pred_sum) / preds if preds else None,
        "prediction_histogram": _merged_bins(live, shadow),
        "prediction_kind": live.pred_kind or shadow.pred_kind or None,
        "prediction_sketch": {
            str(k): c
            for k, c in sorted(
                (
                    collections.Counter(live.pred_sketch) + collections.Counter(shadow.pred_sketch)
                ).items()
            )
        },
        "prediction_out_of_range": live.pred_out_of_range + shadow.pred_out_of_range,
        "shadow_mean_abs_diff": shadow.diff_sum / shadow.diff_count if shadow.diff_count else None,
        "shadow_max_abs_diff": shadow.diff_max if shadow.diff_count else None,
        "live": live.snapshot(shadow=False),
        "shadow": shadow.snapshot(shadow=True),
    }


def _role(route: Route | None, version: str) -> str:
    if route is None:
        return "unrouted"
    if version == route.champion:
        return "champion"
    if version == route.challenger:
        return "challenger"
    return "pinned"


def iso_utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")
