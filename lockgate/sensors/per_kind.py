"""One sensor per kind for all pipelines of a code location: ``sensors="per_kind"``.

``build_definitions(pipelines, sensors="per_kind")`` replaces each pipeline's sensors
(``<name>_on_feature_change``, ``<name>_on_canary_tick``, ``<name>_on_drift``,
``<name>_on_label_feedback``) with one sensor per kind, ``pipelines_on_<kind>``, whose tick
evaluates every pipeline's own sensor in turn. The Dagster daemon's cost is per tick (the gRPC
call to the code server, the tick and cursor writes: about 0.6 CPU-s of the daemon and 0.45 of
PostgreSQL where the sensor's own work is 2 ms, ``docs/scale.md``), so 100 pipelines cost 4
ticks per interval instead of 400.

What stays per pipeline, exactly as with its own sensor:

* the decision: each pipeline's sensor function runs as before, with its own cursor;
* the run requests, with the same run keys and tags (Dagster's ``dagster/sensor_name`` names
  the combined sensor; ``lockgate/sensor`` still names the pipeline's). Dagster dedupes run
  keys per sensor, so in one combined sensor they must differ between pipelines: every
  lockgate key does (``<name>:feature_change:...``; ``drift:<report id>`` and
  ``label_feedback:<digest>`` hash the pipeline's name with the evidence);
* the cursor: the combined cursor is ``{"cursors": {pipeline: its cursor}, "evaluated":
  {pipeline: unix time}}``;
* the interval: a pipeline is evaluated when its own sensor's interval has passed since its
  last evaluation (the combined sensor ticks at the shortest one);
* audit entries and skip reasons: the skip reason lists ``<pipeline>: <its reason>`` per line.

A pipeline whose evaluation raises keeps its cursor and is retried on the next tick; the
others go on. Its error is logged on the tick and leads the skip reason; a tick in which every
evaluated pipeline failed fails (so the UI shows it red).

Switching an existing deployment to ``per_kind`` starts the combined sensors with empty
cursors (each pipeline's first evaluation records its baseline again) and a fresh run-key
history: a run key the old sensor requested is not known to the new one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from lockgate.errors import LockgateError, SpecError
from lockgate.sensors._retrain import sensor_instance
from lockgate.spec import ModelPipeline

__all__ = ["SENSOR_KINDS", "kind_sensor_name", "make_per_kind_sensor", "sensors_per_kind"]

SENSOR_KINDS = ("feature_change", "canary_tick", "drift", "label_feedback")
"""The kinds of lockgate sensors, as the suffixes of their names (``<name>_on_<kind>``)."""


def kind_sensor_name(kind: str) -> str:
    """``pipelines_on_<kind>``: the name of the combined sensor of ``kind``."""
    return f"pipelines_on_{kind}"


def _kind_of(spec: ModelPipeline) -> dict[str, str]:
    return {
        spec.feature_change_sensor_name: "feature_change",
        spec.canary_sensor_name: "canary_tick",
        spec.drift_sensor_name: "drift",
        spec.feedback_sensor_name: "label_feedback",
    }


class _PipelineContext(dg.SensorEvaluationContext):
    """The context one pipeline's sensor sees inside a combined tick: its own cursor and
    name; the combined tick's instance, resources (built once per tick) and log."""

    def __init__(
        self,
        parent: dg.SensorEvaluationContext,
        *,
        sensor_name: str,
        cursor: str | None,
        instance: dg.DagsterInstance | None,
    ) -> None:
        super().__init__(
            instance_ref=parent.instance_ref,
            instance=instance,
            cursor=cursor,
            sensor_name=sensor_name,
            repository_def=parent.repository_def,
        )
        self._parent = parent

    @property
    def resources(self) -> Any:
        return self._parent.resources

    @property
    def log(self) -> Any:
        return self._parent.log


def _read_cursor(raw: str | None, name: str) -> tuple[dict[str, str], dict[str, float]]:
    if not raw:
        return {}, {}
    try:
        data = json.loads(raw)
        cursors, evaluated = data["cursors"], data["evaluated"]
        if not isinstance(cursors, dict) or not isinstance(evaluated, dict):
            raise TypeError("cursors and evaluated must be objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise LockgateError(
            f"the cursor of sensor {name} is not a per-kind cursor ({type(exc).__name__}: "
            f"{exc}): {raw[:80]!r}; rule: it is {{'cursors': {{pipeline: cursor}}, "
            f"'evaluated': {{pipeline: unix time}}}}; fix: reset the cursor in the Dagster UI"
        ) from exc
    return dict(cursors), {k: float(v) for k, v in evaluated.items()}


