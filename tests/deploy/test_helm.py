"""Values of the official Dagster chart: checked against the chart's ``values.schema.json`` and
their Kubernetes parts against the client's models.

The chart's schema is not part of this repository (it is the Dagster project's file): the tests
that need it read it from ``$LOCKGATE_DAGSTER_CHART_SCHEMA`` (the chart's
``helm/dagster/values.schema.json`` at the tag of the installed Dagster) and are skipped, saying
so, without it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client

from lockgate.deploy.helm import GPU_RUN_TAG, PIPELINE_RUN_TAG, check_values, helm_values
from lockgate.deploy.launcher import run_launcher_config
from lockgate.deploy.settings import K8sSettings
from tests.deploy.conftest import make_settings

MODULE = "pipelines.definitions"


class _Response:
    def __init__(self, document: Any) -> None:
        self.data = json.dumps(document)


def _model(document: Any, model: str) -> Any:
    return client.ApiClient().deserialize(_Response(document), model)


def test_the_values_pass_the_charts_schema(
    settings: K8sSettings, chart_schema: dict[str, Any]
) -> None:
    assert check_values(helm_values(settings, module=MODULE), chart_schema) == []


def test_the_user_deployment_runs_the_project_image_on_the_code_locations_module(
    settings: K8sSettings,
) -> None:
    values = helm_values(settings, module=MODULE)
    section = values["dagster-user-deployments"]
    assert section["enabled"] is True
    (deployment,) = section["deployments"]
    assert deployment["name"] == "lockgate"  # the pinned code location name
    assert deployment["image"] == {
        "repository": "registry.example.com/team/fraud",
        "tag": "1.4.0",
        "pullPolicy": "IfNotPresent",
    }
    assert deployment["dagsterApiGrpcArgs"] == [
        "--module-name",
        MODULE,
        "--working-directory",
        "/opt/dagster/app",
    ]
    assert deployment["port"] == 3030
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert deployment["envSecrets"] == [{"name": "lockgate-secrets"}]
    assert deployment["envConfigMaps"] == [{"name": "lockgate-config"}]
    for env in deployment["env"]:
        _model(env, "V1EnvVar")
    for source in deployment["envSecrets"]:
        _model(source, "V1SecretEnvSource")
    for volume in deployment["volumes"]:
        assert _model(volume, "V1Volume").persistent_volume_claim.claim_name == "lockgate-shared"
    for mount in deployment["volumeMounts"]:
        assert _model(mount, "V1VolumeMount").mount_path == "/var/lib/lockgate"
    resources = _model(deployment["resources"], "V1ResourceRequirements")
    assert "nvidia.com/gpu" not in resources.limits


def test_postgresql_is_external_with_the_password_from_a_secret(settings: K8sSettings) -> None:
    values = helm_values(settings, module=MODULE)
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"] == "postgres.db.svc"
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"] == {"postgresqlSecretName": "dagster-postgresql-secret"}


def test_the_k8s_run_launcher_matches_the_instance_config(settings: K8sSettings) -> None:
    values = helm_values(settings, module=MODULE)
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    instance = run_launcher_config(settings)["config"]
    assert launcher["jobNamespace"] == instance["job_namespace"] == "ml"
    assert [s["name"] for s in launcher["envSecrets"]] == instance["env_secrets"]
    assert [c["name"] for c in launcher["envConfigMaps"]] == instance["env_config_maps"]
    assert launcher["envVars"] == instance["env_vars"] == ["LOCKGATE_ENV=production"]
    assert launcher["volumes"] == instance["volumes"]
    assert launcher["resources"] == instance["resources"]
    _model(launcher["resources"], "V1ResourceRequirements")


def test_the_queued_run_coordinator_limits_runs_per_pipeline_and_gpu_training(
    settings: K8sSettings,
) -> None:
    values = helm_values(settings, module=MODULE)
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert (coordinator["enabled"], coordinator["type"]) == (True, "QueuedRunCoordinator")
    queue = coordinator["config"]["queuedRunCoordinator"]
    assert queue["maxConcurrentRuns"] == 10
    limits = {limit["key"]: limit for limit in queue["tagConcurrencyLimits"]}
    assert limits[PIPELINE_RUN_TAG]["value"] == {"applyLimitPerUniqueValue": True}
    assert limits[PIPELINE_RUN_TAG]["limit"] == 1
    assert (limits[GPU_RUN_TAG[0]]["value"], limits[GPU_RUN_TAG[0]]["limit"]) == (GPU_RUN_TAG[1], 2)


def test_a_digest_pinned_image_keeps_its_digest_in_the_tag() -> None:
    digest = "sha256:" + "b" * 64
    settings = make_settings(image=f"registry.example.com/team/fraud:1.4.0@{digest}")
    image = helm_values(settings, module=MODULE)["dagster-user-deployments"]["deployments"][0]
    assert image["image"]["tag"] == f"1.4.0@{digest}"


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (("runLauncher", "config", "k8sRunLauncher", "envSecret"), [], "not a key"),
        (("runLauncher", "type"), "K8sLauncher", "is not one of"),
        (("dagster-user-deployments", "deployments", 0, "port"), "3030", "not of type 'integer'"),
        (("postgresql", "postgresqlHostname"), "pg", "not a key"),
        (("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator", "max"), 1, ""),
    ],
)
def test_the_schema_check_catches_wrong_values(
    settings: K8sSettings,
    chart_schema: dict[str, Any],
    path: tuple[Any, ...],
    value: Any,
    problem: str,
) -> None:
    values = copy.deepcopy(helm_values(settings, module=MODULE))
    target: Any = values
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    problems = check_values(values, chart_schema)
    assert problems, f"{path} = {value!r} passed the schema"
    assert any(problem in p for p in problems)


def test_the_code_server_arguments_parse_with_dagsters_own_command(settings: K8sSettings) -> None:
    from dagster._cli.api import api_cli

    (deployment,) = helm_values(settings, module=MODULE)["dagster-user-deployments"]["deployments"]
    grpc = api_cli.commands["grpc"]
    params = grpc.make_context("grpc", list(deployment["dagsterApiGrpcArgs"])).params
    assert params["module_name"] == MODULE
    assert params["working_directory"] == "/opt/dagster/app"


def test_the_checker_finds_wrong_types_closed_objects_and_undeclared_keys() -> None:
    """check_values' own logic, on a schema written here (the chart's is not in the repo)."""
    schema = {
        "type": "object",
        "properties": {
            "runLauncher": {
                "type": "object",
                "properties": {"type": {"enum": ["K8sRunLauncher", "CeleryK8sRunLauncher"]}},
                "additionalProperties": False,
            },
            "postgresql": {
                "type": "object",
                "properties": {
                    "enabled": {"type": "boolean"},
                    "postgresqlHost": {"type": "string"},
                },
                "required": ["enabled", "postgresqlHost"],
            },
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    good = {"runLauncher": {"type": "K8sRunLauncher"}, "postgresql": {"enabled": False}}
    assert check_values(good, schema) == []  # required keys are Helm's defaults: not demanded
    bad = {
        "runLauncher": {"type": "K8s", "typo": 1},
        "postgresql": {"enabled": "no", "postgresqlHostname": "pg"},
        "labels": {"team": "ml"},
    }
    problems = check_values(bad, schema)
    assert any(p.startswith("runLauncher.type:") for p in problems), problems
    assert any("typo" in p for p in problems), problems
    assert any(p.startswith("postgresql.enabled:") for p in problems), problems
    assert any("postgresqlHostname: not a key" in p for p in problems), problems
    assert not any(p.startswith("labels") for p in problems), problems
