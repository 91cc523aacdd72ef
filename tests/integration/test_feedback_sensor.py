"""The label-feedback sensor and asset on a real model, a real prediction log and real Dagster.

A LightGBM champion is trained and stored in a real registry with a passing gate verdict whose
report holds its gold-set ROC AUC. Its live answers are logged through the gateway's
``PredictionLog``. Labels arrive in windows: first the true ones, then labels that no longer
follow the features (concept drift), so the live ROC AUC collapses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from benchmarks._versions import example_frame
from lockgate.assets.feedback import build_live_performance, gold_estimate
from lockgate.audit.log import AuditLog
from lockgate.features.store import FeastStore
from lockgate.gateway.predlog import PredictionLog
from lockgate.gateway.predlog.records import encode_record as _encode_record
from lockgate.lineage.hashing import canonical_json
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.steps import load_trained_model
from lockgate.monitoring.feedback import labels_for, write_feedback
from lockgate.monitoring.triggers import FeedbackPolicy
from lockgate.resources.audit import AuditTrail
from lockgate.sensors.feedback import make_feedback_sensor
from lockgate.serving.stack import LocalServingStack
from lockgate.serving.wire import encode, wire_schema_for_version
from lockgate.tasks.metrics import roc_auc
from pipelines.feature_repo import FRAUD_DEFINITIONS

from .specs import served_spec
from .test_canary import PIPELINE, _store_version

WINDOW = 1000
POLICY = FeedbackPolicy(
    window=WINDOW,
    min_labels=500,
    max_drop=0.05,
    consecutive=2,
    cooldown_seconds=3600,
    interval_seconds=30,
)
SPEC = served_spec(PIPELINE, feedback=POLICY)
T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=10)


def log_answers(log_dir: Path, version: str, matrix: np.ndarray, scores: np.ndarray) -> list[str]:
    """Log one live answer per row through the gateway's PredictionLog; returns trace ids."""
    traces = [f"{i:032x}" for i in range(len(scores))]

    async def scenario() -> None:
        log = PredictionLog(log_dir, durability="flush")
        await log.start()
        futures = []
        for i, trace in enumerate(traces):
            ts = T0 + dt.timedelta(seconds=30 * i)
            meta = {
                "t": trace,
                "ts": int(ts.timestamp() * 1e6),
                "m": PIPELINE,
                "v": version,
                "rb": "single",
                "st": 200,
                "lat": 0.8,
            }
            out = np.asarray([[scores[i]]], np.float32)
            futures.append(log.append(_encode_record(meta, matrix[i : i + 1], out)))
            if i % 50 == 0:  # a mirrored call to some challenger: never judged
                shadow = dict(meta, v="shadowed", rb="shadow", sh=True)
                futures.append(log.append(_encode_record(shadow, matrix[i : i + 1], 1 - out)))
        await asyncio.gather(*futures)
        await log.close()

    asyncio.run(scenario())
    return traces


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("feedback")
    registry = LocalArtifactRegistry(root=str(root / "artifacts"))
    champion = _store_version(registry, example_frame(6000), seed=1)
    model = load_trained_model(registry, PIPELINE, champion)
    # the gold estimate, stored the way the gate stores it: report + passing verdict
    gold = example_frame(n=6000, seed=8)
    gold_auc = roc_auc(gold["is_fraud"], model.predict_proba(gold))
    report_id = "0123456789abcdef"
    registry.put_report(
        PIPELINE,
        champion,
        {
            f"{report_id}.json": canonical_json(
                {
                    "challenger": {
                        "version": champion,
                        "metrics": {"roc_auc": {"estimate": gold_auc}},
                    }
                }
            )
        },
    )
    registry.put_verdict(
        PIPELINE,
        champion,
        {"report_id": report_id, "passed": True, "rules": [], "evaluated_at": "2026-01-01"},
    )
    registry.move_alias(PIPELINE, "champion", champion, actor="test", reason="setup")
    live = example_frame(n=4 * WINDOW, seed=21)
    scores = model.predict_proba(live)
    stack = LocalServingStack(root=str(root / "serving"))
    matrix = encode(live, wire_schema_for_version(registry, PIPELINE, champion))
    traces = log_answers(stack.prediction_log_dir, champion, matrix, scores)
    data_dir = root / "data"
    return {
        "root": root,
        "registry": registry,
        "champion": champion,
        "gold_auc": gold_auc,
        "live": live,
        "scores": scores,
        "traces": traces,
        "stack": stack,
        "data_dir": data_dir,
        "feedback": data_dir / POLICY.dataset,
        "audit": AuditTrail(path=str(root / "audit.jsonl")),
    }


def resources(world: dict[str, Any]) -> dict[str, Any]:
    return {
        "serving_stack": world["stack"],
        "artifacts": world["registry"],
        "audit": world["audit"],
        "feast": FeastStore(
            repo_dir=str(world["root"] / "feast"),
            data_dir=str(world["data_dir"]),
            definitions=FRAUD_DEFINITIONS,
        ),
    }


