"""The gate with real trained models, a real Feast store and a real Dagster instance."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lockgate import (
    Environment,
    Gate,
    GoldSet,
    LightGBMTrainer,
    ModelPipeline,
    SliceSpec,
    build_definitions,
)
from lockgate.evaluation.gate import GATE_RULES
from lockgate.evaluation.report import gold_mask
from lockgate.lineage.registry import LocalArtifactRegistry
from pipelines.fraud import FRAUD_EDGE_CASES, FRAUD_LABELS, FRAUD_VALIDATION
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

KEY_FEATURES = ("amount", "is_foreign", "is_new_device", "tx_count_1d", "amount_sum_1d")
GATE = Gate(
    gold=GoldSet(key="transaction_id", fraction=0.2),
    absolute={"roc_auc": 0.6},
    min_delta={"roc_auc": 0.0},
    slices=(SliceSpec(column="device_type"),),
    max_slice_drop=0.05,
    min_slice_rows=300,
    edge_cases=FRAUD_EDGE_CASES[:3],
    min_gold_rows=1000,
    min_gold_positives=30,
    n_boot=200,
)


def spec(*, gate: Gate = GATE, seed: int = 7, exclude: tuple[str, ...] = ()) -> ModelPipeline:
    return ModelPipeline(
        name="fraud",
        feature_service="fraud_v1",
        label="is_fraud",
        labels=FRAUD_LABELS,
        trainer=LightGBMTrainer(seed=seed, num_boost_round=120),
        validation=FRAUD_VALIDATION,
        exclude_features=exclude,
        gate=gate,
    )


@pytest.fixture(scope="module")
def gate_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gate") / "data"
    generate_fraud_data(root, days=20, config=FraudDataConfig(seed=5))
    return root


@pytest.fixture(scope="module")
def source_data(gate_data: Path) -> Path:
    """The gate's data in place of conftest's: conftest's ``env`` copies it into each fresh home
    (and conftest's ``instance`` gives each test its Dagster instance)."""
    return gate_data


def train(pipeline: ModelPipeline, env: Environment, instance: dg.DagsterInstance):
    job = build_definitions([pipeline], environment=env).resolve_job_def(pipeline.train_job_name)
    return job.execute_in_process(instance=instance, raise_on_error=False)


def registry(env: Environment) -> LocalArtifactRegistry:
    return LocalArtifactRegistry(root=str(env.artifacts_dir))


def checks(instance: dg.DagsterInstance, pipeline: ModelPipeline) -> dict[str, dict]:
    key = pipeline.asset_key("evaluation_report")
    keys = [dg.AssetCheckKey(key, rule) for rule in GATE_RULES]
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    out = {}
    for check_key, record in records.items():
        evaluation = record.event.dagster_event.event_specific_data
        out[check_key.name] = {
            "passed": evaluation.passed,
            "description": evaluation.description,
            **{k: v.value for k, v in evaluation.metadata.items()},
        }
    return out


def champion(env: Environment) -> str | None:
    return registry(env).alias("fraud", "champion")


def test_first_model_bootstraps_and_a_better_challenger_is_promoted(env, instance) -> None:
    weak = spec(exclude=KEY_FEATURES)
    assert train(weak, env, instance).success
    first = champion(env)
    assert first is not None
    verdict = registry(env).verdicts("fraud", first)[-1]
    assert verdict["passed"]
    assert verdict["champion"] is None
    assert "bootstrap" in checks(instance, weak)["gate_vs_champion"]["description"]

    strong = spec()
    assert train(strong, env, instance).success
    second = champion(env)
    assert second not in (None, first)
    results = checks(instance, strong)
    assert all(r["passed"] for r in results.values()), results
    assert results["gate_vs_champion"]["actual"] > 0
    history = registry(env).aliases("fraud")["history"]
    moves = [(h["alias"], h["from"], h["to"]) for h in history if h["alias"] == "champion"]
    assert moves == [("champion", None, first), ("champion", first, second)]
    assert "gate passed vs" in history[-1]["reason"]
    # the verdict is attached to the lock record it judged, and a model card sits beside it
    lock = registry(env).lock_record("fraud", second)
    verdict = registry(env).verdicts("fraud", second)[-1]
    assert verdict["lock_record_sha256"] == lock["record_sha256"]
    card = (
        registry(env)
        .read_bytes(f"reports/fraud/{second}/{verdict['report_id']}-model_card.md")
        .decode()
    )
    assert f"# Model card: fraud {second}" in card
    assert "PASS `gate_slices`" in card


def test_worse_challenger_is_blocked_with_its_numbers(env, instance) -> None:
    assert train(spec(), env, instance).success
    incumbent = champion(env)
    weak = spec(exclude=KEY_FEATURES)
    run = train(weak, env, instance)
    assert not run.success
    assert champion(env) == incumbent  # the champion keeps serving
    results = checks(instance, weak)
    failed = results["gate_vs_champion"]
    assert failed["passed"] is False
    assert failed["metric"] == "roc_auc"
    assert failed["actual"] < 0
    assert failed["threshold"] == 0.0
    assert failed["description"].startswith("BLOCKED by gate_vs_champion: roc_auc: challenger")
    assert "challenger 0." in failed["description"]
    assert "vs champion 0." in failed["description"]
    materialized = {
        e.asset_key.path[-1] for e in run.get_asset_materialization_events() if e.asset_key
    }
    assert "champion" not in materialized
    assert "evaluation_report" in materialized
    assert registry(env).alias("fraud", "challenger") != incumbent


def _shuffle_labels(env: Environment, source: Path, device_type: str, *, inside: bool) -> None:
    """Shuffle training labels inside (or outside) one device type; gold rows stay untouched."""
    shutil.rmtree(env.data_dir / "labels")
    shutil.copytree(source / "labels", env.data_dir / "labels")
    tx = pd.concat(
        pd.read_parquet(p, columns=["transaction_id", "device_type"])
        for p in sorted((env.data_dir / "transactions").glob("*.parquet"))
    )
    in_slice = set(tx.loc[tx["device_type"] == device_type, "transaction_id"])
    rng = np.random.default_rng(0)
    for path in sorted((env.data_dir / "labels").glob("*.parquet")):
        labels = pd.read_parquet(path)
        target = labels["transaction_id"].isin(in_slice).to_numpy() == inside
        target &= ~gold_mask(labels, GATE.gold)
        labels.loc[target, "is_fraud"] = rng.permutation(labels.loc[target, "is_fraud"].to_numpy())
        labels.to_parquet(path, index=False)


def test_better_overall_but_worse_on_a_slice_is_blocked(env, instance, gate_data) -> None:
    lenient = GATE.model_copy(update={"absolute": {"roc_auc": 0.5}})
    # champion: learned android_app well and everything else from shuffled labels
    _shuffle_labels(env, gate_data, "android_app", inside=False)
    assert train(spec(gate=lenient), env, instance).success
    incumbent = champion(env)
    # challenger: learned everything well except android_app
    _shuffle_labels(env, gate_data, "android_app", inside=True)
    challenger = spec(gate=lenient)
    assert not train(challenger, env, instance).success
    results = checks(instance, challenger)
    better = results["gate_vs_champion"]
    assert better["passed"], better
    assert better["actual"] > 0  # better overall
    slices = results["gate_slices"]
    assert slices["passed"] is False
    assert slices["metric"] == "roc_auc_largest_slice_drop"
    assert slices["worst_slice"] == "device_type=android_app"
    assert slices["actual"] > 0.05
    assert slices["threshold"] == 0.05
    assert [r for r, v in results.items() if not v["passed"]] == ["gate_slices"]
    assert champion(env) == incumbent


def test_a_tie_within_noise_is_not_promoted_when_significance_is_required(env, instance) -> None:
    strict = GATE.model_copy(update={"require_significance": True, "min_delta": {"roc_auc": -0.01}})
    assert train(spec(gate=strict), env, instance).success
    incumbent = champion(env)
    twin = spec(gate=strict, seed=8)  # same recipe, other seed: a tie within noise
    assert not train(twin, env, instance).success
    results = checks(instance, twin)
    assert results["gate_vs_champion"]["passed"]
    significance = results["gate_significance"]
    assert significance["passed"] is False
    delta, lower, upper = (
        significance[k] for k in ("improvement", "improvement_lower", "improvement_upper")
    )
    assert significance["actual"] == lower
    assert lower <= 0 <= upper
    assert abs(delta) < 0.01
    assert "not significant" in significance["description"]
    assert champion(env) == incumbent


def test_an_exception_inside_evaluation_blocks_promotion(env, instance) -> None:
    weak = spec(exclude=KEY_FEATURES)
    assert train(weak, env, instance).success
    incumbent = champion(env)
    reg = registry(env)
    path = Path(reg.uri(f"{reg.model_prefix('fraud', incumbent)}/model.txt"))
    path.write_text(path.read_text() + "\n")  # the champion's weights no longer match its lock
    run = train(spec(), env, instance)
    assert not run.success
    failure = next(e for e in run.all_events if e.is_step_failure)
    assert failure.step_key == "fraud__evaluation_report"
    materialized = {
        e.asset_key.path[-1] for e in run.get_asset_materialization_events() if e.asset_key
    }
    assert "evaluation_report" not in materialized  # no report with made-up zero metrics
    assert "champion" not in materialized
    assert champion(env) == incumbent
    assert reg.verdicts("fraud", reg.alias("fraud", "challenger")) == []
