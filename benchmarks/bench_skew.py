"""What the training/serving skew report and the online store's incremental load cost.

The fraud example's Feast objects over generated data whose last day is today, in a store built
in code (file registry, SQLite online store, DuckDB offline store):

* ``materialize_incremental``: :func:`lockgate.features.materialize.materialize_incremental` of
  ``fraud_v1``'s four views up to now (first load: each view from ``ttl`` before now), and a
  second run right after it (nothing new: the cost of an idle scheduled run);
* ``report/<rows>``: :func:`lockgate.monitoring.skew.compute_skew_report` over a prediction log of
  ``<rows>`` served entity rows (ten per request, in the gateway's Parquet layout, the served
  vectors being Feast's online values encoded to the wire): ``read_s`` reading the log's
  entity-key rows, ``total_s`` the whole report, dominated by Feast's point-in-time historical
  retrieval of the same rows;
* ``compare/<rows>``: the pure comparison (:func:`lockgate.monitoring.skew.compare_served`) of
  ``<rows>`` rows of 15 features.

Run: ``.venv/bin/python benchmarks/bench_skew.py [--rows 1000,10000] [--compare-rows 100000]``;
results in ``benchmarks/results/skew.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import document_head, write_json

ROOT = Path(__file__).resolve().parents[1]
MODEL = "fraud_lgbm"
PER_REQUEST = 10


def _schema(store: Any) -> Any:
    from lockgate.serving.wire import WireSchema

    service = store.store().get_feature_service("fraud_v1")
    return WireSchema.of(
        (f.name, "categorical" if str(f.dtype) == "String" else "numeric")
        for p in service.feature_view_projections
        for f in p.features
    )


def _build_log(store: Any, schema: Any, data_dir: Path, rows: int, log_dir: Path) -> None:
    """``rows`` served entity rows (newest transactions, sampled) as one Parquet part."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lockgate._util.dataio import read_parquet_dir
    from lockgate.gateway.predlog import prediction_log_schema
    from lockgate.serving.wire import encode

    tx = read_parquet_dir(data_dir / "transactions")
    now = pd.Timestamp.now(tz="UTC")
    recent = tx[(tx["event_timestamp"] > now - pd.Timedelta(hours=20))
                & (tx["event_timestamp"] < now - pd.Timedelta(minutes=1))]  # fmt: skip
    picked = recent.sample(n=rows, replace=len(recent) < rows, random_state=0)
    keys = [
        {"transaction_id": str(r.transaction_id), "customer_id": int(r.customer_id),
         "merchant_id": int(r.merchant_id)}
        for r in picked.itertuples()
    ]  # fmt: skip
    feast = store.store()
    service = feast.get_feature_service("fraud_v1")
    served = np.concatenate(
        [
            encode(
                pd.DataFrame(
                    feast.get_online_features(
                        features=service, entity_rows=keys[i : i + 1000]
                    ).to_dict()
                ),
                schema,
            )
            for i in range(0, rows, 1000)
        ]
    )
    records = rows // PER_REQUEST
    ts0 = int(now.timestamp() * 1e6) - records * 1000
    sch = prediction_log_schema()
    entity_keys = [
        json.dumps(
            {k: [r[k] for r in keys[i * PER_REQUEST : (i + 1) * PER_REQUEST]] for k in keys[0]}
        )
        for i in range(records)
    ]
    inputs = [served[i * PER_REQUEST : (i + 1) * PER_REQUEST].tolist() for i in range(records)]
    columns = {
        "trace_id": pa.array([f"t{i}" for i in range(records)]),
        "request_id": pa.nulls(records, pa.string()),
        "ts": pa.array(ts0 + 1000 * np.arange(records, dtype=np.int64)).cast(
            pa.timestamp("us", tz="UTC")
        ),
        "model": pa.array([MODEL] * records),
        "version": pa.array(["v1"] * records),
        "routed_by": pa.array(["single"] * records),
        "shadow": pa.array(np.zeros(records, dtype=bool)),
        "status": pa.array(np.full(records, 200, dtype=np.int32)),
        "error": pa.nulls(records, pa.string()),
        "latency_ms": pa.array(np.full(records, 1.5)),
        "inputs": pa.array(inputs, sch.field("inputs").type),
        "outputs": pa.array([[[0.1]] * PER_REQUEST] * records, sch.field("outputs").type),
        "shadow_abs_diff": pa.nulls(records, pa.list_(pa.float32())),
        "entity_keys": pa.array(entity_keys),
    }
    table = pa.Table.from_arrays([columns[n] for n in sch.names], schema=sch)
    folder = log_dir / MODEL / f"date={now:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"part-{ts0:020d}.parquet")


