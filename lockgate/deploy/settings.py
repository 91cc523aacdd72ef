"""What a Kubernetes deployment of lockgate needs to know: images, namespace, resources per role.

Plain pydantic models, no Kubernetes or Dagster import: :mod:`lockgate.spec` imports
:class:`PipelineDeployment` (a pipeline's own training needs), and the builders of
:mod:`lockgate.deploy` turn :class:`K8sSettings` into run-launcher and executor config, Kubernetes
manifests, Helm values and a Dockerfile.

Two levels, as a team thinks about them:

- **the cluster** (:class:`K8sSettings`, one per code location, usually a YAML file beside the
  project): the project image, the namespace, the Secret and ConfigMap the LOCKGATE_* variables
  come from, the shared volume, and the resources of each role: ``training`` (a GPU, on GPU nodes:
  node selector and tolerations), ``steps`` (every other asset step, CPU), ``run_worker`` (the
  Dagster run pod), Triton and the gateway;
- **one model** (``ModelPipeline(deployment=PipelineDeployment(training=...))``): a pipeline whose
  training needs more (two GPUs, more memory) or less (LightGBM on CPU) than the cluster default.

Example:
    >>> settings = K8sSettings(
    ...     image="registry.example.com/fraud/project:1.4.0",
    ...     triton=TritonSettings(model_repository="s3://models/fraud"),
    ...     dagster=DagsterSettings(postgres_host="postgres.db.svc"),
    ... )
    >>> settings.training.requirements()["limits"]["nvidia.com/gpu"]
    '1'
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lockgate.gateway.config import GatewayConfig

__all__ = [
    "GPU_RESOURCE",
    "GPU_TOLERATION",
    "DagsterSettings",
    "GatewaySettings",
    "ImageRef",
    "K8sSettings",
    "PipelineDeployment",
    "PodResources",
    "Toleration",
    "TritonSettings",
    "parse_image",
]

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource NVIDIA's device plugin advertises (requested as a limit)."""

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_REGISTRY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?$")
_TRITON_TAG = re.compile(r"^[0-9]{2}\.[0-9]{2}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _quantity(field: str, value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(
            f"{field}={value!r} is not a Kubernetes quantity; rule: a number with an optional "
            "suffix (m for milli-CPU; Ki, Mi, Gi or k, M, G for bytes); fix: e.g. cpu '500m' or "
            "'4', memory '512Mi' or '16Gi'"
        )
    return value


def _dns_label(field: str, value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{field}={value!r} is not a Kubernetes name; rule: at most 63 lowercase letters, "
            "digits and '-', starting and ending with a letter or digit (RFC 1123 label); fix: "
            "e.g. 'lockgate-secrets'"
        )
    return value


class ImageRef(_Frozen):
    """A container image reference split as Helm charts want it.

    Attributes:
        repository: registry and path (``registry.example.com/team/project``).
        tag: the tag (``1.4.0``), None with a digest only.
        digest: ``sha256:<64 hex>``, or None.
    """

    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """``repository:tag@digest`` as written."""
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def helm_tag(self) -> str:
        """What the Dagster chart's ``image.tag`` takes (``tag@digest`` pins both)."""
        if self.digest is None:
            return str(self.tag)
        return f"{self.tag}@{self.digest}" if self.tag is not None else f"@{self.digest}"


def parse_image(value: str) -> ImageRef:
    """Split ``[registry/]path[:tag][@sha256:digest]``; a tag or a digest is required.

    Raises:
        ValueError: the reference is malformed or pins nothing (no tag, or ``latest``); the
            message names the part, the rule and the fix.
    """
    fix = "fix: e.g. 'registry.example.com/team/project:1.4.0' (tag it with the git commit)"
    rest, digest = value, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise ValueError(
                f"image {value!r} has the digest {digest!r}; rule: 'sha256:' and 64 lowercase "
                f"hex digits; {fix}"
            )
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ValueError(
                f"image {value!r} has the tag {tag!r}; rule: letters, digits, '_', '.' and '-', "
                f"at most 128, not starting with '.' or '-'; {fix}"
            )
    parts = rest.split("/")
    registry = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry = parts.pop(0)
        if not _REGISTRY.match(registry):
            raise ValueError(f"image {value!r} has the registry {registry!r}, not a host; {fix}")
    if not parts or not all(_PATH_COMPONENT.match(p) for p in parts):
        raise ValueError(
            f"image {value!r} is not an image reference; rule: "
            "[registry/]path[:tag][@sha256:digest] with a lowercase path (letters, digits, "
            f"'.', '_', '-' between them); {fix}"
        )
    if tag is None and digest is None:
        raise ValueError(
            f"image {value!r} has no tag or digest; rule: pin the image a pod runs, so every "
            f"run and rollback uses the same code; {fix}"
        )
    if tag == "latest" and digest is None:
        raise ValueError(
            f"image {value!r} is tagged 'latest', which moves; rule: pin the image a pod runs, "
            f"so every run and rollback uses the same code; {fix}"
        )
    repository = "/".join([registry, *parts] if registry else parts)
    return ImageRef(repository=repository, tag=tag, digest=digest)


