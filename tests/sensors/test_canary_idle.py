"""The canary controller of a pipeline with nothing to serve ticks without side effects.

A local daemon's canary sensors used to call ``stack.ensure()`` on every tick, so the first
tick started Triton and the gateway for pipelines that had no champion yet. A pipeline with
no champion alias and no running canary now skips after reading the alias and the canary
state; one with either still goes through the full tick (restore, supervise, decide).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.sensors.canary import _idle_without_serving, make_canary_sensor
from lockgate.serving.canary import CanaryPolicy, start
from lockgate.serving.stack import LocalServingStack
from tests.integration.specs import served_spec

PIPELINE = "idle_fraud"


def _world(tmp_path: Path) -> tuple[LocalServingStack, LocalArtifactRegistry, AuditTrail]:
    stack = LocalServingStack(root=str(tmp_path / "serving"))
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    audit = AuditTrail(path=str(tmp_path / "audit.jsonl"))
    return stack, registry, audit


def test_a_tick_without_champion_starts_no_server(tmp_path: Path) -> None:
    stack, registry, audit = _world(tmp_path)
    sensor = make_canary_sensor(served_spec(PIPELINE))
    try:
        for _ in range(2):  # the first tick used to start both servers
            context = dg.build_sensor_context(
                instance=dg.DagsterInstance.ephemeral(),
                resources={"serving_stack": stack, "artifacts": registry, "audit": audit},
            )
            result = sensor.evaluate_tick(context)
            assert result.skip_message == f"idle: {PIPELINE} has no champion yet: nothing to serve"
            assert not result.run_requests
        assert stack.triton().pid is None, "the idle tick started tritonserver"
        assert stack.gateway().pid is None, "the idle tick started the gateway"
        assert not stack.triton().health()
        assert audit.log().entries(pipeline=PIPELINE) == []
    finally:
        stack.stop()


def test_a_running_canary_without_champion_alias_gets_the_full_tick(tmp_path: Path) -> None:
    stack, registry, _ = _world(tmp_path)
    spec = served_spec(PIPELINE)
    assert _idle_without_serving(spec, stack=stack, artifacts=registry) is not None
    state = start(CanaryPolicy(), pipeline=PIPELINE, champion="v1", challenger="v2", now=0.0)
    assert stack.save_canary_state(PIPELINE, state.to_dict(), expected=None)
    assert _idle_without_serving(spec, stack=stack, artifacts=registry) is None
    ended = state.model_copy(update={"status": "rolled_back"})
    assert stack.save_canary_state(PIPELINE, ended.to_dict())
    assert _idle_without_serving(spec, stack=stack, artifacts=registry) is not None


def test_a_champion_alias_gets_the_full_tick(tmp_path: Path, monkeypatch) -> None:
    from benchmarks._versions import example_frame, train_and_store

    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "k" * 40)
    stack, registry, _ = _world(tmp_path)
    spec = served_spec(PIPELINE)
    version, _ = train_and_store(registry, example_frame(2000), 1, pipeline=PIPELINE)
    registry.move_alias(PIPELINE, "champion", version, actor="test", reason="setup")
    assert _idle_without_serving(spec, stack=stack, artifacts=registry) is None