def _compare(rows: int) -> float:
    import pandas as pd

    from lockgate.monitoring.skew import SkewPolicy, compare_served

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(15)]
    offline = pd.DataFrame(rng.normal(size=(rows, 15)), columns=names)
    served = offline.copy()
    served.iloc[: rows // 50, 3] += 1.0
    kinds = {n: "categorical" if i in (4, 13) else "numeric" for i, n in enumerate(names)}
    start = time.perf_counter()
    compare_served(served, offline, kinds, SkewPolicy())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,10000", help="served rows per report, comma list")
    parser.add_argument("--compare-rows", type=int, default=100_000)
    parser.add_argument("--tx-per-day", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/skew.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    load = os.getloadavg()

    from lockgate.features.materialize import materialize_incremental
    from lockgate.features.store import FeastStore
    from lockgate.monitoring.skew import SkewPolicy, compute_skew_report, read_entity_rows
    from lockgate.spec import LabelSource, ModelPipeline
    from lockgate.training import LightGBMTrainer
    from pipelines.feature_repo import FRAUD_DEFINITIONS
    from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

    today = dt.datetime.now(dt.UTC).date()
    config = FraudDataConfig(
        seed=3, n_customers=2000, n_merchants=100, tx_per_day=args.tx_per_day,
        start_date=today - dt.timedelta(days=2),
    )  # fmt: skip
    spec = ModelPipeline(
        name=MODEL, feature_service="fraud_v1", label="is_fraud",
        labels=LabelSource(entity_columns=("transaction_id",)), trainer=LightGBMTrainer(),
    )  # fmt: skip
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_skew_") as tmp:
        work = Path(tmp)
        generate_fraud_data(work / "data", days=3, config=config)
        store = FeastStore(
            repo_dir=str(work / "feast"), data_dir=str(work / "data"), definitions=FRAUD_DEFINITIONS
        )
        store.apply()
        schema = _schema(store)
        for run in ("first", "idle"):
            start = time.perf_counter()
            loaded = materialize_incremental(store, "fraud_v1")
            results[f"materialize_incremental/{run}"] = {
                "seconds": round(time.perf_counter() - start, 3),
                "entities_written": loaded["rows"],
            }
            print(run, results[f"materialize_incremental/{run}"], flush=True)
        for rows in (int(r) for r in args.rows.split(",")):
            log_dir = work / f"log{rows}"
            _build_log(store, schema, work / "data", rows, log_dir)
            policy = SkewPolicy(window_rows=rows)
            start = time.perf_counter()
            read = read_entity_rows(log_dir, MODEL, limit=rows)
            read_s = time.perf_counter() - start
            start = time.perf_counter()
            report = compute_skew_report(
                spec, feast=store, log_dir=log_dir, schema_for=lambda v: schema, policy=policy
            )
            total_s = time.perf_counter() - start
            results[f"report/{rows}"] = {
                "rows": len(read),
                "read_s": round(read_s, 3),
                "total_s": round(total_s, 3),
                "rows_per_s": round(rows / total_s),
                "level": report["level"],
            }
            print(rows, results[f"report/{rows}"], flush=True)
        seconds = _compare(args.compare_rows)
        results[f"compare/{args.compare_rows}"] = {
            "seconds": round(seconds, 3),
            "rows_per_s": round(args.compare_rows / seconds),
        }
    document = {
        **document_head("skew", load),
        "command": "benchmarks/bench_skew.py " + " ".join(sys.argv[1:]),
        "data": {"days": 3, "tx_per_day": args.tx_per_day, "customers": 2000},
        "results": results,
    }
    write_json(args.out, document)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
