"""The fraud_lgbm train job at 1x, 10x and 100x the example's data: time per step and peak RSS.

Each size is the example world (30 days, ``pipelines/fraud_data.py``) with ``n_customers``,
``n_merchants`` and ``tx_per_day`` multiplied by the scale, so 1x is the default example data
(about 120k label rows), 10x about 1.2M and 100x about 12M rows over the same 30 days. The data
of a size is generated once into ``--data-root`` (its own subprocess) and reused by later runs.

Each size then runs ``fraud_lgbm_train`` (snapshot, data quality, weights, evaluation, gate,
serving in the local CPU Triton) in a fresh subprocess with a fresh lockgate home whose ``data``
links to that size's data. Inside it a thread samples, every 50 ms, the resident memory of the
process and of the whole process tree (its Triton child included); the step that is running when
a sample is taken comes from the run's own Dagster events. Recorded per step: the wall time from
the Dagster ``STEP_SUCCESS`` event and the peak RSS of the process and of the tree while it ran;
per run: the process's exact peak (``getrusage``), the tree's sampled peak and the whole job's
time. Also recorded: the snapshot's frame hash and the weights' hash, so a code change that must
not alter results can be checked against an earlier record.

Example (the recorded ``benchmarks/results/scale.json``; ``--label`` names the code measured,
``--append`` adds its rows to the file's earlier ones):
    .venv/bin/python benchmarks/bench_scale.py --scales 1 10 --label after --append
    .venv/bin/python benchmarks/bench_scale.py --scales 100 --label after --append --skip-serving \\
        --max-rss-mb 8000

``--max-rss-mb`` kills a size's worker (data generation or job, with its children) once its
process tree holds more than that, and records the size as failed with the peak it reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import document_head, write_json

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "scale.json"
DAYS = 30
SAMPLE_S = 0.05
_MB = 1024 * 1024


def _config_for(scale: int) -> Any:
    from pipelines.fraud_data import FraudDataConfig

    base = FraudDataConfig()
    return FraudDataConfig(
        n_customers=base.n_customers * scale,
        n_merchants=base.n_merchants * scale,
        tx_per_day=base.tx_per_day * scale,
    )


# ---------------------------------------------------------------------------------------------
# worker: one size in its own process


def _generate(data_dir: Path, scale: int) -> dict[str, Any]:
    from pipelines.fraud_data import generate_fraud_data, read_manifest

    manifest = read_manifest(data_dir) if data_dir.exists() else None
    if manifest is not None and len(manifest["days"]) == DAYS:
        return {"generated": False, "rows": sum(d["transactions"] for d in manifest["days"])}
    if data_dir.exists():
        shutil.rmtree(data_dir)
    summary = generate_fraud_data(data_dir, days=DAYS, config=_config_for(scale))
    return {"generated": True, "rows": summary.n_transactions, "seconds": summary.seconds}


class _Sampler:
    """Samples this process's RSS and its process tree's RSS, attributing each to a step."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process(os.getpid())
        self.step = "(setup)"
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        import psutil

        own = self._me.memory_info().rss
        tree = own
        for child in self._me.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # a child that just ended
                tree += child.memory_info().rss
        peak = self.peaks.setdefault(self.step, {"process": 0, "tree": 0})
        peak["process"] = max(peak["process"], own)
        peak["tree"] = max(peak["tree"], tree)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()


def _step_logger(sampler: _Sampler, seconds: dict[str, float]) -> Any:
    """A Dagster logger that tells the sampler which step runs and keeps each step's time."""
    import logging

    import dagster as dg

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            meta = getattr(record, "dagster_meta", None) or {}
            event = meta.get("dagster_event")
            if event is None:
                return
            kind = event.event_type_value
            step = meta.get("step_key") or ""
            if kind == "STEP_START":
                sampler.sample()
                sampler.step = step
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE"):
                sampler.sample()
                data = event.event_specific_data
                if kind == "STEP_SUCCESS":
                    seconds[step] = data.duration_ms / 1000
                sampler.step = "(between steps)"

    @dg.logger(config_schema=None, description="bench_scale step tracker")
    def tracker(_context: Any) -> logging.Logger:
        log = logging.getLogger("lockgate.bench_scale")
        log.setLevel(logging.DEBUG)
        log.propagate = False
        log.handlers = [Handler(level=logging.DEBUG)]
        return log

    return tracker


