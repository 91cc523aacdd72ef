"""Idempotent reruns: the train job (and each asset alone) on unchanged code and data.

The pure rule for a champion judged against itself is tested on hand-built reports; the
integration tests run the real ``<name>_train`` job twice in a real Dagster instance, on a
real Feast store, with a real tritonserver for infra validation and serving: the second run
must succeed, find the same model version, leave every stored file of the first run as it was,
recognise the champion (itself) instead of saying there is none, and neither move the champion
alias nor write another promotion into the audit log.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import pytest

from lockgate import Environment, LightGBMTrainer, ModelPipeline, build_definitions
from lockgate.audit.log import AuditLog
from lockgate.evaluation.gate import (
    GATE_RULES,
    INCUMBENT_RULES,
    Gate,
    GoldSet,
    SliceSpec,
    evaluate_gate,
)
from lockgate.lineage.registry import LocalArtifactRegistry
from pipelines.fraud import FRAUD_LABELS

from .specs import lgbm_spec, served_spec
from .test_gate import GATE, checks

# ---- the pure rule: the champion judged against itself ---------------------------------------


def _interval(estimate: float) -> dict:
    return {"estimate": estimate, "lower": estimate - 0.01, "upper": estimate + 0.01}


def _report(*, challenger: str = "v1", champion: str | None = "v1", gain: float = 0.0) -> dict:
    """A hand-built evaluation report; ``champion == challenger`` is a rerun of the champion."""
    metrics = lambda auc: {  # noqa: E731
        "roc_auc": _interval(auc),
        "pr_auc": _interval(auc - 0.4),
        "log_loss": _interval(0.06),
        "brier": _interval(0.01),
        "recall_at_fpr": _interval(0.5),
    }
    return {
        "pipeline": "fraud",
        "gold": {"rows": 5000, "positives": 80},
        "challenger": {"version": challenger, "metrics": metrics(0.85 + gain)},
        "champion": {"version": champion, "metrics": metrics(0.85)} if champion else None,
        "comparison": {
            "roc_auc": {
                "delta": gain,
                "lower": gain if champion == challenger else gain - 0.01,
                "upper": gain if champion == challenger else gain + 0.01,
                "p_value": 1.0 if champion == challenger else 0.2,
                "method": "paired_bootstrap",
            }
        },
        "slices": [
            {"slice": "device", "value": "ios", "rows": 900, "challenger": 0.8, "champion": 0.8}
        ],
        "edge_cases": [],
    }


STRICT = Gate(
    gold=GoldSet(key="transaction_id"),
    absolute={"roc_auc": 0.8},
    min_delta={"roc_auc": 0.01},  # a challenger must gain at least 0.01
    require_significance=True,
    slices=(SliceSpec(column="device"),),
    max_slice_drop=0.0,
    min_gold_rows=1000,
    min_gold_positives=30,
)


def test_the_champion_judged_against_itself_passes_the_replacement_rules() -> None:
    # the same numbers for another version: the plain rules block a change of 0
    raw = {v.rule: v for v in evaluate_gate(_report(challenger="v2", gain=0.0), STRICT)}
    assert not raw["gate_vs_champion"].passed
    assert not raw["gate_significance"].passed
    judged = {v.rule: v for v in evaluate_gate(_report(), STRICT)}
    assert tuple(judged) == GATE_RULES
    assert all(v.passed for v in judged.values()), judged
    for rule in INCUMBENT_RULES:
        assert "v1 is the champion" in judged[rule].message
        assert "no champion yet" not in judged[rule].message
        assert judged[rule].failures == ()
    # the numbers stay what they were: a change of 0 against itself
    assert judged["gate_vs_champion"].actual == raw["gate_vs_champion"].actual
    assert judged["gate_sample_size"] == raw["gate_sample_size"]
    assert judged["gate_absolute"] == raw["gate_absolute"]


def test_the_champion_still_meets_the_absolute_bounds() -> None:
    strict = STRICT.model_copy(update={"absolute": {"roc_auc": 0.9}})
    judged = {v.rule: v for v in evaluate_gate(_report(), strict)}
    assert not judged["gate_absolute"].passed
    assert judged["gate_vs_champion"].passed


@pytest.mark.parametrize(
    "report",
    [
        _report(challenger="v2", gain=-0.02),
        _report(challenger="v2", gain=0.05),
        _report(champion=None),
    ],
    ids=["worse-challenger", "better-challenger", "no-champion"],
)
def test_a_real_challenger_is_judged_by_the_plain_rules(report: dict) -> None:
    verdicts = {v.rule: v for v in evaluate_gate(report, STRICT)}
    assert all("is the champion" not in v.message for v in verdicts.values())
    if report["champion"] is not None and report["comparison"]["roc_auc"]["delta"] < 0:
        assert not verdicts["gate_vs_champion"].passed


# ---- the train job, twice, in a real Dagster instance --------------------------------------


def _run(
    spec: ModelPipeline,
    env: Environment,
    instance: dg.DagsterInstance,
    assets: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    job = build_definitions([spec], environment=env).resolve_job_def(spec.train_job_name)
    selection = [spec.asset_key(a) for a in assets] if assets else None
    return job.execute_in_process(
        instance=instance, raise_on_error=False, asset_selection=selection
    )


def _registry(env: Environment) -> LocalArtifactRegistry:
    return LocalArtifactRegistry(root=str(env.artifacts_dir))


def _tree(env: Environment) -> dict[str, str]:
    """sha256 of every file of the artifact registry, by relative path."""
    root = Path(env.artifacts_dir)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _model_files(env: Environment, pipeline: str, version: str) -> dict[str, bytes]:
    reg = _registry(env)
    prefix = reg.model_prefix(pipeline, version)
    return {name: reg.read_bytes(f"{prefix}/{name}") for name in reg.list_prefix(prefix)}


def _metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None
    assert event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _failure(run: dg.ExecuteInProcessResult) -> str:
    return "; ".join(
        f"{e.step_key}: {e.event_specific_data.error.message if e.event_specific_data else ''}"
        for e in run.all_events
        if e.is_step_failure
    )


def _champion_moves(env: Environment, pipeline: str) -> list[tuple]:
    history = _registry(env).aliases(pipeline)["history"]
    return [(h["from"], h["to"]) for h in history if h["alias"] == "champion"]


def _promotions(env: Environment, pipeline: str) -> list[dict]:
    return AuditLog(env.audit_path).entries(pipeline=pipeline, kind="promotion")


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Files of ``before`` that changed or vanished in ``after``."""
    return sorted(k for k, v in before.items() if after.get(k) != v)


