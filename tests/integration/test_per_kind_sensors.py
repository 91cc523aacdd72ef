"""``build_definitions(..., sensors="per_kind")``: one sensor per kind for all pipelines, which
decides, requests, audits and skips per pipeline exactly as each pipeline's own sensor does,
against a real Feast store, audit log and Dagster instance."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lockgate import Environment, build_definitions
from lockgate.audit.log import AuditLog
from lockgate.errors import LockgateError, SpecError
from lockgate.sensors.per_kind import kind_sensor_name
from lockgate.spec import ModelPipeline
from pipelines.feature_repo import fraud_feast_store

from .daemons import module_daemon, wait_for
from .specs import lgbm_spec, served_spec

NAMES = ("fraud_a", "fraud_b", "fraud_c")


def _specs() -> list[ModelPipeline]:
    return [lgbm_spec(name=n) for n in NAMES] + [served_spec("served_d")]


def _sensors(defs: dg.Definitions) -> dict[str, dg.SensorDefinition]:
    return {s.name: s for s in defs.sensors or [] if isinstance(s, dg.SensorDefinition)}


def _evaluate(
    sensor: dg.SensorDefinition,
    cursor: str | None,
    *,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
) -> Any:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor.evaluate_tick(context)


def _aged(cursor: str | None, seconds: float = 3600.0) -> str:
    """The combined cursor as it is ``seconds`` later: every pipeline is due again."""
    data = json.loads(cursor or "")
    data["evaluated"] = {p: t - seconds for p, t in data["evaluated"].items()}
    return json.dumps(data)


def _request(r: dg.RunRequest, job: str | None = None) -> tuple[Any, ...]:
    """A run request's key, job (``job`` when it names none: the sensor's one target, as the
    daemon resolves it) and tags but the sensor's name."""
    tags = {k: v for k, v in r.tags.items() if k != "dagster/sensor_name"}
    return (r.run_key, r.job_name or job, tuple(sorted(tags.items())))


def _mutate(env: Environment) -> None:
    store = fraud_feast_store(env)
    objects = store.definition_objects()
    view = next(o for o in objects if getattr(o, "name", None) == "customer_profile")
    view.ttl = timedelta(days=9)
    store.store().apply(objects)


def test_per_kind_names_one_sensor_per_kind_and_the_default_is_unchanged(
    env: Environment,
) -> None:
    feast = {"feast": fraud_feast_store(env)}
    per_pipeline = build_definitions(_specs(), environment=env, resources=feast)
    assert sorted(_sensors(per_pipeline)) == sorted(
        [f"{n}_on_feature_change" for n in NAMES]
        + ["served_d_on_canary_tick", "served_d_on_feature_change"]
    )
    per_kind = build_definitions(_specs(), environment=env, resources=feast, sensors="per_kind")
    combined = _sensors(per_kind)
    assert sorted(combined) == ["pipelines_on_canary_tick", "pipelines_on_feature_change"]
    assert combined["pipelines_on_feature_change"].minimum_interval_seconds == 60
    assert sorted(j.name for j in combined["pipelines_on_feature_change"].jobs) == sorted(
        f"{n}_train" for n in (*NAMES, "served_d")
    )
    # the train jobs keep the accelerator tag the queued run coordinator limits
    assert all(
        j.tags.get("lockgate/resource") == "cpu"
        for j in combined["pipelines_on_feature_change"].jobs
    )
    per_kind.get_repository_def()  # the location loads
    with pytest.raises(SpecError, match="sensors='one' is not a sensor layout"):
        build_definitions(_specs(), environment=env, sensors="one")  # type: ignore[arg-type]


