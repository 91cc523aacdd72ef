"""Feast objects of the card-fraud example: entities, file sources, feature views, services.

Sources are the daily Parquet folders written by
:func:`pipelines.fraud_data.generate_fraud_data`. Each ``FileSource`` points at a
*folder* (absolute path): the DuckDB offline store reads every ``*.parquet`` below it as one
table (recursively), and the path stays valid as days are appended.

Feature services:

* ``fraud_v1``: the 15 features of the first fraud model (transaction, customer profile,
  customer velocity, merchant risk).
* ``fraud_v2``: ``fraud_v1`` plus ``tx_country`` and ``home_country``.

Entity rows for either service need ``transaction_id``, ``customer_id``, ``merchant_id`` and
``event_timestamp`` (the ``labels`` folder has exactly these, plus the label).

Feast is imported inside :func:`fraud_feature_objects` only (importing it takes seconds).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

__all__ = ["ENTITY_COLUMNS", "FEATURE_SERVICES", "FEATURE_VIEW_TABLES", "fraud_feature_objects"]

ENTITY_COLUMNS = ("transaction_id", "customer_id", "merchant_id", "event_timestamp")
"""Columns an entity DataFrame for the fraud services must have."""

FEATURE_SERVICES = ("fraud_v1", "fraud_v2")
"""Names of the feature services defined here."""

FEATURE_VIEW_TABLES = {
    "transaction_features": "transactions",
    "customer_profile": "customer_profile",
    "customer_velocity": "customer_velocity",
    "merchant_risk": "merchant_risk",
}
"""Feature view name -> its source folder under ``data_dir``."""

_V1 = {
    "transaction_features": ["amount", "hour_of_day", "is_foreign", "is_new_device", "device_type"],
    "customer_profile": ["age", "account_age_days", "credit_limit"],
    "customer_velocity": [
        "tx_count_1d",
        "amount_sum_1d",
        "tx_count_7d",
        "amount_mean_7d",
        "distinct_countries_7d",
    ],
    "merchant_risk": ["merchant_category", "merchant_fraud_rate_30d"],
}
_V2_EXTRA = {"transaction_features": ["tx_country"], "customer_profile": ["home_country"]}
_TAGS = {"domain": "fraud", "team": "lockgate"}


def fraud_feature_objects(data_dir: Path) -> list[object]:
    """Builds the Feast objects of the fraud example over the folders of ``data_dir``.

    Args:
        data_dir: The folder written by ``generate_fraud_data`` (made absolute here).

    Returns:
        Entities (transaction, customer, merchant), one FileSource per feature view, the
        feature views ``transaction_features``, ``customer_profile``, ``customer_velocity``,
        ``merchant_risk`` and the feature services ``fraud_v1`` and ``fraud_v2``.
    """
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64, String

    root = Path(data_dir).resolve()
    transaction = Entity(
        name="transaction",
        join_keys=["transaction_id"],
        value_type=ValueType.STRING,
        description="A card payment.",
        tags=_TAGS,
    )
    customer = Entity(
        name="customer",
        join_keys=["customer_id"],
        value_type=ValueType.INT64,
        description="A card holder.",
        tags=_TAGS,
    )
    merchant = Entity(
        name="merchant",
        join_keys=["merchant_id"],
        value_type=ValueType.INT64,
        description="A merchant accepting card payments.",
        tags=_TAGS,
    )
    sources = {
        view: FileSource(
            name=f"{table}_source",
            path=str(root / table),
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
            description=f"Daily Parquet files of {table} (one file per day).",
            tags=_TAGS,
        )
        for view, table in FEATURE_VIEW_TABLES.items()
    }
    views = [
        FeatureView(
            name="transaction_features",
            entities=[transaction],
            ttl=timedelta(days=1),
            schema=[
                Field(name="transaction_id", dtype=String),
                Field(name="amount", dtype=Float64),
                Field(name="hour_of_day", dtype=Int64),
                Field(name="is_foreign", dtype=Int64),
                Field(name="is_new_device", dtype=Int64),
                Field(name="device_type", dtype=String),
                Field(name="tx_country", dtype=String),
            ],
            source=sources["transaction_features"],
            online=True,
            description="Facts of the payment itself, stamped at payment time.",
            tags=_TAGS,
        ),
        FeatureView(
            name="customer_profile",
            entities=[customer],
            ttl=timedelta(days=7),
            schema=[
                Field(name="customer_id", dtype=Int64),
                Field(name="age", dtype=Int64),
                Field(name="account_age_days", dtype=Int64),
                Field(name="home_country", dtype=String),
                Field(name="credit_limit", dtype=Float64),
            ],
            source=sources["customer_profile"],
            online=True,
            description="Daily customer snapshot, stamped at 00:00 UTC of the day.",
            tags=_TAGS,
        ),
        FeatureView(
            name="customer_velocity",
            entities=[customer],
            ttl=timedelta(days=2),
            schema=[
                Field(name="customer_id", dtype=Int64),
                Field(name="tx_count_1d", dtype=Int64),
                Field(name="amount_sum_1d", dtype=Float64),
                Field(name="tx_count_7d", dtype=Int64),
                Field(name="amount_mean_7d", dtype=Float64),
                Field(name="distinct_countries_7d", dtype=Int64),
            ],
            source=sources["customer_velocity"],
            online=True,
            description="Spending windows ending with a day, stamped at its last microsecond.",
            tags=_TAGS,
        ),
        FeatureView(
            name="merchant_risk",
            entities=[merchant],
            ttl=timedelta(days=7),
            schema=[
                Field(name="merchant_id", dtype=Int64),
                Field(name="merchant_category", dtype=String),
                Field(name="merchant_fraud_rate_30d", dtype=Float64),
            ],
            source=sources["merchant_risk"],
            online=True,
            description="30-day merchant fraud rate from labels known at the end of each day.",
            tags=_TAGS,
        ),
    ]
    by_name = {v.name: v for v in views}
    v2 = {name: cols + _V2_EXTRA.get(name, []) for name, cols in _V1.items()}
    services = [
        FeatureService(
            name=name,
            features=[by_name[view][cols] for view, cols in spec.items()],
            description=text,
            tags={**_TAGS, "version": name.rsplit("_", 1)[1]},
        )
        for name, spec, text in (
            ("fraud_v1", _V1, "Features of the first fraud model."),
            ("fraud_v2", v2, "fraud_v1 plus transaction and home country."),
        )
    ]
    return [transaction, customer, merchant, *sources.values(), *views, *services]
