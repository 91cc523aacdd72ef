"""The ``artifacts`` resource: the registry's configuration, handing out the plain registry.

The registry itself is :class:`lockgate.lineage.registry.LocalArtifactRegistry` (core, no
Dagster). :class:`LocalArtifactRegistryResource` holds the same fields as Dagster configuration,
so that production can bind them to ``dg.EnvVar`` values read at run time, and creates the plain
registry for each run; assets and sensors take it as ``dg.ResourceParam[ArtifactRegistry]``. A
plain registry bound directly (``resources={"artifacts": LocalArtifactRegistry(root=...)}``)
works the same way. The registry classes are re-exported here for older imports.
"""

from __future__ import annotations

import dagster as dg

# neither is re-exported at dagster's top level in 1.13; these are their homes
from dagster._config.pythonic_config import ConfigurableResourceFactory
from dagster._core.definitions.resource_annotation import TreatAsResourceParam

from lockgate.lineage.registry import (
    PROVENANCE_FIELDS,
    ArtifactRegistry,
    LocalArtifactRegistry,
    content_id,
)

__all__ = [
    "PROVENANCE_FIELDS",
    "ArtifactRegistry",
    "LocalArtifactRegistry",
    "LocalArtifactRegistryResource",
    "content_id",
]


class LocalArtifactRegistryResource(ConfigurableResourceFactory[ArtifactRegistry]):
    """Dagster configuration of a :class:`~lockgate.lineage.registry.LocalArtifactRegistry`.

    Attributes:
        root: The registry's folder.
        signing_key: The key that signs lock records (production: the secret
            ``dg.EnvVar("LOCKGATE_SIGNING_KEY")``); None reads ``$LOCKGATE_SIGNING_KEY``, then
            the key file.
        signing_key_file: The key file when no key is given (default: ``keys/signing.key`` in
            the folder above the registry).
    """

    root: str
    signing_key: str | None = None
    signing_key_file: str | None = None

    def create_resource(self, context: dg.InitResourceContext) -> ArtifactRegistry:
        """The plain registry with this configuration."""
        return LocalArtifactRegistry(
            root=self.root, signing_key=self.signing_key, signing_key_file=self.signing_key_file
        )


# A parameter annotated with the plain class (``artifacts: ArtifactRegistry``) stays a resource
# parameter, as when the class was a ConfigurableResource: Dagster treats the class as
# ``dg.ResourceParam[ArtifactRegistry]`` (a virtual subclass; the core never imports Dagster).
TreatAsResourceParam.register(ArtifactRegistry)  # type: ignore[type-abstract]
