"""Drift engine vs plain scipy vs Evidently: 20 numeric features, 1M reference vs 1M current rows.

Times lockgate.monitoring.drift (PSI, KS, JSD, Wasserstein for every feature) against plain scipy
(``ks_2samp`` + ``wasserstein_distance`` + ``jensenshannon`` on ``np.histogram`` of the same
bins) and against Evidently's ``DataDriftPreset`` run once per stattest (``psi``, ``ks``,
``jensenshannon``, ``wasserstein``) on the same data, checks the values, prints a table and
writes ``benchmarks/results/drift.json``.

Evidently is not a lockgate dependency: ``benchmarks/setup_evidently.sh`` installs it into
``.venv-evidently`` and this script runs it there as a subprocess (``--evidently-worker``)
over the same frames saved to a temporary ``.npz``. Its conventions differ from lockgate's:

* ``psi`` and ``jensenshannon``: equal-width bins, ``np.histogram_bin_edges(ref + cur,
  "sturges")`` (22 bins for 2M values) when the reference has more than 20 unique values,
  versus lockgate's reference deciles. PSI fills empty bins with ``min(nonzero) / 1e6`` (or
  1e-4) instead of lockgate's ``eps`` floor; JSD is scipy's, natural log, like lockgate's.
  The script recomputes both with lockgate's own PSI/JSD formulas on Evidently's bins and shows
  they match: the only difference is the binning.
* ``ks``: Evidently reports ``ks_2samp(...).pvalue`` (method ``auto``, i.e. asymptotic here),
  compared with lockgate's ``ks_pvalue``.
* ``wasserstein``: "Wasserstein distance (normed)", ``wasserstein_distance / max(std(ref),
  0.001)`` with ``np.std`` (ddof 0): compared with lockgate's ``wasserstein / std(ref)``.

Example:
    bash benchmarks/setup_evidently.sh   # once: .venv-evidently
    .venv/bin/python benchmarks/bench_drift.py --rows 1000000 --features 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import numpy_machine, write_json
from scipy import stats as sps
from scipy.spatial import distance as spd

# lockgate is imported inside the functions that need it: the Evidently worker runs this file
# in .venv-evidently, where lockgate is not installed.

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY_PYTHON = ROOT / ".venv-evidently" / "bin" / "python"
EVIDENTLY_METHODS = ("psi", "ks", "jensenshannon", "wasserstein")
DEFAULT_BINS = 10
DEFAULT_EPS = 1e-4


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
    e, a = np.maximum(p, DEFAULT_EPS), np.maximum(q, DEFAULT_EPS)
    return {
        "psi": float(np.sum((a - e) * np.log(a / e))),
        "ks": float(sps.ks_2samp(ref, cur).statistic),
        "jsd": float(spd.jensenshannon(p, q)),
        "wasserstein": float(sps.wasserstein_distance(ref, cur)),
    }


def _evidently_bins(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's numeric binning (``get_binned_data``, before its zero fill)."""
    bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    return np.histogram(ref, bins)[0] / ref.size, np.histogram(cur, bins)[0] / cur.size


def _evidently_fill(p: np.ndarray) -> np.ndarray:
    """Evidently's PSI fill of empty bins: min(nonzero) / 1e6 if that is <= 1e-4, else 1e-4."""
    low = float(p[p > 0].min())
    return np.where(p == 0, low / 10**6 if low <= 0.0001 else 0.0001, p)


def _evidently_worker(data: str, out: str) -> None:
    """Runs in .venv-evidently: DataDriftPreset once per stattest over the saved frames."""
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    with np.load(data) as npz:
        cols = [str(c) for c in npz["columns"]]
        ref = pd.DataFrame(dict(zip(cols, npz["reference"], strict=True)))
        cur = pd.DataFrame(dict(zip(cols, npz["current"], strict=True)))
    record: dict[str, Any] = {"evidently": evidently.__version__, "methods": {}}
    for method in EVIDENTLY_METHODS:
        start = time.perf_counter()
        definition = DataDefinition(numerical_columns=cols)
        snapshot = Report([DataDriftPreset(method=method)]).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
        seconds = time.perf_counter() - start
        values: dict[str, float] = {}
        for metric in snapshot.dict()["metrics"]:
            name = str(metric.get("metric_name", ""))
            if name.startswith("ValueDrift("):
                column = name.split("column=", 1)[1].split(",", 1)[0]
                values[column] = float(metric["value"])
        record["methods"][method] = {"seconds": seconds, "values": values}
        print(f"evidently {method}: {seconds:.1f} s", file=sys.stderr, flush=True)
    Path(out).write_text(json.dumps(record))


def _run_evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench_drift_") as tmp:
        data, out = Path(tmp) / "frames.npz", Path(tmp) / "evidently.json"
        np.savez(
            data,
            columns=np.array(list(ref.columns)),
            reference=ref.to_numpy().T,
            current=cur.to_numpy().T,
        )
        subprocess.run(
            [str(EVIDENTLY_PYTHON), __file__, "--evidently-worker", str(data), str(out)],
            check=True,
        )
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def _max_rel(pairs: list[tuple[float, float]]) -> float:
    return max(abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0 for a, b in pairs)


