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
  sensors need;
* **daemon** (``--daemon-seconds S``, off by default): per ``--daemon-counts``, a real
  ``dagster-daemon`` (:class:`lockgate.DagsterDaemon`) on a private PostgreSQL
  (``LocalPostgres``, the production ``dagster.yaml``) serving one code location of N copies
  (``many_pipelines_location.py``) on one applied Feast store, no model trained (every sensor
  skips: the idle cost). After the first tick and 60 s, S seconds are measured: CPU seconds of
  the daemon's process tree and of PostgreSQL (reaped children included), peak RSS, and the
  ticks recorded in the tick storage per sensor kind and status, and the runs launched;
  ``--daemon-layouts`` measures the sensor layouts one after the other on the same PostgreSQL:
  ``per_pipeline`` (each pipeline's own four sensors), ``per_kind`` (``build_definitions(...,
  sensors="per_kind")``: one sensor per kind looping over the pipelines), each also
  ``+threads`` (the daemon's ``sensors: use_threads``, ``--sensor-threads`` workers); figures
  per pipeline evaluation (one pipeline's sensor function run once) make them comparable.

What breaks first on the way to 1,000 (measured here on 2026-12-02): the load. Dagster 1.13
resolves each asset job by subsetting every asset definition of the location
(``asset_job.py::_subset_assets_defs``), so resolving grows with jobs x assets: 100 pipelines
(401 jobs, 900 assets) resolve in about 10 s, 1,000 (4,001 jobs, 9,000 assets) had not finished
after 8 CPU-minutes. Shard: one code location per team or domain, of at most a few hundred
pipelines each (``--load-timeout-s`` bounds a count here). The daemon is behind before that:
at 100 pipelines it evaluated 0.94 ticks a second (0.6 CPU-s of the daemon and 0.45 of
PostgreSQL each) where the intervals ask for 5.7; with one sensor per kind it kept pace (5.0
evaluations a second in a 120 s window without the 300 s sensors' ticks, at most 79 + 22 CPU-ms
each), and sensor threads did not help on 2 busy cores. ``docs/scale.md`` has the figures and
the plan for 1,000.

Run: ``.venv/bin/python benchmarks/bench_many_pipelines.py [--counts 1 10 100]``, and the daemon
alone (keeps the other figures): ``.venv/bin/python benchmarks/bench_many_pipelines.py
--daemon-only --daemon-seconds 120 --daemon-counts 100 10``, the layouts: ``--daemon-only
--daemon-seconds 120 --daemon-counts 100 --daemon-layouts per_pipeline per_kind
per_pipeline+threads per_kind+threads``; results in
``benchmarks/results/many_pipelines.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


class _TreeCpu:
    """CPU seconds (user + system) and RSS of a process and its descendants.

    A sample sums, over the live processes of the tree, each one's own CPU time and that of the
    children it has reaped: a child that exits between two samples (a PostgreSQL backend of one
    connection) moves into its parent's figure, so the difference of two samples is exact.
    """

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.reset()

    def reset(self) -> None:
        """Start counting now: the next sample is the baseline."""
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.processes: set[int] = set()
        self.baseline = True
        self.peak_rss_mb = 0.0

    def sample(self) -> None:
        import psutil

        rss, totals = 0, dict[str, float]()
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            try:
                cpu, mem = proc.cpu_times(), proc.memory_info()
            except psutil.NoSuchProcess:
                continue
            role = _role(proc)
            used = cpu.user + cpu.system + cpu.children_user + cpu.children_system
            totals[role] = totals.get(role, 0.0) + used
            self.processes.add(proc.pid)
            rss += mem.rss
        if self.baseline:
            self.first, self.baseline = totals, False
        self.last = totals
        self.peak_rss_mb = max(self.peak_rss_mb, rss / 2**20)

    @property
    def cpu_s(self) -> float:
        return sum(self.last.values()) - sum(self.first.values())

    def cpu_s_by_role(self) -> dict[str, float]:
        """CPU seconds per kind of process (the daemon, its code server, others)."""
        roles = {*self.first, *self.last}
        return {r: round(self.last.get(r, 0.0) - self.first.get(r, 0.0), 2) for r in roles}


def _role(proc: Any) -> str:
    import psutil

    try:
        line, name = " ".join(proc.cmdline()), proc.name()
    except psutil.Error:  # it exited between the listing and this look
        return "other"
    if "dagster-daemon" in line:
        return "dagster-daemon"
    if "api grpc" in line:
        return "code server"
    return str(name) or "other"


def _sensor_ticks(instance: Any, after: float, before: float) -> dict[str, Any]:
    """Ticks of every sensor in [after, before), by sensor kind and by status, from the storage."""
    from dagster._core.definitions.run_request import InstigatorType

    by_kind: dict[str, int] = {}
    by_status: dict[str, int] = {}
    evaluations: dict[str, int] = {}
    ticked = 0
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        kind = state.instigator_name.split("_on_", 1)[-1]
        ticks = instance.get_ticks(
            state.instigator_origin_id, state.selector_id, after=after, before=before
        )
        ticked += bool(ticks)
        for tick in ticks:
            by_kind[kind] = by_kind.get(kind, 0) + 1
            by_status[tick.status.value] = by_status.get(tick.status.value, 0) + 1
            evaluations[kind] = evaluations.get(kind, 0) + _evaluated(state, tick)
    return {
        "sensors_ticked": ticked,
        "by_sensor": by_kind,
        "by_status": by_status,
        "evaluations_by_sensor": evaluations,
    }


def _evaluated(state: Any, tick: Any) -> int:
    """Pipelines a tick evaluated: 1 for a pipeline's own sensor; for a per-kind sensor
    (``pipelines_on_<kind>``) the count its skip reason starts with ("k of n pipelines
    evaluated"; a tick that requested runs has none: every pipeline is counted then)."""
    if not state.instigator_name.startswith("pipelines_on_"):
        return 1
    head = (tick.skip_reason or "").split(" ", 1)[0]
    return int(head) if head.isdigit() else _PIPELINES_OF_TICK.get(state.instigator_name, 0)


_PIPELINES_OF_TICK: dict[str, int] = {}
"""Per-kind sensor name -> its pipelines, set by :func:`daemon_round` for the fallback."""


LAYOUTS = ("per_pipeline", "per_kind", "per_pipeline+threads", "per_kind+threads")
"""``--daemon-layouts``: the location's sensor layout (``build_definitions(sensors=...)``),
``+threads`` for the daemon's sensor threads (``instance_config(sensor_threads=...)``)."""

ASKED_PER_PIPELINE = 1 / 60 + 1 / 30 + 2 / 300
"""Sensor evaluations a second one pipeline's default intervals ask for (feature change 60 s,
canary 30 s, drift and label feedback 300 s)."""


def daemon_round(
    count: int,
    seconds: float,
    work: Path,
    pg: Any,
    *,
    layout: str = "per_pipeline",
    threads: int = 4,
    warmup_s: float = 60.0,
) -> dict[str, Any]:
    """A real ``dagster-daemon`` on PostgreSQL serving ``count`` pipelines for ``seconds``,
    with the sensors laid out as ``layout`` (one of :data:`LAYOUTS`)."""
    import psutil

    from lockgate import DagsterDaemon, Environment
    from pipelines.feature_repo import fraud_feast_store
    from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

    sensors, _, threaded = layout.partition("+")
    tag = f"{count}_{sensors}{'_threads' if threaded else ''}"
    expected_sensors = 4 * count if sensors == "per_pipeline" else 4
    for kind in ("feature_change", "canary_tick", "drift", "label_feedback"):
        _PIPELINES_OF_TICK[f"pipelines_on_{kind}"] = count
    env = Environment.local(work / f"daemon-{tag}")
    generate_fraud_data(env.data_dir, days=30, config=FraudDataConfig(seed=3))
    fraud_feast_store(env).apply()
    workspace = work / f"workspace-{tag}.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_file:\n"
        f"      relative_path: {ROOT / 'benchmarks' / 'many_pipelines_location.py'}\n"
        f"      location_name: many_pipelines_{count}\n"
        f"      working_directory: {ROOT}\n"
    )
    daemon = DagsterDaemon(
        env,
        workspace,
        extra_env={
            "LOCKGATE_ENV": "local",
            "LOCKGATE_BENCH_PIPELINES": str(count),
            "LOCKGATE_BENCH_SENSORS": sensors,
            "PYTHONPATH": str(ROOT),
            "PYTHONWARNINGS": "ignore::FutureWarning",
        },
        cwd=ROOT,
        postgres_url=pg.create_database(f"bench_daemon_{tag}"),
        instance_options={"sensor_threads": threads} if threaded else None,
    )
    postgres = _TreeCpu(pg.managed_process.recorded_pid())
    stack = env.resources()["serving_stack"]
    started = time.time()
    daemon.start(timeout_s=600.0)
    assert daemon.process is not None
    tree = _TreeCpu(daemon.process.pid)
    tree.baseline, tree.first = False, {}  # fresh processes: count from their start
    tree.sample()
    try:
        with daemon.instance() as instance:
            # up: every sensor of the location has ticked once, or warmup_s have passed since
            # the first tick (the code server has loaded; a daemon behind keeps a backlog)
            first_tick: float | None = None
            while True:
                ticked = _sensor_ticks(instance, started, time.time())["sensors_ticked"]
                if ticked and first_tick is None:
                    first_tick = time.time()
                since_first = time.time() - first_tick if first_tick else 0.0
                if (ticked >= expected_sensors and since_first > 20) or since_first > warmup_s:
                    break
                tree.sample()
                if time.time() - started > 900:
                    raise RuntimeError(f"{count} pipelines: no sensor ticked in 900 s")
                time.sleep(2.0)
            up_s = time.time() - started
            assert first_tick is not None
            startup_cpu_s, startup_rss_mb = tree.cpu_s, tree.peak_rss_mb
            # the canary sensors' ticks ensure the local serving stack (Triton, the gateway),
            # started by the first one: its processes are not the daemon's children
            serving = [_TreeCpu(pid) for pid in (stack.triton().pid, stack.gateway().pid) if pid]
            for group in (tree, postgres, *serving):
                group.reset()
                group.sample()
            load_before = os.getloadavg()[0]
            t0 = time.time()
            wall0 = time.perf_counter()
            while time.perf_counter() - wall0 < seconds:
                time.sleep(1.0)
                for group in (tree, postgres, *serving):
                    group.sample()
            window = time.perf_counter() - wall0
            t1 = time.time()
            load_after = os.getloadavg()[0]
            ticks = _sensor_ticks(instance, t0, t1)
            runs = instance.get_runs_count()
    finally:
        daemon.stop()
        stack.stop()  # by PID, Triton's stubs reaped
    survivors = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if any(str(path) in " ".join(p.info["cmdline"] or []) for path in (workspace, env.home))
    ]
    total = sum(ticks["by_sensor"].values())
    evaluations = sum(ticks["evaluations_by_sensor"].values())
    return {
        "pipelines": count,
        "layout": sensors,
        "sensor_threads": threads if threaded else None,
        "sensors": expected_sensors,
        "first_tick_after_s": round(first_tick - started, 1),
        "window_began_after_s": round(up_s, 1),
        "sensors_ticked_before_window": ticked,
        "sensors_ticked_in_window": ticks["sensors_ticked"],
        "startup_daemon_tree_cpu_s": round(startup_cpu_s, 2),
        "startup_daemon_tree_peak_rss_mb": round(startup_rss_mb, 1),
        "window_s": round(window, 1),
        "daemon_tree_cpu_s": round(tree.cpu_s, 2),
        "daemon_tree_share_of_one_core": round(tree.cpu_s / window, 4),
        "daemon_tree_cpu_s_by_process": tree.cpu_s_by_role(),
        "daemon_tree_processes": len(tree.processes),
        "daemon_tree_peak_rss_mb": round(tree.peak_rss_mb, 1),
        "serving_stack_cpu_s": round(sum(group.cpu_s for group in serving), 2),
        "serving_stack_processes": sum(len(group.processes) for group in serving),
        "postgres_cpu_s": round(postgres.cpu_s, 2),
        "postgres_share_of_one_core": round(postgres.cpu_s / window, 4),
        "ticks": total,
        "ticks_per_s": round(total / window, 3),
        "cpu_ms_per_tick": round(1e3 * tree.cpu_s / total, 2) if total else None,
        "pipeline_evaluations": evaluations,
        "pipeline_evaluations_per_s": round(evaluations / window, 3),
        "pipeline_evaluations_asked_per_s": round(count * ASKED_PER_PIPELINE, 3),
        "daemon_cpu_ms_per_evaluation": (
            round(1e3 * tree.cpu_s / evaluations, 2) if evaluations else None
        ),
        "postgres_cpu_ms_per_evaluation": (
            round(1e3 * postgres.cpu_s / evaluations, 2) if evaluations else None
        ),
        "evaluations_by_sensor": ticks["evaluations_by_sensor"],
        "ticks_by_sensor": ticks["by_sensor"],
        "ticks_by_status": ticks["by_status"],
        "runs_launched": runs,
        "loadavg_1m_before_window": round(load_before, 2),
        "loadavg_1m_after_window": round(load_after, 2),
        "processes_left_after_stop": survivors,
    }


