"""Triton and gateway manifests: rendered to YAML, read back into the Kubernetes client's models
(which check required fields and types), and their fields asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from lockgate.deploy.manifests import (
    GATEWAY,
    GATEWAY_ADMIN,
    ROUTING_KEY_ENV,
    TRITON,
    gateway_admin_service,
    gateway_args,
    gateway_config,
    gateway_deployment,
    gateway_hpa,
    gateway_pdb,
    gateway_service,
    lockgate_config_map,
    serving_manifests,
    shared_volume_claim,
    to_yaml,
    triton_args,
    triton_deployment,
    triton_service,
)
from lockgate.deploy.settings import GPU_RESOURCE, GatewaySettings, K8sSettings
from lockgate.gateway.cli import build_parser
from lockgate.gateway.config import ADMIN_TOKEN_ENV, GatewayConfig
from lockgate.serving.triton_binary import server_command
from lockgate.serving.triton_server import CONTROL_SECRET_ENV
from tests.deploy.conftest import IMAGE, make_settings


class _Response:
    """What ``ApiClient.deserialize`` reads: a body of JSON."""

    def __init__(self, document: Any) -> None:
        self.data = json.dumps(document)


def round_trip(obj: Any, model: str) -> Any:
    """``obj`` written as YAML, read back and deserialized into the client's ``model``."""
    (document,) = list(yaml.safe_load_all(to_yaml([obj])))
    back = client.ApiClient().deserialize(_Response(document), model)
    assert back == obj  # nothing lost or renamed on the way
    return back


def _env(container: client.V1Container) -> dict[str, client.V1EnvVar]:
    return {e.name: e for e in container.env or []}


def test_triton_runs_the_ngc_image_on_a_gpu_with_the_s3_repository(settings: K8sSettings) -> None:
    deployment = round_trip(triton_deployment(settings), "V1Deployment")
    assert (deployment.api_version, deployment.kind) == ("apps/v1", "Deployment")
    assert deployment.metadata.name == TRITON
    assert deployment.metadata.namespace == "ml"
    assert deployment.spec.replicas == 1
    assert deployment.spec.strategy.type == "Recreate"
    pod = deployment.spec.template.spec
    (container,) = pod.containers
    assert container.image == "nvcr.io/nvidia/tritonserver:24.08-py3"
    assert container.command == ["tritonserver"]
    assert "--model-repository=s3://models/fraud" in container.args
    assert "--model-control-mode=explicit" in container.args
    assert container.resources.limits[GPU_RESOURCE] == "1"
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [
        (GPU_RESOURCE, "Exists", "NoSchedule")
    ]
    ports = {p.name: p.container_port for p in container.ports}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert container.readiness_probe.http_get.path == "/v2/health/ready"
    assert container.liveness_probe.http_get.path == "/v2/health/live"
    assert container.readiness_probe.http_get.port == "http"
    secret = _env(container)[CONTROL_SECRET_ENV].value_from.secret_key_ref
    assert (secret.name, secret.key) == ("lockgate-secrets", CONTROL_SECRET_ENV)
    assert [e.secret_ref.name for e in container.env_from] == ["lockgate-s3"]
    shm = next(v for v in pod.volumes if v.name == "dshm")
    assert shm.empty_dir.medium == "Memory"
    assert any(m.mount_path == "/dev/shm" for m in container.volume_mounts)


def test_triton_keeps_the_model_control_flags_of_the_local_server(settings: K8sSettings) -> None:
    """The restricted model-repository API and the loading flags are the local server's own."""
    local = server_command(
        Path("/bin/tritonserver"),
        repo_dir=Path("/repo"),
        backends=Path("/backends"),
        control="model-repository:lockgate-model-control=Zq9-secret-value",
        ports=(1, 2, 3),
        exit_timeout_s=5,
        log_verbose=0,
    )
    cluster = [
        a.replace(f"$({CONTROL_SECRET_ENV})", "Zq9-secret-value") for a in triton_args(settings)
    ]
    shared = {
        "--model-control-mode=explicit",
        "--http-restricted-api=model-repository:lockgate-model-control=Zq9-secret-value",
        "--grpc-restricted-protocol=model-repository:lockgate-model-control=Zq9-secret-value",
        "--strict-readiness=false",
        "--disable-auto-complete-config",
        "--allow-metrics=true",
    }
    assert shared <= set(local)
    assert shared <= set(cluster)
    assert not [a for a in cluster if "127.0.0.1" in a]  # reachable through its Service
    # the secret is a variable Kubernetes expands from the Secret, never a value in the manifest
    reference = f"model-repository:lockgate-model-control=$({CONTROL_SECRET_ENV})"
    assert f"--http-restricted-api={reference}" in triton_args(settings)


