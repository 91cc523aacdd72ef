"""The lineage graph end to end: real Feast store, real Dagster instance, real trainers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lockgate import Environment, ModelPipeline, build_definitions
from lockgate.errors import ArtifactIntegrityError
from lockgate.lineage.hashing import canonical_json, sha256_bytes, sha256_json
from lockgate.lineage.lock import files_sha256, model_version_id
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.reproduce import reproduce
from lockgate.lineage.steps import evaluate_version, load_snapshot_frame
from lockgate.spec import ColumnRule, DataValidation

from .specs import lgbm_spec, torch_spec

REPO = Path(__file__).resolve().parents[2]


def run_job(spec: ModelPipeline, env: Environment, instance: dg.DagsterInstance):
    defs = build_definitions([spec], environment=env)
    return defs.resolve_job_def(spec.train_job_name).execute_in_process(
        instance=instance, raise_on_error=False
    )


def registry(env: Environment) -> LocalArtifactRegistry:
    return LocalArtifactRegistry(root=str(env.artifacts_dir))


def ref(env: Environment, spec: ModelPipeline, asset: str) -> dict:
    return json.loads((env.refs_dir / spec.name / f"{asset}.json").read_text())


def materialization(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    assert event is not None
    assert event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@pytest.mark.parametrize("make_spec", [lgbm_spec, torch_spec], ids=["lightgbm", "torch"])
def test_train_job_locks_and_reproduces(make_spec, env, instance) -> None:
    spec = make_spec()
    result = run_job(spec, env, instance)
    assert result.success
    weights = ref(env, spec, "model_weights")
    snapshot = ref(env, spec, "feature_snapshot")
    record = registry(env).lock_record(spec.name, weights["version"])

    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert record["triad"] == {
        "code_commit": head or "unknown",
        "data_snapshot_sha256": snapshot["frame_sha256"],
        "weights_sha256": weights["weights_sha256"],
        "files_sha256": files_sha256(record["artifact"]["files"]),  # every served file
    }
    assert record["trainer"]["seed"] == 7
    assert record["data"]["feast"]["feature_views"]
    assert record["environment"]["packages"]["dagster"]
    # metadata visible in the UI
    meta = materialization(instance, spec.asset_key("model_weights"))
    assert meta["weights_sha256"] == weights["weights_sha256"]
    assert meta["reproduce"] == f"lockgate reproduce {spec.name} {weights['version']}"
    snap_meta = materialization(instance, spec.asset_key("feature_snapshot"))
    assert snap_meta["dagster/row_count"] == snapshot["rows"]
    assert snap_meta["feast_registry_fingerprint"]
    evaluation = materialization(instance, spec.asset_key("evaluation_report"))
    assert 0.7 < evaluation["roc_auc"] <= 1.0
    assert evaluation["log_loss"] > 0
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(spec.asset_key("feature_snapshot"), "row_count")]
    )
    assert len(checks) == 1

    report = reproduce(registry(env), spec.name, weights["version"], code_path=REPO)
    assert report.verified, report.render()
    assert report.rebuilt_weights_sha256 == weights["weights_sha256"]


def test_snapshot_hash_is_stable_and_sensitive(env, instance) -> None:
    spec = lgbm_spec()
    defs = build_definitions([spec], environment=env)
    snapshot_job = dg.define_asset_job("snap", selection=[spec.asset_key("feature_snapshot")])
    job = dg.Definitions.merge(defs, dg.Definitions(jobs=[snapshot_job])).resolve_job_def("snap")
    assert job.execute_in_process(instance=instance).success
    first = ref(env, spec, "feature_snapshot")
    assert first["created"] is True
    assert job.execute_in_process(instance=instance).success
    second = ref(env, spec, "feature_snapshot")
    assert second["frame_sha256"] == first["frame_sha256"]
    assert second["created"] is False

    # change one label in one row of one day's file
    files = sorted((env.data_dir / "labels").glob("*.parquet"))
    table = pq.read_table(files[3]).to_pandas()
    table.loc[0, "is_fraud"] = 1 - table.loc[0, "is_fraud"]
    table.to_parquet(files[3], index=False)
    assert job.execute_in_process(instance=instance).success
    third = ref(env, spec, "feature_snapshot")
    assert third["frame_sha256"] != first["frame_sha256"]
    assert third["rows"] == first["rows"]
    stored = load_snapshot_frame(registry(env), first["frame_sha256"])
    assert len(stored) == first["rows"]


def test_failed_data_quality_blocks_training(env, instance) -> None:
    strict = DataValidation(
        min_rows=10,
        columns={"amount": ColumnRule(dtype="float", min=0.0, max=1.0)},
    )
    spec = lgbm_spec(validation=strict)
    result = run_job(spec, env, instance)
    assert not result.success
    assert instance.get_latest_materialization_event(spec.asset_key("feature_snapshot"))
    assert instance.get_latest_materialization_event(spec.asset_key("model_weights")) is None
    key = dg.AssetCheckKey(spec.asset_key("feature_snapshot"), "column_amount")
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    evaluation = record.event.dagster_event.event_specific_data
    assert evaluation.passed is False
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert meta["metric"] == "expect_column_values_to_be_between"
    assert meta["threshold"] == "values in [0, 1]"
    assert meta["actual"]["unexpected_count"] > 0
    assert registry(env).model_versions(spec.name) == []


def test_evaluation_refuses_tampered_weights(env, instance) -> None:
    spec = lgbm_spec()
    assert run_job(spec, env, instance).success
    version = ref(env, spec, "model_weights")["version"]
    reg = registry(env)
    path = Path(reg.uri(f"{reg.model_prefix(spec.name, version)}/model.txt"))
    os.chmod(path, 0o644)
    path.write_text(path.read_text().replace("learning_rate", "learning_rat3", 1))
    frame = load_snapshot_frame(reg, ref(env, spec, "feature_snapshot")["frame_sha256"])
    with pytest.raises(ArtifactIntegrityError, match="tampered"):
        evaluate_version(reg, spec.name, version, frame)
    assert isinstance(frame, pd.DataFrame)


def lockgate_cli(*args: str, env: Environment) -> subprocess.CompletedProcess:
    """The `lockgate` console command in its own process, on the test's home."""
    environ = {k: v for k, v in os.environ.items() if k != "LOCKGATE_SIGNING_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "lockgate.cli", *args, "--home", str(env.home)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        timeout=600,
    )


