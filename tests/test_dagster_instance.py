"""The production instance's ``dagster.yaml`` builder, checked by Dagster's own schema, and the
tags and pools it limits, on the definitions (no server; PostgreSQL itself:
tests/integration/test_postgres_instance.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pytest
import yaml
from dagster._core.execution.api import create_execution_plan
from dagster._core.instance.config import dagster_instance_config

from lockgate import Environment, build_definitions
from lockgate.assets.serving import TRITON_VALIDATION_POOL
from lockgate.assets.weights import RESOURCE_TAG, training_resource, training_run_tags
from lockgate.dagster_instance import (
    DAGSTER_PG_URL_ENV,
    POSTGRES_DB_ENV,
    PSYCOPG2_SCHEME,
    instance_config,
    psycopg2_url,
    write_instance_yaml,
)
from lockgate.errors import SpecError
from lockgate.spec import LabelSource, ModelPipeline, TritonTarget
from lockgate.training import CustomTrainer, LightGBMTrainer, TorchTrainer


class DeviceTrainer(CustomTrainer):
    """A custom trainer with a ``device`` setting (never fitted here)."""

    kind: Literal["device_probe"] = "device_probe"
    device: str = "cpu"

    def fit(self, frame: Any, *, features: Sequence[str], label: str, task: Any = "binary") -> Any:
        raise NotImplementedError("only its device matters here")


def pipeline(name: str = "probe", **over: Any) -> ModelPipeline:
    fields: dict[str, Any] = {
        "name": name,
        "feature_service": "fraud_v1",
        "label": "is_fraud",
        "labels": LabelSource(entity_columns=("transaction_id",)),
        "trainer": LightGBMTrainer(seed=1),
        **over,
    }
    return ModelPipeline(**fields)


def validated(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``config`` written as ``dagster.yaml`` and read back through Dagster's validation (the
    schema and its cross-field rules), as ``DagsterInstance.from_config`` reads it."""
    (folder / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    value, custom_class = dagster_instance_config(str(folder))
    assert custom_class is None
    return dict(value)


# ---- instance_config


def test_the_default_config_is_postgres_by_env_with_the_queue_and_its_limits(
    tmp_path: Path,
) -> None:
    config = instance_config()
    assert config == {
        "telemetry": {"enabled": False},
        "storage": {"postgres": {"postgres_url": {"env": DAGSTER_PG_URL_ENV}}},
        "run_coordinator": {
            "module": "dagster",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": 5},
        },
        "concurrency": {
            "runs": {
                "max_concurrent_runs": 10,
                "tag_concurrency_limits": [{"key": RESOURCE_TAG, "value": "gpu", "limit": 1}],
            },
            "pools": {"default_limit": 1, "granularity": "op"},
        },
    }
    value = validated(config, tmp_path)
    assert value["storage"]["postgres"]["postgres_url"] == {"env": DAGSTER_PG_URL_ENV}
    assert value["concurrency"]["pools"]["default_limit"] == 1


def test_limits_launcher_and_connection_parts_are_configurable(tmp_path: Path) -> None:
    launcher = {
        "module": "dagster_k8s",
        "class": "K8sRunLauncher",
        "config": {"job_namespace": "x"},
    }
    config = instance_config(
        postgres_db_env=POSTGRES_DB_ENV,
        max_concurrent_runs=25,
        gpu_training_runs=3,
        tag_concurrency_limits=[{"key": "lockgate/pipeline", "limit": 1}],
        pool_limit=2,
        pool_granularity="run",
        dequeue_interval_seconds=1,
        run_launcher=launcher,
    )
    assert config["storage"] == {
        "postgres": {
            "postgres_db": {
                "username": {"env": "LOCKGATE_DAGSTER_PG_USER"},
                "password": {"env": "LOCKGATE_DAGSTER_PG_PASSWORD"},
                "hostname": {"env": "LOCKGATE_DAGSTER_PG_HOST"},
                "db_name": {"env": "LOCKGATE_DAGSTER_PG_DB"},
                "port": {"env": "LOCKGATE_DAGSTER_PG_PORT"},
                "scheme": PSYCOPG2_SCHEME,
            }
        }
    }
    assert config["concurrency"] == {
        "runs": {
            "max_concurrent_runs": 25,
            "tag_concurrency_limits": [
                {"key": RESOURCE_TAG, "value": "gpu", "limit": 3},
                {"key": "lockgate/pipeline", "limit": 1},
            ],
        },
        "pools": {"default_limit": 2, "granularity": "run"},
    }
    assert config["run_launcher"] == launcher
    assert config["run_coordinator"]["config"] == {"dequeue_interval_seconds": 1}
    # the launcher's own config is dagster-k8s's to check; the rest passes Dagster's schema
    value = validated({k: v for k, v in config.items() if k != "run_launcher"}, tmp_path)
    assert value["storage"]["postgres"]["postgres_db"]["port"] == {
        "env": "LOCKGATE_DAGSTER_PG_PORT"
    }


def test_sensor_threads_turn_on_the_daemons_sensor_threads(tmp_path: Path) -> None:
    assert "sensors" not in instance_config()  # Dagster's default: one sensor at a time
    path = write_instance_yaml(tmp_path, sensor_threads=4)
    written = yaml.safe_load(path.read_text())
    assert written["sensors"] == {"use_threads": True, "num_workers": 4}
    value = validated(written, tmp_path)  # Dagster's own schema reads the written file
    assert value["sensors"] == {"use_threads": True, "num_workers": 4}
    # an instance opened from such a file runs its sensor daemon on 4 threads (SQLite storage
    # here: the PostgreSQL one connects on opening, tests/integration/test_postgres_instance.py)
    local = tmp_path / "local"
    local.mkdir()
    (local / "dagster.yaml").write_text(yaml.safe_dump({"sensors": written["sensors"]}))
    with dg.DagsterInstance.from_config(str(local)) as instance:
        assert instance.get_settings("sensors") == {"use_threads": True, "num_workers": 4}


def test_no_secret_is_written_only_variable_names(tmp_path: Path) -> None:
    path = write_instance_yaml(tmp_path / "home", postgres_url_env="MY_PG_URL")
    assert path == tmp_path / "home" / "dagster.yaml"
    text = path.read_text()
    assert "env: MY_PG_URL" in text
    assert "postgresql://" not in text
    assert yaml.safe_load(text) == instance_config(postgres_url_env="MY_PG_URL")


def test_dagster_refuses_run_limits_in_the_coordinator_beside_pools(tmp_path: Path) -> None:
    """Why the limits live under ``concurrency``: Dagster 1.13 refuses them in the coordinator
    block once pools are configured."""
    config = instance_config()
    config["run_coordinator"]["config"]["max_concurrent_runs"] = 10
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurrent_runs"):
        validated(config, tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"postgres_url_env": "A", "postgres_db_env": POSTGRES_DB_ENV},
            "postgres_url_env='A' and postgres_db_env are both given",
        ),
        ({"postgres_url_env": "postgresql://u:p@h/db"}, "is not an environment variable name"),
        (
            {"postgres_db_env": {"username": "U", "hostname": "H", "database": "D"}},
            "unknown fields ['database'] and lacks ['db_name']",
        ),
        (
            {"postgres_db_env": {**POSTGRES_DB_ENV, "password": "hunter 2"}},
            "postgres_db_env['password']='hunter 2' is not an environment variable name",
        ),
        ({"gpu_training_runs": -1}, "gpu_training_runs=-1 is not allowed"),
        ({"max_concurrent_runs": -2}, "max_concurrent_runs=-2 is not allowed"),
        ({"pool_limit": True}, "pool_limit=True is not allowed"),
        ({"pool_granularity": "step"}, "pool_granularity='step' is unknown"),
        ({"dequeue_interval_seconds": 0}, "dequeue_interval_seconds=0 is not allowed"),
        ({"sensor_threads": 0}, "sensor_threads=0 is not allowed"),
    ],
)
def test_bad_options_name_the_value_and_the_rule(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        instance_config(**options)
    assert message in str(caught.value)
    assert "rule" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg2://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_storage_urls_name_psycopg2(url: str, expected: str) -> None:
    assert psycopg2_url(url) == expected


@pytest.mark.parametrize("url", ["postgresql+psycopg://u@h/db", "mysql://u@h/db", "h:5432/db"])
def test_other_drivers_are_refused_with_the_fix(url: str) -> None:
    with pytest.raises(SpecError, match=re.escape(f"fix: {PSYCOPG2_SCHEME}://user:password@")):
        psycopg2_url(url)


def test_the_connection_in_parts_names_psycopg2() -> None:
    config = instance_config(postgres_db_env={"username": "U", "hostname": "H", "db_name": "D"})
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == PSYCOPG2_SCHEME


# ---- the tag of training runs and the pool of infra validation


@pytest.mark.parametrize(
    ("trainer", "resource"),
    [
        (LightGBMTrainer(seed=1), "cpu"),
        (TorchTrainer(seed=1), "cpu"),
        (DeviceTrainer(), "cpu"),
        (DeviceTrainer(device="cuda"), "gpu"),
        (DeviceTrainer(device="cuda:1"), "gpu"),
        (DeviceTrainer(device="GPU"), "gpu"),
        (DeviceTrainer(device="mps"), "cpu"),
    ],
)
def test_training_resource_follows_the_trainers_device(trainer: Any, resource: str) -> None:
    spec = pipeline(trainer=trainer)
    assert training_resource(spec) == resource
    assert training_run_tags(spec) == {RESOURCE_TAG: resource}


def test_train_jobs_carry_their_resource_tag_and_only_they(tmp_path: Path) -> None:
    from lockgate.monitoring.triggers import DriftPolicy

    cpu = pipeline(
        "cpu_model", drift=DriftPolicy(), serving=TritonTarget(device="cpu"), gate=_gate()
    )
    gpu = pipeline("gpu_model", trainer=DeviceTrainer(device="cuda"))
    defs = build_definitions([cpu, gpu], environment=Environment.local(tmp_path))
    for spec, resource in ((cpu, "cpu"), (gpu, "gpu")):
        job = defs.resolve_job_def(spec.train_job_name)
        assert job.run_tags == {"lockgate/pipeline": spec.name, RESOURCE_TAG: resource}
        weights = defs.get_assets_def(spec.asset_key("model_weights"))
        assert weights.op.tags[RESOURCE_TAG] == resource
    monitor = defs.resolve_job_def("cpu_model_drift_report")
    assert RESOURCE_TAG not in monitor.run_tags  # watching traffic is not training


def test_only_the_infra_validation_step_is_in_the_triton_pool(tmp_path: Path) -> None:
    spec = pipeline("served", serving=TritonTarget(device="cpu"), gate=_gate())
    defs = build_definitions([spec], environment=Environment.local(tmp_path))
    plan = create_execution_plan(defs.resolve_job_def(spec.train_job_name))
    pooled = {step.key: step.pool for step in plan.steps if step.pool is not None}
    assert pooled == {"served__serving": TRITON_VALIDATION_POOL}


def _gate() -> Any:
    from tests.integration.test_gate import GATE

    return GATE
