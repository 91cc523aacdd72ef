"""The example pipelines: a card-fraud model, once with LightGBM and once with a PyTorch MLP.

Both read the Feast feature service ``fraud_v1`` and the delayed fraud labels, and share one
data-quality suite.
"""

from __future__ import annotations

from typing import Any

from lockgate import (
    CanaryPolicy,
    ColumnRule,
    Condition,
    DataValidation,
    DriftPolicy,
    EdgeCase,
    FeedbackPolicy,
    Gate,
    GoldSet,
    LabelSource,
    LightGBMTrainer,
    ModelPipeline,
    SliceSpec,
    Split,
    TorchTrainer,
    TritonTarget,
)

__all__ = [
    "FRAUD_CANARY",
    "FRAUD_DRIFT",
    "FRAUD_EDGE_CASES",
    "FRAUD_FEEDBACK",
    "FRAUD_GATE",
    "FRAUD_LABELS",
    "FRAUD_SERVING",
    "FRAUD_VALIDATION",
    "PIPELINES",
    "fraud_lgbm",
    "fraud_torch",
]

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

FRAUD_EDGE_CASES = (
    EdgeCase(
        name="extreme_amounts",
        description="amounts 50x larger than seen still give valid probabilities",
        scale={"amount": 50.0, "amount_sum_1d": 50.0},
    ),
    EdgeCase(
        name="unseen_device_type",
        description="a device type never seen in training is handled as unknown",
        set={"device_type": "smart_fridge"},
    ),
    EdgeCase(
        name="missing_optional_features",
        description="velocity and merchant features missing (new systems, outages)",
        set={
            "tx_count_1d": None,
            "amount_sum_1d": None,
            "tx_count_7d": None,
            "amount_mean_7d": None,
            "distinct_countries_7d": None,
            "merchant_fraud_rate_30d": None,
            "merchant_category": None,
        },
    ),
    EdgeCase(
        name="new_customers",
        description="accounts younger than 90 days: the challenger must not rank them worse",
        where=(Condition(column="account_age_days", op="<", value=90),),
        expect="not_worse_than_champion",
        metric="roc_auc",
        threshold=0.05,
        min_rows=100,
    ),
    EdgeCase(
        name="foreign_on_new_device",
        description="a foreign payment from a new device must score above the average",
        where=(
            Condition(column="is_foreign", op="==", value=1),
            Condition(column="is_new_device", op="==", value=1),
        ),
        expect="min_mean_score_ratio",
        threshold=1.5,
        min_rows=5,
    ),
)

FRAUD_GATE = Gate(
    gold=GoldSet(key="transaction_id", fraction=0.15),
    primary="roc_auc",
    absolute={"roc_auc": 0.75, "brier": 0.05},
    # a challenger may trade noise-level ROC AUC, but not a real loss of either ranking metric
    min_delta={"roc_auc": -0.005, "pr_auc": -0.03},
    slices=(
        SliceSpec(column="device_type"),
        SliceSpec(
            column="amount",
            edges=(20.0, 100.0, 500.0),
            labels=("<20", "20-100", "100-500", ">=500"),
        ),
        SliceSpec(column="age", edges=(25.0, 40.0, 60.0), labels=("<25", "25-40", "40-60", ">=60")),
    ),
    slice_metric="roc_auc",
    max_slice_drop=0.08,
    min_slice_rows=500,
    edge_cases=FRAUD_EDGE_CASES,
    min_gold_rows=2000,
    min_gold_positives=40,
)

FRAUD_SERVING = TritonTarget(device="gpu", max_batch_size=1024, p99_budget_ms=50.0)

FRAUD_CANARY = CanaryPolicy(
    steps=(1, 5, 25, 100),
    hold_seconds=6 * 3600,
    min_requests=500,
    max_p99_ms=50.0,
    max_error_rate=0.01,
    max_prediction_psi=0.2,
)

# the seed articles' levels; two critical windows in a row, at most one drift retrain per 6 h
FRAUD_DRIFT = DriftPolicy(
    psi=(0.1, 0.2),
    ks=(0.05, 0.1),
    jsd=(0.1, 0.2),
    window_rows=50_000,
    min_rows=1000,
    consecutive=2,
    cooldown_seconds=6 * 3600,
    interval_seconds=300,
)

# delayed labels, joined by trace id: retrain when live ROC AUC stays 0.05 below the gold estimate
FRAUD_FEEDBACK = FeedbackPolicy(
    dataset="feedback", metric="roc_auc", window=5000, min_labels=500, max_drop=0.05
)

# what both fraud models share: features, labels, checks, gate, serving and policies
_FRAUD_SHARED: dict[str, Any] = {
    "feature_service": "fraud_v1",
    "label": "is_fraud",
    "labels": FRAUD_LABELS,
    "validation": FRAUD_VALIDATION,
    "split": Split(holdout_fraction=0.2),
    "gate": FRAUD_GATE,
    "serving": FRAUD_SERVING,
    "canary": FRAUD_CANARY,
    "drift": FRAUD_DRIFT,
    "feedback": FRAUD_FEEDBACK,
}

fraud_lgbm = ModelPipeline(
    name="fraud_lgbm",
    description="Card-fraud classifier, gradient-boosted trees.",
    trainer=LightGBMTrainer(seed=7, num_boost_round=150),
    **_FRAUD_SHARED,
)

fraud_torch = ModelPipeline(
    name="fraud_torch",
    description="Card-fraud classifier, PyTorch MLP.",
    trainer=TorchTrainer(seed=7, hidden_sizes=(64, 32), epochs=8),
    **_FRAUD_SHARED,
)

PIPELINES = (fraud_lgbm, fraud_torch)
