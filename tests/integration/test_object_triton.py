"""The Triton model repository on a real S3 server (SeaweedFS), read by the real tritonserver of
the nvidia-pytriton wheel straight from ``s3://``: lockgate writes a version's folder into the
bucket, verifies it there, and Triton loads it and answers what the model predicts in-process."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lockgate._util.services import LocalS3
from lockgate.lineage.object_registry import ObjectStoreArtifactRegistry
from lockgate.serving import model_repository
from lockgate.serving.model_repository import ServingError
from lockgate.serving.object_repository import ObjectModelRepository, load_version
from lockgate.serving.triton_server import LocalTritonServer
from lockgate.serving.wire import encode, wire_schema_for_version
from lockgate.training import LightGBMTrainer

from .processes import group_members
from .test_triton import FEATURES, Version, _frame, _infer, _store

KEY = "k" * 64


@pytest.fixture(scope="module")
def bucket(s3_server: LocalS3) -> str:
    name = "m-" + hashlib.sha256(__name__.encode()).hexdigest()[:16]
    fs = s3_server.filesystem()
    if fs.exists(name):
        fs.rm(name, recursive=True)
    s3_server.create_bucket(name)
    return name


@pytest.fixture(scope="module")
def registry(s3_server: LocalS3, bucket: str) -> Iterator[ObjectStoreArtifactRegistry]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCKGATE_SIGNING_KEY", KEY)
        yield ObjectStoreArtifactRegistry(
            url=f"s3://{bucket}/artifacts",
            endpoint_url=s3_server.endpoint_url,
            key=s3_server.access_key,
            secret=s3_server.secret_key,
            region="us-east-1",
        )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame(600)


@pytest.fixture(scope="module")
def versions(registry: ObjectStoreArtifactRegistry, frame: pd.DataFrame) -> dict[str, Version]:
    trainer = LightGBMTrainer
    return {
        "champion": _store(registry, "fraud_lgbm", trainer(seed=1, num_boost_round=20), frame),
        "tamper": _store(registry, "fraud_lgbm", trainer(seed=3, num_boost_round=8), frame),
        "half": _store(registry, "fraud_lgbm", trainer(seed=4, num_boost_round=8), frame),
        "gpu": _store(registry, "fraud_lgbm", trainer(seed=5, num_boost_round=8), frame),
        "asset": _store(registry, "fraud_lgbm", trainer(seed=6, num_boost_round=8), frame),
    }


def _repository(s3_server: LocalS3, bucket: str) -> ObjectModelRepository:
    return ObjectModelRepository(
        url=f"s3://{bucket}/triton",
        endpoint_url=s3_server.endpoint_url,
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        region="us-east-1",
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, s3_server: LocalS3, bucket: str
) -> Iterator[LocalTritonServer]:
    """tritonserver whose --model-repository is s3://http://127.0.0.1:<port>/<bucket>/triton."""
    work = tmp_path_factory.mktemp("triton-s3")
    triton = LocalTritonServer(
        repo_dir=f"s3://{bucket}/triton",
        repo_endpoint_url=s3_server.endpoint_url,
        repo_key=s3_server.access_key,
        repo_secret=s3_server.secret_key,
        repo_region="us-east-1",
        work_dir=str(work),
    )
    triton.start()
    pid = triton.pid
    assert pid is not None
    try:
        yield triton
    finally:
        triton.stop()
        assert not Path(f"/proc/{pid}").exists(), f"tritonserver {pid} survived stop()"
        assert group_members(pid) == []


def _objects(s3_server: LocalS3, bucket: str, name: str) -> dict[str, bytes]:
    fs = s3_server.filesystem()
    prefix = f"{bucket}/triton/{name}/"
    return {p[len(prefix) :]: fs.cat_file(p) for p in fs.find(prefix)}


