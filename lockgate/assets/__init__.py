"""Asset factories: each takes a :class:`~lockgate.spec.ModelPipeline` and returns definitions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockgate.assets.drift import build_drift_report
from lockgate.assets.evaluation import build_evaluation_report
from lockgate.assets.feedback import build_live_performance
from lockgate.assets.gate import (
    build_champion,
    build_gate_checks,
    build_gated_evaluation,
    build_gold_set,
)
from lockgate.assets.online_store import build_online_features
from lockgate.assets.serving import build_rollout, build_serving, build_serving_checks
from lockgate.assets.skew import build_skew_report
from lockgate.assets.snapshot import build_feature_snapshot, build_snapshot_checks
from lockgate.assets.weights import build_model_registry, build_model_weights

if TYPE_CHECKING:
    import dagster as dg

    from lockgate.spec import ModelPipeline

__all__ = [
    "MONITORING_ASSETS",
    "OWN_JOB_ASSETS",
    "build_champion",
    "build_drift_report",
    "build_evaluation_report",
    "build_feature_snapshot",
    "build_gate_checks",
    "build_gated_evaluation",
    "build_gold_set",
    "build_live_performance",
    "build_model_registry",
    "build_model_weights",
    "build_online_features",
    "build_pipeline_definitions",
    "build_rollout",
    "build_serving",
    "build_serving_checks",
    "build_skew_report",
    "build_snapshot_checks",
    "monitor_job_name",
]


MONITORING_ASSETS = ("drift_report", "live_performance", "skew_report")
"""Assets that watch live traffic: sensors and users materialize them, never the train job."""

OWN_JOB_ASSETS = (*MONITORING_ASSETS, "online_features")
"""Assets outside the train job, each with a job of its own (:func:`monitor_job_name`)."""


def build_pipeline_definitions(spec: ModelPipeline) -> dg.Definitions:
    """All assets, checks and jobs of one pipeline (resources are bound by the environment)."""
    import dagster as dg

    assets = [build_feature_snapshot(spec), build_model_weights(spec)]
    checks = [build_snapshot_checks(spec)]
    if spec.gate is None:
        assets.append(build_evaluation_report(spec))
    else:
        assets += [build_gold_set(spec), build_gated_evaluation(spec)]
        checks.append(build_gate_checks(spec))
    sensors = []
    if spec.gate is not None and spec.serving is None:
        assets.append(build_champion(spec))
    elif spec.serving is not None:
        from lockgate.sensors.canary import make_canary_sensor

        assets += [build_serving(spec), build_rollout(spec)]
        checks.append(build_serving_checks(spec))
        sensors.append(make_canary_sensor(spec))
    assets.append(build_model_registry(spec))
    monitoring = [spec.asset_key(a) for a in OWN_JOB_ASSETS if _has(spec, a)]
    selection: dg.AssetSelection = dg.AssetSelection.groups(spec.name)
    if spec.labels_asset_key is not None:  # the user's label asset is the first step
        selection = selection | dg.AssetSelection.assets(spec.labels_asset_key)
    train = dg.define_asset_job(
        spec.train_job_name,
        selection=selection - dg.AssetSelection.assets(*monitoring),
        description=f"Snapshot, validate, train, evaluate and (behind the gate) promote {spec.name}.",
        tags={"lockgate/pipeline": spec.name},
    )
    # each monitoring asset a sensor records on its ticks, as a job of its own: the sensor
    # names it as a target, so the UI lists the sensor as that asset's automation, and a user
    # can recompute the report on demand (the online store's materialization and the skew
    # report too: a schedule or a user runs them)
    monitors = {
        asset: dg.define_asset_job(
            monitor_job_name(spec, asset),
            selection=dg.AssetSelection.assets(spec.asset_key(asset)),
            description=_JOB_TEXT.get(
                asset,
                f"Recompute {spec.name}'s {asset} now (its sensor records one on every tick).",
            ).format(name=spec.name, service=spec.feature_service),
            tags={"lockgate/pipeline": spec.name},
        )
        for asset in OWN_JOB_ASSETS
        if _has(spec, asset)
    }
    if spec.drift is not None:
        from lockgate.sensors.drift import make_drift_sensor

        assets.append(build_drift_report(spec))
        sensors.append(make_drift_sensor(spec, jobs=[train, monitors["drift_report"]]))
    if spec.feedback is not None:
        from lockgate.sensors.feedback import make_feedback_sensor

        assets.append(build_live_performance(spec))
        sensors.append(make_feedback_sensor(spec, jobs=[train, monitors["live_performance"]]))
    if spec.has_online_asset("materialize"):
        assets.append(build_online_features(spec))
    if spec.has_online_asset("skew"):
        assets.append(build_skew_report(spec))
    if spec.feature_changes is not None:
        from lockgate.sensors.feature_store import make_feature_change_sensor

        sensors.append(make_feature_change_sensor(spec))
    jobs = [train, *monitors.values()]
    schedules = []
    online = spec.online_features
    if online is not None and online.schedule is not None:
        schedules.append(
            dg.ScheduleDefinition(
                name=f"{spec.name}_online_features_schedule",
                job=monitors["online_features"],
                cron_schedule=online.schedule,
                execution_timezone="UTC",
                default_status=dg.DefaultScheduleStatus.RUNNING,
                description=f"Load {spec.feature_service}'s new feature rows into Feast's "
                "online store.",
            )
        )
    return dg.Definitions(
        assets=assets, asset_checks=checks, jobs=jobs, sensors=sensors, schedules=schedules
    )


def monitor_job_name(spec: ModelPipeline, asset: str) -> str:
    """``<name>_<asset>``: the job that recomputes one asset of :data:`OWN_JOB_ASSETS`
    (``drift_report``, ``live_performance``, ``skew_report``, ``online_features``)."""
    return f"{spec.name}_{asset}"


_JOB_TEXT = {
    "online_features": "Materialize {service}'s feature views into Feast's online store up to now.",
    "skew_report": "Compare the online vectors {name} served with point-in-time historical "
    "retrieval now.",
}


def _has(spec: ModelPipeline, asset: str) -> bool:
    if asset == "online_features":
        return spec.has_online_asset("materialize")
    if asset == "skew_report":
        return spec.has_online_asset("skew")
    return (asset == "drift_report" and spec.drift is not None) or (
        asset == "live_performance" and spec.feedback is not None
    )
