"""The main job: example data -> Feast -> both example pipelines through a real Dagster instance."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lockgate.environment import Environment
from lockgate.errors import LockgateError, SpecError

__all__ = ["DemoResult", "run_demo"]

DemoResult = dict[str, Any]

_DAGSTER_YAML = """\
telemetry:
  enabled: false
run_monitoring:
  enabled: false
"""


def _prepare_dagster_home(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(_DAGSTER_YAML)


def _read_ref(env: Environment, pipeline: str, asset: str) -> dict[str, Any]:
    path = env.refs_dir / pipeline / f"{asset}.json"
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def run_demo(
    env: Environment,
    *,
    days: int = 30,
    only: Sequence[str] = (),
    say: Callable[[str], None] = print,
) -> list[DemoResult]:
    """Generate data (if absent), apply Feast and run each pipeline's train job in Dagster.

    Returns one summary per pipeline; raises LockgateError if a run failed.
    """
    from dagster import DagsterInstance

    from lockgate.definitions import build_definitions
    from lockgate.examples import generate_fraud_data
    from lockgate.pipelines.fraud import PIPELINES

    pipelines = [p for p in PIPELINES if not only or p.name in only]
    unknown = sorted(set(only) - {p.name for p in PIPELINES})
    if unknown:
        raise SpecError(
            f"unknown pipelines {unknown}; the examples are {[p.name for p in PIPELINES]}"
        )
    os.environ["LOCKGATE_HOME"] = str(env.home)
    os.environ["DAGSTER_HOME"] = str(env.dagster_home)
    _prepare_dagster_home(env.dagster_home)

    say(f"[1/3] example data in {env.data_dir}")
    if (env.data_dir / "labels").exists():
        say("      already there (add days with `lockgate generate-data --append --days N`)")
    else:
        generate_fraud_data(env.data_dir, days=days, progress=lambda m: say(f"      {m}"))

    say(f"[2/3] Feast feature repo applied at {env.feast_dir}")
    resources = env.resources()
    resources["feast"].apply()

    say(f"[3/3] Dagster runs (DAGSTER_HOME={env.dagster_home})")
    defs = build_definitions(pipelines, environment=env)
    instance = DagsterInstance.get()
    results: list[DemoResult] = []
    for spec in pipelines:
        started = time.perf_counter()
        job = defs.resolve_job_def(spec.train_job_name)
        run = job.execute_in_process(
            instance=instance, raise_on_error=False, tags={"lockgate/source": "demo"}
        )
        seconds = time.perf_counter() - started
        if not run.success:
            failed = [e.message for e in run.all_events if e.is_failure]
            raise LockgateError(
                f"run {run.run_id} of {spec.train_job_name} failed after {seconds:.1f} s: "
                f"{failed[:3]}; open the run in the Dagster UI for the full log"
            )
        weights = _read_ref(env, spec.name, "model_weights")
        evaluation = _read_ref(env, spec.name, "evaluation_report")
        record = resources["artifacts"].lock_record(spec.name, weights["version"])
        results.append(
            {
                "pipeline": spec.name,
                "run_id": run.run_id,
                "seconds": seconds,
                "version": weights["version"],
                "triad": record["triad"],
                "metrics": evaluation["metrics"],
                "lock_record": resources["artifacts"].uri(
                    f"{resources['artifacts'].model_prefix(spec.name, weights['version'])}"
                    "/lock.json"
                ),
            }
        )
        say(f"      {spec.train_job_name}: run {run.run_id[:8]} succeeded in {seconds:.1f} s")

    say("")
    say("summary")
    for item in results:
        triad, metrics = item["triad"], item["metrics"]
        say(f"  {item['pipeline']}  version {item['version']}")
        say(
            f"    triad: code {triad['code_commit'][:12]}  data {triad['data_snapshot_sha256'][:12]}"
            f"  weights {triad['weights_sha256'][:12]}"
        )
        say(
            "    holdout: "
            + "  ".join(f"{k}={metrics[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier"))
        )
        say(f"    lock record: {item['lock_record']}")
        say(f"    rebuild and verify: lockgate reproduce {item['pipeline']} {item['version']}")
    say("")
    say("Inspect these runs and the lineage graph in the Dagster UI:")
    say(
        f"  DAGSTER_HOME={env.dagster_home} LOCKGATE_HOME={env.home} "
        ".venv/bin/dagster dev -w workspace.yaml  # then open http://127.0.0.1:3000"
    )
    return results