def _run_twice(spec: ModelPipeline, env: Environment, instance) -> tuple[str, dict[str, str]]:
    """Runs the train job twice: both succeed, and the second keeps the champion the first chose,
    its lock record and its model files. Returns the version and the tree after the first run."""
    first = _run(spec, env, instance)
    assert first.success, _failure(first)
    version = _registry(env).alias(spec.name, "champion")
    assert version is not None
    lock = _registry(env).lock_record(spec.name, version)
    files = _model_files(env, spec.name, version)
    tree = _tree(env)

    second = _run(spec, env, instance)
    assert second.success, _failure(second)
    reg = _registry(env)
    assert reg.alias(spec.name, "champion") == version
    assert reg.lock_record(spec.name, version) == lock
    assert _model_files(env, spec.name, version) == files
    return version, tree


def test_rerunning_the_gated_train_job_keeps_the_champion(env, instance) -> None:
    # significance required: a version compared with itself shows no significant improvement,
    # which must not block the champion's own rerun
    spec = lgbm_spec(gate=GATE.model_copy(update={"require_significance": True}))
    version, tree = _run_twice(spec, env, instance)
    reg = _registry(env)
    assert reg.alias(spec.name, "challenger") == version
    assert reg.model_versions(spec.name) == [version]
    assert _changed(tree, _tree(env)) == []  # nothing stored by the first run was rewritten
    # the gate knows the champion: the version is compared with itself, not "bootstrapped"
    results = checks(instance, spec)
    assert all(r["passed"] for r in results.values()), results
    for rule, result in results.items():
        assert "no champion yet" not in result["description"], (rule, result)
    assert version in results["gate_vs_champion"]["description"]
    evaluation = _metadata(instance, spec.asset_key("evaluation_report"))
    assert evaluation["champion"] == version
    champion = _metadata(instance, spec.asset_key("champion"))
    assert champion["champion"] == version
    assert champion["previous"] == version
    assert _champion_moves(env, spec.name) == [(None, version)]
    assert len(_promotions(env, spec.name)) == 1

    # a third run on the same inputs reuses the self-comparison verdict: nothing new is stored
    tree = _tree(env)
    third = _run(spec, env, instance, assets=["evaluation_report", "champion"])
    assert third.success, _failure(third)
    assert _tree(env) == tree
    assert _metadata(instance, spec.asset_key("evaluation_report"))["reused"] is True
    assert _champion_moves(env, spec.name) == [(None, version)]
    assert len(_promotions(env, spec.name)) == 1


@pytest.fixture
def served(env: Environment):
    try:
        yield env
    finally:
        env.resources()["serving_stack"].stop()


def test_rerunning_the_served_train_job_and_each_asset_changes_nothing(served, instance) -> None:
    env = served
    spec = served_spec(
        "fraud_rerun", labels=FRAUD_LABELS, trainer=LightGBMTrainer(seed=7, num_boost_round=60)
    )
    version, tree = _run_twice(spec, env, instance)
    assert _changed(tree, _tree(env)) == []
    serving = _metadata(instance, spec.asset_key("serving"))
    assert serving["validation_passed"] is True
    assert serving["p99_ms"] is not None  # measured again in this run, stored per run
    rollout = _metadata(instance, spec.asset_key("rollout"))
    assert rollout["phase"] == "champion"
    assert env.resources()["serving_stack"].canary_state(spec.name) is None  # no canary of itself
    for rule, result in checks(instance, spec).items():
        assert "no champion yet" not in result["description"], (rule, result)

    # each asset alone, in dependency order, on the same inputs
    for asset in (
        "feature_snapshot",
        "gold_set",
        "model_weights",
        "evaluation_report",
        "serving",
        "rollout",
    ):
        alone = _run(spec, env, instance, assets=[asset])
        assert alone.success, (asset, _failure(alone))
    assert _registry(env).alias(spec.name, "champion") == version
    assert _registry(env).model_versions(spec.name) == [version]
    assert _changed(tree, _tree(env)) == []
    assert _champion_moves(env, spec.name) == [(None, version)]
    assert len(_promotions(env, spec.name)) == 1
    assert env.resources()["serving_stack"].canary_state(spec.name) is None
    route = env.resources()["serving_stack"].gateway().routes()[spec.name]
    assert route == {"mode": "single", "champion": version} | {
        k: v for k, v in route.items() if k not in ("mode", "champion")
    }
