"""Retrain on feature-store mutations: ``<name>_on_feature_change``.

Each tick takes the cheap fingerprint of the pipeline's feature service
(:func:`lockgate.monitoring.mutations.pipeline_fingerprint`: registry specs, source files, label folder,
materializations; no data is read) and compares it with the one in the cursor:

* no cursor: the fingerprint becomes the baseline; nothing runs;
* a mutation the :class:`~lockgate.monitoring.triggers.FeatureChangePolicy` watches: one run of the train
  job with a deterministic run key, one ``retrain_requested`` audit entry, the new cursor;
* nothing changed: a skip reason saying what was checked.

Exactly one run per mutation, also across daemon crashes: the run key is derived from the
cursor's mutation count and the new fingerprint, so a tick retried after a crash (the cursor is
only written at the end of a successful tick) asks for the same key and the daemon drops the
duplicate; the audit log is checked for the key before an entry is written. Run-key dedupe is
scoped to the code location name: keep it pinned.

The cursor is the fingerprint as JSON: about 3.7 KB for a service of 4 views over 10 days of files,
about 150 KB for 1,000 views over 100,000 files (``benchmarks/results/sensor_tick.json``).
Dagster copies the cursor into every tick it keeps (skipped ticks for 7 days by default); for
very large services shorten that with ``retention: sensor: purge_after_days: skipped: 1`` in
``dagster.yaml``. Ticks do not import feast (see :func:`lockgate.monitoring.mutations.registry_message_class`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lockgate.errors import SpecError
from lockgate.features.store import FeastStore
from lockgate.resources.audit import AuditTrail
from lockgate.sensors._retrain import audit_retrain_once, lockgate_sensor, retrain_tags
from lockgate.spec import ModelPipeline

__all__ = ["FeatureChangeTick", "make_feature_change_sensor", "run_feature_change_tick"]

TRIGGER = "feature_change"
"""Value of the ``lockgate/trigger`` tag and of the audit payload's ``trigger``."""

_TAG_CHARS = 240  # mutations text in the run tag; the audit entry has the full list


@dataclass(frozen=True)
class FeatureChangeTick:
    """What one tick decided.

    Attributes:
        reason: the skip reason, or the mutations in one line.
        cursor: the cursor to store; None keeps the current one.
        run_key: the run key of the retrain to request; None: no run.
        mutations: the mutations found (empty without a run).
        audited: whether this tick wrote the audit entry (False when a retried tick found it).
    """

    reason: str
    cursor: str | None = None
    run_key: str | None = None
    mutations: list[str] = field(default_factory=list)
    audited: bool = False


def run_feature_change_tick(
    spec: ModelPipeline,
    *,
    feast: FeastStore,
    audit: AuditTrail,
    cursor: str | None,
    actor: str | None = None,
) -> FeatureChangeTick:
    """One evaluation of ``spec``'s feature-change sensor (what the sensor runs every tick).

    Args:
        spec: The pipeline; its ``feature_changes`` policy must be set.
        feast: Its Feast store.
        audit: The audit trail for ``retrain_requested`` entries.
        cursor: The sensor's cursor (JSON ``{"seq": n, "fingerprint": {...}}``), or None.
        actor: Audit actor; default ``"sensor <sensor name>"``.

    Returns:
        The :class:`FeatureChangeTick`.

    Raises:
        SpecError: ``spec.feature_changes`` is None.
        FeatureStoreError: The registry is unusable, the service or a view is missing, or a
            source cannot be listed (the tick fails; the cursor stays).
    """
    from lockgate.monitoring.mutations import describe, diff, digest, pipeline_fingerprint

    policy = _policy(spec)
    feast = feast.for_pipeline(spec)
    try:
        new = pipeline_fingerprint(spec, feast)
    except FileNotFoundError:
        return FeatureChangeTick(
            f"Feast registry {feast.registry_location} does not exist yet: nothing to compare. "
            f"Fix: apply the feature definitions (`feast apply` in the repository, or "
            f"FeastStore.apply() for definitions in code); the "
            f"cursor is kept"
        )
    checked = describe(new, policy)
    previous, why_not = _parse_cursor(cursor)
    if previous is None:
        return FeatureChangeTick(
            f"{why_not}: recorded the baseline ({checked})",
            cursor=_cursor(0, new),
        )
    seq, old = previous
    if digest(old, policy) == digest(new, policy):
        keep = old == new
        return FeatureChangeTick(
            f"{checked}; nothing changed" + ("" if keep else " that the policy watches"),
            cursor=None if keep else _cursor(seq, new),
        )
    mutations = diff(old, new, policy) or ["fingerprint changed"]
    seq += 1
    run_key = f"{spec.name}:{TRIGGER}:{seq}:{digest(new, policy)[:16]}"
    audited = audit_retrain_once(
        audit,
        spec,
        run_key=run_key,
        actor=actor or f"sensor {spec.feature_change_sensor_name}",
        payload={"trigger": TRIGGER, "mutations": mutations, "fingerprint": digest(new, policy)},
    )
    return FeatureChangeTick(
        "; ".join(mutations),
        cursor=_cursor(seq, new),
        run_key=run_key,
        mutations=mutations,
        audited=audited,
    )


