"""Serving: a gated model version reaches Triton only after infra validation, then a canary."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

import contextlib
import time
from typing import Any, cast

import dagster as dg

from lockgate.assets.declare import pipeline_asset
from lockgate.assets.gate import passing_verdict
from lockgate.lineage.refs import GatedEvaluationRef
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline, TritonTarget

__all__ = ["TRITON_VALIDATION_POOL", "build_rollout", "build_serving", "build_serving_checks"]

TRITON_VALIDATION_POOL = "lockgate-triton-validation"
"""The concurrency pool of every pipeline's infra validation (the ``serving`` step, which starts
a sandbox tritonserver): the instance's pool limit caps how many run at once
(:func:`lockgate.dagster_instance.instance_config`)."""


def build_serving(spec: ModelPipeline) -> dg.AssetsDefinition:
    """``[name, serving]``: the model-repository version, validated in a sandbox tritonserver."""
    target = spec.serving
    assert target is not None

    @pipeline_asset(
        spec,
        "serving",
        description=(
            "Triton model-repository version (written atomically, hash-checked), validated in a "
            "sandbox tritonserver: outputs equal in-process predictions, p99 within budget."
        ),
        kinds={"triton"},
        ins={"evaluation": "evaluation_report", "gold": "gold_set"},
        pool=TRITON_VALIDATION_POOL,
    )
    def serving(
        context: dg.AssetExecutionContext,
        evaluation: dict[str, Any],
        gold: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        serving_stack: dg.ResourceParam[ServingStack],
        audit: AuditTrail,
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.lineage.steps import load_snapshot_frame
        from lockgate.serving.model_repository import infra_validate, write_served_version
        from lockgate.serving.triton_config import triton_model_name

        version = evaluation["version"]
        passing_verdict(artifacts, spec.name, cast(GatedEvaluationRef, evaluation))
        # the serving repository: the local folder, or s3:// in production (Triton reads it)
        folder = write_served_version(
            artifacts,
            serving_stack.triton(),
            pipeline=spec.name,
            version=version,
            target="cpu",  # the local stack serves on CPU; gpu configs are for the NGC image
            max_batch_size=target.max_batch_size,
            instances=target.instances,
        )
        frame = load_snapshot_frame(artifacts, gold["gold_sha256"], verify_content=False)
        sandbox = serving_stack.sandbox()
        with sandbox:
            result = infra_validate(
                triton=sandbox,
                registry=artifacts,
                pipeline=spec.name,
                version=version,
                frame=frame,
                n_rows=target.validation_rows,
                tolerance=target.tolerance,
                p99_budget_ms=target.p99_budget_ms,
                requests=target.validation_requests,
            )
        # latencies and load times are this run's measurements, not the version's: they go to
        # a per-run record, never into the version's immutable reports
        record_key = artifacts.put_run_record(
            spec.name,
            version,
            "infra_validation",
            context.run_id,
            result | {"at": time.time(), "run_id": context.run_id},
        )
        earlier = [
            r
            for r in artifacts.run_records(spec.name, version, "infra_validation")
            if r.get("run_id") != context.run_id
        ]
        audit.record(
            "validation",
            pipeline=spec.name,
            actor=f"dagster run {context.run_id}",
            payload={
                "version": version,
                **{k: result[k] for k in ("passed", "failures")},
                "record": record_key,
            },
        )
        context.log.info(
            f"infra validation of {version}: passed={result['passed']} "
            f"p99={result.get('p99_ms')} ms max|diff|={result.get('max_abs_diff')}"
        )
        return dg.Output(
            {
                "pipeline": spec.name,
                "version": version,
                "model": triton_model_name(spec.name, version),
                "folder": str(folder),
                "validation": result,
            },
            metadata={
                "triton_model": triton_model_name(spec.name, version),
                "folder": dg.MetadataValue.path(str(folder)),
                "validation_passed": result["passed"],
                "p50_ms": result.get("p50_ms"),
                "p99_ms": result.get("p99_ms"),
                "max_abs_diff": result.get("max_abs_diff"),
                "validation_record": dg.MetadataValue.path(artifacts.uri(record_key)),
                "earlier_validations": len(earlier),
                "earlier_passed": sum(bool(r.get("passed")) for r in earlier),
            },
        )

    return serving


def build_serving_checks(spec: ModelPipeline) -> dg.AssetChecksDefinition:
    """Blocking ``infra_validation`` check on ``serving``: nothing gets traffic before it passes."""
    target = spec.serving
    assert target is not None
    key = spec.asset_key("serving")

    @dg.asset_check(asset=key, name="infra_validation", blocking=True)
    def infra_validation(serving: dict[str, Any]) -> dg.AssetCheckResult:
        result = serving["validation"]
        failures = result.get("failures", [])
        first = failures[0] if failures else None
        return dg.AssetCheckResult(
            passed=bool(result["passed"]),
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                "; ".join(f"{f['check']}: {f['message']}" for f in failures)
                or f"outputs match (max |diff| {result['max_abs_diff']}), p99 {result['p99_ms']} ms"
            ),
            metadata={
                "metric": first["check"] if first else "p99_ms",
                "actual": result.get("p99_ms") if not first else str(first["message"])[:500],
                "threshold": f"p99 <= {target.p99_budget_ms} ms, |diff| <= {target.tolerance}",
                "max_abs_diff": result.get("max_abs_diff"),
                "p50_ms": result.get("p50_ms"),
                "p99_ms": result.get("p99_ms"),
            },
        )

    return infra_validation


def build_rollout(spec: ModelPipeline) -> dg.AssetsDefinition:
    """``[name, rollout]``: load beside the champion and start the canary (or bootstrap)."""

    @pipeline_asset(
        spec,
        "rollout",
        description=(
            "Live traffic: the validated version is loaded beside the champion and the canary "
            "starts (the first model of a pipeline becomes champion at once)."
        ),
        kinds={"triton"},
        ins={"serving": "serving", "evaluation": "evaluation_report"},
    )
    def rollout(
        context: dg.AssetExecutionContext,
        serving: dict[str, Any],
        evaluation: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        serving_stack: dg.ResourceParam[ServingStack],
        audit: AuditTrail,
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.errors import GateFailedError
        from lockgate.serving.canary import CanaryState, start

        if not serving["validation"]["passed"]:
            raise GateFailedError(
                f"{spec.name} {serving['version']} failed infra validation; it gets no traffic"
            )
        passing_verdict(artifacts, spec.name, cast(GatedEvaluationRef, evaluation))
        version = serving["version"]
        actor = f"dagster run {context.run_id}"
        serving_stack.ensure()
        champion = artifacts.alias(spec.name, "champion")
        ensure_loaded(serving_stack, artifacts, spec.name, version, target=spec.serving)
        existing = serving_stack.canary_state(spec.name)
        current = CanaryState.from_dict(existing) if existing else None
        if current is not None and current.running:
            if current.challenger == version:
                context.log.info(f"canary of {version} already running: resuming")
                return _rollout_output(spec, current.to_dict(), "resumed")
            if champion == version:
                # a rerun of the champion: the canary of a newer challenger against it goes on
                context.log.info(
                    f"{version} is the champion already; the canary of {current.challenger} "
                    f"at {current.weight:.0%} continues"
                )
                return _rollout_output(spec, current.to_dict(), "champion")
            rollback(
                serving_stack,
                artifacts,
                audit,
                spec.name,
                current,
                reason=f"superseded by newer challenger {version}",
                actor=actor,
            )
        if champion is None or champion == version:
            route = {"mode": "single", "champion": version}
            routes = serving_stack.gateway().routes()
            if champion is None or not _serves_alone(routes.get(spec.name), version):
                serving_stack.gateway().set_route(spec.name, route)
            if champion is None:
                artifacts.move_alias(
                    spec.name,
                    "champion",
                    version,
                    actor=actor,
                    reason="first model of the pipeline: gate and infra validation passed",
                    expected=None,
                )
                audit.record(
                    "promotion",
                    pipeline=spec.name,
                    actor=actor,
                    payload={"from": None, "to": version, "reason": "bootstrap"},
                )
                context.log.info(f"{version} serves all traffic as the first champion")
            else:  # a rerun of the champion: no canary of a version that serves 100 % already
                context.log.info(f"{version} is the champion and serves all traffic: unchanged")
            return _rollout_output(spec, {"champion": version, "status": "promoted"}, "champion")
        ensure_loaded(serving_stack, artifacts, spec.name, champion, target=spec.serving)
        state = start(
            spec.canary, pipeline=spec.name, champion=champion, challenger=version, now=time.time()
        )
        apply_route(serving_stack, spec.name, state.to_dict())
        serving_stack.gateway().reset_stats(spec.name)
        serving_stack.save_canary_state(spec.name, state.to_dict())
        audit.record(
            "canary_step",
            pipeline=spec.name,
            actor=actor,
            payload={
                "champion": champion,
                "challenger": version,
                "weight": state.weight,
                "reason": "canary started",
            },
        )
        context.log.info(f"canary started: {version} at {state.weight:.0%} beside {champion}")
        return _rollout_output(spec, state.to_dict(), "canary")

    return rollout


def _serves_alone(route: dict[str, Any] | None, version: str) -> bool:
    """Whether a gateway route sends all traffic to ``version`` (and mirrors none)."""
    if not route:
        return False
    return route.get("mode") == "single" and route.get("champion") == version


def _rollout_output(spec: ModelPipeline, state: dict[str, Any], phase: str) -> dg.Output[Any]:
    return dg.Output(
        {"pipeline": spec.name, "phase": phase, "state": state},
        metadata={
            "phase": phase,
            "champion": str(state.get("champion")),
            "challenger": str(state.get("challenger")),
            "weight": float(state.get("weight") or 0.0),
        },
    )


def ensure_loaded(
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    pipeline: str,
    version: str,
    *,
    target: TritonTarget | None = None,
) -> str:
    """Make sure ``version`` is written, hash-checked and loaded in the live Triton.

    A folder the serving asset already wrote (with the spec's ``target`` options) is loaded as
    it is (``load_version`` checks every file against the lock record); only a missing folder
    is written, with ``target``'s batch size and instances (default: TritonTarget's).
    """
    from lockgate.serving.model_repository import (
        load_version,
        version_written,
        write_served_version,
    )
    from lockgate.serving.triton_config import triton_model_name

    name = triton_model_name(pipeline, version)
    triton = stack.triton()
    if triton.is_ready(name):
        return name
    if not version_written(triton, name):
        options = target or TritonTarget()
        write_served_version(
            artifacts,
            triton,
            pipeline=pipeline,
            version=version,
            target="cpu",
            max_batch_size=options.max_batch_size,
            instances=options.instances,
        )
    load_version(triton=triton, registry=artifacts, pipeline=pipeline, version=version)
    return name


def apply_route(stack: ServingStack, pipeline: str, state: dict[str, Any]) -> dict[str, Any]:
    """The gateway route that matches a canary state (idempotent)."""
    if state["status"] == "promoted":
        route = {"mode": "single", "champion": state["challenger"]}
    elif state["status"] == "rolled_back":
        route = {"mode": "single", "champion": state["champion"]}
    elif state.get("phase") == "canary":
        route = {
            "mode": "canary",
            "champion": state["champion"],
            "challenger": state["challenger"],
            "weight": state["weight"],
        }
    else:  # shadow or blue/green analysis window: champion answers, challenger mirrors
        route = {
            "mode": "shadow",
            "champion": state["champion"],
            "challenger": state["challenger"],
            "shadow_fraction": state.get("shadow_fraction", 1.0),
        }
    return stack.gateway().set_route(pipeline, route)


def rollback(
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    pipeline: str,
    state: Any,
    *,
    reason: str,
    actor: str,
) -> dict[str, Any]:
    """Send all traffic to the champion, unload the challenger, record why."""
    from lockgate.serving.triton_config import triton_model_name

    data = state.to_dict() if hasattr(state, "to_dict") else dict(state)
    history = list(data.get("history", []))
    if not history or history[-1].get("action") != "rollback":  # decide() may have added it
        history.append(
            {
                "at": time.time(),
                "action": "rollback",
                "from_weight": data.get("weight", 0.0),
                "to_weight": 0.0,
                "reason": reason,
                "metrics": {},
            }
        )
    data["history"] = history
    data.update(status="rolled_back", rollback_reason=reason, weight=0.0)
    ensure_loaded(stack, artifacts, pipeline, data["champion"])
    apply_route(stack, pipeline, data)
    stack.save_canary_state(pipeline, data)
    audit.record(
        "rollback",
        pipeline=pipeline,
        actor=actor,
        payload={"champion": data["champion"], "challenger": data["challenger"], "reason": reason},
    )
    # the server may be the thing that failed; the route has moved already either way
    with contextlib.suppress(Exception):
        stack.triton().unload(triton_model_name(pipeline, data["challenger"]), wait=False)
    return data
