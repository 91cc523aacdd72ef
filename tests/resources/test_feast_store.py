"""Tests of the FeastStore resource against a real local Feast store (DuckDB offline)."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lockgate._util.dataio import read_parquet_dir
from lockgate.errors import EmptyDataError, FeatureStoreError, SchemaError
from lockgate.features.store import FeastStore, canonical_spec, source_fingerprint
from pipelines.feature_repo import (
    ENTITY_COLUMNS,
    FEATURE_VIEW_TABLES,
    FRAUD_DEFINITIONS,
)
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

# real servers on loopback (uvicorn, gateway processes, a Feast store): the integration layer
pytestmark = pytest.mark.integration

SMALL = FraudDataConfig(seed=8, n_customers=300, n_merchants=40, tx_per_day=400)
DAYS = 8
V1_FEATURES = [
    "amount",
    "hour_of_day",
    "is_foreign",
    "is_new_device",
    "device_type",
    "age",
    "account_age_days",
    "credit_limit",
    "tx_count_1d",
    "amount_sum_1d",
    "tx_count_7d",
    "amount_mean_7d",
    "distinct_countries_7d",
    "merchant_category",
    "merchant_fraud_rate_30d",
]


@pytest.fixture(scope="module")
def source_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("feast_src") / "data"
    generate_fraud_data(root, days=DAYS, config=SMALL)
    return root


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory, source_data: Path) -> FeastStore:
    """A store applied once over the shared (read-only) data."""
    store = FeastStore(
        repo_dir=str(tmp_path_factory.mktemp("feast_repo")),
        data_dir=str(source_data),
        definitions=FRAUD_DEFINITIONS,
    )
    store.apply()
    return store


@pytest.fixture
def own_data(tmp_path: Path, source_data: Path) -> Path:
    """A private copy of the data that a test may append to."""
    root = tmp_path / "data"
    shutil.copytree(source_data, root)
    return root


@pytest.fixture
def variant_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A definitions module that changes customer_velocity's TTL and drops fraud_v2."""
    name = f"lockgate_variant_defs_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            from datetime import timedelta

            from pipelines.feature_repo.fraud import fraud_feature_objects


            def longer_ttl(data_dir):
                objects = fraud_feature_objects(data_dir)
                for obj in objects:
                    if getattr(obj, "name", "") == "customer_velocity":
                        obj.ttl = timedelta(days=3)
                return objects


            def without_v2(data_dir):
                return [o for o in fraud_feature_objects(data_dir) if o.name != "fraud_v2"]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


# ---- apply and fingerprints


def test_apply_twice_is_idempotent_and_keeps_fingerprints(tmp_path: Path, own_data: Path) -> None:
    store = FeastStore(
        repo_dir=str(tmp_path / "repo"), data_dir=str(own_data), definitions=FRAUD_DEFINITIONS
    )
    first = store.apply()
    assert first["changed"] is True
    assert "feature_service:fraud_v1" in first["created"]
    before = store.fingerprints("fraud_v1")
    registry = store.registry_path
    stat_before = registry.stat().st_mtime_ns, registry.read_bytes()

    second = store.apply()

    assert second["changed"] is False
    assert second["created"] == second["updated"] == second["not_managed"] == []
    assert len(second["unchanged"]) == len(first["created"])
    assert (registry.stat().st_mtime_ns, registry.read_bytes()) == stat_before
    assert store.fingerprints("fraud_v1") == before


def test_forced_reapply_changes_feast_metadata_but_not_fingerprints(
    tmp_path: Path, own_data: Path
) -> None:
    store = FeastStore(
        repo_dir=str(tmp_path / "repo"), data_dir=str(own_data), definitions=FRAUD_DEFINITIONS
    )
    store.apply()
    before = store.fingerprints("fraud_v1")
    feast = store.store()
    view = feast.get_feature_view("customer_velocity")
    feast.apply(store.definition_objects())  # what a plain `feast apply` does every time
    after_view = store.store().get_feature_view("customer_velocity")
    assert after_view.last_updated_timestamp != view.last_updated_timestamp
    assert store.fingerprints("fraud_v1") == before


