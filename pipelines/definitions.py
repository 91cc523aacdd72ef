"""The code location ``workspace.yaml`` loads: the example pipelines in the current environment.

While the quick start's closed loop runs, its pipeline has the loop's demo-sized policies
(:func:`pipelines.closed_loop.loop_pipelines`); otherwise every pipeline is as written. On
Kubernetes (``LOCKGATE_K8S_SETTINGS`` names the cluster settings, ``deploy/settings.yaml`` in the
image) every step runs as its own Job, training on its GPU (see ``deploy/README.md``).
"""

from __future__ import annotations

import os

import dagster as dg

from lockgate import Environment, build_definitions, k8s_definitions, load_k8s_settings
from pipelines.closed_loop import loop_pipelines, read_settings
from pipelines.feature_repo import fraud_feast_store

__all__ = ["defs"]


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, never at import time."""
    env = Environment.from_env()
    pipelines = loop_pipelines(read_settings(env))
    resources = {"feast": fraud_feast_store(env)}
    k8s_settings = os.environ.get("LOCKGATE_K8S_SETTINGS")
    if k8s_settings:
        return k8s_definitions(pipelines, load_k8s_settings(k8s_settings), resources=resources)
    return build_definitions(pipelines, environment=env, resources=resources)
