"""Fixtures for tests against a real Feast store and a real Dagster instance."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from lockgate import Environment
from pipelines.feature_repo import fraud_feast_store
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

SMALL = FraudDataConfig(seed=11, n_customers=2000, n_merchants=100, tx_per_day=3000)
DAYS = 10


@pytest.fixture(scope="session")
def source_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten days of example data, generated once per session (never modified by tests)."""
    root = tmp_path_factory.mktemp("source") / "data"
    generate_fraud_data(root, days=DAYS, config=SMALL)
    return root


@pytest.fixture
def env(tmp_path: Path, source_data: Path) -> Environment:
    """A fresh lockgate home with its own copy of the example data, its Feast store applied."""
    environment = Environment.local(tmp_path / "home")
    shutil.copytree(source_data, environment.data_dir)
    fraud_feast_store(environment).apply()
    return environment


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst
