"""The run launcher, the step executor and the training steps' GPU config, checked with
dagster-k8s's own config schemas and its own Job construction (no cluster)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import pytest
from dagster._config import process_config
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.executor.init import InitExecutorContext
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    construct_dagster_k8s_job,
    get_user_defined_k8s_config,
)
from kubernetes import client

from lockgate import Environment, LabelSource, LightGBMTrainer, ModelPipeline, build_definitions
from lockgate.deploy.launcher import (
    K8S_CONFIG_TAG,
    executor_config,
    k8s_definitions,
    k8s_executor,
    run_launcher_config,
    training_op_name,
    training_op_tags,
)
from lockgate.deploy.settings import GPU_RESOURCE, K8sSettings, PipelineDeployment, PodResources
from lockgate.errors import SpecError
from tests.deploy.conftest import IMAGE


def _spec(name: str, tmp_path: Path, **extra: Any) -> ModelPipeline:
    return ModelPipeline(
        name=name,
        feature_service=f"{name}_v1",
        label="y",
        labels=LabelSource(entity_columns=("id",)),
        trainer=LightGBMTrainer(seed=7),
        project_dir=str(tmp_path),
        **extra,
    )


def _container(job: client.V1Job) -> client.V1Container:
    containers = job.spec.template.spec.containers
    assert len(containers) == 1
    return containers[0]


def _launcher(settings: K8sSettings, kubeconfig: str) -> K8sRunLauncher:
    """The K8sRunLauncher Dagster builds from our dagster.yaml block (validated by its schema);
    only where it loads the cluster config from is changed, to a kubeconfig that goes nowhere."""
    block = run_launcher_config(settings)
    assert (block["module"], block["class"]) == ("dagster_k8s", "K8sRunLauncher")
    config = {**block["config"], "load_incluster_config": False, "kubeconfig_file": kubeconfig}
    result = process_config(K8sRunLauncher.config_type(), config)
    assert result.success, result.errors
    return K8sRunLauncher.from_config_value(None, result.value)


def test_the_run_worker_job_gets_cpu_the_lockgate_env_and_the_shared_volume(
    settings: K8sSettings, kubeconfig: str
) -> None:
    launcher = _launcher(settings, kubeconfig)
    assert launcher.job_namespace == "ml"
    assert launcher.fail_pod_on_run_failure is True
    run = dg.DagsterRun(job_name="fraud_train", run_id="0" * 36)
    context = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(IMAGE, launcher),
        args=["dagster", "api", "execute_run"],
        job_name="dagster-run-0",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )
    container = _container(job)
    assert container.image == IMAGE
    assert container.resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert GPU_RESOURCE not in (container.resources.limits or {})
    refs = {(e.config_map_ref or e.secret_ref).name for e in container.env_from}
    assert refs == {"lockgate-config", "lockgate-secrets"}
    env = {e.name: e.value for e in container.env}
    assert env["LOCKGATE_ENV"] == "production"
    assert any(m.mount_path == "/var/lib/lockgate" for m in container.volume_mounts)
    claims = [
        v.persistent_volume_claim.claim_name
        for v in job.spec.template.spec.volumes
        if v.persistent_volume_claim
    ]
    assert claims == ["lockgate-shared"]
    assert job.spec.template.spec.node_selector is None  # the run worker stays off GPU nodes


def test_training_op_tags_make_a_gpu_job_through_dagster_k8s(
    settings: K8sSettings, tmp_path: Path
) -> None:
    spec = _spec("fraud", tmp_path)
    tags = training_op_tags(spec, settings)
    assert set(tags) == {K8S_CONFIG_TAG}
    json.loads(tags[K8S_CONFIG_TAG])  # a tag value is a JSON string
    user_config = get_user_defined_k8s_config(tags)  # dagster-k8s validates it here
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image=IMAGE, dagster_home="/opt/dagster/dagster_home", instance_config_map="i"
        ),
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-fraud",
        user_defined_k8s_config=user_config,
    )
    container = _container(job)
    assert container.resources.limits[GPU_RESOURCE] == "1"
    assert container.resources.requests == {"cpu": "4", "memory": "16Gi", GPU_RESOURCE: "1"}
    pod = job.spec.template.spec
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [
        (GPU_RESOURCE, "Exists", "NoSchedule")
    ]


def test_a_pipelines_own_training_resources_win_over_the_cluster_default(
    settings: K8sSettings, tmp_path: Path
) -> None:
    big = PodResources(
        gpus=2,
        memory="64Gi",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        tolerations=settings.training.tolerations,
    )
    spec = _spec("big", tmp_path, deployment=PipelineDeployment(training=big))
    user_config = get_user_defined_k8s_config(training_op_tags(spec, settings))
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image=IMAGE, instance_config_map="i"),
        args=[],
        job_name="dagster-step-big",
        user_defined_k8s_config=user_config,
    )
    assert _container(job).resources.limits[GPU_RESOURCE] == "2"
    assert job.spec.template.spec.node_selector == {
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb"
    }
    cpu = _spec("cpu", tmp_path, deployment=PipelineDeployment(training=PodResources(cpu="8")))
    config = json.loads(training_op_tags(cpu, settings)[K8S_CONFIG_TAG])
    assert GPU_RESOURCE not in config["container_config"]["resources"]["limits"]
    assert "pod_spec_config" not in config


@dg.op
def _noop() -> None:
    """Nothing: the executor only needs a job to be built for."""


@dg.job
def _noop_job() -> None:
    _noop()


def _executor_handler(specs: list[ModelPipeline], settings: K8sSettings, kubeconfig: str) -> Any:
    """dagster-k8s's own step handler, built by ``k8s_job_executor`` from our config."""
    config = {
        **executor_config(specs, settings),
        "load_incluster_config": False,
        "kubeconfig_file": kubeconfig,
    }
    processed = process_config(k8s_job_executor.config_schema.as_field().config_type, config)
    assert processed.success, processed.errors
    instance = dg.DagsterInstance.ephemeral()
    executor = k8s_job_executor.executor_creation_fn(  # type: ignore[misc]
        InitExecutorContext(
            job=InMemoryJob(_noop_job),
            executor_def=k8s_job_executor,
            executor_config=processed.value,
            instance=instance,
        )
    )
    return executor._step_handler


