"""Turn pipeline specs plus an environment into one ``dg.Definitions``.

Importing this module also lends every spec its Dagster view (:class:`DagsterSpecView`, installed
with :func:`lockgate.spec.install_dagster_view`): the spec is core and never imports Dagster,
while ``spec.asset_key(...)`` and ``spec.to_definitions()`` return Dagster objects.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from lockgate.environment import Environment
from lockgate.errors import SpecError
from lockgate.spec import install_dagster_view

if TYPE_CHECKING:
    import dagster as dg

    from lockgate.spec import ModelPipeline

__all__ = ["DagsterSpecView", "build_definitions"]


def build_definitions(
    pipelines: Sequence[ModelPipeline],
    *,
    environment: Environment | None = None,
    resources: Mapping[str, Any] | None = None,
    sensors: Literal["per_pipeline", "per_kind"] = "per_pipeline",
) -> dg.Definitions:
    """Merge the definitions of ``pipelines`` and bind the environment's resources.

    ``resources`` replaces the environment's resource of the same key (for example a
    ``feast`` store of your own) and adds any other.

    ``sensors="per_pipeline"`` (the default) gives each pipeline its own sensors
    (``<name>_on_feature_change``, ...). ``sensors="per_kind"`` gives the location one sensor
    per kind (``pipelines_on_feature_change``, ...) that evaluates every pipeline's sensor
    with its own cursor, run keys and interval in one tick: the daemon then pays its per-tick
    overhead once per kind instead of once per pipeline (:mod:`lockgate.sensors.per_kind`;
    ``docs/scale.md``). Switching starts the combined sensors with fresh cursors.

    Example:
        >>> from lockgate import LabelSource, LightGBMTrainer, ModelPipeline
        >>> churn = ModelPipeline(
        ...     name="churn",
        ...     feature_service="churn_v1",
        ...     label="churned",
        ...     labels=LabelSource(entity_columns=("customer_id",)),
        ...     trainer=LightGBMTrainer(seed=7),
        ... )
        >>> defs = build_definitions([churn], environment=Environment.local("/tmp/lg"))
        >>> "churn_train" in {job.name for job in defs.resolve_all_job_defs()}
        True
    """
    import dagster as dg

    names = [p.name for p in pipelines]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"pipeline names {duplicates} are used twice; names must be unique")
    if sensors not in ("per_pipeline", "per_kind"):
        raise SpecError(
            f"sensors={sensors!r} is not a sensor layout; rule: one of 'per_pipeline' (a "
            "sensor per pipeline and kind) or 'per_kind' (one sensor per kind for all "
            "pipelines); fix: pass one of those"
        )
    env = environment or Environment.from_env()
    from lockgate.assets import build_pipeline_definitions
    from lockgate.discover import pipeline_metadata

    # one process per run locally: the multiprocess default starts a Python per step, which
    # costs ~6 s of imports each (a train run took 2.5 min instead of 1); production keeps
    # Dagster's default or the executor its deployment configures (k8s_job_executor)
    executor = dg.in_process_executor if env.kind == "local" else None
    defs = dg.Definitions.merge(
        *(_tag_training_runs(build_pipeline_definitions(p), p) for p in pipelines),
        dg.Definitions(
            resources={**env.resources(), **(resources or {})},
            executor=executor,
            # the specs, so `lockgate` commands find the pipelines as dagster finds the code
            metadata=pipeline_metadata(list(pipelines)),
        ),
    )
    if sensors == "per_kind":
        from lockgate.sensors.per_kind import sensors_per_kind

        return sensors_per_kind(defs, pipelines)
    return defs


def _tag_training_runs(defs: dg.Definitions, spec: ModelPipeline) -> dg.Definitions:
    """``defs`` with the train job's runs tagged with the accelerator they train on
    (:func:`lockgate.assets.weights.training_run_tags`: ``lockgate/resource: gpu | cpu``), the
    tag the production instance's queued run coordinator limits.

    The sensors that request training runs hold the train job itself: they get the tagged one
    (``with_updated_jobs``), so their runs carry the tag and the definitions name one job.
    """
    import dagster as dg
    from dagster_shared.record import copy  # a record's constructor with some values replaced

    from lockgate.assets.weights import training_run_tags

    tags = training_run_tags(spec)
    jobs = list(defs.jobs or [])
    train = next((j for j in jobs if j.name == spec.train_job_name), None)
    if train is None:
        return defs
    tagged = copy(
        train, tags={**(train.tags or {}), **tags}, run_tags={**(train.run_tags or {}), **tags}
    )
    with warnings.catch_warnings():  # the copy passes `owners=None` on, which Dagster flags
        warnings.simplefilter("ignore", dg.BetaWarning)
        sensors = [
            sensor.with_updated_jobs([tagged if j is train else j for j in sensor.jobs])
            if isinstance(sensor, dg.SensorDefinition)
            and sensor.has_jobs
            and any(j is train for j in sensor.jobs)
            else sensor
            for sensor in defs.sensors or []
        ]
    return copy(defs, jobs=[tagged if j is train else j for j in jobs], sensors=sensors)


class DagsterSpecView:
    """A spec's Dagster objects: ``dg.AssetKey`` for its assets, ``dg.Definitions`` for it."""

    def asset_key(self, path: Sequence[str]) -> dg.AssetKey:
        """``dg.AssetKey(path)``."""
        import dagster as dg

        return dg.AssetKey(list(path))

    def asset_key_from_string(self, value: str) -> dg.AssetKey:
        """``dg.AssetKey.from_user_string(value)``."""
        import dagster as dg

        return dg.AssetKey.from_user_string(value)

    def definitions(
        self,
        spec: ModelPipeline,
        *,
        environment: Environment | None,
        resources: Mapping[str, Any] | None,
    ) -> dg.Definitions:
        """:func:`build_definitions` of this one pipeline."""
        return build_definitions([spec], environment=environment, resources=resources)


install_dagster_view(DagsterSpecView())
