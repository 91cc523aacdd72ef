"""The canary controller as a Dagster sensor: one analysis per tick, state persisted between.

Each tick: make sure Triton and the gateway are up (a restarted Triton means the canary is
rolled back and the champion reloaded), read per-version stats from the gateway, let
:func:`lockgate.serving.canary.decide` choose hold / advance / rollback / promote, apply it (gateway
route, champion alias, unload), write the audit entry and persist the state. Every action is
idempotent, so a daemon killed mid-tick resumes exactly where the persisted state says.

Only gated versions serve (:func:`lockgate.serving.canary.serving_refusal`): a champion alias needs its
alias-history entry and a passing gate verdict (or an override on record), a canary challenger
a passing verdict. Anything else is refused, audited (``serving_refused``, once per alias
file content) and never loaded; the newest champion of record that passes keeps serving.

:func:`restore_serving` (``lockgate serve start``) brings back what the persisted state says
is served, without the Dagster daemon: each pipeline's champion and any running canary are
loaded and routed again, then probed with a real inference; what it restored is audited
(``serving_restored``, with ``recovery_s``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from lockgate.lineage.registry import ArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.sensors._retrain import lockgate_sensor
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

if TYPE_CHECKING:
    from lockgate.gateway.stats import AdminStats

__all__ = [
    "TickOutcome",
    "make_canary_sensor",
    "next_backoff",
    "restore_serving",
    "rollout_job",
    "run_canary_tick",
    "supervise",
]


@dataclass
class TickOutcome:
    """What one controller tick did."""

    action: str
    reason: str
    state: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def transition(self) -> bool:
        """Whether the tick changed traffic or the champion."""
        return self.action in ("advance", "rollback", "promote", "restored")


def _stats(snapshot: AdminStats, version: str) -> Any:
    from lockgate.serving.canary import CanaryError, VersionStats

    try:
        return VersionStats.from_gateway(snapshot, version=version)
    except CanaryError:
        return VersionStats.from_dict({"since": snapshot.get("since_unix")})


def _audited_overrides(audit: AuditTrail, pipeline: str) -> set[str]:
    """Versions promoted with ``lockgate promote --override-gate``, as the audit log has it."""
    return {
        str(e["payload"].get("to"))
        for e in audit.log().entries(pipeline=pipeline, kind="promotion")
        if e["payload"].get("override") is True
    }


def _refusal(
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    pipeline: str,
    version: str,
    *,
    history: bool = True,
) -> str | None:
    from lockgate.serving.canary import serving_refusal

    verdicts = _signed_verdicts(artifacts, pipeline, version)
    if isinstance(verdicts, str):
        return verdicts
    return serving_refusal(
        pipeline,
        version,
        verdicts=verdicts,
        history=artifacts.aliases(pipeline)["history"] if history else None,
        audited_overrides=_audited_overrides(audit, pipeline),
    )


def _signed_verdicts(
    artifacts: ArtifactRegistry, pipeline: str, version: str
) -> list[dict[str, Any]] | str:
    """The version's gate verdicts, or why they cannot be trusted (an unsigned or forged one)."""
    from lockgate.errors import ArtifactIntegrityError

    try:
        return artifacts.verdicts(pipeline, version)
    except ArtifactIntegrityError as exc:
        return f"{pipeline} {version} may not serve: its gate verdicts are not trustworthy: {exc}"


def _champion_of_record(
    artifacts: ArtifactRegistry, audit: AuditTrail, pipeline: str, *, routed: str | None
) -> str | None:
    """The version to keep serving when the champion alias is refused: the routed champion,
    else the newest champion move, that passes :func:`lockgate.serving.canary.serving_refusal`."""
    from lockgate.serving.canary import serving_refusal

    history = list(artifacts.aliases(pipeline)["history"])
    overrides = _audited_overrides(audit, pipeline)
    moves = [i for i, h in enumerate(history) if h.get("alias") == "champion"]
    newest: dict[str, int] = {}
    for i in moves:
        newest[str(history[i]["to"])] = i
    candidates = [routed] if routed in newest else []
    candidates += [str(history[i]["to"]) for i in reversed(moves)]
    for version in dict.fromkeys(c for c in candidates if c):
        upto = history[: newest[version] + 1]  # its newest move is then the last one
        verdicts = _signed_verdicts(artifacts, pipeline, version)
        if isinstance(verdicts, str):
            continue
        refused = serving_refusal(
            pipeline, version, verdicts=verdicts, history=upto, audited_overrides=overrides
        )
        if refused is None:
            return version
    return None


