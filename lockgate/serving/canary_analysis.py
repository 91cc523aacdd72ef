"""The canary's analysis of one tick: the challenger's counters at this step (net of the step's
baseline), the metrics measured, and the checks against the policy's limits (breach, pending or
skipped), as :func:`lockgate.serving.canary.decide` applies them (rules in its module docstring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from lockgate.gateway import prediction_sketch
from lockgate.serving.canary_policy import CanaryPolicy
from lockgate.serving.canary_state import CanaryState
from lockgate.serving.canary_stats import (
    COUNTERS,
    VersionStats,
    prediction_counts,
    psi,
    psi_noise,
    sketch_counts,
)

__all__ = ["Check", "baseline_counters", "run_checks", "step_metrics", "step_window"]


@dataclass(frozen=True)
class Check:
    metric: str
    status: Literal["breach", "pending", "skipped"]
    text: str
    actual: float | None = None
    threshold: float | None = None


def baseline_counters(stats: VersionStats | None, *, since: float | None = None) -> dict[str, Any]:
    """A baseline: the counters of ``stats`` (all zero for None) and their window start."""
    if stats is None:
        return {name: 0 for name in COUNTERS} | {"prediction_histogram": [], "since": since}
    out: dict[str, Any] = {name: getattr(stats, name) for name in COUNTERS}
    out["prediction_histogram"] = list(stats.prediction_histogram)
    if stats.prediction_sketch:
        out["prediction_sketch"] = {str(k): c for k, c in stats.prediction_sketch}
    out["since"] = stats.since
    return out


def step_window(stats: VersionStats, baseline: Mapping[str, Any]) -> tuple[VersionStats, bool]:
    """The challenger's stats at this step, and whether its counters were reset."""
    base = {name: int(baseline.get(name, 0)) for name in COUNTERS}
    base_hist = [int(v) for v in baseline.get("prediction_histogram", [])]
    hist = stats.prediction_histogram
    base_since = baseline.get("since")
    if base_since is not None and stats.since is not None and stats.since != base_since:
        return stats, True  # the gateway's window was reset
    hist_reset = bool(base_hist) and (
        len(base_hist) != len(hist) or any(h < b for h, b in zip(hist, base_hist, strict=False))
    )
    sketch = prediction_sketch.subtract(
        dict(stats.prediction_sketch), sketch_counts(baseline.get("prediction_sketch") or {})
    )
    if hist_reset or sketch is None or any(getattr(stats, n) < base[n] for n in COUNTERS):
        return stats, True
    if base_hist:
        hist = tuple(h - b for h, b in zip(hist, base_hist, strict=True))
    changes: dict[str, Any] = {name: getattr(stats, name) - base[name] for name in COUNTERS}
    changes["prediction_sketch"] = tuple(sorted(sketch.items()))
    return replace(stats, prediction_histogram=hist, **changes), False


def _rate_check(
    *, metric: str, count: int, n: int, limit: float, m: int, what: str, limit_text: str
) -> Check | None:
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
    return Check(metric, "breach", text, rate, limit)


