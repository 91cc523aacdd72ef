"""Feast definitions of lockgate's example domain (definitions only, no side effects).

Nothing here runs ``feast apply``: :class:`lockgate.resources.feast_store.FeastStore` applies the
objects returned by :func:`fraud_feature_objects` from code. Feast itself imports every ``.py``
file of a feature-repo folder, so keep this folder to definitions only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.feature_repo.fraud import (
    ENTITY_COLUMNS,
    FEATURE_SERVICES,
    FEATURE_VIEW_TABLES,
    fraud_feature_objects,
)

if TYPE_CHECKING:
    from lockgate import Environment, FeastStore

__all__ = [
    "ENTITY_COLUMNS",
    "FEATURE_SERVICES",
    "FEATURE_VIEW_TABLES",
    "FRAUD_DEFINITIONS",
    "fraud_feast_store",
    "fraud_feature_objects",
]

FRAUD_DEFINITIONS = "pipelines.feature_repo.fraud:fraud_feature_objects"
"""Import path of the function returning the example's Feast objects."""


def fraud_feast_store(env: Environment) -> FeastStore:
    """The example's Feast store: a local store under the environment's home, built in code
    (in production, the Feast repository ``$LOCKGATE_FEAST_DIR`` and ``$LOCKGATE_DATA_DIR``).

    The example applies its definitions from code (:meth:`FeastStore.apply`, called by the demo
    and ``lockgate apply``); a team with a Feast repository names it in
    ``ModelPipeline(feature_repo=...)`` instead.
    """
    import os

    from lockgate import FeastStore

    repo, data = env.feast_dir, env.data_dir
    if env.kind == "production":  # the folders the production variables name
        repo = Path(os.environ.get("LOCKGATE_FEAST_DIR") or repo)
        data = Path(os.environ.get("LOCKGATE_DATA_DIR") or data)
    return FeastStore(repo_dir=str(repo), data_dir=str(data), definitions=FRAUD_DEFINITIONS)
