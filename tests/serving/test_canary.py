"""The canary controller's pure state machine: holds, advances, promotions and rollbacks."""

from __future__ import annotations

import json
import math

import numpy as np
import pydantic
import pytest

from lockgate.serving.canary import (
    ACTIONS,
    OVERRIDE_MARK,
    CanaryError,
    CanaryPolicy,
    CanaryState,
    Decision,
    VersionStats,
    decide,
    psi,
    serving_refusal,
    start,
)

HOUR = 3600.0
SHAPE = (5, 10, 15, 20, 15, 12, 10, 7, 4, 2)  # prediction histogram shape, 100 per unit
CHAMPION = VersionStats(
    requests=100_000,
    errors=200,  # 0.2 %
    schema_violations=0,
    p50_ms=6.0,
    p99_ms=20.0,
    mean_prediction=0.31,
    prediction_histogram=tuple(c * 1000 for c in SHAPE),
)


def _policy(**overrides: object) -> CanaryPolicy:
    return CanaryPolicy(**{"hold_seconds": "1h", "min_requests": 200, **overrides})


def _stats(
    requests: int,
    *,
    errors: int = 0,
    schema_violations: int = 0,
    p50_ms: float | None = 6.0,
    p99_ms: float | None = 22.0,
    shape: tuple[int, ...] = SHAPE,
    shadow_requests: int = 0,
    shadow_mean_abs_diff: float | None = None,
) -> VersionStats:
    """Cumulative challenger stats whose histogram follows ``shape`` (scaled to the requests)."""
    answered = requests + shadow_requests
    total = sum(shape)
    hist = [answered * c // total for c in shape]
    if hist:
        hist[0] += answered - sum(hist)
    return VersionStats(
        requests=requests,
        errors=errors,
        schema_violations=schema_violations,
        p50_ms=p50_ms,
        p99_ms=p99_ms,
        mean_prediction=0.3,
        prediction_histogram=tuple(hist),
        shadow_requests=shadow_requests,
        shadow_mean_abs_diff=shadow_mean_abs_diff,
    )


def _started(policy: CanaryPolicy | None = None) -> CanaryState:
    return start(policy or _policy(), pipeline="fraud", champion="v1", challenger="v2", now=0.0)


def _json_round_trip(state: CanaryState) -> CanaryState:
    return CanaryState.from_dict(json.loads(json.dumps(state.to_dict(), allow_nan=False)))


# the happy path ----------------------------------------------------------------------------------


def test_start_puts_the_challenger_on_the_first_step() -> None:
    state = _started()
    assert (state.status, state.phase, state.step_index, state.weight) == (
        "running",
        "canary",
        0,
        0.01,
    )
    assert state.shadow_fraction == 0.0
    assert state.step_started_at == state.started_at == 0.0
    assert state.baseline["requests"] == 0
    assert [h["action"] for h in state.history] == ["start"]
    assert state.history[0]["to_weight"] == 0.01
    assert state.rollback_reason is None


def test_happy_path_walks_every_step_and_promotes() -> None:
    policy = _policy()
    state = _started(policy)
    now, served = 0.0, 0
    weights = [state.weight]
    for step in (1, 5, 25, 100):
        assert state.weight == step / 100
        # mid-hold, enough requests: hold, saying how long is left
        served += 250
        held = decide(policy, state, challenger=_stats(served), champion=CHAMPION, now=now + 600)
        assert held.action == "hold"
        assert held.state == state
        assert held.breaches == []
        assert f"hold at step {step}%" in held.reason
        assert "50m more of the 1h hold" in held.reason
        assert "requests" not in held.reason.split("waiting for")[1]
        # hold elapsed: advance (or promote at 100 %)
        now += HOUR
        decision = decide(policy, state, challenger=_stats(served), champion=CHAMPION, now=now)
        assert decision.reason.startswith("promote" if step == 100 else "advance")
        assert "250 challenger requests >= min_requests 200" in decision.reason
        state = decision.state
        weights.append(state.weight)
        if step != 100:
            assert decision.action == "advance"
            assert state.step_started_at == now
            assert state.baseline["requests"] == served  # the next step counts from here
        else:
            assert decision.action == "promote"
    assert weights == [0.01, 0.05, 0.25, 1.0, 1.0]
    assert state.status == "promoted"
    assert state.weight == 1.0
    assert not state.running
    assert [h["action"] for h in state.history] == [
        "start",
        "advance",
        "advance",
        "advance",
        "promote",
    ]
    assert [(h["from_weight"], h["to_weight"]) for h in state.history] == [
        (0.0, 0.01),
        (0.01, 0.05),
        (0.05, 0.25),
        (0.25, 1.0),
        (1.0, 1.0),
    ]
    snapshot = state.history[1]["metrics"]
    assert snapshot["challenger_requests"] == 250
    assert snapshot["p99_ratio"] == pytest.approx(22.0 / 20.0)
    assert snapshot["prediction_psi"] == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(CanaryError, match="promoted already"):
        decide(policy, state, challenger=_stats(served), champion=CHAMPION, now=now + 1)


def test_no_advance_before_min_requests_even_after_the_hold() -> None:
    policy = _policy()
    state = _started(policy)
    decision = decide(policy, state, challenger=_stats(143), champion=CHAMPION, now=5 * HOUR)
    assert decision.action == "hold"
    assert "57 more challenger requests (143/200 min_requests)" in decision.reason
    assert "hold" not in decision.reason.split("waiting for")[1]  # the time is not what's missing
    decision = decide(policy, state, challenger=_stats(200), champion=CHAMPION, now=5 * HOUR)
    assert decision.action == "advance"


def test_hold_reason_names_time_and_requests_missing() -> None:
    policy = _policy(hold_seconds="6h")
    state = _started(policy)
    now = 3 * HOUR + 47 * 60
    decision = decide(policy, state, challenger=_stats(20), champion=CHAMPION, now=now)
    assert decision.action == "hold"
    assert decision.reason == (
        "hold at step 1%: waiting for 2h 13m more of the 6h hold and "
        "180 more challenger requests (20/200 min_requests)"
    )
    assert decision.metrics["challenger_requests"] == 20


def test_each_step_counts_only_its_own_requests() -> None:
    policy = _policy()
    state = decide(policy, _started(policy), challenger=_stats(5000), champion=CHAMPION, now=HOUR)
    assert state.state.weight == 0.05
    later = decide(policy, state.state, challenger=_stats(5100), champion=CHAMPION, now=3 * HOUR)
    assert later.action == "hold"
    assert "100 more challenger requests (100/200" in later.reason


def test_gateway_restart_resets_the_baseline() -> None:
    policy = _policy()
    state = decide(policy, _started(policy), challenger=_stats(5000), champion=CHAMPION, now=HOUR)
    restarted = decide(policy, state.state, challenger=_stats(50), champion=CHAMPION, now=HOUR + 60)
    assert restarted.action == "hold"
    assert restarted.metrics["counters_reset"] is True
    assert restarted.metrics["challenger_requests"] == 50
    assert restarted.state.baseline["requests"] == 0
    after = decide(policy, restarted.state, challenger=_stats(250), champion=CHAMPION, now=3 * HOUR)
    assert after.action == "advance"
    assert after.metrics["challenger_requests"] == 250


# rollbacks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stats", "champion", "metric", "needles"),
    [
        (
            _stats(300, p99_ms=84.1),
            VersionStats(**{**CHAMPION.to_dict(), "p99_ms": 80.0}),
            "p99_ms",
            ["challenger p99 84.1 ms > max_p99_ms 50.0 at step 1%"],
        ),
        (
            _stats(300, errors=10),
            VersionStats(**{**CHAMPION.to_dict(), "errors": 3000}),  # delta within its limit
            "error_rate",
            ["challenger error_rate 0.03333 (10/300) > max_error_rate 0.01 at step 1%"],
        ),
        (
            _stats(300, schema_violations=2),
            CHAMPION,
            "schema_violation_rate",
            ["challenger schema_violation_rate 0.006667 (2/300) > max_schema_violation_rate 0.001"],
        ),
        (
            _stats(300, p99_ms=45.0),
            CHAMPION,
            "p99_ratio",
            ["challenger p99 45.0 ms / champion p99 20.0 ms = 2.25 > max_p99_ratio 1.5"],
        ),
        (
            _stats(300, errors=2),
            VersionStats(**{**CHAMPION.to_dict(), "errors": 0}),
            "error_rate_delta",
            [
                "challenger error_rate 0.006667 - champion error_rate 0 = 0.006667",
                "> max_error_rate_delta 0.005",
            ],
        ),
        (
            _stats(300, shape=(2, 4, 7, 10, 12, 15, 20, 15, 10, 5)),
            CHAMPION,
            "prediction_psi",
            ["prediction PSI challenger vs champion", "> max_prediction_psi 0.2"],
        ),
    ],
    ids=["latency", "error_rate", "schema", "p99_ratio", "error_delta", "psi"],
)
def test_each_breach_rolls_back_with_its_numbers(
    stats: VersionStats, champion: VersionStats, metric: str, needles: list[str]
) -> None:
    policy = _policy()
    state = _started(policy)
    decision = decide(policy, state, challenger=stats, champion=champion, now=600.0)  # mid-hold
    assert decision.action == "rollback"
    assert [b["metric"] for b in decision.breaches] == [metric]
    breach = decision.breaches[0]
    assert set(breach) == {"metric", "actual", "threshold"}
    assert breach["actual"] > breach["threshold"]
    for needle in needles:
        assert needle in decision.reason
    rolled = decision.state
    assert (rolled.status, rolled.weight, rolled.rollback_reason) == (
        "rolled_back",
        0.0,
        decision.reason,
    )
    assert rolled.history[-1]["action"] == "rollback"
    assert rolled.history[-1]["to_weight"] == 0.0
    assert rolled.history[-1]["metrics"] == decision.metrics
    with pytest.raises(CanaryError, match="rolled_back already"):
        decide(policy, rolled, challenger=stats, champion=champion, now=700.0)


