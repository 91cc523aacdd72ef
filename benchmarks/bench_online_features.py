"""What an online feature lookup costs: Feast's ``get_online_features`` on SQLite vs Redis.

The groundwork for online features at serving time (issue 16, item 5): before the gateway looks
up a request's features by entity key, this measures what one lookup costs with Feast's own
Python SDK, in one run, on the embedded default (the SQLite online store) and on production's
(a real redis-server with a password, started here on 127.0.0.1 by
:class:`lockgate._util.services.LocalRedis`). Both stores hold the same materialized values of
the fraud example's feature service ``fraud_v1`` (four views, three entities); each lookup asks
for the whole service for ``--rows`` entity rows taken from the newest transactions. The stores
alternate over ``--rounds``; the table is the median over rounds of each round's median and p90.

``through_gateway``: the same lookups as the gateway serves them
(:mod:`lockgate.gateway.online_features`): an in-process gateway app (the prediction log
flushed, not fsynced) before an in-process upstream that answers at once, called with the entity
keys (``keys/<rows>``: decode, lookup in a thread, wire encoding, forward, log) and, as the
baseline, with the same features by name (``features/<rows>``); ``lookup_overhead_ms`` is the
difference of the medians: what serving from the online store adds to a request.

Run: ``.venv/bin/python benchmarks/bench_online_features.py [--rounds 5] [--lookups 200]``;
results in ``benchmarks/results/online_features.json``. Needs redis-server
(``scripts/services.sh install``).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import document_head, write_json

FEATURE_STORE_YAML = """\
project: fraud
provider: local
registry:
  path: {registry}
  cache_ttl_seconds: 600
online_store:
  type: redis
  connection_string: {redis}
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""


def _lookups(store: Any, rows: list[dict[str, Any]], n_rows: int, lookups: int) -> list[float]:
    service = store.get_feature_service("fraud_v1")
    store.get_online_features(features=service, entity_rows=rows[:n_rows])  # warm
    took = []
    for i in range(lookups):
        start = i % (len(rows) - n_rows)
        batch = rows[start : start + n_rows]
        began = time.perf_counter()
        store.get_online_features(features=service, entity_rows=batch).to_dict()
        took.append((time.perf_counter() - began) * 1e3)
    return took


class _InstantUpstream:
    """A KServe v2 upstream in-process that answers every infer call at once (zeros)."""

    def __init__(self, width: int) -> None:
        self.width = width

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Any = None,
        timeout_s: Any = None,
    ) -> Any:
        import json

        from lockgate.gateway.upstream import UpstreamResponse

        if path.endswith("/config"):
            return UpstreamResponse(200, {}, b'{"max_batch_size": 0}')
        if method == "GET":
            meta = {
                "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, self.width]}],
                "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 1]}],
            }
            return UpstreamResponse(200, {}, json.dumps(meta).encode())
        hlen = int((headers or {}).get("Inference-Header-Content-Length", len(body)))
        n = json.loads(body[:hlen])["inputs"][0]["shape"][0]
        out = {"outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [n, 1],
                            "data": [0.0] * n}]}  # fmt: skip
        return UpstreamResponse(200, {}, json.dumps(out).encode())

    async def aclose(self) -> None:
        return None


async def _asgi_post(app: Any, path: str, body: bytes) -> int:
    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]

    await app(scope, receive, send)
    return status