def _refuse(
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    pipeline: str,
    version: str,
    reason: str,
    *,
    actor: str,
) -> TickOutcome:
    """Serve the champion of record instead of a refused alias value; audit it once."""
    from lockgate.assets.serving import apply_route, ensure_loaded
    from lockgate.lineage.hashing import canonical_json, sha256_bytes

    gateway = stack.gateway(actor=actor)
    route = gateway.routes().get(pipeline)
    routed = str(route["champion"]) if route and route.get("champion") else None
    keep = _champion_of_record(artifacts, audit, pipeline, routed=routed)
    if keep is not None:
        ensure_loaded(stack, artifacts, pipeline, keep)
        if route is None or route.get("mode") != "single" or routed != keep:
            apply_route(stack, pipeline, {"status": "rolled_back", "champion": keep})
        text = f"refused {pipeline}:champion {version}: {reason}; keeps serving {keep}"
    else:
        if route is not None:
            gateway.delete_route(pipeline)
        text = (
            f"refused {pipeline}:champion {version}: {reason}; no earlier champion passes "
            "either, so nothing of the pipeline is served"
        )
    aliases_sha = sha256_bytes(canonical_json(artifacts.aliases(pipeline)))
    earlier = audit.log().entries(pipeline=pipeline, kind="serving_refused")
    if not earlier or earlier[-1]["payload"].get("aliases_sha256") != aliases_sha:
        audit.record(
            "serving_refused",
            pipeline=pipeline,
            actor=actor,
            payload={
                "alias": "champion",
                "version": version,
                "reason": reason,
                "serving": keep,
                "aliases_sha256": aliases_sha,
            },
        )
    return TickOutcome("refused", text)


def run_canary_tick(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    actor: str,
    now: float | None = None,
) -> TickOutcome:
    """One controller step for ``spec``'s pipeline (what the sensor runs every tick).

    One controller at a time: a tick that finds another holding the pipeline's lease
    (:meth:`ServingStack.canary_lease`: a PostgreSQL advisory lock with shared state, else a
    file lock) holds and changes nothing. The transition a tick recorded is stored by
    compare-and-swap on the state it read, and a promotion moves the champion alias only from
    the champion it read, so two controllers can never both advance or promote.
    """
    idle = _idle_without_serving(spec, stack=stack, artifacts=artifacts)
    if idle is not None:
        return idle
    with stack.canary_lease(spec.name) as held:
        if not held:
            return TickOutcome(
                "hold", f"another controller is ticking {spec.name}'s canary: left to it"
            )
        return _tick(spec, stack=stack, artifacts=artifacts, audit=audit, actor=actor, now=now)


def _idle_without_serving(
    spec: ModelPipeline, *, stack: ServingStack, artifacts: ArtifactRegistry
) -> TickOutcome | None:
    """The ``idle`` outcome of a pipeline with nothing to serve (no champion alias, no running
    canary), found by reading the alias and the canary state only: no lease, no
    :meth:`ServingStack.ensure` (a local stack would start Triton and the gateway for nothing),
    no request to either server. None when there is something to serve: the full tick then."""
    if artifacts.alias(spec.name, "champion") is not None:
        return None
    raw = stack.canary_state(spec.name)
    if raw and raw.get("status") == "running":
        return None
    return TickOutcome("idle", f"{spec.name} has no champion yet: nothing to serve")


