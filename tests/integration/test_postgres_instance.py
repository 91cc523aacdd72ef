"""The production Dagster instance on a real PostgreSQL: its ``dagster.yaml`` loads into Postgres
run, event-log and schedule storage; the queued run coordinator holds a second GPU training run
while one is in progress; the pool of the Triton-validation steps hands out one slot at a time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.remote_origin import (
    RegisteredCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from lockgate import Environment, build_definitions
from lockgate.assets.serving import TRITON_VALIDATION_POOL
from lockgate.assets.weights import RESOURCE_TAG
from lockgate.dagster_instance import (
    DAGSTER_PG_URL_ENV,
    POSTGRES_DB_ENV,
    apply_pool_limits,
    open_instance,
    psycopg2_url,
    write_instance_yaml,
)
from lockgate.spec import ModelPipeline, TritonTarget
from tests.test_dagster_instance import DeviceTrainer, pipeline

from .specs import served_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_home(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME with the production ``dagster.yaml``; the URL in the environment only."""
    home = tmp_path / "dagster"
    write_instance_yaml(home)
    monkeypatch.setenv(DAGSTER_PG_URL_ENV, psycopg2_url(postgres_url))
    return home


def test_the_yaml_loads_into_postgres_storage_and_the_queue(
    pg_home: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (pg_home / "dagster.yaml").read_text()
    assert postgres_url not in text
    assert urlsplit(postgres_url).password not in text  # no secret in the file
    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert instance.run_coordinator.dequeue_interval_seconds == 5
        config = instance.get_concurrency_config()
        assert config.run_queue_config is not None
        assert config.run_queue_config.max_concurrent_runs == 10
        assert config.run_queue_config.tag_concurrency_limits == [
            {"key": RESOURCE_TAG, "value": "gpu", "limit": 1}
        ]
        assert config.pool_config.default_pool_limit == 1
        assert config.pool_config.pool_granularity is not None
        assert config.pool_config.pool_granularity.value == "op"
        assert instance.event_log_storage.supports_global_concurrency_limits
        run = instance.create_run_for_job(_op_job(), tags={"written": "by the first"})

    # another process with the URL but not the variable reads the same database
    monkeypatch.delenv(DAGSTER_PG_URL_ENV)
    with open_instance(pg_home, postgres_url=postgres_url) as other:
        assert isinstance(other.run_storage, PostgresRunStorage)
        again = other.get_run_by_id(run.run_id)
        assert again is not None
        assert again.tags["written"] == "by the first"
    with pytest.raises(Exception, match=DAGSTER_PG_URL_ENV):  # Dagster names the missing variable
        dg.DagsterInstance.from_config(str(pg_home))


def test_the_connection_in_parts_reads_each_from_its_variable(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = urlsplit(postgres_url)
    values = {
        "username": parts.username,
        "password": parts.password or "",
        "hostname": parts.hostname,
        "db_name": parts.path.lstrip("/"),
        "port": str(parts.port),
    }
    for field, name in POSTGRES_DB_ENV.items():
        monkeypatch.setenv(name, str(values[field]))
    home = write_instance_yaml(tmp_path / "dagster", postgres_db_env=POSTGRES_DB_ENV).parent
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        run = instance.create_run_for_job(_op_job())
    with open_instance(home, postgres_url=postgres_url) as same:
        assert same.get_run_by_id(run.run_id) is not None


def test_a_plain_postgresql_url_breaks_event_storage_hence_psycopg2(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the URL names psycopg2: SQLAlchemy 2.1 reads ``postgresql://`` with psycopg 3, and
    dagster-postgres then fails on every event it stores. (When this test fails, the trap is
    gone and :func:`psycopg2_url` may go.)"""
    home = write_instance_yaml(tmp_path / "dagster").parent
    monkeypatch.setenv(DAGSTER_PG_URL_ENV, postgres_url)
    assert postgres_url.startswith("postgresql://")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.create_run_for_job(_op_job())
        with pytest.raises(Exception, match="NOTIFY run_events"):
            instance.report_engine_event("hello", run)
    monkeypatch.setenv(DAGSTER_PG_URL_ENV, psycopg2_url(postgres_url))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_engine_event("hello", run)
        assert [e.message for e in instance.all_logs(run.run_id)][-1:] == ["hello"]


# ---- the queued run coordinator holds the second GPU training run


def _op_job() -> dg.JobDefinition:
    @dg.op
    def noop() -> None:
        pass

    @dg.job(name="plain")
    def plain() -> None:
        noop()

    return plain


def _submit(instance: dg.DagsterInstance, spec: ModelPipeline, env: Environment) -> dg.DagsterRun:
    """A run of the spec's train job in a code location ``lockgate``, with the job's run tags as
    a launch gives them, submitted to the instance's run coordinator (QUEUED)."""
    job = build_definitions([spec], environment=env).resolve_job_def(spec.train_job_name)
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=RegisteredCodeLocationOrigin("lockgate"),
            repository_name="__repository__",
        ),
        job_name=job.name,
    )
    run = instance.create_run_for_job(job, tags=dict(job.run_tags), remote_job_origin=origin)
    submitted = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
    assert submitted.status == dg.DagsterRunStatus.QUEUED
    return submitted


def _dequeue(instance: dg.DagsterInstance) -> list[str]:
    """One look at the queue by the daemon: the runs it would launch now, each marked STARTING
    as the daemon marks a run before it hands it to the run launcher."""
    with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
        runs = daemon._get_runs_to_dequeue(  # the daemon's own selection, without a launcher
            instance, instance.get_concurrency_config(), fixed_iteration_time=None
        )
    for run in runs:
        instance.report_dagster_event(
            DagsterEvent(
                event_type_value=DagsterEventType.PIPELINE_STARTING.value, job_name=run.job_name
            ),
            run_id=run.run_id,
        )
    return [run.job_name for run in runs]


@pytest.mark.parametrize(("gpu_runs", "first_look"), [(1, ["a_train", "c_train"]), (2, None)])
def test_the_queue_holds_a_second_gpu_training_run_while_one_runs(
    tmp_path: Path,
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    gpu_runs: int,
    first_look: list[str] | None,
) -> None:
    home = write_instance_yaml(tmp_path / "dagster", gpu_training_runs=gpu_runs).parent
    monkeypatch.setenv(DAGSTER_PG_URL_ENV, psycopg2_url(postgres_url))
    env = Environment.local(tmp_path / "home")
    gpu_a = pipeline("a", trainer=DeviceTrainer(device="cuda"))
    gpu_b = pipeline("b", trainer=DeviceTrainer(device="cuda:1"))
    cpu_c = pipeline("c")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        a, b, c = (_submit(instance, spec, env) for spec in (gpu_a, gpu_b, cpu_c))
        assert [r.tags[RESOURCE_TAG] for r in (a, b, c)] == ["gpu", "gpu", "cpu"]
        if gpu_runs == 2:  # the limit is the configured one: both GPU runs go
            assert _dequeue(instance) == ["a_train", "b_train", "c_train"]
            return
        assert _dequeue(instance) == first_look
        for _ in range(3):  # b waits, look after look, while a is in progress
            assert _dequeue(instance) == []
        assert _status(instance, b) == dg.DagsterRunStatus.QUEUED
        assert _status(instance, a) == dg.DagsterRunStatus.STARTING
        instance.report_run_failed(_run(instance, c))  # a CPU run ending frees no GPU slot
        assert _dequeue(instance) == []
        instance.report_run_failed(_run(instance, a))  # the GPU run ends: b goes
        assert _dequeue(instance) == ["b_train"]
        assert _status(instance, b) == dg.DagsterRunStatus.STARTING


def _run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRun:
    found = instance.get_run_by_id(run.run_id)
    assert found is not None
    return found


def _status(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dg.DagsterRunStatus:
    return _run(instance, run).status


# ---- the Triton-validation pool


@pytest.fixture
def served(tmp_path: Path) -> tuple[ModelPipeline, Any, str]:
    """A served pipeline's train job and the key of its step in the Triton-validation pool."""
    spec = served_spec("pooled", serving=TritonTarget(device="cpu"))
    job = build_definitions(
        [spec], environment=Environment.local(tmp_path / "home")
    ).resolve_job_def(spec.train_job_name)
    (step,) = [s.key for s in create_execution_plan(job).steps if s.pool == TRITON_VALIDATION_POOL]
    return spec, job, step


def _claim_until(context: InstanceConcurrencyContext, step: str, *, timeout_s: float) -> bool:
    """Claim a slot as the executor does, polling while the claim waits (False: timed out)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if context.claim(TRITON_VALIDATION_POOL, step):
            return True
        time.sleep(0.1)
    return False


def test_a_pool_limit_of_one_serialises_the_triton_validation_steps(
    pg_home: Path, served: tuple[ModelPipeline, Any, str]
) -> None:
    _, job, step = served
    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        first, second = (instance.create_run_for_job(job) for _ in range(2))
        storage = instance.event_log_storage
        with (
            InstanceConcurrencyContext(instance, first) as one,
            InstanceConcurrencyContext(instance, second) as two,
        ):
            assert one.claim(TRITON_VALIDATION_POOL, step)  # the pool's default limit: 1 slot
            assert not _claim_until(two, step, timeout_s=1.5)  # the second validation waits
            info = storage.get_concurrency_info(TRITON_VALIDATION_POOL)
            assert info.slot_count == 1
            assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(first.run_id, step)]
            assert [
                (s.run_id, s.step_key) for s in info.pending_steps if not s.assigned_timestamp
            ] == [(second.run_id, step)]
            one.free_step(step)  # the first validation is done: the second gets the slot
            assert _claim_until(two, step, timeout_s=30)
            info = storage.get_concurrency_info(TRITON_VALIDATION_POOL)
            assert [(s.run_id, s.step_key) for s in info.claimed_slots] == [(second.run_id, step)]
            two.free_step(step)


def test_a_pool_limit_recorded_in_the_storage_overrides_the_default(
    pg_home: Path, served: tuple[ModelPipeline, Any, str]
) -> None:
    _, job, step = served
    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        assert apply_pool_limits(instance, {TRITON_VALIDATION_POOL: 2}) == {
            TRITON_VALIDATION_POOL: 2
        }
        first, second = (instance.create_run_for_job(job) for _ in range(2))
        with (
            InstanceConcurrencyContext(instance, first) as one,
            InstanceConcurrencyContext(instance, second) as two,
        ):
            assert one.claim(TRITON_VALIDATION_POOL, step)
            assert two.claim(TRITON_VALIDATION_POOL, step)  # two slots: both validate at once
            info = instance.event_log_storage.get_concurrency_info(TRITON_VALIDATION_POOL)
            assert info.slot_count == 2
            assert len(info.claimed_slots) == 2
            one.free_step(step)
            two.free_step(step)
        assert apply_pool_limits(instance) == {TRITON_VALIDATION_POOL: 1}
        assert (
            instance.event_log_storage.get_concurrency_info(TRITON_VALIDATION_POOL).slot_count == 1
        )
