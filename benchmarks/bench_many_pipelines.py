"""Many pipelines in one code location: definition load time and memory, and a sensor round.

Issue 16, item 8 asks what 100 pipelines in one code location cost, and what breaks first at
1,000. This measures, in one run:

* **load**: a fresh Python process imports lockgate, builds ``--counts`` pipelines (the fraud
  example's ``fraud_lgbm`` under N names: data checks, gate, serving, canary, drift and label
  feedback, so every asset and all four sensors per pipeline) into one
  ``dg.Definitions`` and resolves the repository as a code server does at start (every job,
  asset graph and sensor): wall time and peak RSS of that process, and the number of assets,
  asset checks, jobs and sensors;
* **sensor round**: the feature-change sensor's tick (``run_feature_change_tick``, what its
  sensor runs) for every pipeline of the largest count, against one real applied Feast store
  with the example's data: the daemon evaluates one such tick per pipeline per interval (60 s
  by default), so the round's time over the interval is the share of one core the feature
  sensors need.

What breaks first on the way to 1,000 (measured here on 2026-12-02): the load. Dagster 1.13
resolves each asset job by subsetting every asset definition of the location
(``asset_job.py::_subset_assets_defs``), so resolving grows with jobs x assets: 100 pipelines
(401 jobs, 900 assets) resolve in about 10 s, 1,000 (4,001 jobs, 9,000 assets) had not finished
after 8 CPU-minutes. Shard: one code location per team or domain, of at most a few hundred
pipelines each (``--load-timeout-s`` bounds a count here).

Run: ``.venv/bin/python benchmarks/bench_many_pipelines.py [--counts 1 10 100]``; results in
``benchmarks/results/many_pipelines.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import document_head, write_json

ROOT = Path(__file__).resolve().parent.parent

LOAD = """
import json, resource, sys, time
began = time.perf_counter()
from lockgate import Environment, build_definitions
from pipelines.fraud import fraud_lgbm
imported = time.perf_counter()
n = int(sys.argv[1])
specs = [fraud_lgbm.model_copy(update={"name": f"model_{i:04d}"}) for i in range(n)]
defs = build_definitions(specs, environment=Environment.local(sys.argv[2]))
repo = defs.get_repository_def()
jobs = repo.get_all_jobs()
graph = repo.asset_graph
sensors = list(repo.sensor_defs)
done = time.perf_counter()
print(json.dumps({
    "import_s": imported - began,
    "build_and_resolve_s": done - imported,
    "total_s": done - began,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "assets": len(list(graph.get_all_asset_keys())),
    "asset_checks": len(list(graph.asset_check_keys)),
    "jobs": len(jobs),
    "sensors": len(sensors),
}))
"""


def load(count: int, home: Path, timeout_s: float) -> dict[str, Any]:
    """One fresh process building and resolving ``count`` pipelines (or how long it ran)."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", LOAD, str(count), str(home)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"timed_out_after_s": timeout_s}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def sensor_round(count: int, work: Path) -> dict[str, Any]:
    """The feature-change tick of ``count`` pipelines on one applied Feast store."""
    from lockgate import FeastStore, LightGBMTrainer, ModelPipeline
    from lockgate.resources.audit import AuditTrail
    from lockgate.sensors.feature_store import run_feature_change_tick
    from pipelines.feature_repo import FRAUD_DEFINITIONS
    from pipelines.fraud import FRAUD_LABELS
    from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

    data = work / "data"
    generate_fraud_data(data, days=30, config=FraudDataConfig(seed=3))
    feast = FeastStore(
        repo_dir=str(work / "feast"), data_dir=str(data), definitions=FRAUD_DEFINITIONS
    )
    feast.apply()
    audit = AuditTrail(path=str(work / "audit" / "audit.jsonl"))
    specs = [
        ModelPipeline(
            name=f"model_{i:04d}",
            feature_service="fraud_v1",
            label="is_fraud",
            labels=FRAUD_LABELS,
            trainer=LightGBMTrainer(seed=i),
        )
        for i in range(count)
    ]
    cursors = {}
    began = time.perf_counter()
    for spec in specs:  # the first tick records each baseline
        cursors[spec.name] = run_feature_change_tick(
            spec, feast=feast, audit=audit, cursor=None
        ).cursor
    baseline = time.perf_counter() - began
    rounds = []
    for _ in range(3):
        began = time.perf_counter()
        for spec in specs:
            tick = run_feature_change_tick(
                spec, feast=feast, audit=audit, cursor=cursors[spec.name]
            )
            assert tick.run_key is None, tick.reason
        rounds.append(time.perf_counter() - began)
    per_tick = statistics.median(rounds) / count
    return {
        "pipelines": count,
        "baseline_round_s": round(baseline, 3),
        "no_change_round_s": round(statistics.median(rounds), 3),
        "per_tick_ms": round(per_tick * 1e3, 2),
        "share_of_one_core_at_60s_interval": round(statistics.median(rounds) / 60.0, 4),
    }


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the example's package
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument(
        "--load-timeout-s", type=float, default=900.0, help="give up on one count's load after"
    )
    parser.add_argument("--out", default="benchmarks/results/many_pipelines.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="lockgate-bench-many-"))
    loads = {}
    for count in args.counts:
        loads[str(count)] = load(count, work / f"home-{count}", args.load_timeout_s)
        row = loads[str(count)]
        if "timed_out_after_s" in row:
            print(f"{count:>5} pipelines: load not done after {args.load_timeout_s:.0f} s")
            continue
        print(
            f"{count:>5} pipelines: load {row['total_s']:.1f} s (import {row['import_s']:.1f} s), "
            f"peak RSS {row['peak_rss_mb']:.0f} MB, {row['assets']} assets, "
            f"{row['asset_checks']} checks, {row['jobs']} jobs, {row['sensors']} sensors"
        )
    loaded = [c for c in args.counts if "timed_out_after_s" not in loads[str(c)]]
    ticks = sensor_round(max(loaded), work / "ticks")
    print(
        f"feature-change round over {ticks['pipelines']} pipelines: "
        f"{ticks['no_change_round_s']} s ({ticks['per_tick_ms']} ms a tick)"
    )
    write_json(
        args.out,
        {
            **document_head("many_pipelines", load_before),
            "load": loads,
            "feature_change_round": ticks,
            "command": "python benchmarks/bench_many_pipelines.py --counts "
            + " ".join(str(c) for c in args.counts),
        },
    )


if __name__ == "__main__":
    main()