def _tick(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    actor: str,
    now: float | None,
) -> TickOutcome:
    from lockgate.assets.serving import apply_route, ensure_loaded, rollback
    from lockgate.serving.canary import CanaryState, decide
    from lockgate.serving.triton_config import triton_model_name

    now = time.time() if now is None else now
    started = stack.ensure()
    champion = artifacts.alias(spec.name, "champion")
    raw = stack.canary_state(spec.name)
    state = CanaryState.from_dict(raw) if raw else None
    if state is None or not state.running:
        if champion is None:
            return TickOutcome("idle", f"{spec.name} has no champion yet: nothing to serve")
        refused = _refusal(artifacts, audit, spec.name, champion)
        if refused is not None:
            return _refuse(stack, artifacts, audit, spec.name, champion, refused, actor=actor)
        ensure_loaded(stack, artifacts, spec.name, champion)
        route = stack.gateway().routes().get(spec.name)
        if route is None or route.get("champion") != champion or route.get("mode") != "single":
            apply_route(stack, spec.name, {"status": "rolled_back", "champion": champion})
            return TickOutcome("restored", f"champion {champion} serving all traffic again")
        return TickOutcome("idle", f"no canary running; champion {champion} serves all traffic")

    triton = stack.triton()
    abort = None
    refused = _refusal(artifacts, audit, spec.name, state.challenger, history=False)
    if refused is not None:
        abort = f"challenger refused: {refused}"
    elif started["triton"]:
        abort = (
            "tritonserver was down and has been restarted: canary aborted, "
            f"champion {state.champion} restored"
        )
    else:
        missing = [
            v
            for v in (state.champion, state.challenger)
            if not triton.is_ready(triton_model_name(spec.name, v))
        ]
        if missing:
            abort = f"model versions {missing} are not loaded in Triton any more"
    if abort is not None:
        data = rollback(stack, artifacts, audit, spec.name, state, reason=abort, actor=actor)
        return TickOutcome("rollback", str(data["rollback_reason"]), data)

    snapshot = stack.gateway().stats(spec.name)
    decision = decide(
        spec.canary,
        state,
        challenger=_stats(snapshot, state.challenger),
        champion=_stats(snapshot, state.champion),
        now=now,
        task=spec.task,
    )
    new = decision.state.to_dict()
    metrics = {"breaches": decision.breaches, **dict(decision.metrics or {})}
    if decision.action == "hold":
        if not stack.save_canary_state(spec.name, new, expected=raw):
            return _lost_claim(spec.name)
        return TickOutcome("hold", decision.reason, new, metrics)
    if decision.action == "rollback":
        data = rollback(
            stack, artifacts, audit, spec.name, decision.state, reason=decision.reason, actor=actor
        )
        return TickOutcome("rollback", decision.reason, data, metrics)
    if decision.action == "advance":
        apply_route(stack, spec.name, new)
        audit.record(
            "canary_step",
            pipeline=spec.name,
            actor=actor,
            payload={
                "champion": state.champion,
                "challenger": state.challenger,
                "from_weight": state.weight,
                "weight": decision.state.weight,
                "reason": decision.reason,
            },
        )
        if not stack.save_canary_state(spec.name, new, expected=raw):
            return _lost_claim(spec.name)
        return TickOutcome("advance", decision.reason, new, metrics)
    # promote: the challenger takes all traffic and becomes champion; the old one drains
    artifacts.move_alias(
        spec.name,
        "champion",
        state.challenger,
        actor=actor,
        reason=f"canary completed: {decision.reason}",
        expected=state.champion,
    )
    apply_route(stack, spec.name, new)
    audit.record(
        "promotion",
        pipeline=spec.name,
        actor=actor,
        payload={"from": state.champion, "to": state.challenger, "reason": decision.reason},
    )
    if not stack.save_canary_state(spec.name, new, expected=raw):
        return _lost_claim(spec.name)
    triton.unload(triton_model_name(spec.name, state.champion), wait=False)
    return TickOutcome("promote", decision.reason, new, metrics)


def _lost_claim(pipeline: str) -> TickOutcome:
    return TickOutcome(
        "hold",
        f"{pipeline}'s canary state changed while this tick decided (another controller "
        "recorded its transition first): left to it",
    )


def _route_for(champion: str, state: Any | None) -> dict[str, Any]:
    """The gateway route of a champion alone, or of a running canary state (as
    :func:`lockgate.assets.serving.apply_route` sets it)."""
    if state is None:
        return {"mode": "single", "champion": champion}
    if state.phase == "canary":
        return {
            "mode": "canary",
            "champion": state.champion,
            "challenger": state.challenger,
            "weight": state.weight,
        }
    return {
        "mode": "shadow",
        "champion": state.champion,
        "challenger": state.challenger,
        "shadow_fraction": state.shadow_fraction,
    }