def make_per_kind_sensor(
    kind: str,
    members: Sequence[tuple[str, dg.SensorDefinition]],
    *,
    jobs: Sequence[Any],
    clock: Callable[[], float] = time.time,
) -> dg.SensorDefinition:
    """``pipelines_on_<kind>``: one tick evaluates each ``(pipeline, sensor)`` of ``members``
    that is due (see the module docstring).

    Args:
        kind: one of :data:`SENSOR_KINDS`.
        members: each pipeline's name and its own sensor of that kind.
        jobs: the job definitions the members target (run requests name theirs).
        clock: the time, for the per-pipeline intervals.
    """
    if not members:
        raise SpecError(f"no pipeline has a {kind} sensor: nothing to combine")
    intervals = {p: s.minimum_interval_seconds or 30 for p, s in members}
    interval = min(intervals.values())
    name = kind_sensor_name(kind)
    keys: set[str] = set().union(*(s.required_resource_keys for _, s in members))

    def evaluate(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        cursors, evaluated = _read_cursor(context.cursor, name)
        instance = sensor_instance(context)
        now = clock()
        runs: list[dg.RunRequest] = []
        events: list[Any] = []
        skips: list[str] = []
        errors: list[str] = []
        due = 0
        for pipeline, sensor in members:
            last = evaluated.get(pipeline)
            # half the combined interval of slack: the daemon's ticks are not exactly on time
            if last is not None and now - last < intervals[pipeline] - interval / 2:
                continue
            due += 1
            sub = _PipelineContext(
                context, sensor_name=sensor.name, cursor=cursors.get(pipeline), instance=instance
            )
            try:
                data = sensor.evaluate_tick(sub)
            except Exception as exc:  # reported below; the other pipelines go on
                context.log.exception(f"{sensor.name} failed; its cursor is kept: {exc}")
                errors.append(f"{pipeline}: FAILED ({type(exc).__name__}: {exc})")
                continue
            evaluated[pipeline] = now
            if data.cursor is not None:
                cursors[pipeline] = data.cursor
            for request in data.run_requests or []:
                if request.job_name is None:  # the member's one target
                    request = request.with_replaced_attrs(job_name=sensor.job_name)
                runs.append(request)
            events.extend(data.asset_events or [])
            if data.skip_message and not data.run_requests:
                skips.append(f"{pipeline}: {data.skip_message}")
        if errors and len(errors) == due:
            raise LockgateError(
                f"every pipeline evaluated by {name} failed ({len(errors)}): "
                + "; ".join(errors)
                + "; fix: see each pipeline's error in this tick's log"
            )
        kept = {p for p, _ in members}
        cursor = json.dumps(
            {
                "cursors": {p: c for p, c in cursors.items() if p in kept},
                "evaluated": {p: t for p, t in evaluated.items() if p in kept},
            },
            sort_keys=True,
        )
        for line in errors:
            context.log.error(line)
        if runs:
            return dg.SensorResult(run_requests=runs, asset_events=events, cursor=cursor)
        waiting = len(members) - due
        head = f"{due} of {len(members)} pipelines evaluated ({waiting} not due yet)"
        text = "\n".join([head, *errors, *skips])
        return dg.SensorResult(skip_reason=dg.SkipReason(text), asset_events=events, cursor=cursor)

    return dg.SensorDefinition(
        name=name,
        evaluation_fn=evaluate,
        minimum_interval_seconds=interval,
        description=(
            f"The {kind} sensor of {len(members)} pipelines, each evaluated with its own cursor "
            f"when its interval has passed: {', '.join(p for p, _ in members)}."
        )[:1000],
        jobs=list(jobs),
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys=keys,
    )


def sensors_per_kind(defs: dg.Definitions, pipelines: Sequence[ModelPipeline]) -> dg.Definitions:
    """``defs`` with the lockgate sensors of ``pipelines`` replaced by one sensor per kind
    (:func:`make_per_kind_sensor`); other sensors stay as they are."""
    from dagster_shared.record import copy  # a record's constructor with some values replaced

    owner: dict[str, tuple[str, str]] = {}
    for spec in pipelines:
        for sensor_name, kind in _kind_of(spec).items():
            owner[sensor_name] = (spec.name, kind)
    # the jobs a sensor holds itself (the canary's rollout job), then the definitions' ones
    by_job: dict[str, Any] = {
        j.name: j
        for s in defs.sensors or []
        if isinstance(s, dg.SensorDefinition) and s.has_jobs
        for j in s.jobs
    }
    by_job.update({j.name: j for j in defs.jobs or []})
    members: dict[str, list[tuple[str, dg.SensorDefinition]]] = {k: [] for k in SENSOR_KINDS}
    others: list[Any] = []
    for sensor in defs.sensors or []:
        if isinstance(sensor, dg.SensorDefinition) and sensor.name in owner:
            pipeline, kind = owner[sensor.name]
            members[kind].append((pipeline, sensor))
        else:
            others.append(sensor)
    combined = []
    for kind, group in members.items():
        if not group:
            continue
        names = dict.fromkeys(t.job_name for _, s in group for t in s.targets)
        missing = [n for n in names if n not in by_job]
        if missing:
            raise SpecError(
                f"the {kind} sensors target jobs {missing} that the definitions do not list; "
                "rule: a per-kind sensor targets job definitions; fix: add the jobs"
            )
        combined.append(make_per_kind_sensor(kind, group, jobs=[by_job[n] for n in names]))
    return copy(defs, sensors=[*others, *combined])
