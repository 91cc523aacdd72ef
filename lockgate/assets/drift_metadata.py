"""Dagster metadata of a drift report: what the ``drift_report`` asset and the drift sensor show.

The report itself is computed by :func:`lockgate.monitoring.drift_report.compute_drift_report`
(no Dagster there); this module turns it into asset metadata: the level first, the feature table,
small inline histograms of the worst features and links to the stored report and PNGs.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lockgate.lineage.registry import ArtifactRegistry
from lockgate.monitoring.drift_report import level_headline

__all__ = ["drift_metadata"]


def drift_metadata(report: Mapping[str, Any], artifacts: ArtifactRegistry) -> dict[str, Any]:
    """Dagster metadata for a drift report: the level first, the feature table, small inline
    histograms of the worst features and links to the stored report and PNGs.

    Everything renders on the asset page without a modal (a table, markdown under Dagster's
    1,000-character inline limit); no image bytes go into the event log.
    """
    from lockgate.evaluation import plots

    meta: dict[str, Any] = {
        "severity": level_headline(report),
        "level": report["level"],
        "reason": report["reason"],
        "analysed_at": str(report.get("generated_at")),
        "champion": str(report.get("champion")),
    }
    window = report.get("window") or {}
    meta["window_rows"] = int(window.get("rows", 0))
    if report.get("uri"):
        meta["report"] = dg.MetadataValue.path(str(report["uri"]))
    if report.get("reference"):
        meta["reference_snapshot"] = str(report["reference"]["snapshot_sha256"])
    features = report.get("features") or []
    if features:

        def number(value: Any) -> float | None:
            return None if value is None else round(float(value), 4)

        columns = ["feature", "severity", "kind", "psi", "ks", "jsd", "wasserstein",
                   "missing_ref", "missing_cur"]  # fmt: skip
        order = {"critical": 0, "warn": 1, "ok": 2}
        rows = sorted(features, key=lambda f: order.get(f["severity"], 3))
        meta["features"] = dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "feature": f["feature"],
                        "severity": str(f["severity"]).upper() if f["severity"] != "ok" else "ok",
                        "kind": f["kind"],
                        **{c: number(f.get(c)) for c in columns[3:]},
                    }
                )
                for f in rows
            ],
            schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]),
        )
        meta["critical_features"] = ", ".join(report["critical_features"]) or "none"
        meta["features_critical"] = len(report["critical_features"])
        meta["features_warn"] = len(report.get("warn_features") or [])
    prediction = report.get("prediction") or {}
    if "psi" in prediction:
        meta["prediction_psi"] = float(prediction["psi"])
        if "mean_reference" in prediction:
            meta["prediction_mean_reference"] = float(prediction["mean_reference"])
            meta["prediction_mean_current"] = float(prediction["mean_current"])
        if "class_share_current" in prediction:
            meta["predicted_class_share"] = ", ".join(
                f"{c}: {prediction['class_share_reference'].get(c, 0.0):.3f} -> {share:.3f}"
                for c, share in prediction["class_share_current"].items()
            )
    severity = {f["feature"]: f["severity"] for f in features}
    for feature, hist in (report.get("histograms") or {}).items():
        n = len(hist["reference"])
        if n < 2:
            continue
        top = max([*hist["reference"], *hist["current"], 1e-9])
        meta[f"plot_{feature}"] = dg.MetadataValue.md(
            plots.inline_chart(
                {
                    "training": [(i / (n - 1), v) for i, v in enumerate(hist["reference"])],
                    f"live ({severity.get(feature, '?')})": [
                        (i / (n - 1), v) for i, v in enumerate(hist["current"])
                    ],
                },
                title=f"{feature}: share per bin",
                y_max=top,
            )
        )
    if report.get("report_id"):
        prefix = f"drift/{report['pipeline']}/{report['report_id']}"
        for name in report.get("images", []):
            meta[f"png_{name.removesuffix('.png')}"] = dg.MetadataValue.path(
                artifacts.uri(f"{prefix}/{name}")
            )
    return meta
