"""A scikit-learn (ONNX) pipeline through the trainer protocol, end to end: a real Dagster run
trains it, gates it, infra-validates it in a sandbox tritonserver and serves it from a real
tritonserver (python backend, CPU), whose answers are the in-process predictions of the same
ONNX graph; the lock record names the trainer class and its code, and the version reproduces."""

from __future__ import annotations

import dagster as dg
import numpy as np

from lockgate import Environment, SklearnTrainer
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.reproduce import reproduce
from lockgate.lineage.steps import load_snapshot_frame, load_trained_model
from lockgate.serving.stack import LocalServingStack
from lockgate.serving.triton_config import triton_model_name
from lockgate.serving.wire import encode, wire_schema_for_version
from pipelines.fraud import FRAUD_LABELS

from .specs import serve_first_model, served_spec


def test_a_sklearn_onnx_pipeline_is_trained_gated_served_and_reproduced(
    env: Environment, instance: dg.DagsterInstance
) -> None:
    trainer = SklearnTrainer(
        estimator="sklearn.ensemble:HistGradientBoostingClassifier",
        params={"max_iter": 60, "learning_rate": 0.1},
        seed=1,
    )
    spec = served_spec("fraud_sklearn", trainer=trainer, labels=FRAUD_LABELS)
    registry = LocalArtifactRegistry(root=str(env.artifacts_dir))
    stack = LocalServingStack(root=str(env.serving_dir))
    try:
        champion = serve_first_model(spec, env, instance, registry, stack)

        lock = registry.lock_record(spec.name, champion)
        assert lock["trainer"]["kind"] == "sklearn"
        assert lock["trainer"]["class"] == "lockgate.training:SklearnTrainer"
        assert set(lock["trainer"]["code_sha256"]) == {"lockgate.training.sklearn_trainer"}
        assert lock["artifact"]["weights_file"] == "model.onnx"

        frame = load_snapshot_frame(registry, lock["triad"]["data_snapshot_sha256"])
        rows = frame.dropna(subset=list(lock["features"])).head(300)
        wire = encode(rows, wire_schema_for_version(registry, spec.name, champion))
        served = np.asarray(
            stack.triton().infer(triton_model_name(spec.name, champion), wire), dtype=np.float64
        ).reshape(-1)
        local = load_trained_model(registry, spec.name, champion).predict(rows)
        np.testing.assert_allclose(served, local, atol=1e-6)  # one ONNX graph, float32 out
        assert 0.0 < float(local.mean()) < 0.5

        report = reproduce(registry, spec.name, champion)
        assert report.verified, report.render()
        assert not report.file_mismatches
    finally:
        stack.stop()
