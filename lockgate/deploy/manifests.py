"""The serving side on Kubernetes as ``kubernetes.client`` models: Triton and the gateway.

- **Triton** (:func:`triton_deployment`, :func:`triton_service`): the NGC image on a GPU, the model
  repository on object storage (``--model-repository=s3://...``), explicit model control with the
  model-repository API restricted to lockgate's secret header exactly as the local server runs
  it, HTTP, gRPC and metrics ports, readiness ``/v2/health/ready`` and liveness
  ``/v2/health/live``. One replica: explicit model control is per process, and lockgate's load
  and unload calls reach a server through its Service.
- **The gateway** (:func:`gateway_deployment`, :func:`gateway_service`,
  :func:`gateway_admin_service`, :func:`gateway_pdb`, :func:`gateway_hpa`): ``python -m
  lockgate.gateway`` with :meth:`GatewayConfig.to_argv`, inference and admin listeners, the admin
  token and routing key from the Secret, two replicas at least, a PodDisruptionBudget keeping
  one, and an HPA on CPU.
- What both read: the shared volume claim (:func:`shared_volume_claim`) and the ConfigMap of
  non-secret LOCKGATE_* variables (:func:`lockgate_config_map`).

:func:`serving_manifests` lists them all and :func:`to_yaml` writes them as one YAML stream
(``ApiClient().sanitize_for_serialization``), ready for ``kubectl apply -f``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from lockgate.deploy.settings import K8sSettings, PodResources
from lockgate.gateway.config import ADMIN_TOKEN_ENV, GatewayConfig
from lockgate.serving.triton_server import CONTROL_HEADER, CONTROL_SECRET_ENV

__all__ = [
    "GATEWAY",
    "GATEWAY_ADMIN",
    "ROUTING_KEY_ENV",
    "SIGNING_KEY_ENV",
    "TRITON",
    "gateway_admin_service",
    "gateway_args",
    "gateway_config",
    "gateway_deployment",
    "gateway_hpa",
    "gateway_pdb",
    "gateway_service",
    "lockgate_config_map",
    "serving_manifests",
    "shared_volume_claim",
    "to_yaml",
    "triton_args",
    "triton_deployment",
    "triton_service",
]

TRITON = "lockgate-triton"
"""Name of Triton's Deployment and Service."""
GATEWAY = "lockgate-gateway"
"""Name of the gateway's Deployment, inference Service, PDB and HPA."""
GATEWAY_ADMIN = "lockgate-gateway-admin"
"""Name of the gateway's admin Service (ClusterIP: in-cluster callers only)."""
ROUTING_KEY_ENV = "LOCKGATE_GATEWAY_ROUTING_KEY"
"""The Secret key (and variable) of the routing key every replica shares (hex, 16-64 bytes)."""
SIGNING_KEY_ENV = "LOCKGATE_SIGNING_KEY"
"""The Secret key (and variable) of the signing key (lock records, audit witness)."""
STATE_DB_URL_ENV = "LOCKGATE_STATE_DB_URL"
"""The Secret key (and variable) of the PostgreSQL shared-state URL (aliases, canary state,
routes, audit chain; see :mod:`lockgate.state`)."""

_SHARED = "lockgate-shared"


def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/part-of": "lockgate",
        "app.kubernetes.io/component": component.removeprefix("lockgate-"),
        "app.kubernetes.io/managed-by": "lockgate-deploy",
    }


def _selector(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": component}


def _meta(settings: K8sSettings, name: str, component: str) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, namespace=settings.namespace, labels=_labels(component))


def _resources(resources: PodResources) -> client.V1ResourceRequirements:
    req = resources.requirements()
    return client.V1ResourceRequirements(requests=req["requests"], limits=req["limits"])


