"""The online store's materialization asset and the training/serving skew report, on real Feast.

The fraud example's Feast objects over small generated data whose last day is today (its later
rows lie in the future, as a live source's would not, and stay out of every load and lookup
until their time). A store built in code (file registry, SQLite online store) and a Feast
repository on a real, password-protected redis-server are materialized by the
``online_features`` asset; the feature-change sensor sees each materialization. The gateway app
serves entity-key requests from the online store before a fake KServe upstream; the skew report
compares what it served with Feast's point-in-time historical retrieval: a store materialized
only up to yesterday 01:00 serves stale profiles and lacks the day's transactions (critical,
named), a store materialized up to now serves what training would have seen (ok).
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from lockgate import Environment, cli
from lockgate._util.dataio import read_parquet_dir
from lockgate._util.services import LocalRedis
from lockgate.assets.online_store import build_online_features
from lockgate.assets.skew import build_skew_report
from lockgate.discover import CodeLocation
from lockgate.errors import FeatureStoreError
from lockgate.features.materialize import materialize_incremental
from lockgate.features.store import FeastStore
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.monitoring.skew import SkewPolicy, compute_skew_report
from lockgate.monitoring.triggers import FeatureChangePolicy
from lockgate.resources.audit import AuditTrail
from lockgate.sensors.feature_store import run_feature_change_tick
from lockgate.serving.stack import LocalServingStack
from lockgate.spec import OnlineFeatures
from pipelines.feature_repo import FRAUD_DEFINITIONS
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data
from tests.integration.specs import lgbm_spec, served_spec
from tests.integration.test_online_features_stores import (
    MODEL,
    PATH,
    SCHEMA,
    _redis_repo,
    call,
    fake_upstream,
    keys_json,
    running,
    write_config,
    write_wire,
)

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).date()
CONFIG = FraudDataConfig(
    seed=8, n_customers=200, n_merchants=30, tx_per_day=200, start_date=TODAY - timedelta(days=2)
)
DAYS = 3  # the day before yesterday, yesterday and today
STALE_END = datetime.combine(TODAY - timedelta(days=1), time(1), tzinfo=UTC)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("skew_src") / "data"
    generate_fraud_data(root, days=DAYS, config=CONFIG)
    return root


@pytest.fixture
def sqlite_store(tmp_path: Path, data_dir: Path) -> FeastStore:
    store = FeastStore(
        repo_dir=str(tmp_path / "feast"), data_dir=str(data_dir), definitions=FRAUD_DEFINITIONS
    )
    store.apply()
    return store


def profile_on(data_dir: Path, day: Any) -> pd.DataFrame:
    """The customer profiles stamped at 00:00 of ``day`` (one row per customer)."""
    frame = read_parquet_dir(data_dir / "customer_profile")
    stamp = pd.Timestamp(datetime.combine(day, time(0), tzinfo=UTC))
    return frame[frame["event_timestamp"] == stamp].set_index("customer_id")


def online_profiles(store: FeastStore, customers: list[int]) -> dict[str, list[Any]]:
    online = store.store().get_online_features(
        features=["customer_profile:account_age_days", "customer_profile:credit_limit"],
        entity_rows=[{"customer_id": c} for c in customers],
    )
    values: dict[str, list[Any]] = online.to_dict()
    return values


def materialize_asset(spec: Any, store: FeastStore, end: str = "") -> dg.AssetMaterialization:
    result = dg.materialize(
        [build_online_features(spec)],
        resources={"feast": store},
        run_config={"ops": {f"{spec.name}__online_features": {"config": {"end": end}}}},
    )
    assert result.success
    (event,) = result.asset_materializations_for_node(f"{spec.name}__online_features")
    return event


def test_the_asset_materializes_new_rows_and_the_feature_change_sensor_sees_it(
    tmp_path: Path, data_dir: Path, sqlite_store: FeastStore
) -> None:
    spec = lgbm_spec(
        online_features=OnlineFeatures(skew=None),
        feature_changes=FeatureChangePolicy(materializations=True),
    )
    audit = AuditTrail(path=str(tmp_path / "audit" / "audit.jsonl"))
    baseline = run_feature_change_tick(spec, feast=sqlite_store, audit=audit, cursor=None)
    assert baseline.run_key is None
    yesterday, today = profile_on(data_dir, TODAY - timedelta(days=1)), profile_on(data_dir, TODAY)
    customers = sorted(set(yesterday.index) & set(today.index))[:20]
    assert (yesterday.loc[customers, "account_age_days"] + 1).tolist() == today.loc[
        customers, "account_age_days"
    ].tolist()  # a profile ages by a day from one stamp to the next
    assert online_profiles(sqlite_store, customers)["account_age_days"] == [None] * 20

    first = materialize_asset(spec, sqlite_store, end=STALE_END.isoformat())
    meta = first.metadata
    assert meta["end"].value == STALE_END.isoformat()
    assert meta["online_store"].value == "sqlite"
    assert meta["feature_views"].value == 4
    assert meta["rows"].value > 0
    views = {r.data["view"]: r.data for r in meta["views"].value.records}
    assert views["customer_profile"]["end"] == STALE_END.isoformat()
    assert views["customer_profile"]["entities"] == len(yesterday)  # one stamp in the window
    online = online_profiles(sqlite_store, customers)
    assert online["account_age_days"] == yesterday.loc[customers, "account_age_days"].tolist()

    seen = run_feature_change_tick(spec, feast=sqlite_store, audit=audit, cursor=baseline.cursor)
    assert seen.run_key is not None
    assert (
        f"materialization of customer_profile moved to {STALE_END.isoformat()} (was never)"
        in seen.mutations
    ), seen.mutations

    second = materialize_asset(spec, sqlite_store)  # incremental: from STALE_END up to now
    views = {r.data["view"]: r.data for r in second.metadata["views"].value.records}
    assert views["customer_profile"]["start"] == STALE_END.isoformat()
    assert views["customer_profile"]["entities"] == len(today)  # today's stamp only
    assert second.metadata["rows"].value > 0
    online = online_profiles(sqlite_store, customers)
    assert online["account_age_days"] == today.loc[customers, "account_age_days"].tolist()
    again = run_feature_change_tick(spec, feast=sqlite_store, audit=audit, cursor=seen.cursor)
    assert again.run_key is not None
    assert again.run_key != seen.run_key
    assert any(
        m.startswith("materialization of customer_profile moved to ") for m in again.mutations
    ), again.mutations


def test_an_end_in_the_future_is_refused_naming_the_trap(sqlite_store: FeastStore) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    with pytest.raises(FeatureStoreError, match=r"lies after now .* every later incremental run"):
        materialize_incremental(sqlite_store, "fraud_v1", end=later)


def test_the_asset_materializes_into_redis(
    tmp_path: Path, data_dir: Path, redis_server: LocalRedis
) -> None:
    import redis

    store = _redis_repo(tmp_path / "repo", data_dir, redis_server.connection_string)
    spec = lgbm_spec(name="fraud_redis", online_features=OnlineFeatures(skew=None))
    today = profile_on(data_dir, TODAY)
    customers = sorted(today.index)[:10]
    event = materialize_asset(spec, store)
    assert event.metadata["online_store"].value == "redis"
    online = online_profiles(store, customers)
    assert online["account_age_days"] == today.loc[customers, "account_age_days"].tolist()
    assert online["credit_limit"] == pytest.approx(today.loc[customers, "credit_limit"].tolist())
    assert redis.Redis.from_url(redis_server.url()).dbsize() > 0


# ---- training/serving skew through the gateway


def recent_entities(data_dir: Path, n: int = 40) -> list[dict[str, Any]]:
    """The newest transactions after the stale load's end (the fresh store must serve them, the
    stale one cannot): their keys. Not "the last hours": at night those held too few rows."""
    tx = read_parquet_dir(data_dir / "transactions")
    now = pd.Timestamp.now(tz="UTC")
    recent = tx[(tx["event_timestamp"] > pd.Timestamp(STALE_END))
                & (tx["event_timestamp"] < now - pd.Timedelta(minutes=1))]  # fmt: skip
    rows = recent.sort_values("event_timestamp").tail(n)
    assert len(rows) >= 20, len(rows)
    return [
        {"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
         "merchant_id": int(r.merchant_id)}
        for r in rows.itertuples()
    ]  # fmt: skip


def serve(folder: Path, store: FeastStore, rows: list[dict[str, Any]]) -> Path:
    """Sends the rows' keys through the gateway, ten per request; returns the log folder."""
    folder.mkdir(parents=True)

    async def scenario() -> None:
        async with running(folder, fake_upstream(), write_config(folder, store)) as app:
            for i in range(0, len(rows), 10):
                answer = await call(app, "POST", PATH, keys_json(rows[i : i + 10]))
                assert answer.status == 200, answer.body

    asyncio.run(scenario())
    return folder / "log"


