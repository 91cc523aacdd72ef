"""The small served pipeline the serving, drift and feedback tests share (not a test module)."""

from __future__ import annotations

from typing import Any

from lockgate.spec import LabelSource, ModelPipeline, TritonTarget
from lockgate.trainers import LightGBMTrainer
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
