"""Streaming drift over a 10M-row prediction log with bounded memory.

Builds a prediction log in the gateway's on-disk layout
(``<log_dir>/<model>/date=YYYY-MM-DD/part-<20-digit seq>.parquet``, schema
``prediction_log_schema()``, one request of ``--rows-per-request`` rows per record, 20 numeric
input features and one output), then, in a child process whose peak RSS is measured, streams it
with ``iter_prediction_log(columns=["inputs", "outputs"])`` into a ``DriftAccumulator`` against a
1M-row reference (the 20 inputs and the output score: 21 features). The parent then runs the
in-memory engine (``frame_drift``) on the same current rows and checks the streamed result
equals it (KS, p-value, PSI, JSD, missing shares exactly; Wasserstein within the accumulator's
error bound). Writes ``benchmarks/results/drift_stream.json`` and deletes the log.

Example:
    .venv/bin/python benchmarks/bench_drift_stream.py --rows 10000000 --ref-rows 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import numpy_machine, write_json

MODEL = "fraud"
FEATURES = 20


def _names(features: int) -> list[str]:
    return [f"f{i:02d}" for i in range(features)] + ["score"]


def _current_part(part: int, rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Current inputs (rows x features, float32: the wire format) and outputs (rows x 1)."""
    rng = np.random.default_rng([seed, part])
    shift = 0.05 * (np.arange(features) % 4)
    inputs = (rng.standard_normal((rows, features), dtype=np.float32) + shift).astype(np.float32)
    inputs[:, 1] = np.round(inputs[:, 1], 1)  # a feature with heavy ties
    inputs[rng.random(rows) < 0.01, 2] = np.nan  # and one with missing values
    outputs = (1 / (1 + np.exp(-inputs[:, :4].sum(axis=1, dtype=np.float32)))).astype(np.float32)
    return inputs, outputs.reshape(-1, 1)


def _reference(rows: int, features: int, seed: int) -> np.ndarray:
    """Reference matrix (rows x (features + 1)), float32 like the logged values."""
    rng = np.random.default_rng([seed, 10**6])
    ref = rng.standard_normal((rows, features), dtype=np.float32)
    ref[:, 1] = np.round(ref[:, 1], 1)
    ref[rng.random(rows) < 0.005, 2] = np.nan
    score = 1 / (1 + np.exp(-ref[:, :4].sum(axis=1, dtype=np.float32)))
    return np.column_stack([ref, score.astype(np.float32)])


def _rows_array(matrix: np.ndarray, per_request: int) -> Any:
    """list<list<float32>> of requests of ``per_request`` rows each, built without copies."""
    import pyarrow as pa

    n, d = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    rows = pa.ListArray.from_arrays(pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), values)
    return pa.ListArray.from_arrays(
        pa.array(np.arange(0, n + 1, per_request, dtype=np.int32)), rows
    )


