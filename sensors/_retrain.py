"""What every retrain-trigger sensor shares: the in-flight check and an idempotent request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lockgate.resources.audit import AuditTrail
from lockgate.spec import ModelPipeline

__all__ = ["audit_retrain_once", "inflight_retrain", "request_retrain", "sensor_instance"]

_ACTIVE = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


def inflight_retrain(instance: dg.DagsterInstance | None, spec: ModelPipeline) -> str | None:
    """The id of a queued or running train run of ``spec``, or None."""
    if instance is None:
        return None
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=spec.train_job_name, statuses=list(_ACTIVE)), limit=1
    )
    return runs[0].run_id if runs else None


def sensor_instance(context: dg.SensorEvaluationContext) -> dg.DagsterInstance | None:
    """The context's instance, or None for a test context built without one."""
    try:
        return context.instance
    except dg.DagsterInvariantViolationError:
        return None


def audit_retrain_once(
    audit: AuditTrail,
    spec: ModelPipeline,
    *,
    run_key: str,
    actor: str,
    payload: Mapping[str, Any],
) -> bool:
    """Write the ``retrain_requested`` entry of ``run_key`` unless it is there already.

    A tick that is retried (the daemon died before saving the cursor) asks for the same run
    key; the daemon launches it once and the audit log records it once. Returns whether an
    entry was written.
    """
    entries = audit.log().entries(pipeline=spec.name, kind="retrain_requested")
    if any(e["payload"].get("run_key") == run_key for e in entries):
        return False
    audit.record(
        "retrain_requested",
        pipeline=spec.name,
        actor=actor,
        payload={**payload, "run_key": run_key},
    )
    return True


def request_retrain(
    spec: ModelPipeline,
    *,
    audit: AuditTrail,
    trigger: str,
    run_key: str,
    reason: str,
    evidence: Mapping[str, Any],
    actor: str,
    tags: Mapping[str, str] | None = None,
) -> dg.RunRequest:
    """A run request of the pipeline's train job, with its audit entry written exactly once."""
    audit_retrain_once(
        audit,
        spec,
        run_key=run_key,
        actor=actor,
        payload={"trigger": trigger, "reason": reason, **evidence},
    )
    return dg.RunRequest(
        run_key=run_key,
        job_name=spec.train_job_name,
        tags={
            "lockgate/pipeline": spec.name,
            "lockgate/trigger": trigger,
            "lockgate/reason": reason[:1000],
            **dict(tags or {}),
        },
    )
