"""What every retrain-trigger sensor shares: the in-flight check and an idempotent request."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg

from lockgate.resources.audit import AuditTrail
from lockgate.spec import ModelPipeline

__all__ = [
    "audit_retrain_once",
    "inflight_retrain",
    "link_triggered_runs",
    "lockgate_sensor",
    "pending_link",
    "request_retrain",
    "retrain_tags",
    "sensor_instance",
    "sensor_targets",
]

_TAG_CHARS = 1000
PENDING_LINK_SECONDS = 86_400.0
"""How long a requested run is looked for before its report stops waiting for the link."""

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
    evidence_uri: str | None = None,
    tick_reason: str | None = None,
    sensor: str | None = None,
) -> dg.RunRequest:
    """A run request of the pipeline's train job, with its audit entry written exactly once.

    Its tags (:func:`retrain_tags`) link the run to what caused it: the trigger, the reason,
    the evidence's location and the tick's whole decision.
    """
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
        tags=retrain_tags(
            spec,
            trigger=trigger,
            reason=reason,
            evidence=evidence_uri,
            tick_reason=tick_reason,
            sensor=sensor,
            extra=tags,
        ),
    )


def retrain_tags(
    spec: ModelPipeline,
    *,
    trigger: str,
    reason: str,
    evidence: str | None = None,
    tick_reason: str | None = None,
    sensor: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The run tags of a sensor-requested retrain, the same keys for every trigger.

    ``lockgate/pipeline``, ``lockgate/trigger``, ``lockgate/reason`` (what was found),
    ``lockgate/evidence`` (the stored report or record it was found in), ``lockgate/tick_reason``
    (the tick's whole decision: level, trigger state) and ``lockgate/sensor``; Dagster adds
    ``dagster/sensor_name``, ``dagster/tick`` and ``dagster/run_key``. Values are cut to 1,000
    characters.

    Example:
        >>> from lockgate import LabelSource, LightGBMTrainer, ModelPipeline
        >>> churn = ModelPipeline(
        ...     name="churn",
        ...     feature_service="churn_v1",
        ...     label="churned",
        ...     labels=LabelSource(entity_columns=("customer_id",)),
        ...     trainer=LightGBMTrainer(seed=7),
        ... )
        >>> sorted(retrain_tags(churn, trigger="drift", reason="psi 0.4", evidence="/r.json"))
        ['lockgate/evidence', 'lockgate/pipeline', 'lockgate/reason', 'lockgate/trigger']
    """
    tags = {
        "lockgate/pipeline": spec.name,
        "lockgate/trigger": trigger,
        "lockgate/reason": reason[:_TAG_CHARS],
    }
    if evidence:
        tags["lockgate/evidence"] = evidence[:_TAG_CHARS]
    if tick_reason:
        tags["lockgate/tick_reason"] = tick_reason[:_TAG_CHARS]
    if sensor:
        tags["lockgate/sensor"] = sensor
    tags.update({k: str(v)[:_TAG_CHARS] for k, v in (extra or {}).items()})
    return tags


def lockgate_sensor(
    name: str, *, interval_seconds: int, description: str, **targets: Any
) -> Callable[..., dg.SensorDefinition]:
    """``dg.sensor`` of a lockgate sensor: running by default (it ticks as soon as the daemon
    runs), every ``interval_seconds`` at the most; ``targets`` are the job arguments."""
    return dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds,
        description=description,
        default_status=dg.DefaultSensorStatus.RUNNING,
        **targets,
    )


def sensor_targets(spec: ModelPipeline, jobs: Sequence[Any] | None) -> dict[str, Any]:
    """The ``@dg.sensor`` target arguments: the given jobs (the train job and the monitoring
    job whose assets the sensor records, so the UI lists the sensor on those assets), else the
    train job by name."""
    if jobs:
        names = [j.name for j in jobs]
        if spec.train_job_name not in names:
            from lockgate.errors import SpecError

            raise SpecError(
                f"sensor jobs {names} of {spec.name} lack its train job {spec.train_job_name}; "
                "rule: a retrain sensor targets the train job; fix: pass it in jobs"
            )
        return {"jobs": list(jobs)}
    return {"job_name": spec.train_job_name}


def pending_link(run_key: str, report: str, now: float) -> dict[str, Any]:
    """A cursor entry: the report whose requested run is to be linked once it exists."""
    return {"run_key": run_key, "report": report, "at": now}


def link_triggered_runs(
    instance: dg.DagsterInstance | None,
    spec: ModelPipeline,
    asset: str,
    pending: Sequence[Mapping[str, Any]],
    *,
    now: float,
) -> tuple[list[dg.AssetObservation], list[dict[str, Any]]]:
    """Observations on ``[name, asset]`` linking each report to the run it triggered.

    The run of a request exists only after the tick (the daemon launches it), so the tick that
    requests it keeps a :func:`pending_link` in its cursor and a later tick finds the run by its
    ``dagster/run_key`` tag. Returns the observations and the entries still pending (dropped
    after :data:`PENDING_LINK_SECONDS`; all kept when there is no instance).
    """
    if instance is None:
        return [], [dict(p) for p in pending]
    found: list[dg.AssetObservation] = []
    still: list[dict[str, Any]] = []
    for entry in pending:
        runs = instance.get_runs(
            filters=dg.RunsFilter(tags={"dagster/run_key": str(entry["run_key"])}), limit=1
        )
        if runs:
            run = runs[0]
            found.append(
                dg.AssetObservation(
                    asset_key=spec.asset_key(asset),
                    description=(
                        f"report {entry['report']} triggered run {run.run_id} "
                        f"({run.job_name}, run key {entry['run_key']})"
                    ),
                    metadata={
                        "triggered_run": dg.MetadataValue.dagster_run(run.run_id),
                        "triggered_job": run.job_name,
                        "run_key": str(entry["run_key"]),
                        "report": dg.MetadataValue.path(str(entry["report"])),
                    },
                )
            )
        elif now - float(entry.get("at", now)) < PENDING_LINK_SECONDS:
            still.append(dict(entry))
    return found, still
