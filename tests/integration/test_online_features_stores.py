"""Entity-key requests through the gateway, against real Feast online stores.

The fraud example's Feast objects over small generated data, materialized into the embedded
default (a store built in code: file registry, SQLite online store) and into production's
(a Feast repository whose ``feature_store.yaml`` names a password-protected redis-server). The
gateway app runs in-process before a fake KServe upstream that records the wire matrix it
receives; the features come from the real stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lockgate._util.dataio import read_parquet_dir
from lockgate._util.services import LocalRedis
from lockgate.features.store import FeastStore
from lockgate.gateway.app import GatewayApp
from lockgate.gateway.config import GatewayConfig
from lockgate.gateway.errors import GatewayError
from lockgate.gateway.factory import app_from_config
from lockgate.gateway.predlog import read_prediction_log
from lockgate.gateway.process import GatewayServer
from lockgate.serving.wire import WireSchema, encode
from pipelines.feature_repo import FRAUD_DEFINITIONS
from pipelines.feature_repo.fraud import fraud_feature_objects
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data
from tests.gateway.test_gateway import (
    ADMIN_TOKEN,
    AsgiUpstream,
    FakeModel,
    FakeTriton,
    Resp,
    call,
    put_route,
    serve_fake,
)

pytestmark = pytest.mark.integration

SMALL = FraudDataConfig(seed=8, n_customers=200, n_merchants=30, tx_per_day=200)
DAYS = 3
END = datetime(2024, 1, DAYS, 23, 59, 59, 999999, tzinfo=UTC)
MODEL = "fraud_lgbm"
KEYS = ("transaction_id", "customer_id", "merchant_id")
FEATURES = [
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
CATEGORICAL = {"device_type", "merchant_category"}
# the version's wire schema: fraud_v1's features, in service order (as training writes it)
SCHEMA = WireSchema.of((f, "categorical" if f in CATEGORICAL else "numeric") for f in FEATURES)

REDIS_YAML = """\
project: online_gateway
provider: local
registry:
  path: {registry}
  cache_ttl_seconds: 0
online_store:
  type: redis
  connection_string: {redis}
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("online_src") / "data"
    generate_fraud_data(root, days=DAYS, config=SMALL)
    return root


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> FeastStore:
    """The embedded default: a store built in code, applied and materialized."""
    store = FeastStore(
        repo_dir=str(tmp_path_factory.mktemp("online_sqlite")),
        data_dir=str(data_dir),
        definitions=FRAUD_DEFINITIONS,
    )
    store.apply()
    store.materialize(END)
    return store


def _redis_repo(folder: Path, data_dir: Path, connection_string: str) -> FeastStore:
    folder.mkdir(parents=True)
    (folder / "feature_store.yaml").write_text(
        REDIS_YAML.format(registry=folder / "registry.db", redis=connection_string)
    )
    store = FeastStore(repo_dir=str(folder))
    store.store().apply(fraud_feature_objects(data_dir))
    return store


@pytest.fixture(scope="module")
def redis_store(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, redis_server: LocalRedis
) -> FeastStore:
    """Production's online store: a Feast repository on the real redis-server, materialized."""
    root = tmp_path_factory.mktemp("online_redis")
    store = _redis_repo(root / "repo", data_dir, redis_server.connection_string)
    store.materialize(END)
    return store


@pytest.fixture(params=["sqlite", "redis"])
def feast(request: pytest.FixtureRequest) -> FeastStore:
    store: FeastStore = request.getfixturevalue(f"{request.param}_store")
    return store


@pytest.fixture(scope="module")
def entity_rows(data_dir: Path) -> list[dict[str, Any]]:
    """The newest transactions' keys (the store holds their features), then unknown ones."""
    tx = read_parquet_dir(data_dir / "transactions").sort_values("event_timestamp")
    rows = [
        {"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
         "merchant_id": int(r.merchant_id)}
        for r in tx.tail(5).itertuples()
    ]  # fmt: skip
    rows.append({"transaction_id": "no-such-tx", "customer_id": rows[0]["customer_id"],
                 "merchant_id": 10**9})  # fmt: skip
    return rows


