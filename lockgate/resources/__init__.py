"""One resource per external system, with local and production implementations.

Each resource is a thin Dagster wrapper over a plain core class: it holds configuration (so
``dg.EnvVar`` works in production) and hands assets and sensors the plain object. The plain
classes (``ArtifactRegistry``, ``LocalArtifactRegistry``, ``FeastStore``) are re-exported here.
"""

from __future__ import annotations

from lockgate.resources.artifacts import (
    ArtifactRegistry,
    LocalArtifactRegistry,
    LocalArtifactRegistryResource,
)
from lockgate.resources.audit import AuditTrail
from lockgate.resources.feast_store import FeastStore, FeastStoreResource
from lockgate.resources.gateway import Gateway, GatewayServer, RemoteGateway
from lockgate.resources.io_manager import JsonReferenceIOManager
from lockgate.resources.serving import LocalServingStack, RemoteServingStack, ServingStack
from lockgate.resources.triton import LocalTritonServer, RemoteTritonServer, TritonServer

__all__ = [
    "ArtifactRegistry",
    "AuditTrail",
    "FeastStore",
    "FeastStoreResource",
    "Gateway",
    "GatewayServer",
    "JsonReferenceIOManager",
    "LocalArtifactRegistry",
    "LocalArtifactRegistryResource",
    "LocalServingStack",
    "LocalTritonServer",
    "RemoteGateway",
    "RemoteServingStack",
    "RemoteTritonServer",
    "ServingStack",
    "TritonServer",
]