def test_triton_loads_a_model_straight_from_s3_and_answers_as_in_process(
    server: LocalTritonServer,
    registry: ObjectStoreArtifactRegistry,
    versions: dict[str, Version],
    frame: pd.DataFrame,
    s3_server: LocalS3,
    bucket: str,
) -> None:
    state = json.loads(server.state_file.read_text())
    assert state["repo_dir"] == f"{s3_server.triton_url}/{bucket}/triton"
    assert not (Path(server.work_dir) / "triton").exists()  # nothing local: Triton reads S3
    assert s3_server.secret_key not in server.log_tail(200)  # credentials travel in the env
    v = versions["champion"]
    repo = server.object_repository()
    assert repo is not None
    uri = repo.write_model_version(registry, pipeline=v.pipeline, version=v.version)
    assert uri == f"s3://{bucket}/triton/{v.name}"
    stored = _objects(s3_server, bucket, v.name)
    assert {"config.pbtxt", "lockgate.json", "1/model.py", "1/wire.json", "1/model.txt"} <= set(
        stored
    )
    # the public load_version takes an s3:// server repository as it takes a folder
    name = model_repository.load_version(
        triton=server, registry=registry, pipeline=v.pipeline, version=v.version
    )
    assert name == v.name
    assert server.is_ready(name)
    x = encode(frame, wire_schema_for_version(registry, v.pipeline, v.version))
    served = _infer(server, name, x)
    np.testing.assert_allclose(served, v.model.predict_proba(frame), rtol=0, atol=1e-6)
    # writing the same version again is a no-op; other options for the same folder are refused
    assert repo.write_model_version(registry, pipeline=v.pipeline, version=v.version) == uri
    with pytest.raises(ServingError, match="immutable"):
        repo.write_model_version(registry, pipeline=v.pipeline, version=v.version, max_batch_size=8)
    assert _objects(s3_server, bucket, v.name) == stored
    server.unload(name, wait=True)


def test_a_tampered_object_is_never_loaded(
    server: LocalTritonServer,
    registry: ObjectStoreArtifactRegistry,
    versions: dict[str, Version],
    s3_server: LocalS3,
    bucket: str,
) -> None:
    v = versions["tamper"]
    repo = server.object_repository()
    assert repo is not None
    repo.write_model_version(registry, pipeline=v.pipeline, version=v.version)
    fs = s3_server.filesystem()
    path = f"{bucket}/triton/{v.name}/1/model.txt"
    fs.pipe_file(path, fs.cat_file(path).replace(b"learning_rate", b"learning_rat3", 1))
    with pytest.raises(ServingError, match=rf"s3://{bucket}/triton/{v.name}/1/model.txt.*tampered"):
        load_version(triton=server, registry=registry, pipeline=v.pipeline, version=v.version)
    assert not server.is_ready(v.name)
    assert v.name not in server.loaded()


def test_a_half_written_folder_is_refused_and_a_rewrite_completes_it(
    server: LocalTritonServer,
    registry: ObjectStoreArtifactRegistry,
    versions: dict[str, Version],
    s3_server: LocalS3,
    bucket: str,
) -> None:
    v = versions["half"]
    repo = server.object_repository()
    assert repo is not None
    repo.write_model_version(registry, pipeline=v.pipeline, version=v.version)
    fs = s3_server.filesystem()
    fs.rm_file(f"{bucket}/triton/{v.name}/lockgate.json")  # a writer that died before its manifest
    fs.pipe_file(f"{bucket}/triton/{v.name}/1/stray.bin", b"left by another attempt")
    with pytest.raises(ServingError, match=r"has no lockgate\.json: it is half-written"):
        repo.verify_model_folder(registry, pipeline=v.pipeline, version=v.version)
    with pytest.raises(ServingError, match="half-written"):
        load_version(triton=server, registry=registry, pipeline=v.pipeline, version=v.version)
    assert not server.is_ready(v.name)
    repo.write_model_version(registry, pipeline=v.pipeline, version=v.version)
    assert "1/stray.bin" not in _objects(s3_server, bucket, v.name)
    name = load_version(triton=server, registry=registry, pipeline=v.pipeline, version=v.version)
    assert server.is_ready(name)
    server.unload(name, wait=True)


