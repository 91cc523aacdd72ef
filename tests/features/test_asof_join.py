"""The ASOF point-in-time join returns what Feast's own ``get_historical_features`` returns.

Real Feast 0.67 (DuckDB offline store, file registry) over randomized Parquet sources with the
cases a point-in-time join gets wrong: entity and feature rows at the same instant, feature rows
exactly at and one microsecond past the TTL, two feature rows of one instant told apart by their
created timestamp, entity keys no source knows, null feature values, a view without TTL, a
field mapping and a projection's join-key map.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lockgate.features.asof_join import asof_plan
from lockgate.features.store import (
    FeastStore,
    _get_service,
    _prepare_entity_df,
    _service_join_keys,
)

# a real Feast store on disk: the integration layer
pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
US = timedelta(microseconds=1)
PROFILE_TTL = timedelta(hours=2)
RISK_TTL = timedelta(minutes=30)


def _ts(minutes: Any) -> pd.Series:
    return pd.Series(pd.Timestamp(T0) + pd.to_timedelta(minutes, unit="min")).astype(
        "datetime64[us, UTC]"
    )


def _write(folder: Path, frame: pd.DataFrame, parts: int = 2) -> str:
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[part].to_parquet(folder / f"part-{i}.parquet", index=False)
    return str(folder)


def _sources(root: Path, rng: np.random.Generator) -> dict[str, str]:
    """Randomized feature rows on a one-minute grid (ties everywhere), plus fixed edge cases."""
    n = 3000
    profile = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 40, n),
            "event_timestamp": _ts(rng.integers(0, 600, n)),
            "score": rng.normal(size=n),
            "level": rng.integers(0, 5, n),
            "tier": rng.choice(["gold", "silver", None], n),
        }
    )
    profile["created"] = profile["event_timestamp"] + pd.to_timedelta(
        rng.integers(0, 5, n), unit="s"
    )
    profile.loc[rng.random(n) < 0.1, "score"] = np.nan
    # rows of one instant and key stay, told apart by created; a full tie Feast breaks at random
    profile = profile.drop_duplicates(["customer_id", "event_timestamp", "created"])
    assert profile.duplicated(["customer_id", "event_timestamp"]).sum() > 20
    # customer 100: two rows of one instant, the later-created one must win
    edge = pd.DataFrame(
        {
            "customer_id": [100, 100],
            "event_timestamp": _ts([300, 300]),
            "score": [1.0, 2.0],
            "level": [1, 2],
            "tier": ["old", "new"],
            "created": _ts([301, 302]),
        }
    )
    # customer 101: a row exactly PROFILE_TTL before minute 500; customer 102: 1 us more
    at_ttl = pd.Timestamp(T0 + 500 * MINUTE - PROFILE_TTL)
    edge2 = pd.DataFrame(
        {
            "customer_id": [101, 102],
            "event_timestamp": pd.Series([at_ttl, at_ttl - US]).astype("datetime64[us, UTC]"),
            "score": [3.0, 4.0],
            "level": [3, 4],
            "tier": ["at", "past"],
            "created": pd.Series([at_ttl, at_ttl]).astype("datetime64[us, UTC]"),
        }
    )
    profile = pd.concat([profile, edge, edge2], ignore_index=True)
    profile["level"] = profile["level"].astype("int64")
    m = 2000
    risk = pd.DataFrame(
        {
            "merchant_id": rng.integers(0, 25, m),
            "ts": _ts(rng.integers(0, 600, m)),
            "rate_raw": rng.random(m),
            "flag": rng.integers(0, 2, m),
        }
    )
    # merchant_id, minute: a unique row per instant (Feast's choice among equal rows is arbitrary)
    risk = risk.drop_duplicates(["merchant_id", "ts"]).reset_index(drop=True)
    history = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 40, 500),
            "event_timestamp": _ts(rng.integers(0, 600, 500)),
            "visits": rng.integers(0, 1000, 500),
        }
    ).drop_duplicates(["customer_id", "event_timestamp"])
    return {
        "profile": _write(root / "profile", profile),
        "risk": _write(root / "risk", risk),
        "history": _write(root / "history", history, parts=1),
    }


def _objects(paths: dict[str, str]) -> list[Any]:
    from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
    from feast.data_format import ParquetFormat
    from feast.types import Float64, Int64, String

    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.INT64)
    profile = FeatureView(
        name="profile",
        entities=[customer],
        ttl=PROFILE_TTL,
        schema=[
            Field(name="customer_id", dtype=Int64),
            Field(name="score", dtype=Float64),
            Field(name="level", dtype=Int64),
            Field(name="tier", dtype=String),
        ],
        source=FileSource(
            name="profile_src",
            path=paths["profile"],
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        ),
    )
    risk = FeatureView(
        name="risk",
        entities=[merchant],
        ttl=RISK_TTL,
        schema=[
            Field(name="merchant_id", dtype=Int64),
            Field(name="rate", dtype=Float64),
            Field(name="flag", dtype=Int64),
        ],
        source=FileSource(
            name="risk_src",
            path=paths["risk"],
            file_format=ParquetFormat(),
            timestamp_field="ts",
            field_mapping={"rate_raw": "rate"},
        ),
    )
    history = FeatureView(
        name="history",
        entities=[customer],
        ttl=timedelta(0),  # no TTL: the newest row ever
        schema=[Field(name="customer_id", dtype=Int64), Field(name="visits", dtype=Int64)],
        source=FileSource(
            name="history_src",
            path=paths["history"],
            file_format=ParquetFormat(),
            timestamp_field="event_timestamp",
        ),
    )
    service = FeatureService(
        name="svc",
        features=[
            profile,
            risk.with_join_key_map({"merchant_id": "shop_id"}),
            history,
        ],
    )
    return [customer, merchant, profile, risk, history, service]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeastStore:
    root = tmp_path_factory.mktemp("asof")
    paths = _sources(root / "data", np.random.default_rng(16))
    feast = FeastStore(repo_dir=str(root / "repo"), data_dir=str(root / "data"))
    feast.store().apply(_objects(paths))
    return feast


def _entity_rows(rng: np.random.Generator, n: int = 4000) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 45, n),  # 40..44: no source knows them
            "shop_id": rng.integers(0, 28, n),  # 25..27: unknown merchants
            "event_timestamp": _ts(rng.integers(0, 660, n)),  # on the features' grid: ties
            "label": rng.integers(0, 2, n),
            "note": rng.choice(["a", "b"], n),
        }
    )
    edges = pd.DataFrame(
        {
            "customer_id": [100, 101, 102, 100],
            "shop_id": [0, 0, 0, 0],
            "event_timestamp": _ts([300, 500, 500, 299]),
            "label": [1, 1, 1, 1],
            "note": ["tie", "at", "past", "before"],
        }
    )
    return pd.concat([rows, edges], ignore_index=True).sample(frac=1.0, random_state=3)


def _feast_answer(feast: FeastStore, entity_df: pd.DataFrame) -> pd.DataFrame:
    store = feast.store()
    service = _get_service(store, "svc", feast)
    frame = _prepare_entity_df(entity_df, _service_join_keys(store, service), "svc")
    return feast._feast_historical(store, service, frame, entity_df, "svc")


def test_the_store_uses_the_asof_join_for_duckdb_file_sources(store: FeastStore) -> None:
    feast = store.store()
    plan = asof_plan(feast, _get_service(feast, "svc", store))
    assert not isinstance(plan, str), plan
    assert plan.features == ["score", "level", "tier", "rate", "flag", "visits"]
    assert [dict(v.join_key_map) for v, _ in plan.views] == [
        {"customer_id": "customer_id"},
        {"merchant_id": "shop_id"},
        {"customer_id": "customer_id"},
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_asof_join_equals_feasts_historical_retrieval(store: FeastStore, seed: int) -> None:
    entity_df = _entity_rows(np.random.default_rng(seed))
    ours = store.historical_features(feature_service="svc", entity_df=entity_df)
    theirs = _feast_answer(store, entity_df)
    assert list(ours.columns) == list(theirs.columns)
    assert ours.dtypes.to_dict() == theirs.dtypes.to_dict()
    pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    # the comparison is not vacuous: hits, misses beyond the TTL and unknown keys are all there
    assert ours["score"].notna().sum() > 500
    assert ours["score"].isna().sum() > 200
    assert ours["rate"].notna().sum() > 500
    assert ours["rate"].isna().sum() > 200
    assert ours["tier"].isna().sum() > 100
    assert ours["visits"].notna().sum() > 500


def test_edge_rows_are_as_feast_defines_them(store: FeastStore) -> None:
    entity_df = _entity_rows(np.random.default_rng(5))
    ours = store.historical_features(feature_service="svc", entity_df=entity_df)
    by_note = ours.set_index("note").loc[["tie", "at", "past", "before"]]
    # same event time: the later created timestamp wins
    assert by_note.loc["tie", "tier"] == "new"
    assert by_note.loc["tie", "level"] == 2
    # a feature row exactly one TTL old is still valid; one microsecond older is not
    assert by_note.loc["at", "tier"] == "at"
    assert by_note.loc["at", "score"] == 3.0
    assert by_note.loc["past", "tier"] is None
    assert np.isnan(by_note.loc["past", "score"])
    # an entity row one minute before the only feature rows of its key gets nothing
    assert by_note.loc["before", "tier"] is None
    assert ours["level"].dtype == pd.Int64Dtype()
    assert ours["score"].dtype == np.float64
    # entity rows come back in input order with their own dtypes
    assert ours["note"].tolist() == entity_df["note"].tolist()
    assert ours["label"].dtype == entity_df["label"].dtype


def test_a_service_with_an_on_demand_view_is_left_to_feast(store: FeastStore) -> None:
    from feast import FeatureService, Field
    from feast.on_demand_feature_view import on_demand_feature_view
    from feast.types import Float64

    feast = store.store()
    profile = feast.get_feature_view("profile")

    @on_demand_feature_view(sources=[profile], schema=[Field(name="score2", dtype=Float64)])
    def doubled(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"score2": inputs["score"] * 2})

    service = FeatureService(name="with_odfv", features=[profile, doubled])
    feast.apply([doubled, service])
    plan = asof_plan(feast, feast.get_feature_service("with_odfv"))
    assert isinstance(plan, str)
    assert "on-demand" in plan
    # and the store answers it, through Feast's own retrieval (it used to fail looking the
    # on-demand view up as a feature view for its join keys)
    entity_df = _entity_rows(np.random.default_rng(7), n=300).drop(columns=["shop_id"])
    ours = store.historical_features(feature_service="with_odfv", entity_df=entity_df)
    assert {"score", "score2"} <= set(ours.columns)
    hit = ours["score"].notna()
    assert hit.sum() > 50
    np.testing.assert_allclose(ours.loc[hit, "score2"], ours.loc[hit, "score"] * 2)
    assert ours["note"].tolist() == entity_df["note"].tolist()
    # its fingerprints (the mutation sensor's signal) cover the on-demand view's spec and
    # its source view's data
    prints = store.fingerprints("with_odfv")
    assert {"doubled", "profile"} <= set(prints["feature_views"])
    assert set(prints["sources"]) == {"profile"}
    assert store.join_keys("with_odfv") == ["customer_id"]