def _tolerations(resources: PodResources) -> list[client.V1Toleration] | None:
    if not resources.tolerations:
        return None
    return [
        client.V1Toleration(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
        for t in resources.tolerations
    ]


def _secret_env(settings: K8sSettings, name: str) -> client.V1EnvVar:
    return client.V1EnvVar(
        name=name,
        value_from=client.V1EnvVarSource(
            secret_key_ref=client.V1SecretKeySelector(name=settings.secret, key=name)
        ),
    )


def _http_probe(
    path: str, port: str, *, period_s: int, failures: int, initial_delay_s: int = 0
) -> client.V1Probe:
    return client.V1Probe(
        http_get=client.V1HTTPGetAction(path=path, port=port),
        initial_delay_seconds=initial_delay_s or None,
        period_seconds=period_s,
        timeout_seconds=2,
        failure_threshold=failures,
    )


def _shared_volume(settings: K8sSettings) -> client.V1Volume:
    return client.V1Volume(
        name=_SHARED,
        persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
            claim_name=settings.shared_volume_claim
        ),
    )


def _service_url(settings: K8sSettings, name: str, port: int) -> str:
    return f"{name}.{settings.namespace}.svc:{port}"


def shared_volume_claim(settings: K8sSettings) -> client.V1PersistentVolumeClaim:
    """The ReadWriteMany claim of lockgate's shared state (refs, audit, canary and gateway state,
    prediction logs), mounted at ``mount_path`` by the code server, run and step pods and the
    gateway."""
    return client.V1PersistentVolumeClaim(
        api_version="v1",
        kind="PersistentVolumeClaim",
        metadata=_meta(settings, settings.shared_volume_claim, "lockgate-shared"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteMany"],
            storage_class_name=settings.storage_class,
            resources=client.V1VolumeResourceRequirements(
                requests={"storage": settings.shared_storage}
            ),
        ),
    )


def lockgate_config_map(settings: K8sSettings) -> client.V1ConfigMap:
    """The non-secret LOCKGATE_* variables of the production environment
    (:class:`lockgate.Environment`): folders on the shared volume, the in-cluster URLs of Triton
    and the gateway, the model repository on object storage. The secret ones come from
    ``settings.secret``."""
    root = settings.mount_path
    gateway = settings.gateway
    data = {
        "LOCKGATE_ENV": "production",
        "LOCKGATE_DATA_DIR": f"{root}/data",
        "LOCKGATE_FEAST_DIR": f"{root}/feast",
        "LOCKGATE_ARTIFACTS_ROOT": f"{root}/artifacts",
        "LOCKGATE_REFS_DIR": f"{root}/refs",
        "LOCKGATE_AUDIT_PATH": f"{root}/audit/audit.jsonl",
        "LOCKGATE_CANARY_STATE_DIR": f"{root}/canary",
        "LOCKGATE_PREDICTIONS_DIR": gateway.prediction_log_url
        or str(gateway_config(settings).log_dir.parent),
        "LOCKGATE_MODEL_REPOSITORY": settings.triton.model_repository,
        "LOCKGATE_TRITON_URL": _service_url(settings, TRITON, settings.triton.http_port),
        "LOCKGATE_GATEWAY_URL": "http://" + _service_url(settings, GATEWAY, gateway.port),
        # every gateway pod's admin port: the canary judges the whole fleet's traffic
        "LOCKGATE_GATEWAY_ADMIN_URL": "http+dns://"
        + _service_url(settings, GATEWAY_ADMIN, gateway.admin_port),
    }
    return client.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=_meta(settings, settings.config_map, "lockgate-config"),
        data=data,
    )


def triton_args(settings: K8sSettings) -> list[str]:
    """``tritonserver``'s options: the model-control flags lockgate's local server runs with
    (:func:`lockgate.serving.triton_binary.server_command`), the S3 repository, all addresses.

    The model-control secret is ``$(LOCKGATE_TRITON_CONTROL_SECRET)``, which Kubernetes expands
    from the container's environment (the Secret), so it is never written into a manifest.
    """
    triton = settings.triton
    control = f"model-repository:{CONTROL_HEADER}=$({CONTROL_SECRET_ENV})"
    return [
        f"--model-repository={triton.model_repository}",
        "--model-control-mode=explicit",
        f"--http-restricted-api={control}",
        f"--grpc-restricted-protocol={control}",
        "--strict-readiness=false",
        "--disable-auto-complete-config",
        f"--http-port={triton.http_port}",
        f"--grpc-port={triton.grpc_port}",
        "--allow-metrics=true",
        f"--metrics-port={triton.metrics_port}",
        f"--exit-timeout-secs={triton.exit_timeout_s}",
    ]