def _compare_evidently(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    engine: dict[str, Any],
    evidently: dict[str, Any],
) -> dict[str, Any]:
    """Per stattest: lockgate's value in Evidently's convention vs Evidently's value."""
    from lockgate.monitoring import drift_measures as drift

    ev = {m: evidently["methods"][m]["values"] for m in EVIDENTLY_METHODS}
    same_bins: dict[str, list[tuple[float, float]]] = {"psi": [], "jensenshannon": []}
    own: dict[str, list[tuple[float, float]]] = {"psi": [], "jensenshannon": []}
    ks: list[tuple[float, float]] = []
    wd: list[tuple[float, float]] = []
    for c in ref.columns:
        r, q = ref[c].to_numpy(), cur[c].to_numpy()
        p_ref, p_cur = _evidently_bins(r, q)
        # lockgate's PSI formula with Evidently's fill; the eps floor never binds (fill < eps).
        filled_ref, filled_cur = _evidently_fill(p_ref), _evidently_fill(p_cur)
        same_bins["psi"].append(
            (drift.population_stability_index(filled_ref, filled_cur, 1e-300), ev["psi"][c])
        )
        same_bins["jensenshannon"].append(
            (drift.jensen_shannon_distance(p_ref, p_cur), ev["jensenshannon"][c])
        )
        own["psi"].append((engine[c].psi, ev["psi"][c]))
        own["jensenshannon"].append((engine[c].jsd, ev["jensenshannon"][c]))
        ks.append((engine[c].ks_pvalue, ev["ks"][c]))
        wd.append((engine[c].wasserstein / max(float(np.std(r)), 0.001), ev["wasserstein"][c]))
    return {
        "psi": {
            "convention": "Evidently: equal-width Sturges bins over ref+cur, empty bins filled "
            "with min(nonzero)/1e6; lockgate: reference deciles, eps=1e-4 floor",
            "max_rel_diff_same_bins": _max_rel(same_bins["psi"]),
            "max_rel_diff_own_bins": _max_rel(own["psi"]),
        },
        "jensenshannon": {
            "convention": "both natural log (scipy jensenshannon); Evidently on Sturges bins, "
            "lockgate on reference deciles",
            "max_rel_diff_same_bins": _max_rel(same_bins["jensenshannon"]),
            "max_rel_diff_own_bins": _max_rel(own["jensenshannon"]),
        },
        "ks": {
            "convention": "Evidently reports the ks_2samp p-value; compared with lockgate "
            "ks_pvalue (asymp)",
            "max_rel_diff": _max_rel(ks),
            "bit_identical": all(a == b for a, b in ks),
        },
        "wasserstein": {
            "convention": "Evidently: wasserstein_distance / max(np.std(ref), 0.001); compared "
            "with lockgate wasserstein / np.std(ref)",
            "max_rel_diff": _max_rel(wd),
        },
    }


def main() -> None:
    """Runs the benchmark, prints the table and writes the JSON record."""
    if len(sys.argv) == 4 and sys.argv[1] == "--evidently-worker":
        _evidently_worker(sys.argv[2], sys.argv[3])
        return
    from lockgate.monitoring import drift

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-evidently", action="store_true", help="skip the Evidently runs")
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
    plain = {c: _scipy(ref[c].to_numpy(), cur[c].to_numpy(), DEFAULT_BINS) for c in ref}
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

    evidently_record: dict[str, Any] | None = None
    if not args.no_evidently:
        if not EVIDENTLY_PYTHON.exists():
            raise SystemExit(
                f"{EVIDENTLY_PYTHON} not found: run `bash benchmarks/setup_evidently.sh` first, "
                "or pass --no-evidently"
            )
        ev = _run_evidently(ref, cur)
        asymp = {r.feature: r for r in results["lockgate, 2 threads, KS p=asymp"]}
        comparison = _compare_evidently(ref, cur, asymp, ev)
        ev_seconds = {m: ev["methods"][m]["seconds"] for m in EVIDENTLY_METHODS}
        for m, seconds in ev_seconds.items():
            timings[f"Evidently DataDriftPreset({m}) (1 run)"] = seconds
        timings["Evidently, the four presets together"] = sum(ev_seconds.values())
        ev_ok = (
            comparison["ks"]["bit_identical"]
            and comparison["wasserstein"]["max_rel_diff"] <= 1e-9
            and comparison["psi"]["max_rel_diff_same_bins"] <= 1e-9
            and comparison["jensenshannon"]["max_rel_diff_same_bins"] <= 1e-9
        )
        evidently_record = {
            "version": ev["evidently"],
            "runs": "one DataDriftPreset(method=...) report per stattest over all features, "
            "1 run each (not best of --repeats)",
            "seconds": ev_seconds,
            "comparison": comparison,
            "match_where_conventions_agree": ev_ok,
        }
        ok = ok and ev_ok

    print(f"{args.features} features, {args.rows:,} vs {args.rows:,} rows, best of {args.repeats}")
    print(f"{'run':<50} {'total s':>9} {'per feature ms':>15}")
    for label, seconds in timings.items():
        print(f"{label:<50} {seconds:9.3f} {1000 * seconds / args.features:15.1f}")
    print("max relative difference vs scipy:", {k: f"{v:.1e}" for k, v in max_rel.items()})
    print("KS statistic bit-identical:", ks_exact, "| all match:", ok)
    if evidently_record is not None:
        print("vs Evidently:", json.dumps(evidently_record["comparison"], indent=1))

    record: dict[str, Any] = {
        "rows": args.rows,
        "features": args.features,
        "repeats": args.repeats,
        "seconds": timings,
        "max_relative_difference": max_rel,
        "ks_bit_identical": ks_exact,
        "match": ok,
        "evidently": evidently_record,
        "command": "bash benchmarks/setup_evidently.sh && .venv/bin/python "
        f"benchmarks/bench_drift.py --rows {args.rows} --features {args.features} "
        f"--repeats {args.repeats}",
        "machine": numpy_machine(),
    }
    write_json(args.out, record)
    if not ok:
        raise SystemExit("values do not match")


if __name__ == "__main__":
    main()