def _served_pipelines(stack: ServingStack, artifacts: ArtifactRegistry) -> list[str]:
    names = {
        n.removesuffix(".json") for n in artifacts.list_prefix("aliases") if n.endswith(".json")
    }
    names |= set(stack.canary_pipelines())
    return sorted(names)


def _restore_one(
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    pipeline: str,
    *,
    route: Mapping[str, Any] | None,
    started: Mapping[str, Any],
    since: float,
    actor: str,
) -> dict[str, Any]:
    from lockgate.assets.serving import ensure_loaded, rollback
    from lockgate.errors import LockgateError
    from lockgate.serving.canary import CanaryState
    from lockgate.serving.triton_config import triton_model_name

    result: dict[str, Any] = {
        "pipeline": pipeline,
        "action": "none",
        "champion": artifacts.alias(pipeline, "champion"),
        "challenger": None,
        "weight": None,
        "loaded": [],
        "route_changed": False,
        "answering": False,
        "problems": [],
        "recovery_s": None,
        "full_recovery_s": None,
        "reason": "",
    }
    champion = result["champion"]
    if champion is None:
        result["reason"] = "no champion yet: nothing to serve"
        return result
    refused = _refusal(artifacts, audit, pipeline, champion)
    if refused is not None:
        outcome = _refuse(stack, artifacts, audit, pipeline, champion, refused, actor=actor)
        result.update(action="refused", reason=outcome.reason)
        return result
    raw = stack.canary_state(pipeline)
    state = CanaryState.from_dict(raw) if raw else None
    if state is not None and state.running:
        problem = None
        if state.champion != champion:
            problem = f"the canary's champion {state.champion} is not the champion alias {champion}"
        else:
            challenger_refused = _refusal(
                artifacts, audit, pipeline, state.challenger, history=False
            )
            if challenger_refused is not None:
                problem = f"challenger refused: {challenger_refused}"
        if problem is not None:
            rollback(
                stack,
                artifacts,
                audit,
                pipeline,
                state,
                reason=f"{problem}: canary aborted while restoring serving",
                actor=actor,
            )
            state = None
    else:
        state = None
    if state is not None:
        result.update(challenger=state.challenger, weight=state.weight)
    triton = stack.triton()

    def serve(version: str) -> bool:
        name = triton_model_name(pipeline, version)
        try:
            if not triton.is_ready(name):
                ensure_loaded(stack, artifacts, pipeline, version)
                result["loaded"].append(version)
            triton.probe(name)
        except LockgateError as exc:
            result["problems"].append(f"{version}: {exc}")
            return False
        return True

    def route_to(desired: dict[str, Any]) -> None:
        if route is None or any(route.get(k) != v for k, v in desired.items()):
            try:
                stack.gateway(actor=actor).set_route(pipeline, desired)
            except LockgateError as exc:
                result["problems"].append(f"route {desired}: {exc}")
            else:
                result["route_changed"] = True

    # the champion first: its answering is the recovery. Until the challenger is back, its
    # share of a kept canary route is answered by the champion (the gateway retries there).
    if serve(champion) and state is None:
        route_to(_route_for(champion, None))
    result["recovery_s"] = round(time.perf_counter() - since, 3)
    if state is not None:
        both = serve(state.challenger) and not result["problems"]
        route_to(_route_for(champion, state if both else None))
    result["answering"] = not result["problems"]
    result["full_recovery_s"] = round(time.perf_counter() - since, 3)
    changed = bool(result["loaded"] or result["route_changed"])
    result["action"] = "restored" if changed else "unchanged"
    if changed:
        audit.record(
            "serving_restored",
            pipeline=pipeline,
            actor=actor,
            payload={
                "champion": champion,
                "challenger": result["challenger"],
                "weight": result["weight"],
                "loaded": result["loaded"],
                "route_changed": result["route_changed"],
                "triton_restarted": bool(started.get("triton")),
                "gateway_restarted": bool(started.get("gateway")),
                "reaped_stubs": int(started.get("reaped_stubs") or 0),
                "answering": result["answering"],
                "recovery_s": result["recovery_s"],
                "full_recovery_s": result["full_recovery_s"],
            },
        )
    return result


