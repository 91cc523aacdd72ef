"""The example pipelines: a card-fraud model, once with LightGBM and once with a PyTorch MLP.

Both read the Feast feature service ``fraud_v1`` and the delayed fraud labels, and share one
data-quality suite.
"""

from __future__ import annotations

from lockgate import (
    ColumnRule,
    DataValidation,
    LabelSource,
    LightGBMTrainer,
    ModelPipeline,
    Split,
    TorchTrainer,
)

__all__ = ["FRAUD_LABELS", "FRAUD_VALIDATION", "PIPELINES", "fraud_lgbm", "fraud_torch"]

FRAUD_LABELS = LabelSource(
    dataset="labels",
    entity_columns=("transaction_id", "customer_id", "merchant_id"),
    timestamp_column="event_timestamp",
)

FRAUD_VALIDATION = DataValidation(
    min_rows=500,
    label_rate=(0.002, 0.2),
    columns={
        "is_fraud": ColumnRule(dtype="int", allowed=(0, 1)),
        "amount": ColumnRule(dtype="float", min=0.0, max=100_000.0),
        "hour_of_day": ColumnRule(dtype="int", min=0, max=23),
        "age": ColumnRule(dtype="number", min=16, max=110, max_null_fraction=0.05),
        "account_age_days": ColumnRule(dtype="number", min=0, max_null_fraction=0.05),
        "credit_limit": ColumnRule(dtype="number", min=0, max_null_fraction=0.05),
        # velocity and merchant features are stamped at day end: the first day has none yet
        "tx_count_7d": ColumnRule(dtype="number", min=0, max_null_fraction=0.15),
        "amount_mean_7d": ColumnRule(dtype="number", min=0, max_null_fraction=0.15),
        "merchant_fraud_rate_30d": ColumnRule(
            dtype="number", min=0.0, max=1.0, max_null_fraction=0.15
        ),
        "device_type": ColumnRule(dtype="string", max_null_fraction=0.01),
        "merchant_category": ColumnRule(dtype="string", max_null_fraction=0.15),
    },
)

fraud_lgbm = ModelPipeline(
    name="fraud_lgbm",
    description="Card-fraud classifier, gradient-boosted trees.",
    feature_service="fraud_v1",
    label="is_fraud",
    labels=FRAUD_LABELS,
    trainer=LightGBMTrainer(seed=7, num_boost_round=150),
    validation=FRAUD_VALIDATION,
    split=Split(holdout_fraction=0.2),
)

fraud_torch = ModelPipeline(
    name="fraud_torch",
    description="Card-fraud classifier, PyTorch MLP.",
    feature_service="fraud_v1",
    label="is_fraud",
    labels=FRAUD_LABELS,
    trainer=TorchTrainer(seed=7, hidden_sizes=(64, 32), epochs=8),
    validation=FRAUD_VALIDATION,
    split=Split(holdout_fraction=0.2),
)

PIPELINES = (fraud_lgbm, fraud_torch)
