"""The canary with the real tritonserver and the real gateway: promote, roll back, survive a crash."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks._versions import FEATURES, example_frame, train_and_store
from lockgate.audit.log import AuditLog
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.serving.canary import CanaryPolicy, CanaryState
from lockgate.serving.model_repository import load_version, write_model_version
from lockgate.serving.stack import LocalServingStack
from lockgate.serving.triton_config import triton_model_name
from lockgate.serving.wire import encode, wire_schema_for_version
from lockgate.spec import ModelPipeline
from lockgate.traffic import TrafficGenerator, drive_canary

from .specs import served_spec

PIPELINE = "fraudlet"


def _store_version(
    registry: LocalArtifactRegistry,
    frame: pd.DataFrame,
    seed: int,
    *,
    pipeline: str = PIPELINE,
    features: list[str] = FEATURES,
    passed: bool = True,
) -> str:
    """Stores ``frame`` as a snapshot and a LightGBM version trained on it, with a gate verdict
    (``passed``); returns the version."""
    version, _ = train_and_store(registry, frame, seed, pipeline=pipeline, features=features)
    _put_verdict(registry, pipeline, version, passed=passed)
    return version


def _put_verdict(
    registry: LocalArtifactRegistry, pipeline: str, version: str, *, passed: bool
) -> None:
    """A gate verdict on ``version`` as the gate asset stores it, with the evaluation report it
    names (only gated versions serve). The report holds no gold estimates (readers fall back
    on the version's evaluation.json) and the verdict is dated early, so a test that stores its
    own report and verdict later finds those."""
    from lockgate.lineage.hashing import canonical_json

    rule = {"rule": "gate_vs_champion", "passed": passed, "metric": "roc_auc"}
    report = {"challenger": {"version": version, "metrics": {}}}
    registry.put_report(pipeline, version, {f"report-{version}.json": canonical_json(report)})
    registry.put_verdict(
        pipeline,
        version,
        {
            "pipeline": pipeline,
            "version": version,
            "lock_record_sha256": registry.lock_record(pipeline, version)["record_sha256"],
            "report_id": f"report-{version}",
            "champion": None,
            "gold_sha256": "0" * 64,
            "passed": passed,
            "rules": [rule],
            "evaluated_at": "2000-01-01T00:00:00+00:00",
            "run_id": "test",
        },
    )


def spec(canary: CanaryPolicy) -> ModelPipeline:
    return served_spec(PIPELINE, canary=canary)


FAST = CanaryPolicy(
    steps=(1, 5, 25, 100),
    hold_seconds=1,
    min_requests=15,
    max_p99_ms=150.0,
    max_p99_ratio=None,
    max_error_rate=0.05,
    max_error_rate_delta=None,
    max_prediction_psi=None,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("canary")
    registry = LocalArtifactRegistry(root=str(root / "artifacts"))
    frame = example_frame(6000)
    champion = _store_version(registry, frame, seed=1)
    challengers = [_store_version(registry, frame, seed=s) for s in (2, 3, 4, 5, 7)]
    gated = _store_version(registry, frame, seed=6, passed=False)  # its gate FAILED
    stack = LocalServingStack(root=str(root / "serving"), durability="fsync")
    audit = AuditTrail(path=str(root / "audit.jsonl"))
    matrix = encode(frame, wire_schema_for_version(registry, PIPELINE, champion))
    yield {
        "registry": registry,
        "stack": stack,
        "audit": audit,
        "champion": champion,
        "challengers": challengers,
        "gated": gated,
        "matrix": matrix,
    }
    stack.stop()


def _begin(world, challenger: str, *, fault: str | None = None, policy=FAST) -> ModelPipeline:
    """Champion serving, challenger loaded beside it (optionally with a fault drill), canary on."""
    from lockgate.assets.serving import apply_route, ensure_loaded
    from lockgate.serving.canary import start

    stack, registry = world["stack"], world["registry"]
    stack.ensure()
    registry.move_alias(PIPELINE, "champion", world["champion"], actor="test", reason="setup")
    ensure_loaded(stack, registry, PIPELINE, world["champion"])
    write_model_version(
        registry, stack.repo_dir, pipeline=PIPELINE, version=challenger, target="cpu", fault=fault
    )
    load_version(triton=stack.triton(), registry=registry, pipeline=PIPELINE, version=challenger)
    state = start(
        policy,
        pipeline=PIPELINE,
        champion=world["champion"],
        challenger=challenger,
        now=time.time(),
    )
    apply_route(stack, PIPELINE, state.to_dict())
    stack.gateway().reset_stats(PIPELINE)
    stack.save_canary_state(PIPELINE, state.to_dict())
    return spec(policy)


def _drive(world, pipeline: ModelPipeline, **traffic):
    stack = world["stack"]
    with TrafficGenerator(stack.gateway().url, PIPELINE, world["matrix"], **traffic) as clients:
        transitions = drive_canary(
            pipeline,
            stack=stack,
            artifacts=world["registry"],
            audit=world["audit"],
            tick_s=0.3,
            timeout_s=240,
        )
    return transitions, clients.report


def test_full_canary_to_100_percent(world) -> None:
    challenger = world["challengers"][0]
    transitions, report = _drive(world, _begin(world, challenger))
    assert [t.action for t in transitions] == ["advance", "advance", "advance", "promote"]
    state = CanaryState.from_dict(world["stack"].canary_state(PIPELINE))
    assert state.status == "promoted"
    assert world["registry"].alias(PIPELINE, "champion") == challenger
    assert report.errors == 0
    assert report.by_version[challenger] > 0
    assert world["stack"].gateway().routes()[PIPELINE]["champion"] == challenger
    kinds = [e["kind"] for e in AuditLog(world["audit"].path).entries(pipeline=PIPELINE)]
    assert kinds[-4:] == ["canary_step", "canary_step", "canary_step", "promotion"]
    assert AuditLog(world["audit"].path).verify().ok
    # the old champion drains and unloads
    old = triton_model_name(PIPELINE, world["champion"])
    deadline = time.monotonic() + 30
    while world["stack"].triton().is_ready(old) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not world["stack"].triton().is_ready(old)


@pytest.mark.parametrize(
    ("fault", "breach"),
    [("error_rate=0.5", "error"), ("sleep_ms=300", "p99")],
    ids=["erroring", "slow"],
)
def test_bad_challenger_is_rolled_back_and_clients_see_no_errors(world, fault, breach) -> None:
    challenger = world["challengers"][1 if breach == "error" else 2]
    transitions, report = _drive(world, _begin(world, challenger, fault=fault), threads=3)
    assert transitions[-1].action == "rollback"
    assert breach in transitions[-1].reason
    state = CanaryState.from_dict(world["stack"].canary_state(PIPELINE))
    assert state.status == "rolled_back"
    assert world["registry"].alias(PIPELINE, "champion") == world["champion"]
    assert report.errors == 0, report.error_messages
    route = world["stack"].gateway().routes()[PIPELINE]
    assert route["mode"] == "single"
    assert route["champion"] == world["champion"]
    rollbacks = AuditLog(world["audit"].path).entries(pipeline=PIPELINE, kind="rollback")
    assert breach in rollbacks[-1]["payload"]["reason"]


def test_tritonserver_killed_mid_canary(world) -> None:
    from lockgate.gateway.predlog import read_prediction_log

    stack = world["stack"]
    pipeline = _begin(
        world, world["challengers"][3], policy=FAST.model_copy(update={"hold_seconds": 60})
    )
    clients = TrafficGenerator(
        stack.gateway().url, PIPELINE, world["matrix"], threads=2, keep_trace_ids=True
    ).start()
    time.sleep(2.0)
    os.killpg(stack.triton().pid, signal.SIGKILL)  # a crash, not a shutdown
    time.sleep(1.0)
    transitions = drive_canary(
        pipeline, stack=stack, artifacts=world["registry"], audit=world["audit"], tick_s=0.3
    )
    time.sleep(1.0)
    report = clients.stop()
    assert transitions[0].action == "rollback"
    assert "restarted" in transitions[0].reason
    state = CanaryState.from_dict(stack.canary_state(PIPELINE))
    assert state.status == "rolled_back"
    assert stack.triton().is_ready(triton_model_name(PIPELINE, world["champion"]))
    after = TrafficGenerator(stack.gateway().url, PIPELINE, world["matrix"], max_requests=50)
    assert after.start().wait(60).errors == 0  # champion serving restored
    # every prediction a client received is in the prediction log
    log = read_prediction_log(stack.prediction_log_dir, PIPELINE)
    answered = {t for t in report.trace_ids if t and t != "None"}
    assert answered
    assert answered <= set(log["trace_id"])


def _champion_serving_alone(world) -> ModelPipeline:
    """No canary running; the world's champion is the champion of record and serves alone."""
    from lockgate.sensors.canary import run_canary_tick

    stack, registry = world["stack"], world["registry"]
    stack.ensure()
    raw = stack.canary_state(PIPELINE)
    if raw is not None and raw["status"] == "running":
        stack.save_canary_state(PIPELINE, {**raw, "status": "rolled_back", "weight": 0.0})
    registry.move_alias(PIPELINE, "champion", world["champion"], actor="test", reason="setup")
    pipeline = spec(FAST)
    outcome = run_canary_tick(
        pipeline, stack=stack, artifacts=registry, audit=world["audit"], actor="test"
    )
    assert outcome.action in ("idle", "restored"), outcome
    return pipeline


def test_hand_edited_champion_alias_is_refused_and_audited(world) -> None:
    """A version whose gate FAILED, written into the alias file by hand, gets no traffic: the
    controller keeps the champion of record serving, never loads the gated version, and
    audits the refusal (once, not on every tick); a passing version written there by hand (no
    alias history entry) is refused too."""
    from lockgate.sensors.canary import run_canary_tick

    stack, registry, audit = world["stack"], world["registry"], world["audit"]
    champion, gated = world["champion"], world["gated"]
    pipeline = _champion_serving_alone(world)
    path = Path(registry.uri(f"aliases/{PIPELINE}.json"))
    original = path.read_bytes()
    try:
        doc = json.loads(original)
        doc["aliases"]["champion"] = gated  # the hand edit: no history entry, no audit entry
        path.write_text(json.dumps(doc))
        for _tick in range(2):
            outcome = run_canary_tick(
                pipeline, stack=stack, artifacts=registry, audit=audit, actor="test"
            )
            assert outcome.action == "refused", outcome
            assert gated in outcome.reason
            assert "no passing gate verdict" in outcome.reason
            assert f"keeps serving {champion}" in outcome.reason
        route = stack.gateway().routes()[PIPELINE]
        assert (route["mode"], route["champion"]) == ("single", champion)
        assert not stack.triton().is_ready(triton_model_name(PIPELINE, gated))
        report = (
            TrafficGenerator(stack.gateway().url, PIPELINE, world["matrix"], max_requests=40)
            .start()
            .wait(60)
        )
        assert report.errors == 0, report.error_messages
        assert dict(report.by_version) == {champion: 40}
        refusals = AuditLog(audit.path).entries(pipeline=PIPELINE, kind="serving_refused")
        assert len(refusals) == 1  # the second tick refused again without a second entry
        assert refusals[0]["payload"]["version"] == gated
        assert refusals[0]["payload"]["serving"] == champion
        assert "no passing gate verdict" in refusals[0]["payload"]["reason"]

        passing = world["challengers"][3]
        doc["aliases"]["champion"] = passing
        path.write_text(json.dumps(doc))
        outcome = run_canary_tick(
            pipeline, stack=stack, artifacts=registry, audit=audit, actor="test"
        )
        assert outcome.action == "refused", outcome
        assert "alias history" in outcome.reason
        assert stack.gateway().routes()[PIPELINE]["champion"] == champion
        refusals = AuditLog(audit.path).entries(pipeline=PIPELINE, kind="serving_refused")
        assert [r["payload"]["version"] for r in refusals] == [gated, passing]
        assert AuditLog(audit.path).verify().ok
    finally:
        path.write_bytes(original)


def test_a_forged_passing_verdict_lets_no_version_serve(world) -> None:
    """A version whose gate FAILED, moved to champion with a history entry, and a passing
    verdict written beside its real one by someone without the signing key: the controller
    refuses it (the verdicts are not trustworthy) and the champion of record keeps serving."""
    from lockgate.lineage.hashing import canonical_json
    from lockgate.lineage.registry import content_id
    from lockgate.sensors.canary import run_canary_tick

    stack, registry, audit = world["stack"], world["registry"], world["audit"]
    champion, gated = world["champion"], world["gated"]
    pipeline = _champion_serving_alone(world)
    aliases = Path(registry.uri(f"aliases/{PIPELINE}.json"))
    original = aliases.read_bytes()
    folder = Path(registry.uri(f"verdicts/{PIPELINE}/{gated}"))
    real = registry.verdicts(PIPELINE, gated)[0]
    forged = dict(real, passed=True, rules=[dict(real["rules"][0], passed=True)])
    name = content_id(forged, ignore={"run_id", "evaluated_at"})
    try:
        (folder / f"{name}.json").write_bytes(canonical_json(forged))
        registry.move_alias(PIPELINE, "champion", gated, actor="mallory", reason="forged pass")
        outcome = run_canary_tick(
            pipeline, stack=stack, artifacts=registry, audit=audit, actor="test"
        )
        assert outcome.action == "refused", outcome
        assert "gate verdicts are not trustworthy" in outcome.reason
        assert "is unsigned" in outcome.reason
        assert f"keeps serving {champion}" in outcome.reason
        route = stack.gateway().routes()[PIPELINE]
        assert (route["mode"], route["champion"]) == ("single", champion)
        assert not stack.triton().is_ready(triton_model_name(PIPELINE, gated))
    finally:
        aliases.write_bytes(original)
        (folder / f"{name}.json").unlink(missing_ok=True)


def test_the_canary_sensor_records_the_new_champion_and_the_registry(world) -> None:
    """The sensor (not only the tick) reports each transition: the rollout names the champion
    as it is after the tick (the new one on promotion, the old one kept as previous), and the
    model registry view is recorded with every move."""
    import dagster as dg

    from lockgate.sensors.canary import make_canary_sensor

    challenger = world["challengers"][4]
    pipeline = _begin(world, challenger)
    sensor = make_canary_sensor(pipeline)
    stack, registry = world["stack"], world["registry"]
    context = dg.build_sensor_context(
        resources={"serving_stack": stack, "artifacts": registry, "audit": world["audit"]}
    )
    rollouts: list[dict[str, str]] = []
    registries = 0
    with TrafficGenerator(stack.gateway().url, PIPELINE, world["matrix"]):
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(r["action"] == "promote" for r in rollouts):
            result = sensor(context)
            if isinstance(result, dg.SensorResult):
                for event in result.asset_events:
                    if event.asset_key == pipeline.asset_key("rollout"):
                        rollouts.append({k: str(v.value) for k, v in event.metadata.items()})
                    elif event.asset_key == pipeline.asset_key("model_registry"):
                        registries += 1
            time.sleep(0.3)
    assert [r["action"] for r in rollouts] == ["advance", "advance", "advance", "promote"]
    promoted = rollouts[-1]
    assert promoted["champion"] == challenger  # not the version it replaced
    assert promoted["previous_champion"] == world["champion"]
    assert registries == len(rollouts)  # the registry view moves with every transition
