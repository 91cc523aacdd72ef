"""The small pipelines the integration tests and their code locations share (not a test module)."""

from __future__ import annotations

from typing import Any

from lockgate.spec import LabelSource, ModelPipeline, TritonTarget
from lockgate.training import LightGBMTrainer, TorchTrainer
from pipelines.fraud import FRAUD_LABELS, FRAUD_VALIDATION
from tests.integration.test_gate import GATE


def served_spec(name: str, **over: Any) -> ModelPipeline:
    """A gated, CPU-served LightGBM pipeline keyed by ``transaction_id``; ``over`` sets fields
    such as ``canary``, ``drift`` or ``feedback``."""
    fields: dict[str, Any] = {
        "name": name,
        "feature_service": "fraud_v1",
        "label": "is_fraud",
        "labels": LabelSource(entity_columns=("transaction_id",)),
        "trainer": LightGBMTrainer(seed=1),
        "gate": GATE,
        "serving": TritonTarget(device="cpu"),
        **over,
    }
    return ModelPipeline(**fields)


def lgbm_spec(**over: object) -> ModelPipeline:
    args: dict[str, object] = dict(
        name="fraud_lgbm",
        feature_service="fraud_v1",
        label="is_fraud",
        labels=FRAUD_LABELS,
        trainer=LightGBMTrainer(seed=7, num_boost_round=60),
        validation=FRAUD_VALIDATION,
    )
    args.update(over)
    return ModelPipeline(**args)  # type: ignore[arg-type]


def torch_spec(**over: object) -> ModelPipeline:
    return lgbm_spec(name="fraud_torch", trainer=TorchTrainer(seed=7, epochs=8), **over)
