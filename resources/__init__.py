"""One resource per external system, with local and production implementations."""

from __future__ import annotations

from lockgate.resources.artifacts import ArtifactRegistry, LocalArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.resources.feast_store import FeastStore
from lockgate.resources.io_manager import JsonReferenceIOManager

__all__ = [
    "ArtifactRegistry",
    "AuditTrail",
    "FeastStore",
    "JsonReferenceIOManager",
    "LocalArtifactRegistry",
]
