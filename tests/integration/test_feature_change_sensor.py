"""The feature-change sensor against a real Feast store, audit log and Dagster instance."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import SensorInstigatorData, TickStatus

from lockgate import DagsterDaemon, Environment, FeatureChangePolicy, build_definitions
from lockgate.audit.log import AuditLog
from lockgate.errors import FeatureStoreError, SpecError
from lockgate.features.store import FeastStore
from lockgate.sensors.feature_store import make_feature_change_sensor
from pipelines.feature_repo import fraud_feast_store
from pipelines.fraud_data import generate_fraud_data

from .daemons import module_daemon, wait_for
from .specs import lgbm_spec

SPEC = lgbm_spec()


class Ticker:
    """Evaluates the sensor the way the daemon does: the cursor of one tick feeds the next."""

    def __init__(self, env: Environment, instance: dg.DagsterInstance, spec: Any = SPEC) -> None:
        self.resources = {**env.resources(), "feast": fraud_feast_store(env)}
        self.sensor = make_feature_change_sensor(spec)
        self.instance = instance
        self.cursor: str | None = None

    @property
    def feast(self) -> FeastStore:
        return self.resources["feast"]

    def evaluate(self, cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=cursor,
            resources={"feast": self.feast, "audit": self.resources["audit"]},
        )
        return self.sensor(context)

    def tick(self) -> dg.SensorResult:
        result = self.evaluate(self.cursor)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result


def retrains(env: Environment) -> list[dict[str, Any]]:
    return AuditLog(env.audit_path).entries(pipeline=SPEC.name, kind="retrain_requested")


def skip_text(result: dg.SensorResult) -> str:
    assert not result.run_requests
    assert result.skip_reason is not None
    return str(result.skip_reason.skip_message)


@pytest.fixture
def ticker(env: Environment, instance: dg.DagsterInstance) -> Ticker:
    t = Ticker(env, instance)
    t.feast.apply()
    baseline = t.tick()
    assert skip_text(baseline).startswith("no cursor yet: recorded the baseline (checked 4 ")
    assert baseline.cursor is not None
    return t


CHECKED = (
    "checked 4 feature views, 50 source files in 5 folders, "
    "materializations: none yet (not a trigger); nothing changed"
)


def test_sensor_is_named_for_the_pipeline_and_targets_its_train_job(env: Environment) -> None:
    sensor = make_feature_change_sensor(SPEC)
    assert sensor.name == "fraud_lgbm_on_feature_change"
    assert sensor.job_name == "fraud_lgbm_train"
    assert sensor.minimum_interval_seconds == 60
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    defs = build_definitions([SPEC], environment=env)  # the pipeline's definitions carry it
    dg.Definitions.validate_loadable(defs)
    resolved = defs.resolve_sensor_def(SPEC.feature_change_sensor_name)
    assert resolved.job_name == SPEC.train_job_name
    assert resolved.minimum_interval_seconds == 60
    fast = make_feature_change_sensor(
        lgbm_spec(feature_changes=FeatureChangePolicy(interval_seconds=5))
    )
    assert fast.minimum_interval_seconds == 5


def test_a_pipeline_without_policy_has_no_sensor(env: Environment) -> None:
    spec = lgbm_spec(feature_changes=None)
    with pytest.raises(SpecError, match="feature_changes=None"):
        make_feature_change_sensor(spec)
    defs = build_definitions([spec], environment=env)
    assert SPEC.feature_change_sensor_name not in {s.name for s in defs.sensors or []}


def test_unchanged_store_skips_and_says_what_was_checked(ticker: Ticker) -> None:
    cursor = ticker.cursor
    result = ticker.tick()
    assert skip_text(result) == CHECKED
    assert result.cursor is None  # kept as it is
    assert ticker.cursor == cursor


def test_noop_apply_is_not_a_mutation(ticker: Ticker, env: Environment) -> None:
    ticker.feast.store().apply(ticker.feast.definition_objects())  # rewrites the registry
    assert skip_text(ticker.tick()) == CHECKED
    assert retrains(env) == []


def test_definition_change_requests_one_run_and_audits_it(ticker: Ticker, env: Environment) -> None:
    before = ticker.cursor
    objects = ticker.feast.definition_objects()
    next(o for o in objects if getattr(o, "name", None) == "customer_profile").ttl = timedelta(
        days=9
    )
    ticker.feast.store().apply(objects)
    result = ticker.tick()
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key is not None
    assert request.run_key.startswith("fraud_lgbm:feature_change:1:")
    assert request.tags == {
        "lockgate/trigger": "feature_change",
        "lockgate/pipeline": "fraud_lgbm",
        "lockgate/reason": "feature view customer_profile definition changed",
        "lockgate/mutations": "feature view customer_profile definition changed",
        # the run links back to its evidence and the sensor's decision
        "lockgate/evidence": (f"{env.audit_path} (retrain_requested, run_key {request.run_key})"),
        "lockgate/tick_reason": "1 mutation(s) of fraud_v1",
        "lockgate/sensor": "fraud_lgbm_on_feature_change",
    }
    (entry,) = retrains(env)
    assert entry["payload"]["run_key"] == request.run_key
    assert entry["payload"]["trigger"] == "feature_change"
    assert entry["payload"]["mutations"] == ["feature view customer_profile definition changed"]
    assert json.loads(ticker.cursor or "")["seq"] == 1

    # the daemon died before storing the cursor: the retried tick asks for the same key, once
    retried = ticker.evaluate(before)
    assert [r.run_key for r in retried.run_requests] == [request.run_key]
    assert len(retrains(env)) == 1
    assert skip_text(ticker.tick()) == CHECKED


def test_new_day_of_data_requests_one_run(ticker: Ticker, env: Environment) -> None:
    generate_fraud_data(env.data_dir, days=1, append=True)
    result = ticker.tick()
    assert len(result.run_requests) == 1
    text = result.run_requests[0].tags["lockgate/mutations"]
    assert text.startswith("customer_profile: 1 new file 2024-01-11.parquet; ")
    assert len(text) <= 240
    mutations = retrains(env)[0]["payload"]["mutations"]
    assert mutations[-1] == "labels: 1 new file 2024-01-11.parquet"
    assert len(mutations) == 5
    assert skip_text(ticker.tick()).startswith("checked 4 feature views, 55 source files")


def test_two_changes_within_one_second_give_two_runs(ticker: Ticker, env: Environment) -> None:
    target = sorted((env.data_dir / "labels").glob("*.parquet"))[-1]
    keys = []
    for _ in range(2):
        with open(target, "ab") as handle:
            handle.write(b"\0" * 16)
        keys += [r.run_key for r in ticker.tick().run_requests]
    assert len(keys) == 2
    assert len(set(keys)) == 2
    assert [e["payload"]["run_key"] for e in retrains(env)] == keys
    assert skip_text(ticker.tick()).endswith("nothing changed")


def test_a_change_back_is_its_own_mutation(ticker: Ticker, env: Environment) -> None:
    keys = []
    for days in (9, 7, 9):
        objects = ticker.feast.definition_objects()
        view = next(o for o in objects if getattr(o, "name", None) == "merchant_risk")
        view.ttl = timedelta(days=days)  # 7 is the definition's own value
        ticker.feast.store().apply(objects)
        keys += [r.run_key for r in ticker.tick().run_requests]
    assert len(set(keys)) == 3
    assert len(retrains(env)) == 3


def test_materializations_trigger_only_when_the_policy_says_so(
    env: Environment, instance: dg.DagsterInstance
) -> None:
    spec = lgbm_spec(feature_changes=FeatureChangePolicy(materializations=True))
    t = Ticker(env, instance, spec)
    t.feast.apply()
    t.tick()
    plain = Ticker(env, instance)
    plain.tick()
    t.feast.materialize(datetime(2024, 1, 10, tzinfo=UTC), feature_views=["merchant_risk"])
    assert [r.tags["lockgate/mutations"] for r in t.tick().run_requests] == [
        "materialization of merchant_risk moved to 2024-01-10T00:00:00+00:00 (was never)"
    ]
    quiet = plain.tick()
    assert skip_text(quiet).endswith(
        "materializations: 1 of 4 views, latest to 2024-01-10T00:00:00+00:00 (not a trigger); "
        "nothing changed that the policy watches"
    )
    assert quiet.cursor is not None  # the cursor follows the store, without a run


def test_missing_registry_skips_naming_the_path_and_keeps_the_cursor(
    ticker: Ticker,
) -> None:
    cursor = ticker.cursor
    registry = ticker.feast.registry_path
    registry.rename(registry.with_suffix(".moved"))
    result = ticker.tick()
    assert skip_text(result) == (
        f"Feast registry {registry} does not exist yet: nothing to compare. Fix: apply the "
        f"feature definitions (`feast apply` in the repository, or FeastStore.apply() for "
        f"definitions in code); the cursor is kept"
    )
    assert result.cursor is None
    assert ticker.cursor == cursor
    registry.with_suffix(".moved").rename(registry)
    assert skip_text(ticker.tick()) == CHECKED


def test_corrupt_registry_fails_the_tick_and_keeps_the_cursor(ticker: Ticker) -> None:
    cursor = ticker.cursor
    registry = ticker.feast.registry_path
    good = registry.read_bytes()
    registry.write_bytes(b"\xff" * 64)
    with pytest.raises(FeatureStoreError, match=f"Feast registry {registry} is unusable"):
        ticker.tick()
    assert ticker.cursor == cursor
    registry.write_bytes(good)
    assert skip_text(ticker.tick()) == CHECKED


def test_unreadable_cursor_records_a_new_baseline(ticker: Ticker, env: Environment) -> None:
    result = ticker.evaluate('{"not": "ours"}')
    assert skip_text(result).startswith(
        "cursor is not a feature-change cursor (KeyError: 'seq'): recorded the baseline"
    )
    assert result.cursor is not None
    assert retrains(env) == []


def test_missing_label_folder_is_a_mutation(ticker: Ticker, env: Environment) -> None:
    shutil.rmtree(env.data_dir / "labels")
    (request,) = ticker.tick().run_requests
    assert request.tags["lockgate/mutations"] == (
        f"labels: {env.data_dir / 'labels'} is gone (had 10 files)"
    )


def test_cursor_is_json_of_the_fingerprint(ticker: Ticker, env: Environment) -> None:
    data = json.loads(ticker.cursor or "")
    assert data["seq"] == 0
    assert data["fingerprint"]["feature_service"] == "fraud_v1"
    assert Path(data["fingerprint"]["data_dir"]) == env.data_dir
    assert data["fingerprint"]["labels_dataset"] == "labels"
    assert len(data["fingerprint"]["labels"]["detail"]) == 10


# ---- a real daemon, killed mid-tick


LOCATION = "tests.integration.feature_change_location"


@pytest.fixture
def daemon(tmp_path: Path, env: Environment) -> Iterator[DagsterDaemon]:
    d = module_daemon(
        env,
        LOCATION,
        "lockgate_feature_change_test",
        {"LOCKGATE_TEST_PAUSE_FILE": str(tmp_path / "pause")},
    )
    yield d
    d.kill()


def test_daemon_requests_exactly_one_run_per_mutation_across_a_crash(
    env: Environment, daemon: DagsterDaemon
) -> None:
    fraud_feast_store(env).apply()
    audit = AuditLog(env.audit_path)
    pause = Path(daemon.extra_env["LOCKGATE_TEST_PAUSE_FILE"])
    label_file = sorted((env.data_dir / "labels").glob("*.parquet"))[-1]

    def mutate() -> None:
        with open(label_file, "ab") as handle:
            handle.write(b"\0" * 8)

    def keys() -> list[str]:
        return [
            e["payload"]["run_key"]
            for e in audit.entries(pipeline=SPEC.name, kind="retrain_requested")
        ]

    with dg.DagsterInstance.from_config(str(env.dagster_home)) as instance:

        def state() -> Any:
            return next(
                (
                    s
                    for s in instance.all_instigator_state()
                    if s.name == SPEC.feature_change_sensor_name
                ),
                None,
            )

        def cursor_seq() -> int | None:
            s = state()
            data = s.instigator_data if s is not None else None
            if data is None or not data.cursor:
                return None
            return int(json.loads(data.cursor)["seq"])

        def runs(key: str | None = None) -> list[dg.DagsterRun]:
            tags = {"dagster/sensor_name": SPEC.feature_change_sensor_name}
            if key is not None:
                tags["dagster/run_key"] = key
            return list(instance.get_runs(filters=dg.RunsFilter(tags=tags)))

        def ticks() -> list[Any]:
            s = state()
            return [] if s is None else instance.get_ticks(s.instigator_origin_id, s.selector_id)

        def one_more_finished_tick() -> None:
            seen = len(ticks())

            def finished() -> bool:
                now = ticks()
                return len(now) > seen and now[0].status != TickStatus.STARTED

            wait_for("one more finished tick", finished, daemon)

        daemon.start()
        wait_for("the baseline cursor", lambda: cursor_seq() == 0, daemon, timeout=45)

        mutate()
        (first,) = wait_for("the first retrain request", keys, daemon)
        wait_for("the first run", lambda: runs(first), daemon)
        wait_for("the cursor after the first run", lambda: cursor_seq() == 1, daemon)

        # second mutation: the tick audits it, then hangs; the daemon dies mid-tick
        pause.touch()
        mutate()
        second = wait_for("the second audit entry", lambda: keys()[1:], daemon)[0]
        daemon.kill()
        assert runs(second) == []  # the tick never returned
        assert cursor_seq() == 1  # and its cursor was not stored
        pause.unlink()

        daemon.start()
        wait_for("the second run after the restart", lambda: runs(second), daemon, timeout=45)
        wait_for("the cursor after the second run", lambda: cursor_seq() == 2, daemon)
        after_second = state().instigator_data.cursor
        one_more_finished_tick()
        assert len(runs(second)) == 1
        assert keys() == [first, second]

        mutate()
        third = wait_for("the third retrain request", lambda: keys()[2:], daemon)[0]
        wait_for("the third run", lambda: runs(third), daemon)
        one_more_finished_tick()

        assert len({first, second, third}) == 3
        assert sorted(r.tags["dagster/run_key"] for r in runs()) == sorted([first, second, third])
        for run in runs():
            assert run.job_name == SPEC.train_job_name
            assert run.tags["lockgate/trigger"] == "feature_change"
            assert run.tags["lockgate/mutations"].startswith("labels: ")
        assert keys() == [first, second, third]

        # a cursor write that got lost: the daemon evaluates the third mutation again, asks for
        # the same run key and drops it (dedupe per sensor and code location); no second audit
        dropped = f"already completed with run keys: {json.dumps([third])}"
        for _ in range(3):  # a rewind written during a tick is overwritten by it: try again
            rewind(instance, state(), after_second)
            wait_for("the cursor back", lambda: cursor_seq() == 3, daemon)
            if dropped in daemon.log_tail(200):
                break
        assert dropped in daemon.log_tail(400)
        assert len(runs()) == 3
        assert keys() == [first, second, third]


def rewind(instance: dg.DagsterInstance, state: Any, cursor: str) -> None:
    """Sets a sensor's stored cursor, as `dagster sensor cursor --set` does."""

    data = state.instigator_data
    instance.update_instigator_state(
        state.with_data(
            SensorInstigatorData(
                last_tick_timestamp=data.last_tick_timestamp,
                last_run_key=data.last_run_key,
                min_interval=data.min_interval,
                cursor=cursor,
                last_tick_start_timestamp=data.last_tick_start_timestamp,
                last_sensor_start_timestamp=data.last_sensor_start_timestamp,
                sensor_type=data.sensor_type,
            )
        )
    )
