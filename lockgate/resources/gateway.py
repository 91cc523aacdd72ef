"""The gateway as Dagster resources: thin wrappers that hold the configuration and hand assets
and sensors a plain :class:`~lockgate.gateway.process.Gateway`.

The admin client and the local gateway process live in :mod:`lockgate.gateway.process`; these
factories only exist so Dagster can configure them (``dg.EnvVar`` included). Annotate the
parameter ``dg.ResourceParam[Gateway]``.
"""

from __future__ import annotations

from lockgate.gateway.process import Gateway, GatewayServer, RemoteGateway
from lockgate.resources.factory import plain_resource_factory, register_resource_param

__all__ = [
    "Gateway",
    "GatewayServer",
    "GatewayServerResource",
    "RemoteGateway",
    "RemoteGatewayResource",
]


GatewayServerResource = plain_resource_factory(GatewayServer, module=__name__)
RemoteGatewayResource = plain_resource_factory(RemoteGateway, module=__name__)
register_resource_param(Gateway)
