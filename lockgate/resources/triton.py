"""Triton as Dagster resources: thin wrappers that hold the configuration and hand assets and
sensors a plain :class:`~lockgate.serving.triton_server.TritonServer`.

The servers themselves (HTTP client, local process, remote endpoint) live in
:mod:`lockgate.serving.triton_server`; these factories only exist so Dagster can configure them
(``dg.EnvVar`` included). Annotate the parameter ``dg.ResourceParam[TritonServer]``.
"""

from __future__ import annotations

import dagster as dg
from dagster._config.pythonic_config import ConfigurableResourceFactory
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from pydantic import Field

from lockgate.serving.triton_server import (
    CONTROL_HEADER,
    LocalTritonServer,
    RemoteTritonServer,
    TritonServer,
)

__all__ = [
    "CONTROL_HEADER",
    "LocalTritonServer",
    "LocalTritonServerResource",
    "RemoteTritonServer",
    "RemoteTritonServerResource",
    "TritonServer",
]

# A parameter annotated with the plain class (``triton: TritonServer``, as when it was a
# ConfigurableResource) is still a resource parameter, whether a plain object or a resource below
# is bound; ``dg.ResourceParam[TritonServer]`` says the same explicitly.
TreatAsResourceParam.register(TritonServer)  # type: ignore[type-abstract]


class LocalTritonServerResource(ConfigurableResourceFactory[TritonServer]):
    """A :class:`~lockgate.serving.triton_server.LocalTritonServer` (same fields)."""

    repo_dir: str
    work_dir: str
    timeout_s: float = 60.0
    control_header: str = CONTROL_HEADER
    exit_timeout_s: int = 5
    startup_timeout_s: float = 60.0
    log_verbose: int = 0
    fixed_http_port: int = Field(default=0, ge=0, le=65535)
    fixed_grpc_port: int = Field(default=0, ge=0, le=65535)
    fixed_metrics_port: int = Field(default=0, ge=0, le=65535)

    def create_resource(self, context: dg.InitResourceContext) -> LocalTritonServer:
        """The plain server, configured like this resource (not started)."""
        return LocalTritonServer(**{k: getattr(self, k) for k in LocalTritonServer.model_fields})


class RemoteTritonServerResource(ConfigurableResourceFactory[TritonServer]):
    """A :class:`~lockgate.serving.triton_server.RemoteTritonServer` (same fields)."""

    server_url: str
    control_secret: str | None = None
    repo_dir: str | None = None
    timeout_s: float = 60.0
    control_header: str = CONTROL_HEADER

    def create_resource(self, context: dg.InitResourceContext) -> RemoteTritonServer:
        """The plain client of the remote server."""
        return RemoteTritonServer(**{k: getattr(self, k) for k in RemoteTritonServer.model_fields})
