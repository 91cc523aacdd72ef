"""Drift report and drift sensor over the real gateway's prediction log, real tritonserver behind.

Traffic is sent through the gateway with ``tritonclient``; the drift report reads what the
gateway logged. The sensor ticks run the production tick function with a real Dagster instance.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lockgate import DagsterDaemon, Environment
from lockgate.assets.drift_metadata import drift_metadata
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.monitoring.drift_report import compute_drift_report
from lockgate.monitoring.triggers import DriftPolicy
from lockgate.resources.audit import AuditTrail
from lockgate.sensors.canary import run_canary_tick
from lockgate.sensors.drift import make_drift_sensor, run_drift_tick
from lockgate.serving.stack import LocalServingStack
from lockgate.serving.wire import encode, wire_schema_for_version
from lockgate.spec import ModelPipeline
from lockgate.traffic import TrafficGenerator

from .specs import served_spec
from .test_canary import _store_version

PIPELINE = "driftlet"
FEATURES = ["amount", "age", "device"]


def _frame(n: int, seed: int, *, age_shift: float = 0.0, web_share: float = 1 / 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, n)
    age = np.clip(rng.normal(45 - age_shift, 12, n), 18, 95)
    rest = (1 - web_share) / 2
    device = rng.choice(["ios", "web", "pos"], n, p=[rest, web_share, rest])
    logit = -4 + 0.02 * amount + (age < 25) * 1.0 + (device == "web")
    return pd.DataFrame(
        {
            "transaction_id": [f"t{seed}-{i}" for i in range(n)],
            "event_timestamp": pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC"),
            "amount": amount,
            "age": age,
            "device": device,
            "is_fraud": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64"),
        }
    )


def _store_champion(registry: LocalArtifactRegistry, frame: pd.DataFrame) -> str:
    version = _store_version(registry, frame, seed=1, pipeline=PIPELINE, features=FEATURES)
    registry.move_alias(PIPELINE, "champion", version, actor="test", reason="first model")
    return version


POLICY = DriftPolicy(
    window_rows=600,
    min_rows=300,
    consecutive=2,
    cooldown_seconds=3600,
    window_seconds=None,
    interval_seconds=1,
)


def _spec(policy: DriftPolicy = POLICY) -> ModelPipeline:
    return served_spec(PIPELINE, drift=policy)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("drift")
    registry = LocalArtifactRegistry(root=str(root / "artifacts"))
    champion = _store_champion(registry, _frame(6000, seed=1))
    stack = LocalServingStack(root=str(root / "serving"), durability="flush")
    audit = AuditTrail(path=str(root / "audit.jsonl"))
    spec = _spec()
    outcome = run_canary_tick(spec, stack=stack, artifacts=registry, audit=audit, actor="test")
    assert outcome.action == "restored", outcome  # champion loaded and routed
    schema = wire_schema_for_version(registry, PIPELINE, champion)
    try:
        yield {
            "root": root,
            "registry": registry,
            "stack": stack,
            "audit": audit,
            "champion": champion,
            "schema": schema,
        }
    finally:
        stack.stop()


def _send(world: dict, frame: pd.DataFrame, rows: int) -> None:
    matrix = encode(frame, world["schema"])
    gen = TrafficGenerator(
        world["stack"].gateway().url, PIPELINE, matrix, batch=20, threads=2, max_requests=rows // 20
    )
    with gen:
        while gen.report.answered + gen.report.errors < rows // 20:
            import time

            time.sleep(0.05)
    assert gen.report.errors == 0, gen.report.error_messages


def _tick(world: dict, cursor: dict, instance: dg.DagsterInstance, spec: ModelPipeline):
    return run_drift_tick(
        spec,
        stack=world["stack"],
        artifacts=world["registry"],
        audit=world["audit"],
        cursor=cursor,
        instance=instance,
        actor="test",
    )


def test_drift_report_separates_same_and_shifted_traffic(world: dict) -> None:
    spec = _spec()
    _send(world, _frame(2000, seed=2), 600)
    same = compute_drift_report(spec, stack=world["stack"], artifacts=world["registry"])
    assert same["level"] == "ok", same["reason"]
    assert same["window"]["rows"] == 600
    assert same["window"]["versions"] == {world["champion"]: 600}
    assert {f["feature"] for f in same["features"]} == set(FEATURES)
    assert same["prediction"]["severity"] == "ok"

    _send(world, _frame(2000, seed=3, age_shift=20.0, web_share=0.8), 600)
    shifted = compute_drift_report(spec, stack=world["stack"], artifacts=world["registry"])
    assert shifted["level"] == "critical", shifted["reason"]
    assert set(shifted["critical_features"]) == {"age", "device"}
    age = next(f for f in shifted["features"] if f["feature"] == "age")
    assert age["psi"] > 0.2
    assert age["ks"] > 0.1
    amount = next(f for f in shifted["features"] if f["feature"] == "amount")
    assert amount["severity"] == "ok"
    # worst first, plots of the worst features stored beside the report
    assert shifted["features"][0]["severity"] == "critical"
    stored = world["registry"].read_json(f"drift/{PIPELINE}/{shifted['report_id']}/drift.json")
    assert stored["critical_features"] == shifted["critical_features"]
    assert "age.png" in shifted["images"]
    png = world["registry"].read_bytes(f"drift/{PIPELINE}/{shifted['report_id']}/age.png")
    assert png.startswith(b"\x89PNG")
    # on the asset page: the level first, a table and charts in place, no PNG bytes inline
    meta = drift_metadata(shifted, world["registry"])
    assert next(iter(meta)) == "severity"
    assert meta["severity"].startswith("🔴 CRITICAL: critical drift on")
    assert isinstance(meta["features"], dg.TableMetadataValue)
    assert meta["features"].records[0].data["severity"] == "CRITICAL"
    assert len(meta["plot_age"].value) < 1000  # Dagster renders it in place
    assert meta["png_age"].value.endswith("age.png")
    assert "base64" not in json.dumps({k: str(v) for k, v in meta.items()})


def test_too_few_rows_is_insufficient_not_ok(world: dict) -> None:
    # the whole log is looked at: everything sent so far counts, so ask for more than that
    spec = _spec(POLICY.model_copy(update={"min_rows": 10**6, "window_rows": 10**6}))
    report = compute_drift_report(spec, stack=world["stack"], artifacts=world["registry"])
    assert report["level"] == "insufficient"
    assert "fewer than min_rows=1000000" in report["reason"]


def test_sensor_fires_once_on_sustained_drift_and_respects_cooldown(world: dict) -> None:
    spec = _spec()
    with dg.instance_for_test() as instance:
        # the log now ends with shifted traffic (previous test): two critical windows needed
        _send(world, _frame(2000, seed=4, age_shift=20.0, web_share=0.8), 600)
        first = _tick(world, {}, instance, spec)
        assert first.run_request is None
        assert "critical 1 of 2" in first.reason
        unchanged = _tick(world, first.cursor, instance, spec)
        assert unchanged.report is None
        assert "no request logged" in unchanged.reason

        _send(world, _frame(2000, seed=5, age_shift=20.0, web_share=0.8), 600)
        second = _tick(world, first.cursor, instance, spec)
        assert second.run_request is not None, second.reason
        request = second.run_request
        assert request.run_key == f"drift:{second.report['report_id']}"
        assert request.job_name == spec.train_job_name
        assert request.tags["lockgate/trigger"] == "drift"
        assert set(request.tags["lockgate/drift_features"].split(",")) == {"age", "device"}
        # the run links back to the evidence and the tick's decision; the report names the run
        assert request.tags["lockgate/evidence"] == second.report["uri"]
        assert request.tags["lockgate/tick_reason"] == second.reason[:1000]
        assert request.tags["lockgate/sensor"] == spec.drift_sensor_name
        assert second.metadata["retrain_run_key"] == request.run_key
        entries = world["audit"].log().entries(pipeline=PIPELINE, kind="retrain_requested")
        assert [e["payload"]["run_key"] for e in entries] == [request.run_key]
        assert entries[0]["payload"]["drift_report"] == second.report["uri"]

        # a retried tick (cursor not saved) asks for the same run key, audited once
        again = _tick(world, first.cursor, instance, spec)
        assert again.run_request is not None
        assert again.run_request.run_key == request.run_key
        assert len(world["audit"].log().entries(pipeline=PIPELINE, kind="retrain_requested")) == 1

        # the daemon launches the request (here: a stand-in run with its run key); the next
        # tick links the report to that run with an observation on drift_report
        @dg.asset(name="launched_retrain")
        def launched() -> int:
            return 1

        run = dg.materialize(
            [launched], instance=instance, tags={"dagster/run_key": request.run_key}
        )
        # flapping: ok and critical windows alternate; the cooldown allows no second retrain
        cursor = second.cursor
        fired = 0
        linked = []
        for i, shift in enumerate((0.0, 20.0, 0.0, 20.0, 20.0)):
            web = 0.8 if shift else 1 / 3
            _send(world, _frame(2000, seed=10 + i, age_shift=shift, web_share=web), 600)
            tick = _tick(world, cursor, instance, spec)
            cursor = tick.cursor
            linked += [o.metadata["triggered_run"].value for o in tick.links]
            fired += tick.run_request is not None
            if shift and tick.report is not None and tick.report["level"] == "critical":
                assert tick.run_request is None, tick.reason
        assert fired == 0
        assert linked == [run.run_id]  # linked once
        assert cursor["pending_runs"] == []
        assert "cooldown" in tick.reason
        assert cursor["trigger"]["fired"] == 1


def test_sensor_definition_reports_the_window_as_a_materialization(world: dict) -> None:
    spec = _spec()
    sensor = make_drift_sensor(spec)
    assert sensor.name == "driftlet_on_drift"
    assert sensor.job_name == spec.train_job_name
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={
                "serving_stack": world["stack"],
                "artifacts": world["registry"],
                "audit": world["audit"],
            },
        )
        result = sensor(context)
        assert isinstance(result, dg.SensorResult)
        (event,) = result.asset_events
        assert event.asset_key == dg.AssetKey([PIPELINE, "drift_report"])
        assert event.metadata["level"].value in ("ok", "warn", "critical")
        assert "features" in event.metadata
        cursor = json.loads(result.cursor)
        assert cursor["champion"] == world["champion"]
        assert cursor["trigger"]["last_level"] == event.metadata["level"].value


def test_streamed_window_matches_the_held_window(world: dict) -> None:
    """window_rows=None folds every logged row into running counts: same numbers as holding
    the same rows in memory (Wasserstein within the accumulator's bound)."""
    held_spec = _spec(POLICY.model_copy(update={"window_rows": 10**6}))
    streamed_spec = _spec(POLICY.model_copy(update={"window_rows": None}))
    held = compute_drift_report(
        held_spec, stack=world["stack"], artifacts=world["registry"], store=False
    )
    streamed = compute_drift_report(
        streamed_spec, stack=world["stack"], artifacts=world["registry"], store=False
    )
    assert streamed["window"]["rows"] == held["window"]["rows"] > 600
    assert streamed["window"]["mode"] == "streamed"
    assert streamed["level"] == held["level"]
    by_name = {f["feature"]: f for f in held["features"]}
    for f in streamed["features"]:
        other = by_name[f["feature"]]
        for key in ("psi", "jsd", "ks", "ks_pvalue", "chi2_pvalue", "missing_cur", "n_cur"):
            assert f[key] == other[key], (f["feature"], key)
        if f["wasserstein"] is not None:
            assert f["wasserstein"] == pytest.approx(other["wasserstein"], rel=1e-9)
    assert streamed["prediction"]["psi"] == held["prediction"]["psi"]


def test_a_feature_missing_in_every_live_row_is_critical(world: dict) -> None:
    frame = _frame(2000, seed=40)
    frame["age"] = np.nan  # an upstream outage: the feature stops arriving
    _send(world, frame, 600)
    report = compute_drift_report(_spec(), stack=world["stack"], artifacts=world["registry"])
    assert report["level"] == "critical"
    assert report["missing_features"] == ["age"]
    assert "age" in report["critical_features"]
    assert "missing in every live row: age" in report["reason"]
    assert {f["feature"] for f in report["features"]} == {"amount", "device"}


REPO = Path(__file__).resolve().parents[2]


def test_flapping_drift_under_a_real_daemon_retrains_once_per_cooldown(
    world: dict, tmp_path: Path
) -> None:
    """The production sensor in a real dagster-daemon, ticking every few seconds, while live
    traffic flips between drifted and normal: one retrain, then the cooldown holds."""
    policy = POLICY.model_copy(update={"consecutive": 1, "cooldown_seconds": 3600})
    env = Environment.local(tmp_path / "home")
    env.dagster_home.mkdir(parents=True)
    (env.dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    workspace = env.home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: tests.integration.drift_location\n"
        "      location_name: lockgate_drift_test\n"
        f"      working_directory: {REPO}\n"
    )
    key = dg.AssetKey([PIPELINE, "drift_report"])
    requested_before = len(world["audit"].log().entries(kind="retrain_requested"))
    daemon = DagsterDaemon(
        env,
        workspace,
        extra_env={
            "LOCKGATE_TEST_DRIFT_ROOT": str(world["root"]),
            "LOCKGATE_TEST_DRIFT_POLICY": policy.model_dump_json(),
            "PYTHONPATH": str(REPO),
        },
        cwd=REPO,
    )
    levels: list[str] = []
    with daemon, dg.DagsterInstance.from_config(str(env.dagster_home)) as instance:
        for i, shift in enumerate((20.0, 0.0, 20.0, 0.0, 20.0)):
            web = 0.8 if shift else 1 / 3
            _send(world, _frame(2000, seed=100 + i, age_shift=shift, web_share=web), 600)
            sent = time.time()
            deadline = sent + 60
            while time.time() < deadline:
                records = instance.fetch_materializations(key, limit=1).records
                if records and records[0].timestamp > sent:
                    meta = records[0].asset_materialization.metadata
                    levels.append(str(meta["level"].value))
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"no drift report after window {i}:\n{daemon.log_tail(60)}")
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"lockgate/trigger": "drift"}))
    assert levels.count("critical") >= 2, levels
    assert "ok" in levels, levels
    assert len(runs) == 1, [r.tags.get("lockgate/reason") for r in runs]
    assert runs[0].job_name == "driftlet_train"
    assert runs[0].tags["dagster/run_key"].startswith("drift:")
    requested = world["audit"].log().entries(kind="retrain_requested")
    assert len(requested) == requested_before + 1
