"""The code location ``workspace.yaml`` loads: the example pipelines in the current environment."""

from __future__ import annotations

import dagster as dg

from lockgate.definitions import build_definitions
from lockgate.environment import Environment
from lockgate.pipelines.feature_repo import fraud_feast_store
from lockgate.pipelines.fraud import PIPELINES

__all__ = ["defs"]


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, never at import time."""
    env = Environment.from_env()
    return build_definitions(
        PIPELINES, environment=env, resources={"feast": fraud_feast_store(env)}
    )
