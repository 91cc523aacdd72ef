"""``[name, skew_report]``: the online vectors served vs point-in-time historical retrieval.

The report itself is computed by :func:`lockgate.monitoring.skew.compute_skew_report` (no
Dagster there); the asset shows it (level first, the per-feature table, the reason naming the
worst features) and runs the ``skew_within_policy`` check in the same step: it fails at ERROR
(blocking) from the policy's ``block_on`` level, at WARN below it, and passes at ``ok`` or when
there is nothing to judge yet.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lockgate.assets.declare import pipeline_asset
from lockgate.features.store import FeastStore
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

__all__ = ["build_skew_report", "skew_check_result", "skew_metadata"]

_HEADLINE = {
    "critical": "🔴 CRITICAL",
    "warning": "🟠 WARNING",
    "ok": "🟢 OK",
    "insufficient": "⚪ INSUFFICIENT DATA",
    "no_traffic": "⚪ NO ENTITY-KEY TRAFFIC",
}


def skew_metadata(report: Mapping[str, Any]) -> dict[str, Any]:
    """Dagster metadata of a skew report: the level first, then the per-feature table."""

    def number(value: Any) -> float | None:
        return None if value is None else round(float(value), 6)

    level = str(report["level"])
    window = report.get("window") or {}
    meta: dict[str, Any] = {
        "severity": f"{_HEADLINE.get(level, level.upper())}: {report['reason']}",
        "level": level,
        "reason": str(report["reason"]),
        "rows": dg.MetadataValue.int(int(report.get("rows", 0))),
        "feature_service": str(report.get("feature_service")),
        "window_first": str(window.get("first")),
        "window_last": str(window.get("last")),
        "versions": ", ".join(f"{k}: {v}" for k, v in (window.get("versions") or {}).items())
        or "none",
    }
    features = report.get("features") or []
    if features:
        columns = ["feature", "severity", "kind", "differ_share", "mean_abs_diff",
                   "missing_online", "missing_offline", "jsd"]  # fmt: skip
        meta["features"] = dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "feature": f["feature"],
                        "severity": f["severity"].upper() if f["severity"] != "ok" else "ok",
                        "kind": f["kind"],
                        "differ_share": number(f["differ_share"]),
                        "mean_abs_diff": number(f["mean_abs_diff"]),
                        "missing_online": int(f["missing_online"]),
                        "missing_offline": int(f["missing_offline"]),
                        "jsd": number(f["jsd"]),
                    }
                )
                for f in features
            ],
            schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]),
        )
        meta["critical_features"] = ", ".join(report["critical_features"]) or "none"
        meta["warning_features"] = ", ".join(report["warning_features"]) or "none"
    return meta


def skew_check_result(spec: ModelPipeline, report: Mapping[str, Any]) -> dg.AssetCheckResult:
    """The ``skew_within_policy`` check: ERROR from ``block_on``, WARN below it, else passed."""
    online = spec.online_features
    policy = online.skew if online is not None else None
    block_on = policy.block_on if policy is not None else "critical"
    level = str(report["level"])
    order = {"ok": 0, "warning": 1, "critical": 2}
    rank = order.get(level, 0)  # no_traffic / insufficient: nothing judged, passes
    blocked = block_on is not None and rank >= order[block_on]
    worst = (report.get("features") or [{}])[0]
    thresholds = report.get("thresholds") or {}
    return dg.AssetCheckResult(
        check_name="skew_within_policy",
        passed=rank == 0,
        severity=dg.AssetCheckSeverity.ERROR if blocked else dg.AssetCheckSeverity.WARN,
        description=f"{level}: {report['reason']}",
        metadata={
            "metric": "differ_share",
            "actual": None if not worst else round(float(worst["differ_share"]), 6),
            "threshold": f"warning >= {thresholds.get('differ_share', ['?'])[0]}, critical >= "
            f"{thresholds.get('differ_share', ['?', '?'])[-1]} (jsd {thresholds.get('jsd')}); "
            f"blocks at {block_on or 'never'}",
            "worst_feature": str(worst.get("feature", "none")),
            "level": level,
        },
    )


def build_skew_report(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The skew report asset with its ``skew_within_policy`` check (job ``<name>_skew_report``)."""
    key = spec.asset_key("skew_report")

    @pipeline_asset(
        spec,
        "skew_report",
        deps=[spec.asset_key("rollout")],
        kinds={"feast", "drift"},
        description=(
            "Training/serving skew: per feature, how the vectors the gateway served from Feast's "
            "online store differ from point-in-time historical retrieval for the same entities."
        ),
        stored=False,
        check_specs=[
            dg.AssetCheckSpec(
                "skew_within_policy",
                asset=key,
                blocking=True,
                description="training/serving skew within the pipeline's SkewPolicy",
            )
        ],
    )
    def skew_report(
        context: dg.AssetExecutionContext,
        feast: dg.ResourceParam[FeastStore],
        serving_stack: dg.ResourceParam[ServingStack],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> dg.MaterializeResult:  # unsubscripted: Dagster then accepts its check results
        from lockgate.monitoring.skew import compute_skew_report, served_schemas

        report = compute_skew_report(
            spec,
            feast=feast.for_pipeline(spec),
            log_dir=serving_stack.prediction_log_dir,
            schema_for=served_schemas(artifacts, spec.name, serving_stack.repo_dir),
        )
        context.log.info(f"{spec.name} skew: {report['level']}: {report['reason']}")
        return dg.MaterializeResult(
            metadata=skew_metadata(report), check_results=[skew_check_result(spec, report)]
        )

    return skew_report
