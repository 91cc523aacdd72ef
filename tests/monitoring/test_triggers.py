"""The retrain trigger: hysteresis, cooldown, persisted state, and the policies' validation."""

from __future__ import annotations

import itertools

import pytest
from pydantic import ValidationError

from lockgate.errors import SpecError
from lockgate.monitoring.triggers import DriftPolicy, FeedbackPolicy, TriggerState, step


def run(levels: list[str], *, consecutive: int = 2, cooldown: float = 100.0, dt: float = 10.0):
    state, fired = TriggerState(), []
    for i, level in enumerate(levels):
        state, decision = step(
            state, level, now=i * dt, consecutive=consecutive, cooldown_seconds=cooldown
        )
        fired.append(decision.fire)
    return state, fired


def test_consecutive_critical_windows_open_an_episode_and_fire_once() -> None:
    state, fired = run(["critical", "critical", "critical", "critical"])
    assert fired == [False, True, False, False]
    assert state.in_episode
    assert state.fired == 1
    assert state.last_fired == 10.0


def test_a_warn_window_resets_the_streak_outside_an_episode() -> None:
    _, fired = run(["critical", "warn", "critical", "warn", "critical"])
    assert fired == [False] * 5


def test_warn_keeps_an_episode_open_and_only_ok_closes_it() -> None:
    state, _ = run(["critical", "critical", "warn", "warn"])
    assert state.in_episode
    state, decision = step(state, "ok", now=50.0, consecutive=2, cooldown_seconds=100.0)
    assert not state.in_episode
    assert not decision.fire
    assert "episode closed" in decision.reason


def test_flapping_fires_at_most_once_per_cooldown() -> None:
    levels = ["critical", "ok"] * 10  # a window every 10 s, cooldown 100 s
    _, fired = run(levels, consecutive=1, cooldown=100.0)
    times = [i * 10.0 for i, f in enumerate(fired) if f]
    assert times == [0.0, 100.0]  # 20 windows over 190 s: no third fire before 200 s
    assert all(b - a >= 100.0 for a, b in itertools.pairwise(times))


def test_an_open_episode_fires_again_once_the_cooldown_passed() -> None:
    state, fired = run(["critical"] * 13, consecutive=2, cooldown=100.0)
    assert [i for i, f in enumerate(fired) if f] == [1, 11]
    assert state.fired == 2


def test_state_round_trips_and_malformed_state_is_refused() -> None:
    state, _ = run(["critical", "critical"])
    assert TriggerState.from_dict(state.to_dict()) == state
    assert TriggerState.from_dict(None) == TriggerState()
    with pytest.raises(SpecError, match="last_level"):
        TriggerState.from_dict({"last_level": "purple"})


def test_bad_arguments_name_the_rule() -> None:
    with pytest.raises(SpecError, match="not one of"):
        step(TriggerState(), "bad", now=0.0, consecutive=1, cooldown_seconds=0)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="consecutive >= 1"):
        step(TriggerState(), "ok", now=0.0, consecutive=0, cooldown_seconds=0)


def test_policies_validate_and_parse_durations() -> None:
    policy = DriftPolicy(cooldown_seconds="1h30m", consecutive=3)
    assert policy.cooldown_seconds == 5400.0
    state, decision = policy.step(TriggerState(streak=2), "critical", now=0.0)
    assert decision.fire
    assert state.fired == 1
    assert FeedbackPolicy(lookback_seconds="7d").lookback_seconds == 7 * 86400.0
    with pytest.raises(ValidationError, match="warn <= critical"):
        DriftPolicy(psi=(0.3, 0.2))
    with pytest.raises(ValidationError, match="min_rows"):
        DriftPolicy(window_rows=100, min_rows=500)
    assert DriftPolicy(window_rows=None, min_rows=500).window_rows is None
    with pytest.raises(ValidationError, match="min_labels"):
        FeedbackPolicy(window=100, min_labels=500)
