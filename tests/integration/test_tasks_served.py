"""Regression and multiclass pipelines served end to end: a real Dagster run trains, gates,
infra-validates and serves each model in a real tritonserver behind the real gateway; a second
run's challenger is taken through the canary by the controller, with the prediction PSI judged
per task; then the drift report reads the served predictions per task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from lockgate import Environment
from lockgate.evaluation.gate import Gate, GoldSet
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.steps import load_snapshot_frame
from lockgate.monitoring.drift_report import compute_drift_report
from lockgate.monitoring.triggers import DriftPolicy
from lockgate.resources.audit import AuditTrail
from lockgate.serving.canary import CanaryPolicy, CanaryState
from lockgate.serving.stack import LocalServingStack
from lockgate.serving.wire import encode, wire_schema_for_version
from lockgate.spec import LabelSource, ModelPipeline
from lockgate.traffic import TrafficGenerator, drive_canary
from lockgate.training import LightGBMTrainer

from .specs import run_train_job, serve_first_model, served_spec

CANARY = CanaryPolicy(
    steps=(25, 100),
    hold_seconds=1,
    min_requests=80,
    max_p99_ms=300.0,
    max_p99_ratio=None,
    max_error_rate=0.05,
    max_error_rate_delta=None,
    max_prediction_psi=1.0,  # judged: noise of 80 requests stays far below it
    max_shadow_mean_abs_diff=None,
)


def _task_labels(data_dir: Path, out: Path) -> None:
    """The example labels with a regression and a multiclass label that follow the features."""
    labels = pd.concat(
        [pd.read_parquet(p) for p in sorted((data_dir / "labels").glob("*.parquet"))]
    )
    tx = pd.concat(
        [pd.read_parquet(p) for p in sorted((data_dir / "transactions").glob("*.parquet"))]
    )
    joined = labels.merge(
        tx[["transaction_id", "amount", "hour_of_day"]], on="transaction_id", how="left"
    )
    rng = np.random.default_rng(5)
    amount = joined["amount"].to_numpy(np.float64)
    night = (joined["hour_of_day"].to_numpy() < 6).astype(np.float64)
    labels["spend_next"] = 10 + 0.8 * amount + 25 * night + rng.normal(0, 3, len(joined))
    score = np.log1p(amount) + 1.5 * night + rng.normal(0, 0.3, len(joined))
    low, high = np.quantile(score, [0.4, 0.8])
    labels["band"] = np.where(score > high, "high", np.where(score > low, "mid", "low"))
    labels.to_parquet(out)


def _spec(task: str, label: str, path: Path, seed: int) -> ModelPipeline:
    primary = "rmse" if task == "regression" else "log_loss"
    return served_spec(
        f"shop_{task}",
        task=task,
        label=label,
        labels=LabelSource(
            path=str(path), entity_columns=("transaction_id", "customer_id", "merchant_id")
        ),
        trainer=LightGBMTrainer(seed=seed, num_boost_round=40),
        # any challenger passes the gate: the canary is what this test is about
        gate=Gate(
            gold=GoldSet(key="transaction_id", fraction=0.2),
            min_gold_rows=500,
            min_delta={primary: -1e6},
        ),
        canary=CANARY,
        drift=DriftPolicy(min_rows=50, window_rows=20_000),
    )


@pytest.mark.parametrize(
    ("task", "label", "width"), [("regression", "spend_next", 1), ("multiclass", "band", 3)]
)
def test_a_task_is_trained_served_and_canaried_end_to_end(
    env: Environment, instance: dg.DagsterInstance, tmp_path: Path, task: str, label: str,
    width: int,
) -> None:  # fmt: skip
    path = tmp_path / "task_labels.parquet"
    _task_labels(env.data_dir, path)
    first = _spec(task, label, path, seed=1)
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    stack = LocalServingStack(root=str(env.serving_dir))
    try:
        champion = serve_first_model(first, env, instance, registry, stack)
        second = first.model_copy(update={"trainer": LightGBMTrainer(seed=2, num_boost_round=60)})
        run_train_job(second, env, instance)  # a challenger: gated, infra-validated, canary started
        raw = stack.canary_state(first.name)
        assert raw is not None
        state = CanaryState.from_dict(raw)
        assert state.running
        assert state.champion == champion
        challenger = state.challenger

        lock = registry.lock_record(first.name, champion)
        frame = load_snapshot_frame(registry, lock["triad"]["data_snapshot_sha256"])
        matrix = encode(frame, wire_schema_for_version(registry, first.name, champion))
        audit = AuditTrail(path=str(env.audit_path))
        with TrafficGenerator(stack.gateway().url, first.name, matrix, threads=2) as clients:
            transitions = drive_canary(
                second, stack=stack, artifacts=registry, audit=audit, tick_s=0.3, timeout_s=240
            )
        assert clients.report.errors == 0, clients.report.error_messages
        assert [t.action for t in transitions] == ["advance", "promote"], [
            (t.action, t.reason) for t in transitions
        ]
        psis = [t.metrics["prediction_psi"] for t in transitions]
        assert all(p is not None and 0.0 <= p < CANARY.max_prediction_psi for p in psis), psis
        assert registry.alias(first.name, "champion") == challenger

        stats = stack.gateway().stats(first.name)["versions"][challenger]
        if task == "regression":  # values on the label's scale, far outside [0, 1]
            assert stats["prediction_kind"] == "probability"
            assert sum(stats["prediction_sketch"].values()) == stats["answered"]
            assert stats["mean_prediction"] > 10.0
        else:  # the predicted class of 3
            assert stats["prediction_kind"] == "class"
            assert len(stats["prediction_histogram"]) == width
            assert sum(stats["prediction_histogram"]) == stats["answered"]
            assert 0.0 < stats["mean_prediction"] <= 1.0

        report = compute_drift_report(second, stack=stack, artifacts=registry, store=False)
        prediction: dict[str, Any] = report["prediction"]
        assert prediction["task"] == task, report["reason"]
        # the same population as training (traffic sweeps the snapshot in order: not critical)
        assert prediction["severity"] != "critical", prediction
        assert 0.0 <= prediction["psi"] < 0.2
        assert prediction["kind"] == ("numeric" if task == "regression" else "categorical")
        if task == "multiclass":
            assert set(prediction["class_share_current"]) <= {"low", "mid", "high"}
        else:  # on the label's scale; how much of the snapshot was swept depends on the load
            assert prediction["mean_current"] == pytest.approx(
                prediction["mean_reference"], rel=0.3
            )
    finally:
        stack.stop()
