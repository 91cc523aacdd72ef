"""``<name>_on_drift``: critical data drift in live traffic requests a retrain.

Each tick: skip when there is no champion, a canary is running (the log mixes two versions;
drift is judged against the champion once it ends), a train run of the pipeline is queued or
running, or no request was logged since the last analysis (a fingerprint of the log's files).
Otherwise compute the drift report (:func:`lockgate.monitoring.drift_report.compute_drift_report`), record
it as a ``drift_report`` materialization (every analysed window is recorded, warn level
included), and feed its level to the trigger (:func:`lockgate.monitoring.triggers.step`: ``consecutive``
critical windows, hysteresis, cooldown). A firing trigger requests the train job with run key
``drift:<report id>`` and tags linking the report and the drifted features, and writes a
``retrain_requested`` audit entry with the same evidence. The cursor holds the trigger state,
the champion it judged and the log fingerprint, so a daemon restart neither repeats nor loses
a decision. A new champion starts a new episode (its training data is the new reference) but
keeps the cooldown, so a promotion cannot be followed at once by another drift retrain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lockgate.lineage.registry import ArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.sensors._retrain import (
    inflight_retrain,
    link_triggered_runs,
    lockgate_sensor,
    pending_link,
    request_retrain,
    sensor_instance,
    sensor_targets,
)
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

__all__ = ["DriftTick", "make_drift_sensor", "run_drift_tick"]


@dataclass
class DriftTick:
    """What one drift-sensor tick decided."""

    cursor: dict[str, Any]
    reason: str
    report: dict[str, Any] | None = None
    run_request: dg.RunRequest | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    links: list[dg.AssetObservation] = field(default_factory=list)
    """Observations linking earlier critical reports to the runs they triggered."""


def run_drift_tick(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    cursor: dict[str, Any],
    instance: dg.DagsterInstance | None,
    actor: str,
    now: float | None = None,
) -> DriftTick:
    """One tick of the drift sensor (see the module docstring)."""
    from lockgate.assets.drift_metadata import drift_metadata
    from lockgate.monitoring.drift_report import (
        compute_drift_report,
        log_fingerprint,
    )
    from lockgate.monitoring.triggers import TriggerState
    from lockgate.serving.canary import CanaryState

    policy = spec.drift
    assert policy is not None, f"{spec.name} has no drift policy"
    now = time.time() if now is None else now
    # the runs that earlier critical reports requested exist now: link them first, whatever
    # this tick decides
    links, pending = link_triggered_runs(
        instance, spec, "drift_report", cursor.get("pending_runs", []), now=now
    )
    if links or pending != cursor.get("pending_runs", pending):
        cursor = {**cursor, "pending_runs": pending}
    champion = artifacts.alias(spec.name, "champion")
    if champion is None:
        return DriftTick(cursor, f"{spec.name} has no champion yet: nothing is served", links=links)
    raw = stack.canary_state(spec.name)
    if raw and CanaryState.from_dict(raw).running:
        return DriftTick(
            cursor,
            f"a canary of {raw.get('challenger')} is running: drift is judged against the "
            "champion once it ends",
            links=links,
        )
    running = inflight_retrain(instance, spec)
    if running is not None:
        return DriftTick(
            cursor, f"train run {running} of {spec.name} is queued or running", links=links
        )
    fingerprint = log_fingerprint(stack.prediction_log_dir, spec.name)
    if cursor.get("log") == fingerprint and cursor.get("champion") == champion:
        return DriftTick(
            cursor,
            f"no request logged since the last analysis (checked the files of "
            f"{stack.prediction_log_dir}); last level {cursor.get('trigger', {}).get('last_level')}",
            links=links,
        )
    state = TriggerState.from_dict(cursor.get("trigger"))
    note = ""
    if cursor.get("champion") not in (None, champion):
        # new reference data: the episode starts over, but the cooldown still counts
        state = TriggerState(last_fired=state.last_fired, fired=state.fired)
        note = f" (new champion {champion}: episode reset, cooldown kept)"
    report = compute_drift_report(spec, stack=stack, artifacts=artifacts, now=now)
    new_cursor = {**cursor, "log": fingerprint, "champion": champion}
    if report["level"] in ("insufficient", "no_champion"):
        new_cursor["trigger"] = state.to_dict()
        return DriftTick(
            new_cursor, f"{report['level']}: {report['reason']}{note}", report, links=links
        )
    state, decision = policy.step(state, report["level"], now=now)
    new_cursor["trigger"] = state.to_dict()
    metadata = drift_metadata(report, artifacts)
    metadata["trigger"] = decision.reason
    reason = f"{report['level']}: {report['reason']}; trigger: {decision.reason}{note}"
    if not decision.fire:
        return DriftTick(new_cursor, reason, report, None, metadata, links)
    features = ",".join(report["critical_features"])
    run_key = f"drift:{report['report_id']}"
    # the report names the run it requests; the run's id is linked by a later tick
    metadata["retrain_run_key"] = run_key
    metadata["retrain"] = (
        f"requested {spec.train_job_name} (run key {run_key}); the next tick links the run"
    )
    new_cursor["pending_runs"] = [
        *new_cursor.get("pending_runs", []),
        pending_link(run_key, str(report["uri"]), now),
    ][-20:]
    run = request_retrain(
        spec,
        audit=audit,
        trigger="drift",
        run_key=run_key,
        reason=report["reason"],
        evidence={
            "drift_report": report["uri"],
            "report_id": report["report_id"],
            "champion": champion,
            "critical_features": report["critical_features"],
            "prediction_psi": (report.get("prediction") or {}).get("psi"),
            "window_rows": report["window"]["rows"],
        },
        actor=actor,
        tags={
            "lockgate/drift_report": str(report["uri"]),
            "lockgate/drift_features": features[:1000] or "prediction",
        },
        evidence_uri=str(report["uri"]),
        tick_reason=reason,
        sensor=spec.drift_sensor_name,
    )
    return DriftTick(new_cursor, reason, report, run, metadata, links)


def make_drift_sensor(
    spec: ModelPipeline, *, jobs: Sequence[Any] | None = None
) -> dg.SensorDefinition:
    """``<name>_on_drift``: analyses the live window and requests a retrain on critical drift.

    ``jobs``: the train job and the monitoring job (``<name>_drift_report``, which holds
    ``drift_report``) when the definitions have it: the sensor then shows as the drift
    report's automation in the UI. Default: the train job by name.
    """
    policy = spec.drift
    assert policy is not None, f"{spec.name} has no drift policy"

    @lockgate_sensor(
        spec.drift_sensor_name,
        interval_seconds=policy.interval_seconds,
        **sensor_targets(spec, jobs),
        description=(
            f"Data drift of {spec.name}'s live traffic vs its champion's training data; "
            "critical drift (after hysteresis, outside the cooldown) retrains."
        ),
    )
    def drift_sensor(
        context: dg.SensorEvaluationContext,
        serving_stack: dg.ResourceParam[ServingStack],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        audit: AuditTrail,
    ) -> dg.SensorResult:
        cursor = json.loads(context.cursor) if context.cursor else {}
        tick = run_drift_tick(
            spec,
            stack=serving_stack,
            artifacts=artifacts,
            audit=audit,
            cursor=cursor,
            instance=sensor_instance(context),
            actor=f"sensor {spec.drift_sensor_name}",
        )
        context.log.info(f"{spec.name}: {tick.reason}")
        events: list[dg.AssetMaterialization | dg.AssetObservation] = list(tick.links)
        if tick.metadata:
            events.append(
                dg.AssetMaterialization(
                    asset_key=spec.asset_key("drift_report"),
                    description=tick.reason[:2000],
                    metadata=tick.metadata,
                )
            )
        return dg.SensorResult(
            run_requests=[tick.run_request] if tick.run_request else None,
            skip_reason=None if tick.run_request else tick.reason[:2000],
            cursor=json.dumps(tick.cursor, sort_keys=True),
            asset_events=events,
        )

    return drift_sensor