def by_feature(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["feature"]: f for f in report["features"]}


def test_stale_online_values_are_reported_and_fresh_ones_are_ok(
    tmp_path: Path, data_dir: Path, sqlite_store: FeastStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = served_spec(MODEL, online_features=OnlineFeatures())
    rows = recent_entities(data_dir)
    materialize_incremental(sqlite_store, "fraud_v1", end=STALE_END)
    stale_log = serve(tmp_path / "stale", sqlite_store, rows)
    stale = compute_skew_report(
        spec, feast=sqlite_store, log_dir=stale_log, schema_for=lambda version: SCHEMA
    )
    other = compute_skew_report(
        served_spec("nobody", online_features=OnlineFeatures()),
        feast=sqlite_store,
        log_dir=stale_log,
        schema_for=lambda version: SCHEMA,
    )
    assert other["level"] == "no_traffic"
    assert other["reason"].startswith("no served request of nobody carried entity keys")
    assert stale["window"]["rows"] == len(rows)
    assert stale["window"]["versions"] == {"v1": len(rows)}
    assert stale["level"] == "critical"
    features = by_feature(stale)
    # every profile served is yesterday's: a day younger than what training would see
    age = features["account_age_days"]
    assert age["severity"] == "critical"
    assert age["differ_share"] >= 0.9
    assert age["mean_abs_diff"] == pytest.approx(1.0)
    # the transactions arrived after the store's last load: missing online, present offline
    amount = features["amount"]
    assert amount["missing_online"] == len(rows)
    assert amount["missing_offline"] == 0
    assert amount["differ_share"] == 1.0
    assert set(stale["critical_features"]) >= {"account_age_days", "amount", "device_type"}
    assert stale["reason"].startswith("critical skew on ")
    assert " and " in stale["reason"]  # more critical features than the three named

    materialize_incremental(sqlite_store, "fraud_v1")  # up to now
    fresh_log = serve(tmp_path / "fresh", sqlite_store, rows)
    fresh = compute_skew_report(
        spec, feast=sqlite_store, log_dir=fresh_log, schema_for=lambda version: SCHEMA
    )
    assert fresh["level"] == "ok", fresh["reason"]
    assert fresh["rows"] == len(rows)
    for feature in fresh["features"]:
        assert feature["differ"] == 0, feature
    assert fresh["reason"].startswith("served values match point-in-time historical values")

    # `lockgate skew`: the pipeline's location and the home's serving stack
    home = Environment.local(tmp_path / "home")
    home_stack = home.resources()["serving_stack"]
    home_stack.prediction_log_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(fresh_log, home_stack.prediction_log_dir)
    write_wire(home_stack.repo_dir)
    location = CodeLocation(
        source="module m",
        definitions=[dg.Definitions(resources={"feast": sqlite_store})],
        pipelines={MODEL: spec},
    )
    monkeypatch.setattr(cli, "_locations", lambda *args: [location])
    output = CliRunner().invoke(cli.cli, ["skew", MODEL, "--home", str(home.home)])
    assert output.exit_code == 0, output.output
    lines = output.output.splitlines()
    assert lines[0].startswith(f"{MODEL}: ok: served values match point-in-time historical")
    assert lines[1].startswith(f"  window: {len(rows)} rows, ")
    assert any(line.split()[:3] == ["account_age_days", "ok", "differ"] for line in lines), lines

    # the Dagster asset: the stack's prediction log, the served repository's wire.json, the
    # check failing at ERROR (blocking) on the stale window
    stack = LocalServingStack(root=str(tmp_path / "stack"))
    stack.prediction_log_dir.parent.mkdir(parents=True)
    stale_log.rename(stack.prediction_log_dir)
    write_wire(stack.repo_dir)
    result = dg.materialize(
        [build_skew_report(spec)],
        resources={
            "feast": sqlite_store,
            "serving_stack": stack,
            "artifacts": LocalArtifactRegistry(root=str(tmp_path / "registry")),
        },
        raise_on_error=False,
    )
    (event,) = result.asset_materializations_for_node(f"{spec.name}__skew_report")
    assert event.metadata["level"].value == "critical"
    assert event.metadata["severity"].value.startswith("🔴 CRITICAL: critical skew on ")
    table = {r.data["feature"]: r.data for r in event.metadata["features"].value.records}
    assert table["amount"]["missing_online"] == len(rows)
    assert table["account_age_days"]["severity"] == "CRITICAL"
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "skew_within_policy"
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["worst_feature"].value in stale["critical_features"]

    # a policy that blocks on nothing only warns
    quiet = served_spec(MODEL, online_features=OnlineFeatures(skew=SkewPolicy(block_on=None)))
    result = dg.materialize(
        [build_skew_report(quiet)],
        resources={
            "feast": sqlite_store,
            "serving_stack": stack,
            "artifacts": LocalArtifactRegistry(root=str(tmp_path / "registry")),
        },
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
