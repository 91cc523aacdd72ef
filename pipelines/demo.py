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


DEMO_CHALLENGER_OF = "fraud_lgbm"
DEMO_WEAK_EXCLUDES = ("amount", "is_foreign", "is_new_device", "tx_count_1d", "amount_sum_1d")


def _registry(env: Environment) -> Any:
    from lockgate.resources.artifacts import LocalArtifactRegistry

    return LocalArtifactRegistry(root=str(env.artifacts_dir))


def _latest_verdict(env: Environment, pipeline: str) -> dict[str, Any] | None:
    evaluation = env.refs_dir / pipeline / "evaluation_report.json"
    if not evaluation.exists():
        return None
    ref = json.loads(evaluation.read_text())
    found = [
        v
        for v in _registry(env).verdicts(pipeline, ref["version"])
        if v["report_id"] == ref["report_id"]
    ]
    return found[-1] if found else None


def _gated(env: Environment, pipeline: str) -> bool:
    verdict = _latest_verdict(env, pipeline)
    return verdict is not None and not verdict["passed"]


def _result(env: Environment, pipeline: str, run_id: str, seconds: float) -> DemoResult:
    registry = _registry(env)
    evaluation = _read_ref(env, pipeline, "evaluation_report")
    version = evaluation["version"]
    record = registry.lock_record(pipeline, version)
    metrics = evaluation.get("metrics")
    if metrics is None:  # a gated pipeline: metrics live in the stored report
        report = registry.read_json(f"reports/{pipeline}/{version}/{evaluation['report_id']}.json")
        metrics = {k: v["estimate"] for k, v in report["challenger"]["metrics"].items()}
    return {
        "pipeline": pipeline,
        "run_id": run_id,
        "seconds": seconds,
        "version": version,
        "triad": record["triad"],
        "metrics": metrics,
        "lock_record": registry.uri(f"{registry.model_prefix(pipeline, version)}/lock.json"),
        "champion": registry.alias(pipeline, "champion"),
    }


def _gated_result(env: Environment, pipeline: str, run_id: str, seconds: float) -> DemoResult:
    verdict = _latest_verdict(env, pipeline) or {"rules": []}
    result = _result(env, pipeline, run_id, seconds)
    result["gated"] = True
    result["failed_rules"] = [r for r in verdict["rules"] if not r["passed"]]
    return result


def _loop_phase(env: Environment, spec: Any, say: Callable[[str], None]) -> DemoResult:
    from lockgate.loop import LoopSettings, run_closed_loop

    say(f"[5/5] the closed loop on a real Dagster daemon: live traffic drifts; {spec.name} must "
        "detect it, retrain, gate, validate in Triton, canary and promote on its own")  # fmt: skip
    loop = run_closed_loop(env, say=say, settings=LoopSettings(pipeline=spec.name))
    run_id = loop["runs"][-1] if loop["runs"] else ""
    result = _result(env, spec.name, run_id, 0.0)
    if loop["outcome"] == "gated":
        result = _gated_result(env, spec.name, run_id, 0.0)
    result["loop"] = loop
    return result


