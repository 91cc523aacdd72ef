"""Drift engine vs plain scipy: 20 numeric features, 1M reference vs 1M current rows.

Times lockgate.drift (PSI, KS, JSD, Wasserstein for every feature) against plain scipy
(``ks_2samp`` + ``wasserstein_distance`` + ``jensenshannon`` on ``np.histogram`` of the same
bins) in the same run, checks the values match, prints a table and writes
``benchmarks/results/drift.json``.

Example:
    .venv/bin/python benchmarks/bench_drift.py --rows 1000000 --features 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.spatial import distance as spd

from lockgate import drift


def _frames(rows: int, features: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    cols = [f"f{i:02d}" for i in range(features)]
    ref = {c: rng.normal(size=rows) for c in cols}
    cur = {c: rng.normal(0.1 * (i % 4), size=rows) for i, c in enumerate(cols)}
    return pd.DataFrame(ref), pd.DataFrame(cur)


def _scipy(ref: np.ndarray, cur: np.ndarray, bins: int) -> dict[str, float]:
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins))
    full = np.concatenate(([-np.inf], edges, [np.inf]))
    p = np.histogram(ref, bins=full)[0] / ref.size
    q = np.histogram(cur, bins=full)[0] / cur.size
    e, a = np.maximum(p, drift.DEFAULT_EPS), np.maximum(q, drift.DEFAULT_EPS)
    return {
        "psi": float(np.sum((a - e) * np.log(a / e))),
        "ks": float(sps.ks_2samp(ref, cur).statistic),
        "jsd": float(spd.jensenshannon(p, q)),
        "wasserstein": float(sps.wasserstein_distance(ref, cur)),
    }


def main() -> None:
    """Runs the benchmark, prints the table and writes the JSON record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "drift.json"))
    args = parser.parse_args()

    ref, cur = _frames(args.rows, args.features, args.seed)
    timings: dict[str, float] = {}
    results: dict[str, list[drift.FeatureDrift]] = {}
    for label, method, workers in (
        ("lockgate, 1 thread, KS p=limit", "limit", 1),
        ("lockgate, 2 threads, KS p=limit", "limit", 2),
        ("lockgate, 2 threads, KS p=asymp", "asymp", 2),
    ):
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = drift.frame_drift(ref, cur, workers=workers, ks_pvalue_method=method)
            best = min(best, time.perf_counter() - start)
        timings[label] = best
        results[label] = out

    start = time.perf_counter()
    plain = {c: _scipy(ref[c].to_numpy(), cur[c].to_numpy(), drift.DEFAULT_BINS) for c in ref}
    timings["plain scipy (1 run)"] = time.perf_counter() - start

    engine = {r.feature: r for r in results["lockgate, 2 threads, KS p=limit"]}
    max_rel: dict[str, float] = {}
    for metric in ("psi", "ks", "jsd", "wasserstein"):
        rel = 0.0
        for c, ref_values in plain.items():
            got = float(getattr(engine[c], metric))
            want = ref_values[metric]
            rel = max(rel, abs(got - want) / max(abs(want), 1e-300))
        max_rel[metric] = rel
    ks_exact = all(engine[c].ks == plain[c]["ks"] for c in plain)
    ok = ks_exact and all(v <= 1e-9 for v in max_rel.values())

    print(f"{args.features} features, {args.rows:,} vs {args.rows:,} rows, best of {args.repeats}")
    print(f"{'run':<36} {'total s':>9} {'per feature ms':>15}")
    for label, seconds in timings.items():
        print(f"{label:<36} {seconds:9.3f} {1000 * seconds / args.features:15.1f}")
    print("max relative difference vs scipy:", {k: f"{v:.1e}" for k, v in max_rel.items()})
    print("KS statistic bit-identical:", ks_exact, "| all match:", ok)

    record: dict[str, Any] = {
        "rows": args.rows,
        "features": args.features,
        "repeats": args.repeats,
        "seconds": timings,
        "max_relative_difference": max_rel,
        "ks_bit_identical": ks_exact,
        "match": ok,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    if not ok:
        raise SystemExit("values do not match scipy")


if __name__ == "__main__":
    main()
