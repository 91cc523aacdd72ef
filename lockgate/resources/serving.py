"""The serving stack as Dagster resources: thin wrappers that hold the configuration and hand
assets and sensors a plain :class:`~lockgate.serving.stack.ServingStack`.

The stacks themselves (Triton + gateway, local processes or remote services) live in
:mod:`lockgate.serving.stack`; these factories only exist so Dagster can configure them
(``dg.EnvVar`` in production). Assets and sensors annotate the parameter
``serving_stack: dg.ResourceParam[ServingStack]``, so a plain stack bound directly (the local
environment, tests) works the same.
"""

from __future__ import annotations

import dagster as dg
from dagster._config.pythonic_config import ConfigurableResourceFactory
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from pydantic import Field

from lockgate.serving.stack import LocalServingStack, RemoteServingStack, ServingStack

__all__ = [
    "LocalServingStack",
    "LocalServingStackResource",
    "RemoteServingStack",
    "RemoteServingStackResource",
    "ServingStack",
]

# A parameter annotated with the plain class (``serving_stack: ServingStack``, as when it was a
# ConfigurableResource) is still a resource parameter, whether a plain object or a resource below
# is bound; ``dg.ResourceParam[ServingStack]`` says the same explicitly.
TreatAsResourceParam.register(ServingStack)  # type: ignore[type-abstract]


class LocalServingStackResource(ConfigurableResourceFactory[ServingStack]):
    """A :class:`~lockgate.serving.stack.LocalServingStack` (same fields)."""

    root: str
    durability: str = "fsync"
    triton_http_port: int = Field(default=0, ge=0, le=65535)
    triton_grpc_port: int = Field(default=0, ge=0, le=65535)
    triton_metrics_port: int = Field(default=0, ge=0, le=65535)
    gateway_port: int = Field(default=0, ge=0, le=65535)
    gateway_admin_port: int = Field(default=0, ge=0, le=65535)
    audit_path: str | None = None

    def create_resource(self, context: dg.InitResourceContext) -> LocalServingStack:
        """The plain stack, configured like this resource."""
        return LocalServingStack(**{k: getattr(self, k) for k in LocalServingStack.model_fields})


class RemoteServingStackResource(ConfigurableResourceFactory[ServingStack]):
    """A :class:`~lockgate.serving.stack.RemoteServingStack` (same fields; give the URLs, the
    admin token and the folders from the environment with ``dg.EnvVar``)."""

    triton_url: str
    gateway_url: str
    model_repository: str
    gateway_admin_url: str | None = None
    gateway_admin_token: str | None = None
    canary_state_dir: str
    predictions_dir: str

    def create_resource(self, context: dg.InitResourceContext) -> RemoteServingStack:
        """The plain stack of the remote services."""
        return RemoteServingStack(**{k: getattr(self, k) for k in RemoteServingStack.model_fields})
