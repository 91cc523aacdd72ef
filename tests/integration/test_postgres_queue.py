"""The queued run coordinator under a real ``dagster-daemon`` on PostgreSQL: of two GPU training
runs requested at once, one runs and the other stays QUEUED until the first ends.

This module is also the daemon's code location (``defs``): a sensor that requests two runs of a
GPU-tagged stand-in train job when the file ``submit`` appears in ``LOCKGATE_TEST_QUEUE_DIR``,
and that job, whose step writes ``started-<run id>`` and then waits for the file ``release``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from lockgate import DagsterDaemon, Environment
from lockgate.assets.weights import RESOURCE_TAG, training_run_tags
from lockgate.dagster_instance import psycopg2_url
from tests.integration.daemons import wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUEUE_DIR = Path(os.environ.get("LOCKGATE_TEST_QUEUE_DIR", "/nonexistent"))


def _gpu_spec() -> Any:
    from tests.test_dagster_instance import DeviceTrainer, pipeline

    return pipeline("gpu_model", trainer=DeviceTrainer(device="cuda"))


@dg.op
def train_on_the_gpu(context) -> None:  # type: ignore[no-untyped-def]
    (QUEUE_DIR / f"started-{context.run_id}").write_text(str(time.time()))
    deadline = time.monotonic() + 60
    while not (QUEUE_DIR / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


@dg.job(
    name="gpu_model_train", tags=training_run_tags(_gpu_spec()), executor_def=dg.in_process_executor
)
def gpu_train() -> None:
    train_on_the_gpu()


@dg.sensor(job=gpu_train, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def two_gpu_runs(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    if not (QUEUE_DIR / "submit").exists():
        return dg.SkipReason("no submit file")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=k) for k in ("first", "second")])


defs = dg.Definitions(jobs=[gpu_train], sensors=[two_gpu_runs])


def test_the_daemon_runs_one_gpu_training_at_a_time(tmp_path: Path, postgres_url: str) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    env = Environment.local(tmp_path / "home")
    env.home.mkdir(parents=True)
    workspace = env.home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: tests.integration.test_postgres_queue\n"
        "      location_name: lockgate_queue_test\n"
        f"      working_directory: {REPO}\n"
    )
    daemon = DagsterDaemon(
        env,
        workspace,
        extra_env={"LOCKGATE_TEST_QUEUE_DIR": str(queue), "PYTHONPATH": str(REPO)},
        cwd=REPO,
        postgres_url=psycopg2_url(postgres_url),
        instance_options={"dequeue_interval_seconds": 1, "gpu_training_runs": 1},
    )
    with daemon, daemon.instance() as instance:
        try:
            (queue / "submit").touch()

            def runs() -> list[dg.DagsterRun]:
                found = instance.get_runs(filters=dg.RunsFilter(job_name="gpu_model_train"))
                return found if len(found) == 2 else []

            both = wait_for("both runs", runs, daemon, timeout=60)
            assert {r.tags[RESOURCE_TAG] for r in both} == {"gpu"}
            started = wait_for("a run's step", lambda: sorted(queue.glob("started-*")), daemon, 90)
            first = started[0].name.removeprefix("started-")
            (second,) = [r.run_id for r in both if r.run_id != first]
            for _ in range(5):  # several looks at the queue (1 s apart): the second run waits
                time.sleep(1.0)
                assert instance.get_run_by_id(second).status == dg.DagsterRunStatus.QUEUED  # type: ignore[union-attr]
                assert not (queue / f"started-{second}").exists()
            (queue / "release").touch()

            def both_done() -> bool:
                statuses = {instance.get_run_by_id(r.run_id).status for r in both}  # type: ignore[union-attr]
                return statuses == {dg.DagsterRunStatus.SUCCESS}

            wait_for("both runs to succeed", both_done, daemon, timeout=120)
            first_record = instance.get_run_record_by_id(first)
            second_record = instance.get_run_record_by_id(second)
            assert first_record is not None
            assert second_record is not None
            assert first_record.end_time is not None
            assert second_record.start_time is not None
            assert second_record.start_time >= first_record.end_time  # one after the other
        finally:  # a failed check must not leave a run waiting in the code server
            (queue / "release").touch()
