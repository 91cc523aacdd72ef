"""The closed loop on a real Dagster daemon: drift in live traffic -> retrain -> gate -> canary.

:class:`LoopSettings` shortens the production policies of one example pipeline so the whole
loop fits in a couple of minutes (sensor intervals of a second, canary holds of two seconds, a
drift window of a few thousand requests). While the loop runs they are in
``<LOCKGATE_HOME>/loop.json``, which the example's one code location (``pipelines.definitions``,
the location ``workspace.yaml`` loads) reads: the loop's pipeline gets the loop's policies and
the other pipelines' sensors stand still. So the daemon's runs belong to the location the
Dagster UI opens, and each run links back to its sensor tick. :func:`run_closed_loop` is the
quick-start job's last phase: it injects drift, sends live traffic through the gateway and
watches the system react on its own, then prints the timeline; the settings file is removed
when it ends, and the location is back to the production policies.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lockgate import (
    CanaryPolicy,
    DagsterDaemon,
    DriftPolicy,
    Environment,
    FeedbackPolicy,
    LockgateError,
    SpecError,
    TrafficGenerator,
    compute_live_performance,
    labels_for,
    read_parquet_dir,
    write_feedback,
)

__all__ = [
    "SETTINGS_FILE",
    "LoopSettings",
    "loop_pipelines",
    "read_settings",
    "run_closed_loop",
    "write_settings",
]

EXAMPLE_ROOT = Path(__file__).resolve().parent.parent
"""The folder ``pipelines`` imports from, with the ``workspace.yaml`` the daemon loads."""

SETTINGS_FILE = "loop.json"
"""Settings file of the loop location, under ``LOCKGATE_HOME``."""


class LoopSettings(BaseModel):
    """Policies of the pipeline that the loop location serves (demo-sized by default).

    Attributes:
        pipeline: which example pipeline (``fraud_lgbm`` or ``fraud_torch``).
        canary: its canary policy (short holds; ticks every second).
        drift: its drift policy (small window; ticks every second).
        feedback: its label-feedback policy (None: no feedback sensor).
        gate_absolute: overrides of the gate's absolute floors, e.g. ``{"roc_auc": 0.999}``
            to see a retrain that fails the gate leave the champion serving.
        validation_p99_budget_ms: the sandbox Triton's p99 budget for the retrain (None: the
            pipeline's own); a busy 2-core machine can miss the example's 50 ms while its
            model is not at fault.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: str = "fraud_lgbm"
    canary: CanaryPolicy = Field(
        default_factory=lambda: CanaryPolicy(
            steps=(1, 5, 25, 100),
            hold_seconds=2,
            min_requests=20,
            max_p99_ms=250.0,
            max_p99_ratio=4.0,
            max_error_rate=0.01,
            max_prediction_psi=0.5,
            interval_seconds=1,
        )
    )
    drift: DriftPolicy = Field(
        default_factory=lambda: DriftPolicy(
            window_rows=3000,
            min_rows=1500,
            window_seconds=3600,
            consecutive=2,
            cooldown_seconds=600,
            interval_seconds=1,
        )
    )
    feedback: FeedbackPolicy | None = Field(
        default_factory=lambda: FeedbackPolicy(
            window=5000, min_labels=200, cooldown_seconds=600, interval_seconds=1
        )
    )
    gate_absolute: dict[str, float] | None = None
    validation_p99_budget_ms: float | None = Field(default=None, gt=0)


def write_settings(env: Environment, settings: LoopSettings) -> Path:
    """Write the loop location's settings; returns the file."""
    path = env.home / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(settings.model_dump_json(indent=1))
    return path


def read_settings(env: Environment) -> LoopSettings | None:
    """The settings of the loop running in ``env`` (None: no loop runs).

    Raises:
        SpecError: the file is not valid settings JSON.
    """
    path = env.home / SETTINGS_FILE
    if not path.exists():
        return None
    try:
        return LoopSettings.model_validate_json(path.read_text())
    except ValueError as exc:
        raise SpecError(
            f"{path} is not valid loop settings ({exc}); delete it to use the defaults"
        ) from exc


