"""The ``feast`` resource: configuration of the Feast store, handing out the plain store.

The store itself is :class:`lockgate.features.store.FeastStore` (core, no Dagster).
:class:`FeastStoreResource` holds the same fields as Dagster configuration, so that production
can bind them to ``dg.EnvVar`` values read at run time, and creates the plain store for each run;
assets and sensors take it as ``dg.ResourceParam[FeastStore]``. A plain store bound directly
(``resources={"feast": FeastStore(repo_dir=...)}``) works the same way. The store and its
helpers are re-exported here for older imports.
"""

from __future__ import annotations

# not re-exported at dagster's top level in 1.13; this is its home
from lockgate.features.store import (
    FEATURE_STORE_YAML,
    FeastStore,
    canonical_spec,
    close_query_engines,
    source_fingerprint,
    spec_sha256,
)
from lockgate.resources.factory import plain_resource_factory, register_resource_param

__all__ = [
    "FEATURE_STORE_YAML",
    "FeastStore",
    "FeastStoreResource",
    "canonical_spec",
    "close_query_engines",
    "source_fingerprint",
    "spec_sha256",
]


FeastStoreResource = plain_resource_factory(FeastStore, module=__name__)
register_resource_param(FeastStore)
