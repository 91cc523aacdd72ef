"""Feast definitions of lockgate's example domain (definitions only, no side effects).

Nothing here runs ``feast apply``: :class:`lockgate.resources.feast_store.FeastStore` applies the
objects returned by :func:`fraud_feature_objects` from code. Feast itself imports every ``.py``
file of a feature-repo folder, so keep this folder to definitions only.
"""

from __future__ import annotations

from lockgate.pipelines.feature_repo.fraud import (
    ENTITY_COLUMNS,
    FEATURE_SERVICES,
    FEATURE_VIEW_TABLES,
    fraud_feature_objects,
)

__all__ = ["ENTITY_COLUMNS", "FEATURE_SERVICES", "FEATURE_VIEW_TABLES", "fraud_feature_objects"]