def _run_job(home: Path, data_dir: Path, skip_serving: bool) -> dict[str, Any]:
    import warnings

    with _Sampler() as sampler:
        started = time.perf_counter()
        from dagster import BetaWarning, DagsterInstance

        from lockgate import Environment, build_definitions
        from pipelines.demo import _prepare_dagster_home
        from pipelines.feature_repo import fraud_feast_store
        from pipelines.fraud import fraud_lgbm

        warnings.filterwarnings("ignore", category=BetaWarning)
        env = Environment.local(home)
        env.home.mkdir(parents=True, exist_ok=True)
        env.data_dir.symlink_to(data_dir, target_is_directory=True)
        os.environ.update(DAGSTER_HOME=str(env.dagster_home), LOCKGATE_HOME=str(env.home))
        _prepare_dagster_home(env.dagster_home)
        sampler.step = "(feast apply)"
        fraud_feast_store(env).apply()
        spec = fraud_lgbm if not skip_serving else fraud_lgbm.model_copy(update={"serving": None})
        seconds: dict[str, float] = {}
        tracker = _step_logger(sampler, seconds)
        job = (
            build_definitions([spec], environment=env)
            .resolve_job_def(spec.train_job_name)
            .with_logger_defs({"tracker": tracker})
        )
        try:
            with DagsterInstance.get() as instance:
                job_started = time.perf_counter()
                run = job.execute_in_process(
                    instance=instance, raise_on_error=False, run_config={"loggers": {"tracker": {}}}
                )
                job_seconds = time.perf_counter() - job_started
                failures = [_failure_text(e) for e in run.all_events if e.is_failure]
        finally:
            sampler.step = "(teardown)"
            if not skip_serving:
                env.resources()["serving_stack"].stop()
        # a run stopped after training (a latency check on a loaded machine) still has a triad
        done = (env.refs_dir / spec.name / "evaluation_report.json").exists()
        triad = _triad(env, spec.name) if done else None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peaks = sampler.peaks
    return {
        "success": run.success,
        "failures": failures[:3],
        "serving": not skip_serving,
        "job_seconds": job_seconds,
        "process_seconds": time.perf_counter() - started,
        "peak_rss_mb": maxrss / _MB,
        "peak_tree_rss_mb": max(p["tree"] for p in peaks.values()) / _MB,
        "steps": {
            step: {
                "seconds": seconds.get(step),
                "peak_rss_mb": peak["process"] / _MB,
                "peak_tree_rss_mb": peak["tree"] / _MB,
            }
            for step, peak in peaks.items()
        },
        "triad": triad,
    }


def _failure_text(event: Any) -> str:
    """A failed step's error (its last 1,500 characters), else the event's message."""
    error = getattr(event.event_specific_data, "error", None)
    if event.is_step_failure and error is not None:
        return str(error.to_string())[-1500:]
    return str(event.message)


def _triad(env: Any, pipeline: str) -> dict[str, Any]:
    from lockgate import LocalArtifactRegistry

    ref = json.loads((env.refs_dir / pipeline / "evaluation_report.json").read_text())
    record = LocalArtifactRegistry(root=str(env.artifacts_dir)).lock_record(
        pipeline, ref["version"]
    )
    return {
        "data_snapshot_sha256": record["triad"]["data_snapshot_sha256"],
        "weights_sha256": record["triad"]["weights_sha256"],
    }


def _worker(args: argparse.Namespace) -> None:
    result: dict[str, Any]
    if args.worker == "generate":
        result = _generate(Path(args.data_dir), args.scale)
    else:
        result = _run_job(Path(args.home), Path(args.data_dir), args.skip_serving)
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# parent: one subprocess per size


