"""``[name, drift_report]``: the live traffic's drift from the champion's training data."""

from typing import Any

import dagster as dg

from lockgate.assets.declare import pipeline_asset
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

__all__ = ["build_drift_report"]


def build_drift_report(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The drift report asset (also materialized by the ``<name>_on_drift`` sensor's ticks)."""

    @pipeline_asset(
        spec,
        "drift_report",
        deps=[spec.asset_key("rollout")],
        kinds={"drift"},
        description=(
            "Per-feature PSI / KS / JSD / Wasserstein and prediction drift of the gateway's "
            "recent live traffic against the champion's training snapshot, with severity and "
            "overlaid histograms of the worst features."
        ),
        stored=False,
    )
    def drift_report(
        context: dg.AssetExecutionContext,
        serving_stack: dg.ResourceParam[ServingStack],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> dg.MaterializeResult[Any]:
        from lockgate.assets.drift_metadata import drift_metadata
        from lockgate.monitoring.drift_report import compute_drift_report

        report = compute_drift_report(spec, stack=serving_stack, artifacts=artifacts)
        context.log.info(f"{spec.name} drift: {report['level']}: {report['reason']}")
        return dg.MaterializeResult(metadata=drift_metadata(report, artifacts))

    return drift_report