def run_demo(
    env: Environment,
    *,
    days: int = 30,
    only: Sequence[str] = (),
    say: Callable[[str], None] = print,
    keep_serving: bool = False,
) -> list[DemoResult]:
    """Generate data (if absent), apply Feast and run each pipeline's train job in Dagster.

    Returns one summary per pipeline; raises LockgateError if a run failed.
    """
    from dagster import DagsterInstance

    from lockgate.definitions import build_definitions
    from lockgate.examples import generate_fraud_data
    from lockgate.pipelines.feature_repo import fraud_feast_store
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

    say(f"[1/5] example data in {env.data_dir}")
    if (env.data_dir / "labels").exists():
        say("      already there (add days with `lockgate generate-data --append --days N`)")
    else:
        generate_fraud_data(env.data_dir, days=days, progress=lambda m: say(f"      {m}"))

    say(f"[2/5] Feast feature repo applied at {env.feast_dir}")
    feast = fraud_feast_store(env)
    feast.apply()

    say(f"[3/5] Dagster runs (DAGSTER_HOME={env.dagster_home})")
    defs = build_definitions(pipelines, environment=env, resources={"feast": feast})
    instance = DagsterInstance.get()
    results: list[DemoResult] = []
    for spec in pipelines:
        started = time.perf_counter()
        job = defs.resolve_job_def(spec.train_job_name)
        run = job.execute_in_process(
            instance=instance, raise_on_error=False, tags={"lockgate/source": "demo"}
        )
        seconds = time.perf_counter() - started
        if not run.success and _gated(env, spec.name):
            results.append(_gated_result(env, spec.name, run.run_id, seconds))
            say(f"      {spec.train_job_name}: run {run.run_id[:8]} gated in {seconds:.1f} s")
            continue
        if not run.success:
            failed = [e.message for e in run.all_events if e.is_failure]
            raise LockgateError(
                f"run {run.run_id} of {spec.train_job_name} failed after {seconds:.1f} s: "
                f"{failed[:3]}; open the run in the Dagster UI for the full log"
            )
        results.append(_result(env, spec.name, run.run_id, seconds))
        say(f"      {spec.train_job_name}: run {run.run_id[:8]} succeeded in {seconds:.1f} s")

    gated = [p for p in pipelines if p.name == DEMO_CHALLENGER_OF and p.gate is not None]
    if gated:
        spec = gated[0].model_copy(update={"exclude_features": DEMO_WEAK_EXCLUDES})
        say(
            f"[4/5] a challenger for {spec.name} trained without {', '.join(DEMO_WEAK_EXCLUDES)}"
            " meets the gate"
        )
        job = build_definitions(
            [spec], environment=env, resources={"feast": feast}
        ).resolve_job_def(spec.train_job_name)
        started = time.perf_counter()
        run = job.execute_in_process(
            instance=instance, raise_on_error=False, tags={"lockgate/source": "demo-challenger"}
        )
        seconds = time.perf_counter() - started
        if run.success:
            raise LockgateError(
                f"run {run.run_id} promoted a challenger trained without its key features; the "
                "gate should have blocked it: check the gate policy"
            )
        if not _gated(env, spec.name):
            failed = [e.message for e in run.all_events if e.is_failure]
            raise LockgateError(f"run {run.run_id} failed before the gate: {failed[:3]}")
        results.append(_gated_result(env, spec.name, run.run_id, seconds))
        say(f"      {spec.train_job_name}: run {run.run_id[:8]} gated in {seconds:.1f} s")
        if gated[0].serving is not None and gated[0].drift is not None:
            results.append(_loop_phase(env, gated[0], say))

    say("")
    say("summary")
    for item in results:
        triad, metrics = item["triad"], item["metrics"]
        status = "GATED (stays a challenger)" if item.get("gated") else "champion"
        say(f"  {item['pipeline']}  version {item['version']}  {status}")
        for rule in item.get("failed_rules", []):
            say(f"    gate {rule['rule']} FAILED: {rule['message']}")
        if "loop" in item:
            loop = item["loop"]
            say(
                f"    closed loop: {loop['outcome']}, champion {loop['champion_before']} -> "
                f"{loop['champion_after']}; {loop['requests']} requests answered through the "
                f"gateway, {loop['errors']} errors, by version {loop['by_version']}"
            )
            say("    timeline (seconds after the drift was injected):")
            for event in loop["timeline"]:
                say(f"      {event['seconds']:6.1f} s  {event['event']}")
        say(
            f"    triad: code {triad['code_commit'][:12]}  data {triad['data_snapshot_sha256'][:12]}"
            f"  weights {triad['weights_sha256'][:12]}"
        )
        say(
            "    gold set: "
            + "  ".join(f"{k}={metrics[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier"))
        )
        say(f"    lock record: {item['lock_record']}")
        say(f"    rebuild and verify: lockgate reproduce {item['pipeline']} {item['version']}")
    stack = env.resources()["serving_stack"]
    if keep_serving:
        say("")
        say(f"serving stays up: gateway {stack.gateway().url} (stop: lockgate serve stop)")
    else:
        stack.stop()
    say("")
    say("Inspect these runs and the lineage graph in the Dagster UI:")
    say(
        f"  DAGSTER_HOME={env.dagster_home} LOCKGATE_HOME={env.home} "
        ".venv/bin/dagster dev -w workspace.yaml  # then open http://127.0.0.1:3000"
    )
    return results
