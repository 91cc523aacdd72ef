"""A small code location for the daemon test of the drift sensor.

It defines the production drift sensor of the ``driftlet`` pipeline of ``test_drift.py`` and,
under the train job's name, a trivial op job: what the daemon test checks is the trigger (how
many retrains flapping drift requests), not the training. The test passes the folders of its
registry, serving stack and audit log, and the drift policy, in environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.monitoring.triggers import DriftPolicy
from lockgate.resources.audit import AuditTrail
from lockgate.sensors.drift import make_drift_sensor
from lockgate.serving.stack import LocalServingStack
from tests.integration.specs import served_spec, stand_in_train_job

LOCATION_NAME = "lockgate_drift_test"
ROOT = Path(os.environ.get("LOCKGATE_TEST_DRIFT_ROOT", "/nonexistent"))

SPEC = served_spec(
    "driftlet",
    drift=DriftPolicy.model_validate_json(os.environ.get("LOCKGATE_TEST_DRIFT_POLICY", "{}")),
)


train_job = stand_in_train_job(SPEC, "lockgate/reason")


defs = dg.Definitions(
    jobs=[train_job],
    sensors=[make_drift_sensor(SPEC)],
    resources={
        "artifacts": LocalArtifactRegistry(root=str(ROOT / "artifacts")),
        "serving_stack": LocalServingStack(root=str(ROOT / "serving"), durability="flush"),
        "audit": AuditTrail(path=str(ROOT / "audit.jsonl")),
    },
)
