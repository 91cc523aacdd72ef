"""The code location of ``bench_many_pipelines.py --daemon-seconds``: N copies of ``fraud_lgbm``.

The daemon's code server loads this file (a ``python_file`` location whose working directory is
the repository root, so ``pipelines`` imports): ``LOCKGATE_BENCH_PIPELINES`` copies of the fraud
example's ``fraud_lgbm`` named ``model_0000`` ... (as the load phase builds them), on the example's
Feast store of the environment (``LOCKGATE_HOME``), every asset, job and all four sensors each,
or, with ``LOCKGATE_BENCH_SENSORS=per_kind``, one sensor per kind for all of them
(``build_definitions(..., sensors="per_kind")``).
"""

from __future__ import annotations

import os

import dagster as dg

from lockgate import Environment, build_definitions
from pipelines.feature_repo import fraud_feast_store
from pipelines.fraud import fraud_lgbm

PIPELINES_ENV = "LOCKGATE_BENCH_PIPELINES"
"""The environment variable with the number of copies."""

SENSORS_ENV = "LOCKGATE_BENCH_SENSORS"
"""The environment variable with the sensor layout: ``per_pipeline`` (default) or ``per_kind``."""


@dg.definitions
def defs() -> dg.Definitions:
    """Built when the code server loads the location, never at import time."""
    count = int(os.environ.get(PIPELINES_ENV, "1"))
    env = Environment.from_env()
    specs = [fraud_lgbm.model_copy(update={"name": f"model_{i:04d}"}) for i in range(count)]
    layout = os.environ.get(SENSORS_ENV, "per_pipeline")
    return build_definitions(
        specs,
        environment=env,
        resources={"feast": fraud_feast_store(env)},
        sensors="per_kind" if layout == "per_kind" else "per_pipeline",
    )
