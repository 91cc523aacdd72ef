"""The code location ``workspace.yaml`` loads: the example pipelines in the current environment.

While the quick start's closed loop runs, its pipeline has the loop's demo-sized policies
(:func:`pipelines.closed_loop.loop_pipelines`); otherwise every pipeline is as written.
"""

from __future__ import annotations

import dagster as dg

from lockgate import Environment, build_definitions
from pipelines.closed_loop import loop_pipelines, read_settings
from pipelines.feature_repo import fraud_feast_store

__all__ = ["defs"]


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location, never at import time."""
    env = Environment.from_env()
    return build_definitions(
        loop_pipelines(read_settings(env)),
        environment=env,
        resources={"feast": fraud_feast_store(env)},
    )