def daemon_rounds(
    counts: list[int],
    seconds: float,
    work: Path,
    done: Callable[[dict[str, Any]], None],
    *,
    layouts: tuple[str, ...] = ("per_pipeline",),
    threads: int = 4,
) -> dict[str, Any]:
    """:func:`daemon_round` for each count and layout on one private PostgreSQL, stopped by
    PID after; rounds are keyed ``<count>`` for the per-pipeline layout without threads (as
    before) and ``<count>/<layout>`` otherwise."""
    from lockgate._util.services import LocalPostgres

    root = Path(tempfile.mkdtemp(prefix="lockgate-bench-pg-"))
    os.chmod(root, 0o755)  # PostgreSQL runs as the postgres system user when this is root
    rounds = {}
    try:
        with LocalPostgres(root=str(root / "cluster")) as pg:
            for count, layout in [(c, lay) for c in counts for lay in layouts]:
                row = daemon_round(count, seconds, work, pg, layout=layout, threads=threads)
                key = str(count) if layout == "per_pipeline" else f"{count}/{layout}"
                rounds[key] = row
                done(rounds)  # recorded round by round
                print(
                    f"daemon, {count:>4} pipelines, {layout}: "
                    f"{row['pipeline_evaluations_per_s']} of "
                    f"{row['pipeline_evaluations_asked_per_s']} evaluations/s asked, "
                    f"{row['daemon_cpu_ms_per_evaluation']} + "
                    f"{row['postgres_cpu_ms_per_evaluation']} CPU-ms each; "
                    f"{row['daemon_tree_cpu_s']} CPU-s "
                    f"in {row['window_s']} s ({row['daemon_tree_share_of_one_core']:.1%} of a "
                    f"core), {row['ticks']} ticks ({row['ticks_per_s']}/s), peak RSS "
                    f"{row['daemon_tree_peak_rss_mb']:.0f} MB, postgres "
                    f"{row['postgres_cpu_s']} CPU-s, {row['runs_launched']} runs, load "
                    f"{row['loadavg_1m_before_window']}-{row['loadavg_1m_after_window']}",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rounds


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the example's package
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument(
        "--load-timeout-s", type=float, default=900.0, help="give up on one count's load after"
    )
    parser.add_argument("--out", default="benchmarks/results/many_pipelines.json")
    parser.add_argument(
        "--daemon-seconds",
        type=float,
        default=0.0,
        help="also run a real dagster-daemon on PostgreSQL this long per --daemon-counts (0: no)",
    )
    parser.add_argument("--daemon-counts", type=int, nargs="+", default=[10, 100])
    parser.add_argument(
        "--daemon-layouts",
        nargs="+",
        choices=LAYOUTS,
        default=["per_pipeline"],
        help="sensor layouts to measure one after the other, on the same PostgreSQL",
    )
    parser.add_argument(
        "--sensor-threads", type=int, default=4, help="num_workers of the +threads layouts"
    )
    parser.add_argument(
        "--daemon-only", action="store_true", help="only the daemon phase; keep the other figures"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="lockgate-bench-many-"))
    out = Path(args.out)
    document: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    try:
        if not args.daemon_only:
            document.update(load_and_round(args, work, load_before))
        if args.daemon_seconds > 0:
            head = document_head("many_pipelines_daemon", os.getloadavg())
            command = (
                "python benchmarks/bench_many_pipelines.py --daemon-only "
                f"--daemon-seconds {args.daemon_seconds:g} --daemon-counts "
                + " ".join(str(c) for c in args.daemon_counts)
                + " --daemon-layouts "
                + " ".join(args.daemon_layouts)
                + f" --sensor-threads {args.sensor_threads}"
            )

            def done(rounds: dict[str, Any]) -> None:
                document["daemon"] = {**head, "rounds": rounds, "command": command}
                write_json(out, document)

            daemon_rounds(
                args.daemon_counts,
                args.daemon_seconds,
                work,
                done,
                layouts=tuple(args.daemon_layouts),
                threads=args.sensor_threads,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json(out, document)


def load_and_round(args: argparse.Namespace, work: Path, load_before: tuple[float, ...]) -> Any:
    """The load of every ``--counts`` and the feature-change round of the largest that loaded."""
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
    return {
        **document_head("many_pipelines", load_before),
        "load": loads,
        "feature_change_round": ticks,
        "command": "python benchmarks/bench_many_pipelines.py --counts "
        + " ".join(str(c) for c in args.counts),
    }


if __name__ == "__main__":
    main()
