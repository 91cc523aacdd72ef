"""lockgate on Kubernetes: pure builders from :class:`K8sSettings` and the pipelines' specs.

- :mod:`lockgate.deploy.settings`: the settings (plain pydantic; a spec's ``deployment`` field);
- :mod:`lockgate.deploy.launcher`: ``K8sRunLauncher`` instance config, ``k8s_job_executor`` config
  with the training steps' GPU, node selector and tolerations (``dagster-k8s/config``), and
  :func:`~lockgate.deploy.launcher.k8s_definitions`;
- :mod:`lockgate.deploy.manifests`: Triton and gateway Deployments, Services, the gateway's
  PodDisruptionBudget and HorizontalPodAutoscaler, the shared volume claim and the ConfigMap, as
  ``kubernetes.client`` models;
- :mod:`lockgate.deploy.helm`: values for the official Dagster Helm chart (``dagster/dagster``);
- :mod:`lockgate.deploy.docker`: the project image's Dockerfile;
- :mod:`lockgate.deploy.render`: all of them as files, what ``lockgate deploy render`` prints.

Nothing here talks to a cluster. This package imports only the settings eagerly, so a spec (which
imports them) loads neither dagster-k8s nor the Kubernetes client.
"""

from lockgate.deploy.settings import (
    DagsterSettings,
    GatewaySettings,
    K8sSettings,
    PipelineDeployment,
    PodResources,
    Toleration,
    TritonSettings,
)

__all__ = [
    "DagsterSettings",
    "GatewaySettings",
    "K8sSettings",
    "PipelineDeployment",
    "PodResources",
    "Toleration",
    "TritonSettings",
]