def triton_deployment(settings: K8sSettings) -> client.V1Deployment:
    """Triton on a GPU node: NGC image, S3 model repository, probes, ``/dev/shm`` in memory.

    ``Recreate``: a GPU is not spare for a surge pod, and two servers must not take load and
    unload calls at once; after a restart lockgate's controller loads the champions again.
    """
    triton = settings.triton
    resources = triton.resources
    container = client.V1Container(
        name="tritonserver",
        image=triton.image,
        image_pull_policy="IfNotPresent",
        command=["tritonserver"],
        args=triton_args(settings),
        ports=[
            client.V1ContainerPort(name="http", container_port=triton.http_port),
            client.V1ContainerPort(name="grpc", container_port=triton.grpc_port),
            client.V1ContainerPort(name="metrics", container_port=triton.metrics_port),
        ],
        env=[_secret_env(settings, CONTROL_SECRET_ENV)],
        env_from=[
            client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=triton.s3_secret))
        ],
        resources=_resources(resources),
        readiness_probe=_http_probe("/v2/health/ready", "http", period_s=5, failures=3),
        liveness_probe=_http_probe("/v2/health/live", "http", period_s=10, failures=3),
        # loading a model repository from object storage can take minutes: liveness waits
        startup_probe=_http_probe("/v2/health/live", "http", period_s=5, failures=120),
        volume_mounts=[client.V1VolumeMount(name="dshm", mount_path="/dev/shm")],
    )
    pod = client.V1PodSpec(
        containers=[container],
        node_selector=dict(resources.node_selector) or None,
        tolerations=_tolerations(resources),
        termination_grace_period_seconds=triton.exit_timeout_s + 10,
        volumes=[
            client.V1Volume(
                name="dshm",
                empty_dir=client.V1EmptyDirVolumeSource(
                    medium="Memory", size_limit=triton.shm_size
                ),
            )
        ],
    )
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_meta(settings, TRITON, TRITON),
        spec=client.V1DeploymentSpec(
            replicas=1,
            strategy=client.V1DeploymentStrategy(type="Recreate"),
            selector=client.V1LabelSelector(match_labels=_selector(TRITON)),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=_labels(TRITON)), spec=pod
            ),
        ),
    )


def triton_service(settings: K8sSettings) -> client.V1Service:
    """ClusterIP Service of Triton's HTTP, gRPC and metrics ports."""
    triton = settings.triton
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(settings, TRITON, TRITON),
        spec=client.V1ServiceSpec(
            type="ClusterIP",
            selector=_selector(TRITON),
            ports=[
                client.V1ServicePort(name=name, port=port, target_port=name)
                for name, port in (
                    ("http", triton.http_port),
                    ("grpc", triton.grpc_port),
                    ("metrics", triton.metrics_port),
                )
            ],
        ),
    )


def gateway_config(settings: K8sSettings) -> GatewayConfig:
    """The gateway's settings in the cluster: ``settings.gateway.config`` (default: state on the
    shared volume, one prediction log folder per pod), upstream the Triton Service."""
    upstream = "http://" + _service_url(settings, TRITON, settings.triton.http_port)
    given = settings.gateway.config
    if given is None:
        root = Path(settings.mount_path)
        return GatewayConfig(
            state_dir=root / "gateway",
            # one write-ahead log per replica: $(POD_NAME) is expanded by Kubernetes
            log_dir=root / "predictions" / "$(POD_NAME)",
            upstream_url=upstream,
            prediction_log_url=settings.gateway.prediction_log_url,
            # each version's wire.json, read where Triton reads the model (named features)
            model_repository=settings.triton.model_repository,
        )
    update: dict[str, Any] = {"upstream_url": upstream}
    if settings.gateway.prediction_log_url:
        update["prediction_log_url"] = settings.gateway.prediction_log_url
    return given.model_copy(update=update)