def _through_gateway(
    feast: Any, root: Path, name: str, rows: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, list[float]]:
    """Median and p90 per round of entity-key and named-feature requests through the app."""
    import asyncio
    import json

    import pandas as pd

    from lockgate.gateway.config import GatewayConfig
    from lockgate.gateway.factory import app_from_config
    from lockgate.gateway.routing import Route
    from lockgate.serving.wire import WireSchema

    store = feast.store()
    service = store.get_feature_service("fraud_v1")
    features = [f.name for p in service.feature_view_projections for f in p.features]
    categorical = {"device_type", "merchant_category"}
    schema = WireSchema.of((f, "categorical" if f in categorical else "numeric") for f in features)
    folder = root / f"gateway_{name}"
    wire = folder / "repo" / "fraud_lgbm-v1" / "1"
    wire.mkdir(parents=True)
    (wire / "wire.json").write_bytes(schema.to_json())
    entry = {"feast_repo": feast.repo_dir, "feature_service": "fraud_v1", "project": feast.project}
    (folder / "online.json").write_text(json.dumps({"fraud_lgbm": entry}))
    config = GatewayConfig(
        state_dir=folder / "state",
        log_dir=folder / "log",
        durability="flush",
        coalesce_inflight=0,
        model_repository=folder / "repo",
        online_features=folder / "online.json",
    )

    def bodies(batch: list[dict[str, Any]]) -> tuple[bytes, bytes]:
        n = len(batch)
        keys = [
            {"name": "transaction_id", "datatype": "BYTES", "shape": [n],
             "data": [r["transaction_id"] for r in batch]},
            *({"name": k, "datatype": "INT64", "shape": [n], "data": [r[k] for r in batch]}
              for k in ("customer_id", "merchant_id")),
        ]  # fmt: skip
        frame = pd.DataFrame(
            store.get_online_features(features=service, entity_rows=batch).to_dict()
        )
        named = [
            {"name": f, "datatype": "BYTES" if f in categorical else "FP64", "shape": [n],
             "data": [None if pd.isna(v) else (str(v) if f in categorical else float(v))
                      for v in frame[f]]}
            for f in features
        ]  # fmt: skip
        return json.dumps({"inputs": keys}).encode(), json.dumps({"inputs": named}).encode()

    async def run() -> dict[str, list[float]]:
        app = app_from_config(config, upstream=_InstantUpstream(len(features)))
        app.routes.set("fraud_lgbm", Route.parse({"mode": "single", "champion": "v1"}))
        await app.startup()
        out: dict[str, list[float]] = {}
        try:
            path = "/v2/models/fraud_lgbm/infer"
            for n_rows in args.rows:
                requests = [bodies(rows[i : i + n_rows]) for i in range(0, 20 * n_rows, n_rows)]
                for kind, index in (("keys", 0), ("features", 1)):
                    assert await _asgi_post(app, path, requests[0][index]) == 200  # warm
                    took = []
                    for i in range(args.lookups):
                        body = requests[i % len(requests)][index]
                        began = time.perf_counter()
                        status = await _asgi_post(app, path, body)
                        took.append((time.perf_counter() - began) * 1e3)
                        assert status == 200, status
                    out[f"{kind}/{n_rows}/median"] = [statistics.median(took)]
                    out[f"{kind}/{n_rows}/p90"] = [sorted(took)[int(0.9 * len(took))]]
        finally:
            await app.shutdown()
        return out

    return asyncio.run(run())


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the example's package
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--out", default="benchmarks/results/online_features.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    load_before = os.getloadavg()

    from lockgate._util.dataio import read_parquet_dir
    from lockgate._util.services import LocalRedis
    from lockgate.features.store import FeastStore
    from pipelines.feature_repo.fraud import fraud_feature_objects
    from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

    root = Path(tempfile.mkdtemp(prefix="lockgate-bench-online-"))
    data = root / "data"
    generate_fraud_data(
        data, days=3, config=FraudDataConfig(seed=8, n_customers=2000, tx_per_day=2000)
    )
    end = datetime(2024, 1, 3, 23, 59, tzinfo=UTC)
    tx = read_parquet_dir(data / "transactions")
    keys = tx[["transaction_id", "customer_id", "merchant_id"]].tail(2000)
    rows = [
        {k: (v if isinstance(v, str) else int(v)) for k, v in r.items()}
        for r in keys.to_dict("records")
    ]
    results: dict[str, dict[str, list[float]]] = {}
    with LocalRedis(root=str(root / "redis")) as redis_server:
        repo = root / "redis_repo"
        repo.mkdir()
        (repo / "feature_store.yaml").write_text(
            FEATURE_STORE_YAML.format(
                registry=root / "redis_registry.db", redis=redis_server.connection_string
            )
        )
        stores = {
            "sqlite": FeastStore(repo_dir=str(root / "sqlite"), project="fraud"),
            "redis": FeastStore(repo_dir=str(repo)),
        }
        opened = {}
        for name, feast in stores.items():
            opened[name] = feast.store()
            opened[name].apply(fraud_feature_objects(data))
            feast.materialize(end)
        gateway: dict[str, list[float]] = {}
        for round_no in range(args.rounds):
            order = list(opened) if round_no % 2 == 0 else list(reversed(opened))
            for name in order:
                for n_rows in args.rows:
                    took = _lookups(opened[name], rows, n_rows, args.lookups)
                    cell = results.setdefault(f"{name}/{n_rows}", {"median": [], "p90": []})
                    cell["median"].append(statistics.median(took))
                    cell["p90"].append(sorted(took)[int(0.9 * len(took))])
                run = _through_gateway(stores[name], root / f"r{round_no}", name, rows, args)
                for key, values in run.items():
                    gateway.setdefault(f"{name}/{key}", []).extend(values)
    table = {
        key: {
            "median_ms": round(statistics.median(v["median"]), 3),
            "p90_ms": round(statistics.median(v["p90"]), 3),
        }
        for key, v in results.items()
    }
    document = {
        **document_head("online_features", load_before),
        "feast_sdk": "FeatureStore.get_online_features(features=<service fraud_v1>, entity_rows)",
        "rounds": args.rounds,
        "lookups_per_round": args.lookups,
        "results": table,
        "through_gateway": _gateway_table(gateway, args.rows),
        "redis_over_sqlite": {
            str(n): round(table[f"redis/{n}"]["median_ms"] / table[f"sqlite/{n}"]["median_ms"], 2)
            for n in args.rows
        },
        "command": "python benchmarks/bench_online_features.py "
        + f"--rounds {args.rounds} --lookups {args.lookups}",
    }
    write_json(args.out, document)
    print(f"{'store/rows':<12} {'median ms':>10} {'p90 ms':>8}")
    for key, cell in table.items():
        print(f"{key:<12} {cell['median_ms']:>10.3f} {cell['p90_ms']:>8.3f}")
    print("through the gateway (median / p90 ms per request)")
    for key, cell in document["through_gateway"].items():
        print(f"{key:<12} {cell}")


def _gateway_table(gateway: dict[str, list[float]], rows: list[int]) -> dict[str, Any]:
    """Per store and rows: keys and features median/p90 (median over rounds), the overhead."""
    table: dict[str, Any] = {}
    for store in ("sqlite", "redis"):
        for n in rows:
            cell = {
                f"{kind}_{stat}_ms": round(
                    statistics.median(gateway[f"{store}/{kind}/{n}/{stat}"]), 3
                )
                for kind in ("keys", "features")
                for stat in ("median", "p90")
            }
            cell["lookup_overhead_ms"] = round(
                cell["keys_median_ms"] - cell["features_median_ms"], 3
            )
            table[f"{store}/{n}"] = cell
    return table


if __name__ == "__main__":
    main()