def test_triton_service_exposes_http_grpc_and_metrics(settings: K8sSettings) -> None:
    service = round_trip(triton_service(settings), "V1Service")
    assert service.spec.selector == {"app.kubernetes.io/name": TRITON}
    assert {p.name: (p.port, p.target_port) for p in service.spec.ports} == {
        "http": (8000, "http"),
        "grpc": (8001, "grpc"),
        "metrics": (8002, "metrics"),
    }
    template = triton_deployment(settings).spec.template.metadata.labels
    assert service.spec.selector.items() <= template.items()


def test_the_gateway_runs_its_command_line_from_gateway_config(settings: K8sSettings) -> None:
    deployment = round_trip(gateway_deployment(settings), "V1Deployment")
    assert deployment.spec.replicas == 2
    rolling = deployment.spec.strategy.rolling_update
    assert (rolling.max_unavailable, rolling.max_surge) == (0, 1)
    pod = deployment.spec.template.spec
    (container,) = pod.containers
    assert container.image == IMAGE
    assert container.command == ["python", "-m", "lockgate.gateway"]
    config = gateway_config(settings)
    assert container.args[: len(config.to_argv())] == config.to_argv()
    assert config.upstream_url == "http://lockgate-triton.ml.svc:8000"
    ports = {p.name: p.container_port for p in container.ports}
    assert ports == {"http": 8080, "admin": 8081}
    assert container.readiness_probe.http_get.path == "/v2/health/ready"
    assert container.liveness_probe.http_get.path == "/v2/health/live"
    env = _env(container)
    for name in (ADMIN_TOKEN_ENV, ROUTING_KEY_ENV, "LOCKGATE_SIGNING_KEY", "LOCKGATE_STATE_DB_URL"):
        ref = env[name].value_from.secret_key_ref
        assert (ref.name, ref.key) == ("lockgate-secrets", name)
    assert env["POD_NAME"].value_from.field_ref.field_path == "metadata.name"
    assert container.resources.requests == {"cpu": "1", "memory": "1Gi"}  # the HPA's base
    assert GPU_RESOURCE not in container.resources.limits
    assert pod.volumes[0].persistent_volume_claim.claim_name == "lockgate-shared"
    term = pod.affinity.pod_anti_affinity.preferred_during_scheduling_ignored_during_execution[0]
    assert term.pod_affinity_term.topology_key == "kubernetes.io/hostname"


def test_the_gateway_arguments_parse_with_the_gateways_own_parser(settings: K8sSettings) -> None:
    args = build_parser().parse_args(gateway_args(settings))
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    assert (args.admin_host, args.admin_port) == ("0.0.0.0", 8081)
    assert args.admin_token_env == ADMIN_TOKEN_ENV
    assert args.routing_key_env == ROUTING_KEY_ENV
    assert args.upstream_url == "http://lockgate-triton.ml.svc:8000"
    assert args.audit_log is None  # replicas share one audit chain in PostgreSQL, not a file
    assert args.audit_url_env == "LOCKGATE_STATE_DB_URL"
    assert str(args.log_dir) == "/var/lib/lockgate/predictions/$(POD_NAME)"
    # wire.json read where Triton reads the model: named features work in the cluster
    assert args.model_repository == "s3://models/fraud"
    (source,) = gateway_deployment(settings).spec.template.spec.containers[0].env_from
    assert source.secret_ref.name == settings.triton.s3_secret  # the AWS_* credentials


def test_the_replicas_export_their_logs_where_the_sensors_read() -> None:
    url = "s3://models/predictions"
    settings = make_settings(gateway=GatewaySettings(prediction_log_url=url))
    assert build_parser().parse_args(gateway_args(settings)).prediction_log_url == url
    data = round_trip(lockgate_config_map(settings), "V1ConfigMap").data
    assert data["LOCKGATE_PREDICTIONS_DIR"] == url
    mine = GatewayConfig(state_dir=Path("/s"), log_dir=Path("/l"))
    kept = make_settings(gateway=GatewaySettings(config=mine, prediction_log_url=url))
    assert gateway_config(kept).prediction_log_url == url


