"""A small code location for the daemon test of per-kind sensors.

Two fraud pipelines (``kind_a``, ``kind_b``, the feature-change sensor at a 1 s interval) on one
Feast store, their feature-change sensors folded into one ``pipelines_on_feature_change``
(:func:`lockgate.sensors.per_kind.make_per_kind_sensor`, what ``sensors="per_kind"`` builds),
and under each train job's name a trivial op job: what the daemon test checks is the trigger.
"""

from __future__ import annotations

import dagster as dg

from lockgate import Environment, FeatureChangePolicy
from lockgate.sensors.feature_store import make_feature_change_sensor
from lockgate.sensors.per_kind import make_per_kind_sensor
from tests.integration.specs import lgbm_spec, stand_in_train_job

SPECS = [
    lgbm_spec(name=name, feature_changes=FeatureChangePolicy(interval_seconds=1))
    for name in ("kind_a", "kind_b")
]


def _definitions() -> dg.Definitions:
    env = Environment.from_env()
    resources = env.resources()
    jobs = [stand_in_train_job(s, "lockgate/mutations") for s in SPECS]
    combined = make_per_kind_sensor(
        "feature_change", [(s.name, make_feature_change_sensor(s)) for s in SPECS], jobs=jobs
    )
    return dg.Definitions(
        jobs=jobs,
        sensors=[combined],
        resources={"feast": resources["feast"], "audit": resources["audit"]},
    )


defs = _definitions()
