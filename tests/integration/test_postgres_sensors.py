"""The sensors on a SQLite and on a PostgreSQL Dagster instance, with the same outcomes: the
feature-store sensor's run keys deduplicated by a real daemon across a crash, the drift sensor's
ticks (requests, links to the runs they triggered, a train run in flight), and the canary
controller's ticks to a promotion, their asset events recorded as the daemon records them.

The drift and canary ticks run against the real tritonserver and gateway of ``test_drift.py``'s
``driftlet`` pipeline (its ``world`` fixture, one per module).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from lockgate import DagsterDaemon, Environment
from lockgate.dagster_instance import DAGSTER_PG_URL_ENV, psycopg2_url, write_instance_yaml
from lockgate.serving.canary import start
from lockgate.serving.stack import LocalServingStack
from lockgate.spec import ModelPipeline
from lockgate.traffic import TrafficGenerator

from . import test_drift as drift
from . import test_feature_change_sensor as feature_change
from .daemons import module_daemon
from .specs import served_spec, stand_in_train_job
from .test_canary import FAST, _store_version
from .test_drift import FEATURES, PIPELINE, POLICY, _frame, _send, _spec, _tick

pytestmark = pytest.mark.integration

world = drift.world  # the drift tests' serving world (tritonserver, gateway), a fixture here too

STORAGES = ["sqlite", "postgres"]
INSTANCE_OPTIONS: dict[str, Any] = {"dequeue_interval_seconds": 1}


@pytest.fixture(params=STORAGES)
def storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def dagster_instance(
    storage: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """A SQLite instance (Dagster's test instance), or the production instance on PostgreSQL."""
    if storage == "sqlite":
        with dg.instance_for_test() as instance:
            yield instance
        return
    url = request.getfixturevalue("postgres_url")
    home = write_instance_yaml(tmp_path / "dagster").parent
    monkeypatch.setenv(DAGSTER_PG_URL_ENV, psycopg2_url(url))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        yield instance


# ---- the feature-store sensor's run keys, deduplicated by a real daemon


@pytest.fixture
def daemon(
    storage: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    env: Environment,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DagsterDaemon]:
    """The feature-change test's daemon on SQLite, or on PostgreSQL with the production
    instance's ``dagster.yaml`` (queued run coordinator); the test's own process opens the same
    instance through ``LOCKGATE_DAGSTER_PG_URL``."""
    postgres_url = None  # SQLite: module_daemon writes the default dagster.yaml
    if storage == "postgres":  # the file now, as the daemon writes it: the test opens the
        # instance before start
        env.dagster_home.mkdir(parents=True, exist_ok=True)
        postgres_url = psycopg2_url(request.getfixturevalue("postgres_url"))
        monkeypatch.setenv(DAGSTER_PG_URL_ENV, postgres_url)
        write_instance_yaml(env.dagster_home, **INSTANCE_OPTIONS)
    d = module_daemon(
        env,
        feature_change.LOCATION,
        "lockgate_feature_change_test",
        {"LOCKGATE_TEST_PAUSE_FILE": str(tmp_path / "pause")},
        postgres_url=postgres_url,
        instance_options=INSTANCE_OPTIONS,
    )
    yield d
    d.kill()


def test_the_daemon_dedupes_feature_change_run_keys_across_a_crash(
    storage: str, env: Environment, daemon: DagsterDaemon
) -> None:
    """``test_feature_change_sensor``'s daemon test, on each storage: one run per mutation, the
    same key again after a crash mid-tick, a replayed key dropped by the daemon."""
    feature_change.test_daemon_requests_exactly_one_run_per_mutation_across_a_crash(env, daemon)
    with daemon.instance() as instance:
        expected = PostgresRunStorage if storage == "postgres" else type(instance.run_storage)
        assert isinstance(instance.run_storage, expected)

        def launched() -> list[dg.DagsterRun]:
            runs = instance.get_runs(
                filters=dg.RunsFilter(job_name=feature_change.SPEC.train_job_name)
            )
            waiting = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED)
            return runs if all(r.status not in waiting for r in runs) else []

        # each run launched (a run the crash caught may not finish) out of the run queue (the
        # queued run coordinator is Dagster's default too): every request enqueued once
        runs = feature_change.wait_for("the three runs to launch", launched, daemon, timeout=90)
        assert len(runs) == 3
        enqueued = [
            instance.get_records_for_run(
                r.run_id, of_type=DagsterEventType.PIPELINE_ENQUEUED
            ).records
            for r in runs
        ]
        assert [len(e) for e in enqueued] == [1, 1, 1]
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)


# ---- the drift sensor's ticks