def send_labels(world: dict[str, Any], window: int, *, drifted: bool) -> None:
    """Labels of requests window*W .. (window+1)*W, known a day after each request."""
    rows = range(window * WINDOW, (window + 1) * WINDOW)
    y = world["live"]["is_fraud"].to_numpy().copy()
    if drifted:  # the label no longer follows the features: fraud moved elsewhere
        rng = np.random.default_rng(window)
        y[list(rows)] = (rng.random(WINDOW) < y.mean()).astype(int)
    stamps = pd.Series([T0 + dt.timedelta(seconds=30 * i, days=1) for i in range(len(y))])
    write_feedback(
        world["feedback"],
        labels_for([(world["traces"][i], i) for i in rows], y, stamps),
    )


def tick(
    sensor: dg.SensorDefinition, world: dict[str, Any], instance: dg.DagsterInstance, cursor: Any
) -> Any:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources(world))
    return sensor(context)


def test_sensor_fires_once_after_consecutive_collapsed_windows_then_cools_down(
    world: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    sensor = make_feedback_sensor(SPEC)
    assert sensor.name == "fraudlet_on_label_feedback"
    assert sensor.job_name == SPEC.train_job_name
    assert sensor.minimum_interval_seconds == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING

    # 1. true labels: the champion performs as on its gold set
    send_labels(world, 0, drifted=False)
    result = tick(sensor, world, instance, None)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests
    assert result.skip_reason is not None
    assert result.skip_reason.skip_message.startswith("ok: ")
    (event,) = result.asset_events
    assert event.asset_key == SPEC.asset_key("live_performance")
    assert event.metadata["level"].value == "ok"
    live_auc = event.metadata["champion_live_roc_auc"].value
    assert abs(live_auc - world["gold_auc"]) < 0.025
    assert event.metadata["champion_gold_roc_auc"].value == pytest.approx(world["gold_auc"])
    assert "| " + world["champion"] + " | champion |" in event.metadata["versions"].value
    cursor = result.cursor

    # 2. nothing new: the folder listing is compared, nothing is computed
    skipped = tick(sensor, world, instance, cursor)
    assert isinstance(skipped, dg.SkipReason)
    assert "no new labels" in skipped.skip_message
    assert "1 files" in skipped.skip_message

    # 3. labels that no longer follow the features: critical, 1 of 2
    send_labels(world, 1, drifted=True)
    result = tick(sensor, world, instance, cursor)
    assert not result.run_requests
    assert "critical 1 of 2 windows in a row" in result.skip_reason.skip_message
    assert result.asset_events[0].metadata["level"].value == "critical"
    assert result.asset_events[0].metadata["champion_live_roc_auc"].value < 0.6
    cursor = result.cursor
    assert json.loads(cursor)["trigger"]["streak"] == 1

    # 4. a second collapsed window: one retrain request with the evidence
    send_labels(world, 2, drifted=True)
    result = tick(sensor, world, instance, cursor)
    (request,) = result.run_requests
    assert request.run_key.startswith("label_feedback:")
    assert request.tags["lockgate/trigger"] == "label_feedback"
    assert request.tags["lockgate/pipeline"] == PIPELINE
    assert request.job_name == SPEC.train_job_name
    # the run links back to the tick's decision; the report names the run it requests
    assert "critical 2 windows in a row" in request.tags["lockgate/tick_reason"]
    assert request.tags["lockgate/sensor"] == SPEC.feedback_sensor_name
    assert result.asset_events[0].metadata["retrain_run_key"].value == request.run_key
    assert json.loads(result.cursor)["pending_runs"][0]["run_key"] == request.run_key
    evidence_uri = request.tags["lockgate/evidence"]
    stored = json.loads(Path(evidence_uri).read_text())
    assert stored["level"] == "critical"
    assert stored["evidence"]["live"] < world["gold_auc"] - POLICY.max_drop
    assert stored["performance"]["labels"]["matched"] == 3 * WINDOW
    entries = [
        e for e in AuditLog(world["audit"].path).entries() if e["kind"] == "retrain_requested"
    ]
    assert len(entries) == 1
    assert entries[0]["payload"]["run_key"] == request.run_key
    assert entries[0]["payload"]["evidence"]["drop"] > POLICY.max_drop
    cursor = result.cursor
    assert json.loads(cursor)["trigger"]["fired"] == 1

    # 5. still collapsed, but within the cooldown: no second request
    send_labels(world, 3, drifted=True)
    result = tick(sensor, world, instance, cursor)
    assert not result.run_requests
    assert "cooldown 3600 s" in result.skip_reason.skip_message
    assert (
        len(
            [e for e in AuditLog(world["audit"].path).entries() if e["kind"] == "retrain_requested"]
        )
        == 1
    )
    cursor = result.cursor

    # 6. a running canary: not judged
    world["stack"].save_canary_state(
        PIPELINE, {"status": "running", "champion": world["champion"], "challenger": "next"}
    )
    try:
        during = tick(sensor, world, instance, None)
        assert isinstance(during, dg.SkipReason)
        assert "canary of next" in during.skip_message
    finally:
        (world["stack"].state_dir / f"{PIPELINE}.json").unlink()
    assert isinstance(tick(sensor, world, instance, cursor), dg.SkipReason)


def test_no_champion_is_a_skip_that_names_the_alias_file(
    tmp_path: Path, world: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    empty = dict(world, registry=LocalArtifactRegistry(root=str(tmp_path / "empty")))
    result = tick(make_feedback_sensor(SPEC), empty, instance, None)
    assert isinstance(result, dg.SkipReason)
    assert "no champion alias" in result.skip_message
    assert "aliases/fraudlet.json" in result.skip_message


def test_asset_materializes_the_table_and_stores_the_report(
    world: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    if not any(world["feedback"].glob("*.parquet")):
        send_labels(world, 0, drifted=False)
    asset = build_live_performance(SPEC)
    assert asset.key == SPEC.asset_key("live_performance")
    assert asset.group_names_by_key[asset.key] == PIPELINE
    result = dg.materialize([asset], resources=resources(world), instance=instance)
    assert result.success
    (mat,) = result.asset_materializations_for_node(asset.node_def.name)
    meta = mat.metadata
    assert meta["level"].value in ("ok", "warn", "critical")
    assert meta["labels_matched"].value >= WINDOW
    assert meta["predictions_live"].value == 4 * WINDOW
    assert "| version | role |" in meta["versions"].value
    report = Path(meta["report"].value)
    assert report.parent.name == world["champion"]
    assert report.name.startswith("live_performance-")
    assert json.loads(report.read_text())["champion"] == world["champion"]
    estimate, source = gold_estimate(world["registry"], PIPELINE, world["champion"], "roc_auc")
    assert estimate == pytest.approx(world["gold_auc"])
    assert source == f"reports/{PIPELINE}/{world['champion']}/0123456789abcdef.json"


def test_definitions_with_the_asset_and_sensor_load(world: dict[str, Any]) -> None:
    asset = build_live_performance(SPEC)
    defs = dg.Definitions(
        assets=[asset],
        sensors=[make_feedback_sensor(SPEC)],
        jobs=[dg.define_asset_job(SPEC.train_job_name, selection=[asset.key])],
        resources=resources(world),
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_sensor_def(SPEC.feedback_sensor_name).job_name == SPEC.train_job_name


def test_cooldown_passes_and_a_new_champion_starts_a_fresh_streak(world: dict[str, Any]) -> None:
    from lockgate.sensors.feedback import run_feedback_tick

    def run(cursor: dict[str, Any] | None, now: float) -> Any:
        send_labels(world, 3, drifted=True)  # the same labels again: a new file, same window
        return run_feedback_tick(
            SPEC,
            stack=world["stack"],
            artifacts=world["registry"],
            audit=world["audit"],
            data_dir=world["data_dir"],
            cursor=None if cursor is None else json.dumps(cursor),
            actor="test",
            now=now,
        )

    first = run(None, 1000.0)
    assert (first.action, first.cursor["trigger"]["streak"]) == ("judged", 1)
    fired = run(first.cursor, 1010.0)
    assert fired.action == "fire"
    held = run(fired.cursor, 1020.0)
    assert held.action == "judged"
    assert "cooldown" in held.reason
    again = run(held.cursor, 1010.0 + POLICY.cooldown_seconds + 1)
    assert again.action == "fire"
    assert again.reason.endswith("(cooldown passed)")
    assert again.run_key != fired.run_key  # same evidence, a later request: its own run key
    # the streak belonged to another champion: it starts again, the cooldown still counts
    foreign = dict(again.cursor, champion="an-older-champion")
    fresh = run(foreign, 1010.0 + 2 * POLICY.cooldown_seconds + 2)
    assert (fresh.action, fresh.cursor["trigger"]["streak"]) == ("judged", 1)
    assert fresh.cursor["trigger"]["fired"] == 2


def test_a_train_run_in_flight_is_a_skip(
    world: dict[str, Any], instance: dg.DagsterInstance
) -> None:
    asset = build_live_performance(SPEC)
    job = dg.define_asset_job(SPEC.train_job_name, selection=[asset.key])
    defs = dg.Definitions(assets=[asset], jobs=[job], resources=resources(world))
    run = instance.create_run_for_job(defs.resolve_job_def(SPEC.train_job_name))
    assert run.status == dg.DagsterRunStatus.NOT_STARTED
    result = tick(make_feedback_sensor(SPEC), world, instance, None)
    assert isinstance(result, dg.SkipReason)
    assert f"train run {run.run_id} of {SPEC.train_job_name}" in result.skip_message