def test_psi_breach_reports_the_value() -> None:
    policy = _policy()
    skewed = _stats(300, shape=(2, 4, 7, 10, 12, 15, 20, 15, 10, 5))
    decision = decide(policy, _started(policy), challenger=skewed, champion=CHAMPION, now=60.0)
    value = decision.breaches[0]["actual"]
    assert value == pytest.approx(psi(CHAMPION.prediction_histogram, skewed.prediction_histogram))
    assert f"{value:.3f} > max_prediction_psi 0.2" in decision.reason


def test_several_breaches_are_all_reported() -> None:
    policy = _policy()
    decision = decide(
        policy,
        _started(policy),
        challenger=_stats(300, errors=10, p99_ms=90.0),
        champion=CHAMPION,
        now=60.0,
    )
    metrics = [b["metric"] for b in decision.breaches]
    assert metrics == ["error_rate", "p99_ms", "error_rate_delta", "p99_ratio"]
    assert decision.reason.count("; also ") == 3
    assert decision.reason.startswith(
        "challenger error_rate 0.03333 (10/300) > max_error_rate 0.01 at step 1%; also "
    )


def test_breach_at_a_later_step_names_that_step() -> None:
    policy = _policy()
    state = decide(policy, _started(policy), challenger=_stats(300), champion=CHAMPION, now=HOUR)
    state = decide(policy, state.state, challenger=_stats(600), champion=CHAMPION, now=2 * HOUR)
    assert state.state.weight == 0.25
    bad = decide(
        policy,
        state.state,
        challenger=_stats(900, p99_ms=84.1),
        champion=CHAMPION,
        now=2 * HOUR + 5,
    )
    assert bad.action == "rollback"
    assert "challenger p99 84.1 ms > max_p99_ms 50.0 at step 25%" in bad.reason
    assert bad.state.history[-1]["from_weight"] == 0.25


