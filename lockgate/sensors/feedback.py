"""The label-feedback sensor: delayed labels judged against the champion's gold set, retrain on decay.

Each tick (:func:`run_feedback_tick`):

1. skip when the pipeline has no champion, or a canary is running (live traffic is split and
   the champion about to change), or a train run of the pipeline is queued or running, or the
   feedback folder did not change since the last judged
   window (names, sizes and mtimes of its files: nothing is read) and the champion is the same;
2. otherwise compute the live performance and store the report
   (:func:`lockgate.assets.feedback.compute_live_performance`), judge the champion
   (:func:`lockgate.monitoring.feedback.judge`) and feed the level to the hysteresis/cooldown trigger
   (:func:`lockgate.monitoring.triggers.step`);
3. report a ``live_performance`` materialization; on fire request the training job with run key
   ``label_feedback:<digest of the evidence>`` and write a ``retrain_requested`` audit entry.

The cursor is JSON: ``{"watermark": {files, bytes, digest}, "champion", "trigger": TriggerState,
"report"}``. A new champion starts a fresh streak (the cooldown still counts from the last
retrain request).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dagster as dg

from lockgate.features.store import FeastStore
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.sensors._retrain import (
    audit_retrain_once,
    inflight_retrain,
    link_triggered_runs,
    lockgate_sensor,
    pending_link,
    retrain_tags,
    sensor_instance,
    sensor_targets,
)
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

__all__ = ["FeedbackTick", "make_feedback_sensor", "run_feedback_tick"]

TRIGGER = "label_feedback"


@dataclass
class FeedbackTick:
    """What one feedback tick did.

    Attributes:
        action: ``skip`` (nothing computed), ``judged`` (computed, no retrain) or ``fire``.
        reason: what was checked and decided (the sensor's skip reason).
        cursor: the cursor to persist (None: keep the old one).
        document: the live-performance document (see ``compute_live_performance``).
        run_key: the run key of the retrain request when ``action == "fire"``.
        tags: the run tags of the retrain request.
        links: observations linking earlier reports to the runs they triggered.
    """

    action: str
    reason: str
    cursor: dict[str, Any] | None = None
    document: dict[str, Any] | None = None
    run_key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    links: list[dg.AssetObservation] = field(default_factory=list)


def _read_cursor(raw: str | None, sensor: str) -> dict[str, Any]:
    from lockgate.errors import SpecError

    if not raw:
        return {}
    try:
        cursor = json.loads(raw)
    except ValueError as exc:
        raise SpecError(
            f"the cursor of sensor {sensor} is not JSON ({exc}): {raw[:80]!r}; rule: it holds "
            "the feedback watermark and trigger state; fix: reset the cursor in the Dagster UI"
        ) from exc
    if not isinstance(cursor, dict):
        raise SpecError(
            f"the cursor of sensor {sensor} is {raw[:80]!r}, not a JSON object; reset it in "
            "the Dagster UI"
        )
    return cursor


def run_feedback_tick(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    data_dir: str | Path,
    cursor: str | None,
    actor: str,
    now: float | None = None,
    instance: dg.DagsterInstance | None = None,
) -> FeedbackTick:
    """One label-feedback analysis for ``spec`` (what the sensor runs every tick).

    Args:
        spec: the pipeline (must have ``feedback``).
        stack: where the prediction log and the canary state are.
        artifacts: the registry (champion alias, gold estimates, reports).
        audit: receives ``retrain_requested`` when the trigger fires.
        data_dir: the Feast data folder; labels are under ``<data_dir>/<feedback.dataset>``.
        cursor: the sensor's cursor (None on the first tick).
        actor: who asks, for the audit trail.
        now: unix seconds of this tick (default: the clock).
        instance: the Dagster instance; when given, a queued or running train run of the
            pipeline makes the tick skip (its model may replace the champion).

    Returns:
        The outcome; ``cursor`` is the new cursor unless nothing was computed.
    """
    from lockgate.assets.feedback import compute_live_performance
    from lockgate.lineage.hashing import sha256_json
    from lockgate.monitoring.feedback import feedback_watermark
    from lockgate.monitoring.triggers import TriggerState

    policy = spec.feedback
    if policy is None:
        raise ValueError(f"pipeline {spec.name!r} has no feedback policy")
    now = time.time() if now is None else now
    old = _read_cursor(cursor, spec.feedback_sensor_name)
    # the runs that earlier reports requested exist now: link them, whatever this tick decides
    links, pending = link_triggered_runs(
        instance, spec, "live_performance", old.get("pending_runs", []), now=now
    )
    kept = None  # a skip keeps the cursor, unless a link was made
    if pending != old.get("pending_runs", pending):
        old = {**old, "pending_runs": pending}
        kept = old
    champion = artifacts.alias(spec.name, "champion")
    if champion is None:
        return FeedbackTick(
            "skip",
            f"{spec.name} has no champion alias in {artifacts.uri(f'aliases/{spec.name}.json')}: "
            "live performance is judged against the champion",
            kept,
            links=links,
        )
    canary: Mapping[str, Any] = stack.canary_state(spec.name) or {}
    if canary.get("status") == "running":
        return FeedbackTick(
            "skip",
            f"canary of {canary.get('challenger')} against champion {champion} is running "
            f"(state in {stack.canary_store().where}): traffic is split, judged once it ends",
            kept,
            links=links,
        )
    running = inflight_retrain(instance, spec)
    if running is not None:
        return FeedbackTick(
            "skip",
            f"train run {running} of {spec.train_job_name} is queued or running: its model may "
            f"replace champion {champion}, judged once it ends",
            kept,
            links=links,
        )
    folder = Path(data_dir) / policy.dataset
    mark = feedback_watermark(folder)
    seen = (old.get("watermark") or {}).get("digest")
    if seen == mark["digest"] and old.get("champion") == champion:
        return FeedbackTick(
            "skip",
            f"no new labels in {folder} since the last judged window ({mark['files']} files, "
            f"{mark['bytes']} bytes unchanged) and champion {champion} unchanged",
            kept,
            links=links,
        )
    document = compute_live_performance(spec, stack=stack, artifacts=artifacts, data_dir=data_dir)
    state = TriggerState.from_dict(old.get("trigger"))
    if old.get("champion") not in (None, champion):  # a new champion: a fresh streak
        state = replace(state, streak=0, in_episode=False, last_level="ok")
    state, decision = policy.step(state, document["level"], now=now)
    new_cursor = {
        "watermark": mark,
        "champion": champion,
        "trigger": state.to_dict(),
        "report": document["report_key"],
        "pending_runs": pending,
    }
    reason = f"{document['level']}: {document['reason']}; trigger: {decision.reason}"
    if not decision.fire:
        return FeedbackTick("judged", reason, new_cursor, document, links=links)
    digest = sha256_json({"evidence": document["evidence"], "fired": state.fired})[:16]
    run_key = f"{TRIGGER}:{digest}"
    tags = retrain_tags(
        spec,
        trigger=TRIGGER,
        reason=document["reason"],
        evidence=document["report_uri"],
        tick_reason=reason,
        sensor=spec.feedback_sensor_name,
    )
    new_cursor["pending_runs"] = [
        *pending,
        pending_link(run_key, document["report_uri"], now),
    ][-20:]
    audit_retrain_once(
        audit,
        spec,
        run_key=run_key,
        actor=actor,
        payload={
            "trigger": TRIGGER,
            "champion": champion,
            "level": document["level"],
            "reason": document["reason"],
            "decision": decision.reason,
            "evidence": document["evidence"],
            "report": document["report_key"],
            "job": spec.train_job_name,
        },
    )
    return FeedbackTick("fire", reason, new_cursor, document, run_key, tags, links)


def _direction(spec: ModelPipeline) -> str:
    """``"higher"`` or ``"lower"``: which way the feedback metric is better for the task."""
    from lockgate.tasks.catalog import metric_direction

    assert spec.feedback is not None
    return metric_direction(spec.task, spec.feedback.metric)


def make_feedback_sensor(
    spec: ModelPipeline, *, jobs: Sequence[Any] | None = None
) -> dg.SensorDefinition:
    """``<name>_on_label_feedback``: retrains when the champion's live metric decays.

    ``jobs``: the train job and the monitoring job (``<name>_live_performance``, which holds
    ``live_performance``) when the definitions have it: the sensor then shows as the
    asset's automation in the UI. Default: the train job by name.

    Example:
        >>> # defs = dg.Definitions(sensors=[make_feedback_sensor(spec)], ...)
    """
    from lockgate.assets.feedback import live_performance_metadata

    policy = spec.feedback
    if policy is None:
        raise ValueError(
            f"pipeline {spec.name!r} has no feedback policy; add feedback=FeedbackPolicy(...) "
            "to the spec to get the label-feedback sensor"
        )

    @lockgate_sensor(
        spec.feedback_sensor_name,
        interval_seconds=policy.interval_seconds,
        description=(
            f"Joins delayed labels to {spec.name}'s prediction log; retrains when the champion's "
            f"live {policy.metric} is worse than its gold estimate by more than "
            f"{policy.max_drop} ({_direction(spec)} is better) "
            f"{policy.consecutive} windows in a row."
        ),
        **sensor_targets(spec, jobs),
    )
    def feedback_sensor(
        context: dg.SensorEvaluationContext,
        serving_stack: dg.ResourceParam[ServingStack],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        audit: AuditTrail,
        feast: dg.ResourceParam[FeastStore],
    ) -> dg.SensorResult | dg.SkipReason:
        tick = run_feedback_tick(
            spec,
            stack=serving_stack,
            artifacts=artifacts,
            audit=audit,
            data_dir=str(feast.for_pipeline(spec).data_path),
            cursor=context.cursor,
            actor=f"sensor {spec.feedback_sensor_name}",
            instance=sensor_instance(context),
        )
        context.log.info(f"{spec.name}: {tick.action}: {tick.reason}")
        if tick.document is None and not tick.links and tick.cursor is None:
            return dg.SkipReason(tick.reason)
        cursor = json.dumps(tick.cursor, sort_keys=True) if tick.cursor is not None else None
        if tick.document is None:  # a skip that linked earlier reports to their runs
            return dg.SensorResult(skip_reason=tick.reason, cursor=cursor, asset_events=tick.links)
        metadata = live_performance_metadata(tick.document)
        if tick.run_key is not None:
            metadata["retrain_run_key"] = tick.run_key
            metadata["retrain"] = (
                f"requested {spec.train_job_name} (run key {tick.run_key}); the next tick "
                "links the run"
            )
        events: list[dg.AssetMaterialization | dg.AssetObservation] = [
            *tick.links,
            dg.AssetMaterialization(
                asset_key=spec.asset_key("live_performance"),
                description=tick.document["reason"],
                metadata=metadata,
            ),
        ]
        if tick.run_key is None:
            return dg.SensorResult(skip_reason=tick.reason, cursor=cursor, asset_events=events)
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=tick.run_key, job_name=spec.train_job_name, tags=tick.tags)
            ],
            cursor=cursor,
            asset_events=events,
        )

    return feedback_sensor