def loop_pipelines(settings: LoopSettings | None) -> list[Any]:
    """The example's pipelines as the code location serves them.

    Without a loop (``settings`` None) they are as written. During the loop, its pipeline has
    the loop's policies and the feature-change trigger off (the loop appends the drift itself),
    and the other pipelines' drift, feedback and feature-change sensors are off.
    """
    from pipelines.fraud import PIPELINES

    if settings is None:
        return list(PIPELINES)
    found = [p for p in PIPELINES if p.name == settings.pipeline]
    if not found:
        raise SpecError(
            f"loop pipeline {settings.pipeline!r} is not an example pipeline; use one of "
            f"{[p.name for p in PIPELINES]}"
        )
    spec = found[0]
    gate = spec.gate
    if settings.gate_absolute is not None and gate is not None:
        gate = gate.model_copy(update={"absolute": {**gate.absolute, **settings.gate_absolute}})
    serving = spec.serving
    if settings.validation_p99_budget_ms is not None and serving is not None:
        serving = serving.model_copy(update={"p99_budget_ms": settings.validation_p99_budget_ms})
    looped = spec.model_copy(
        update={
            "canary": settings.canary,
            "drift": settings.drift,
            "feedback": settings.feedback,
            "feature_changes": None,
            "gate": gate,
            "serving": serving,
        }
    )
    still = {"drift": None, "feedback": None, "feature_changes": None}
    return [looped if p.name == spec.name else p.model_copy(update=still) for p in PIPELINES]


@contextlib.contextmanager
def _loop_running(env: Environment, settings: LoopSettings) -> Iterator[None]:
    """The loop's settings in place for the code location while the loop runs."""
    path = write_settings(env, settings)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def data_dir(env: Environment) -> Path:
    """The example's source data: ``<home>/data``, or ``$LOCKGATE_DATA_DIR`` in production."""
    if env.kind == "production" and os.environ.get("LOCKGATE_DATA_DIR"):
        return Path(os.environ["LOCKGATE_DATA_DIR"])
    return env.data_dir


@contextlib.contextmanager
def plain_resources(env: Environment) -> Iterator[dict[str, Any]]:
    """The objects assets get, outside a run: ``feast``, ``artifacts``, ``audit`` (its log)
    and ``serving_stack``. Local: the environment's own; production: its Dagster resources
    built from the environment variables (the engines they name, as a run sees them)."""
    import dagster as dg

    resources = env.resources()
    keep = {k: resources[k] for k in ("feast", "artifacts", "audit", "serving_stack")}
    if env.kind == "local":
        yield keep | {"audit": keep["audit"].log()}
        return
    with dg.build_resources(keep) as built:
        plain = {k: getattr(built, k) for k in keep}
        yield plain | {"audit": plain["audit"].log()}


def _traffic_frame(env: Environment, resources: dict[str, Any], spec: Any, days: int) -> Any:
    """Feature rows of the last ``days`` days of transactions (what live clients send)."""
    import pandas as pd

    labels = read_parquet_dir(data_dir(env) / spec.labels.dataset)
    ts = labels[spec.labels.timestamp_column]
    recent = labels[ts >= ts.max().normalize() - pd.Timedelta(days=days - 1)]
    feast = resources["feast"]
    keep = [*spec.labels.entity_columns, spec.labels.timestamp_column, spec.label]
    entity = recent[[*keep, "label_timestamp"]]
    entity = entity.rename(columns={spec.labels.timestamp_column: "event_timestamp"})
    frame = feast.historical_features(feature_service=spec.feature_service, entity_df=entity)
    # clients of every hour of those days, interleaved (replayed in order, a window of a few
    # thousand requests would cover a few hours of one day and drift in hour_of_day)
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


@contextlib.contextmanager
def _traffic(
    resources: dict[str, Any], spec: Any, frame: Any, urls: Sequence[str] | None
) -> Iterator[Any]:
    urls = list(urls or [resources["serving_stack"].gateway().url])
    with TrafficGenerator.for_frame(
        urls, spec.name, frame, artifacts=resources["artifacts"], threads=max(2, len(urls)),
        keep_trace_ids=True,
    ) as traffic:  # fmt: skip
        yield traffic


def _short(text: Any, limit: int = 4) -> str:
    """``critical drift on a, b, c, d, e, f`` -> ``critical drift on a, b, c, d and 2 more``."""
    head, sep, names = str(text).partition(" on ")
    items = names.split(", ")
    if not sep or len(items) <= limit:
        return str(text)
    return f"{head} on {', '.join(items[:limit])} and {len(items) - limit} more"


def _describe(entry: dict[str, Any]) -> str | None:
    kind, p = entry["kind"], entry["payload"]
    if kind == "retrain_requested":
        return f"retrain requested by the {p.get('trigger')} sensor: {_short(p.get('reason'))}"
    if kind == "gate_verdict":
        outcome = "passed" if p.get("passed") else "FAILED"
        failed = [r.get("rule") for r in p.get("failed_rules", [])]
        extra = f" ({', '.join(map(str, failed))})" if failed else ""
        return f"gate {outcome} for {p.get('version')}{extra}"
    if kind == "validation":
        outcome = "passed" if p.get("passed") else "FAILED"
        return f"infra validation in a sandbox Triton {outcome} for {p.get('version')}"
    if kind == "canary_step":
        start = p.get("from_weight")
        where = "started at" if start is None else f"{start:.0%} ->"
        return f"canary {where} {p.get('weight', 0):.0%} for {p.get('challenger')}"
    if kind == "promotion":
        return f"promoted {p.get('to')} (was {p.get('from')}): {p.get('reason')}"
    if kind == "rollback":
        return f"rolled back {p.get('challenger')}: {p.get('reason')}"
    return None