def test_changed_feature_view_changes_its_fingerprint_only(
    tmp_path: Path, own_data: Path, variant_module: str
) -> None:
    repo = str(tmp_path / "repo")
    base = FeastStore(repo_dir=repo, data_dir=str(own_data), definitions=FRAUD_DEFINITIONS)
    base.apply()
    before = base.fingerprints("fraud_v1")

    variant = FeastStore(
        repo_dir=repo, data_dir=str(own_data), definitions=f"{variant_module}:longer_ttl"
    )
    result = variant.apply()
    after = variant.fingerprints("fraud_v1")

    assert result["updated"] == ["feature_view:customer_velocity"]
    assert after["registry"] != before["registry"]
    changed = {
        n
        for n in before["feature_views"]
        if before["feature_views"][n] != after["feature_views"][n]
    }
    assert changed == {"customer_velocity"}
    assert after["sources"] == before["sources"]


def test_apply_never_deletes_objects_it_was_not_given(
    tmp_path: Path, own_data: Path, variant_module: str
) -> None:
    """A registry shared with another team keeps their objects after our apply."""
    repo = str(tmp_path / "repo")
    FeastStore(repo_dir=repo, data_dir=str(own_data), definitions=FRAUD_DEFINITIONS).apply()
    variant = FeastStore(
        repo_dir=repo, data_dir=str(own_data), definitions=f"{variant_module}:without_v2"
    )
    before = variant.fingerprints("fraud_v2")
    result = variant.apply()
    assert "deleted" not in result
    assert result["not_managed"] == ["feature_service:fraud_v2"]
    assert result["changed"] is False
    assert variant.feature_service_names() == ["fraud_v1", "fraud_v2"]
    assert variant.fingerprints("fraud_v2")["registry"] == before["registry"]


def test_apply_refuses_without_definitions(tmp_path: Path, own_data: Path) -> None:
    store = FeastStore(repo_dir=str(tmp_path / "repo"), data_dir=str(own_data))
    with pytest.raises(FeatureStoreError, match="no definitions to apply") as info:
        store.apply()
    assert "Fix:" in str(info.value)
    assert not (tmp_path / "repo" / "registry.db").exists()


def test_appending_a_day_changes_sources_but_not_registry(tmp_path: Path, own_data: Path) -> None:
    store = FeastStore(
        repo_dir=str(tmp_path / "repo"), data_dir=str(own_data), definitions=FRAUD_DEFINITIONS
    )
    store.apply()
    before = store.fingerprints("fraud_v2")

    generate_fraud_data(own_data, days=1, append=True)
    store.apply()
    after = store.fingerprints("fraud_v2")

    assert after["registry"] == before["registry"]
    assert after["feature_views"] == before["feature_views"]
    for view in FEATURE_VIEW_TABLES:
        assert after["sources"][view]["files"] == before["sources"][view]["files"] + 1
        assert after["sources"][view]["bytes"] > before["sources"][view]["bytes"]
        assert after["sources"][view]["sha256"] != before["sources"][view]["sha256"]


def test_fingerprints_are_json_and_source_stats_cheap(applied: FeastStore) -> None:
    import json

    fp = applied.fingerprints("fraud_v1")
    assert json.loads(json.dumps(fp)) == fp
    assert set(fp["feature_views"]) == set(FEATURE_VIEW_TABLES)
    folder = Path(applied.data_dir) / "transactions"
    files = sorted(folder.glob("*.parquet"))
    stats = fp["sources"]["transaction_features"]
    assert stats["files"] == len(files) == DAYS
    assert stats["bytes"] == sum(f.stat().st_size for f in files)
    assert stats["max_mtime_ns"] == max(f.stat().st_mtime_ns for f in files)
    assert source_fingerprint(str(folder / "*.parquet"))["sha256"] == stats["sha256"]


def test_canonical_spec_has_no_timestamps(applied: FeastStore) -> None:
    spec = canonical_spec(applied.feature_service("fraud_v1"))
    text = str(spec)
    assert "last_updated_timestamp" not in text
    assert "'meta'" not in text
    assert spec["name"] == "fraud_v1"


# ---- services


def test_feature_refs_in_service_order(applied: FeastStore) -> None:
    refs = applied.feature_refs("fraud_v1")
    assert [r.split(":")[1] for r in refs] == V1_FEATURES
    assert refs[0] == "transaction_features:amount"
    v2 = applied.feature_refs("fraud_v2")
    assert set(refs) < set(v2)
    assert {"transaction_features:tx_country", "customer_profile:home_country"} <= set(v2)


