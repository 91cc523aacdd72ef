"""One resource per external system, with local and production implementations."""

from __future__ import annotations

from lockgate.resources.artifacts import ArtifactRegistry, LocalArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.resources.feast_store import FeastStore
from lockgate.resources.gateway import Gateway, GatewayServer, RemoteGateway
from lockgate.resources.io_manager import JsonReferenceIOManager
from lockgate.resources.serving import LocalServingStack, RemoteServingStack, ServingStack
from lockgate.resources.triton import LocalTritonServer, RemoteTritonServer, TritonServer

__all__ = [
    "ArtifactRegistry",
    "AuditTrail",
    "FeastStore",
    "Gateway",
    "GatewayServer",
    "JsonReferenceIOManager",
    "LocalArtifactRegistry",
    "LocalServingStack",
    "LocalTritonServer",
    "RemoteGateway",
    "RemoteServingStack",
    "RemoteTritonServer",
    "ServingStack",
    "TritonServer",
]