def test_a_gateway_config_of_the_users_keeps_its_settings_with_the_triton_upstream() -> None:
    mine = GatewayConfig(state_dir=Path("/s"), log_dir=Path("/l"), durability="flush")
    settings = make_settings(gateway=GatewaySettings(config=mine))
    config = gateway_config(settings)
    assert (config.durability, config.state_dir) == ("flush", Path("/s"))
    assert config.upstream_url == "http://lockgate-triton.ml.svc:8000"


def test_gateway_services_pdb_and_hpa(settings: K8sSettings) -> None:
    selector = {"app.kubernetes.io/name": GATEWAY}
    service = round_trip(gateway_service(settings), "V1Service")
    assert service.spec.selector == selector
    assert [(p.name, p.port, p.target_port) for p in service.spec.ports] == [("http", 8080, "http")]
    admin = round_trip(gateway_admin_service(settings), "V1Service")
    assert admin.metadata.name == GATEWAY_ADMIN
    assert admin.spec.type == "ClusterIP"
    assert admin.spec.cluster_ip == "None"  # headless: one address per gateway pod
    assert [(p.name, p.port) for p in admin.spec.ports] == [("admin", 8081)]
    pdb = round_trip(gateway_pdb(settings), "V1PodDisruptionBudget")
    assert pdb.api_version == "policy/v1"
    assert pdb.spec.min_available == 1
    assert pdb.spec.selector.match_labels == selector
    hpa = round_trip(gateway_hpa(settings), "V2HorizontalPodAutoscaler")
    assert hpa.api_version == "autoscaling/v2"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 6)
    assert hpa.spec.scale_target_ref.name == GATEWAY
    (metric,) = hpa.spec.metrics
    assert (metric.type, metric.resource.name) == ("Resource", "cpu")
    assert (metric.resource.target.type, metric.resource.target.average_utilization) == (
        "Utilization",
        70,
    )
    labels = gateway_deployment(settings).spec.template.metadata.labels
    assert selector.items() <= labels.items()


def test_the_shared_claim_and_the_config_map_of_the_production_environment(
    settings: K8sSettings,
) -> None:
    claim = round_trip(shared_volume_claim(settings), "V1PersistentVolumeClaim")
    assert claim.spec.access_modes == ["ReadWriteMany"]
    assert claim.spec.resources.requests == {"storage": "100Gi"}
    config = round_trip(lockgate_config_map(settings), "V1ConfigMap")
    data = config.data
    assert data["LOCKGATE_ENV"] == "production"
    assert data["LOCKGATE_TRITON_URL"] == "lockgate-triton.ml.svc:8000"
    assert data["LOCKGATE_GATEWAY_ADMIN_URL"] == "http+dns://lockgate-gateway-admin.ml.svc:8081"
    assert data["LOCKGATE_MODEL_REPOSITORY"] == "s3://models/fraud"
    assert all(not k.endswith(("_KEY", "_TOKEN", "_SECRET")) for k in data)  # secrets elsewhere
    # every variable the production environment reads that is not a secret is set here
    environment = (Path(__file__).parents[2] / "lockgate" / "environment.py").read_text()
    for name in (
        "LOCKGATE_DATA_DIR",
        "LOCKGATE_FEAST_DIR",
        "LOCKGATE_ARTIFACTS_ROOT",
        "LOCKGATE_REFS_DIR",
        "LOCKGATE_AUDIT_PATH",
        "LOCKGATE_TRITON_URL",
        "LOCKGATE_GATEWAY_URL",
        "LOCKGATE_GATEWAY_ADMIN_URL",
        "LOCKGATE_MODEL_REPOSITORY",
        "LOCKGATE_CANARY_STATE_DIR",
        "LOCKGATE_PREDICTIONS_DIR",
    ):
        assert name in environment
        assert name in data


@pytest.mark.parametrize(
    ("index", "model"),
    list(
        enumerate(
            [
                "V1PersistentVolumeClaim",
                "V1ConfigMap",
                "V1Deployment",
                "V1Service",
                "V1Deployment",
                "V1Service",
                "V1Service",
                "V1PodDisruptionBudget",
                "V2HorizontalPodAutoscaler",
            ]
        )
    ),
)
def test_every_serving_manifest_reads_back_into_its_model(
    settings: K8sSettings, index: int, model: str
) -> None:
    documents = list(yaml.safe_load_all(to_yaml(serving_manifests(settings))))
    assert len(documents) == 9
    back = client.ApiClient().deserialize(_Response(documents[index]), model)
    assert back == serving_manifests(settings)[index]
    assert documents[index]["metadata"]["namespace"] == "ml"