def test_join_keys_of_a_service_in_service_order(applied: FeastStore) -> None:
    assert applied.join_keys("fraud_v1") == ["transaction_id", "customer_id", "merchant_id"]
    with pytest.raises(FeatureStoreError, match="'fraud_v9'"):
        applied.join_keys("fraud_v9")


def test_unknown_feature_service_names_the_known_ones(applied: FeastStore) -> None:
    with pytest.raises(FeatureStoreError) as info:
        applied.feature_refs("fraud_v9")
    message = str(info.value)
    assert "'fraud_v9'" in message
    assert "['fraud_v1', 'fraud_v2']" in message
    assert "Fix:" in message


def test_bad_definitions_path_is_a_feature_store_error(tmp_path: Path, source_data: Path) -> None:
    store = FeastStore(repo_dir=str(tmp_path), data_dir=str(source_data), definitions="nowhere")
    with pytest.raises(FeatureStoreError, match="malformed"):
        store.apply()
    store = FeastStore(
        repo_dir=str(tmp_path), data_dir=str(source_data), definitions="no_such_mod:f"
    )
    with pytest.raises(FeatureStoreError, match="cannot be imported"):
        store.apply()


# ---- historical features


def _labels(root: Path) -> pd.DataFrame:
    return read_parquet_dir(root / "labels")


def test_historical_features_keep_input_order_and_stable_dtypes(applied: FeastStore) -> None:
    entities = _labels(Path(applied.data_dir)).sample(frac=1.0, random_state=3)
    entities = entities.reset_index(drop=True)

    out = applied.historical_features(feature_service="fraud_v1", entity_df=entities)

    assert list(out.columns) == [*entities.columns, *V1_FEATURES]
    assert out["transaction_id"].tolist() == entities["transaction_id"].tolist()
    assert str(out["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert str(out["label_timestamp"].dtype) == "datetime64[us, UTC]"
    assert str(out["customer_id"].dtype) == "int64"
    assert str(out["tx_count_1d"].dtype) == "Int64"
    assert str(out["amount"].dtype) == "float64"
    assert out["device_type"].dtype == object
    assert out["amount"].notna().all()  # every transaction joins its own row
    day1 = out["event_timestamp"] < pd.Timestamp("2024-01-02", tz="UTC")
    assert out.loc[day1, "tx_count_1d"].isna().all()  # no velocity before the first day ends
    assert out.loc[~day1, "tx_count_1d"].notna().mean() > 0.95


def test_point_in_time_join_matches_merge_asof(applied: FeastStore) -> None:
    root = Path(applied.data_dir)
    entities = _labels(root).sample(300, random_state=1)[list(ENTITY_COLUMNS)]
    entities = entities.reset_index(drop=True)
    out = applied.historical_features(feature_service="fraud_v1", entity_df=entities)

    ordered = entities.assign(_i=range(len(entities))).sort_values("event_timestamp")
    for table, key, ttl, cols in (
        ("customer_velocity", "customer_id", 2, ["tx_count_7d", "amount_mean_7d"]),
        ("customer_profile", "customer_id", 7, ["age", "credit_limit"]),
        ("merchant_risk", "merchant_id", 7, ["merchant_fraud_rate_30d"]),
    ):
        feats = read_parquet_dir(root / table).sort_values("event_timestamp")
        ref = pd.merge_asof(
            ordered,
            feats[[key, "event_timestamp", *cols]],
            on="event_timestamp",
            by=key,
            direction="backward",
            tolerance=pd.Timedelta(days=ttl),
        ).sort_values("_i")
        for col in cols:
            got = out[col].astype("float64").to_numpy()
            want = ref[col].astype("float64").to_numpy()
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=col)
            np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], err_msg=col)


def test_feature_row_stamped_after_the_entity_is_not_joined(applied: FeastStore) -> None:
    vel = read_parquet_dir(Path(applied.data_dir) / "customer_velocity")
    stamps = sorted(vel["event_timestamp"].unique())
    customer = int(vel["customer_id"].iloc[0])
    day3_end, day4_end = pd.Timestamp(stamps[2]), pd.Timestamp(stamps[3])
    one_us = pd.Timedelta(microseconds=1)
    entities = pd.DataFrame(
        {
            "transaction_id": ["none"] * 3,
            "customer_id": [customer] * 3,
            "merchant_id": [1] * 3,
            "event_timestamp": [day4_end - one_us, day4_end, day4_end + one_us],
        }
    )
    out = applied.historical_features(feature_service="fraud_v1", entity_df=entities)

    rows = vel[vel["customer_id"] == customer].set_index("event_timestamp")["tx_count_7d"]
    assert out["tx_count_7d"].tolist() == [rows[day3_end], rows[day4_end], rows[day4_end]]
    assert out["amount"].isna().all()  # unknown transaction id: no transaction features


