from __future__ import annotations

import pydantic
import pytest

from lockgate import (
    ColumnRule,
    DataValidation,
    LabelSource,
    LightGBMTrainer,
    ModelPipeline,
    TorchTrainer,
)
from lockgate.errors import SpecError

LABELS = LabelSource(entity_columns=("transaction_id",))


def _spec(**over) -> ModelPipeline:
    args = dict(
        name="fraud",
        feature_service="fraud_v1",
        label="is_fraud",
        labels=LABELS,
        trainer=LightGBMTrainer(seed=1),
    )
    args.update(over)
    return ModelPipeline(**args)


def test_spec_is_frozen_and_strict() -> None:
    spec = _spec()
    with pytest.raises(pydantic.ValidationError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        _spec(colour="red")


def test_names_and_keys() -> None:
    spec = _spec()
    assert spec.asset_key("feature_snapshot").path == ["fraud", "feature_snapshot"]
    assert spec.train_job_name == "fraud_train"
    with pytest.raises(SpecError, match="unknown asset"):
        spec.asset_key("nope")
    with pytest.raises(pydantic.ValidationError, match="lowercase"):
        _spec(name="Fraud-1")


def test_trainer_is_discriminated_by_kind() -> None:
    spec = ModelPipeline.model_validate(
        {
            "name": "fraud",
            "feature_service": "fraud_v1",
            "label": "is_fraud",
            "labels": {"entity_columns": ["transaction_id"]},
            "trainer": {"kind": "torch", "seed": 3},
        }
    )
    assert isinstance(spec.trainer, TorchTrainer)
    assert spec.trainer.seed == 3


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="above max"):
        ColumnRule(min=5, max=1)
    with pytest.raises(pydantic.ValidationError, match="label_rate"):
        DataValidation(label_rate=(0.5, 0.1))
    with pytest.raises(pydantic.ValidationError, match="entity or timestamp"):
        _spec(label="transaction_id")


def test_to_definitions_builds_assets_checks_and_job() -> None:
    defs = _spec().to_definitions()
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert keys == {
        "fraud/feature_snapshot",
        "fraud/model_weights",
        "fraud/evaluation_report",
        "fraud/model_registry",
    }
    assert defs.resolve_job_def("fraud_train").name == "fraud_train"
    checks = {c.name for c in defs.resolve_asset_graph().asset_check_keys}
    assert "row_count" in checks