def make_feature_change_sensor(spec: ModelPipeline) -> dg.SensorDefinition:
    """``<name>_on_feature_change``: requests ``<name>_train`` when the feature service mutates.

    Needs the resources ``feast`` (:class:`FeastStore`) and ``audit`` (:class:`AuditTrail`),
    and a job named ``spec.train_job_name`` in the same definitions.

    Example:
        >>> from lockgate import LabelSource, LightGBMTrainer, ModelPipeline
        >>> churn = ModelPipeline(
        ...     name="churn",
        ...     feature_service="churn_v1",
        ...     label="churned",
        ...     labels=LabelSource(entity_columns=("customer_id",)),
        ...     trainer=LightGBMTrainer(seed=7),
        ... )
        >>> make_feature_change_sensor(churn).name
        'churn_on_feature_change'

    Raises:
        SpecError: ``spec.feature_changes`` is None (the pipeline has no such sensor).
    """
    policy = _policy(spec)

    @lockgate_sensor(
        spec.feature_change_sensor_name,
        job_name=spec.train_job_name,
        interval_seconds=policy.interval_seconds,
        description=(
            f"Retrains {spec.name} when feature service {spec.feature_service}, its sources "
            f"or its labels change in Feast."
        ),
    )
    def feature_change_sensor(
        context: dg.SensorEvaluationContext, feast: dg.ResourceParam[FeastStore], audit: AuditTrail
    ) -> dg.SensorResult:
        tick = run_feature_change_tick(spec, feast=feast, audit=audit, cursor=context.cursor)
        context.log.info(f"{spec.name}: {tick.reason}")
        if tick.run_key is None:
            return dg.SensorResult(skip_reason=dg.SkipReason(tick.reason), cursor=tick.cursor)
        text = tick.reason
        if len(text) > _TAG_CHARS:
            text = f"{text[: _TAG_CHARS - 20].rstrip()} ... ({len(tick.mutations)} mutations)"
        request = dg.RunRequest(
            run_key=tick.run_key,
            tags=retrain_tags(
                spec,
                trigger=TRIGGER,
                reason=text,
                # the full mutation list and fingerprint are in this audit entry
                evidence=f"{audit.path} (retrain_requested, run_key {tick.run_key})",
                tick_reason=f"{len(tick.mutations)} mutation(s) of {spec.feature_service}",
                sensor=spec.feature_change_sensor_name,
                extra={"lockgate/mutations": text},
            ),
        )
        return dg.SensorResult(run_requests=[request], cursor=tick.cursor)

    return feature_change_sensor


def _policy(spec: ModelPipeline) -> Any:
    if spec.feature_changes is None:
        raise SpecError(
            f"pipeline {spec.name!r} has feature_changes=None: it has no feature-change sensor. "
            f"Fix: set feature_changes=FeatureChangePolicy(...) or do not build the sensor."
        )
    return spec.feature_changes


def _cursor(seq: int, fingerprint: dict[str, Any]) -> str:
    return json.dumps(
        {"seq": seq, "fingerprint": fingerprint}, sort_keys=True, separators=(",", ":")
    )


def _parse_cursor(cursor: str | None) -> tuple[tuple[int, dict[str, Any]] | None, str]:
    if not cursor:
        return None, "no cursor yet"
    try:
        data = json.loads(cursor)
        seq, fingerprint = data["seq"], data["fingerprint"]
        if not isinstance(seq, int) or not isinstance(fingerprint, dict):
            raise TypeError("seq must be an int and fingerprint an object")
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"cursor is not a feature-change cursor ({type(exc).__name__}: {exc})"
    return (seq, fingerprint), ""