def gateway_args(settings: K8sSettings) -> list[str]:
    """``python -m lockgate.gateway``'s options: :meth:`GatewayConfig.to_argv`, then the
    listeners on all addresses, the admin token and routing key variables and the audit chain in
    the shared state database."""
    gateway = settings.gateway
    return [
        *gateway_config(settings).to_argv(),
        "--host",
        "0.0.0.0",
        "--port",
        str(gateway.port),
        "--admin-host",
        "0.0.0.0",
        "--admin-port",
        str(gateway.admin_port),
        "--admin-token-env",
        ADMIN_TOKEN_ENV,
        "--routing-key-env",
        ROUTING_KEY_ENV,
        # every replica appends to one audit chain in the shared state database
        "--audit-url-env",
        STATE_DB_URL_ENV,
        "--log-level",
        "info",
    ]


def gateway_deployment(settings: K8sSettings) -> client.V1Deployment:
    """The gateway: ``replicas`` pods of the project image, spread over nodes, rolling updates
    that never go below the PDB."""
    gateway = settings.gateway
    container = client.V1Container(
        name="gateway",
        image=settings.image,
        image_pull_policy=settings.image_pull_policy,
        command=["python", "-m", "lockgate.gateway"],
        args=gateway_args(settings),
        ports=[
            client.V1ContainerPort(name="http", container_port=gateway.port),
            client.V1ContainerPort(name="admin", container_port=gateway.admin_port),
        ],
        env=[
            client.V1EnvVar(
                name="POD_NAME",
                value_from=client.V1EnvVarSource(
                    field_ref=client.V1ObjectFieldSelector(field_path="metadata.name")
                ),
            ),
            _secret_env(settings, ADMIN_TOKEN_ENV),
            _secret_env(settings, ROUTING_KEY_ENV),
            _secret_env(settings, SIGNING_KEY_ENV),
            # shared routes, routing key and admin audit chain (lockgate.state)
            _secret_env(settings, STATE_DB_URL_ENV),
        ],
        # the AWS_* credentials Triton reads the repository with: wire.json and the log export
        env_from=[
            client.V1EnvFromSource(
                secret_ref=client.V1SecretEnvSource(name=settings.triton.s3_secret)
            )
        ],
        resources=_resources(gateway.resources),
        readiness_probe=_http_probe("/v2/health/ready", "http", period_s=5, failures=3),
        liveness_probe=_http_probe(
            "/v2/health/live", "http", period_s=10, failures=3, initial_delay_s=5
        ),
        volume_mounts=[client.V1VolumeMount(name=_SHARED, mount_path=settings.mount_path)],
    )
    spread = client.V1Affinity(
        pod_anti_affinity=client.V1PodAntiAffinity(
            preferred_during_scheduling_ignored_during_execution=[
                client.V1WeightedPodAffinityTerm(
                    weight=100,
                    pod_affinity_term=client.V1PodAffinityTerm(
                        label_selector=client.V1LabelSelector(match_labels=_selector(GATEWAY)),
                        topology_key="kubernetes.io/hostname",
                    ),
                )
            ]
        )
    )
    pod = client.V1PodSpec(
        containers=[container],
        affinity=spread,
        node_selector=dict(gateway.resources.node_selector) or None,
        tolerations=_tolerations(gateway.resources),
        termination_grace_period_seconds=30,
        volumes=[_shared_volume(settings)],
    )
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_meta(settings, GATEWAY, GATEWAY),
        spec=client.V1DeploymentSpec(
            replicas=gateway.replicas,
            strategy=client.V1DeploymentStrategy(
                type="RollingUpdate",
                rolling_update=client.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0),
            ),
            selector=client.V1LabelSelector(match_labels=_selector(GATEWAY)),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=_labels(GATEWAY)), spec=pod
            ),
        ),
    )