def _build_log(args: argparse.Namespace, log_dir: Path) -> tuple[int, int]:
    """Writes the Parquet parts; returns (parts, bytes on disk)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lockgate.gateway.predlog import LOG_ROW_GROUP_ROWS, prediction_log_schema

    schema = prediction_log_schema()
    day0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    parts = -(-args.rows // args.rows_per_part)
    size = 0
    seq0 = int(day0.timestamp() * 1e6)
    for part in range(parts):
        rows = min(args.rows_per_part, args.rows - part * args.rows_per_part)
        inputs, outputs = _current_part(part, rows, args.features, args.seed)
        records = rows // args.rows_per_request
        day = day0 + dt.timedelta(days=part // 3)
        ts0 = int(day.timestamp() * 1e6) + part * 10**6
        ts = pa.array(ts0 + np.arange(records, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC"))
        trace = pc.binary_join_element_wise(
            f"p{part}-", pc.cast(pa.array(np.arange(records)), pa.string()), ""
        )
        columns = {
            "trace_id": trace,
            "request_id": pa.nulls(records, pa.string()),
            "ts": ts,
            "model": pa.array([MODEL] * records, pa.string()),
            "version": pa.array(["v1"] * records, pa.string()),
            "routed_by": pa.array(["single"] * records, pa.string()),
            "shadow": pa.array(np.zeros(records, dtype=bool)),
            "status": pa.array(np.full(records, 200, dtype=np.int32)),
            "error": pa.nulls(records, pa.string()),
            "latency_ms": pa.array(np.full(records, 1.5)),
            "inputs": _rows_array(inputs, args.rows_per_request),
            "outputs": _rows_array(outputs, args.rows_per_request),
            "shadow_abs_diff": pa.nulls(records, pa.list_(pa.float32())),
        }
        table = pa.Table.from_arrays([columns[n] for n in schema.names], schema=schema)
        folder = log_dir / MODEL / f"date={day:%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{seq0 + part:020d}.parquet"
        pq.write_table(table, path, compression="zstd", row_group_size=LOG_ROW_GROUP_ROWS)
        size += path.stat().st_size
    return parts, size


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(log_dir: str, reference: str, out: str, batch_records: int) -> None:
    """Streams the log into a DriftAccumulator; writes results, timings and own peak RSS."""
    import pandas as pd

    from lockgate.gateway.predlog import iter_prediction_log
    from lockgate.monitoring.drift import DriftAccumulator

    t0 = time.perf_counter()
    ref = np.load(reference)
    names = _names(ref.shape[1] - 1)
    frame = pd.DataFrame(ref, columns=names, copy=False)
    acc = DriftAccumulator(frame, ks_pvalue_method="asymp")
    del frame, ref
    built = time.perf_counter() - t0
    rss = {"after_reference": _peak_rss()}
    t1 = time.perf_counter()
    batches = 0
    for batch in iter_prediction_log(
        log_dir, MODEL, columns=["inputs", "outputs"], batch_rows=batch_records
    ):
        inputs = batch.column(0).flatten().flatten().to_numpy(zero_copy_only=False)
        outputs = batch.column(1).flatten().flatten().to_numpy(zero_copy_only=False)
        matrix = inputs.reshape(outputs.size, -1)
        columns = {name: matrix[:, j] for j, name in enumerate(names[:-1])}
        columns[names[-1]] = outputs
        acc.update(columns)
        batches += 1
    streamed = time.perf_counter() - t1
    rss["after_stream"] = _peak_rss()
    t2 = time.perf_counter()
    results = acc.result()
    finished = time.perf_counter() - t2
    rss["after_result"] = _peak_rss()
    record = {
        "rows": acc.n_current,
        "batches": batches,
        "seconds": {"reference": built, "stream": streamed, "result": finished},
        "peak_rss_bytes_self": _peak_rss(),
        "peak_rss_mib_by_phase": {k: v / 2**20 for k, v in rss.items()},
        "results": [r.to_dict() for r in results],
        "wasserstein_error_bound": {n: acc.wasserstein_error_bound(n) for n in names},
    }
    Path(out).write_text(json.dumps(record))


def _verify(
    args: argparse.Namespace, reference: np.ndarray, streamed: dict[str, Any]
) -> dict[str, Any]:
    """frame_drift on the same current rows (regenerated) vs the streamed results."""
    import pandas as pd

    from lockgate.monitoring.drift import frame_drift

    names = _names(args.features)
    parts = -(-args.rows // args.rows_per_part)
    chunks = []
    for part in range(parts):
        rows = min(args.rows_per_part, args.rows - part * args.rows_per_part)
        inputs, outputs = _current_part(part, rows, args.features, args.seed)
        chunks.append(np.column_stack([inputs, outputs]))
    current = pd.DataFrame(np.concatenate(chunks), columns=names, copy=False)
    del chunks
    t0 = time.perf_counter()
    want = frame_drift(pd.DataFrame(reference, columns=names, copy=False), current)
    seconds = time.perf_counter() - t0
    exact_fields = ("psi", "jsd", "ks", "ks_pvalue", "missing_ref", "missing_cur", "n_ref", "n_cur")
    mismatches = []
    worst_wd = 0.0
    within_bound = True
    by_feature: dict[str, dict[str, float]] = {}
    for got, w in zip(streamed["results"], want, strict=True):
        wd = w.to_dict()
        for field in exact_fields:
            if got[field] != wd[field]:
                mismatches.append(f"{w.feature}.{field}: {got[field]!r} != {wd[field]!r}")
        diff = wd["wasserstein"] - got["wasserstein"]
        bound = streamed["wasserstein_error_bound"][w.feature]
        within_bound &= abs(diff) <= bound + 1e-12 * wd["wasserstein"]
        worst_wd = max(worst_wd, abs(diff) / wd["wasserstein"])
        by_feature[w.feature] = {
            "wasserstein": wd["wasserstein"],
            "rel_diff": diff / wd["wasserstein"],
            "rel_bound": bound / wd["wasserstein"],
        }
    return {
        "rows_compared": len(current),
        "in_memory_seconds": seconds,
        "exact_fields": list(exact_fields),
        "exact_fields_equal": not mismatches,
        "mismatches": mismatches[:10],
        "wasserstein_max_rel_diff": worst_wd,
        "wasserstein_within_bound": within_bound,
        "wasserstein_by_feature": by_feature,
        "wasserstein_max_rel_bound": max(
            streamed["wasserstein_error_bound"][r["feature"]] / r["wasserstein"]
            for r in streamed["results"]
        ),
    }


def main() -> None:
    """Builds the log, streams it in a measured child, verifies, writes the JSON record."""
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="current rows in the log")
    parser.add_argument("--ref-rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=FEATURES)
    parser.add_argument("--rows-per-request", type=int, default=8)
    parser.add_argument("--rows-per-part", type=int, default=800_000, help="~64 MB segments")
    parser.add_argument("--batch-records", type=int, default=8192, help="batch_rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--dir", default=None, help="where to build the log (temp by default)")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "drift_stream.json")
    )
    args = parser.parse_args()
    if args.rows_per_part % args.rows_per_request:
        raise SystemExit("--rows-per-part must be a multiple of --rows-per-request")

    work = Path(tempfile.mkdtemp(prefix="bench_drift_stream_", dir=args.dir))
    try:
        log_dir = work / "log"
        t0 = time.perf_counter()
        parts, disk = _build_log(args, log_dir)
        build_s = time.perf_counter() - t0
        reference = _reference(args.ref_rows, args.features, args.seed)
        np.save(work / "reference.npy", reference)
        out = work / "stream.json"
        print(f"log: {parts} parts, {disk / 2**20:.0f} MiB, built in {build_s:.1f} s", flush=True)
        t1 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(log_dir),
                str(work / "reference.npy"),
                str(out),
                str(args.batch_records),
            ],
            check=True,
        )
        child_wall = time.perf_counter() - t1
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        streamed = json.loads(out.read_text())
        verify = None if args.no_verify else _verify(args, reference, streamed)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = streamed["rows"]
    stream_s = streamed["seconds"]["stream"]
    ok = peak < 2**30 and (
        verify is None or (verify["exact_fields_equal"] and verify["wasserstein_within_bound"])
    )
    record: dict[str, Any] = {
        "rows": rows,
        "reference_rows": args.ref_rows,
        "features": len(_names(args.features)),
        "rows_per_request": args.rows_per_request,
        "batch_records": args.batch_records,
        "batch_rows": args.batch_records * args.rows_per_request,
        "log": {"parts": parts, "bytes_on_disk": disk, "build_seconds": build_s},
        "seconds": {**streamed["seconds"], "child_wall": child_wall},
        "rows_per_second_stream": rows / stream_s,
        "peak_rss_bytes_child": peak,
        "peak_rss_mib_child": peak / 2**20,
        "peak_rss_under_1_gib": peak < 2**30,
        "peak_rss_mib_by_phase": streamed["peak_rss_mib_by_phase"],
        "verification": verify,
        "ok": ok,
        "command": ".venv/bin/python benchmarks/bench_drift_stream.py "
        f"--rows {args.rows} --ref-rows {args.ref_rows} --features {args.features}",
        "machine": numpy_machine(),
    }
    print(
        f"streamed {rows:,} rows x {record['features']} features in {stream_s:.1f} s "
        f"({rows / stream_s:,.0f} rows/s), reference summary {streamed['seconds']['reference']:.1f}"
        f" s, result {streamed['seconds']['result']:.1f} s, peak RSS {peak / 2**20:.0f} MiB"
    )
    if verify is not None:
        print("verification:", json.dumps(verify, indent=1))
    write_json(args.out, record)
    if not ok:
        raise SystemExit("peak RSS over 1 GiB or streamed result differs from frame_drift")


if __name__ == "__main__":
    main()