def test_certain_error_breach_rolls_back_before_min_requests() -> None:
    """3 errors exceed max_error_rate 0.01 * min_requests 200 = 2: the rate at 200 must break."""
    policy = _policy(max_error_rate_delta=None)
    state = _started(policy)
    few = decide(policy, state, challenger=_stats(20, errors=2), champion=CHAMPION, now=60.0)
    assert few.action == "hold"  # 2 errors: 2/200 = 0.01 is still within the limit
    certain = decide(policy, state, challenger=_stats(20, errors=3), champion=CHAMPION, now=60.0)
    assert certain.action == "rollback"
    assert certain.reason == (
        "challenger error count 3 in 20 requests already exceeds max_error_rate 0.01 "
        "* min_requests 200 = 2 at step 1%"
    )
    assert certain.breaches == [{"metric": "error_rate", "actual": 0.15, "threshold": 0.01}]


def test_certain_schema_breach_rolls_back_at_the_first_violation() -> None:
    policy = _policy()
    decision = decide(
        policy,
        _started(policy),
        challenger=_stats(5, schema_violations=1),
        champion=CHAMPION,
        now=1.0,
    )
    assert decision.action == "rollback"
    assert "schema_violation count 1 in 5 requests" in decision.reason


def test_certain_error_delta_breach_before_min_requests() -> None:
    policy = _policy(max_error_rate=0.5)
    champion = VersionStats(**{**CHAMPION.to_dict(), "errors": 0})
    decision = decide(
        policy, _started(policy), challenger=_stats(50, errors=2), champion=champion, now=1.0
    )
    assert decision.action == "rollback"
    assert [b["metric"] for b in decision.breaches] == ["error_rate_delta"]
    assert "(champion error_rate 0 + max_error_rate_delta 0.005) * min_requests 200 = 1" in (
        decision.reason
    )


def test_latency_is_judged_early_only_when_certain() -> None:
    policy = _policy()
    state = _started(policy)
    noisy = decide(policy, state, challenger=_stats(3, p99_ms=400.0), champion=CHAMPION, now=1.0)
    assert noisy.action == "hold"  # a p99 over 3 requests proves nothing yet
    slow = _stats(10, p50_ms=70.0, p99_ms=400.0)
    certain = decide(policy, state, challenger=slow, champion=CHAMPION, now=1.0)
    assert certain.action == "rollback"
    assert "challenger p50 70.0 ms already > max_p99_ms 50.0" in certain.reason


def test_comparisons_are_skipped_without_a_champion_reference() -> None:
    policy = _policy()
    fresh = VersionStats(requests=12, p99_ms=5.0, prediction_histogram=(12,) + (0,) * 9)
    decision = decide(
        policy, _started(policy), challenger=_stats(300, p99_ms=45.0), champion=fresh, now=HOUR
    )
    assert decision.action == "advance"  # the p99 ratio 9x is not judged: no reference
    assert "champion comparisons skipped: champion served 12 < min_requests 200" in decision.reason
    assert decision.metrics["p99_ratio"] is None


@pytest.mark.parametrize(
    ("stats", "champion", "needle"),
    [
        (_stats(300, p99_ms=None), CHAMPION, "challenger p99_ms (not reported"),
        (_stats(300, shape=()), CHAMPION, "challenger prediction_histogram; report it"),
        (
            _stats(300),
            VersionStats(**{**CHAMPION.to_dict(), "prediction_histogram": []}),
            "champion prediction_histogram",
        ),
        (
            _stats(300),
            VersionStats(**{**CHAMPION.to_dict(), "p99_ms": None}),
            "champion p99_ms (not reported",
        ),
    ],
)
def test_unreported_metrics_block_advancing(
    stats: VersionStats, champion: VersionStats, needle: str
) -> None:
    policy = _policy()
    decision = decide(policy, _started(policy), challenger=stats, champion=champion, now=HOUR)
    assert decision.action == "hold"
    assert needle in decision.reason


def test_waived_limits_are_not_required() -> None:
    policy = _policy(max_prediction_psi=None, max_p99_ratio=None)
    stats = _stats(300, shape=(), p99_ms=30.0)
    decision = decide(policy, _started(policy), challenger=stats, champion=CHAMPION, now=HOUR)
    assert decision.action == "advance"


# shadow and blue-green -----------------------------------------------------------------------------


