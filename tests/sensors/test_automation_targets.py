"""The UI's automation sidebar and lineage: which sensor records which asset, what it reads."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster._core.remote_representation.external import RemoteRepository
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._core.remote_representation.handle import RepositoryHandle

from lockgate import Environment, build_definitions
from pipelines.fraud import PIPELINES

SPEC = PIPELINES[0]


def _remote(tmp_path: Path) -> tuple[dg.Definitions, RemoteRepository]:
    defs = build_definitions([SPEC], environment=Environment.local(tmp_path / "home"))
    # the same repository object the webserver builds; get_sensors_targeting is what the asset
    # page's "Automations" sidebar lists
    remote = RemoteRepository(
        RepositorySnap.from_def(defs.get_repository_def()),
        RepositoryHandle.for_test(),
        auto_materialize_use_sensors=True,
    )
    return defs, remote


def test_the_sensor_that_records_an_asset_is_its_automation(tmp_path: Path) -> None:
    _, remote = _remote(tmp_path)

    def targeting(asset: str) -> set[str]:
        return {s.name for s in remote.get_sensors_targeting(SPEC.asset_key(asset))}

    assert targeting("drift_report") == {SPEC.drift_sensor_name}
    assert targeting("live_performance") == {SPEC.feedback_sensor_name}
    # the train job's assets keep every retrain trigger, and nothing else changed there
    assert targeting("model_weights") == {
        SPEC.drift_sensor_name,
        SPEC.feedback_sensor_name,
        SPEC.feature_change_sensor_name,
    }


def test_monitoring_jobs_hold_one_asset_and_retrains_still_run_the_train_job(
    tmp_path: Path,
) -> None:
    defs, _ = _remote(tmp_path)
    graph = defs.resolve_asset_graph()
    for asset in ("drift_report", "live_performance"):
        job = defs.resolve_job_def(f"{SPEC.name}_{asset}")
        assert job.asset_layer.executable_asset_keys == {SPEC.asset_key(asset)}
    train = defs.resolve_job_def(SPEC.train_job_name)
    assert SPEC.asset_key("drift_report") not in train.asset_layer.executable_asset_keys
    assert SPEC.asset_key("model_registry") in train.asset_layer.executable_asset_keys
    # live_performance reads the champion's gold estimate and the served versions' log
    assert graph.get(SPEC.asset_key("live_performance")).parent_keys >= {
        SPEC.asset_key("evaluation_report"),
        SPEC.asset_key("rollout"),
    }
    sensors = {s.name: s for s in defs.sensors or []}
    for name in (SPEC.drift_sensor_name, SPEC.feedback_sensor_name):
        assert SPEC.train_job_name in {t.job_name for t in sensors[name].targets}
