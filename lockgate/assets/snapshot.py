"""feature_snapshot asset and its blocking data-quality checks."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

from collections.abc import Iterator
from typing import Any

import dagster as dg

from lockgate.assets.declare import blocking_checks
from lockgate.features.store import FeastStore
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.spec import ModelPipeline

__all__ = ["build_feature_snapshot", "build_snapshot_checks"]


def build_feature_snapshot(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, feature_snapshot]`` asset: point-in-time training frame, content-addressed.

    With ``LabelSource(asset=...)`` the user's label asset is its input, so the lineage graph
    starts at the user's data.
    """
    label_key = spec.labels_asset_key
    decorate = dg.asset(
        key=spec.asset_key("feature_snapshot"),
        group_name=spec.name,
        description=(
            f"Point-in-time training frame from Feast service '{spec.feature_service}', "
            "stored once as content-addressed Parquet."
        ),
        kinds={"feast", "parquet"},
        io_manager_key="lockgate_io",
        metadata={"feature_service": spec.feature_service, "label": spec.label},
        ins={} if label_key is None else {"labels": dg.AssetIn(key=label_key)},
    )

    def snapshot(
        context: dg.AssetExecutionContext,
        feast: FeastStore,
        artifacts: ArtifactRegistry,
        labels: Any = None,
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.lineage.steps import release_memory, take_snapshot

        ref = take_snapshot(spec, feast.for_pipeline(spec), artifacts, labels=labels)
        release_memory()  # the join's and the sort's frames: later steps start without them
        return _snapshot_output(context, artifacts, ref)

    if label_key is None:

        @decorate
        def feature_snapshot(
            context: dg.AssetExecutionContext,
            feast: dg.ResourceParam[FeastStore],
            artifacts: dg.ResourceParam[ArtifactRegistry],
        ) -> dg.Output[dict[str, Any]]:
            return snapshot(context, feast, artifacts)

        return feature_snapshot

    @decorate
    def feature_snapshot_from_asset(
        context: dg.AssetExecutionContext,
        labels: Any,
        feast: dg.ResourceParam[FeastStore],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> dg.Output[dict[str, Any]]:
        return snapshot(context, feast, artifacts, labels)

    return feature_snapshot_from_asset


def _snapshot_output(
    context: dg.AssetExecutionContext,
    artifacts: ArtifactRegistry,
    ref: dict[str, Any],
) -> dg.Output[dict[str, Any]]:
    manifest = artifacts.snapshot_manifest(ref["frame_sha256"])
    dtypes: dict[str, str] = manifest["schema"]  # the stored frame's pandas dtypes
    context.log.info(
        f"snapshot {ref['frame_sha256'][:12]}: {ref['rows']} rows, "
        f"{len(ref['features'])} features ({'new' if ref['created'] else 'already stored'})"
    )
    schema = dg.TableSchema(columns=[dg.TableColumn(name=c, type=t) for c, t in dtypes.items()])
    return dg.Output(
        dict(ref),
        metadata={
            "dagster/row_count": ref["rows"],
            "dagster/column_schema": schema,
            "snapshot_sha256": ref["frame_sha256"],
            "file_sha256": ref["file_sha256"],
            "path": dg.MetadataValue.path(ref["uri"]),
            "feature_service": ref["feature_service"],
            "features": dg.MetadataValue.json(ref["features"]),
            "label_rate": manifest["label_rate"] if manifest["label_rate"] is not None else "n/a",
            "time_range": " .. ".join(manifest["time_range"]),
            "feast_registry_fingerprint": manifest["feast"]["registry"],
            "feast_fingerprints": dg.MetadataValue.json(manifest["feast"]),
            "labels_source": dg.MetadataValue.json(manifest["labels_source"]),
            "newly_written": ref["created"],
        },
        data_version=dg.DataVersion(ref["frame_sha256"][:16]),
    )


def build_snapshot_checks(spec: ModelPipeline) -> dg.AssetChecksDefinition:
    """Blocking Great Expectations checks on the snapshot, one per concern of the spec's suite."""
    from lockgate.features.validation import check_names

    key = spec.asset_key("feature_snapshot")

    @blocking_checks(
        spec,
        "feature_snapshot",
        check_names(spec.validation),
        name=f"{spec.name}_data_quality",
        param="snapshot",
        label="data quality",
        compute_kind="great_expectations",
    )
    def data_quality(
        context: dg.AssetCheckExecutionContext,
        snapshot: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> Iterator[dg.AssetCheckResult]:
        from lockgate.features.validation import run_suite_by_column
        from lockgate.lineage.steps import load_snapshot_frame, release_memory

        frame_sha = snapshot["frame_sha256"]
        stored = list(artifacts.snapshot_manifest(frame_sha).get("schema", {}))

        def read(columns: list[str]) -> Any:
            # one column at a time: the suite's memory is one column's, whatever the rows
            return load_snapshot_frame(artifacts, frame_sha, verify_content=False, columns=columns)

        outcomes = run_suite_by_column(read, stored, spec.validation, label=spec.label)
        release_memory()
        artifacts.put_validation(
            frame_sha,
            {
                "snapshot_sha256": frame_sha,
                "passed": all(o.passed for o in outcomes),
                "checks": [
                    {"name": o.name, "passed": o.passed, "failures": o.failures} for o in outcomes
                ],
            },
        )
        for outcome in outcomes:
            if not outcome.passed:
                context.log.error(f"data quality {outcome.name} failed: {outcome.failures}")
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=outcome.description,
                metadata={
                    k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
                    for k, v in outcome.metadata().items()
                },
            )

    return data_quality