class Toleration(_Frozen):
    """A Kubernetes toleration (what lets a pod onto tainted nodes, such as GPU nodes).

    Attributes:
        key: the taint's key (``nvidia.com/gpu``).
        operator: ``Exists`` (any value) or ``Equal`` (``value`` must match).
        value: the taint's value, with ``Equal`` only.
        effect: the taint's effect; None tolerates every effect.
    """

    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = "NoSchedule"

    @model_validator(mode="after")
    def _value_matches_operator(self) -> Toleration:
        if self.operator == "Equal" and self.value is None:
            raise ValueError(
                f"toleration {self.key!r} uses operator 'Equal' without a value; rule: Equal "
                "matches one taint value; fix: set value, or use operator 'Exists'"
            )
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(
                f"toleration {self.key!r} uses operator 'Exists' with value {self.value!r}; rule: "
                "Exists matches any value and takes none; fix: drop value, or use 'Equal'"
            )
        return self

    def to_k8s(self) -> dict[str, str]:
        """The toleration as a Kubernetes manifest writes it (camelCase keys, no empty ones)."""
        out = {"key": self.key, "operator": self.operator}
        if self.value is not None:
            out["value"] = self.value
        if self.effect is not None:
            out["effect"] = self.effect
        return out


GPU_TOLERATION = Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
"""Tolerates the taint GPU node pools carry (GKE, EKS and AKS taint them ``nvidia.com/gpu``)."""


