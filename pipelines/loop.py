"""The code location of the closed loop (``lockgate-loop``): one example pipeline, demo policies.

Loaded by the ``dagster-daemon`` that :func:`lockgate.loop.run_closed_loop` starts; the
settings come from ``<LOCKGATE_HOME>/loop.json`` (:class:`lockgate.loop.LoopSettings`).
"""

from __future__ import annotations

import dagster as dg

from lockgate.definitions import build_definitions
from lockgate.environment import Environment
from lockgate.loop import loop_pipelines, read_settings
from lockgate.pipelines.feature_repo import fraud_feast_store

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
