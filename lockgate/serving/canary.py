"""Progressive delivery of a challenger model: the canary controller's pure state machine.

:func:`start` opens a rollout and :func:`decide` is called on every tick (a sensor, a loop) with
the gateway's per-version statistics; it returns a :class:`Decision` whose ``state`` is the next
:class:`CanaryState`. Nothing here talks to the gateway, Dagster or a clock: ``now`` is passed in.

Modes (``CanaryPolicy.mode``):

``canary``     the challenger takes ``steps[0]`` % of live traffic, then each following step after
               its hold; passing the hold at the last step (100 %) promotes it.
``shadow``     first a *mirror window*: live weight 0 (the champion answers every request) while
               the gateway copies ``shadow_fraction`` of requests to the challenger. Passing it
               advances into the canary steps above (a shadow run proves the challenger agrees
               with the champion on real inputs, but nobody has been served by it yet, so its
               live traffic still ramps up under the same guards).
``bluegreen``  one mirror window like shadow, then all traffic switches at once: passing it
               promotes the challenger, a breach rolls it back.

Gateway routes (``PUT /admin/routes/{name}`` of :mod:`lockgate.gateway.app`) for a state: phase
``canary`` -> ``{"mode": "canary", "weight": state.weight}``; a mirror window (phase ``shadow`` or
``bluegreen``) -> ``{"mode": "shadow", "shadow_fraction": state.shadow_fraction}``; ``promoted``
-> the challenger becomes the champion; ``rolled_back`` -> the champion alone.

Statistics contract (:class:`VersionStats`, one per version; :meth:`VersionStats.from_gateway`
reads ``GET /admin/stats/{name}``): counters (``requests``, ``errors``, ``schema_violations``,
``shadow_requests``, ``prediction_histogram``) count from ``since`` (the gateway's window start:
its start or the last ``POST /admin/stats/{name}/reset``); ``errors``, ``schema_violations`` and
the histogram count every request the version received, live or shadow. What the prediction PSI
compares follows the pipeline's task (``decide(..., task=)``, :func:`prediction_psi`): binary,
the 10 fixed bins of P(label 1); multiclass, the k counts of the predicted class; regression,
the value sketches (``prediction_sketch``, :mod:`lockgate.gateway.prediction_sketch`) on the deciles
of the champion's. The sketch is a counter like the histogram and has a baseline too. Latencies (``p50_ms``,
``p99_ms``), ``mean_prediction`` and ``shadow_mean_abs_diff`` are taken as reported. The
challenger is judged on the current step alone: the state keeps a ``baseline`` of its counters
from when the step began and :func:`decide` subtracts it. When the window was reset meanwhile
(``since`` changed, or a counter fell below its baseline: a restart), the raw counters are used
and the baseline starts again from zero, so resetting the stats at each step is fine too. The
champion is the reference and is used as reported.

Rules of :func:`decide`, with ``n`` the requests the challenger received at this step
(``requests + shadow_requests``, failed ones included) and ``m = min_requests``:

1. **Any breach rolls back at once**, mid-hold included. Rates are judged with the *certain
   breach* rule ``count > limit * max(n, m)``: from ``m`` requests on this is the plain rate
   check; before that it fires only when the count already exceeds what ``m`` requests may hold,
   so the rate at ``m`` would break the limit even if every further request were clean (with the
   defaults, 3 errors or 1 schema violation suffice). Error rate, schema-violation rate and the
   error-rate delta (limit = champion error rate + ``max_error_rate_delta``) use it.
   ``p99_ms`` is judged from ``m`` requests on; earlier only when certain: the median ``p50_ms``
   already exceeds ``max_p99_ms`` and half of ``n`` is more than 1 % of ``m``. The p99 ratio,
   prediction PSI and shadow diff are judged from ``m`` requests (``m`` shadow requests for the
   diff) on.
2. Comparisons with the champion (p99 ratio, error delta, PSI) are skipped, and the reason says
   so, while the champion has served fewer than ``m`` requests: there is no trustworthy
   reference (for instance after a gateway restart).
3. A metric whose limit is set but that the gateway does not report (``p99_ms`` None, an empty
   histogram, no shadow diff in a mirror window) blocks advancing: the decision holds and names
   it. Set that limit to None to waive it.
4. With no breach, once the hold has elapsed **and** ``n >= m``: advance to the next step
   (``step_started_at = now``, new baseline); past the last step, promote. Otherwise hold, with a
   reason that says how long and how many requests are still missing.

Example:
    >>> policy = CanaryPolicy(hold_seconds="1h", min_requests=100)
    >>> state = start(policy, pipeline="fraud", champion="v1", challenger="v2", now=0.0)
    >>> state.weight
    0.01
    >>> ok = VersionStats(requests=150, p50_ms=4.0, p99_ms=20.0, prediction_histogram=(15,) * 10)
    >>> ref = VersionStats(requests=9000, p50_ms=4.0, p99_ms=19.0,
    ...                    prediction_histogram=(900,) * 10)
    >>> decide(policy, state, challenger=ok, champion=ref, now=600.0).action
    'hold'
    >>> step = decide(policy, state, challenger=ok, champion=ref, now=3600.0)
    >>> step.action, step.state.weight
    ('advance', 0.05)
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from lockgate.errors import LockgateError
from lockgate.gateway import prediction_sketch

__all__ = [
    "ACTIONS",
    "OVERRIDE_MARK",
    "CanaryError",
    "CanaryPolicy",
    "CanaryState",
    "Decision",
    "VersionStats",
    "decide",
    "prediction_psi",
    "psi",
    "serving_refusal",
    "start",
]

Mode = Literal["canary", "shadow", "bluegreen"]
Phase = Literal["canary", "shadow", "bluegreen"]
Status = Literal["running", "promoted", "rolled_back"]
Action = Literal["hold", "advance", "rollback", "promote"]

ACTIONS: tuple[Action, ...] = ("hold", "advance", "rollback", "promote")
"""Every :attr:`Decision.action`."""

_COUNTERS = ("requests", "errors", "schema_violations", "shadow_requests")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class CanaryError(LockgateError, ValueError):
    """The canary controller got inconsistent input (finished state, bad stats, ...)."""


def _parse_duration(value: str) -> float:
    """Seconds in ``"6h"``, ``"30s"``, ``"10m"``, ``"1h30m"``, ``"1.5d"``, ``"250ms"``, ``"90"``."""
    text = value.strip().lower().replace(" ", "")
    try:
        return float(text) if text and not text[-1].isalpha() else _sum_units(text)
    except ValueError:
        raise ValueError(
            f"hold_seconds {value!r} is not a duration; use seconds (21600) or a number with a "
            "unit: ms, s, m, h, d, e.g. '6h', '30s', '10m' or '1h30m'"
        ) from None


def _sum_units(text: str) -> float:
    if not _DURATION.fullmatch(text):
        raise ValueError(text)
    return sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text))


def _duration(seconds: float) -> str:
    """Two largest units, e.g. ``"2h 13m"``, ``"6h"``, ``"45s"``."""
    total = max(0, math.ceil(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    while len(parts) > 1 and parts[-1].startswith("0"):
        parts.pop()
    return " ".join(parts) or "0s"


def _label(percent: float) -> str:
    return f"{percent:g}%"


# policy -----------------------------------------------------------------------------------------


class CanaryPolicy(BaseModel):
    """How a challenger is rolled out and when it is rolled back.

    Attributes:
        steps: live traffic percentages of the canary, strictly increasing, ending at 100.
        hold_seconds: time spent at each step (and in a mirror window) before it may advance;
            a number of seconds or a string such as ``"6h"``, ``"30s"``, ``"10m"``, ``"1h30m"``.
        min_requests: requests the challenger must have received at a step before it advances.
        max_p99_ms: challenger p99 latency limit.
        max_error_rate: challenger error-rate limit (errors / requests received, live and shadow).
        max_schema_violation_rate: challenger schema-violation-rate limit.
        max_p99_ratio: limit on challenger p99 / champion p99; None waives it.
        max_error_rate_delta: limit on challenger error rate minus champion error rate; None
            waives it.
        max_prediction_psi: limit on the PSI between the champion's and the challenger's
            prediction distributions (see :func:`prediction_psi`: probabilities, predicted
            classes or regression values by task); None waives it.
        mode: ``"canary"``, ``"shadow"`` or ``"bluegreen"`` (see the module docstring).
        shadow_fraction: share of live requests mirrored to the challenger in a mirror window.
        max_shadow_mean_abs_diff: limit on the mean absolute difference between the
            challenger's and the champion's predictions on mirrored requests (the largest
            difference of a row's values for a multiclass model); in the label's units for a
            regression model, so set it to that scale; None waives it.
        interval_seconds: the canary sensor's minimum interval between ticks (the Dagster
            daemon evaluates sensors at most every 5 s or so).

    Example:
        >>> CanaryPolicy(steps=(10, 50, 100), hold_seconds="30m").hold_seconds
        1800.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    steps: tuple[float, ...] = (1.0, 5.0, 25.0, 100.0)
    hold_seconds: float = Field(default=6 * 3600.0, ge=0)
    min_requests: int = Field(default=200, ge=1)
    max_p99_ms: float = Field(default=50.0, gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_schema_violation_rate: float = Field(default=0.001, ge=0, le=1)
    max_p99_ratio: float | None = Field(default=1.5, gt=0)
    max_error_rate_delta: float | None = Field(default=0.005, ge=0, le=1)
    max_prediction_psi: float | None = Field(default=0.2, ge=0)
    mode: Mode = "canary"
    shadow_fraction: float = Field(default=1.0, gt=0, le=1)
    max_shadow_mean_abs_diff: float | None = Field(default=0.1, ge=0)
    interval_seconds: int = Field(default=30, ge=1)

    @field_validator("hold_seconds", mode="before")
    @classmethod
    def _duration_string(cls, value: Any) -> Any:
        return _parse_duration(value) if isinstance(value, str) else value

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError(
                "steps () is empty; give traffic percentages ending at 100, e.g. (1, 5, 25, 100)"
            )
        bad = [s for s in value if not 0 < s <= 100]
        if bad:
            raise ValueError(
                f"steps {list(value)} hold {bad}: each step is a traffic percentage in (0, 100]"
            )
        for before, after in itertools.pairwise(value):
            if after <= before:
                raise ValueError(
                    f"steps {list(value)} are not strictly increasing ({after:g} follows "
                    f"{before:g}); sort them and drop repeats"
                )
        if value[-1] != 100:
            raise ValueError(
                f"steps {list(value)} end at {value[-1]:g}%, not 100%; append 100 so that the "
                "last step sends all traffic to the challenger before promotion"
            )
        return value


# statistics -------------------------------------------------------------------------------------


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
        for name in _COUNTERS:
            object.__setattr__(self, name, _count(name, getattr(self, name)))
        hist = tuple(_count("prediction_histogram bin", v) for v in self.prediction_histogram)
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
        for name in _COUNTERS:
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
            prediction_sketch.add(sketch, _sketch_map(num(series, "prediction", "sketch") or {}))
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


def _sketch_map(value: Any) -> dict[int, int]:
    """A sketch given as ``{"bin": count}`` (JSON) or ``(bin, count)`` pairs, as ints."""
    items = value.items() if isinstance(value, Mapping) else value
    out: dict[int, int] = {}
    try:
        for k, c in items:
            if isinstance(k, (bool, float)):
                raise ValueError(k)
            out[int(k)] = out.get(int(k), 0) + _count("prediction_sketch count", c)
    except (TypeError, ValueError) as exc:
        raise CanaryError(
            f"prediction_sketch {value!r} is not a map of integer bins to counts ({exc}); report "
            "the gateway's prediction_sketch as it is, or leave it out"
        ) from None
    return out


def _sketch_pairs(value: Any) -> tuple[tuple[int, int], ...]:
    return tuple(sorted((k, c) for k, c in _sketch_map(value).items() if c))


def _count(name: str, value: Any) -> int:
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
    value = 0.0
    for e_count, a_count in zip(expected_counts, actual_counts, strict=True):
        e = max(e_count / totals[0], eps)
        a = max(a_count / totals[1], eps)
        value += (a - e) * math.log(a / e)
    return value


def prediction_psi(
    champion: VersionStats, challenger: VersionStats, *, task: str = "binary"
) -> float | None:
    """PSI between the champion's and the challenger's predictions, per task.

    ``"binary"``: the gateway's 10 fixed bins of P(label 1) over [0, 1]. ``"multiclass"``: the
    distribution of the predicted class (the gateway's k argmax counts). ``"regression"``: both
    :mod:`lockgate.gateway.prediction_sketch` sketches rebinned on the deciles of the champion's
    (:func:`lockgate.gateway.prediction_sketch.quantile_keys`), the usual quantile-bin PSI at the
    sketch's ~1 % resolution. The champion is ``expected`` (see :func:`psi`).

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
    if task in ("binary", "multiclass"):
        mine, theirs = challenger.prediction_histogram, champion.prediction_histogram
        if not sum(mine) or not sum(theirs):
            return None
        return psi(theirs, mine)
    if task != "regression":
        raise CanaryError(
            f"task {task!r} is unknown; rule: 'binary', 'multiclass' or 'regression' (the "
            "pipeline's ModelPipeline.task); fix: pass the spec's task"
        )
    reference, current = dict(champion.prediction_sketch), dict(challenger.prediction_sketch)
    if not sum(reference.values()) or not sum(current.values()):
        return None
    edges = prediction_sketch.quantile_keys(reference, bins=10)
    return psi(prediction_sketch.rebin(reference, edges), prediction_sketch.rebin(current, edges))


# state ------------------------------------------------------------------------------------------


class CanaryState(BaseModel):
    """Where a rollout stands; JSON round-trips through :meth:`to_dict` / :meth:`from_dict`.

    Attributes:
        pipeline: the pipeline rolled out.
        champion: the version serving before the rollout.
        challenger: the version rolled out.
        mode: the policy mode the rollout started with.
        phase: ``"canary"`` at a live step, ``"shadow"`` or ``"bluegreen"`` in a mirror window.
        status: ``"running"``, ``"promoted"`` or ``"rolled_back"``.
        step_index: index into ``CanaryPolicy.steps`` (0 in a mirror window).
        weight: share of live traffic (0..1) the challenger answers.
        shadow_fraction: share of live requests the gateway mirrors to the challenger (0 outside
            mirror windows).
        started_at: epoch seconds of :func:`start`.
        step_started_at: epoch seconds at which the current step (or window) began.
        baseline: the challenger's counters when the step began (``requests``, ``errors``,
            ``schema_violations``, ``shadow_requests``, ``prediction_histogram``) and the
            gateway window start they belong to (``since``).
        history: transitions, oldest first: ``{at, action, from_weight, to_weight, reason,
            metrics}``.
        rollback_reason: why it was rolled back, else None.

    Example:
        >>> s = start(CanaryPolicy(), pipeline="fraud", champion="v1", challenger="v2", now=0.0)
        >>> CanaryState.from_dict(s.to_dict()) == s
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    pipeline: str = Field(min_length=1)
    champion: str = Field(min_length=1)
    challenger: str = Field(min_length=1)
    mode: Mode
    phase: Phase
    status: Status = "running"
    step_index: int = Field(ge=0)
    weight: float = Field(ge=0, le=1)
    shadow_fraction: float = Field(default=0.0, ge=0, le=1)
    started_at: float
    step_started_at: float
    baseline: dict[str, Any] = Field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    rollback_reason: str | None = None

    @field_validator("baseline")
    @classmethod
    def _known_counters(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = [*_COUNTERS, "prediction_histogram", "prediction_sketch", "since"]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"baseline keys {unknown} are unknown; use {known}")
        since = value.get("since")
        if since is not None and (
            isinstance(since, bool)
            or not isinstance(since, int | float)
            or not math.isfinite(since)
        ):
            raise ValueError(f"baseline since {since!r} must be finite epoch seconds or None")
        for name in _COUNTERS:
            if name in value:
                _count(f"baseline {name}", value[name])
        for v in value.get("prediction_histogram", []):
            _count("baseline prediction_histogram bin", v)
        _sketch_map(value.get("prediction_sketch") or {})
        return value

    @property
    def running(self) -> bool:
        """True until the rollout is promoted or rolled back."""
        return self.status == "running"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples as lists)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryState:
        """Inverse of :meth:`to_dict`.

        Raises:
            CanaryError: the data is not a valid state (names the field and the rule).
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise CanaryError(
                f"canary state is invalid: {exc}; restore it from the audit log or start() a "
                "new rollout"
            ) from None


# decisions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` concluded.

    Attributes:
        action: ``"hold"``, ``"advance"``, ``"rollback"`` or ``"promote"``.
        state: the next state (equal to the input's on a plain hold, except for a baseline reset).
        reason: one sentence naming the metrics, values and thresholds behind the action, e.g.
            ``"challenger p99 84.1 ms > max_p99_ms 50.0 at step 5%"``; further breaches follow
            as ``"; also ..."``.
        breaches: ``{metric, actual, threshold}`` per broken limit (empty unless rollback).
        metrics: snapshot of what was measured at this tick (JSON-able).
    """

    action: Action
    state: CanaryState
    reason: str
    breaches: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, e.g. an audit-log payload."""
        return {
            "action": self.action,
            "reason": self.reason,
            "breaches": [dict(b) for b in self.breaches],
            "metrics": dict(self.metrics),
            "state": self.state.to_dict(),
        }


@dataclass(frozen=True)
class _Check:
    metric: str
    status: Literal["breach", "pending", "skipped"]
    text: str
    actual: float | None = None
    threshold: float | None = None


def _counters(stats: VersionStats | None, *, since: float | None = None) -> dict[str, Any]:
    """A baseline: the counters of ``stats`` (all zero for None) and their window start."""
    if stats is None:
        return {name: 0 for name in _COUNTERS} | {"prediction_histogram": [], "since": since}
    out: dict[str, Any] = {name: getattr(stats, name) for name in _COUNTERS}
    out["prediction_histogram"] = list(stats.prediction_histogram)
    if stats.prediction_sketch:
        out["prediction_sketch"] = {str(k): c for k, c in stats.prediction_sketch}
    out["since"] = stats.since
    return out


def _window(stats: VersionStats, baseline: Mapping[str, Any]) -> tuple[VersionStats, bool]:
    """The challenger's stats at this step, and whether its counters were reset."""
    base = {name: int(baseline.get(name, 0)) for name in _COUNTERS}
    base_hist = [int(v) for v in baseline.get("prediction_histogram", [])]
    hist = stats.prediction_histogram
    base_since = baseline.get("since")
    if base_since is not None and stats.since is not None and stats.since != base_since:
        return stats, True  # the gateway's window was reset
    hist_reset = bool(base_hist) and (
        len(base_hist) != len(hist) or any(h < b for h, b in zip(hist, base_hist, strict=False))
    )
    sketch = prediction_sketch.subtract(
        dict(stats.prediction_sketch), _sketch_map(baseline.get("prediction_sketch") or {})
    )
    if hist_reset or sketch is None or any(getattr(stats, n) < base[n] for n in _COUNTERS):
        return stats, True
    if base_hist:
        hist = tuple(h - b for h, b in zip(hist, base_hist, strict=True))
    changes: dict[str, Any] = {name: getattr(stats, name) - base[name] for name in _COUNTERS}
    changes["prediction_sketch"] = tuple(sorted(sketch.items()))
    return replace(stats, prediction_histogram=hist, **changes), False