def _feedback(
    env: Environment,
    resources: dict[str, Any],
    spec: Any,
    frame: Any,
    report: Any,
    mark: Callable[[str], None],
) -> dict[str, Any]:
    """The delayed labels of the served requests come back: join them and measure each version."""
    policy = spec.feedback
    labels = labels_for(report.trace_rows, frame[spec.label], frame["label_timestamp"])
    write_feedback(data_dir(env) / policy.dataset, labels)
    stack = resources["serving_stack"]
    if isinstance(stack.prediction_log_dir, str):  # exported by replicas: roll every one first
        stack.gateway().roll_log()
    doc = compute_live_performance(
        spec, stack=resources["serving_stack"], artifacts=resources["artifacts"],
        data_dir=data_dir(env),
    )  # fmt: skip
    versions = {
        v: {"n": b.get("n"), policy.metric: (b.get("metrics") or {}).get(policy.metric)}
        for v, b in (doc["performance"].get("versions") or {}).items()
    }
    shown = ", ".join(
        f"{v} {policy.metric} {m[policy.metric]:.3f} on {m['n']} labels"
        for v, m in versions.items()
        if m[policy.metric] is not None
    )
    mark(f"label feedback: {len(labels)} delayed labels joined to the log by trace id; "
         f"live {shown or 'not enough labels yet'}; concept drift {doc['level']}")  # fmt: skip
    return {"labels": len(labels), "level": doc["level"], "reason": doc["reason"],
            "versions": versions, "report": doc["report_uri"]}  # fmt: skip


