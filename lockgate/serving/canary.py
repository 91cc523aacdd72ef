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
   diff) on. A prediction PSI over ``max_prediction_psi`` rolls back only when sampling noise
   cannot explain it: it must also exceed the ``prediction_psi_confidence`` quantile of the PSI
   that samples of the same sizes from one distribution show (:func:`psi_noise`); otherwise the
   step holds, waiting for more requests (small samples differ by chance).
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

The pieces live in their own modules and are re-exported here: the policy
(:mod:`~lockgate.serving.canary_policy`), the gateway's statistics and the prediction PSI
(:mod:`~lockgate.serving.canary_stats`), the state and decision
(:mod:`~lockgate.serving.canary_state`), the per-tick checks
(:mod:`~lockgate.serving.canary_analysis`) and who may serve
(:mod:`~lockgate.serving.serving_permission`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lockgate._util.durations import format_duration
from lockgate.serving.canary_analysis import (
    baseline_counters,
    run_checks,
    step_metrics,
    step_window,
)
from lockgate.serving.canary_policy import ACTIONS, Action, CanaryError, CanaryPolicy, Phase
from lockgate.serving.canary_state import CanaryState, Decision
from lockgate.serving.canary_stats import VersionStats, prediction_psi, psi, psi_noise
from lockgate.serving.serving_permission import OVERRIDE_MARK, serving_refusal

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
    "psi_noise",
    "serving_refusal",
    "start",
]


def _label(percent: float) -> str:
    return f"{percent:g}%"


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
        baseline=baseline_counters(baseline),
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

    window, reset = step_window(challenger, state.baseline)
    if reset:
        state = state.model_copy(
            update={"baseline": baseline_counters(None, since=challenger.since)}
        )
    metrics = step_metrics(state, window, champion, now=now, reset=reset)
    checks = run_checks(policy, state, window, champion, metrics, task)
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
            f"{format_duration(policy.hold_seconds - elapsed)} more of the "
            f"{format_duration(policy.hold_seconds)} hold"
        )
    if n < m:
        kind = "shadow requests" if state.phase != "canary" else "requests"
        waiting.append(f"{m - n} more challenger {kind} ({n}/{m} min_requests)")
    waiting.extend(c.text for c in pending)
    if waiting:
        reason = f"hold {where}: waiting for " + " and ".join(waiting) + note
        return Decision(action="hold", state=state, reason=reason, metrics=metrics)

    passed = (
        f"held {format_duration(elapsed)} >= {format_duration(policy.hold_seconds)}, {n} challenger requests "
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
            "baseline": baseline_counters(challenger),
        }
    entry = _transition(
        state, action=action, now=now, to_weight=update["weight"], reason=reason, metrics=metrics
    )
    update["history"] = (*state.history, entry)
    return Decision(
        action=action, state=state.model_copy(update=update), reason=reason, metrics=metrics
    )
