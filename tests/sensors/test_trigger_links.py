"""Retrain runs link back to their evidence, and reports forward to the runs they triggered."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.sensors._retrain import (
    PENDING_LINK_SECONDS,
    link_triggered_runs,
    pending_link,
    retrain_tags,
)
from lockgate.sensors.drift import run_drift_tick
from lockgate.sensors.feedback import run_feedback_tick
from lockgate.serving.stack import LocalServingStack
from pipelines.fraud import PIPELINES

SPEC = PIPELINES[0]


def _launched(instance: dg.DagsterInstance, run_key: str) -> str:
    """A finished run carrying the run key the daemon gives a sensor's request."""

    @dg.asset(name="retrain_stub")
    def stub() -> int:
        return 1

    result = dg.materialize([stub], instance=instance, tags={"dagster/run_key": run_key})
    return result.run_id


def test_retrain_tags_name_trigger_evidence_and_tick() -> None:
    tags = retrain_tags(
        SPEC,
        trigger="drift",
        reason="psi 0.41 on age",
        evidence="/a/reports/r.json",
        tick_reason="critical: psi 0.41 on age; trigger: critical 2 of 2, fired",
        sensor=SPEC.drift_sensor_name,
        extra={"lockgate/drift_features": "age"},
    )
    assert tags == {
        "lockgate/pipeline": SPEC.name,
        "lockgate/trigger": "drift",
        "lockgate/reason": "psi 0.41 on age",
        "lockgate/evidence": "/a/reports/r.json",
        "lockgate/tick_reason": "critical: psi 0.41 on age; trigger: critical 2 of 2, fired",
        "lockgate/sensor": SPEC.drift_sensor_name,
        "lockgate/drift_features": "age",
    }
    long = retrain_tags(SPEC, trigger="drift", reason="x" * 5000)
    assert len(long["lockgate/reason"]) == 1000


def test_a_report_is_linked_to_the_run_it_triggered(tmp_path: Path) -> None:
    now = 1_000_000.0
    with dg.instance_for_test() as instance:
        run_id = _launched(instance, "drift:abc")
        pending = [
            pending_link("drift:abc", "/r/abc.json", now),
            pending_link("drift:later", "/r/later.json", now),  # not launched yet
            pending_link("drift:lost", "/r/lost.json", now - PENDING_LINK_SECONDS - 1),
        ]
        found, still = link_triggered_runs(instance, SPEC, "drift_report", pending, now=now)
    (observation,) = found
    assert observation.asset_key == SPEC.asset_key("drift_report")
    assert observation.metadata["triggered_run"] == dg.MetadataValue.dagster_run(run_id)
    assert observation.metadata["run_key"].value == "drift:abc"
    assert observation.metadata["report"].value == "/r/abc.json"
    assert [p["run_key"] for p in still] == ["drift:later"]  # the stale one is dropped
    # without an instance (a test context) nothing is looked up and nothing is lost
    assert link_triggered_runs(None, SPEC, "drift_report", pending, now=now) == ([], pending)


def _world(tmp_path: Path) -> dict:
    return {
        "stack": LocalServingStack(root=str(tmp_path / "serving")),
        "artifacts": LocalArtifactRegistry(root=str(tmp_path / "artifacts")),
        "audit": AuditTrail(path=str(tmp_path / "audit.jsonl")),
    }


def test_drift_and_feedback_ticks_link_runs_whatever_they_decide(tmp_path: Path) -> None:
    world = _world(tmp_path)
    with dg.instance_for_test() as instance:
        run_id = _launched(instance, "drift:abc")
        feedback_run = _launched(instance, "label_feedback:def")
        cursor = {"pending_runs": [pending_link("drift:abc", "/r/abc.json", 10.0)]}
        tick = run_drift_tick(
            SPEC, cursor=cursor, instance=instance, actor="test", now=20.0, **world
        )
        assert "no champion" in tick.reason  # the tick skips, the link is made anyway
        assert [o.metadata["triggered_run"].value for o in tick.links] == [run_id]
        assert tick.cursor["pending_runs"] == []

        raw = json.dumps({"pending_runs": [pending_link("label_feedback:def", "/f.json", 10.0)]})
        fb = run_feedback_tick(
            SPEC,
            stack=world["stack"],
            artifacts=world["artifacts"],
            audit=world["audit"],
            data_dir=tmp_path / "data",
            cursor=raw,
            actor="test",
            now=20.0,
            instance=instance,
        )
    assert fb.action == "skip"
    assert [o.asset_key for o in fb.links] == [SPEC.asset_key("live_performance")]
    assert fb.links[0].metadata["triggered_run"].value == feedback_run
    assert fb.cursor == {"pending_runs": []}  # the skip stores the cursor without the link
