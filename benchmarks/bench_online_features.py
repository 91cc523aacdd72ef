"""What an online feature lookup costs: Feast's ``get_online_features`` on SQLite vs Redis.

The groundwork for online features at serving time (issue 16, item 5): before the gateway looks
up a request's features by entity key, this measures what one lookup costs with Feast's own
Python SDK, in one run, on the embedded default (the SQLite online store) and on production's
(a real redis-server with a password, started here on 127.0.0.1 by
:class:`lockgate._util.services.LocalRedis`). Both stores hold the same materialized values of
the fraud example's feature service ``fraud_v1`` (four views, three entities); each lookup asks
for the whole service for ``--rows`` entity rows taken from the newest transactions. The stores
alternate over ``--rounds``; the table is the median over rounds of each round's median and p90.

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import document_head, write_json

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


def main() -> None:
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
        for round_no in range(args.rounds):
            order = list(opened) if round_no % 2 == 0 else list(reversed(opened))
            for name in order:
                for n_rows in args.rows:
                    took = _lookups(opened[name], rows, n_rows, args.lookups)
                    cell = results.setdefault(f"{name}/{n_rows}", {"median": [], "p90": []})
                    cell["median"].append(statistics.median(took))
                    cell["p90"].append(sorted(took)[int(0.9 * len(took))])
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


if __name__ == "__main__":
    main()
