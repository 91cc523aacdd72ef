"""The small pipelines the integration tests and their code locations share, and running one's
train job to a served champion, and a stand-in train job for the sensor tests' code locations
(not a test module)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from lockgate import Environment, build_definitions
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.serving.stack import LocalServingStack
from lockgate.spec import LabelSource, ModelPipeline, TritonTarget
from lockgate.training import LightGBMTrainer, TorchTrainer
from pipelines.fraud import FRAUD_LABELS, FRAUD_VALIDATION
from tests.integration.test_gate import GATE


def served_spec(name: str, **over: Any) -> ModelPipeline:
    """A gated, CPU-served LightGBM pipeline keyed by ``transaction_id``; ``over`` sets fields
    such as ``canary``, ``drift`` or ``feedback``."""
    fields: dict[str, Any] = {
        "name": name,
        "feature_service": "fraud_v1",
        "label": "is_fraud",
        "labels": LabelSource(entity_columns=("transaction_id",)),
        "trainer": LightGBMTrainer(seed=1),
        "gate": GATE,
        "serving": TritonTarget(device="cpu"),
        **over,
    }
    return ModelPipeline(**fields)


def lgbm_spec(**over: object) -> ModelPipeline:
    args: dict[str, object] = dict(
        name="fraud_lgbm",
        feature_service="fraud_v1",
        label="is_fraud",
        labels=FRAUD_LABELS,
        trainer=LightGBMTrainer(seed=7, num_boost_round=60),
        validation=FRAUD_VALIDATION,
    )
    args.update(over)
    return ModelPipeline(**args)  # type: ignore[arg-type]


def torch_spec(**over: object) -> ModelPipeline:
    return lgbm_spec(name="fraud_torch", trainer=TorchTrainer(seed=7, epochs=8), **over)


def run_train_job(spec: ModelPipeline, env: Environment, instance: dg.DagsterInstance) -> None:
    """Runs the spec's train job in process; it must succeed (the failed steps' errors say why)."""
    job = build_definitions([spec], environment=env).resolve_job_def(spec.train_job_name)
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    failures = [
        e.event_specific_data.error.message  # type: ignore[union-attr]
        for e in result.all_events
        if e.is_step_failure
    ]
    assert result.success, failures


def serve_first_model(
    spec: ModelPipeline,
    env: Environment,
    instance: dg.DagsterInstance,
    registry: LocalArtifactRegistry,
    stack: LocalServingStack,
) -> str:
    """Trains the spec's first model, which becomes the champion at once and is routed; returns
    the champion version."""
    run_train_job(spec, env, instance)  # the first model: gate, infra validation, champion, served
    champion = registry.alias(spec.name, "champion")
    assert champion is not None
    assert stack.gateway().routes()[spec.name]["champion"] == champion
    return champion


def stand_in_train_job(spec: ModelPipeline, tag: str) -> dg.JobDefinition:
    """Under the spec's train job name, a trivial op job that logs the run's ``tag``: what the
    sensor tests' code locations check is the trigger, not the training."""

    @dg.op(name=f"stand_in_for_{spec.name}")  # one per pipeline: op names are per location
    def stand_in_for_training(context) -> None:  # type: ignore[no-untyped-def]
        context.log.info(f"retrain requested: {context.run.tags.get(tag)}")

    @dg.job(name=spec.train_job_name, executor_def=dg.in_process_executor)
    def train_job() -> None:
        stand_in_for_training()

    return train_job
