"""The ``artifacts`` resource: the registry's configuration, handing out the plain registry.

The registry itself is :class:`lockgate.lineage.registry.LocalArtifactRegistry` (core, no
Dagster). :class:`LocalArtifactRegistryResource` holds the same fields as Dagster configuration,
so that production can bind them to ``dg.EnvVar`` values read at run time, and creates the plain
registry for each run; assets and sensors take it as ``dg.ResourceParam[ArtifactRegistry]``. A
plain registry bound directly (``resources={"artifacts": LocalArtifactRegistry(root=...)}``)
works the same way. The registry classes are re-exported here for older imports.
"""

from __future__ import annotations

# not re-exported at dagster's top level in 1.13; this is its home
from lockgate.lineage.registry import (
    PROVENANCE_FIELDS,
    ArtifactRegistry,
    LocalArtifactRegistry,
    content_id,
)
from lockgate.resources.factory import plain_resource_factory, register_resource_param

__all__ = [
    "PROVENANCE_FIELDS",
    "ArtifactRegistry",
    "LocalArtifactRegistry",
    "LocalArtifactRegistryResource",
    "content_id",
]


LocalArtifactRegistryResource = plain_resource_factory(LocalArtifactRegistry, module=__name__)
register_resource_param(ArtifactRegistry)