def test_naive_timestamps_mean_utc(applied: FeastStore) -> None:
    entities = _labels(Path(applied.data_dir)).head(50)[list(ENTITY_COLUMNS)]
    naive = entities.assign(event_timestamp=entities["event_timestamp"].dt.tz_localize(None))
    a = applied.historical_features(feature_service="fraud_v1", entity_df=entities)
    b = applied.historical_features(feature_service="fraud_v1", entity_df=naive)
    pd.testing.assert_frame_equal(a, b)


def test_bad_entity_frames_are_refused(applied: FeastStore) -> None:
    entities = _labels(Path(applied.data_dir)).head(5)
    with pytest.raises(SchemaError, match=r"\['merchant_id'\]"):
        applied.historical_features(
            feature_service="fraud_v1", entity_df=entities.drop(columns="merchant_id")
        )
    with pytest.raises(EmptyDataError):
        applied.historical_features(feature_service="fraud_v1", entity_df=entities.head(0))
    with pytest.raises(SchemaError, match="datetime64"):
        applied.historical_features(
            feature_service="fraud_v1",
            entity_df=entities.assign(event_timestamp=entities["event_timestamp"].astype(str)),
        )
    with pytest.raises(FeatureStoreError, match="known services"):
        applied.historical_features(feature_service="nope", entity_df=entities)


def test_materialize_loads_the_online_store(tmp_path: Path, own_data: Path) -> None:
    store = FeastStore(
        repo_dir=str(tmp_path / "repo"), data_dir=str(own_data), definitions=FRAUD_DEFINITIONS
    )
    store.apply()
    end = datetime(2024, 1, DAYS, 23, 59, 59, 999999, tzinfo=UTC)
    result = store.materialize(end)
    assert result["end"] == end.isoformat()
    vel = read_parquet_dir(own_data / "customer_velocity")
    last = vel[vel["event_timestamp"] == vel["event_timestamp"].max()].iloc[0]
    online = store.store().get_online_features(
        features=["customer_velocity:tx_count_7d"],
        entity_rows=[{"customer_id": int(last["customer_id"])}],
    )
    assert online.to_dict()["tx_count_7d"] == [int(last["tx_count_7d"])]


def test_usable_as_a_dagster_resource(applied: FeastStore) -> None:
    import dagster as dg

    @dg.asset
    def fraud_refs(feast: FeastStore) -> list[str]:
        return feast.feature_refs("fraud_v1")

    result = dg.materialize(
        [fraud_refs],
        resources={
            "feast": FeastStore(
                repo_dir=applied.repo_dir, data_dir=applied.data_dir, definitions=FRAUD_DEFINITIONS
            )
        },
    )
    assert result.success
    assert result.output_for_node("fraud_refs")[0] == "transaction_features:amount"


def test_registry_and_project_are_read_without_importing_feast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feature-change sensor asks for them on every tick: importing Feast costs seconds."""
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        "project: churn\nprovider: local\nregistry:\n  path: ${LG_TEST_REG}/registry.db\n"
        "online_store:\n  type: sqlite\n  path: online.db\nentity_key_serialization_version: 3\n"
    )
    code = (
        "import sys\n"
        "from lockgate.features.store import FeastStore\n"
        f"yaml_repo = FeastStore(repo_dir={str(repo)!r})\n"
        f"in_code = FeastStore(repo_dir={str(tmp_path / 'code')!r}, project='p')\n"
        "print(yaml_repo.registry_path, yaml_repo.project_name)\n"
        "print(in_code.registry_path, in_code.project_name)\n"
        "print('feast' in sys.modules)\n"
    )
    monkeypatch.setenv("LG_TEST_REG", "reg")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True
    ).stdout.splitlines()
    assert out == [
        f"{repo / 'reg' / 'registry.db'} churn",
        f"{tmp_path / 'code' / 'registry.db'} p",
        "False",
    ]
    # and they agree with what Feast itself reads from the file
    store = FeastStore(repo_dir=str(repo))
    config = store.repo_config()
    assert store.project_name == config.project
    assert store.registry_path == repo / config.registry.path
