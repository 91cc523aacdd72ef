"""Example domains for lockgate: a synthetic card-fraud world written day by day as Parquet."""

from __future__ import annotations

from lockgate.examples.fraud_data import (
    CATEGORIES,
    COUNTRIES,
    DEVICE_TYPES,
    MANIFEST_NAME,
    TABLES,
    FraudDataConfig,
    GenerationSummary,
    day_file,
    generate_fraud_data,
    read_manifest,
)

__all__ = [
    "CATEGORIES",
    "COUNTRIES",
    "DEVICE_TYPES",
    "MANIFEST_NAME",
    "TABLES",
    "FraudDataConfig",
    "GenerationSummary",
    "day_file",
    "generate_fraud_data",
    "read_manifest",
]
