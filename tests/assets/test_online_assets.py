"""The online-features spec option: which assets, jobs and checks it declares, and the skew
report's metadata and check in the words the UI shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pydantic import ValidationError

from lockgate import Environment, build_definitions
from lockgate.assets.skew import skew_check_result, skew_metadata
from lockgate.errors import SpecError
from lockgate.monitoring.skew import SkewPolicy
from lockgate.spec import ModelPipeline, OnlineFeatures
from tests.integration.specs import served_spec


def spec(**over: Any) -> ModelPipeline:
    return served_spec("fraud", **over)


def test_online_features_declare_both_assets_with_jobs_of_their_own(tmp_path: Path) -> None:
    pipeline = spec(online_features=OnlineFeatures())
    defs = build_definitions([pipeline], environment=Environment.local(tmp_path / "home"))
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"fraud/online_features", "fraud/skew_report"} <= keys
    train = defs.resolve_job_def(pipeline.train_job_name)
    in_train = {k.to_user_string() for k in train.asset_layer.selected_asset_keys}
    assert "fraud/online_features" not in in_train  # a schedule or a user runs it, not training
    assert "fraud/skew_report" not in in_train
    assert "fraud/model_weights" in in_train
    for asset in ("online_features", "skew_report"):
        job = defs.resolve_job_def(f"fraud_{asset}")
        assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {
            f"fraud/{asset}"
        }
    checks = defs.resolve_asset_graph().asset_check_keys
    check = dg.AssetCheckKey(pipeline.asset_key("skew_report"), "skew_within_policy")
    assert check in checks
    assert pipeline.asset_key("online_features").path == ["fraud", "online_features"]


def test_the_default_spec_declares_neither(tmp_path: Path) -> None:
    pipeline = spec()
    assert pipeline.online_features is None
    defs = build_definitions([pipeline], environment=Environment.local(tmp_path / "home"))
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert not {"fraud/online_features", "fraud/skew_report"} & keys
    with pytest.raises(SpecError, match="online_features and skew_report only with"):
        pipeline.asset_key("skew_report")


def test_materialization_alone_needs_no_serving_but_the_skew_report_does() -> None:
    plain = spec(gate=None, serving=None, online_features=OnlineFeatures(skew=None))
    assert plain.has_online_asset("materialize")
    assert not plain.has_online_asset("skew")
    with pytest.raises(ValidationError, match=r"online_features.skew need serving.*skew=None"):
        spec(gate=None, serving=None, online_features=OnlineFeatures())


REPORT: dict[str, Any] = {
    "level": "critical",
    "reason": "critical skew on age (10.0% of rows differ, mean |diff| 1)",
    "rows": 200,
    "feature_service": "fraud_v1",
    "window": {"first": "a", "last": "b", "versions": {"v1": 200}},
    "thresholds": {"differ_share": [0.01, 0.05], "jsd": [0.1, 0.2]},
    "features": [
        {
            "feature": "age",
            "kind": "numeric",
            "differ_share": 0.1,
            "mean_abs_diff": 1.0,
            "missing_online": 0,
            "missing_offline": 0,
            "jsd": 0.05,
            "severity": "critical",
        },
        {
            "feature": "device",
            "kind": "categorical",
            "differ_share": 0.0,
            "mean_abs_diff": None,
            "missing_online": 0,
            "missing_offline": 0,
            "jsd": 0.0,
            "severity": "ok",
        },
    ],
    "critical_features": ["age"],
    "warning_features": [],
}


def test_metadata_leads_with_the_level_and_tables_every_feature() -> None:
    meta = skew_metadata(REPORT)
    assert next(iter(meta)) == "severity"
    assert (
        meta["severity"]
        == "🔴 CRITICAL: critical skew on age (10.0% of rows differ, mean |diff| 1)"
    )
    records = meta["features"].records
    assert [r.data["feature"] for r in records] == ["age", "device"]
    assert records[0].data["severity"] == "CRITICAL"
    assert records[1].data["mean_abs_diff"] is None
    assert meta["versions"] == "v1: 200"
    assert meta["critical_features"] == "age"


@pytest.mark.parametrize(
    ("level", "block_on", "passed", "severity"),
    [
        ("critical", "critical", False, dg.AssetCheckSeverity.ERROR),
        ("warning", "critical", False, dg.AssetCheckSeverity.WARN),
        ("warning", "warning", False, dg.AssetCheckSeverity.ERROR),
        ("critical", None, False, dg.AssetCheckSeverity.WARN),
        ("ok", "warning", True, dg.AssetCheckSeverity.WARN),
        ("insufficient", "warning", True, dg.AssetCheckSeverity.WARN),
        ("no_traffic", "warning", True, dg.AssetCheckSeverity.WARN),
    ],
)
def test_the_check_blocks_from_the_policys_level(
    level: str, block_on: str | None, passed: bool, severity: dg.AssetCheckSeverity
) -> None:
    pipeline = spec(online_features=OnlineFeatures(skew=SkewPolicy(block_on=block_on)))  # type: ignore[arg-type]
    result = skew_check_result(pipeline, {**REPORT, "level": level})
    assert result.passed is passed
    assert result.severity == severity
    assert result.metadata["metric"].value == "differ_share"
    assert result.metadata["actual"].value == 0.1
    assert result.metadata["threshold"].value == (
        f"warning >= 0.01, critical >= 0.05 (jsd [0.1, 0.2]); blocks at {block_on or 'never'}"
    )


def test_a_schedule_runs_the_materialization_job(tmp_path: Path) -> None:
    pipeline = spec(online_features=OnlineFeatures(schedule="*/15 * * * *"))
    defs = build_definitions([pipeline], environment=Environment.local(tmp_path / "home"))
    schedule = defs.resolve_schedule_def("fraud_online_features_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"
    assert schedule.job_name == "fraud_online_features"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with pytest.raises(ValidationError, match="materialize=False turns off"):
        OnlineFeatures(materialize=False, schedule="0 * * * *")