def run_closed_loop(
    env: Environment,
    *,
    say: Callable[[str], None] = print,
    settings: LoopSettings | None = None,
    drift_days: int = 6,
    timeout_s: float = 420.0,
    gateway_urls: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Inject drift, serve it, and let the daemon detect, retrain, gate, canary and promote.

    Expects the pipeline to be trained and served already (the quick-start job's earlier
    phases). Returns the outcome (``promoted``, ``rolled_back``, ``gated`` or
    ``failed_validation``: the sandbox Triton refused the retrain), the timeline
    (seconds since the drift was injected, what happened) and the run ids.

    Runs in either environment: ``local`` (the embedded default), or ``production``
    (``LOCKGATE_ENV=production``: the engines the ``LOCKGATE_*`` variables name, Dagster on
    PostgreSQL when ``LOCKGATE_DAGSTER_PG_URL`` is set; see :mod:`pipelines.production`).
    ``gateway_urls`` spreads the live clients over several gateway replicas (default: the
    stack's gateway).

    Raises:
        LockgateError: the loop did not finish within ``timeout_s`` (the message has the
            timeline so far and the daemon's log).
    """
    with plain_resources(env) as resources:
        return _closed_loop(
            env, resources, say=say, settings=settings or LoopSettings(),
            drift_days=drift_days, timeout_s=timeout_s, gateway_urls=gateway_urls,
        )  # fmt: skip


def _closed_loop(
    env: Environment,
    resources: dict[str, Any],
    *,
    say: Callable[[str], None],
    settings: LoopSettings,
    drift_days: int,
    timeout_s: float,
    gateway_urls: Sequence[str] | None,
) -> dict[str, Any]:
    from dagster import DagsterRunStatus, RunsFilter

    from pipelines.fraud_data import generate_fraud_data

    (spec,) = [p for p in loop_pipelines(settings) if p.name == settings.pipeline]
    registry = resources["artifacts"]
    champion = registry.alias(spec.name, "champion")
    if champion is None:
        raise LockgateError(f"{spec.name} has no champion: train it before the loop")
    audit = resources["audit"]
    seen = len(audit.entries())
    timeline: list[tuple[float, str]] = []
    t0 = time.time()

    def mark(what: str, at: float | None = None) -> None:
        at = time.time() if at is None else at
        timeline.append((at - t0, what))
        say(f"      {at - t0:6.1f} s  {what}")

    mark(
        f"drift injected: {drift_days} days of a marketing campaign for young customers "
        "(covariate drift) appended to the sources"
    )
    generate_fraud_data(data_dir(env), days=drift_days, append=True, covariate_drift=1.0)
    frame = _traffic_frame(env, resources, spec, days=min(3, drift_days))
    workspace = EXAMPLE_ROOT / "workspace.yaml"  # the location the Dagster UI opens
    outcome: str | None = None
    run_ids: list[str] = []
    with (
        _loop_running(env, settings),
        DagsterDaemon(env, workspace, cwd=EXAMPLE_ROOT) as daemon,
        _traffic(resources, spec, frame, gateway_urls) as traffic,
    ):
        mark(f"dagster-daemon up (pid {daemon.process.pid if daemon.process else '?'}); live "
             f"traffic from the drifted days flows through the gateway")  # fmt: skip
        with daemon.instance() as instance:
            reported: set[int] = set()
            levels_seen: set[str] = set()
            while time.time() - t0 < timeout_s and outcome is None:
                time.sleep(1.0)
                for record in instance.fetch_materializations(
                    spec.asset_key("drift_report"), limit=5
                ).records:
                    if record.storage_id in reported or record.timestamp < t0:
                        continue
                    reported.add(record.storage_id)
                    meta = record.asset_materialization.metadata  # type: ignore[union-attr]
                    shown = {
                        k: str(getattr(meta.get(k), "value", ""))
                        for k in ("level", "reason", "trigger")
                    }
                    key = f"{shown['level']}:{shown['trigger']}"
                    if key not in levels_seen:
                        levels_seen.add(key)
                        at = record.timestamp
                        with contextlib.suppress(KeyError, ValueError):
                            at = dt.datetime.fromisoformat(
                                str(meta["analysed_at"].value)
                            ).timestamp()
                        mark(f"drift report {shown['level']}: {_short(shown['reason'])} "
                             f"({shown['trigger']})", at)  # fmt: skip
                for entry in audit.entries()[seen:]:
                    seen += 1
                    if entry["pipeline"] != spec.name:
                        continue
                    text = _describe(entry)
                    at = dt.datetime.fromisoformat(entry["at"]).timestamp()
                    if text:
                        mark(text, at)
                    if entry["kind"] == "promotion":
                        outcome = "promoted"
                    elif entry["kind"] == "rollback":
                        outcome = "rolled_back"
                    elif entry["kind"] == "gate_verdict" and not entry["payload"].get("passed"):
                        outcome = "gated"
                    elif entry["kind"] == "validation" and not entry["payload"].get("passed"):
                        outcome = "failed_validation"  # the sandbox refused it: a decision
                runs = instance.get_runs(
                    filters=RunsFilter(
                        job_name=spec.train_job_name, tags={"lockgate/trigger": "drift"}
                    )
                )
                for run in runs:
                    if run.run_id not in run_ids:
                        run_ids.append(run.run_id)
                        mark(f"the daemon launched train run {run.run_id[:8]}")
                    if run.status == DagsterRunStatus.FAILURE and outcome is None:
                        # that run's own verdict (an earlier gated run must not hide a crash)
                        failed_gate = any(
                            e["kind"] in ("gate_verdict", "validation")
                            and not e["payload"].get("passed")
                            and e.get("actor") == f"dagster run {run.run_id}"
                            for e in audit.entries(pipeline=spec.name)
                        )
                        if not failed_gate:
                            raise LockgateError(
                                f"drift-triggered run {run.run_id} failed before the gate; "
                                f"open it in the Dagster UI. Daemon log:\n{daemon.log_tail()}"
                            )
            # let the runs it launched finish before the daemon (and its run workers) stop
            deadline = time.time() + 120.0
            while outcome is not None and time.time() < deadline:
                pending = [
                    r.run_id
                    for r in instance.get_runs(filters=RunsFilter(run_ids=run_ids))
                    if not r.is_finished
                ]
                if not pending:
                    break
                time.sleep(0.5)
            report = traffic.report
    feedback = None
    if settings.feedback is not None and outcome is not None:
        feedback = _feedback(env, resources, spec, frame, report, mark)
    if outcome is None:
        lines = "\n".join(f"  {t:6.1f} s  {w}" for t, w in timeline)
        raise LockgateError(
            f"the closed loop did not finish within {timeout_s:.0f} s; timeline so far:\n{lines}"
            f"\nthe daemon's log {daemon.log_path} ends with:\n{daemon.log_tail()}\nfix: open "
            "the runs and sensor ticks in the Dagster UI, or raise timeout_s on a slow machine"
        )
    final = registry.alias(spec.name, "champion")
    mark(f"loop closed: {outcome}; champion is now {final}")
    return {
        "pipeline": spec.name,
        "outcome": outcome,
        "champion_before": champion,
        "champion_after": final,
        "timeline": [
            {"seconds": round(t, 2), "event": w} for t, w in sorted(timeline, key=lambda x: x[0])
        ],
        "runs": run_ids,
        "requests": report.answered,
        "errors": report.errors,
        "by_version": dict(report.by_version),
        "feedback": feedback,
    }
