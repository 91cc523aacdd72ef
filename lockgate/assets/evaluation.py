"""evaluation_report asset: the model version scored on the held-out part of its snapshot."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

from typing import Any

import dagster as dg

from lockgate.assets.declare import pipeline_asset
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.spec import ModelPipeline

__all__ = ["build_evaluation_report"]


def build_evaluation_report(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, evaluation_report]`` asset: held-out metrics of the latest model version."""

    @pipeline_asset(
        spec,
        "evaluation_report",
        description="Held-out ROC AUC, PR AUC, log loss and Brier score of the model version.",
        kinds={"json"},
        ins={"weights": "model_weights", "snapshot": "feature_snapshot"},
    )
    def evaluation_report(
        context: dg.AssetExecutionContext,
        weights: dict[str, Any],
        snapshot: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.lineage.hashing import canonical_json
        from lockgate.lineage.snapshot_rows import load_holdout_frame
        from lockgate.lineage.steps import evaluate_version, load_snapshot_frame, release_memory

        version = weights["version"]
        sha = weights["snapshot_sha256"]
        record = artifacts.lock_record(spec.name, version)
        # the model's features, its label and the split's time: not the other snapshot columns
        wanted = dict.fromkeys(
            [*record["features"], record["label"], record["split"]["timestamp_column"]]
        )
        stored = artifacts.snapshot_manifest(sha).get("schema", {})
        subset = [c for c in stored if c in wanted]
        selected = False
        if len(subset) == len(wanted):  # the held-out rows of those columns only
            frame, selected = load_holdout_frame(
                artifacts,
                sha,
                columns=subset,
                timestamp_column=record["split"]["timestamp_column"],
                holdout_fraction=record["split"]["holdout_fraction"],
            )
        else:  # a column is missing: every column, and evaluate_version's error names it
            frame = load_snapshot_frame(artifacts, sha, verify_content=False)
        report = evaluate_version(artifacts, spec.name, version, frame, rows_selected=selected)
        del frame
        release_memory()
        artifacts.put_report(spec.name, version, {"evaluation.json": canonical_json(report)})
        metrics = report["metrics"]
        context.log.info(
            f"version {version}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        )
        return dg.Output(
            {"pipeline": spec.name, "version": version, "metrics": metrics},
            metadata={
                "version": version,
                "holdout_rows": report["rows"],
                "holdout_time_range": " .. ".join(report["time_range"]),
                **{k: float(v) for k, v in metrics.items()},
                "report": dg.MetadataValue.path(
                    artifacts.uri(f"reports/{spec.name}/{version}/evaluation.json")
                ),
            },
        )

    return evaluation_report
