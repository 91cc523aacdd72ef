"""Asset factories: each takes a :class:`~lockgate.spec.ModelPipeline` and returns definitions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockgate.assets.evaluation import build_evaluation_report
from lockgate.assets.snapshot import build_feature_snapshot, build_snapshot_checks
from lockgate.assets.weights import build_model_weights

if TYPE_CHECKING:
    import dagster as dg

    from lockgate.spec import ModelPipeline

__all__ = [
    "build_evaluation_report",
    "build_feature_snapshot",
    "build_model_weights",
    "build_pipeline_definitions",
    "build_snapshot_checks",
]


def build_pipeline_definitions(spec: ModelPipeline) -> dg.Definitions:
    """All assets, checks and jobs of one pipeline (resources are bound by the environment)."""
    import dagster as dg

    assets = [
        build_feature_snapshot(spec),
        build_model_weights(spec),
        build_evaluation_report(spec),
    ]
    checks = [build_snapshot_checks(spec)]
    train = dg.define_asset_job(
        spec.train_job_name,
        selection=dg.AssetSelection.groups(spec.name),
        description=f"Snapshot, validate, train and evaluate {spec.name}.",
        tags={"lockgate/pipeline": spec.name},
    )
    return dg.Definitions(assets=assets, asset_checks=checks, jobs=[train])