def test_shadow_window_then_canary_then_promote() -> None:
    policy = _policy(mode="shadow", shadow_fraction=0.5)
    state = _started(policy)
    assert (state.phase, state.weight, state.shadow_fraction) == ("shadow", 0.0, 0.5)
    early = decide(
        policy,
        state,
        challenger=_stats(0, shadow_requests=120, shadow_mean_abs_diff=0.02),
        champion=CHAMPION,
        now=HOUR,
    )
    assert early.action == "hold"
    assert "hold in the shadow window" in early.reason
    assert "80 more challenger shadow requests (120/200" in early.reason
    missing_diff = decide(
        policy, state, challenger=_stats(0, shadow_requests=300), champion=CHAMPION, now=HOUR
    )
    assert missing_diff.action == "hold"
    assert "shadow_mean_abs_diff; report it" in missing_diff.reason
    shadow = _stats(0, shadow_requests=300, shadow_mean_abs_diff=0.02)
    passed = decide(policy, state, challenger=shadow, champion=CHAMPION, now=HOUR)
    assert passed.action == "advance"
    assert passed.reason.startswith("advance in the shadow window to step 1%")
    state = passed.state
    assert (state.phase, state.step_index, state.weight, state.shadow_fraction) == (
        "canary",
        0,
        0.01,
        0.0,
    )
    assert state.baseline["shadow_requests"] == 300
    served = 0
    for _ in policy.steps:
        served += 250
        live = _stats(served, shadow_requests=300, shadow_mean_abs_diff=0.02)
        state = decide(
            policy, state, challenger=live, champion=CHAMPION, now=state.step_started_at + HOUR
        ).state
    assert state.status == "promoted"
    assert [h["action"] for h in state.history] == [
        "start",
        "advance",
        "advance",
        "advance",
        "advance",
        "promote",
    ]


def test_shadow_diff_breach_rolls_back() -> None:
    policy = _policy(mode="shadow")
    shadow = _stats(0, shadow_requests=250, shadow_mean_abs_diff=0.31)
    decision = decide(policy, _started(policy), challenger=shadow, champion=CHAMPION, now=60.0)
    assert decision.action == "rollback"
    assert decision.breaches == [
        {"metric": "shadow_mean_abs_diff", "actual": 0.31, "threshold": 0.1}
    ]
    assert decision.reason == (
        "challenger shadow mean |prediction - champion| 0.31 over 250 shadow requests > "
        "max_shadow_mean_abs_diff 0.1 in the shadow window"
    )
    assert decision.state.shadow_fraction == 0.0


def test_shadow_errors_roll_back_without_exposing_users() -> None:
    policy = _policy(mode="shadow")
    shadow = _stats(0, errors=9, shadow_requests=250, shadow_mean_abs_diff=0.01)
    decision = decide(policy, _started(policy), challenger=shadow, champion=CHAMPION, now=60.0)
    assert decision.action == "rollback"
    assert "error_rate 0.036 (9/250)" in decision.reason
    assert all(h["to_weight"] == 0.0 for h in decision.state.history)


def test_bluegreen_switches_all_at_once_after_one_window() -> None:
    policy = _policy(mode="bluegreen", hold_seconds="30m")
    state = _started(policy)
    assert (state.phase, state.weight, state.shadow_fraction) == ("bluegreen", 0.0, 1.0)
    shadow = _stats(0, shadow_requests=400, shadow_mean_abs_diff=0.01)
    held = decide(policy, state, challenger=shadow, champion=CHAMPION, now=600.0)
    assert held.action == "hold"
    assert held.reason == "hold in the blue-green window: waiting for 20m more of the 30m hold"
    done = decide(policy, state, challenger=shadow, champion=CHAMPION, now=1800.0)
    assert done.action == "promote"
    assert (done.state.status, done.state.weight, done.state.shadow_fraction) == (
        "promoted",
        1.0,
        0.0,
    )
    assert [(h["from_weight"], h["to_weight"]) for h in done.state.history] == [
        (0.0, 0.0),
        (0.0, 1.0),
    ]


def test_bluegreen_rolls_back_on_breach() -> None:
    policy = _policy(mode="bluegreen")
    slow = _stats(0, shadow_requests=400, p99_ms=70.0, shadow_mean_abs_diff=0.01)
    decision = decide(policy, _started(policy), challenger=slow, champion=CHAMPION, now=60.0)
    assert decision.action == "rollback"
    assert "challenger p99 70.0 ms > max_p99_ms 50.0 in the blue-green window" in decision.reason


# state, policy and input validation ----------------------------------------------------------------


def test_state_json_round_trip_through_every_kind_of_transition() -> None:
    policy = _policy()
    state = _started(policy)
    assert _json_round_trip(state) == state
    state = decide(policy, state, challenger=_stats(300), champion=CHAMPION, now=HOUR).state
    assert _json_round_trip(state) == state
    held = decide(policy, state, challenger=_stats(310), champion=CHAMPION, now=HOUR + 1)
    assert _json_round_trip(held.state) == held.state
    rolled = decide(
        policy, state, challenger=_stats(600, errors=50), champion=CHAMPION, now=HOUR + 2
    )
    restored = _json_round_trip(rolled.state)
    assert restored == rolled.state
    assert restored.rollback_reason == rolled.reason
    assert isinstance(restored.history, tuple)
    # the decision itself is JSON-able too (an audit payload)
    assert json.loads(json.dumps(rolled.to_dict(), allow_nan=False))["action"] == "rollback"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"status": "done"}, "status"),
        ({"weight": 1.5}, "weight"),
        ({"surprise": 1}, "surprise"),
        ({"baseline": {"requests": -1}}, "non-negative"),
        ({"baseline": {"latency": 1}}, "unknown"),
    ],
)
def test_invalid_state_is_refused(change: dict, needle: str) -> None:
    data = {**_started().to_dict(), **change}
    with pytest.raises(CanaryError, match=needle):
        CanaryState.from_dict(data)


def test_state_is_frozen() -> None:
    state = _started()
    with pytest.raises(pydantic.ValidationError):
        state.weight = 1.0  # type: ignore[misc]