def _rate_check(
    *, metric: str, count: int, n: int, limit: float, m: int, what: str, limit_text: str
) -> _Check | None:
    """The certain-breach rule: ``count > limit * max(n, m)``."""
    if count <= limit * max(n, m):
        return None
    rate = count / max(n, 1)
    if n >= m:
        text = f"challenger {what} {rate:.4g} ({count}/{n}) > {limit_text}"
    else:
        text = (
            f"challenger {what.replace('_rate', '')} count {count} in {n} requests already "
            f"exceeds {limit_text} * min_requests {m} = {limit * m:.4g}"
        )
    return _Check(metric, "breach", text, rate, limit)


def _checks(
    policy: CanaryPolicy,
    state: CanaryState,
    window: VersionStats,
    champion: VersionStats,
    metrics: dict[str, Any],
    task: str = "binary",
) -> list[_Check]:
    m = policy.min_requests
    n = window.requests + window.shadow_requests
    mirrored = state.phase != "canary"
    found: list[_Check] = []

    def add(check: _Check | None) -> None:
        if check is not None:
            found.append(check)

    add(
        _rate_check(
            metric="error_rate",
            count=window.errors,
            n=n,
            limit=policy.max_error_rate,
            m=m,
            what="error_rate",
            limit_text=f"max_error_rate {policy.max_error_rate:g}",
        )
    )
    add(
        _rate_check(
            metric="schema_violation_rate",
            count=window.schema_violations,
            n=n,
            limit=policy.max_schema_violation_rate,
            m=m,
            what="schema_violation_rate",
            limit_text=f"max_schema_violation_rate {policy.max_schema_violation_rate:g}",
        )
    )

    # latency
    p99, p50, limit_ms = window.p99_ms, window.p50_ms, policy.max_p99_ms
    if n >= m:
        if p99 is None:
            add(_Check("p99_ms", "pending", "challenger p99_ms (not reported by the gateway)"))
        elif p99 > limit_ms:
            text = f"challenger p99 {p99:.1f} ms > max_p99_ms {limit_ms:.1f}"
            add(_Check("p99_ms", "breach", text, p99, limit_ms))
    elif p50 is not None and p50 > limit_ms and n / 2 > 0.01 * m:
        actual = max(p50, p99 or p50)
        text = (
            f"challenger p50 {p50:.1f} ms already > max_p99_ms {limit_ms:.1f}: half of its {n} "
            f"requests are slower, more than 1% of min_requests {m}"
        )
        add(_Check("p99_ms", "breach", text, actual, limit_ms))

    # comparisons with the champion
    comparisons = [
        policy.max_p99_ratio is not None,
        policy.max_error_rate_delta is not None,
        policy.max_prediction_psi is not None,
    ]
    champion_ok = champion.requests >= m
    if any(comparisons) and not champion_ok:
        add(
            _Check(
                "champion_requests",
                "skipped",
                f"champion comparisons skipped: champion served {champion.requests} < "
                f"min_requests {m}",
            )
        )
    if champion_ok and policy.max_error_rate_delta is not None:
        champion_rate = champion.errors / champion.requests
        limit = champion_rate + policy.max_error_rate_delta
        delta = window.errors / max(n, 1) - champion_rate
        metrics["error_rate_delta"] = delta if n else None
        if window.errors > limit * max(n, m):
            if n >= m:
                text = (
                    f"challenger error_rate {window.errors / n:.4g} - champion error_rate "
                    f"{champion_rate:.4g} = {delta:.4g} > max_error_rate_delta "
                    f"{policy.max_error_rate_delta:g}"
                )
            else:
                text = (
                    f"challenger error count {window.errors} in {n} requests already exceeds "
                    f"(champion error_rate {champion_rate:.4g} + max_error_rate_delta "
                    f"{policy.max_error_rate_delta:g}) * min_requests {m} = {limit * m:.4g}"
                )
            add(_Check("error_rate_delta", "breach", text, delta, policy.max_error_rate_delta))
    if champion_ok and n >= m and policy.max_p99_ratio is not None:
        if p99 is None:
            pass  # already pending above
        elif champion.p99_ms is None or champion.p99_ms <= 0:
            add(_Check("p99_ratio", "pending", "champion p99_ms (not reported by the gateway)"))
        else:
            ratio = p99 / champion.p99_ms
            metrics["p99_ratio"] = ratio
            if ratio > policy.max_p99_ratio:
                text = (
                    f"challenger p99 {p99:.1f} ms / champion p99 {champion.p99_ms:.1f} ms = "
                    f"{ratio:.2f} > max_p99_ratio {policy.max_p99_ratio:g}"
                )
                add(_Check("p99_ratio", "breach", text, ratio, policy.max_p99_ratio))
    if champion_ok and n >= m and policy.max_prediction_psi is not None:
        what = "prediction_sketch" if task == "regression" else "prediction_histogram"
        mine = window.prediction_sketch if task == "regression" else window.prediction_histogram
        theirs = (
            champion.prediction_sketch if task == "regression" else champion.prediction_histogram
        )
        waive = "; report it or set max_prediction_psi=None"
        if not mine or not sum(c for c in _flat(mine)):
            add(_Check("prediction_psi", "pending", f"challenger {what}{waive}"))
        elif not theirs or not sum(c for c in _flat(theirs)):
            add(_Check("prediction_psi", "pending", f"champion {what}{waive}"))
        else:
            value = prediction_psi(champion, window, task=task)
            assert value is not None
            metrics["prediction_psi"] = value
            if value > policy.max_prediction_psi:
                text = (
                    f"prediction PSI challenger vs champion {value:.3f} > max_prediction_psi "
                    f"{policy.max_prediction_psi:g}"
                )
                add(_Check("prediction_psi", "breach", text, value, policy.max_prediction_psi))

    # shadow agreement
    limit_diff = policy.max_shadow_mean_abs_diff
    shadow_n = window.shadow_requests
    if limit_diff is not None and shadow_n >= m:
        diff = window.shadow_mean_abs_diff
        if diff is None:
            if mirrored:
                add(
                    _Check(
                        "shadow_mean_abs_diff",
                        "pending",
                        "challenger shadow_mean_abs_diff; report it or set "
                        "max_shadow_mean_abs_diff=None",
                    )
                )
        elif diff > limit_diff:
            text = (
                f"challenger shadow mean |prediction - champion| {diff:.4g} over {shadow_n} shadow "
                f"requests > max_shadow_mean_abs_diff {limit_diff:g}"
            )
            add(_Check("shadow_mean_abs_diff", "breach", text, diff, limit_diff))
    return found