def run_checks(
    policy: CanaryPolicy,
    state: CanaryState,
    window: VersionStats,
    champion: VersionStats,
    metrics: dict[str, Any],
    task: str = "binary",
) -> list[Check]:
    m = policy.min_requests
    n = window.requests + window.shadow_requests
    mirrored = state.phase != "canary"
    found: list[Check] = []

    def add(check: Check | None) -> None:
        if check is not None:
            found.append(check)

    for metric, count, limit_name, limit in (
        ("error_rate", window.errors, "max_error_rate", policy.max_error_rate),
        (
            "schema_violation_rate",
            window.schema_violations,
            "max_schema_violation_rate",
            policy.max_schema_violation_rate,
        ),
    ):
        add(
            _rate_check(
                metric=metric,
                count=count,
                n=n,
                limit=limit,
                m=m,
                what=metric,
                limit_text=f"{limit_name} {limit:g}",
            )
        )

    # latency
    p99, p50, limit_ms = window.p99_ms, window.p50_ms, policy.max_p99_ms
    if n >= m:
        if p99 is None:
            add(Check("p99_ms", "pending", "challenger p99_ms (not reported by the gateway)"))
        elif p99 > limit_ms:
            text = f"challenger p99 {p99:.1f} ms > max_p99_ms {limit_ms:.1f}"
            add(Check("p99_ms", "breach", text, p99, limit_ms))
    elif p50 is not None and p50 > limit_ms and n / 2 > 0.01 * m:
        actual = max(p50, p99 or p50)
        text = (
            f"challenger p50 {p50:.1f} ms already > max_p99_ms {limit_ms:.1f}: half of its {n} "
            f"requests are slower, more than 1% of min_requests {m}"
        )
        add(Check("p99_ms", "breach", text, actual, limit_ms))

    # comparisons with the champion
    comparisons = [
        policy.max_p99_ratio is not None,
        policy.max_error_rate_delta is not None,
        policy.max_prediction_psi is not None,
    ]
    champion_ok = champion.requests >= m
    if any(comparisons) and not champion_ok:
        add(
            Check(
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
            add(Check("error_rate_delta", "breach", text, delta, policy.max_error_rate_delta))
    if champion_ok and n >= m and policy.max_p99_ratio is not None:
        if p99 is None:
            pass  # already pending above
        elif champion.p99_ms is None or champion.p99_ms <= 0:
            add(Check("p99_ratio", "pending", "champion p99_ms (not reported by the gateway)"))
        else:
            ratio = p99 / champion.p99_ms
            metrics["p99_ratio"] = ratio
            if ratio > policy.max_p99_ratio:
                text = (
                    f"challenger p99 {p99:.1f} ms / champion p99 {champion.p99_ms:.1f} ms = "
                    f"{ratio:.2f} > max_p99_ratio {policy.max_p99_ratio:g}"
                )
                add(Check("p99_ratio", "breach", text, ratio, policy.max_p99_ratio))
    if champion_ok and n >= m and policy.max_prediction_psi is not None:
        what = "prediction_sketch" if task == "regression" else "prediction_histogram"
        mine = window.prediction_sketch if task == "regression" else window.prediction_histogram
        theirs = (
            champion.prediction_sketch if task == "regression" else champion.prediction_histogram
        )
        waive = "; report it or set max_prediction_psi=None"
        if not mine or not sum(c for c in _flat(mine)):
            add(Check("prediction_psi", "pending", f"challenger {what}{waive}"))
        elif not theirs or not sum(c for c in _flat(theirs)):
            add(Check("prediction_psi", "pending", f"champion {what}{waive}"))
        else:
            add(_psi_check(policy, champion, window, metrics, task))

    # shadow agreement
    limit_diff = policy.max_shadow_mean_abs_diff
    shadow_n = window.shadow_requests
    if limit_diff is not None and shadow_n >= m:
        diff = window.shadow_mean_abs_diff
        if diff is None:
            if mirrored:
                add(
                    Check(
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
            add(Check("shadow_mean_abs_diff", "breach", text, diff, limit_diff))
    return found


def _psi_check(
    policy: CanaryPolicy,
    champion: VersionStats,
    window: VersionStats,
    metrics: dict[str, Any],
    task: str,
) -> Check | None:
    """Prediction PSI over ``max_prediction_psi``: a breach when sampling noise cannot explain
    it (above the ``prediction_psi_confidence`` quantile of :func:`psi_noise`), else pending."""
    limit = policy.max_prediction_psi
    counts = prediction_counts(champion, window, task=task)
    assert counts is not None
    assert limit is not None
    value = psi(*counts)
    metrics["prediction_psi"] = value
    if value <= limit:
        return None
    text = f"prediction PSI challenger vs champion {value:.3f} > max_prediction_psi {limit:g}"
    confidence = policy.prediction_psi_confidence
    if confidence is None:
        return Check("prediction_psi", "breach", text, value, limit)
    noise = psi_noise(*counts, quantile=confidence)
    metrics["prediction_psi_noise"] = noise
    sizes = f"{sum(counts[1])} challenger and {sum(counts[0])} champion predictions"
    if value > noise:
        text += (
            f", beyond sampling noise ({confidence:g} quantile {noise:.3f} for {sizes} from one "
            "distribution)"
        )
        return Check("prediction_psi", "breach", text, value, limit)
    return Check(
        "prediction_psi",
        "pending",
        f"more requests: prediction PSI {value:.3f} > max_prediction_psi {limit:g} is within "
        f"sampling noise ({sizes} from one distribution show up to {noise:.3f}, "
        f"{confidence:g} quantile; prediction_psi_confidence=None judges the PSI alone)",
        value,
        limit,
    )


def _flat(counts: Sequence[Any]) -> list[int]:
    """Counts of a histogram (ints) or of a sketch (``(bin, count)`` pairs)."""
    return [c[1] if isinstance(c, tuple) else c for c in counts]


def step_metrics(
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
        "prediction_psi_noise": None,
        "shadow_mean_abs_diff": window.shadow_mean_abs_diff,
    }