def restore_serving(
    stack: ServingStack,
    *,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    actor: str,
    since: float | None = None,
) -> dict[str, Any]:
    """Brings the stack back to what the persisted state says is served; no daemon needed.

    :meth:`ServingStack.ensure` first (a dead Triton restarts on its kept ports and the stubs
    it left are reaped); then, for every pipeline with a champion alias or a canary state:
    the champion (refused unless :func:`lockgate.serving.canary.serving_refusal` passes it) and a
    running canary's challenger are loaded when Triton does not have them, the gateway route
    is set again when it differs from the state, and each version is probed with a real
    inference; the champion is loaded and probed first. A pipeline where anything was loaded
    or routed gets a ``serving_restored`` audit entry: ``recovery_s`` runs from ``since``
    (default: this call) until the champion answers, ``full_recovery_s`` until every version
    does. A version that cannot be loaded or does not answer is named in ``problems``.

    Args:
        stack: the serving stack.
        artifacts: the artifact registry (aliases, verdicts, model files).
        audit: the audit trail.
        actor: who restores, for the audit entries.
        since: ``time.perf_counter()`` when the recovery began.

    Returns:
        ``{"started": ensure()'s answer, "pipelines": [per pipeline: action ("restored",
        "unchanged", "refused", "none"), champion, challenger, weight, loaded,
        route_changed, answering, problems, recovery_s, full_recovery_s, reason]}``.
    """
    since = time.perf_counter() if since is None else since
    started = stack.ensure()
    routes = stack.gateway().routes()
    pipelines = sorted({*_served_pipelines(stack, artifacts), *routes})
    results = [
        _restore_one(
            stack,
            artifacts,
            audit,
            name,
            route=routes.get(name),
            started=started,
            since=since,
            actor=actor,
        )
        for name in pipelines
    ]
    return {"started": started, "pipelines": results}


_NOT_SERVED = ("none", "refused")


def next_backoff(current: float, *, failed: bool, base_s: float, cap_s: float) -> float:
    """Seconds until the supervisor's next check: ``base_s`` after a good check, doubled
    (up to ``cap_s``) after each failed recovery.

    Example:
        >>> [next_backoff(c, failed=True, base_s=1, cap_s=5) for c in (1, 2, 4, 5)]
        [2, 4, 5, 5]
        >>> next_backoff(5, failed=False, base_s=1, cap_s=5)
        1
    """
    return min(current * 2, cap_s) if failed else base_s


def _needs_restore(stack: ServingStack) -> str | None:
    """Why the stack needs :func:`restore_serving` now (None: every routed version is up)."""
    from lockgate.errors import LockgateError
    from lockgate.serving.triton_config import triton_model_name

    triton, gateway = stack.triton(), stack.gateway()
    try:
        if not triton.health():
            return "tritonserver is down"
        if not gateway.health():
            return "the gateway is down"
        for name, route in gateway.routes().items():
            for version in (route.get("champion"), route.get("challenger")):
                if version and not triton.is_ready(triton_model_name(name, str(version))):
                    return f"{name} {version} is routed but not loaded"
    except LockgateError as exc:
        return str(exc)
    return None


def supervise(
    stack: ServingStack,
    *,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    actor: str,
    interval_s: float = 2.0,
    max_backoff_s: float = 60.0,
    should_stop: Any = lambda: False,
    report: Any = lambda event: None,
) -> None:
    """Keeps the stack serving without the Dagster daemon: every ``interval_s`` checks that
    Triton and the gateway answer and every routed version is loaded; when not, runs
    :func:`restore_serving` (restart, reap, reload the champion and any canary, audit). A
    failed recovery is retried with exponential backoff up to ``max_backoff_s``
    (:func:`next_backoff`). ``lockgate serve supervise`` runs it until SIGTERM or Ctrl-C.

    Args:
        stack: the serving stack.
        artifacts: the artifact registry.
        audit: the audit trail.
        actor: who restores, for the audit entries.
        interval_s: seconds between checks while all is well.
        max_backoff_s: the longest wait after failed recoveries.
        should_stop: called before each check; True ends the loop.
        report: called with ``{"event": "restored" | "failed", "why", ...}`` per recovery.
    """
    from lockgate.errors import LockgateError

    wait = interval_s
    while not should_stop():
        why = _needs_restore(stack)
        failed = False
        if why is not None:
            try:
                restored = restore_serving(stack, artifacts=artifacts, audit=audit, actor=actor)
            except LockgateError as exc:
                failed = True
                report({"event": "failed", "why": why, "error": str(exc)})
            else:
                served = [p for p in restored["pipelines"] if p["action"] not in _NOT_SERVED]
                failed = not all(p["answering"] for p in served)
                report({"event": "failed" if failed else "restored", "why": why, **restored})
        wait = next_backoff(wait, failed=failed, base_s=interval_s, cap_s=max_backoff_s)
        deadline = time.monotonic() + wait
        while not should_stop() and time.monotonic() < deadline:
            time.sleep(min(0.1, wait))


