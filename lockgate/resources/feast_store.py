"""The ``feast`` resource: configuration of the Feast store, handing out the plain store.

The store itself is :class:`lockgate.features.store.FeastStore` (core, no Dagster).
:class:`FeastStoreResource` holds the same fields as Dagster configuration, so that production
can bind them to ``dg.EnvVar`` values read at run time, and creates the plain store for each run;
assets and sensors take it as ``dg.ResourceParam[FeastStore]``. A plain store bound directly
(``resources={"feast": FeastStore(repo_dir=...)}``) works the same way. The store and its
helpers are re-exported here for older imports.
"""

from __future__ import annotations

import dagster as dg

# neither is re-exported at dagster's top level in 1.13; these are their homes
from dagster._config.pythonic_config import ConfigurableResourceFactory
from dagster._core.definitions.resource_annotation import TreatAsResourceParam
from pydantic import Field

from lockgate.features.store import (
    FEATURE_STORE_YAML,
    FeastStore,
    canonical_spec,
    close_query_engines,
    source_fingerprint,
    spec_sha256,
)

__all__ = [
    "FEATURE_STORE_YAML",
    "FeastStore",
    "FeastStoreResource",
    "canonical_spec",
    "close_query_engines",
    "source_fingerprint",
    "spec_sha256",
]


class FeastStoreResource(ConfigurableResourceFactory[FeastStore]):
    """Dagster configuration of a :class:`~lockgate.features.store.FeastStore` (same fields)."""

    repo_dir: str = Field(
        description="The Feast repository (folder with feature_store.yaml) or a local store folder."
    )
    data_dir: str = Field(default="", description="Folder of the source data; empty: repo_dir.")
    project: str = Field(default="", description="Feast project of a store built in code.")
    definitions: str = Field(
        default="",
        description="'module:function' returning the Feast objects that apply() applies.",
    )

    def create_resource(self, context: dg.InitResourceContext) -> FeastStore:
        """The plain store with this configuration."""
        return FeastStore(
            repo_dir=self.repo_dir,
            data_dir=self.data_dir,
            project=self.project,
            definitions=self.definitions,
        )


# A parameter annotated with the plain class (``feast: FeastStore``) stays a resource
# parameter, as when the class was a ConfigurableResource: Dagster treats the class as
# ``dg.ResourceParam[FeastStore]`` (a virtual subclass; the core class never imports Dagster).
TreatAsResourceParam.register(FeastStore)
