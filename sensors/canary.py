"""The canary controller as a Dagster sensor: one analysis per tick, state persisted between.

Each tick: make sure Triton and the gateway are up (a restarted Triton means the canary is
rolled back and the champion reloaded), read per-version stats from the gateway, let
:func:`lockgate.canary.decide` choose hold / advance / rollback / promote, apply it (gateway
route, champion alias, unload), write the audit entry and persist the state. Every action is
idempotent, so a daemon killed mid-tick resumes exactly where the persisted state says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lockgate.resources.artifacts import ArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.resources.serving import ServingStack
from lockgate.spec import ModelPipeline

__all__ = ["TickOutcome", "make_canary_sensor", "run_canary_tick"]


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


def _stats(snapshot: dict[str, Any], version: str) -> Any:
    from lockgate.canary import CanaryError, VersionStats

    try:
        return VersionStats.from_gateway(snapshot, version=version)
    except CanaryError:
        return VersionStats.from_dict({"since": snapshot.get("since_unix")})


def run_canary_tick(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    actor: str,
    now: float | None = None,
) -> TickOutcome:
    """One controller step for ``spec``'s pipeline (what the sensor runs every tick)."""
    from lockgate.assets.serving import apply_route, ensure_loaded, rollback
    from lockgate.canary import CanaryState, decide
    from lockgate.triton_config import triton_model_name

    now = time.time() if now is None else now
    started = stack.ensure()
    champion = artifacts.alias(spec.name, "champion")
    raw = stack.canary_state(spec.name)
    state = CanaryState.from_dict(raw) if raw else None
    if state is None or not state.running:
        if champion is None:
            return TickOutcome("idle", f"{spec.name} has no champion yet: nothing to serve")
        ensure_loaded(stack, artifacts, spec.name, champion)
        route = stack.gateway().routes().get(spec.name)
        if route is None or route.get("champion") != champion or route.get("mode") != "single":
            apply_route(stack, spec.name, {"status": "rolled_back", "champion": champion})
            return TickOutcome("restored", f"champion {champion} serving all traffic again")
        return TickOutcome("idle", f"no canary running; champion {champion} serves all traffic")

    triton = stack.triton()
    abort = None
    if started["triton"]:
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
        stack.save_canary_state(spec.name, new)
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
        stack.save_canary_state(spec.name, new)
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
    stack.save_canary_state(spec.name, new)
    triton.unload(triton_model_name(spec.name, state.champion), wait=False)
    return TickOutcome("promote", decision.reason, new, metrics)


def make_canary_sensor(
    spec: ModelPipeline, *, minimum_interval_seconds: int | None = None
) -> dg.SensorDefinition:
    """``<name>_on_canary_tick``: drives the pipeline's canary, one analysis per tick.

    ``minimum_interval_seconds`` defaults to ``spec.canary.interval_seconds``.
    """

    @dg.sensor(
        name=spec.canary_sensor_name,
        minimum_interval_seconds=minimum_interval_seconds or spec.canary.interval_seconds,
        description=f"Canary controller of {spec.name}: hold, advance, roll back or promote.",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def canary_sensor(
        context: dg.SensorEvaluationContext,
        serving_stack: ServingStack,
        artifacts: ArtifactRegistry,
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
        state = outcome.state or {}
        return dg.SensorResult(
            asset_events=[
                dg.AssetMaterialization(
                    asset_key=spec.asset_key("rollout"),
                    description=outcome.reason,
                    metadata={
                        "action": outcome.action,
                        "reason": outcome.reason,
                        "champion": str(state.get("champion")),
                        "challenger": str(state.get("challenger")),
                        "weight": float(state.get("weight") or 0.0),
                        "status": str(state.get("status")),
                    },
                )
            ]
        )

    return canary_sensor