def test_the_gpu_ensemble_round_trips_through_s3(
    registry: ObjectStoreArtifactRegistry,
    versions: dict[str, Version],
    s3_server: LocalS3,
    bucket: str,
) -> None:
    """The NGC image's three folders, the ensemble's empty version folder included."""
    v = versions["gpu"]
    repo = _repository(s3_server, bucket)
    repo.write_model_version(registry, pipeline=v.pipeline, version=v.version, target="gpu")
    etags = repo.verify_model_folder(registry, pipeline=v.pipeline, version=v.version)
    assert f"{v.name}/1/" in etags  # the empty version folder, as a folder marker
    assert {f"{v.name}-wire/lockgate.json", f"{v.name}-model/1/model.txt"} <= set(etags)
    fs = s3_server.filesystem()
    fs.rm_file(f"{bucket}/triton/{v.name}-model/1/model.txt")
    with pytest.raises(ServingError, match=r"-model misses \['1/model.txt'\]"):
        repo.verify_model_folder(registry, pipeline=v.pipeline, version=v.version)


def test_the_serving_assets_path_writes_and_loads_through_the_s3_repository(
    server: LocalTritonServer,
    registry: ObjectStoreArtifactRegistry,
    versions: dict[str, Version],
    s3_server: LocalS3,
    bucket: str,
) -> None:
    """What the serving asset and the canary controller call (ensure_loaded) on a stack whose
    Triton reads s3://: the version is written to the bucket, verified and loaded."""
    from lockgate.assets.serving import ensure_loaded

    class _Stack:  # a production stack's only part ensure_loaded uses
        def triton(self) -> LocalTritonServer:
            return server

    v = versions["asset"]
    name = v.name
    assert not model_repository.version_written(server, name)
    assert ensure_loaded(_Stack(), registry, "fraud_lgbm", v.version) == name  # type: ignore[arg-type]
    assert server.is_ready(name)
    assert model_repository.version_written(server, name)
    assert "lockgate.json" in _objects(s3_server, bucket, name)  # the manifest, written last
    assert ensure_loaded(_Stack(), registry, "fraud_lgbm", v.version) == name  # type: ignore[arg-type]


def test_the_gateway_reads_wire_json_from_the_s3_repository(
    server: LocalTritonServer,
    registry: ObjectStoreArtifactRegistry,
    versions: dict[str, Version],
    frame: pd.DataFrame,
    s3_server: LocalS3,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real gateway started with ``--model-repository s3://...`` (credentials from the AWS
    variables, as Triton gets them) answers requests by feature name, exactly as INPUT__0."""
    import urllib.request

    from lockgate.gateway.named_inputs import FeatureContract
    from lockgate.gateway.process import GatewayServer

    v = versions["champion"]
    repo = server.object_repository()
    assert repo is not None
    repo.write_model_version(registry, pipeline=v.pipeline, version=v.version)  # a no-op if there
    name = model_repository.load_version(
        triton=server, registry=registry, pipeline=v.pipeline, version=v.version
    )
    for key, value in s3_server.environment().items():
        monkeypatch.setenv(key, value)
    url = f"s3://{bucket}/triton"
    contract = FeatureContract.load(url, name)
    assert contract is not None
    assert contract.schema == wire_schema_for_version(registry, v.pipeline, v.version)
    assert FeatureContract.load(url, "fraud_lgbm-nosuchversion") is None
    gateway = GatewayServer(
        state_dir=str(tmp_path / "gw"),
        log_dir=str(tmp_path / "log"),
        upstream_url=server.url,
        model_repository=url,
    )
    rows = frame.iloc[1:13]  # no missing amount: JSON has no NaN
    with gateway:
        gateway.set_route("fraud_lgbm", {"mode": "single", "champion": v.version})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        meta = json.loads(opener.open(f"{gateway.url}/v2/models/fraud_lgbm").read())
        assert sorted(i["name"] for i in meta["inputs"]) == sorted(FEATURES)
        inputs = []
        for column in meta["inputs"]:
            values = rows[column["name"]]
            data = values.astype(str).tolist() if column["datatype"] == "BYTES" else values.tolist()
            inputs.append({**column, "shape": [len(rows)], "data": data})
        request = urllib.request.Request(
            f"{gateway.url}/v2/models/fraud_lgbm/infer",
            data=json.dumps({"inputs": inputs}).encode(),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(opener.open(request).read())
    (output,) = answer["outputs"]
    x = encode(rows, wire_schema_for_version(registry, v.pipeline, v.version))
    np.testing.assert_allclose(
        np.asarray(output["data"], dtype=np.float32),
        _infer(server, name, x),
        rtol=0,
        atol=1e-6,
    )
    server.unload(name, wait=True)
