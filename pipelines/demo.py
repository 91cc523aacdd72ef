"""The main job: example data -> Feast -> both example pipelines through a real Dagster instance."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lockgate import Environment, LockgateError, SpecError

__all__ = ["DemoResult", "progress_line", "progress_logger", "run_demo"]

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


# ---------------------------------------------------------------------------------------------
# the main job's terminal output: progress, verdicts, real errors in full, no library noise

_INDENT = "      "


def progress_line(meta: Mapping[str, Any], level: int) -> str | None:
    """One terminal line for a Dagster log record of the main job, or None to stay quiet.

    ``meta`` is the record's ``dagster_meta`` (``dagster_event``, ``step_key``,
    ``orig_message``). Steps print when they start and finish (with their duration); messages
    of the pipeline's own code print at INFO and above; a failed gate check prints its
    description (the rule and its numbers). A step stopped by failed blocking checks is the
    gate's expected decision: it prints as a verdict, without a stack trace. Every other step
    failure prints its error in full, stack trace included. Dagster's engine chatter (DEBUG
    events, resource and log-capture events) stays out.
    """
    event = meta.get("dagster_event")
    step = meta.get("step_key") or ""
    if event is None:
        message = str(meta.get("orig_message", ""))
        if level < logging.INFO:
            return None
        if message.startswith("Dependencies for step"):  # downstream of a stopped step
            return f"{_INDENT}{step} not run: a step it depends on stopped"
        return f"{_INDENT}  {step}: {message}".rstrip()
    kind = event.event_type_value
    if kind == "STEP_START":
        return f"{_INDENT}{step} ..."
    if kind == "STEP_SUCCESS":
        seconds = event.event_specific_data.duration_ms / 1000
        return f"{_INDENT}{step} done in {seconds:.1f} s"
    if kind == "ASSET_CHECK_EVALUATION":
        evaluation = event.event_specific_data
        if evaluation.passed:
            return None
        return f"{_INDENT}  check {evaluation.check_name}: {evaluation.description}"
    if kind == "STEP_FAILURE":
        error = event.event_specific_data.error
        verdict = event.event_specific_data.user_failure_data
        if verdict is not None and (verdict.description or "").startswith("BLOCKED by"):
            # the gate's own stop (lockgate.assets.gate.gate_stop): its rules, no stack trace
            rules = verdict.metadata.get("failed_rules")
            checks = rules.value if rules is not None else "see above"
            return f"{_INDENT}{step}: stopped by the gate, a verdict and not a crash ({checks})"
        if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            # Dagster's message: "<n> blocking asset checks failed ...:\n<asset>: <c1>,<c2>"
            failed = [line.split(": ", 1)[-1] for line in error.message.strip().splitlines()[1:]]
            checks = ", ".join(c for line in failed for c in line.split(",")) or "see above"
            return f"{_INDENT}{step}: stopped by the gate, a verdict and not a crash ({checks})"
        text = error.to_string() if error is not None else event.message or "no error recorded"
        return f"{_INDENT}{step} FAILED:\n{text}"
    if event.is_run_failure:  # its step failures printed above, in full where they crashed
        return None
    if level >= logging.ERROR:  # a resource that failed to start, an engine error: in full
        error = getattr(event.event_specific_data, "error", None)
        return f"{_INDENT}{event.message}" + (f"\n{error.to_string()}" if error else "")
    return None


class _ProgressHandler(logging.Handler):
    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(level=logging.DEBUG)
        self._say = say

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        if meta is None:
            line = record.getMessage() if record.levelno >= logging.WARNING else None
        else:
            line = progress_line(meta, record.levelno)
        if line:
            self._say(line)


def progress_logger(say: Callable[[str], None]) -> Any:
    """A Dagster logger for the main job's terminal: :func:`progress_line` for every record.

    It replaces Dagster's console logger on the demo's jobs (``job.with_logger_defs`` and the
    logger's key under ``loggers`` in the run config: Dagster starts only the loggers the run
    config names); the runs' full event logs still go to the Dagster instance, where the UI
    reads them.
    """
    import dagster as dg

    @dg.logger(
        config_schema=None, description="lockgate demo progress: steps, verdicts, real errors"
    )
    def progress(_context: Any) -> logging.Logger:
        log = logging.getLogger(f"lockgate.demo.progress.{id(say)}")
        log.setLevel(logging.DEBUG)
        log.propagate = False
        log.handlers = [_ProgressHandler(say)]
        return log

    return progress


@contextlib.contextmanager
def _quiet_main_job() -> Iterator[None]:
    """No BetaWarning for Dagster's beta ``data_version`` argument the assets use (lockgate closes
    the DuckDB connection Feast leaves open at exit itself)."""
    from dagster import BetaWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=BetaWarning)
        yield


def _read_ref(env: Environment, pipeline: str, asset: str) -> dict[str, Any]:
    path = env.refs_dir / pipeline / f"{asset}.json"
    result: dict[str, Any] = json.loads(path.read_text())
    return result


DEMO_CHALLENGER_OF = "fraud_lgbm"
DEMO_WEAK_EXCLUDES = ("amount", "is_foreign", "is_new_device", "tx_count_1d", "amount_sum_1d")


def _registry(env: Environment) -> Any:
    from lockgate import LocalArtifactRegistry

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


def _blocked_line(job: str, run_id: str, seconds: float, result: DemoResult) -> str:
    rules = ", ".join(r["rule"] for r in result.get("failed_rules", [])) or "no verdict"
    return (
        f"{_INDENT}{job}: run {run_id[:8]} BLOCKED by the gate in {seconds:.1f} s (failed: "
        f"{rules}); version {result['version']} stays a challenger, champion "
        f"{result['champion']} keeps serving"
    )


def _loop_phase(env: Environment, spec: Any, say: Callable[[str], None]) -> DemoResult:
    from pipelines.closed_loop import LoopSettings, run_closed_loop

    say(f"[5/5] the closed loop on a real Dagster daemon: live traffic drifts; {spec.name} must "
        "detect it, retrain, gate, validate in Triton, canary and promote on its own")  # fmt: skip
    loop = run_closed_loop(env, say=say, settings=LoopSettings(pipeline=spec.name))
    run_id = loop["runs"][-1] if loop["runs"] else ""
    result = _result(env, spec.name, run_id, 0.0)
    if loop["outcome"] == "gated":
        result = _gated_result(env, spec.name, run_id, 0.0)
    result["loop"] = loop
    return result


def _timed_run(
    make_job: Callable[[], Any], instance: Any, run_config: dict[str, Any], *, source: str
) -> tuple[Any, float]:
    """Runs the job ``make_job`` builds in process (failures returned, not raised), tagged with
    its ``lockgate/source``; returns the result and the seconds from building to the end."""
    started = time.perf_counter()
    run = make_job().execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
        tags={"lockgate/source": source},
    )
    return run, time.perf_counter() - started


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
    with _quiet_main_job():
        return _run_demo(env, days=days, only=only, say=say, keep_serving=keep_serving)


def _run_demo(
    env: Environment,
    *,
    days: int,
    only: Sequence[str],
    say: Callable[[str], None],
    keep_serving: bool,
) -> list[DemoResult]:
    from dagster import DagsterInstance

    from lockgate import build_definitions
    from pipelines.feature_repo import fraud_feast_store
    from pipelines.fraud import PIPELINES
    from pipelines.fraud_data import generate_fraud_data

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
        say(
            "      already there (add days with `python -m pipelines generate-data --append --days N`)"
        )
    else:
        generate_fraud_data(env.data_dir, days=days, progress=lambda m: say(f"      {m}"))

    say(f"[2/5] Feast feature repo applied at {env.feast_dir}")
    feast = fraud_feast_store(env)
    feast.apply()

    say(f"[3/5] Dagster runs (DAGSTER_HOME={env.dagster_home})")
    defs = build_definitions(pipelines, environment=env, resources={"feast": feast})
    instance = DagsterInstance.get()
    # only the loggers named in the run config run: Dagster's console logger stays off
    loggers = {"lockgate_progress": progress_logger(say)}
    progress_config: dict[str, Any] = {"loggers": {"lockgate_progress": {}}}
    results: list[DemoResult] = []

    def train_job(name: str) -> Any:
        return defs.resolve_job_def(name).with_logger_defs(loggers)

    for spec in pipelines:
        run, seconds = _timed_run(
            functools.partial(train_job, spec.train_job_name),
            instance,
            progress_config,
            source="demo",
        )
        if not run.success and _gated(env, spec.name):
            results.append(_gated_result(env, spec.name, run.run_id, seconds))
            say(_blocked_line(spec.train_job_name, run.run_id, seconds, results[-1]))
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
        job = (
            build_definitions([spec], environment=env, resources={"feast": feast})
            .resolve_job_def(spec.train_job_name)
            .with_logger_defs(loggers)
        )
        run, seconds = _timed_run(lambda: job, instance, progress_config, source="demo-challenger")
        if run.success:
            raise LockgateError(
                f"run {run.run_id} promoted a challenger trained without its key features; the "
                "gate should have blocked it: check the gate policy"
            )
        if not _gated(env, spec.name):
            failed = [e.message for e in run.all_events if e.is_failure]
            raise LockgateError(f"run {run.run_id} failed before the gate: {failed[:3]}")
        results.append(_gated_result(env, spec.name, run.run_id, seconds))
        say(_blocked_line(spec.train_job_name, run.run_id, seconds, results[-1]))
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
