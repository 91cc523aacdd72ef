"""The ``artifacts`` resource: the registry's configuration, handing out the plain registry.

The registry itself is :class:`lockgate.lineage.registry.LocalArtifactRegistry` (core, no
Dagster). :class:`LocalArtifactRegistryResource` holds the same fields as Dagster configuration,
so that production can bind them to ``dg.EnvVar`` values read at run time, and creates the plain
registry for each run; assets and sensors take it as ``dg.ResourceParam[ArtifactRegistry]``. A
plain registry bound directly (``resources={"artifacts": LocalArtifactRegistry(root=...)}``)
works the same way. :class:`ObjectStoreArtifactRegistryResource` does the same for the registry
on object storage (production: ``s3://``, aliases in PostgreSQL). The registry classes are
re-exported here for older imports.
"""

from __future__ import annotations

from lockgate.lineage.object_registry import ObjectStoreArtifactRegistry
from lockgate.lineage.registry import (
    PROVENANCE_FIELDS,
    ArtifactRegistry,
    LocalArtifactRegistry,
    content_id,
)
from lockgate.resources.factory import plain_resource_factory, register_resource_param
from lockgate.state.registry import SharedAliasesLocalRegistry

__all__ = [
    "PROVENANCE_FIELDS",
    "ArtifactRegistry",
    "LocalArtifactRegistry",
    "LocalArtifactRegistryResource",
    "ObjectStoreArtifactRegistry",
    "ObjectStoreArtifactRegistryResource",
    "SharedAliasesLocalRegistry",
    "SharedAliasesLocalRegistryResource",
    "content_id",
]


LocalArtifactRegistryResource = plain_resource_factory(LocalArtifactRegistry, module=__name__)
ObjectStoreArtifactRegistryResource = plain_resource_factory(
    ObjectStoreArtifactRegistry, module=__name__
)
SharedAliasesLocalRegistryResource = plain_resource_factory(
    SharedAliasesLocalRegistry, module=__name__
)
register_resource_param(ArtifactRegistry)