def gateway_service(settings: K8sSettings) -> client.V1Service:
    """The gateway's inference Service (KServe v2 and ``/metrics``)."""
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(settings, GATEWAY, GATEWAY),
        spec=client.V1ServiceSpec(
            type="ClusterIP",
            selector=_selector(GATEWAY),
            ports=[
                client.V1ServicePort(name="http", port=settings.gateway.port, target_port="http")
            ],
        ),
    )


def gateway_admin_service(settings: K8sSettings) -> client.V1Service:
    """The gateway's admin Service (bearer token; never exposed outside), headless: its name
    resolves to every ready gateway pod, so the control plane reads each replica's statistics
    (``http+dns://``, :mod:`lockgate.gateway.replicas`) instead of one pod's at random."""
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(settings, GATEWAY_ADMIN, GATEWAY),
        spec=client.V1ServiceSpec(
            type="ClusterIP",
            cluster_ip="None",
            selector=_selector(GATEWAY),
            ports=[
                client.V1ServicePort(
                    name="admin", port=settings.gateway.admin_port, target_port="admin"
                )
            ],
        ),
    )


def gateway_pdb(settings: K8sSettings) -> client.V1PodDisruptionBudget:
    """Keeps one gateway pod through voluntary disruptions (node drains, upgrades)."""
    return client.V1PodDisruptionBudget(
        api_version="policy/v1",
        kind="PodDisruptionBudget",
        metadata=_meta(settings, GATEWAY, GATEWAY),
        spec=client.V1PodDisruptionBudgetSpec(
            min_available=1, selector=client.V1LabelSelector(match_labels=_selector(GATEWAY))
        ),
    )


def gateway_hpa(settings: K8sSettings) -> client.V2HorizontalPodAutoscaler:
    """Scales the gateway between ``replicas`` and ``max_replicas`` on average CPU utilisation."""
    gateway = settings.gateway
    return client.V2HorizontalPodAutoscaler(
        api_version="autoscaling/v2",
        kind="HorizontalPodAutoscaler",
        metadata=_meta(settings, GATEWAY, GATEWAY),
        spec=client.V2HorizontalPodAutoscalerSpec(
            scale_target_ref=client.V2CrossVersionObjectReference(
                api_version="apps/v1", kind="Deployment", name=GATEWAY
            ),
            min_replicas=gateway.replicas,
            max_replicas=gateway.max_replicas,
            metrics=[
                client.V2MetricSpec(
                    type="Resource",
                    resource=client.V2ResourceMetricSource(
                        name="cpu",
                        target=client.V2MetricTarget(
                            type="Utilization", average_utilization=gateway.target_cpu_percent
                        ),
                    ),
                )
            ],
        ),
    )


def serving_manifests(settings: K8sSettings) -> list[Any]:
    """Every manifest of the serving side, in apply order (claim and ConfigMap first)."""
    return [
        shared_volume_claim(settings),
        lockgate_config_map(settings),
        triton_deployment(settings),
        triton_service(settings),
        gateway_deployment(settings),
        gateway_service(settings),
        gateway_admin_service(settings),
        gateway_pdb(settings),
        gateway_hpa(settings),
    ]


class _NoAliases(yaml.SafeDumper):
    """Writes a value shared by two keys twice, never as a YAML anchor and alias."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def to_yaml(objects: Sequence[Any]) -> str:
    """``objects`` (``kubernetes.client`` models or plain dicts) as one YAML stream, as the
    Kubernetes API would take them (camelCase keys, empty fields left out)."""
    api = client.ApiClient()
    documents = [api.sanitize_for_serialization(obj) for obj in objects]
    return yaml.dump_all(documents, Dumper=_NoAliases, sort_keys=False, default_flow_style=False)
