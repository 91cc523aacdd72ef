"""The closed loop on a real dagster-daemon: a drift retrain that fails the gate changes nothing.

(The promoting path runs in the quick-start job, tested in ``test_cli.py``.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as th

from lockgate import Environment
from lockgate.audit.log import AuditLog
from lockgate.definitions import build_definitions
from lockgate.serving.wire import encode, wire_schema_for_version
from pipelines.closed_loop import SETTINGS_FILE, LoopSettings, read_settings, run_closed_loop
from pipelines.demo import _prepare_dagster_home
from pipelines.feature_repo import fraud_feast_store
from pipelines.fraud import fraud_lgbm


@pytest.fixture
def served(env: Environment) -> Iterator[Environment]:
    """fraud_lgbm trained and served as champion, in a persistent local Dagster instance."""
    from dagster import DagsterInstance

    _prepare_dagster_home(env.dagster_home)
    fraud_feast_store(env).apply()
    old = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "LOCKGATE_HOME")}
    os.environ.update(DAGSTER_HOME=str(env.dagster_home), LOCKGATE_HOME=str(env.home))
    try:
        with DagsterInstance.get() as instance:
            job = build_definitions([fraud_lgbm], environment=env).resolve_job_def(
                fraud_lgbm.train_job_name
            )
            assert job.execute_in_process(instance=instance).success
        yield env
    finally:
        env.resources()["serving_stack"].stop()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_a_drift_retrain_that_fails_the_gate_leaves_the_champion_serving(
    served: Environment,
) -> None:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    env = served
    registry = env.resources()["artifacts"]
    champion = registry.alias("fraud_lgbm", "champion")
    lines: list[str] = []
    # an absolute ROC AUC floor no model reaches: the drift-triggered retrain must be gated
    settings = LoopSettings(gate_absolute={"roc_auc": 0.999})
    loop = run_closed_loop(env, say=lines.append, settings=settings, drift_days=4, timeout_s=360)

    assert loop["outcome"] == "gated", lines
    assert loop["champion_after"] == champion
    assert registry.alias("fraud_lgbm", "champion") == champion
    assert loop["errors"] == 0
    assert set(loop["by_version"]) == {champion}  # no request ever reached the retrained model
    events = [e["event"] for e in loop["timeline"]]
    assert any(e.startswith("retrain requested by the drift sensor") for e in events), events
    assert any(e.startswith("gate FAILED") for e in events), events
    assert not any(e.startswith(("canary", "infra validation")) for e in events), events

    kinds = [e["kind"] for e in AuditLog(env.audit_path).entries(pipeline="fraud_lgbm")]
    assert kinds[-2:] == ["retrain_requested", "gate_verdict"]
    with DagsterInstance.from_config(str(env.dagster_home)) as instance:
        (run,) = instance.get_runs(filters=RunsFilter(tags={"lockgate/trigger": "drift"}))
        assert run.status == DagsterRunStatus.FAILURE
        assert run.tags["dagster/run_key"].startswith("drift:")
        # the daemon ran the location the documented workspace.yaml loads, so the UI opens it
        assert run.remote_job_origin is not None
        assert run.remote_job_origin.location_name == "lockgate"
    # the loop's demo-sized policies are gone with the loop: the location is as written again
    assert not (env.home / SETTINGS_FILE).exists()
    assert read_settings(env) is None

    # the champion still answers live traffic through the gateway
    stack = env.resources()["serving_stack"]
    schema = wire_schema_for_version(registry, "fraud_lgbm", champion)
    from lockgate.lineage.steps import load_snapshot_frame

    record = registry.lock_record("fraud_lgbm", champion)
    rows = load_snapshot_frame(registry, record["triad"]["data_snapshot_sha256"]).head(8)
    client = th.InferenceServerClient(stack.gateway().url.removeprefix("http://"))
    try:
        inp = th.InferInput("INPUT__0", [8, schema.width], "FP32")
        inp.set_data_from_numpy(encode(rows, schema), binary_data=True)
        result = client.infer("fraud_lgbm", [inp])
        assert result.get_response()["model_version"] == champion
        scores = result.as_numpy("OUTPUT__0")
        assert scores.shape[0] == 8
        assert np.all((scores >= 0) & (scores <= 1))
    finally:
        client.close()