def test_per_kind_requests_the_same_runs_cursors_audits_and_skips(
    env: Environment, instance: dg.DagsterInstance
) -> None:
    resources = {**env.resources(), "feast": fraud_feast_store(env)}
    own = _sensors(build_definitions(_specs(), environment=env, resources=resources))
    combined = _sensors(
        build_definitions(_specs(), environment=env, resources=resources, sensors="per_kind")
    )["pipelines_on_feature_change"]
    names = (*NAMES, "served_d")
    cursors: dict[str, str | None] = dict.fromkeys(names)
    combined_cursor: str | None = None

    def tick_both() -> tuple[dict[str, Any], Any]:
        nonlocal combined_cursor
        singles = {}
        for n in names:
            singles[n] = _evaluate(
                own[f"{n}_on_feature_change"], cursors[n], resources=resources, instance=instance
            )
            cursors[n] = singles[n].cursor or cursors[n]
        aged = _aged(combined_cursor) if combined_cursor else None
        together = _evaluate(combined, aged, resources=resources, instance=instance)
        combined_cursor = together.cursor
        # the combined cursor holds each pipeline's cursor, as its own sensor stored it
        assert json.loads(combined_cursor or "")["cursors"] == cursors
        return singles, together

    # 1. the baseline: every pipeline skips with its own reason, the same text either way
    singles, together = tick_both()
    assert not together.run_requests
    lines = str(together.skip_message).splitlines()
    assert lines[0] == "4 of 4 pipelines evaluated (0 not due yet)"
    assert lines[1:] == [f"{n}: {singles[n].skip_message}" for n in names]
    assert all("recorded the baseline" in line for line in lines[1:])

    # 2. a mutation of the shared feature service: one run per pipeline, same keys and tags
    _mutate(env)
    singles, together = tick_both()
    expected = [_request(r, f"{n}_train") for n in names for r in singles[n].run_requests]
    assert len(expected) == 4
    assert [_request(r) for r in together.run_requests] == expected
    assert [r.run_key for r in together.run_requests] == [
        r.run_key for n in names for r in singles[n].run_requests
    ]
    assert all(
        k.startswith(f"{n}:feature_change:1:")
        for k, n in zip([r.run_key for r in together.run_requests], names, strict=True)
    )
    assert {r.tags["dagster/sensor_name"] for r in together.run_requests} == {
        "pipelines_on_feature_change"
    }
    assert together.skip_message is None
    # one audit entry per pipeline and run key: the second evaluation found it written
    for n in names:
        entries = AuditLog(env.audit_path).entries(pipeline=n, kind="retrain_requested")
        assert [e["payload"]["run_key"] for e in entries] == [singles[n].run_requests[0].run_key]

    # 3. nothing changed since: the same skip reasons again
    singles, together = tick_both()
    assert str(together.skip_message).splitlines()[1:] == [
        f"{n}: {singles[n].skip_message}" for n in names
    ]

    # the canary controllers too: the served pipeline's idle skip, word for word
    canary = _sensors(
        build_definitions(_specs(), environment=env, resources=resources, sensors="per_kind")
    )["pipelines_on_canary_tick"]
    alone = _evaluate(own["served_d_on_canary_tick"], None, resources=resources, instance=instance)
    in_kind = _evaluate(canary, None, resources=resources, instance=instance)
    assert str(in_kind.skip_message).splitlines() == [
        "1 of 1 pipelines evaluated (0 not due yet)",
        f"served_d: {alone.skip_message}",
    ]

    # 4. a pipeline whose interval has not passed is not evaluated
    early = _evaluate(combined, combined_cursor, resources=resources, instance=instance)
    assert early.skip_message == "0 of 4 pipelines evaluated (4 not due yet)"
    assert early.cursor == combined_cursor