class PodResources(_Frozen):
    """The resources and placement of one role's pods.

    Attributes:
        cpu: CPU request (``"500m"``, ``"4"``).
        memory: memory request (``"2Gi"``); also the limit unless ``memory_limit`` is set.
        gpus: NVIDIA GPUs (``nvidia.com/gpu``, requested as a limit); 0: none.
        cpu_limit: CPU limit; None: no limit (throttling a trainer only slows it).
        memory_limit: memory limit; None: ``memory``.
        node_selector: node labels the pods must run on (GPU node pools).
        tolerations: taints the pods tolerate (GPU node pools are tainted).
    """

    cpu: str = "1"
    memory: str = "2Gi"
    gpus: int = 0
    cpu_limit: str | None = None
    memory_limit: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()

    @field_validator("cpu", "memory", "cpu_limit", "memory_limit")
    @classmethod
    def _quantities(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else _quantity(info.field_name, value)

    @field_validator("gpus")
    @classmethod
    def _gpu_count(cls, value: int) -> int:
        if value < 0:
            raise ValueError(
                f"gpus={value} is below 0; rule: a pod requests 0 or more whole GPUs "
                "(nvidia.com/gpu); fix: 0 for a CPU pod, 1 or more for a GPU pod"
            )
        return value

    @model_validator(mode="after")
    def _gpus_need_gpu_nodes(self) -> PodResources:
        if self.gpus == 0 and any(t.key == GPU_RESOURCE for t in self.tolerations):
            raise ValueError(
                f"tolerations name {GPU_RESOURCE!r} but gpus=0; rule: only GPU pods go onto "
                "GPU nodes (a CPU pod there takes a GPU node's room); fix: set gpus >= 1 or drop "
                "the toleration"
            )
        return self

    def requirements(self) -> dict[str, dict[str, str]]:
        """``{"requests": ..., "limits": ...}`` as a container's ``resources`` takes them."""
        requests = {"cpu": self.cpu, "memory": self.memory}
        limits = {"memory": self.memory_limit or self.memory}
        if self.cpu_limit is not None:
            limits["cpu"] = self.cpu_limit
        if self.gpus:
            # extended resources: the limit is what counts; a request, when given, must equal it
            requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(self.gpus)
        return {"requests": requests, "limits": limits}

    def tolerations_k8s(self) -> list[dict[str, str]]:
        """The tolerations as a pod spec writes them."""
        return [t.to_k8s() for t in self.tolerations]

    def dagster_k8s_config(self) -> dict[str, Any]:
        """This role as dagster-k8s's user-defined config (``dagster-k8s/config``).

        ``container_config.resources``, and ``pod_spec_config`` with the node selector and
        tolerations when there are any (keys as dagster-k8s documents them, snake_case).
        """
        config: dict[str, Any] = {"container_config": {"resources": self.requirements()}}
        pod: dict[str, Any] = {}
        if self.node_selector:
            pod["node_selector"] = dict(self.node_selector)
        if self.tolerations:
            pod["tolerations"] = self.tolerations_k8s()
        if pod:
            config["pod_spec_config"] = pod
        return config


def _gpu_training() -> PodResources:
    return PodResources(
        cpu="4",
        memory="16Gi",
        gpus=1,
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=(GPU_TOLERATION,),
    )


class PipelineDeployment(_Frozen):
    """How one pipeline runs on Kubernetes, where it differs from the cluster's defaults.

    Attributes:
        training: the resources and placement of its training step (``model_weights``); None:
            :attr:`K8sSettings.training` (one GPU on the GPU nodes). A LightGBM model that
            trains well on CPU says ``PodResources(cpu="8", memory="8Gi")``; a large network
            ``PodResources(gpus=2, memory="64Gi", node_selector=..., tolerations=...)``.

    Example:
        >>> PipelineDeployment(training=PodResources(cpu="8", memory="8Gi")).training.gpus
        0
    """

    training: PodResources | None = None


class TritonSettings(_Frozen):
    """NVIDIA Triton in the cluster: the NGC image on a GPU, the model repository on S3.

    Attributes:
        image_tag: the NGC release (``YY.MM``); the image is
            ``nvcr.io/nvidia/tritonserver:<image_tag>-py3``.
        model_repository: the model repository on object storage (``s3://bucket/path``; an
            S3-compatible endpoint: ``s3://https://host:port/bucket/path``), read by Triton
            natively; credentials come from :attr:`s3_secret`.
        resources: the server's resources (default one GPU on the GPU nodes).
        s3_secret: the Secret with ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
            ``AWS_DEFAULT_REGION`` (loaded as environment variables).
        http_port: KServe v2 HTTP port.
        grpc_port: KServe v2 gRPC port.
        metrics_port: Prometheus metrics port.
        exit_timeout_s: ``--exit-timeout-secs``: how long shutdown waits for in-flight work.
        shm_size: size of the in-memory ``/dev/shm`` (the python backend passes tensors there).
    """

    image_tag: str = "24.08"
    model_repository: str
    resources: PodResources = Field(default_factory=_gpu_training)
    s3_secret: str = "lockgate-s3"
    http_port: int = Field(default=8000, ge=1, le=65535)
    grpc_port: int = Field(default=8001, ge=1, le=65535)
    metrics_port: int = Field(default=8002, ge=1, le=65535)
    exit_timeout_s: int = Field(default=30, ge=0)
    shm_size: str = "1Gi"

    @field_validator("image_tag")
    @classmethod
    def _ngc_tag(cls, value: str) -> str:
        if not _TRITON_TAG.match(value):
            raise ValueError(
                f"triton image_tag={value!r} is not an NGC release; rule: 'YY.MM' (the image is "
                "nvcr.io/nvidia/tritonserver:<YY.MM>-py3); fix: e.g. '24.08'"
            )
        return value

    @field_validator("model_repository")
    @classmethod
    def _on_object_storage(cls, value: str) -> str:
        if not value.startswith("s3://") or len(value) <= len("s3://"):
            raise ValueError(
                f"model_repository={value!r} is not on object storage; rule: an s3:// URL, which "
                "Triton reads natively (every replica and the writer see one repository); fix: "
                "e.g. 's3://models/fraud' or 's3://https://minio.example:9000/models/fraud'"
            )
        return value

    @field_validator("s3_secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return _dns_label("s3_secret", value)

    @field_validator("shm_size")
    @classmethod
    def _shm(cls, value: str) -> str:
        return _quantity("shm_size", value)

    @model_validator(mode="after")
    def _distinct_ports(self) -> TritonSettings:
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if len(set(ports)) < 3:
            raise ValueError(
                f"triton ports http={ports[0]}, grpc={ports[1]}, metrics={ports[2]} repeat; "
                "rule: three different ports; fix: e.g. 8000, 8001, 8002"
            )
        return self

    @property
    def image(self) -> str:
        """``nvcr.io/nvidia/tritonserver:<image_tag>-py3``."""
        return f"nvcr.io/nvidia/tritonserver:{self.image_tag}-py3"


class GatewaySettings(_Frozen):
    """The lockgate gateway in the cluster: replicas behind a Service, an HPA and a PDB.

    Attributes:
        replicas: replicas at least (also the HPA's minimum); 2 or more, so a drain or a crash
            never leaves the model without its front door.
        max_replicas: the HPA's maximum.
        target_cpu_percent: the HPA's target average CPU utilisation (of the CPU request).
        port: the inference listener's port.
        admin_port: the admin listener's port (bearer token; its own ClusterIP Service).
        resources: each replica's resources (CPU: the HPA scales on the CPU request).
        config: the gateway's settings; None: the defaults with the state and prediction log on
            the shared volume. The upstream URL is always the Triton Service.
        prediction_log_url: object storage (``s3://bucket/prefix``) every replica exports its
            rolled prediction log to, and the drift and feedback sensors read
            (``LOCKGATE_PREDICTIONS_DIR``). Set it: each replica's own log folder is on the
            volume, where the sensors would see none of them.
    """

    replicas: int = 2
    max_replicas: int = 6
    target_cpu_percent: int = Field(default=70, ge=1, le=100)
    port: int = Field(default=8080, ge=1, le=65535)
    admin_port: int = Field(default=8081, ge=1, le=65535)
    resources: PodResources = Field(default_factory=lambda: PodResources(cpu="1", memory="1Gi"))
    config: GatewayConfig | None = None
    prediction_log_url: str | None = None

    @field_validator("replicas")
    @classmethod
    def _two_at_least(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                f"gateway replicas={value} is below 2; rule: at least 2, so a node drain or a "
                "crash never takes the model's only front door (the PodDisruptionBudget keeps 1); "
                "fix: replicas=2 or more"
            )
        return value

    @model_validator(mode="after")
    def _scaling(self) -> GatewaySettings:
        if self.max_replicas < self.replicas:
            raise ValueError(
                f"gateway max_replicas={self.max_replicas} is below replicas={self.replicas}; "
                "rule: the autoscaler scales between them; fix: max_replicas >= replicas"
            )
        if self.port == self.admin_port:
            raise ValueError(
                f"gateway port and admin_port are both {self.port}; rule: two listeners, two "
                "ports; fix: e.g. 8080 and 8081"
            )
        if self.resources.gpus:
            raise ValueError(
                f"gateway resources ask for gpus={self.resources.gpus}; rule: the gateway "
                "routes and logs, Triton computes; fix: gpus=0"
            )
        return self


class DagsterSettings(_Frozen):
    """The official Dagster Helm chart's side: the code location, PostgreSQL and run queue.

    Attributes:
        release: the Helm release name (``helm install <release> dagster/dagster``); the chart
            names its service account and instance ConfigMap after it (:attr:`chart_fullname`).
        code_location: the user-code deployment's name, which is the code location's name
            (sensor run keys and cursors are scoped to it: keep it fixed).
        grpc_port: the code server's port.
        postgres_host: the external PostgreSQL host (the chart's own is disabled).
        postgres_port: its port.
        postgres_database: the database of Dagster's run, event-log and schedule storage.
        postgres_user: its user.
        postgres_secret: the Secret with the key ``postgresql-password`` (created by you).
        max_concurrent_runs: runs in progress at most (the queued run coordinator's limit).
        runs_per_pipeline: runs of one pipeline at once at most (tag ``lockgate/pipeline``).
        gpu_training_runs: GPU training runs at once at most (tag ``lockgate/resource=gpu``).
    """

    release: str = "dagster"
    code_location: str = "lockgate"
    grpc_port: int = Field(default=3030, ge=1, le=65535)
    postgres_host: str
    postgres_port: int = Field(default=5432, ge=1, le=65535)
    postgres_database: str = "dagster"
    postgres_user: str = "dagster"
    postgres_secret: str = "dagster-postgresql-secret"
    max_concurrent_runs: int = Field(default=10, ge=1)
    runs_per_pipeline: int = Field(default=1, ge=1)
    gpu_training_runs: int = Field(default=2, ge=1)

    @field_validator("release", "code_location", "postgres_secret")
    @classmethod
    def _names(cls, value: str, info: Any) -> str:
        return _dns_label(info.field_name, value)

    @property
    def chart_fullname(self) -> str:
        """The chart's ``dagster.fullname``: the release name when it contains ``dagster``, else
        ``<release>-dagster``; its service account and ``<fullname>-instance`` ConfigMap."""
        return self.release if "dagster" in self.release else f"{self.release}-dagster"


class K8sSettings(_Frozen):
    """Everything the Kubernetes builders need, for one code location.

    Attributes:
        image: the project image (lockgate + the project; built from the rendered Dockerfile),
            pinned by tag or digest.
        namespace: the namespace of lockgate's pods and of the run and step jobs.
        image_pull_policy: the pods' image pull policy.
        config_map: the ConfigMap with the non-secret LOCKGATE_* variables (rendered).
        secret: the Secret with ``LOCKGATE_SIGNING_KEY``, ``LOCKGATE_GATEWAY_ADMIN_TOKEN``,
            ``LOCKGATE_GATEWAY_ROUTING_KEY`` and ``LOCKGATE_TRITON_CONTROL_SECRET`` (created by
            you, never rendered).
        shared_volume_claim: the ReadWriteMany volume claim of lockgate's shared state (asset
            references, audit log, canary state, gateway state and prediction logs).
        shared_storage: its size.
        storage_class: its storage class (None: the cluster's default).
        mount_path: where the shared volume is mounted in every pod.
        training: resources of training steps (``model_weights``); default one GPU on GPU nodes.
        steps: resources of every other asset step (CPU).
        run_worker: resources of the Dagster run worker pod (CPU; it only orchestrates steps).
        triton: the Triton server.
        gateway: the gateway.
        dagster: the Dagster chart's settings.
    """

    image: str
    namespace: str = "lockgate"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    config_map: str = "lockgate-config"
    secret: str = "lockgate-secrets"
    shared_volume_claim: str = "lockgate-shared"
    shared_storage: str = "100Gi"
    storage_class: str | None = None
    mount_path: str = "/var/lib/lockgate"
    training: PodResources = Field(default_factory=_gpu_training)
    steps: PodResources = Field(default_factory=lambda: PodResources(cpu="1", memory="4Gi"))
    run_worker: PodResources = Field(default_factory=lambda: PodResources(cpu="500m", memory="1Gi"))
    triton: TritonSettings
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    dagster: DagsterSettings

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        parse_image(value)
        return value

    @field_validator("namespace", "config_map", "secret", "shared_volume_claim")
    @classmethod
    def _names(cls, value: str, info: Any) -> str:
        return _dns_label(info.field_name, value)

    @field_validator("shared_storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        return _quantity("shared_storage", value)

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "":
            raise ValueError(
                f"mount_path={value!r} is not an absolute folder; rule: the shared volume "
                "mounts at an absolute path other than '/'; fix: e.g. '/var/lib/lockgate'"
            )
        return value.rstrip("/")

    @model_validator(mode="after")
    def _cpu_roles(self) -> K8sSettings:
        for role in ("steps", "run_worker"):
            gpus = getattr(self, role).gpus
            if gpus:
                raise ValueError(
                    f"{role} asks for gpus={gpus}; rule: only training steps and Triton get GPUs "
                    f"(a {role} pod would hold one idle); fix: gpus=0 there, and give training "
                    "(or one pipeline's deployment.training) the GPUs"
                )
        return self

    @property
    def image_ref(self) -> ImageRef:
        """:attr:`image` split into repository, tag and digest."""
        return parse_image(self.image)

    def training_for(self, deployment: PipelineDeployment | None) -> PodResources:
        """The training resources of a pipeline with this ``deployment`` (None: the default)."""
        if deployment is not None and deployment.training is not None:
            return deployment.training
        return self.training
