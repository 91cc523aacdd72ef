"""Feast in production: the SQL registry on PostgreSQL and the Redis online store, both real.

The fraud example's objects are applied to a Feast repository whose ``feature_store.yaml`` names
a SQL registry (a private PostgreSQL database) and a Redis online store (a password-protected
redis-server); lockgate reads them the way the feature-change sensor does in production.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockgate._util.dataio import read_parquet_dir
from lockgate._util.services import LocalRedis
from lockgate.features.store import FeastStore
from lockgate.monitoring.mutations import diff, fingerprint, read_registry, read_sql_registry
from lockgate.resources.audit import AuditTrail
from lockgate.sensors.feature_store import run_feature_change_tick
from pipelines.feature_repo.fraud import fraud_feature_objects
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data
from tests.integration.specs import lgbm_spec

SMALL = FraudDataConfig(seed=8, n_customers=200, n_merchants=30, tx_per_day=200)
DAYS = 4

FEATURE_STORE_YAML = """\
project: fraud
provider: local
registry:
  registry_type: sql
  path: ${LG_TEST_FEAST_REGISTRY}
  cache_ttl_seconds: 0
online_store:
  type: redis
  connection_string: ${LG_TEST_FEAST_REDIS}
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("feast_prod") / "data"
    generate_fraud_data(root, days=DAYS, config=SMALL)
    return root


@pytest.fixture
def production_repo(
    tmp_path: Path,
    postgres_url: str,
    redis_server: LocalRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> FeastStore:
    """A Feast repository on the SQL registry and the Redis online store (secrets from env)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML)
    monkeypatch.setenv("LG_TEST_FEAST_REGISTRY", postgres_url)
    monkeypatch.setenv("LG_TEST_FEAST_REDIS", redis_server.connection_string)
    return FeastStore(repo_dir=str(repo))


def test_the_sql_registry_reads_as_the_file_registry_does(
    production_repo: FeastStore, data_dir: Path, tmp_path: Path, postgres_url: str
) -> None:
    assert production_repo.registry_type == "sql"
    assert postgres_url.split("@")[0].split(":")[-1] not in production_repo.registry_location
    with pytest.raises(FileNotFoundError, match="holds nothing of project 'fraud'"):
        read_sql_registry(production_repo.registry_url, "fraud")
    production_repo.store().apply(fraud_feature_objects(data_dir))

    # the same objects in a local file registry: the same digests, view by view
    local = FeastStore(repo_dir=str(tmp_path / "local"), project="fraud")
    local.store().apply(fraud_feature_objects(data_dir))
    common = dict(project="fraud", feature_service="fraud_v1", data_dir=data_dir)
    from_sql = fingerprint(
        registry_path=production_repo.registry_location,
        registry=read_sql_registry(production_repo.registry_url, "fraud"),
        **common,
    )
    from_file = fingerprint(registry_path=local.registry_path, **common)
    for part in ("service", "views", "entities", "sources"):
        assert from_sql[part] == from_file[part], part
    assert len(from_sql["views"]) >= 3
    assert read_registry(local.registry_path).feature_services  # the file reader, unchanged


def test_the_feature_change_sensor_sees_a_mutation_in_the_sql_registry(
    production_repo: FeastStore, data_dir: Path, tmp_path: Path
) -> None:
    spec = lgbm_spec(name="fraud_prod")
    audit = AuditTrail(path=str(tmp_path / "audit" / "audit.jsonl"))
    missing = run_feature_change_tick(spec, feast=production_repo, audit=audit, cursor=None)
    assert "does not exist yet" in missing.reason
    assert "***" in missing.reason or "@" not in missing.reason  # no password in the message
    production_repo.store().apply(fraud_feature_objects(data_dir))
    first = run_feature_change_tick(spec, feast=production_repo, audit=audit, cursor=None)
    assert first.run_key is None
    assert first.cursor is not None
    same = run_feature_change_tick(spec, feast=production_repo, audit=audit, cursor=first.cursor)
    assert same.run_key is None
    assert "nothing changed" in same.reason

    objects = fraud_feature_objects(data_dir)
    for obj in objects:
        if getattr(obj, "name", "") == "customer_velocity":
            obj.ttl = timedelta(days=3)
    production_repo.store().apply(objects)
    changed = run_feature_change_tick(spec, feast=production_repo, audit=audit, cursor=first.cursor)
    assert changed.run_key is not None
    assert any("customer_velocity" in m for m in changed.mutations), changed.mutations
    assert changed.audited


def test_materialize_loads_redis_and_the_fingerprint_sees_it(
    production_repo: FeastStore, data_dir: Path, redis_server: LocalRedis
) -> None:
    import redis

    production_repo.store().apply(fraud_feature_objects(data_dir))
    url = production_repo.registry_url
    before = fingerprint(
        registry_path="sql",
        registry=read_sql_registry(url, "fraud"),
        project="fraud",
        feature_service="fraud_v1",
        data_dir=data_dir,
    )
    end = datetime(2024, 1, DAYS, 23, 59, 59, 999999, tzinfo=UTC)
    production_repo.materialize(end, feature_views=["customer_velocity"])
    vel = read_parquet_dir(data_dir / "customer_velocity")
    last = vel[vel["event_timestamp"] == vel["event_timestamp"].max()].iloc[0]
    online = production_repo.store().get_online_features(
        features=["customer_velocity:tx_count_7d"],
        entity_rows=[{"customer_id": int(last["customer_id"])}],
    )
    assert online.to_dict()["tx_count_7d"] == [int(last["tx_count_7d"])]
    assert redis.Redis.from_url(redis_server.url()).dbsize() > 0  # the values are in Redis
    after = fingerprint(
        registry_path="sql",
        registry=read_sql_registry(url, "fraud"),
        project="fraud",
        feature_service="fraud_v1",
        data_dir=data_dir,
    )
    assert "customer_velocity" in after["materialized"]
    assert "customer_velocity" not in before.get("materialized", {})
    assert any("materializ" in m for m in diff(before, after)), diff(before, after)