def rollout_job(spec: ModelPipeline) -> dg.UnresolvedAssetJobDefinition:
    """``<name>_rollout``: the job of the pipeline's ``rollout`` asset alone, the canary
    controller's target.

    Running it starts (or resumes) the canary of the latest validated version, refused unless
    that version passed the gate and infra validation; the controller itself records
    ``rollout`` on every transition without a run. Naming it as the sensor's target makes the
    Dagster UI list the controller as the ``rollout`` asset's automation.
    """
    return dg.define_asset_job(
        f"{spec.name}_rollout",
        selection=dg.AssetSelection.assets(spec.asset_key("rollout")),
        description=(
            f"Start or resume the canary of {spec.name}'s latest validated version now (the "
            f"controller {spec.canary_sensor_name} records rollout on every transition)."
        ),
        tags={"lockgate/pipeline": spec.name},
    )


def make_canary_sensor(
    spec: ModelPipeline,
    *,
    minimum_interval_seconds: int | None = None,
    job: dg.UnresolvedAssetJobDefinition | None = None,
) -> dg.SensorDefinition:
    """``<name>_on_canary_tick``: drives the pipeline's canary, one analysis per tick.

    Its target is ``job`` (default: :func:`rollout_job`), the job of the ``rollout`` asset it
    records, so the UI lists the controller on that asset; it requests no runs.

    Args:
        spec: The pipeline (with serving and a canary policy).
        minimum_interval_seconds: Seconds between ticks (default ``spec.canary.interval_seconds``).
        job: The rollout job to target (pass the one the definitions list, if they list one).
    """

    @lockgate_sensor(
        spec.canary_sensor_name,
        interval_seconds=minimum_interval_seconds or spec.canary.interval_seconds,
        description=f"Canary controller of {spec.name}: hold, advance, roll back or promote.",
        job=job if job is not None else rollout_job(spec),
    )
    def canary_sensor(
        context: dg.SensorEvaluationContext,
        serving_stack: dg.ResourceParam[ServingStack],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        audit: AuditTrail,
    ) -> dg.SensorResult | dg.SkipReason:
        outcome = run_canary_tick(
            spec,
            stack=serving_stack,
            artifacts=artifacts,
            audit=audit,
            actor=f"sensor {spec.canary_sensor_name}",
        )
        context.log.info(f"{spec.name}: {outcome.action}: {outcome.reason}")
        if not outcome.transition:
            return dg.SkipReason(f"{outcome.action}: {outcome.reason}")
        from lockgate.assets.weights import model_registry_event

        state = outcome.state or {}
        # the champion as it is after this tick (a promotion has just moved it)
        champion = artifacts.alias(spec.name, "champion") or state.get("champion")
        return dg.SensorResult(
            asset_events=[
                dg.AssetMaterialization(
                    asset_key=spec.asset_key("rollout"),
                    description=outcome.reason,
                    metadata={
                        "action": outcome.action,
                        "reason": outcome.reason,
                        "champion": str(champion),
                        "previous_champion": str(state.get("champion")),
                        "challenger": str(state.get("challenger")),
                        "weight": float(state.get("weight") or 0.0),
                        "status": str(state.get("status")),
                    },
                ),
                model_registry_event(
                    spec,
                    artifacts,
                    canary=serving_stack.canary_state(spec.name),
                    reason=f"{outcome.action}: {outcome.reason}",
                ),
            ]
        )

    return canary_sensor