def _subprocess(
    argv: list[str], result: Path, timeout_s: float, max_rss_mb: float | None = None
) -> dict[str, Any]:
    """Runs a worker; with ``max_rss_mb``, kills it once its process tree holds more.

    The watchdog samples the tree's RSS (the worker and its children, Triton included) every
    0.2 s and kills the whole tree when it passes the limit: on a shared machine a size that
    does not fit must end as a recorded failure, never as an out-of-memory kill of others.
    """
    import psutil

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'benchmarks'}"}
    log = result.with_suffix(".log")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, *argv, "--result", str(result)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started, peak, killed = time.monotonic(), 0, False
        while proc.poll() is None:
            tree = 0
            with contextlib.suppress(psutil.Error):
                me = psutil.Process(proc.pid)
                tree = me.memory_info().rss
                for child in me.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        tree += child.memory_info().rss
            peak = max(peak, tree)
            over = max_rss_mb is not None and tree > max_rss_mb * _MB
            if over or time.monotonic() - started > timeout_s:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)  # the worker's own session: only what it started
                proc.wait()
                break
            time.sleep(0.2)
    tail = log.read_text()[-4000:]
    if killed or proc.returncode != 0 or not result.exists():
        return {
            "success": False,
            "returncode": proc.returncode,
            "killed": killed,
            "max_rss_mb": max_rss_mb,
            "watchdog_peak_tree_rss_mb": peak / _MB,
            "output_tail": tail,
        }
    loaded: dict[str, Any] = json.loads(result.read_text())
    loaded["watchdog_peak_tree_rss_mb"] = peak / _MB
    return loaded


def _measure(scale: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data_dir = Path(args.data_root) / f"x{scale}"
    data = _subprocess(
        ["--worker", "generate", "--scale", str(scale), "--data-dir", str(data_dir)],
        work / f"generate-x{scale}.json",
        args.timeout_s,
        args.max_rss_mb,
    )
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    row: dict[str, Any] = {"label": args.label, "scale": scale, "when": when, "data": data}
    if "rows" not in data:
        return row
    print(f"x{scale}: {data['rows']:,} rows in {data_dir}", flush=True)
    argv = ["--worker", "job", "--scale", str(scale), "--data-dir", str(data_dir)]
    argv += ["--home", str(work / f"home-x{scale}")]
    if args.skip_serving:
        argv.append("--skip-serving")
    row["load_average_before"] = os.getloadavg()
    row["run"] = _subprocess(argv, work / f"job-x{scale}.json", args.timeout_s, args.max_rss_mb)
    row["load_average_after"] = os.getloadavg()
    run = row["run"]
    if run.get("success"):
        print(
            f"x{scale}: job {run['job_seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB "
            f"(tree {run['peak_tree_rss_mb']:.0f} MB)",
            flush=True,
        )
        for step, numbers in run["steps"].items():
            secs = numbers["seconds"]
            print(
                f"    {step:<48} {'' if secs is None else f'{secs:7.1f} s'}"
                f"  {numbers['peak_rss_mb']:7.0f} MB",
                flush=True,
            )
    else:
        print(f"x{scale}: FAILED {run}", flush=True)
    return row


def main() -> None:
    """Parses the options, measures each size, writes the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--label", default="current", help="names the code measured")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--append", action="store_true", help="keep the file's earlier rows")
    parser.add_argument("--data-root", default=str(Path(tempfile.gettempdir()) / "bench_scale"))
    parser.add_argument("--skip-serving", action="store_true", help="a spec without serving")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument(
        "--max-rss-mb",
        type=float,
        default=None,
        help="kill a size's job when its process tree holds more (e.g. 8000 for 100x)",
    )
    parser.add_argument("--worker", choices=["generate", "job"], help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    load_before = os.getloadavg()
    out = Path(args.out)
    rows: list[dict[str, Any]] = []
    if args.append and out.exists():
        rows = json.loads(out.read_text())["runs"]
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        for scale in args.scales:
            rows.append(_measure(scale, args, Path(tmp)))
            write_json(out, {**document_head("scale", load_before), "runs": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