def _flat(counts: Sequence[Any]) -> list[int]:
    """Counts of a histogram (ints) or of a sketch (``(bin, count)`` pairs)."""
    return [c[1] if isinstance(c, tuple) else c for c in counts]


def _measure(
    state: CanaryState, window: VersionStats, champion: VersionStats, *, now: float, reset: bool
) -> dict[str, Any]:
    n = window.requests + window.shadow_requests
    return {
        "elapsed_seconds": max(0.0, now - state.step_started_at),
        "counters_reset": reset,
        "challenger_requests": window.requests,
        "challenger_shadow_requests": window.shadow_requests,
        "challenger_total_requests": n,
        "challenger_errors": window.errors,
        "challenger_error_rate": window.errors / n if n else None,
        "challenger_schema_violations": window.schema_violations,
        "challenger_schema_violation_rate": window.schema_violations / n if n else None,
        "challenger_p50_ms": window.p50_ms,
        "challenger_p99_ms": window.p99_ms,
        "challenger_mean_prediction": window.mean_prediction,
        "champion_requests": champion.requests,
        "champion_error_rate": champion.errors / champion.requests if champion.requests else None,
        "champion_p99_ms": champion.p99_ms,
        "champion_mean_prediction": champion.mean_prediction,
        "p99_ratio": None,
        "error_rate_delta": None,
        "prediction_psi": None,
        "shadow_mean_abs_diff": window.shadow_mean_abs_diff,
    }


