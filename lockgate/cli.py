"""The ``lockgate`` command line: the demo (main job), data generation, versions and reproduce."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from lockgate.deploy.cli import deploy_group
from lockgate.environment import Environment
from lockgate.errors import LockgateError

__all__ = ["main"]


def _say(message: str) -> None:
    click.echo(message, err=False)


def _env(home: str | None) -> Environment:
    return Environment.local(home) if home else Environment.from_env()


def _registry(env: Environment) -> Any:
    from lockgate.lineage.registry import LocalArtifactRegistry

    return LocalArtifactRegistry(root=str(env.artifacts_dir))


_home_option = click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="lockgate home folder (default: $LOCKGATE_HOME or ./.lockgate).",
)


def _location_options(func: Any) -> Any:
    func = click.option(
        "-w",
        "--workspace",
        type=click.Path(dir_okay=False),
        default=None,
        help="workspace.yaml to load (as `dagster dev -w`).",
    )(func)
    return click.option(
        "-m",
        "--module",
        default=None,
        help="Code location module to load (default: [tool.dagster] of ./pyproject.toml).",
    )(func)


def _locations(home: str | None, module: str | None, workspace: str | None) -> list[Any]:
    from lockgate.discover import load_code_locations

    if home:
        os.environ["LOCKGATE_HOME"] = str(Path(home).expanduser().resolve())
    return load_code_locations(module=module, workspace=workspace)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """lockgate: locked, gated model pipelines on Dagster, Feast and Triton."""


@cli.command("init")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--name", default=None, help="Package and pipeline name (default: the folder's).")
def init_cmd(directory: str, name: str | None) -> None:
    """Scaffold a new lockgate project in DIRECTORY (Feast repo, pipeline, Dagster workspace)."""
    from lockgate.scaffold import init_project

    written = init_project(directory, name=name)
    root = written[0].parent
    _say(f"created lockgate project in {root}:")
    for path in written:
        _say(f"  {path.relative_to(root)}")
    package = written[-1].parent.name
    _say(
        f"next: cd {root} && pip install -e . && python -m {package}.generate_data && "
        "(cd feature_repo && feast apply) && dagster dev -w workspace.yaml"
    )


@cli.command("apply")
@_home_option
@_location_options
def apply_cmd(home: str | None, module: str | None, workspace: str | None) -> None:
    """Apply the Feast definitions that a code location builds in code.

    A Feast repository (a folder with feature_store.yaml) is never applied by lockgate: it says
    to run `feast apply` there. A store built in code (`FeastStore(definitions=...)`, as the
    example's) gets its objects created or updated; nothing else in the registry is touched.
    """
    done: set[str] = set()
    for location in _locations(home, module, workspace):
        feast = location.resource("feast")
        for spec in location.pipelines.values():
            store = feast.for_pipeline(spec) if feast is not None else None
            if store is None or store.repo_dir in done:
                continue
            done.add(store.repo_dir)
            if store.is_feast_repo:
                _say(
                    f"{spec.name}: {store.repo_path} is a Feast repository: run `feast apply` "
                    "there (lockgate never applies to it)"
                )
            elif store.definitions:
                result = store.apply()
                _say(
                    f"{spec.name}: Feast registry {result['registry_path']}: "
                    f"created {result['created']}, updated {result['updated']}, "
                    f"{len(result['unchanged'])} unchanged, not managed {result['not_managed']}"
                )
            else:
                _say(f"{spec.name}: the feast store at {store.repo_dir} has no definitions")


@cli.command("pipelines")
@_home_option
@_location_options
def pipelines_cmd(home: str | None, module: str | None, workspace: str | None) -> None:
    """List the pipelines of a code location with their task, Feast repo and project."""
    for location in _locations(home, module, workspace):
        _say(f"{location.source}:")
        for name, spec in sorted(location.pipelines.items()):
            repo = spec.feature_repo_path or "(the feast resource)"
            _say(
                f"  {name}  task={spec.task}  trainer={spec.trainer.kind}  "
                f"feature_service={spec.feature_service}  feature_repo={repo}  "
                f"project={spec.project_dir}"
            )


@cli.command("versions")
@_home_option
@click.argument("pipeline")
def versions_cmd(home: str | None, pipeline: str) -> None:
    """List the model versions of PIPELINE with their triads."""
    registry = _registry(_env(home))
    versions = registry.model_versions(pipeline)
    if not versions:
        _say(f"no model versions of {pipeline!r} in {registry.root}")
        return
    rows = []
    for version in versions:
        record = registry.lock_record(pipeline, version)
        rows.append((record["created_at"], version, record["triad"]))
    for created, version, triad in sorted(rows):
        _say(
            f"{version}  {created}  code {triad['code_commit'][:12]}  "
            f"data {triad['data_snapshot_sha256'][:12]}  weights {triad['weights_sha256'][:12]}"
        )


@cli.command("show")
@_home_option
@click.argument("pipeline")
@click.argument("version")
def show_cmd(home: str | None, pipeline: str, version: str) -> None:
    """Print the lock record of PIPELINE VERSION as JSON."""
    registry = _registry(_env(home))
    record = registry.lock_record(pipeline, version)
    record = dict(record, gate_verdicts=registry.verdicts(pipeline, version))
    _say(json.dumps(record, indent=2, sort_keys=True))


@cli.command("aliases")
@_home_option
@click.argument("pipeline")
def aliases_cmd(home: str | None, pipeline: str) -> None:
    """Show PIPELINE's champion and challenger and every move of them (who, when, why)."""
    state = _registry(_env(home)).aliases(pipeline)
    if not state["aliases"]:
        _say(f"{pipeline} has no champion or challenger yet")
        return
    for alias, version in sorted(state["aliases"].items()):
        _say(f"{alias:<11} {version}")
    _say("history:")
    for move in state["history"]:
        _say(
            f"  {move['at']}  {move['alias']}: {move['from']} -> {move['to']}  "
            f"by {move['actor']}: {move['reason']}"
        )


@cli.command("promote")
@_home_option
@click.argument("pipeline")
@click.argument("version")
@click.option("--reason", required=True, help="Why, for the alias history (required).")
@click.option(
    "--override-gate",
    is_flag=True,
    help="Promote even though the version's latest gate verdict failed (recorded as such).",
)
def promote_cmd(
    home: str | None, pipeline: str, version: str, reason: str, override_gate: bool
) -> None:
    """Make VERSION the champion of PIPELINE by hand (first model, or an audited override)."""
    import getpass

    from lockgate.errors import GateFailedError
    from lockgate.serving.canary import OVERRIDE_MARK  # what the controller accepts as an override

    registry = _registry(_env(home))
    actor = f"{getpass.getuser()} (lockgate promote)"
    verdicts = registry.verdicts(pipeline, version)
    latest = verdicts[-1] if verdicts else None
    if latest is not None and not latest["passed"] and not override_gate:
        failed = [r["rule"] for r in latest["rules"] if not r["passed"]]
        raise GateFailedError(
            f"{pipeline} {version} failed the gate ({', '.join(failed)}); promoting it needs "
            "--override-gate, which the alias history records"
        )
    previous = registry.alias(pipeline, "champion")
    registry.move_alias(
        pipeline,
        "champion",
        version,
        actor=actor,
        reason=reason + (f" {OVERRIDE_MARK}" if latest and not latest["passed"] else ""),
        expected=previous,
        evidence={"verdict": latest["report_id"] if latest else None},
    )
    # a person's decision lands in the hash-chained log like the controller's; an override is
    # honoured by the canary controller only when it is recorded here
    _env(home).resources()["audit"].record(
        "promotion",
        pipeline=pipeline,
        actor=actor,
        payload={
            "from": previous,
            "to": version,
            "reason": reason,
            "override": bool(latest and not latest["passed"]),
            "by": "lockgate promote",
        },
    )
    _say(f"{pipeline} champion: {previous} -> {version}")
    _say(
        _record_registry_view(
            _env(home),
            registry,
            pipeline,
            reason=f"promoted {version} by hand (was {previous}): {reason}",
        )
    )


def _registry_instance(env: Environment) -> tuple[Any, str]:
    """The Dagster instance the registry view lives in and where it is: ``DAGSTER_HOME`` when
    set, else the environment's own; ``(None, why)`` when there is none."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get(), f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
    home = env.dagster_home
    if not home.is_dir():
        return None, f"no Dagster instance at {home} (the folder does not exist)"
    return dg.DagsterInstance.from_config(str(home)), str(home)


def _record_registry_view(env: Environment, registry: Any, pipeline: str, *, reason: str) -> str:
    """Reports a runless ``[pipeline, model_registry]`` materialization (the metadata of
    :func:`lockgate.assets.weights.model_registry_event`), so the UI's registry view shows a
    promotion made by hand; returns the line to print. A promotion never fails on it: without a
    reachable instance the line is a note saying so.

    Whether the pipeline serves (traffic shares) and has a gate is read from what is on record:
    a canary state, a served earlier registry view, gate verdicts.
    """
    try:
        import dagster as dg

        from lockgate.assets.weights import model_registry_metadata

        instance, where = _registry_instance(env)
        if instance is None:
            return f"note: registry view not recorded: {where}; it updates on the next run"
        key = dg.AssetKey([pipeline, "model_registry"])
        with instance:
            canary = env.resources()["serving_stack"].canary_state(pipeline)
            last = instance.get_latest_materialization_event(key)
            before = last.asset_materialization if last is not None else None
            served = canary is not None or (
                before is not None and "champion_traffic_pct" in before.metadata
            )
            gated = any(registry.verdicts(pipeline, v) for v in registry.model_versions(pipeline))
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=key,
                    description=reason[:2000],
                    metadata=model_registry_metadata(
                        registry, pipeline, canary=canary, served=served, gated=gated, reason=reason
                    ),
                )
            )
        return (
            f"registry view recorded: {pipeline}/model_registry in the Dagster instance at {where}"
        )
    except Exception as exc:  # the alias moved and is audited: the view is secondary
        return (
            f"note: registry view not recorded ({type(exc).__name__}: {exc}); the promotion "
            "stands and the view updates on the next run"
        )


@cli.group("audit")
def audit_group() -> None:
    """The hash-chained audit log of gate verdicts, validations, traffic steps and promotions."""


def _parse_head(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    import re

    if value is None:
        return None
    seq, _, digest = value.partition(":")
    well_formed = re.fullmatch(r"-?\d+", seq) and re.fullmatch(r"[0-9a-f]{64}", digest)
    if not well_formed or int(seq) < -1:
        raise click.BadParameter(
            f"{value!r} is not SEQ:HASH (a seq >= -1, a colon, 64 lowercase hex digits); use "
            "the head `lockgate audit verify` printed, e.g. 12:3f2a...",
            ctx=ctx,
            param=param,
        )
    return (int(seq), digest)


@audit_group.command("verify")
@_home_option
@click.option(
    "--expected-head",
    default=None,
    callback=_parse_head,
    help="SEQ:HASH published elsewhere; checked besides the signed witness (<log>.head).",
)
def audit_verify_cmd(home: str | None, expected_head: tuple[int, str] | None) -> None:
    """Check every entry's hash and link and the signed head; exit 1 naming the first problem.

    The head that the last append signed (``<log>.head``) must still be the log's: a truncated,
    rewritten, replaced or deleted log fails.
    """
    log = _audit_log(home)
    result = log.verify(expected_head=expected_head)
    if not result.ok:
        click.echo(f"audit log {log.path} FAILED verification: {result.message}", err=True)
        sys.exit(1)
    witness = log.witness_path if isinstance(log.witness_path, str) else log.witness_path.name
    _say(
        f"audit log {log.path}: {result.entries} entries verified, head "
        f"{result.head.seq}:{result.head.hash} (signed in {witness})"
    )


def _audit_log(home: str | None) -> Any:
    """The audit log the commands read: the shared one in PostgreSQL when
    ``$LOCKGATE_STATE_DB_URL`` is set (production), else the home's file."""
    url = os.environ.get("LOCKGATE_STATE_DB_URL", "").strip()
    if url:
        from lockgate.state.audit import PostgresAuditLog

        return PostgresAuditLog(url, log=os.environ.get("LOCKGATE_AUDIT_LOG_NAME", "main"))
    from lockgate.audit.log import AuditLog

    return AuditLog(_env(home).audit_path)


@audit_group.command("witness")
@_home_option
def audit_witness_cmd(home: str | None) -> None:
    """Sign the log's current head (a log from before signed heads, or after reviewing it)."""
    log = _audit_log(home)
    head = log.witness_head()
    _say(f"audit log {log.path}: head seq {head.seq} hash {head.hash} signed in {log.witness_path}")


@audit_group.command("show")
@_home_option
@click.option("--pipeline", default=None, help="Only this pipeline's entries.")
@click.option("--kind", default=None, help="Only entries of this kind (e.g. rollback).")
def audit_show_cmd(home: str | None, pipeline: str | None, kind: str | None) -> None:
    """Print audit entries, oldest first."""
    for entry in _audit_log(home).entries(pipeline=pipeline, kind=kind):
        _say(
            f"{entry['seq']:>5} {entry['at']} {entry['pipeline']:<12} {entry['kind']:<16} "
            f"{entry['actor']}: {json.dumps(entry['payload'], sort_keys=True)[:200]}"
        )


@cli.group("serve")
def serve_group() -> None:
    """The local serving stack: tritonserver and the gateway, on 127.0.0.1."""


@serve_group.command("start")
@_home_option
def serve_start_cmd(home: str | None) -> None:
    """Start (or attach to) tritonserver and the gateway on their kept ports; restore every
    pipeline's champion and running canary; exit 1 when one does not answer."""
    import getpass

    from lockgate.sensors.canary import restore_serving

    since = time.perf_counter()
    resources = Environment.resources(_env(home))
    stack = resources["serving_stack"]
    restored = restore_serving(
        stack,
        artifacts=resources["artifacts"],
        audit=resources["audit"],
        actor=f"{getpass.getuser()} (lockgate serve start)",
        since=since,
    )
    info = restored["started"]
    _say(f"tritonserver {info['triton_url']}  gateway {info['gateway_url']}")
    if info.get("reaped_stubs"):
        _say(f"  reaped {info['reaped_stubs']} python-backend stub(s) a crashed tritonserver left")
    failed = False
    for row in restored["pipelines"]:
        if row["action"] in ("none", "refused"):
            _say(f"  {row['pipeline']}: {row['reason']}")
            continue
        text = f"  {row['pipeline']}: champion {row['champion']}"
        if row["challenger"]:
            text += f" + canary {row['challenger']} at {row['weight']:.0%}"
        if row["action"] == "restored":
            text += f", restored in {row['recovery_s']:.2f} s (champion answering; all: "
            text += f"{row['full_recovery_s']:.2f} s; loaded: {', '.join(row['loaded']) or 'none'}"
            text += f"; route set: {row['route_changed']})"
        text += ", answering" if row["answering"] else f", NOT answering: {row['problems']}"
        _say(text)
        failed = failed or not row["answering"]
    if failed:
        sys.exit(1)


@serve_group.command("supervise")
@_home_option
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds per check.")
@click.option(
    "--max-backoff", type=float, default=60.0, show_default=True, help="Longest retry wait."
)
def serve_supervise_cmd(home: str | None, interval: float, max_backoff: float) -> None:
    """Keep the stack serving without the Dagster daemon: restart what dies (backoff on
    failures), reload champions and canaries; runs until SIGTERM or Ctrl-C."""
    import getpass
    import signal

    from lockgate.sensors.canary import supervise

    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    resources = Environment.resources(_env(home))

    def report(event: dict[str, Any]) -> None:
        if event["event"] == "failed":
            _say(f"recovery FAILED ({event['why']}): {event.get('error', event.get('pipelines'))}")
            return
        for row in event["pipelines"]:
            if row["action"] == "restored":
                _say(
                    f"{event['why']}: {row['pipeline']} champion {row['champion']} answering "
                    f"{row['recovery_s']:.2f} s after the check"
                )

    _say(f"supervising the serving stack every {interval:g} s (Ctrl-C to stop)")
    supervise(
        resources["serving_stack"],
        artifacts=resources["artifacts"],
        audit=resources["audit"],
        actor=f"{getpass.getuser()} (lockgate serve supervise)",
        interval_s=interval,
        max_backoff_s=max_backoff,
        should_stop=lambda: bool(stopping),
        report=report,
    )
    _say("supervisor stopped; the servers keep running")


@serve_group.command("status")
@_home_option
def serve_status_cmd(home: str | None) -> None:
    """Say what runs and what answers (one real inference per routed version), what each
    gateway route sends where, and canaries; exit 1 when a server or a routed version is down."""
    stack = Environment.resources(_env(home))["serving_stack"]
    triton, gateway = stack.triton(), stack.gateway()
    triton_up, gateway_up = triton.health(), gateway.health()  # local or remote alike
    _say(f"tritonserver: {'up ' + triton.url if triton_up else 'down'}")
    _say(f"gateway:      {'up ' + gateway.url if gateway_up else 'down'}")
    if gateway_up:
        with contextlib.suppress(LockgateError):  # a remote gateway without its admin URL
            _say(f"  admin: {gateway.admin_url} (bearer token; changes audited)")
    if triton_up:
        _say(f"  loaded: {', '.join(triton.loaded()) or 'nothing'}")
    failed = not (triton_up and gateway_up)
    if gateway_up:
        for name, route in sorted(gateway.routes().items()):
            _say(f"  route {name}: {json.dumps(route, sort_keys=True)}")
        for row in stack.probe():  # one real inference per routed version
            what = f"  {row['pipeline']} {row['role']} {row['version']}"
            if row["answering"]:
                _say(f"{what}: answering ({row['ms']:.1f} ms)")
            else:
                _say(f"{what}: NOT answering: {row['problem']}")
                failed = True
    for pipeline in stack.canary_pipelines():  # files, or the shared state database
        state = stack.canary_state(pipeline)
        if state is None:
            continue
        _say(
            f"  canary {state['pipeline']}: {state['status']} {state['challenger']} at "
            f"{state['weight']:.0%} (champion {state['champion']})"
        )
    if failed:
        sys.exit(1)


@serve_group.command("stop")
@_home_option
def serve_stop_cmd(home: str | None) -> None:
    """Stop the gateway and tritonserver."""
    Environment.resources(_env(home))["serving_stack"].stop()
    _say("serving stack stopped")


@cli.command("verify")
@_home_option
@click.argument("pipeline")
@click.argument("version")
def verify_cmd(home: str | None, pipeline: str, version: str) -> None:
    """Check the signed lock record of PIPELINE VERSION and every stored file against it."""
    registry = _registry(_env(home))
    files = registry.model_files(pipeline, version)
    _say(f"{pipeline}/{version}: signed lock record; {len(files)} files match it")


@cli.command("sign")
@_home_option
@click.argument("pipeline")
@click.argument("versions", nargs=-1)
def sign_cmd(home: str | None, pipeline: str, versions: tuple[str, ...]) -> None:
    """Sign lock records and gate verdicts written before lockgate signed them (default: every
    version).

    Each record and every file is checked first; a record that does not verify is not signed.
    A verdict is signed when it still hashes to its name: signing says you trust the registry's
    files, so run it only on a registry nobody else could write.
    """
    registry = _registry(_env(home))
    for version in versions or registry.model_versions(pipeline):
        _, written = registry.sign_model_version(pipeline, version)
        verdicts = registry.sign_verdicts(pipeline, version)
        _say(
            f"{pipeline}/{version}: {'signed' if written else 'already signed, verified'}"
            + (f"; {verdicts} gate verdict(s) signed" if verdicts else "")
        )


@cli.command("reproduce")
@_home_option
@click.argument("pipeline")
@click.argument("version")
@click.option(
    "--restore",
    is_flag=True,
    help="When verified, write the version's missing or damaged files back into the registry.",
)
def reproduce_cmd(home: str | None, pipeline: str, version: str, restore: bool) -> None:
    """Rebuild PIPELINE VERSION from its lock record and verify every file is bit-identical.

    Exits 0 when verified, 1 when the weights or any other file differ (the differences are
    listed).
    """
    from lockgate.lineage.reproduce import reproduce

    started = time.perf_counter()
    _say(f"rebuilding {pipeline}/{version} from its lock record ...")
    report = reproduce(_registry(_env(home)), pipeline, version, restore=restore)
    _say(report.render())
    _say(f"({time.perf_counter() - started:.1f} s)")
    if not report.verified:
        sys.exit(1)


@cli.command("drift")
@_home_option
@_location_options
@click.argument("pipeline")
@click.option(
    "--rows", type=int, default=None, help="Analyse the last N live rows (default: the policy's)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def drift_cmd(
    home: str | None,
    module: str | None,
    workspace: str | None,
    pipeline: str,
    rows: int | None,
    as_json: bool,
) -> None:
    """Drift of PIPELINE's live traffic against its champion's training data, now.

    Reads the gateway's prediction log; the report is stored like the sensor's (nothing is
    triggered). Exit status 0 whatever the level; the level is printed first.
    """
    from lockgate.discover import find_pipeline
    from lockgate.errors import SpecError
    from lockgate.monitoring.drift_report import compute_drift_report

    env = _env(home)
    spec, _ = find_pipeline(_locations(home, module, workspace), pipeline)
    if spec.drift is None:
        raise SpecError(
            f"pipeline {pipeline!r} has no drift policy: the drift report compares live traffic "
            "with the champion's training data under its DriftPolicy. Fix: add "
            "drift=DriftPolicy(...) to its spec"
        )
    if rows is not None:
        assert spec.drift is not None
        policy = spec.drift.model_copy(update={"window_rows": rows, "min_rows": min(rows, 10)})
        spec = spec.model_copy(update={"drift": policy})
    resources = env.resources()
    report = compute_drift_report(
        spec, stack=resources["serving_stack"], artifacts=resources["artifacts"]
    )
    if as_json:
        _say(json.dumps(report, indent=2, sort_keys=True))
        return
    _say(f"{pipeline}: {report['level']}: {report['reason']}")
    window = report.get("window") or {}
    if window:
        _say(f"  window: {window.get('rows')} rows, {window.get('first')} .. {window.get('last')}")
    for f in report.get("features") or []:
        ks = "" if f["ks"] is None else f"  KS {f['ks']:.3f}"
        _say(
            f"  {f['feature']:<26} {f['severity']:<8} PSI {f['psi']:.3f}  JSD {f['jsd']:.3f}{ks}"
            f"  missing {f['missing_ref']:.3f} -> {f['missing_cur']:.3f}"
        )
    prediction = report.get("prediction") or {}
    if "psi" in prediction:
        if "mean_reference" in prediction:  # binary and regression: the mean prediction
            detail = f"mean {prediction['mean_reference']:.4f} -> {prediction['mean_current']:.4f}"
        else:  # multiclass: the share of each predicted class
            before = prediction.get("class_share_reference") or {}
            detail = "classes " + ", ".join(
                f"{c} {before.get(c, 0.0):.3f} -> {share:.3f}"
                for c, share in (prediction.get("class_share_current") or {}).items()
            )
        _say(
            f"  {'prediction':<26} {prediction['severity']:<8} PSI {prediction['psi']:.3f}  "
            f"{detail}"
        )
    if report.get("uri"):
        _say(f"  report: {report['uri']}")


@cli.command("skew")
@_home_option
@_location_options
@click.argument("pipeline")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def skew_cmd(
    home: str | None, module: str | None, workspace: str | None, pipeline: str, as_json: bool
) -> None:
    """Training/serving skew of PIPELINE: the online vectors served vs historical retrieval.

    Compares what the gateway served for entity-key requests (Feast's online store) with Feast's
    point-in-time historical features of the same entities at the request time. Exit status 0
    whatever the level; the level is printed first.
    """
    from lockgate.discover import find_pipeline
    from lockgate.monitoring.skew import compute_skew_report, served_schemas

    spec, location = find_pipeline(_locations(home, module, workspace), pipeline)
    resources = _env(home).resources()
    feast = location.resource("feast") or resources["feast"]
    stack = resources["serving_stack"]
    report = compute_skew_report(
        spec,
        feast=feast.for_pipeline(spec),
        log_dir=stack.prediction_log_dir,
        schema_for=served_schemas(resources["artifacts"], spec.name, stack.repo_dir),
    )
    if as_json:
        _say(json.dumps(report, indent=2, sort_keys=True))
        return
    window = report["window"]
    _say(f"{pipeline}: {report['level']}: {report['reason']}")
    _say(f"  window: {window['rows']} rows, {window['first']} .. {window['last']}")
    for f in report["features"]:
        mad = "" if f["mean_abs_diff"] is None else f"  mean |diff| {f['mean_abs_diff']:.4g}"
        jsd = "" if f["jsd"] is None else f"  JSD {f['jsd']:.3f}"
        _say(
            f"  {f['feature']:<26} {f['severity']:<8} differ {f['differ_share']:.2%}  missing "
            f"online {f['missing_online']}, offline {f['missing_offline']}{mad}{jsd}"
        )


cli.add_command(deploy_group)  # `lockgate deploy render`: Kubernetes (lockgate.deploy)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lockgate`` console command."""
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    try:
        cli.main(args=argv, prog_name="lockgate", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LockgateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