def test_one_failing_pipeline_does_not_stop_the_others(
    env: Environment, instance: dg.DagsterInstance
) -> None:
    resources = {**env.resources(), "feast": fraud_feast_store(env)}
    broken = lgbm_spec(name="fraud_broken", feature_service="no_such_service_v1")
    specs = [lgbm_spec(name="fraud_a"), broken, lgbm_spec(name="fraud_b")]
    combined = _sensors(
        build_definitions(specs, environment=env, resources=resources, sensors="per_kind")
    )["pipelines_on_feature_change"]
    first = _evaluate(combined, None, resources=resources, instance=instance)
    lines = str(first.skip_message).splitlines()
    assert lines[0] == "3 of 3 pipelines evaluated (0 not due yet)"
    assert lines[1].startswith("fraud_broken: FAILED (FeatureStoreError: ")
    assert "no_such_service_v1" in lines[1]
    assert [line.split(":")[0] for line in lines[2:]] == ["fraud_a", "fraud_b"]
    state = json.loads(first.cursor or "")
    assert sorted(state["cursors"]) == ["fraud_a", "fraud_b"]  # the broken one is retried
    assert sorted(state["evaluated"]) == ["fraud_a", "fraud_b"]

    _mutate(env)
    second = _evaluate(combined, _aged(first.cursor), resources=resources, instance=instance)
    assert sorted(r.run_key.split(":")[0] for r in second.run_requests) == ["fraud_a", "fraud_b"]

    # every evaluated pipeline failing fails the tick, as the pipeline's own sensor would
    alone = _sensors(
        build_definitions([broken], environment=env, resources=resources, sensors="per_kind")
    )["pipelines_on_feature_change"]
    with pytest.raises(LockgateError, match="every pipeline evaluated by pipelines_on_feature"):
        _evaluate(alone, None, resources=resources, instance=instance)


# ---- on a real dagster-daemon ----


def test_a_real_daemon_launches_each_pipelines_run_from_the_per_kind_sensor(
    tmp_path: Path, env: Environment
) -> None:
    from dagster._core.scheduler.instigation import TickStatus

    from tests.integration.per_kind_location import SPECS

    fraud_feast_store(env).apply()
    daemon = module_daemon(env, "tests.integration.per_kind_location", "lockgate_per_kind_test")
    name = kind_sensor_name("feature_change")
    audit = AuditLog(env.audit_path)
    label_file = sorted((env.data_dir / "labels").glob("*.parquet"))[-1]

    try:
        with dg.DagsterInstance.from_config(str(env.dagster_home)) as instance:

            def state() -> Any:
                return next((s for s in instance.all_instigator_state() if s.name == name), None)

            def cursor() -> dict[str, Any] | None:
                s = state()
                data = s.instigator_data if s is not None else None
                return json.loads(data.cursor) if data is not None and data.cursor else None

            def runs() -> list[dg.DagsterRun]:
                tags = {"dagster/sensor_name": name}
                return list(instance.get_runs(filters=dg.RunsFilter(tags=tags)))

            daemon.start()
            # the first tick records both pipelines' baselines under their own names
            baseline = wait_for("both baselines", lambda: cursor(), daemon, timeout=90)
            assert set(baseline["cursors"]) == {s.name for s in SPECS}
            with open(label_file, "ab") as handle:  # both pipelines read these labels
                handle.write(b"\0" * 8)
            launched = wait_for(
                "a run for each pipeline", lambda: runs()[1:] and runs(), daemon, 60
            )
            assert sorted(r.job_name for r in launched) == sorted(s.train_job_name for s in SPECS)
            for run in launched:
                pipeline = run.tags["lockgate/pipeline"]
                assert run.tags["dagster/run_key"].startswith(f"{pipeline}:feature_change:1:")

            def moved_on() -> bool:  # each pipeline's own cursor, stored when the tick ends
                now = cursor() or {"cursors": {}}
                seqs = [json.loads(now["cursors"].get(s.name, "{}")).get("seq") for s in SPECS]
                return seqs == [1, 1]

            wait_for("both cursors after the runs", moved_on, daemon, 60)
            for spec in SPECS:
                entries = audit.entries(pipeline=spec.name, kind="retrain_requested")
                assert len(entries) == 1
            s = state()
            ticks = instance.get_ticks(s.instigator_origin_id, s.selector_id)
            assert any(t.status == TickStatus.SUCCESS for t in ticks)
    finally:
        daemon.kill()