def _where(policy: CanaryPolicy, state: CanaryState) -> str:
    if state.phase == "shadow":
        return "in the shadow window"
    if state.phase == "bluegreen":
        return "in the blue-green window"
    return f"at step {_label(policy.steps[state.step_index])}"


def _transition(
    state: CanaryState,
    *,
    action: str,
    now: float,
    to_weight: float,
    reason: str,
    metrics: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "at": now,
        "action": action,
        "from_weight": state.weight,
        "to_weight": to_weight,
        "reason": reason,
        "metrics": dict(metrics),
    }


OVERRIDE_MARK = "[gate overridden]"
"""Suffix ``lockgate promote --override-gate`` gives the reason of its alias history entry."""


def serving_refusal(
    pipeline: str,
    version: str,
    *,
    verdicts: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]] | None = None,
    alias: str = "champion",
    audited_overrides: Collection[str] | None = None,
) -> str | None:
    """Why ``version`` may not get live traffic as ``alias`` of ``pipeline`` (None: it may).

    The controller serves a version only when

    1. (with ``history``) the newest move of ``alias`` in the registry's alias history points at
       it: an alias value without its history entry was written by hand, and
    2. it has a passing gate verdict, or that history entry is an audited gate override
       (``lockgate promote --override-gate``: its reason ends with :data:`OVERRIDE_MARK`).

    Args:
        pipeline: the pipeline.
        version: the version the alias (or a canary state) names.
        verdicts: every gate verdict on ``version`` (``ArtifactRegistry.verdicts``).
        history: the alias history (``ArtifactRegistry.aliases(pipeline)["history"]``); None
            skips rule 1 (a canary challenger is checked by its verdicts alone).
        alias: the alias checked against ``history``.
        audited_overrides: the versions whose override promotion is in the audit log (the
            hash-chained log, whose head is signed: an alias history edited by hand cannot add
            one); None accepts an override marker in the history alone.

    Example:
        >>> moves = [{"alias": "champion", "from": None, "to": "v1", "reason": "first"}]
        >>> serving_refusal("fraud", "v1", verdicts=[{"passed": True}], history=moves) is None
        True
        >>> print(serving_refusal("fraud", "v2", verdicts=[{"passed": True}], history=moves))
        ... # doctest: +ELLIPSIS
        fraud:champion names v2 but the newest champion move in the alias history is to 'v1'...
    """
    problems: list[str] = []
    entry: Mapping[str, Any] | None = None
    if history is not None:
        moves = [h for h in history if h.get("alias") == alias]
        entry = moves[-1] if moves else None
        last = entry.get("to") if entry is not None else None
        if last != version:
            entry = None  # an override on another version's move does not count
            problems.append(
                f"{pipeline}:{alias} names {version} but the newest {alias} move in the alias "
                f"history is to {last!r}: the alias file was written without moving the alias "
                f"(a hand edit); rule: only versions moved there with a history entry serve; "
                f"fix: `lockgate promote {pipeline} {version} --reason ...` (or restore the "
                "alias file)"
            )
    overridden = entry is not None and str(entry.get("reason", "")).endswith(OVERRIDE_MARK)
    passed = any(v.get("passed") is True for v in verdicts)
    unaudited = audited_overrides is not None and version not in audited_overrides
    if overridden and unaudited and not passed:
        overridden = False
        problems.append(
            f"the alias history says {version} was promoted with --override-gate, but the audit "
            "log has no such promotion: an override is honoured only when `lockgate promote "
            "--override-gate` recorded it there"
        )
    if not overridden and not passed:
        if verdicts:
            rules = verdicts[-1].get("rules", [])
            failed = [str(r.get("rule")) for r in rules if not r.get("passed")]
            why = f"its gate FAILED ({', '.join(failed) or 'no rule passed'})"
        else:
            why = "it has no gate verdict at all"
        problems.insert(  # the gate first: it is what the rule protects
            0,
            f"{pipeline} {version} has no passing gate verdict: {why}; rule: only versions "
            f"whose gate passed get live traffic; fix: retrain and pass the gate, or override "
            f"it on record with `lockgate promote {pipeline} {version} --override-gate "
            "--reason ...`",
        )
    return "; also ".join(problems) or None


