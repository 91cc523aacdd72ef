"""Triton as Dagster resources: thin wrappers that hold the configuration and hand assets and
sensors a plain :class:`~lockgate.serving.triton_server.TritonServer`.

The servers themselves (HTTP client, local process, remote endpoint) live in
:mod:`lockgate.serving.triton_server`; these factories only exist so Dagster can configure them
(``dg.EnvVar`` included). Annotate the parameter ``dg.ResourceParam[TritonServer]``.
"""

from __future__ import annotations

from lockgate.resources.factory import plain_resource_factory, register_resource_param
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


LocalTritonServerResource = plain_resource_factory(LocalTritonServer, module=__name__)
RemoteTritonServerResource = plain_resource_factory(RemoteTritonServer, module=__name__)
register_resource_param(TritonServer)
