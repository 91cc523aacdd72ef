"""A blocked challenger's run fails as a verdict, not a crash: through a real Dagster instance, the
gate step's failure carries the decision and the failed rule's numbers, every check is recorded
failed, and nothing downstream of the gate runs."""

from __future__ import annotations

import dagster as dg

from lockgate.evaluation.gate import GATE_RULES

from .test_gate import (  # noqa: F401
    KEY_FEATURES,
    champion,
    checks,
    gate_data,
    source_data,
    spec,
    train,
)


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return [
        e
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        if e.dagster_event is not None
    ]


def test_a_blocked_challenger_fails_with_the_verdict_and_its_numbers(env, instance) -> None:
    assert train(spec(), env, instance).success
    incumbent = champion(env)
    weak = spec(exclude=KEY_FEATURES)
    run = train(weak, env, instance)
    assert not run.success

    # read back from the instance's event log, as the UI reads it
    (failure,) = _step_failures(instance, run.run_id)
    event = failure.dagster_event
    assert event is not None
    assert event.step_key == "fraud_gate"
    data = event.event_specific_data
    verdict = data.user_failure_data
    assert verdict is not None
    assert verdict.description.startswith("BLOCKED by gate_vs_champion: roc_auc: challenger 0.")
    assert f"stays a challenger, champion {incumbent} keeps serving" in verdict.description
    # the run's error is the verdict: Dagster's generic blocking-check error never appears
    assert data.error.cls_name == "Failure"
    assert "BLOCKED by gate_vs_champion" in data.error.message
    messages = [
        e.dagster_event.message or "" for e in instance.all_logs(run.run_id) if e.dagster_event
    ]
    assert not any("blocking asset check" in m for m in messages)
    meta = {k: v.value for k, v in verdict.metadata.items()}
    assert meta["decision"] == "blocked"
    assert meta["pipeline"] == "fraud"
    assert meta["champion"] == incumbent
    assert meta["challenger"] == run.dagster_run.tags["lockgate/version"]
    assert meta["failed_rules"].split(", ")[0] == "gate_vs_champion"
    assert meta["gate_vs_champion.metric"] == "roc_auc"
    assert isinstance(meta["gate_vs_champion.actual"], float)
    assert meta["gate_vs_champion.actual"] < 0
    assert meta["gate_vs_champion.threshold"] == 0.0
    assert meta["gate_vs_champion.summary"].startswith(f"vs champion {incumbent}: roc_auc change -")

    # the run's own failure event carries the same verdict (the run page shows it first)
    (run_failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert run_failure.dagster_event is not None
    run_error = run_failure.dagster_event.event_specific_data.error
    assert run_error.message.split(": ", 1)[1].startswith("BLOCKED by gate_vs_champion")

    # a verdict is not retried
    retries = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    assert retries == []

    # every check evaluation is recorded, the failed one failed with its metadata
    results = checks(instance, weak)
    assert set(results) == set(GATE_RULES)
    assert results["gate_vs_champion"]["passed"] is False
    assert results["gate_vs_champion"]["actual"] == meta["gate_vs_champion.actual"]
    assert sorted(r for r, v in results.items() if not v["passed"]) == sorted(
        meta["failed_rules"].split(", ")
    )

    # the gate still blocks: the champion step never starts and the alias stays
    started = {
        e.dagster_event.step_key
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if e.dagster_event
    }
    assert "fraud_gate" in started
    assert "fraud__champion" not in started
    materialized = {
        e.asset_key.path[-1] for e in run.get_asset_materialization_events() if e.asset_key
    }
    assert "champion" not in materialized
    assert champion(env) == incumbent


def test_a_passing_gate_step_succeeds(env, instance) -> None:
    run = train(spec(), env, instance)
    assert run.success
    assert _step_failures(instance, run.run_id) == []
    assert all(r["passed"] for r in checks(instance, spec()).values())