def start(
    policy: CanaryPolicy,
    *,
    pipeline: str,
    champion: str,
    challenger: str,
    now: float,
    baseline: VersionStats | None = None,
) -> CanaryState:
    """Open a rollout of ``challenger`` against ``champion``.

    Args:
        policy: the rollout policy; its mode picks the first phase.
        pipeline: the pipeline rolled out.
        champion: the serving version.
        challenger: the version to roll out.
        now: epoch seconds.
        baseline: the challenger's counters now, when the gateway already served it (smoke
            tests); the first step counts only what comes after. Default: all zero.

    Raises:
        CanaryError: champion and challenger are the same version, or ``now`` is not finite.

    Example:
        >>> s = start(CanaryPolicy(mode="shadow"), pipeline="fraud", champion="v1",
        ...           challenger="v2", now=0.0)
        >>> s.phase, s.weight, s.shadow_fraction
        ('shadow', 0.0, 1.0)
    """
    if champion == challenger:
        raise CanaryError(
            f"challenger {challenger!r} is the champion already; roll out a different version"
        )
    if not math.isfinite(now):
        raise CanaryError(f"now {now!r} must be finite epoch seconds")
    phase: Phase = policy.mode
    weight = policy.steps[0] / 100 if phase == "canary" else 0.0
    mirror = policy.shadow_fraction if phase != "canary" else 0.0
    if phase == "canary":
        reason = (
            f"started canary of {challenger} against {champion} at step {_label(policy.steps[0])}"
        )
    else:
        reason = (
            f"started {phase} window of {challenger} against {champion}: "
            f"{policy.shadow_fraction:.0%} of requests mirrored, live weight 0"
        )
    draft = CanaryState(
        pipeline=pipeline,
        champion=champion,
        challenger=challenger,
        mode=policy.mode,
        phase=phase,
        step_index=0,
        weight=0.0,
        shadow_fraction=mirror,
        started_at=now,
        step_started_at=now,
        baseline=_counters(baseline),
    )
    entry = _transition(draft, action="start", now=now, to_weight=weight, reason=reason, metrics={})
    return draft.model_copy(update={"weight": weight, "history": (entry,)})


