"""Bad input gets a clear error and nothing half-written in the registry."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lockgate import Environment, build_definitions
from lockgate.errors import (
    CorruptDataError,
    EmptyDataError,
    FeatureStoreError,
    SchemaError,
    ValidationFailedError,
)

from .specs import lgbm_spec


def _run(spec, env: Environment, instance: dg.DagsterInstance):
    defs = build_definitions([spec], environment=env)
    return defs.resolve_job_def(spec.train_job_name).execute_in_process(
        instance=instance, raise_on_error=False
    )


def _error(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run did not fail"
    error, parts = failures[0].step_failure_data.error, []
    while error is not None:  # the user code's exception is the cause of Dagster's step error
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def _registry_files(env: Environment) -> list[str]:
    root = env.artifacts_dir
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _label_files(env: Environment) -> list[Path]:
    return sorted((env.data_dir / "labels").glob("*.parquet"))


def _rewrite_labels(env: Environment, change) -> None:
    for path in _label_files(env):
        frame = pd.read_parquet(path)
        change(frame).to_parquet(path, index=False)


def _expect_snapshot_failure(spec, env, instance, error_type: type, match: str) -> None:
    result = _run(spec, env, instance)
    assert not result.success
    message = _error(result)
    assert error_type.__name__ in message
    assert match in message, message
    assert _registry_files(env) == []


def test_missing_label_column(env, instance) -> None:
    _rewrite_labels(env, lambda f: f.drop(columns=["is_fraud"]))
    _expect_snapshot_failure(lgbm_spec(), env, instance, SchemaError, "is_fraud")


def test_empty_label_frame(env, instance) -> None:
    _rewrite_labels(env, lambda f: f.iloc[0:0])
    _expect_snapshot_failure(lgbm_spec(), env, instance, EmptyDataError, "no rows")


def test_corrupt_parquet(env, instance) -> None:
    path = _label_files(env)[2]
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    _expect_snapshot_failure(lgbm_spec(), env, instance, CorruptDataError, path.name)


def test_unknown_feature_service(env, instance) -> None:
    spec = lgbm_spec(feature_service="fraud_v9")
    _expect_snapshot_failure(spec, env, instance, FeatureStoreError, "fraud_v1")


def test_wrong_label_values_fail_at_the_snapshot_naming_the_task(env, instance) -> None:
    _rewrite_labels(env, lambda f: f.assign(is_fraud=f["is_fraud"].map({0: "no", 1: "yes"})))
    result = _run(lgbm_spec(), env, instance)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "fraud_lgbm__feature_snapshot"  # before the Feast join
    message = failure.step_failure_data.error.to_string()
    assert "task='binary'" in message
    assert "'no'" in message
    assert "fix:" in message
    assert LocalRegistryView(env).models() == []


def test_nan_flood_blocks_training(env, instance, monkeypatch) -> None:
    # a NaN flood in a feature source: every customer's age goes missing
    for path in sorted((env.data_dir / "customer_profile").glob("*.parquet")):
        frame = pd.read_parquet(path)
        frame["age"] = np.nan
        frame.to_parquet(path, index=False)
    spec = lgbm_spec()
    result = _run(spec, env, instance)
    assert not result.success
    key = dg.AssetCheckKey(spec.asset_key("feature_snapshot"), "column_age")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    evaluation = record.event.dagster_event.event_specific_data
    assert not evaluation.passed
    assert evaluation.metadata["metric"].value == "expect_column_values_to_not_be_null"
    assert LocalRegistryView(env).models() == []
    # and a later run that tries to train on that snapshot directly is refused as well
    from lockgate.lineage.registry import LocalArtifactRegistry
    from lockgate.lineage.steps import require_validated

    reg = LocalArtifactRegistry(root=str(env.artifacts_dir))
    snapshot = (env.refs_dir / spec.name / "feature_snapshot.json").read_text()
    import json

    with pytest.raises(ValidationFailedError, match="column_age"):
        require_validated(reg, json.loads(snapshot)["frame_sha256"])


class LocalRegistryView:
    def __init__(self, env: Environment) -> None:
        self.root = env.artifacts_dir

    def models(self) -> list[str]:
        models = self.root / "models"
        return sorted(str(p) for p in models.rglob("*")) if models.exists() else []
