"""The gateway as Dagster resources: thin wrappers that hold the configuration and hand assets
and sensors a plain :class:`~lockgate.gateway.process.Gateway`.

The admin client and the local gateway process live in :mod:`lockgate.gateway.process`; these
factories only exist so Dagster can configure them (``dg.EnvVar`` included). Annotate the
parameter ``dg.ResourceParam[Gateway]``.
"""

from __future__ import annotations

import dagster as dg
from dagster._config.pythonic_config import ConfigurableResourceFactory
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from pydantic import Field

from lockgate.gateway.process import Gateway, GatewayServer, RemoteGateway

__all__ = [
    "Gateway",
    "GatewayServer",
    "GatewayServerResource",
    "RemoteGateway",
    "RemoteGatewayResource",
]

# A parameter annotated with the plain class (``gateway: Gateway``, as when it was a
# ConfigurableResource) is still a resource parameter, whether a plain object or a resource below
# is bound; ``dg.ResourceParam[Gateway]`` says the same explicitly.
TreatAsResourceParam.register(Gateway)  # type: ignore[type-abstract]


class GatewayServerResource(ConfigurableResourceFactory[Gateway]):
    """A :class:`~lockgate.gateway.process.GatewayServer` (same fields)."""

    admin_token: str | None = None
    actor: str | None = None
    timeout_s: float = 30.0
    state_dir: str
    log_dir: str
    upstream_url: str
    port: int = 0
    admin_port: int = 0
    audit_path: str | None = None
    durability: str = "fsync"
    upstream_timeout_s: float = 30.0
    retry_challenger_on_champion: bool = True
    segment_max_bytes: int = 64 << 20
    segment_max_age_s: float = 60.0
    verify_routes: bool = True
    coalesce_inflight: int = Field(default=2, ge=0)
    model_repository: str | None = None
    max_body_bytes: int = Field(default=64 << 20, ge=1024)
    max_connections: int = Field(default=4096, ge=1)
    max_url_bytes: int = Field(default=8192, ge=256)
    max_header_bytes: int = Field(default=32768, ge=1024)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
    startup_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0

    def create_resource(self, context: dg.InitResourceContext) -> GatewayServer:
        """The plain gateway process, configured like this resource (not started)."""
        return GatewayServer(**{k: getattr(self, k) for k in GatewayServer.model_fields})


class RemoteGatewayResource(ConfigurableResourceFactory[Gateway]):
    """A :class:`~lockgate.gateway.process.RemoteGateway` (same fields)."""

    admin_token: str | None = None
    actor: str | None = None
    timeout_s: float = 30.0
    gateway_url: str
    gateway_admin_url: str | None = None

    def create_resource(self, context: dg.InitResourceContext) -> RemoteGateway:
        """The plain admin client of the remote gateway."""
        return RemoteGateway(**{k: getattr(self, k) for k in RemoteGateway.model_fields})