def decide(
    policy: CanaryPolicy,
    state: CanaryState,
    *,
    challenger: VersionStats,
    champion: VersionStats,
    now: float,
    task: str = "binary",
) -> Decision:
    """One tick of the controller: hold, advance, promote or roll back (rules: module docstring).

    Args:
        policy: the rollout policy (its mode must match the state's).
        state: the current, running state.
        challenger: the gateway's stats for the challenger (cumulative counters).
        champion: the gateway's stats for the champion.
        now: epoch seconds.
        task: the pipeline's task; it picks what the prediction PSI compares
            (:func:`prediction_psi`): binary probabilities, multiclass predicted classes or
            regression values.

    Raises:
        CanaryError: the state is finished, was started under another mode, or its step does
            not exist in the policy; or the histograms have different bin counts; or the task
            is unknown.

    Example:
        >>> policy = CanaryPolicy(hold_seconds=60, min_requests=10, max_prediction_psi=None)
        >>> s = start(policy, pipeline="fraud", champion="v1", challenger="v2", now=0.0)
        >>> bad = VersionStats(requests=40, errors=9, p99_ms=10.0)
        >>> d = decide(policy, s, challenger=bad, champion=VersionStats(), now=5.0)
        >>> d.action, d.state.status, d.breaches[0]["metric"]
        ('rollback', 'rolled_back', 'error_rate')
    """
    if not state.running:
        raise CanaryError(
            f"the rollout of {state.challenger} for {state.pipeline} is {state.status} already; "
            "start() a new one instead of deciding on a finished state"
        )
    if state.mode != policy.mode:
        raise CanaryError(
            f"state mode {state.mode!r} differs from policy mode {policy.mode!r}; finish or roll "
            "back this rollout before changing the mode"
        )
    if state.step_index >= len(policy.steps):
        raise CanaryError(
            f"state step_index {state.step_index} does not exist in policy steps "
            f"{list(policy.steps)}; keep the steps of a running rollout"
        )
    if not math.isfinite(now):
        raise CanaryError(f"now {now!r} must be finite epoch seconds")

    window, reset = _window(challenger, state.baseline)
    if reset:
        state = state.model_copy(update={"baseline": _counters(None, since=challenger.since)})
    metrics = _measure(state, window, champion, now=now, reset=reset)
    checks = _checks(policy, state, window, champion, metrics, task)
    where = _where(policy, state)
    breaches = [c for c in checks if c.status == "breach"]
    pending = [c for c in checks if c.status == "pending"]
    notes = [c.text for c in checks if c.status == "skipped"]
    note = f" ({'; '.join(notes)})" if notes else ""

    if breaches:
        reason = f"{breaches[0].text} {where}" + "".join(f"; also {c.text}" for c in breaches[1:])
        entry = _transition(
            state, action="rollback", now=now, to_weight=0.0, reason=reason, metrics=metrics
        )
        rolled = state.model_copy(
            update={
                "status": "rolled_back",
                "weight": 0.0,
                "shadow_fraction": 0.0,
                "rollback_reason": reason,
                "history": (*state.history, entry),
            }
        )
        return Decision(
            action="rollback",
            state=rolled,
            reason=reason,
            breaches=[
                {"metric": c.metric, "actual": c.actual, "threshold": c.threshold} for c in breaches
            ],
            metrics=metrics,
        )

    n = window.requests + window.shadow_requests
    m = policy.min_requests
    elapsed = metrics["elapsed_seconds"]
    waiting: list[str] = []
    if elapsed < policy.hold_seconds:
        waiting.append(
            f"{_duration(policy.hold_seconds - elapsed)} more of the "
            f"{_duration(policy.hold_seconds)} hold"
        )
    if n < m:
        kind = "shadow requests" if state.phase != "canary" else "requests"
        waiting.append(f"{m - n} more challenger {kind} ({n}/{m} min_requests)")
    waiting.extend(c.text for c in pending)
    if waiting:
        reason = f"hold {where}: waiting for " + " and ".join(waiting) + note
        return Decision(action="hold", state=state, reason=reason, metrics=metrics)

    passed = (
        f"held {_duration(elapsed)} >= {_duration(policy.hold_seconds)}, {n} challenger requests "
        f">= min_requests {m}, no breach{note}"
    )
    if state.phase == "bluegreen" or (
        state.phase == "canary" and state.step_index == len(policy.steps) - 1
    ):
        action: Action = "promote"
        reason = f"promote {state.challenger} {where}: {passed}"
        update: dict[str, Any] = {"status": "promoted", "weight": 1.0, "shadow_fraction": 0.0}
    else:
        action = "advance"
        index = 0 if state.phase == "shadow" else state.step_index + 1
        target = _label(policy.steps[index])
        reason = f"advance {where} to step {target}: {passed}"
        update = {
            "phase": "canary",
            "step_index": index,
            "weight": policy.steps[index] / 100,
            "shadow_fraction": 0.0,
            "step_started_at": now,
            "baseline": _counters(challenger),
        }
    entry = _transition(
        state, action=action, now=now, to_weight=update["weight"], reason=reason, metrics=metrics
    )
    update["history"] = (*state.history, entry)
    return Decision(
        action=action, state=state.model_copy(update=update), reason=reason, metrics=metrics
    )
