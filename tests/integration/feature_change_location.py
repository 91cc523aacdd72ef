"""A small code location for the daemon test of the feature-change sensor.

It defines the production sensor of a fraud pipeline (1 s interval) and, under the train job's
name, a trivial op job: what the daemon test checks is the trigger, not the training.

Test-only hook: the ``audit`` resource pauses after writing an entry while the file named by
``LOCKGATE_TEST_PAUSE_FILE`` exists, so the test can kill the daemon in the middle of a tick
(after the sensor evaluated and audited a mutation, before the tick returned).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import dagster as dg

from lockgate import Environment, FeatureChangePolicy
from lockgate.resources.audit import AuditTrail
from lockgate.sensors.feature_store import make_feature_change_sensor
from tests.integration.specs import lgbm_spec, stand_in_train_job

LOCATION_NAME = "lockgate_feature_change_test"
"""The pinned code location name (run-key dedupe is scoped to it)."""

SPEC = lgbm_spec(feature_changes=FeatureChangePolicy(interval_seconds=1))


class PausingAuditTrail(AuditTrail):
    """An audit trail that holds the tick after each append while ``pause_file`` exists."""

    pause_file: str

    def record(
        self, kind: str, *, pipeline: str, actor: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        entry = super().record(kind, pipeline=pipeline, actor=actor, payload=payload)
        deadline = time.monotonic() + 120
        while os.path.exists(self.pause_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        return entry


train_job = stand_in_train_job(SPEC, "lockgate/mutations")


def _definitions() -> dg.Definitions:
    env = Environment.from_env()
    resources = env.resources()
    return dg.Definitions(
        jobs=[train_job],
        sensors=[make_feature_change_sensor(SPEC)],
        resources={
            "feast": resources["feast"],
            "audit": PausingAuditTrail(
                path=str(env.audit_path), pause_file=os.environ["LOCKGATE_TEST_PAUSE_FILE"]
            ),
        },
    )


defs = _definitions()
