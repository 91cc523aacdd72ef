"""K8sSettings and its parts: defaults per role, and errors that name the value, rule and fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lockgate.deploy.settings import (
    GPU_RESOURCE,
    GPU_TOLERATION,
    GatewaySettings,
    PipelineDeployment,
    PodResources,
    Toleration,
    TritonSettings,
    parse_image,
)
from tests.deploy.conftest import make_settings


def test_training_gets_a_gpu_on_gpu_nodes_and_every_other_role_cpu() -> None:
    settings = make_settings()
    training = settings.training.requirements()
    assert training["limits"][GPU_RESOURCE] == "1"
    assert training["requests"][GPU_RESOURCE] == "1"  # equal to the limit, as Kubernetes wants
    assert settings.training.node_selector == {"nvidia.com/gpu.present": "true"}
    assert settings.training.tolerations == (GPU_TOLERATION,)
    for role in (settings.steps, settings.run_worker, settings.gateway.resources):
        req = role.requirements()
        assert GPU_RESOURCE not in req["limits"]
        assert GPU_RESOURCE not in req["requests"]
        assert role.tolerations == ()
        assert role.node_selector == {}
    assert settings.triton.resources.requirements()["limits"][GPU_RESOURCE] == "1"


def test_memory_limit_defaults_to_the_request_and_cpu_is_unlimited() -> None:
    req = PodResources(cpu="2", memory="3Gi").requirements()
    assert req == {"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}
    req = PodResources(cpu="2", memory="3Gi", cpu_limit="4", memory_limit="6Gi").requirements()
    assert req["limits"] == {"cpu": "4", "memory": "6Gi"}


def test_dagster_k8s_config_of_a_gpu_role_and_of_a_cpu_role() -> None:
    gpu = PodResources(gpus=2, node_selector={"pool": "a100"}, tolerations=(GPU_TOLERATION,))
    config = gpu.dagster_k8s_config()
    assert config["container_config"]["resources"]["limits"][GPU_RESOURCE] == "2"
    assert config["pod_spec_config"] == {
        "node_selector": {"pool": "a100"},
        "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    }
    assert "pod_spec_config" not in PodResources().dagster_k8s_config()


def test_a_negative_gpu_count_is_refused_with_the_rule_and_the_fix() -> None:
    with pytest.raises(ValidationError) as info:
        PodResources(gpus=-1)
    text = str(info.value)
    assert "gpus=-1 is below 0" in text
    assert "0 or more whole GPUs" in text
    assert "fix: 0 for a CPU pod" in text


@pytest.mark.parametrize(
    ("field", "value"), [("cpu", "4 cores"), ("memory", "16GB"), ("cpu_limit", "-1")]
)
def test_a_quantity_kubernetes_cannot_read_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=rf"{field}='{value}' is not a Kubernetes quantity"):
        PodResources(**{field: value})  # type: ignore[arg-type]


def test_a_gpu_toleration_on_a_cpu_pod_is_refused() -> None:
    with pytest.raises(ValidationError, match="only GPU pods go onto GPU nodes"):
        PodResources(gpus=0, tolerations=(GPU_TOLERATION,))


def test_toleration_operator_and_value_must_agree() -> None:
    with pytest.raises(ValidationError, match="'Equal' without a value"):
        Toleration(key="pool", operator="Equal")
    with pytest.raises(ValidationError, match="'Exists' with value 'gpu'"):
        Toleration(key="pool", operator="Exists", value="gpu")
    assert Toleration(key="pool", operator="Equal", value="gpu", effect=None).to_k8s() == {
        "key": "pool",
        "operator": "Equal",
        "value": "gpu",
    }


@pytest.mark.parametrize(
    ("image", "repository", "tag", "digest"),
    [
        ("python:3.11-slim", "python", "3.11-slim", None),
        ("registry.example.com/team/fraud:1.4.0", "registry.example.com/team/fraud", "1.4.0", None),
        ("localhost:5000/fraud:abc123", "localhost:5000/fraud", "abc123", None),
        ("ghcr.io/team/fraud@sha256:" + "a" * 64, "ghcr.io/team/fraud", None, "sha256:" + "a" * 64),
        ("team/fraud:v2@sha256:" + "0" * 64, "team/fraud", "v2", "sha256:" + "0" * 64),
    ],
)
def test_image_references_split_as_helm_wants(
    image: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_image(image)
    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)
    assert ref.reference == image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("registry.example.com/team/fraud", "has no tag or digest; rule: pin the image"),
        ("team/fraud:latest", "tagged 'latest', which moves"),
        ("Team/Fraud:1.0", "is not an image reference; rule: [registry/]path[:tag]"),
        ("team/fraud:-bad", "has the tag '-bad'"),
        ("team/fraud@sha256:xyz", "has the digest 'sha256:xyz'"),
        ("team//fraud:1", "is not an image reference"),
    ],
)
def test_a_bad_image_reference_is_refused_with_the_rule_and_the_fix(
    image: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        make_settings(image=image)
    text = str(info.value)
    assert repr(image) in text
    assert message in text
    assert "fix: e.g. 'registry.example.com/team/project:1.4.0'" in text


def test_triton_needs_an_s3_repository_an_ngc_tag_and_three_ports() -> None:
    with pytest.raises(ValidationError, match="model_repository='/srv/models' is not on object"):
        TritonSettings(model_repository="/srv/models")
    with pytest.raises(ValidationError, match=r"image_tag='24\.8' is not an NGC release"):
        TritonSettings(model_repository="s3://m/r", image_tag="24.8")
    with pytest.raises(ValidationError, match="three different ports"):
        TritonSettings(model_repository="s3://m/r", grpc_port=8000)
    triton = TritonSettings(model_repository="s3://https://minio.example:9000/m/r")
    assert triton.image == "nvcr.io/nvidia/tritonserver:24.08-py3"


def test_the_gateway_keeps_two_replicas_and_sane_scaling() -> None:
    with pytest.raises(ValidationError) as info:
        GatewaySettings(replicas=1)
    assert "gateway replicas=1 is below 2" in str(info.value)
    assert "fix: replicas=2 or more" in str(info.value)
    with pytest.raises(ValidationError, match="max_replicas=2 is below replicas=3"):
        GatewaySettings(replicas=3, max_replicas=2)
    with pytest.raises(ValidationError, match="port and admin_port are both 8080"):
        GatewaySettings(admin_port=8080)
    with pytest.raises(ValidationError, match="the gateway routes and logs, Triton computes"):
        GatewaySettings(resources=PodResources(gpus=1))


def test_gpus_belong_to_training_and_triton_only() -> None:
    with pytest.raises(ValidationError, match="steps asks for gpus=1; rule: only training"):
        make_settings(steps=PodResources(gpus=1))
    with pytest.raises(ValidationError, match="run_worker asks for gpus=2"):
        make_settings(run_worker=PodResources(gpus=2))


@pytest.mark.parametrize("field", ["namespace", "secret", "config_map", "shared_volume_claim"])
def test_kubernetes_names_are_checked(field: str) -> None:
    with pytest.raises(ValidationError, match=rf"{field}='Lock_Gate' is not a Kubernetes name"):
        make_settings(**{field: "Lock_Gate"})


def test_mount_path_must_be_absolute() -> None:
    with pytest.raises(ValidationError, match="mount_path='data' is not an absolute folder"):
        make_settings(mount_path="data")
    assert make_settings(mount_path="/srv/lockgate/").mount_path == "/srv/lockgate"


def test_a_pipeline_deployment_overrides_the_cluster_training_default() -> None:
    settings = make_settings()
    cpu = PodResources(cpu="8", memory="8Gi")
    assert settings.training_for(PipelineDeployment(training=cpu)) == cpu
    assert settings.training_for(PipelineDeployment()) == settings.training
    assert settings.training_for(None) == settings.training