def test_policy_defaults() -> None:
    policy = CanaryPolicy()
    assert policy.steps == (1.0, 5.0, 25.0, 100.0)
    assert policy.hold_seconds == 6 * HOUR
    assert (policy.min_requests, policy.max_p99_ms, policy.mode) == (200, 50.0, "canary")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6h", 21600.0),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("1.5d", 129600.0),
        ("250ms", 0.25),
        ("90", 90.0),
        (" 2H ", 7200.0),
    ],
)
def test_hold_accepts_duration_strings(text: str, seconds: float) -> None:
    assert CanaryPolicy(hold_seconds=text).hold_seconds == seconds


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"steps": (1, 25, 5, 100)}, "not strictly increasing"),
        ({"steps": (1, 5, 5, 100)}, "not strictly increasing"),
        ({"steps": (1, 5, 50)}, "end at 50%, not 100%"),
        ({"steps": ()}, "empty"),
        ({"steps": (0, 100)}, r"\(0, 100\]"),
        ({"steps": (50, 150)}, r"\(0, 100\]"),
        ({"hold_seconds": "6 hours"}, "'6 hours' is not a duration"),
        ({"hold_seconds": "h"}, "is not a duration"),
        ({"hold_seconds": -5}, "greater than or equal"),
        ({"min_requests": 0}, "greater than or equal"),
        ({"max_error_rate": 1.5}, "less than or equal"),
        ({"max_p99_ratio": 0}, "greater than 0"),
        ({"mode": "linear"}, "canary"),
        ({"shadow_fraction": 0}, "greater than 0"),
        ({"max_p99_ms": math.nan}, "finite"),
        ({"max_p99": 50}, "Extra inputs"),
    ],
)
def test_policy_validation(kwargs: dict, needle: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=needle):
        CanaryPolicy(**kwargs)


def test_policy_is_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        CanaryPolicy().min_requests = 1  # type: ignore[misc]


def test_decide_refuses_a_state_from_another_policy() -> None:
    state = _started(_policy(mode="shadow"))
    with pytest.raises(CanaryError, match="state mode 'shadow' differs from policy mode 'canary'"):
        decide(_policy(), state, challenger=_stats(1), champion=CHAMPION, now=1.0)
    canary = _started(_policy())
    late = canary.model_copy(update={"step_index": 3})
    with pytest.raises(CanaryError, match="step_index 3 does not exist"):
        decide(_policy(steps=(50, 100)), late, challenger=_stats(1), champion=CHAMPION, now=1.0)


def test_start_refuses_the_champion_as_challenger() -> None:
    with pytest.raises(CanaryError, match="champion already"):
        start(_policy(), pipeline="fraud", champion="v1", challenger="v1", now=0.0)


def test_version_stats_validation_and_parsing() -> None:
    parsed = VersionStats.from_dict(
        {"requests": 10.0, "errors": None, "prediction_histogram": [1, 2], "version": "v2"}
    )
    assert (parsed.requests, parsed.errors, parsed.prediction_histogram) == (10, 0, (1, 2))
    assert VersionStats.from_dict(parsed.to_dict()) == parsed
    with pytest.raises(CanaryError, match="requests -1 must be a non-negative integer"):
        VersionStats(requests=-1)
    with pytest.raises(CanaryError, match="p99_ms nan must be a finite"):
        VersionStats(p99_ms=math.nan)
    with pytest.raises(CanaryError, match=r"histogram bin 1\.5"):
        VersionStats(prediction_histogram=(1.5,))  # type: ignore[arg-type]


def test_mismatched_histograms_are_an_error() -> None:
    policy = _policy()
    short = VersionStats(**{**_stats(300).to_dict(), "prediction_histogram": [300, 0, 0]})
    with pytest.raises(CanaryError, match="3 bins"):
        decide(policy, _started(policy), challenger=short, champion=CHAMPION, now=HOUR)


def test_decision_shape() -> None:
    policy = _policy()
    decision = decide(policy, _started(policy), challenger=_stats(1), champion=CHAMPION, now=1.0)
    assert isinstance(decision, Decision)
    assert decision.action in ACTIONS
    assert set(decision.to_dict()) == {"action", "reason", "breaches", "metrics", "state"}


# psi ---------------------------------------------------------------------------------------------


def test_psi_convention() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)  # only proportions matter
    expected = (0.5 - 0.9) * math.log(0.5 / 0.9) + (0.5 - 0.1) * math.log(0.5 / 0.1)
    assert psi([90, 10], [50, 50]) == pytest.approx(expected)
    # an empty bin counts as eps, so the value stays finite
    with_empty = psi([100, 0], [50, 50])
    assert with_empty == pytest.approx(
        (0.5 - 1) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    )
    assert psi([100, 0], [50, 50], eps=1e-2) < with_empty
    assert psi([1, 2], [2, 1]) == pytest.approx(psi([2, 1], [1, 2]))  # symmetric


@pytest.mark.parametrize(
    ("expected", "actual", "needle"),
    [
        ([1, 2], [1, 2, 3], "same"),
        ([], [], "same"),
        ([0, 0], [1, 1], "empty"),
        ([1, -1], [1, 1], "negative"),
    ],
)
def test_psi_rejects_bad_histograms(expected: list, actual: list, needle: str) -> None:
    with pytest.raises(CanaryError, match=needle):
        psi(expected, actual)


def _same_model(rng: np.random.Generator, n: int) -> VersionStats:
    """``n`` predictions of a challenger whose distribution is the champion's (SHAPE)."""
    probs = np.array(SHAPE, dtype=np.float64) / sum(SHAPE)
    return VersionStats(
        requests=n,
        p50_ms=6.0,
        p99_ms=22.0,
        prediction_histogram=tuple(int(c) for c in rng.multinomial(n, probs)),
    )