def online_frame(feast: FeastStore, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """What Feast's own SDK returns for the rows (the reference the gateway must match)."""
    store = feast.store()
    service = store.get_feature_service("fraud_v1")
    return pd.DataFrame(store.get_online_features(features=service, entity_rows=rows).to_dict())


def write_config(folder: Path, feast: FeastStore, **extra: Any) -> Path:
    """The online-features file: the model's Feast repository and feature service."""
    entry = {"feast_repo": feast.repo_dir, "feature_service": "fraud_v1", **extra}
    if feast.project:
        entry["project"] = feast.project
    path = folder / "online_features.json"
    path.write_text(json.dumps({MODEL: entry}))
    return path


def write_wire(repo: Path, version: str = "v1") -> Path:
    folder = repo / f"{MODEL}-{version}" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wire.json").write_bytes(SCHEMA.to_json())
    return repo


def fake_upstream() -> FakeTriton:
    return FakeTriton({f"{MODEL}-v1": FakeModel(0.0, width=len(FEATURES))})


@contextlib.asynccontextmanager
async def running(tmp_path: Path, fake: FakeTriton, online: Path) -> AsyncIterator[GatewayApp]:
    config = GatewayConfig(
        state_dir=tmp_path / "state",
        log_dir=tmp_path / "log",
        durability="flush",
        model_repository=write_wire(tmp_path / "repo"),
        online_features=online,
    )
    app = app_from_config(config, upstream=AsgiUpstream(fake), admin_token=ADMIN_TOKEN)
    await app.startup()
    try:
        await put_route(app, {"mode": "single", "champion": "v1"})
        yield app
    finally:
        await app.shutdown()


def keys_json(rows: list[dict[str, Any]], **header: Any) -> bytes:
    n = len(rows)
    inputs = [
        {"name": "transaction_id", "datatype": "BYTES", "shape": [n],
         "data": [r["transaction_id"] for r in rows]},
        {"name": "customer_id", "datatype": "INT64", "shape": [n, 1],
         "data": [[r["customer_id"]] for r in rows]},
        {"name": "merchant_id", "datatype": "INT32", "shape": [n],
         "data": [r["merchant_id"] for r in rows]},
    ]  # fmt: skip
    return json.dumps({"inputs": inputs, **header}).encode()


def keys_binary(rows: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
    """tritonclient's default form: every tensor as binary data after the JSON header."""
    n = len(rows)
    blobs = [
        b"".join(
            struct.pack("<I", len(b)) + b for b in (r["transaction_id"].encode() for r in rows)
        ),
        np.array([r["customer_id"] for r in rows], "<i8").tobytes(),
        np.array([r["merchant_id"] for r in rows], "<u8").tobytes(),
    ]
    inputs = [
        {"name": name, "datatype": datatype, "shape": [n],
         "parameters": {"binary_data_size": len(blob)}}
        for name, datatype, blob in zip(KEYS, ["BYTES", "INT64", "UINT64"], blobs, strict=True)
    ]  # fmt: skip
    head = json.dumps({"inputs": inputs}).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


PATH = f"/v2/models/{MODEL}/infer"


def test_entity_keys_are_served_with_the_features_feast_returns(
    tmp_path: Path, feast: FeastStore, entity_rows: list[dict[str, Any]]
) -> None:
    fake = fake_upstream()
    expected = online_frame(feast, entity_rows)
    want = encode(expected, SCHEMA)

    async def scenario() -> list[Resp]:
        async with running(tmp_path, fake, write_config(tmp_path, feast)) as app:
            body, headers = keys_binary(entity_rows)
            return [
                await call(app, "POST", PATH, keys_json(entity_rows, id="r1"),
                           {"x-lockgate-trace-id": "json"}),
                await call(app, "POST", PATH, body, {**headers, "x-lockgate-trace-id": "bin"}),
            ]  # fmt: skip

    answers = asyncio.run(scenario())
    for answer in answers:
        assert answer.status == 200, answer.body
    assert answers[0].json()["id"] == "r1"
    received = fake.models[f"{MODEL}-v1"].received
    assert len(received) == 2
    np.testing.assert_array_equal(received[0], want)  # exactly wire.encode of Feast's values
    np.testing.assert_array_equal(received[1], want)
    # the known transactions have their features; the unknown entities' are missing (NaN)
    known, unknown = want[:-1], want[-1]
    assert not np.isnan(known).any(), expected
    tx_columns = [SCHEMA.names.index(f) for f in ("amount", "device_type", "hour_of_day")]
    assert np.isnan(unknown[tx_columns]).all()
    assert np.isnan(unknown[SCHEMA.names.index("merchant_fraud_rate_30d")])
    assert not np.isnan(unknown[SCHEMA.names.index("age")])  # the customer exists
    log = read_prediction_log(tmp_path / "log", MODEL).set_index("trace_id")
    for trace in ("json", "bin"):
        np.testing.assert_array_equal(np.stack(log.loc[trace].inputs), want)  # the full vector
        assert json.loads(log.loc[trace].entity_keys) == {
            k: [r[k] for r in entity_rows] for k in KEYS
        }


def test_feature_requests_still_work_and_neither_form_names_the_keys(
    tmp_path: Path, sqlite_store: FeastStore, entity_rows: list[dict[str, Any]]
) -> None:
    fake = fake_upstream()
    frame = online_frame(sqlite_store, entity_rows[:2])
    named = [
        {"name": f, "datatype": "BYTES" if f in CATEGORICAL else "FP64", "shape": [2],
         "data": [None if pd.isna(v) else (str(v) if f in CATEGORICAL else float(v))
                  for v in frame[f]]}
        for f in FEATURES
    ]  # fmt: skip

    async def scenario() -> dict[str, Resp]:
        async with running(tmp_path, fake, write_config(tmp_path, sqlite_store)) as app:
            bad_type = json.loads(keys_json(entity_rows[:1]))
            bad_type["inputs"][1].update(datatype="BYTES", data=["7"])
            null_key = json.loads(keys_json(entity_rows[:1]))
            null_key["inputs"][2]["data"] = [None]
            amount_only = {"inputs": [named[0]]}
            keys_and_feature = json.loads(keys_json(entity_rows[:2]))
            keys_and_feature["inputs"].append(named[0])
            return {
                "named": await call(app, "POST", PATH, json.dumps({"inputs": named}).encode()),
                "amount_only": await call(app, "POST", PATH, json.dumps(amount_only).encode()),
                "mixed": await call(app, "POST", PATH, json.dumps(keys_and_feature).encode()),
                "bad_type": await call(app, "POST", PATH, json.dumps(bad_type).encode()),
                "null_key": await call(app, "POST", PATH, json.dumps(null_key).encode()),
            }

    answers = asyncio.run(scenario())
    assert answers["named"].status == 200, answers["named"].body
    np.testing.assert_array_equal(fake.models[f"{MODEL}-v1"].received[0], encode(frame, SCHEMA))
    for case in ("amount_only", "mixed"):
        error = answers[case].json()["error"]
        assert answers[case].status == 400
        assert "lacks feature(s)" in error or "is not a feature" in error, error
        keys = "transaction_id (BYTES), customer_id (INT64), merchant_id (INT64)"
        assert f"also takes its entity keys alone ({keys})" in error, error
    error = answers["bad_type"].json()["error"]
    assert answers["bad_type"].status == 400
    assert "entity key 'customer_id'" in error, error
    assert "datatype 'BYTES'" in error, error
    error = answers["null_key"].json()["error"]
    assert answers["null_key"].status == 400
    assert "entity key 'merchant_id' got 'None'" in error, error
    assert len(fake.models[f"{MODEL}-v1"].received) == 1  # refused requests never go upstream


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_down_store_is_503_and_a_slow_lookup_504_naming_the_store(
    tmp_path: Path, data_dir: Path, sqlite_store: FeastStore, entity_rows: list[dict[str, Any]]
) -> None:
    fake = fake_upstream()
    down = _redis_repo(tmp_path / "down", data_dir, f"127.0.0.1:{_free_port()}")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    async def scenario() -> list[Resp]:
        answers = []
        # redis-py retries a refused connection for about 4 s before it raises
        down_config = write_config(tmp_path, down, timeout_s=30)
        async with running(tmp_path / "a", fake, down_config) as app:
            answers.append(await call(app, "POST", PATH, keys_json(entity_rows[:1])))
        slow = write_config(tmp_path, sqlite_store, timeout_s=1e-6)
        async with running(tmp_path / "b", fake, slow) as app:
            answers.append(await call(app, "POST", PATH, keys_json(entity_rows[:1])))
        return answers

    unreachable, slow = asyncio.run(scenario())
    assert unreachable.status == 503, unreachable.body
    error = unreachable.json()["error"]
    assert "Feast online store 'redis'" in error, error
    assert str(down.repo_dir) in error, error
    assert "cannot be reached" in error, error
    assert "Traceback" not in error
    assert slow.status == 504, slow.body
    assert "took longer than 1e-06 s" in slow.json()["error"]
    assert "Feast online store 'sqlite'" in slow.json()["error"]
    assert not fake.models[f"{MODEL}-v1"].received
    log = read_prediction_log(tmp_path / "a" / "log", MODEL)
    failed = log[log.status == 503]  # the failure is logged like any answer, with its keys
    assert len(failed) == 1
    assert json.loads(failed.iloc[0].entity_keys)["transaction_id"] == [
        entity_rows[0]["transaction_id"]
    ]


def test_an_unknown_feature_service_fails_startup_naming_the_known_ones(
    tmp_path: Path, sqlite_store: FeastStore
) -> None:
    path = tmp_path / "online.json"
    path.write_text(json.dumps({MODEL: {"feast_repo": sqlite_store.repo_dir,
                                        "feature_service": "fraud_v9"}}))  # fmt: skip

    async def scenario() -> None:
        async with running(tmp_path, fake_upstream(), path):
            pass

    with pytest.raises(GatewayError) as caught:
        asyncio.run(scenario())
    message = str(caught.value)
    assert "online features of model 'fraud_lgbm'" in message
    assert "'fraud_v9' does not exist" in message
    assert "known services: ['fraud_v1', 'fraud_v2']" in message


class OnlineGatewayServer(GatewayServer):
    """The gateway process with ``--online-features`` (the launcher does not pass it yet)."""

    online_features: str

    def config(self) -> GatewayConfig:
        return super().config().model_copy(update={"online_features": Path(self.online_features)})


def test_a_gateway_process_serves_entity_keys_from_redis(
    tmp_path: Path, redis_store: FeastStore, entity_rows: list[dict[str, Any]]
) -> None:
    fake = fake_upstream()
    want = encode(online_frame(redis_store, entity_rows), SCHEMA)
    with serve_fake(fake) as url:
        server = OnlineGatewayServer(
            state_dir=str(tmp_path / "gw"),
            log_dir=str(tmp_path / "log"),
            upstream_url=url,
            durability="flush",
            model_repository=str(write_wire(tmp_path / "repo")),
            online_features=str(write_config(tmp_path, redis_store)),
        )
        with server:
            server.set_route(MODEL, {"mode": "single", "champion": "v1"})
            request = urllib.request.Request(
                f"{server.url}{PATH}",
                data=keys_json(entity_rows),
                headers={"Content-Type": "application/json", "x-lockgate-trace-id": "proc"},
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
                assert answer.headers["x-lockgate-model-version"] == "v1"
    np.testing.assert_array_equal(fake.models[f"{MODEL}-v1"].received[0], want)
    log = read_prediction_log(tmp_path / "log", MODEL).set_index("trace_id")
    assert json.loads(log.loc["proc"].entity_keys)["customer_id"] == [
        r["customer_id"] for r in entity_rows
    ]
    np.testing.assert_array_equal(np.stack(log.loc["proc"].inputs), want)