def _reseal(record: dict) -> dict:
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return dict(body, record_sha256=sha256_json(body))


def test_forged_served_files_are_refused_and_reproduce_fails_on_any_mismatch(env, instance) -> None:
    """Issue 13 item 5 on a real trained model: a forged preprocessing file with a recomputed
    record is refused (`lockgate verify` exits 2), a record that is not the folder's is refused,
    `reproduce` fails when any file differs, and `reproduce --restore` repairs a damaged file."""
    spec = lgbm_spec()
    assert run_job(spec, env, instance).success
    version = ref(env, spec, "model_weights")["version"]
    reg = registry(env)
    record = reg.lock_record(spec.name, version)
    folder = Path(reg.uri(reg.model_prefix(spec.name, version)))
    assert (env.home / "keys" / "signing.key").stat().st_mode & 0o777 == 0o600
    genuine = {name: (folder / name).read_bytes() for name in ("lock.json", "preprocessing.json")}

    # 1. the forgery: preprocessing changed, its sha256 and the self-hash recomputed
    preprocessing = json.loads(genuine["preprocessing.json"])
    preprocessing["features"][0]["fill_value"] = 1e9
    forged_pre = json.dumps(preprocessing, indent=2).encode()
    forged = json.loads(genuine["lock.json"])
    forged["artifact"]["files"]["preprocessing.json"] = sha256_bytes(forged_pre)
    for path in (folder / "lock.json", folder / "preprocessing.json"):
        os.chmod(path, 0o644)
    (folder / "preprocessing.json").write_bytes(forged_pre)
    (folder / "lock.json").write_bytes(canonical_json(_reseal(forged)))
    result = lockgate_cli("verify", spec.name, version, env=env)
    assert result.returncode == 2, result.stdout
    assert "does not match its signature" in result.stderr
    assert "Traceback" not in result.stderr
    for name, data in genuine.items():
        (folder / name).write_bytes(data)
    assert lockgate_cli("verify", spec.name, version, env=env).returncode == 0

    # 2. a version whose stored preprocessing is not what its rebuild gives, signed with the key
    # (an insider, or another lockgate): reproduce fails and names the file
    files = {**reg.model_files(spec.name, version), "preprocessing.json": forged_pre}
    other = json.loads(genuine["lock.json"])
    other["artifact"]["files"] = {n: sha256_bytes(d) for n, d in files.items()}
    other["triad"]["files_sha256"] = files_sha256(other["artifact"]["files"])
    other["version"] = model_version_id(
        code_commit=other["triad"]["code_commit"],
        snapshot_sha256=other["triad"]["data_snapshot_sha256"],
        weights_sha256=other["triad"]["weights_sha256"],
        files_sha256=other["triad"]["files_sha256"],
    )
    assert other["version"] != version  # every file is in the version id
    other = _reseal(other)
    reg.put_model_version(spec.name, other["version"], files, other)
    report = reproduce(reg, spec.name, other["version"], code_path=REPO)
    assert report.rebuilt_weights_sha256 == report.expected_weights_sha256
    assert not report.verified
    assert set(report.file_mismatches) == {"preprocessing.json"}
    assert "NOT REPRODUCED: preprocessing.json differ" in report.render()

    # 3. the genuine record copied into the other version's folder is not that version's
    other_folder = Path(reg.uri(reg.model_prefix(spec.name, other["version"])))
    for name in ("lock.json", "lock.sig"):
        os.chmod(other_folder / name, 0o644)
        (other_folder / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(ArtifactIntegrityError, match=f"record of {spec.name}/{version}"):
        reg.lock_record(spec.name, other["version"])

    # 4. `verify` advises `reproduce --restore`, which rebuilds and writes the locked bytes back
    model = folder / record["artifact"]["weights_file"]
    os.chmod(model, 0o644)
    model.write_bytes(model.read_bytes()[:-10])
    damaged = lockgate_cli("verify", spec.name, version, env=env)
    assert damaged.returncode == 2
    assert f"lockgate reproduce {spec.name} {version} --restore" in damaged.stderr
    restored = lockgate_cli("reproduce", spec.name, version, "--restore", env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert f"restored into the registry: {record['artifact']['weights_file']}" in restored.stdout
    assert lockgate_cli("verify", spec.name, version, env=env).returncode == 0
