"""Values for the official Dagster Helm chart (``helm install dagster dagster/dagster -f ...``).

:func:`helm_values` overrides only what lockgate needs; the chart's own defaults stay for the
rest (webserver, daemon image, retention):

- ``dagster-user-deployments``: one code server of the project image, ``dagster api grpc`` on the
  code location's module (``dagsterApiGrpcArgs``), named after the code location (run keys and
  cursors are scoped to that name), with the LOCKGATE_* variables (ConfigMap + Secret) and the
  shared volume; ``includeConfigInLaunchedRuns`` passes them on to run and step pods;
- ``postgresql``: the chart's own PostgreSQL off (``enabled: false``), an external host, and
  ``global.postgresqlSecretName`` naming the Secret with ``postgresql-password``
  (``generatePostgresqlPasswordSecret: false``: never a password in values);
- ``runLauncher``: ``K8sRunLauncher`` in the namespace, the run worker's CPU resources, the
  LOCKGATE_* variables and the shared volume (step pods of the ``k8s_job_executor`` inherit them);
- ``dagsterDaemon.runCoordinator``: the ``QueuedRunCoordinator`` with a cap on runs, one run per
  pipeline at a time (tag ``lockgate/pipeline``) and a cap on GPU training runs (tag
  ``lockgate/resource: gpu``).

:func:`check_values` checks values against a chart's ``values.schema.json`` (``jsonschema``), as
Helm does, with the chart's defaults standing in for what is not overridden.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockgate.assets.weights import RESOURCE_TAG
from lockgate.deploy.launcher import shared_volume
from lockgate.deploy.settings import K8sSettings

__all__ = [
    "GPU_RUN_TAG",
    "PIPELINE_RUN_TAG",
    "check_values",
    "code_server_args",
    "helm_values",
]

PIPELINE_RUN_TAG = "lockgate/pipeline"
"""The run tag every lockgate job carries (the pipeline's name)."""
GPU_RUN_TAG = (RESOURCE_TAG, "gpu")
"""The run tag (key, value) that marks a run as needing a GPU; capped by the run queue."""

_APP_DIR = "/opt/dagster/app"


def code_server_args(module: str, *, working_directory: str = _APP_DIR) -> list[str]:
    """``dagster api grpc``'s code location options: the module, run from the project folder."""
    return ["--module-name", module, "--working-directory", working_directory]


def _env_sources(settings: K8sSettings) -> dict[str, Any]:
    volume, mount = shared_volume(settings)
    return {
        "envConfigMaps": [{"name": settings.config_map}],
        "envSecrets": [{"name": settings.secret}],
        "volumes": [volume],
        "volumeMounts": [mount],
    }


def helm_values(settings: K8sSettings, *, module: str) -> dict[str, Any]:
    """The Dagster chart's values for the code location ``module`` of the project image.

    Args:
        settings: the cluster's settings.
        module: the code location's module (what ``dagster dev -m`` loads), e.g.
            ``"pipelines.definitions"``.
    """
    image = settings.image_ref
    dagster = settings.dagster
    env_sources = _env_sources(settings)
    user_deployment = {
        "name": dagster.code_location,
        "image": {
            "repository": image.repository,
            "tag": image.helm_tag,
            "pullPolicy": settings.image_pull_policy,
        },
        "dagsterApiGrpcArgs": code_server_args(module),
        "port": dagster.grpc_port,
        "includeConfigInLaunchedRuns": {"enabled": True},
        "env": [{"name": "LOCKGATE_ENV", "value": "production"}],
        **env_sources,
        "resources": settings.steps.requirements(),
    }
    run_launcher = {
        "imagePullPolicy": settings.image_pull_policy,
        "jobNamespace": settings.namespace,
        "loadInclusterConfig": True,
        "envVars": ["LOCKGATE_ENV=production"],
        **env_sources,
        "resources": settings.run_worker.requirements(),
        "failPodOnRunFailure": True,
    }
    gpu_key, gpu_value = GPU_RUN_TAG
    queue = {
        "maxConcurrentRuns": dagster.max_concurrent_runs,
        "tagConcurrencyLimits": [
            {
                "key": PIPELINE_RUN_TAG,
                "value": {"applyLimitPerUniqueValue": True},
                "limit": dagster.runs_per_pipeline,
            },
            {"key": gpu_key, "value": gpu_value, "limit": dagster.gpu_training_runs},
        ],
    }
    return {
        "global": {"postgresqlSecretName": dagster.postgres_secret},
        "generatePostgresqlPasswordSecret": False,
        "postgresql": {
            "enabled": False,
            "postgresqlHost": dagster.postgres_host,
            # dagster-postgres speaks psycopg2; SQLAlchemy 2.1 would pick psycopg 3 otherwise
            "postgresqlScheme": "postgresql+psycopg2",
            "postgresqlUsername": dagster.postgres_user,
            "postgresqlDatabase": dagster.postgres_database,
            "service": {"port": dagster.postgres_port},
        },
        "dagster-user-deployments": {
            "enabled": True,
            "enableSubchart": True,
            "deployments": [user_deployment],
        },
        "runLauncher": {"type": "K8sRunLauncher", "config": {"k8sRunLauncher": run_launcher}},
        "dagsterDaemon": {
            "runCoordinator": {
                "enabled": True,
                "type": "QueuedRunCoordinator",
                "config": {"queuedRunCoordinator": queue},
            }
        },
    }


def _strip(schema: Any) -> Any:
    """The schema without ``required`` (the chart's values.yaml supplies what is not overridden)
    and without references to kubernetesjsonschema.dev (Kubernetes objects are checked with the
    Kubernetes client's models instead; nothing is fetched)."""
    if isinstance(schema, Mapping):
        out = {}
        for key, value in schema.items():
            if key == "required":
                continue
            if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                continue
            out[key] = _strip(value)
        return out
    if isinstance(schema, list):
        return [_strip(item) for item in schema]
    return schema


def _resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = node.get("$ref")
    while isinstance(ref, str) and ref.startswith("#/"):
        target: Any = schema
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
        ref = node.get("$ref")
    return node


def _undeclared(
    schema: Mapping[str, Any], node: Mapping[str, Any], value: Any, path: str
) -> list[str]:
    """Keys of ``value`` the schema does not declare (typos that an open schema lets through)."""
    node = _resolve(schema, node)
    found: list[str] = []
    for option in node.get("anyOf", []):
        option = _resolve(schema, option)
        if option.get("type") == "object" or "properties" in option:
            found += _undeclared(schema, option, value, path)
            return found
        if option.get("type") == "array" and isinstance(value, list):
            break
    if isinstance(value, Mapping):
        properties = node.get("properties")
        if properties:
            for key, item in value.items():
                if key not in properties:
                    found.append(f"{path}.{key}")
                else:
                    found += _undeclared(schema, properties[key], item, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(node.get("items"), Mapping):
        for index, item in enumerate(value):
            found += _undeclared(schema, node["items"], item, f"{path}[{index}]")
    return found


def check_values(values: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``values`` under the chart's ``values.schema.json``; [] when valid.

    Types, enums and closed objects are checked with ``jsonschema`` (Draft 7, as Helm), keys
    without ``required`` (Helm merges the chart's defaults first); every key is also checked to
    be declared where the schema lists properties, so a misspelt key never passes silently.
    """
    import jsonschema

    validator = jsonschema.Draft7Validator(_strip(schema))
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    ]
    problems += [
        f"{key[1:]}: not a key of the chart's values schema"
        for key in _undeclared(schema, schema, values, "")
    ]
    return problems
