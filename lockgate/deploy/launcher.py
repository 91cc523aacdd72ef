"""Dagster on Kubernetes through dagster-k8s: the run launcher, the step executor, GPU training.

- :func:`run_launcher_config`: the ``run_launcher`` block of ``dagster.yaml`` (``K8sRunLauncher``):
  one Kubernetes Job per run, in the namespace, with the LOCKGATE_* variables from the ConfigMap
  and the Secret, the shared volume, and the run worker's CPU resources;
- :func:`executor_config`: the ``k8s_job_executor``'s config: one Job per step, CPU by default
  (``step_k8s_config``), and each pipeline's training step (``<pipeline>__model_weights``) with
  its GPU limit, node selector and tolerations (``per_step_k8s_config``, which dagster-k8s merges
  over the op's ``dagster-k8s/config`` tag);
- :func:`training_op_tags`: the same training config as the ``dagster-k8s/config`` op tag, for an
  asset of your own (``@dg.asset(op_tags=training_op_tags(spec, settings))``);
- :func:`k8s_definitions`: :func:`lockgate.build_definitions` in the production environment with
  that executor, what a code location deployed on Kubernetes returns.

Example:
    >>> from lockgate.deploy import DagsterSettings, K8sSettings, TritonSettings
    >>> settings = K8sSettings(
    ...     image="registry.example.com/fraud/project:1.4.0",
    ...     triton=TritonSettings(model_repository="s3://models/fraud"),
    ...     dagster=DagsterSettings(postgres_host="postgres.db.svc"),
    ... )
    >>> run_launcher_config(settings)["class"]
    'K8sRunLauncher'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lockgate.deploy.settings import K8sSettings, PodResources
from lockgate.errors import SpecError

if TYPE_CHECKING:
    import dagster as dg

    from lockgate.spec import ModelPipeline

__all__ = [
    "K8S_CONFIG_TAG",
    "TRAINING_ASSETS",
    "executor_config",
    "k8s_definitions",
    "k8s_executor",
    "run_launcher_config",
    "shared_volume",
    "training_op_name",
    "training_op_tags",
    "training_resources",
]

K8S_CONFIG_TAG = "dagster-k8s/config"
"""The op (and run) tag dagster-k8s reads a step's (a run's) Kubernetes config from."""

TRAINING_ASSETS = ("model_weights",)
"""A pipeline's assets whose steps train (and get the training resources)."""

_SHARED_VOLUME = "lockgate-shared"


def shared_volume(settings: K8sSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shared volume and its mount, as Kubernetes writes them (camelCase)."""
    volume = {
        "name": _SHARED_VOLUME,
        "persistentVolumeClaim": {"claimName": settings.shared_volume_claim},
    }
    mount = {"name": _SHARED_VOLUME, "mountPath": settings.mount_path}
    return volume, mount


def training_op_name(spec: ModelPipeline, asset: str = "model_weights") -> str:
    """The op name of a pipeline asset's step (``<pipeline>__<asset>``, as Dagster names it)."""
    return f"{spec.name}__{asset}"


def training_resources(spec: ModelPipeline, settings: K8sSettings) -> PodResources:
    """The training resources of ``spec``: its own ``deployment.training``, else the cluster's."""
    return settings.training_for(spec.deployment)


def training_op_tags(spec: ModelPipeline, settings: K8sSettings) -> dict[str, str]:
    """``{"dagster-k8s/config": <json>}``: the training step's container resources (GPU limit),
    node selector and tolerations, as dagster-k8s reads them from an op's tags."""
    config = training_resources(spec, settings).dagster_k8s_config()
    return {K8S_CONFIG_TAG: json.dumps(config, sort_keys=True)}


def _env(settings: K8sSettings) -> dict[str, Any]:
    volume, mount = shared_volume(settings)
    return {
        "image_pull_policy": settings.image_pull_policy,
        "env_config_maps": [settings.config_map],
        "env_secrets": [settings.secret],
        "env_vars": ["LOCKGATE_ENV=production"],
        "volumes": [volume],
        "volume_mounts": [mount],
    }


def run_launcher_config(settings: K8sSettings) -> dict[str, Any]:
    """The ``run_launcher`` block of ``dagster.yaml``: ``dagster_k8s.K8sRunLauncher``.

    The image is left out: each run takes its code location's image (the user-code
    deployment's), as the Dagster chart arranges. The service account and the instance
    ConfigMap are the ones the chart creates; the PostgreSQL password comes from
    ``postgres_secret``.
    """
    fullname = settings.dagster.chart_fullname
    config: dict[str, Any] = {
        "job_namespace": settings.namespace,
        "service_account_name": fullname,
        "instance_config_map": f"{fullname}-instance",
        "postgres_password_secret": settings.dagster.postgres_secret,
        "load_incluster_config": True,
        "fail_pod_on_run_failure": True,
        **_env(settings),
        "resources": settings.run_worker.requirements(),
    }
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def executor_config(pipelines: Sequence[ModelPipeline], settings: K8sSettings) -> dict[str, Any]:
    """The ``k8s_job_executor``'s config: CPU steps, and each pipeline's training step on its
    GPU (``per_step_k8s_config`` keyed by op name, merged by dagster-k8s over op tags).

    Raises:
        SpecError: two pipelines share a name.
    """
    names = [p.name for p in pipelines]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SpecError(f"pipeline names {twice} are used twice; rule: names are unique")
    per_step = {
        training_op_name(spec, asset): training_resources(spec, settings).dagster_k8s_config()
        for spec in pipelines
        for asset in TRAINING_ASSETS
    }
    return {
        "job_namespace": settings.namespace,
        **_env(settings),
        "step_k8s_config": settings.steps.dagster_k8s_config(),
        "per_step_k8s_config": per_step,
    }


def k8s_executor(
    pipelines: Sequence[ModelPipeline], settings: K8sSettings
) -> dg.ExecutorDefinition:
    """``dagster_k8s.k8s_job_executor`` configured by :func:`executor_config`."""
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(executor_config(pipelines, settings), name="k8s")


def k8s_definitions(
    pipelines: Sequence[ModelPipeline],
    settings: K8sSettings,
    *,
    resources: Mapping[str, Any] | None = None,
) -> dg.Definitions:
    """:func:`lockgate.build_definitions` for a code location on Kubernetes.

    The production environment's resources (configured from the LOCKGATE_* variables the pods
    get from the ConfigMap and the Secret) and :func:`k8s_executor`: every step its own Job,
    training steps on their GPUs. ``resources`` replaces resources of the same key.

    Example (the code location's module)::

        @dg.definitions
        def defs() -> dg.Definitions:
            env = Environment.from_env()
            if env.kind == "production":
                return k8s_definitions(PIPELINES, K8sSettings.model_validate(...))
            return build_definitions(PIPELINES, environment=env)
    """
    import dagster as dg

    from lockgate.definitions import build_definitions
    from lockgate.environment import Environment

    production = Environment.from_env({"LOCKGATE_ENV": "production"})
    return dg.Definitions.merge(
        build_definitions(pipelines, environment=production, resources=resources),
        dg.Definitions(executor=k8s_executor(pipelines, settings)),
    )