def test_drift_ticks_request_link_and_wait_the_same_on_each_storage(
    storage: str, world: dict[str, Any], dagster_instance: dg.DagsterInstance
) -> None:
    spec = _spec()
    instance = dagster_instance
    seed = 400 if storage == "sqlite" else 500
    audit = world["audit"].log()
    requested_before = len(audit.entries(pipeline=PIPELINE, kind="retrain_requested"))

    _send(world, _frame(2000, seed=seed, age_shift=20.0, web_share=0.8), 600)
    first = _tick(world, {}, instance, spec)
    assert first.run_request is None
    assert "critical 1 of 2" in first.reason
    _send(world, _frame(2000, seed=seed + 1, age_shift=20.0, web_share=0.8), 600)
    second = _tick(world, first.cursor, instance, spec)
    request = second.run_request
    assert request is not None, second.reason
    assert request.run_key == f"drift:{second.report['report_id']}"
    again = _tick(world, first.cursor, instance, spec)  # a retried tick: the same key, once
    assert again.run_request is not None
    assert again.run_request.run_key == request.run_key
    assert len(audit.entries(pipeline=PIPELINE, kind="retrain_requested")) == requested_before + 1

    # the run the request became (a stand-in with its run key) is linked by the next tick
    @dg.asset(name="launched_retrain")
    def launched() -> int:
        return 1

    run = dg.materialize([launched], instance=instance, tags={"dagster/run_key": request.run_key})
    _send(world, _frame(2000, seed=seed + 2), 600)
    linked = _tick(world, second.cursor, instance, spec)
    assert [o.metadata["triggered_run"].value for o in linked.links] == [run.run_id]
    assert linked.cursor["pending_runs"] == []

    # a train run of the pipeline in flight: the sensor waits for it, whatever the drift
    inflight = instance.create_run_for_job(stand_in_train_job(spec, "lockgate/reason"))
    waiting = _tick(world, linked.cursor, instance, spec)
    assert waiting.reason == f"train run {inflight.run_id} of {PIPELINE} is queued or running"
    instance.report_run_canceled(inflight)
    _send(world, _frame(2000, seed=seed + 3), 600)
    after = _tick(world, linked.cursor, instance, spec)
    assert "is queued or running" not in after.reason
    assert after.report is not None


# ---- the canary controller's ticks


def _begin_canary(world: dict[str, Any], challenger: str) -> ModelPipeline:
    """The champion serving, ``challenger`` loaded beside it, a fast canary started."""
    from lockgate.assets.serving import apply_route, ensure_loaded

    stack: LocalServingStack = world["stack"]
    registry = world["registry"]
    champion = registry.alias(PIPELINE, "champion")
    assert champion is not None
    stack.ensure()
    ensure_loaded(stack, registry, PIPELINE, champion)
    ensure_loaded(stack, registry, PIPELINE, challenger)
    state = start(
        FAST, pipeline=PIPELINE, champion=champion, challenger=challenger, now=time.time()
    )
    apply_route(stack, PIPELINE, state.to_dict())
    stack.gateway().reset_stats(PIPELINE)
    stack.save_canary_state(PIPELINE, state.to_dict())
    return served_spec(PIPELINE, drift=POLICY, canary=FAST)


def test_canary_ticks_promote_and_are_recorded_the_same_on_each_storage(
    storage: str, world: dict[str, Any], dagster_instance: dg.DagsterInstance
) -> None:
    from lockgate.sensors.canary import make_canary_sensor
    from lockgate.serving.wire import encode

    instance = dagster_instance
    registry, stack = world["registry"], world["stack"]
    previous = registry.alias(PIPELINE, "champion")
    seed = 21 if storage == "sqlite" else 22
    challenger = _store_version(
        registry, _frame(6000, seed=1), seed=seed, pipeline=PIPELINE, features=FEATURES
    )
    pipeline = _begin_canary(world, challenger)
    sensor = make_canary_sensor(pipeline)
    context = dg.build_sensor_context(
        instance=instance,
        resources={"serving_stack": stack, "artifacts": registry, "audit": world["audit"]},
    )
    matrix = encode(_frame(3000, seed=seed), world["schema"])
    actions: list[str] = []
    with TrafficGenerator(stack.gateway().url, PIPELINE, matrix, batch=5, threads=2):
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and "promote" not in actions:
            result = sensor(context)
            if isinstance(result, dg.SensorResult):
                for event in result.asset_events:  # what the daemon does with them
                    instance.report_runless_asset_event(event)
                    if event.asset_key == pipeline.asset_key("rollout"):
                        actions.append(str(event.metadata["action"].value))
            time.sleep(0.3)
    assert actions == ["advance", "advance", "advance", "promote"]
    assert registry.alias(PIPELINE, "champion") == challenger

    # the instance holds the transitions, the last one naming the new champion
    rollouts = instance.fetch_materializations(pipeline.asset_key("rollout"), limit=10).records
    assert len(rollouts) == 4
    latest = rollouts[0].asset_materialization
    assert latest is not None
    assert latest.metadata["champion"].value == challenger
    assert latest.metadata["previous_champion"].value == previous
    registry_views = instance.fetch_materializations(
        pipeline.asset_key("model_registry"), limit=10
    ).records
    assert len(registry_views) == 4
