"""Canary state in PostgreSQL: controllers that tick at once record exactly one transition."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lockgate.serving.canary import CanaryPolicy, start
from lockgate.serving.stack import RemoteServingStack
from lockgate.state.postgres import close_connections
from tests.state import workers

CONTROLLERS = 4
POLICY = CanaryPolicy(hold_seconds="1h", min_requests=200)


@pytest.fixture(autouse=True)
def _no_idle_connections() -> Iterator[None]:
    yield
    close_connections()


def _stack_fields(url: str, tmp_path: Path) -> dict[str, Any]:
    # services are never called here: only the canary state is read and written
    return {
        "triton_url": "http://127.0.0.1:9",
        "gateway_url": "http://127.0.0.1:9",
        "model_repository": str(tmp_path / "repo"),
        "canary_state_dir": str(tmp_path / "canary"),
        "predictions_dir": str(tmp_path / "predictions"),
        "state_url": url,
    }


@pytest.mark.parametrize(
    ("ticks_before", "action"),
    [(0, "advance"), (3, "promote")],
    ids=["advance", "promote"],
)
def test_two_controllers_ticking_at_once_make_one_transition(
    postgres_url: str, tmp_path: Path, ticks_before: int, action: str
) -> None:
    fields = _stack_fields(postgres_url, tmp_path)
    stack = RemoteServingStack(**fields)
    state = start(POLICY, pipeline="fraud", champion="v1", challenger="v2", now=0.0)
    assert stack.save_canary_state("fraud", state.to_dict(), expected=None) is True
    assert stack.save_canary_state("fraud", state.to_dict(), expected=None) is False
    now = 0.0
    for _ in range(ticks_before):  # one controller alone walks the first steps
        now += 7200
        (alone,) = workers.race(workers.controller_tick, [(fields, "fraud", now)])
        assert alone == "advance"
    before = stack.canary_state("fraud")
    assert before is not None
    now += 7200
    results = workers.race(
        workers.controller_tick, [(fields, "fraud", now) for _ in range(CONTROLLERS)]
    )
    assert sorted(results) == sorted([action] + ["lost"] * (CONTROLLERS - 1))
    after = stack.canary_state("fraud")
    assert after is not None
    assert [h["action"] for h in after["history"]][len(before["history"]) :] == [action]
    assert after["status"] == ("promoted" if action == "promote" else "running")
    # the state lives in PostgreSQL, not in the folder
    assert not (tmp_path / "canary").exists()
    assert stack.canary_pipelines() == ["fraud"]


def test_an_unconditional_save_still_works(postgres_url: str, tmp_path: Path) -> None:
    stack = RemoteServingStack(**_stack_fields(postgres_url, tmp_path))
    assert stack.canary_state("fraud") is None
    state = start(POLICY, pipeline="fraud", champion="v1", challenger="v2", now=0.0).to_dict()
    stack.save_canary_state("fraud", state)
    stack.save_canary_state("fraud", {**state, "weight": 0.05})
    assert stack.canary_state("fraud") == {**state, "weight": 0.05}
    assert ":***@" in stack.canary_store().where


def test_one_controller_at_a_time_holds_the_lease(postgres_url: str, tmp_path: Path) -> None:
    fields = _stack_fields(postgres_url, tmp_path)
    results = workers.race(
        workers.lease_and_claim, [(fields, "fraud", 1.0) for _ in range(CONTROLLERS)]
    )
    assert sorted(results) == ["busy"] * (CONTROLLERS - 1) + ["held"]
    stack = RemoteServingStack(**fields)
    with stack.canary_lease("fraud") as held:  # released when its holder ended
        assert held
        with stack.canary_lease("other") as other:  # per pipeline
            assert other
        (inner,) = workers.race(workers.lease_and_claim, [(fields, "fraud", 0.0)])
        assert inner == "busy"
