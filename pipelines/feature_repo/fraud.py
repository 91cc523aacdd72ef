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

_ENTITIES = (
    ("transaction", "transaction_id", "STRING", "A card payment."),
    ("customer", "customer_id", "INT64", "A card holder."),
    ("merchant", "merchant_id", "INT64", "A merchant accepting card payments."),
)
"""(entity name, join key, ``ValueType`` member, description)."""

_COLUMN_TYPES = {
    **dict.fromkeys(
        ["amount", "credit_limit", "amount_sum_1d", "amount_mean_7d", "merchant_fraud_rate_30d"],
        "Float64",
    ),
    **dict.fromkeys(
        ["transaction_id", "device_type", "tx_country", "home_country", "merchant_category"],
        "String",
    ),
}
"""Feast dtype name of the view columns that are not ``Int64``."""

_VIEWS = {
    "transaction_features": (
        "transaction",
        1,
        ["transaction_id", *_V1["transaction_features"], "tx_country"],
    ),
    "customer_profile": (
        "customer",
        7,
        ["customer_id", "age", "account_age_days", "home_country", "credit_limit"],
    ),
    "customer_velocity": ("customer", 2, ["customer_id", *_V1["customer_velocity"]]),
    "merchant_risk": ("merchant", 7, ["merchant_id", *_V1["merchant_risk"]]),
}
"""Feature view name -> (entity, ttl in days, schema columns in order)."""

_VIEW_DESCRIPTIONS = {
    "transaction_features": "Facts of the payment itself, stamped at payment time.",
    "customer_profile": "Daily customer snapshot, stamped at 00:00 UTC of the day.",
    "customer_velocity": "Spending windows ending with a day, stamped at its last microsecond.",
    "merchant_risk": "30-day merchant fraud rate from labels known at the end of each day.",
}


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
    dtypes = {"String": String, "Int64": Int64, "Float64": Float64}
    entities = {
        name: Entity(
            name=name,
            join_keys=[key],
            value_type=getattr(ValueType, value_type),
            description=text,
            tags=_TAGS,
        )
        for name, key, value_type, text in _ENTITIES
    }
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
            name=name,
            entities=[entities[entity]],
            ttl=timedelta(days=ttl_days),
            schema=[
                Field(name=col, dtype=dtypes[_COLUMN_TYPES.get(col, "Int64")]) for col in columns
            ],
            source=sources[name],
            online=True,
            description=_VIEW_DESCRIPTIONS[name],
            tags=_TAGS,
        )
        for name, (entity, ttl_days, columns) in _VIEWS.items()
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
    return [*entities.values(), *sources.values(), *views, *services]