def _step_job(
    handler: Any, op_name: str, op_tags: dict[str, str], launcher: K8sRunLauncher
) -> client.V1Job:
    """What ``K8sStepHandler.launch_step`` builds for one step (its container context, its Job)."""
    step_key = op_name
    context = SimpleNamespace(
        execute_step_args=SimpleNamespace(step_keys_to_execute=[step_key]),
        dagster_run=dg.DagsterRun(job_name="fraud_train", run_id="1" * 36),
        instance=SimpleNamespace(run_launcher=launcher),
        step_tags={step_key: op_tags},
        get_step_context=lambda key: SimpleNamespace(step=SimpleNamespace(op_name=op_name)),
    )
    container_context: K8sContainerContext = handler._get_container_context(context)
    return construct_dagster_k8s_job(
        job_config=container_context.get_k8s_job_config(IMAGE, launcher),
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{op_name}",
        user_defined_k8s_config=container_context.run_k8s_config,
        component="step_worker",
    )


def test_the_executor_puts_training_steps_on_gpus_and_other_steps_on_cpu(
    settings: K8sSettings, kubeconfig: str, tmp_path: Path
) -> None:
    specs = [
        _spec("fraud", tmp_path),
        _spec(
            "churn",
            tmp_path,
            deployment=PipelineDeployment(training=PodResources(cpu="8", memory="8Gi")),
        ),
    ]
    handler = _executor_handler(specs, settings, kubeconfig)
    launcher = _launcher(settings, kubeconfig)

    train = _container(step := _step_job(handler, "fraud__model_weights", {}, launcher))
    assert train.resources.limits[GPU_RESOURCE] == "1"
    assert step.spec.template.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [t.key for t in step.spec.template.spec.tolerations] == [GPU_RESOURCE]
    assert {(e.config_map_ref or e.secret_ref).name for e in train.env_from} == {
        "lockgate-config",
        "lockgate-secrets",
    }

    churn = _container(churn_job := _step_job(handler, "churn__model_weights", {}, launcher))
    assert churn.resources.requests == {"cpu": "8", "memory": "8Gi"}
    assert GPU_RESOURCE not in churn.resources.limits
    assert churn_job.spec.template.spec.tolerations is None

    snapshot = _step_job(handler, "fraud__feature_snapshot", {}, launcher)
    assert _container(snapshot).resources.requests == {"cpu": "1", "memory": "4Gi"}
    assert GPU_RESOURCE not in _container(snapshot).resources.limits
    assert snapshot.spec.template.spec.node_selector is None


def test_op_tags_reach_the_step_job_and_per_step_config_is_merged_over_them(
    settings: K8sSettings, kubeconfig: str, tmp_path: Path
) -> None:
    """A user's own asset carrying ``training_op_tags`` gets the GPU through its op tags."""
    spec = _spec("fraud", tmp_path)
    handler = _executor_handler([spec], settings, kubeconfig)
    launcher = _launcher(settings, kubeconfig)
    job = _step_job(handler, "my_own_trainer", training_op_tags(spec, settings), launcher)
    assert _container(job).resources.limits[GPU_RESOURCE] == "1"
    assert job.spec.template.spec.node_selector == {"nvidia.com/gpu.present": "true"}


def test_training_op_names_are_the_ops_dagster_builds(
    settings: K8sSettings, tmp_path: Path
) -> None:
    spec = _spec("fraud", tmp_path)
    defs = build_definitions([spec], environment=Environment.local(tmp_path / "home"))
    op = defs.resolve_assets_def(spec.asset_key("model_weights")).op
    assert op.name == training_op_name(spec)
    assert set(executor_config([spec], settings)["per_step_k8s_config"]) == {op.name}


def test_k8s_definitions_bind_the_executor_and_the_production_resources(
    settings: K8sSettings, tmp_path: Path
) -> None:
    spec = _spec("fraud", tmp_path)
    defs = k8s_definitions([spec], settings)
    job = defs.resolve_job_def(spec.train_job_name)
    assert job.executor_def.name == "k8s"
    resolved = job.executor_def.config_schema.resolve_config({})
    assert resolved.success, resolved.errors
    config = resolved.value["config"]
    expected = executor_config([spec], settings)
    for key in ("container_config", "pod_spec_config"):  # dagster fills in empty others
        step = training_op_name(spec)
        assert (
            config["per_step_k8s_config"][step][key] == expected["per_step_k8s_config"][step][key]
        )
    assert (
        config["step_k8s_config"]["container_config"]
        == expected["step_k8s_config"]["container_config"]
    )
    assert config["job_namespace"] == "ml"
    from lockgate.resources.artifacts import LocalArtifactRegistryResource

    assert isinstance(defs.resources["artifacts"], LocalArtifactRegistryResource)  # production
    assert k8s_executor([spec], settings).name == "k8s"


def test_duplicate_pipeline_names_are_refused(settings: K8sSettings, tmp_path: Path) -> None:
    spec = _spec("fraud", tmp_path)
    with pytest.raises(SpecError, match=r"pipeline names \['fraud'\] are used twice"):
        executor_config([spec, spec], settings)