def test_psi_noise_is_the_null_quantile_and_shrinks_with_the_samples() -> None:
    from lockgate.serving.canary import psi_noise

    champion = CHAMPION.prediction_histogram
    levels = [psi_noise(champion, [n // 10] * 10) for n in (20, 50, 200, 1000)]
    assert levels == sorted(levels, reverse=True)
    assert levels[0] > 0.5 > 0.1 > levels[-1]
    # the 0.99 quantile: about 1 % of same-distribution samples of 20 lie above it
    rng = np.random.default_rng(3)
    noise = psi_noise(champion, [2] * 10)
    values = [psi(champion, _same_model(rng, 20).prediction_histogram) for _ in range(2000)]
    above = np.mean(np.array(values) > noise)
    assert 0.002 < above < 0.03
    assert np.mean(np.array(values) > 0.5) > 0.15  # the noise a plain 0.5 limit mistakes for drift
    assert psi_noise(champion, [2] * 10) == noise  # deterministic
    assert psi_noise(champion, [2] * 10, quantile=0.5) < noise
    with pytest.raises(CanaryError, match=r"quantile 1\.0 must be in"):
        psi_noise(champion, [2] * 10, quantile=1.0)
    with pytest.raises(CanaryError, match="empty"):
        psi_noise(champion, [0] * 10)


def test_an_unchanged_challenger_is_not_rolled_back_on_the_noise_of_a_small_step() -> None:
    # what the demo hit: 20 requests at the 1 % step, an unchanged model, PSI over 0.5 by chance
    policy = _policy(min_requests=20, max_prediction_psi=0.5)
    rng = np.random.default_rng(0)
    noisy = []
    for _ in range(400):
        stats = _same_model(rng, 20)
        if psi(CHAMPION.prediction_histogram, stats.prediction_histogram) > 0.5:
            noisy.append(stats)
    assert len(noisy) > 40  # a quarter of such steps
    actions = [
        decide(policy, _started(policy), challenger=s, champion=CHAMPION, now=2 * HOUR).action
        for s in noisy
    ]
    # the 0.99 quantile: about 4 of 400 such steps (1 %) still roll back, against all of them
    assert actions.count("rollback") <= 8, actions.count("rollback")
    held = decide(policy, _started(policy), challenger=noisy[0], champion=CHAMPION, now=2 * HOUR)
    assert held.action == "hold"
    assert "waiting for more requests: prediction PSI" in held.reason
    assert "within sampling noise (20 challenger and 100000 champion predictions" in held.reason
    assert held.metrics["prediction_psi"] > 0.5
    assert held.metrics["prediction_psi_noise"] > held.metrics["prediction_psi"]
    # judged on the PSI alone, the same step rolls back (the rule before this fix)
    plain = _policy(min_requests=20, max_prediction_psi=0.5, prediction_psi_confidence=None)
    alone = decide(plain, _started(plain), challenger=noisy[0], champion=CHAMPION, now=2 * HOUR)
    assert alone.action == "rollback"
    assert alone.breaches[0]["metric"] == "prediction_psi"


def test_a_shifted_challenger_still_rolls_back_at_a_small_step() -> None:
    policy = _policy(min_requests=20, max_prediction_psi=0.5)
    shifted = _stats(20, shape=(0, 0, 0, 0, 0, 0, 1, 3, 6, 10))  # the champion's top bins
    decision = decide(policy, _started(policy), challenger=shifted, champion=CHAMPION, now=60.0)
    assert decision.action == "rollback"
    assert decision.breaches[0]["metric"] == "prediction_psi"
    assert "beyond sampling noise (0.99 quantile" in decision.reason
    assert decision.metrics["prediction_psi"] > decision.metrics["prediction_psi_noise"]


# the gateway's stats ---------------------------------------------------------------------------


def _series(
    requests: int, *, errors: int = 0, p99: float = 20.0, bins: list[int] | None = None
) -> dict:
    counts = bins if bins is not None else [requests - errors] + [0] * 9
    return {
        "requests": requests,
        "answered": requests - errors,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "schema_violations": 0,
        "schema_violation_rate": 0.0,
        "latency_ms": {"p50": p99 / 3, "p90": p99 / 2, "p99": p99, "samples": requests - errors},
        "prediction": {
            "count": sum(counts),
            "mean": 0.05 if sum(counts) else None,
            "histogram": {"edges": [i / 10 for i in range(11)], "counts": counts},
            "out_of_range": 0,
        },
    }


def _snapshot(since: float, champion: int, challenger: int, shadow: int = 0) -> dict:
    """The shape of ``GET /admin/stats/{name}`` (lockgate.gateway.app)."""
    challenger_entry = {**_series(challenger), "role": "challenger"}
    if shadow:
        challenger_entry["shadow"] = {
            **_series(shadow, p99=30.0),
            "abs_diff": {"count": shadow, "mean": 0.02, "max": 0.2, "p99": 0.1},
        }
    return {
        "model": "fraud",
        "since_unix": since,
        "versions": {
            "v1": {**_series(champion), "retried_on_champion": 0, "role": "champion"},
            "v2": challenger_entry,
        },
        "shadow_dropped": 0,
    }


def test_version_stats_from_the_gateway_snapshot() -> None:
    snap = _snapshot(100.0, champion=5000, challenger=0, shadow=300)
    challenger = VersionStats.from_gateway(snap, version="v2")
    assert challenger.requests == 0
    assert challenger.shadow_requests == 300
    assert challenger.p99_ms == 30.0  # the series with latency samples: the shadow one
    assert challenger.shadow_mean_abs_diff == 0.02
    assert challenger.prediction_histogram == (300,) + (0,) * 9
    assert challenger.since == 100.0
    champion = VersionStats.from_gateway(snap, version="v1")
    assert (champion.requests, champion.shadow_requests, champion.p99_ms) == (5000, 0, 20.0)
    with pytest.raises(CanaryError, match="'v9' is not in the gateway stats"):
        VersionStats.from_gateway(snap, version="v9")


def test_stats_reset_at_each_step_is_understood() -> None:
    """The controller may POST /admin/stats/{name}/reset after each step: ``since`` changes."""
    policy = _policy(max_prediction_psi=None)
    state = _started(policy)
    snap = _snapshot(0.0, champion=5000, challenger=300)
    step = decide(
        policy,
        state,
        challenger=VersionStats.from_gateway(snap, version="v2"),
        champion=VersionStats.from_gateway(snap, version="v1"),
        now=HOUR,
    )
    assert step.action == "advance"
    assert step.state.baseline["since"] == 0.0
    # reset at HOUR; by the next tick the new window already holds more than the old baseline
    snap = _snapshot(HOUR, champion=2000, challenger=320)
    held = decide(
        policy,
        step.state,
        challenger=VersionStats.from_gateway(snap, version="v2"),
        champion=VersionStats.from_gateway(snap, version="v1"),
        now=HOUR + 60,
    )
    assert held.metrics["counters_reset"] is True
    assert held.metrics["challenger_requests"] == 320
    assert held.state.baseline == {
        "requests": 0,
        "errors": 0,
        "schema_violations": 0,
        "shadow_requests": 0,
        "prediction_histogram": [],
        "since": HOUR,
    }
    assert "59m more of the 1h hold" in held.reason


# ---- the prediction PSI per task -----------------------------------------------------------


def _sketch_stats(values: np.ndarray, *, requests: int | None = None) -> VersionStats:
    from lockgate.gateway import prediction_sketch

    pairs = tuple(sorted(prediction_sketch.sketch(values).items()))
    return VersionStats(
        requests=len(values) if requests is None else requests,
        p50_ms=2.0,
        p99_ms=5.0,
        prediction_sketch=pairs,
    )


def test_regression_psi_uses_the_champions_deciles_on_any_scale() -> None:
    from lockgate.serving.canary import prediction_psi

    rng = np.random.default_rng(0)
    champion = _sketch_stats(rng.normal(5000.0, 400.0, 4000))
    same = _sketch_stats(rng.normal(5000.0, 400.0, 1000))
    shifted = _sketch_stats(rng.normal(5600.0, 400.0, 1000))
    assert prediction_psi(champion, same, task="regression") < 0.05
    assert prediction_psi(champion, shifted, task="regression") > 1.0
    # the binary bins over [0, 1] see nothing of these values
    assert prediction_psi(champion, shifted, task="binary") is None
    with pytest.raises(CanaryError, match="task 'ranking' is unknown"):
        prediction_psi(champion, same, task="ranking")


def test_decide_rolls_back_a_regression_challenger_whose_values_moved() -> None:
    rng = np.random.default_rng(1)
    policy = CanaryPolicy(hold_seconds=60, min_requests=100, max_prediction_psi=0.2)
    state = start(policy, pipeline="p", champion="v1", challenger="v2", now=0.0)
    champion = _sketch_stats(rng.normal(50.0, 5.0, 5000))
    good = decide(
        policy,
        state,
        challenger=_sketch_stats(rng.normal(50.0, 5.0, 500)),
        champion=champion,
        now=90.0,
        task="regression",
    )
    assert good.action == "advance", good.reason
    assert good.metrics["prediction_psi"] < 0.2
    bad = decide(
        policy,
        state,
        challenger=_sketch_stats(rng.normal(65.0, 5.0, 500)),
        champion=champion,
        now=90.0,
        task="regression",
    )
    assert bad.action == "rollback"
    assert bad.breaches[0]["metric"] == "prediction_psi"
    # without a sketch the check waits and names it
    empty = decide(
        policy, state, challenger=VersionStats(requests=500, p99_ms=5.0), champion=champion,
        now=90.0, task="regression",
    )  # fmt: skip
    assert empty.action == "hold"
    assert "challenger prediction_sketch" in empty.reason


def test_regression_sketch_is_judged_on_the_current_step_only() -> None:
    rng = np.random.default_rng(2)
    policy = CanaryPolicy(hold_seconds=0, min_requests=100, max_prediction_psi=0.2)
    champion = _sketch_stats(rng.normal(50.0, 5.0, 5000))
    old = rng.normal(80.0, 5.0, 400)  # a bad first step that is already behind us
    step = decide(
        policy,
        start(policy, pipeline="p", champion="v1", challenger="v2", now=0.0,
              baseline=_sketch_stats(old)),
        challenger=_sketch_stats(np.concatenate([old, rng.normal(50.0, 5.0, 400)])),
        champion=champion,
        now=1.0,
        task="regression",
    )  # fmt: skip
    assert step.action == "advance", step.reason
    assert step.state.baseline["prediction_sketch"]  # the next step's baseline holds the sketch
    assert CanaryState.from_dict(step.state.to_dict()) == step.state


def test_multiclass_psi_compares_the_predicted_class_counts() -> None:
    policy = CanaryPolicy(hold_seconds=0, min_requests=100, max_prediction_psi=0.2)
    state = start(policy, pipeline="p", champion="v1", challenger="v2", now=0.0)
    champion = VersionStats(requests=900, p99_ms=5.0, prediction_histogram=(300, 300, 300))
    same = VersionStats(requests=300, p99_ms=5.0, prediction_histogram=(95, 105, 100))
    one_class = VersionStats(requests=300, p99_ms=5.0, prediction_histogram=(280, 10, 10))
    ok = decide(policy, state, challenger=same, champion=champion, now=1.0, task="multiclass")
    assert ok.action == "advance", ok.reason
    bad = decide(policy, state, challenger=one_class, champion=champion, now=1.0, task="multiclass")
    assert bad.action == "rollback"
    assert "prediction PSI" in bad.reason


def test_from_gateway_adds_live_and_shadow_sketches_and_class_counts() -> None:
    snap = {
        "since_unix": 5.0,
        "versions": {
            "v2": {
                "live": {
                    "requests": 3,
                    "prediction": {
                        "count": 3,
                        "mean": 0.5,
                        "kind": "class",
                        "histogram": {"edges": None, "counts": [1, 2, 0]},
                        "sketch": {},
                    },
                },
                "shadow": {  # saw nothing: the default ten empty bins
                    "requests": 0,
                    "prediction": {"count": 0, "histogram": {"counts": [0] * 10}},
                },
            },
            "v3": {
                "live": {"requests": 2, "prediction": {"sketch": {"10": 1, "-4": 1}}},
                "shadow": {"requests": 1, "prediction": {"sketch": {"10": 2}}},
            },
        },
    }
    assert VersionStats.from_gateway(snap, version="v2").prediction_histogram == (1, 2, 0)
    v3 = VersionStats.from_gateway(snap, version="v3")
    assert v3.prediction_sketch == ((-4, 1), (10, 3))
    assert v3.to_dict()["prediction_sketch"] == {"-4": 1, "10": 3}
    with pytest.raises(CanaryError, match="prediction_sketch"):
        VersionStats.from_dict({"prediction_sketch": {"x": 1}})


# serving_refusal: only gated versions with their alias history entry serve ----------------------

PASSED = {"passed": True, "rules": [{"rule": "gate_vs_champion", "passed": True}]}
FAILED = {"passed": False, "rules": [{"rule": "gate_vs_champion", "passed": False}]}


def _move(to: str, reason: str = "canary completed", alias: str = "champion") -> dict[str, object]:
    return {"alias": alias, "from": None, "to": to, "reason": reason}


def test_a_gated_champion_with_its_history_entry_serves() -> None:
    history = [_move("v1"), _move("v2", alias="challenger"), _move("v2")]
    assert serving_refusal("fraud", "v2", verdicts=[PASSED], history=history) is None
    # a failed re-evaluation later does not take away the passing verdict it was promoted on
    assert serving_refusal("fraud", "v2", verdicts=[PASSED, FAILED], history=history) is None


def test_a_version_whose_gate_failed_is_refused_naming_the_rule_and_the_fix() -> None:
    reason = serving_refusal("fraud", "v2", verdicts=[FAILED], history=[_move("v2")])
    assert reason is not None
    assert "fraud v2 has no passing gate verdict: its gate FAILED (gate_vs_champion)" in reason
    assert "--override-gate" in reason
    assert "no gate verdict at all" in str(serving_refusal("fraud", "v2", verdicts=[]))


def test_an_alias_value_without_its_history_entry_is_a_hand_edit() -> None:
    history = [_move("v1"), _move("v2", alias="challenger")]
    reason = serving_refusal("fraud", "v2", verdicts=[PASSED], history=history)
    assert reason is not None
    assert "newest champion move in the alias history is to 'v1'" in reason
    assert "hand edit" in reason
    assert "no passing gate verdict" not in reason
    both = serving_refusal("fraud", "v3", verdicts=[FAILED], history=history)
    assert both is not None
    assert both.index("no passing gate verdict") < both.index("; also fraud:champion names v3")
    assert "is to None" in str(serving_refusal("fraud", "v1", verdicts=[PASSED], history=[]))


def test_an_override_on_record_serves_only_the_version_it_moved() -> None:
    override = _move("v2", reason=f"drill {OVERRIDE_MARK}")
    assert serving_refusal("fraud", "v2", verdicts=[FAILED], history=[override]) is None
    # the override of another version, or an older move, does not cover a hand-edited value
    later = [override, _move("v1")]
    assert serving_refusal("fraud", "v2", verdicts=[FAILED], history=later) is not None
    assert serving_refusal("fraud", "v3", verdicts=[FAILED], history=[override]) is not None
    # without a history (a canary challenger) only the verdicts count
    assert serving_refusal("fraud", "v2", verdicts=[FAILED], history=None) is not None
    assert serving_refusal("fraud", "v2", verdicts=[PASSED], history=None) is None


def test_an_override_marker_written_by_hand_is_not_honoured_without_its_audit_entry() -> None:
    """The alias history is a plain file: an override counts only when the hash-chained audit
    log (signed head) recorded the `lockgate promote --override-gate` that made it."""
    override = [_move("v2", reason=f"drill {OVERRIDE_MARK}")]
    on_record = serving_refusal(
        "fraud", "v2", verdicts=[FAILED], history=override, audited_overrides={"v2"}
    )
    assert on_record is None
    forged = serving_refusal(
        "fraud", "v2", verdicts=[FAILED], history=override, audited_overrides={"v1"}
    )
    assert forged is not None
    assert "no passing gate verdict" in forged
    assert "the audit log has no such promotion" in forged
    # a passing verdict needs no override, audited or not
    passed = serving_refusal(
        "fraud", "v2", verdicts=[PASSED], history=override, audited_overrides=set()
    )
    assert passed is None
