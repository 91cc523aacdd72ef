"""Tests of the synthetic fraud data generator."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate._util.dataio import read_parquet_dir
from lockgate.errors import CorruptDataError, DataError, SpecError
from pipelines.fraud_data import (
    MANIFEST_NAME,
    TABLES,
    FraudDataConfig,
    day_file,
    generate_fraud_data,
    read_manifest,
)

SMALL = FraudDataConfig(seed=5, n_customers=300, n_merchants=40, tx_per_day=400)
US = pa.timestamp("us", tz="UTC")
SCHEMAS = {
    "transactions": {
        "transaction_id": pa.string(),
        "customer_id": pa.int64(),
        "merchant_id": pa.int64(),
        "event_timestamp": US,
        "amount": pa.float64(),
        "tx_country": pa.string(),
        "device_type": pa.string(),
        "hour_of_day": pa.int64(),
        "is_foreign": pa.int64(),
        "is_new_device": pa.int64(),
    },
    "customer_profile": {
        "customer_id": pa.int64(),
        "event_timestamp": US,
        "age": pa.int64(),
        "account_age_days": pa.int64(),
        "home_country": pa.string(),
        "credit_limit": pa.float64(),
    },
    "customer_velocity": {
        "customer_id": pa.int64(),
        "event_timestamp": US,
        "tx_count_1d": pa.int64(),
        "amount_sum_1d": pa.float64(),
        "tx_count_7d": pa.int64(),
        "amount_mean_7d": pa.float64(),
        "distinct_countries_7d": pa.int64(),
    },
    "merchant_risk": {
        "merchant_id": pa.int64(),
        "event_timestamp": US,
        "merchant_category": pa.string(),
        "merchant_fraud_rate_30d": pa.float64(),
    },
    "labels": {
        "transaction_id": pa.string(),
        "customer_id": pa.int64(),
        "merchant_id": pa.int64(),
        "event_timestamp": US,
        "is_fraud": pa.int64(),
        "label_timestamp": US,
    },
}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _table(root: Path, name: str) -> pd.DataFrame:
    return read_parquet_dir(root / name)


@pytest.fixture(scope="module")
def eight_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fraud") / "data"
    generate_fraud_data(root, days=8, config=SMALL)
    return root


# ---- determinism and append


def test_same_seed_gives_byte_identical_files(tmp_path: Path, eight_days: Path) -> None:
    generate_fraud_data(tmp_path / "again", days=8, config=SMALL)
    assert _digest(tmp_path / "again") == _digest(eight_days)


def test_other_seed_gives_other_data(tmp_path: Path, eight_days: Path) -> None:
    other = FraudDataConfig(seed=6, n_customers=300, n_merchants=40, tx_per_day=400)
    generate_fraud_data(tmp_path / "other", days=8, config=other)
    mine, theirs = _digest(eight_days), _digest(tmp_path / "other")
    assert all(mine[k] != theirs[k] for k in mine if k.startswith("transactions/"))


@pytest.mark.parametrize("covariate_drift", [0.0, 0.6])
def test_ten_days_at_once_equal_six_plus_four_appended(
    tmp_path: Path, covariate_drift: float
) -> None:
    generate_fraud_data(tmp_path / "once", days=10, config=SMALL, covariate_drift=covariate_drift)
    generate_fraud_data(tmp_path / "split", days=6, config=SMALL, covariate_drift=covariate_drift)
    summary = generate_fraud_data(
        tmp_path / "split", days=4, append=True, covariate_drift=covariate_drift
    )

    assert _digest(tmp_path / "once") == _digest(tmp_path / "split")
    assert summary.days_written == tuple(date(2024, 1, 7) + timedelta(days=i) for i in range(4))
    assert summary.total_days == 10
    assert summary.first_day == date(2024, 1, 1)


def test_append_over_the_30_day_label_window_stays_equivalent(tmp_path: Path) -> None:
    tiny = FraudDataConfig(seed=2, n_customers=60, n_merchants=12, tx_per_day=60)
    generate_fraud_data(tmp_path / "once", days=34, config=tiny)
    generate_fraud_data(tmp_path / "split", days=32, config=tiny)
    generate_fraud_data(tmp_path / "split", days=2, append=True, config=tiny)
    assert _digest(tmp_path / "once") == _digest(tmp_path / "split")


# ---- layout, schemas and timestamps


def test_layout_one_file_per_day_per_table(eight_days: Path) -> None:
    for table in TABLES:
        names = sorted(p.name for p in (eight_days / table).iterdir())
        assert names == [f"2024-01-0{d}.parquet" for d in range(1, 9)], table
    manifest = read_manifest(eight_days)
    assert manifest is not None
    assert [d["date"] for d in manifest["days"]] == [f"2024-01-0{d}" for d in range(1, 9)]
    assert FraudDataConfig.from_json(manifest["config"]) == SMALL


@pytest.mark.parametrize("table", TABLES)
def test_schema_is_exact_with_microsecond_utc_timestamps(eight_days: Path, table: str) -> None:
    schema = pq.read_schema(day_file(eight_days, table, date(2024, 1, 3)))
    assert {f.name: f.type for f in schema} == SCHEMAS[table]
    frame = _table(eight_days, table)
    assert str(frame["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["event_timestamp"].dt.tz is not None


def test_timestamps_fall_inside_their_day(eight_days: Path) -> None:
    day = date(2024, 1, 4)
    start = pd.Timestamp(day, tz="UTC")
    last_us = start + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    tx = pq.read_table(day_file(eight_days, "transactions", day)).to_pandas()
    assert tx["event_timestamp"].between(start, last_us - pd.Timedelta(microseconds=1)).all()
    assert tx["event_timestamp"].is_monotonic_increasing
    assert (tx["hour_of_day"] == tx["event_timestamp"].dt.hour).all()
    assert tx["transaction_id"].is_unique
    profile = pq.read_table(day_file(eight_days, "customer_profile", day)).to_pandas()
    assert (profile["event_timestamp"] == start).all()
    for table in ("customer_velocity", "merchant_risk"):
        frame = pq.read_table(day_file(eight_days, table, day)).to_pandas()
        assert (frame["event_timestamp"] == last_us).all(), table


def test_labels_match_transactions_and_arrive_late(eight_days: Path) -> None:
    tx, labels = _table(eight_days, "transactions"), _table(eight_days, "labels")
    cols = ["transaction_id", "customer_id", "merchant_id", "event_timestamp"]
    pd.testing.assert_frame_equal(tx[cols], labels[cols])
    delay = labels["label_timestamp"] - labels["event_timestamp"]
    assert delay.min() >= pd.Timedelta(days=1)
    assert delay.max() <= pd.Timedelta(days=SMALL.max_label_delay_days)
    assert set(labels["is_fraud"].unique()) == {0, 1}


def test_categorical_values_are_known(eight_days: Path) -> None:
    from pipelines.fraud_data import CATEGORIES, COUNTRIES, DEVICE_TYPES

    tx = _table(eight_days, "transactions")
    assert set(tx["tx_country"]) <= set(COUNTRIES)
    assert set(tx["device_type"]) <= set(DEVICE_TYPES)
    merchants = _table(eight_days, "merchant_risk")
    assert set(merchants["merchant_category"]) == set(CATEGORIES)
    foreign = tx.merge(_table(eight_days, "customer_profile").drop_duplicates("customer_id"))
    assert (
        (foreign["tx_country"] != foreign["home_country"]) == (foreign["is_foreign"] == 1)
    ).all()


# ---- feature semantics


def test_velocity_aggregates_the_day_and_the_week(eight_days: Path) -> None:
    tx = _table(eight_days, "transactions")
    tx["day"] = tx["event_timestamp"].dt.floor("D")
    vel = _table(eight_days, "customer_velocity")
    vel["day"] = vel["event_timestamp"].dt.floor("D")
    last = vel["day"].max()
    week = tx[tx["day"] > last - pd.Timedelta(days=7)]
    expected = week.groupby("customer_id").agg(
        tx_count_7d=("amount", "size"),
        mean=("amount", "mean"),
        distinct_countries_7d=("tx_country", "nunique"),
    )
    today = tx[tx["day"] == last].groupby("customer_id")["amount"].agg(["size", "sum"])
    got = vel[vel["day"] == last].set_index("customer_id")
    both = got.join(expected, rsuffix="_exp", how="inner")
    assert len(both) > 250
    assert (both["tx_count_7d"] == both["tx_count_7d_exp"]).all()
    assert (both["distinct_countries_7d"] == both["distinct_countries_7d_exp"]).all()
    np.testing.assert_allclose(both["amount_mean_7d"], both["mean"], atol=1e-4)
    d1 = got.join(today, how="inner")
    assert (d1["tx_count_1d"] == d1["size"]).all()
    np.testing.assert_allclose(d1["amount_sum_1d"], d1["sum"], atol=1e-6)
    idle = got.index.difference(week["customer_id"].unique())
    assert (got.loc[idle, "amount_mean_7d"] == 0.0).all()


def test_merchant_fraud_rate_uses_only_labels_known_at_the_time(eight_days: Path) -> None:
    labels = _table(eight_days, "labels")
    risk = _table(eight_days, "merchant_risk")
    stamp = risk["event_timestamp"].max()
    known = labels[labels["label_timestamp"] <= stamp]
    counts = known.groupby("merchant_id")["is_fraud"].agg(["sum", "size"])
    expected = (counts["sum"] + 20 * 0.02) / (counts["size"] + 20)
    got = risk[risk["event_timestamp"] == stamp].set_index("merchant_id")
    np.testing.assert_allclose(
        got.loc[expected.index, "merchant_fraud_rate_30d"], expected, atol=1e-6
    )
    first = risk[risk["event_timestamp"] == risk["event_timestamp"].min()]
    assert (first["merchant_fraud_rate_30d"] == 0.02).all()  # no label is known on day one


def test_fraud_rate_is_in_range_and_depends_on_feature_interactions(tmp_path: Path) -> None:
    summary = generate_fraud_data(tmp_path / "d", days=6, config=FraudDataConfig(seed=1))
    assert 0.01 <= summary.fraud_rate <= 0.03
    tx = _table(tmp_path / "d", "transactions").merge(_table(tmp_path / "d", "labels"))
    night = tx["hour_of_day"] < 6
    risky = (tx["is_foreign"] == 1) & (tx["is_new_device"] == 1) & night
    assert tx.loc[risky, "is_fraud"].mean() > 10 * tx.loc[~risky, "is_fraud"].mean()
    assert tx.loc[night, "is_fraud"].mean() > 3 * tx.loc[~night, "is_fraud"].mean()
    risky_cat = tx["merchant_id"].isin(_merchants(tmp_path / "d", {"gift_cards", "crypto"}))
    safe_cat = tx["merchant_id"].isin(_merchants(tmp_path / "d", {"grocery", "utilities"}))
    assert tx.loc[risky_cat, "is_fraud"].mean() > 5 * tx.loc[safe_cat, "is_fraud"].mean()


def _merchants(root: Path, categories: set[str]) -> set[int]:
    risk = _table(root, "merchant_risk")
    return set(risk.loc[risk["merchant_category"].isin(categories), "merchant_id"])


# ---- drift knobs


def test_covariate_drift_brings_younger_customers(tmp_path: Path) -> None:
    for name, drift in (("base", 0.0), ("drift", 1.0)):
        generate_fraud_data(tmp_path / name, days=6, config=SMALL)
        generate_fraud_data(tmp_path / name, days=4, append=True, covariate_drift=drift)
    base, drift = _digest(tmp_path / "base"), _digest(tmp_path / "drift")
    before = [k for k in base if k.endswith(".parquet") and Path(k).stem < "2024-01-07"]
    assert len(before) == 6 * len(TABLES)
    assert all(base[k] == drift[k] for k in before)  # days before the campaign are untouched
    ages = {}
    for name in ("base", "drift"):
        profile = _table(tmp_path / name, "customer_profile")
        last = profile[profile["event_timestamp"] == profile["event_timestamp"].max()]
        ages[name] = (last["age"].mean(), len(last))
    assert ages["drift"][0] < ages["base"][0] - 2.0
    assert ages["drift"][1] >= ages["base"][1] + 40  # 4 days x 4 % of 300 customers
    manifest = read_manifest(tmp_path / "drift")
    assert manifest is not None
    assert [d["covariate_drift"] for d in manifest["days"]] == [0.0] * 6 + [1.0] * 4


def test_concept_drift_changes_labels_not_features(tmp_path: Path) -> None:
    cfg = FraudDataConfig(seed=3, n_customers=1000, n_merchants=80, tx_per_day=1500)
    generate_fraud_data(tmp_path / "base", days=6, config=cfg)
    generate_fraud_data(tmp_path / "drift", days=6, config=cfg, concept_drift=1.0)
    for table in ("transactions", "customer_profile", "customer_velocity"):
        pd.testing.assert_frame_equal(
            _table(tmp_path / "base", table), _table(tmp_path / "drift", table)
        )
    moved = _merchants(tmp_path / "base", {"fuel", "pharmacy", "travel", "restaurant"})
    left = _merchants(tmp_path / "base", {"gift_cards", "crypto", "electronics"})
    rates = {}
    for name in ("base", "drift"):
        labels = _table(tmp_path / name, "labels")
        daytime = _table(tmp_path / name, "transactions")["hour_of_day"].between(9, 16)
        ordinary = labels["merchant_id"].isin(moved)
        rates[name] = (
            labels.loc[ordinary, "is_fraud"].mean(),
            labels.loc[labels["merchant_id"].isin(left), "is_fraud"].mean(),
            labels.loc[daytime, "is_fraud"].mean(),
        )
    assert rates["drift"][0] > 4 * rates["base"][0]
    assert rates["drift"][1] < rates["base"][1]
    assert rates["drift"][2] > 1.5 * rates["base"][2]


# ---- refusals


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="days=0"):
        generate_fraud_data(tmp_path, days=0, config=SMALL)
    with pytest.raises(SpecError, match=r"concept_drift=1\.5"):
        generate_fraud_data(tmp_path, days=1, config=SMALL, concept_drift=1.5)
    with pytest.raises(SpecError, match="n_merchants=3"):
        FraudDataConfig(n_merchants=3)
    assert not any(tmp_path.iterdir())


def test_appending_with_another_config_is_refused(tmp_path: Path) -> None:
    generate_fraud_data(tmp_path, days=2, config=SMALL)
    other = FraudDataConfig(seed=99, n_customers=300, n_merchants=40, tx_per_day=400)
    with pytest.raises(SpecError, match=r"seed: stored 5, requested 99"):
        generate_fraud_data(tmp_path, days=1, config=other, append=True)
    with pytest.raises(SpecError, match="append=True"):
        generate_fraud_data(tmp_path, days=1, config=SMALL)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert len(manifest["days"]) == 2


def test_folder_with_foreign_parquet_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "transactions").mkdir()
    pq.write_table(pa.table({"a": [1]}), tmp_path / "transactions" / "x.parquet")
    with pytest.raises(DataError, match=r"no _generator\.json"):
        generate_fraud_data(tmp_path, days=1, config=SMALL)


def test_append_needs_intact_recent_files(tmp_path: Path) -> None:
    generate_fraud_data(tmp_path, days=3, config=SMALL)
    path = day_file(tmp_path, "labels", date(2024, 1, 3))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptDataError, match=r"2024-01-03\.parquet"):
        generate_fraud_data(tmp_path, days=1, append=True)
    path.unlink()
    with pytest.raises(DataError, match="is missing"):
        generate_fraud_data(tmp_path, days=1, append=True)


def test_progress_reports_one_line_per_day(tmp_path: Path) -> None:
    lines: list[str] = []
    summary = generate_fraud_data(tmp_path, days=3, config=SMALL, progress=lines.append)
    assert len(lines) == 3
    assert lines[0].startswith("2024-01-01: ")
    assert "transactions" in lines[0]
    assert summary.n_transactions == len(_table(tmp_path, "transactions"))
    assert summary.to_dict()["total_days"] == 3
