"""Serving through the real tritonserver of the nvidia-pytriton wheel (python backend, CPU).

One server per module (started once, stopped and checked gone at the end); tests that kill or
restart a server start their own. Every model is a real LightGBM or torch model in a real
artifact registry, with the snapshot manifest its wire schema comes from; requests carry the
pipeline's wire matrix (lockgate.serving.wire) over HTTP through tritonclient.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

from lockgate.errors import LockgateError
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.serving.model_repository import (
    ServingError,
    infra_validate,
    load_version,
    model_folders,
    verify_model_folder,
    write_model_version,
)
from lockgate.serving.triton_config import (
    INPUT_NAME,
    OUTPUT_NAME,
    cpu_config,
    python_model_source,
    triton_model_name,
)
from lockgate.serving.triton_server import LocalTritonServer, RemoteTritonServer, TritonServer
from lockgate.serving.wire import WireSchema, encode, wire_schema_for_version
from lockgate.training import LightGBMTrainer, TorchTrainer, TrainedModel

from .fitted import store_fitted
from .processes import group_members

FEATURES = ["amount", "hour", "channel"]
SNAPSHOT = "a" * 64


def _frame(n: int = 1500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 40.0, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "channel": rng.choice(["web", "pos", "atm", "moto"], n),
        }
    )
    frame.loc[::23, "amount"] = np.nan  # exercised by the preprocessing
    risky = (frame["amount"].fillna(0) > 100) | (frame["channel"] == "moto")
    frame["y"] = (risky ^ (rng.random(n) < 0.1)).astype(int)
    return frame


class Version:
    """A model version stored in the registry, and the model itself."""

    def __init__(self, pipeline: str, version: str, model: TrainedModel) -> None:
        self.pipeline = pipeline
        self.version = version
        self.model = model
        self.name = triton_model_name(pipeline, version)


def _store(
    registry: LocalArtifactRegistry,
    pipeline: str,
    trainer: Any,
    frame: pd.DataFrame,
    features: list[str] | None = None,
) -> Version:
    version, model = store_fitted(
        registry,
        pipeline,
        trainer,
        frame,
        snapshot=SNAPSHOT,
        features=features or FEATURES,
        label="y",
        manifest_features=FEATURES,  # once: the manifest the wire schema comes from
    )
    return Version(pipeline, version, model)


def _wire(frame: pd.DataFrame) -> np.ndarray:
    return encode(frame, WireSchema.from_frame(_frame(5), FEATURES))


def _infer(server: TritonServer, name: str, x: np.ndarray, *, step: int = 1024) -> np.ndarray:
    """A plain tritonclient request (NaN included: TritonServer.infer refuses non-finite)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.url)
    try:
        parts = []
        for start in range(0, len(x), step):
            chunk = np.ascontiguousarray(x[start : start + step], dtype=np.float32)
            tensor = httpclient.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            out = client.infer(name, [tensor]).as_numpy(OUTPUT_NAME)
            assert out.shape == (len(chunk), 1)
            parts.append(out[:, 0])
        return np.concatenate(parts)
    finally:
        client.close()


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _frame()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> LocalArtifactRegistry:
    return LocalArtifactRegistry(root=str(tmp_path_factory.mktemp("triton") / "artifacts"))


@pytest.fixture(scope="module")
def versions(registry: LocalArtifactRegistry, frame: pd.DataFrame) -> dict[str, Version]:
    """champion / challenger (LightGBM), torch, spare LightGBM versions for drills, and a
    torch version on a feature subset with another vocabulary."""
    return {
        "champion": _store(
            registry, "fraud_lgbm", LightGBMTrainer(seed=1, num_boost_round=20), frame
        ),
        "challenger": _store(
            registry, "fraud_lgbm", LightGBMTrainer(seed=2, num_boost_round=30), frame
        ),
        "torch": _store(registry, "fraud_torch", TorchTrainer(seed=1, epochs=3), frame),
        "tamper": _store(registry, "fraud_lgbm", LightGBMTrainer(seed=3, num_boost_round=8), frame),
        "slow": _store(registry, "fraud_lgbm", LightGBMTrainer(seed=4, num_boost_round=8), frame),
        "flaky": _store(registry, "fraud_lgbm", LightGBMTrainer(seed=5, num_boost_round=8), frame),
        "subset": _store(  # other features, other vocabulary: the same wire
            registry,
            "fraud_lgbm",
            TorchTrainer(seed=6, epochs=2),
            frame[frame["channel"] != "atm"],
            features=["channel", "amount"],
        ),
    }


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTritonServer]:
    root = tmp_path_factory.mktemp("server")
    triton = LocalTritonServer(repo_dir=str(root / "repo"), work_dir=str(root / "work"))
    triton.start()
    pid = triton.pid
    assert pid is not None
    try:
        yield triton
    finally:
        triton.stop()
        assert _gone(pid), f"tritonserver {pid} survived stop()"
        assert group_members(pid) == [], "python-backend stubs survived stop()"
        assert not triton.pid_file.exists()


def _serve(server: LocalTritonServer, registry: LocalArtifactRegistry, v: Version) -> str:
    write_model_version(registry, server.repo_dir, pipeline=v.pipeline, version=v.version)
    return load_version(triton=server, registry=registry, pipeline=v.pipeline, version=v.version)


# ---- serving --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["champion", "torch"])
def test_both_trainers_serve_what_they_predict_in_process(
    server: LocalTritonServer,
    registry: LocalArtifactRegistry,
    versions: dict[str, Version],
    frame: pd.DataFrame,
    which: str,
) -> None:
    v = versions[which]
    name = _serve(server, registry, v)
    assert server.is_ready(name)
    requests = frame.copy()
    requests.loc[requests.index[:3], "channel"] = ["kiosk", None, ""]  # unseen and missing
    x = encode(requests, wire_schema_for_version(registry, v.pipeline, v.version))
    assert np.isnan(x).any()  # missing values travel as NaN
    served = _infer(server, name, x)  # 1500 rows: two requests of at most max_batch_size
    assert served.dtype == np.float32
    assert served.shape == (len(frame),)
    np.testing.assert_allclose(served, v.model.predict_proba(requests), rtol=0, atol=1e-6)
    finite = np.isfinite(x).all(axis=1)  # lockgate's resource: rows without missing values
    np.testing.assert_array_equal(server.infer(name, x[finite][:50]), served[finite][:50])


def test_champion_and_challenger_serve_side_by_side(
    server: LocalTritonServer,
    registry: LocalArtifactRegistry,
    versions: dict[str, Version],
    frame: pd.DataFrame,
) -> None:
    champion, challenger = versions["champion"], versions["challenger"]
    names = [_serve(server, registry, v) for v in (champion, challenger)]
    assert set(names) <= set(server.loaded())
    rows = frame.head(200)
    x = _wire(rows)
    outputs = {}
    for v, name in zip((champion, challenger), names, strict=True):
        outputs[name] = _infer(server, name, x)
        np.testing.assert_allclose(outputs[name], v.model.predict_proba(rows), atol=1e-6)
    assert not np.allclose(*outputs.values())  # two different models really are served
    server.unload(challenger.name, wait=True)
    assert not server.is_ready(challenger.name)
    assert server.is_ready(champion.name)  # the champion is never touched
    assert challenger.name not in server.loaded()
    np.testing.assert_array_equal(_infer(server, champion.name, x), outputs[champion.name])


def test_versions_with_other_features_and_vocabularies_take_the_same_wire(
    server: LocalTritonServer,
    registry: LocalArtifactRegistry,
    versions: dict[str, Version],
    frame: pd.DataFrame,
) -> None:
    champion, subset = versions["champion"], versions["subset"]
    assert subset.model.features == ("channel", "amount")
    assert "atm" not in subset.model.preprocessing["features"][0]["vocabulary"]
    rows = frame.head(300)
    x = _wire(rows)  # one matrix, whichever version a gateway routes it to
    for v in (champion, subset):
        name = _serve(server, registry, v)
        np.testing.assert_allclose(
            _infer(server, name, x), v.model.predict_proba(rows), rtol=0, atol=1e-6
        )
    server.unload(subset.name, wait=True)


def test_remote_resource_reaches_the_same_server(
    server: LocalTritonServer, registry: LocalArtifactRegistry, versions: dict[str, Version]
) -> None:
    _serve(server, registry, versions["champion"])
    without = RemoteTritonServer(server_url=f"http://{server.url}", repo_dir=server.repo_dir)
    try:  # the model-repository API is restricted to holders of the secret, and says so
        with pytest.raises(ServingError, match="LOCKGATE_TRITON_CONTROL_SECRET"):
            without.loaded()
    finally:
        without.close()
    secret = server.control_headers()[server.control_header]
    remote = RemoteTritonServer(
        server_url=f"http://{server.url}", repo_dir=server.repo_dir, control_secret=secret
    )
    try:
        assert remote.health()
        assert remote.http_port == server.http_port
        assert versions["champion"].name in remote.loaded()
    finally:
        remote.close()
    down = RemoteTritonServer(server_url="127.0.0.1:9", timeout_s=2.0)
    assert down.health() is False
    with pytest.raises(ServingError, match="no repo_dir"):
        load_version(
            triton=down,
            registry=registry,
            pipeline=versions["champion"].pipeline,
            version=versions["champion"].version,
        )


def test_bad_requests_are_answered_with_errors(
    server: LocalTritonServer, registry: LocalArtifactRegistry, versions: dict[str, Version]
) -> None:
    from tritonclient.utils import InferenceServerException

    name = _serve(server, registry, versions["champion"])
    width = len(FEATURES)
    with pytest.raises(ServingError, match=r"shape \(2, 2\)"):
        server.infer(name, np.zeros((2, 2)))
    with pytest.raises(ServingError, match="refused"):
        server.infer("fraud_lgbm-000000000000", np.zeros((1, width)))
    missing = _infer(server, name, np.full((1, width), np.nan))  # all missing: imputed
    assert np.isfinite(missing).all()
    preprocessed = versions["champion"].model.preprocess(_frame(3).dropna())
    preprocessed[:, 2] += 0.5  # not a code24: the old interface is refused, not misread
    with pytest.raises(InferenceServerException, match="no code24") as refused:
        _infer(server, name, preprocessed)
    assert refused.value.status() == "400"  # the client's input, not a server error
    infinite = _wire(_frame(3))
    infinite[1, 0] = np.inf
    with pytest.raises(InferenceServerException, match="infinite") as refused:
        _infer(server, name, infinite)
    assert refused.value.status() == "400"
    assert server.is_ready(name)


def test_fault_drill_errors_do_not_crash_the_model(
    server: LocalTritonServer, registry: LocalArtifactRegistry, versions: dict[str, Version]
) -> None:
    v = versions["flaky"]
    write_model_version(
        registry, server.repo_dir, pipeline=v.pipeline, version=v.version, fault="error_rate=1.0"
    )
    name = load_version(triton=server, registry=registry, pipeline=v.pipeline, version=v.version)
    x = _wire(_frame(4).dropna())
    for _ in range(3):
        with pytest.raises(ServingError, match="lockgate_fault injected an error"):
            server.infer(name, x)
    assert server.is_ready(name)
    server.unload(name)


# ---- the repository: atomic, immutable, verified ---------------------------------------------


def test_write_is_atomic_idempotent_and_immutable(
    tmp_path: Path, registry: LocalArtifactRegistry, versions: dict[str, Version]
) -> None:
    v = versions["champion"]
    repo = tmp_path / "repo"
    folder = write_model_version(registry, repo, pipeline=v.pipeline, version=v.version)
    assert folder == repo / v.name
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        "1/__pycache__",
        "1/model.py",
        "1/model.txt",
        "1/preprocessing.json",
        "1/wire.json",
        "config.pbtxt",
        "lockgate.json",
    ]
    wire = WireSchema.from_json((folder / "1" / "wire.json").read_bytes())
    assert wire == wire_schema_for_version(registry, v.pipeline, v.version)
    assert wire.names == tuple(FEATURES)
    manifest = json.loads((folder / "lockgate.json").read_text())
    lock_files = registry.lock_record(v.pipeline, v.version)["artifact"]["files"]
    assert {e["source"]: e["sha256"] for e in manifest["files"].values()} == lock_files
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    assert write_model_version(registry, repo, pipeline=v.pipeline, version=v.version) == folder
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before  # a no-op
    with pytest.raises(ServingError, match="immutable"):
        write_model_version(
            registry, repo, pipeline=v.pipeline, version=v.version, fault="sleep_ms=5"
        )
    assert [p.name for p in repo.iterdir()] == [v.name]  # no .tmp-* left behind
    verify_model_folder(registry, repo, pipeline=v.pipeline, version=v.version)


@pytest.mark.parametrize("which", ["champion", "torch"])
def test_gpu_folders_are_an_ensemble_of_the_wire_step_and_fil_or_libtorch(
    tmp_path: Path, registry: LocalArtifactRegistry, versions: dict[str, Version], which: str
) -> None:
    v = versions[which]
    folder = write_model_version(
        registry, tmp_path, pipeline=v.pipeline, version=v.version, target="gpu", gpus=(0, 1)
    )
    assert folder == tmp_path / v.name
    assert sorted(model_folders(v.name, target="gpu")) == sorted(p.name for p in tmp_path.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        v.name,
        f"{v.name}-model",
        f"{v.name}-wire",
    ]
    configs = {
        p.name: text_format.Parse((p / "config.pbtxt").read_text(), ModelConfig())
        for p in tmp_path.iterdir()
    }
    ensemble = configs[v.name]
    assert ensemble.platform == "ensemble"
    assert list(ensemble.input[0].dims) == [len(FEATURES)]
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        f"{v.name}-wire",
        f"{v.name}-model",
    ]
    assert sorted(p.name for p in folder.rglob("*")) == ["1", "config.pbtxt", "lockgate.json"]
    wire_files = sorted(p.name for p in (tmp_path / f"{v.name}-wire" / "1").iterdir())
    assert {"model.py", "wire.json", "preprocessing.json", "__pycache__"} <= set(wire_files)
    served = sorted(p.name for p in (tmp_path / f"{v.name}-model" / "1").iterdir())
    inner = configs[f"{v.name}-model"]
    width = v.model.preprocessing["input_dim"]
    assert list(inner.input[0].dims) == [width]
    assert list(configs[f"{v.name}-wire"].output[0].dims) == [width]
    if which == "torch":
        assert inner.platform == "pytorch_libtorch"
        assert served == ["model.pt"]
        model_pt = tmp_path / f"{v.name}-model" / "1" / "model.pt"
        assert model_pt.read_bytes() == v.model.files()["model.torchscript.pt"]
    else:
        assert inner.backend == "fil"
        assert served == ["model.txt"]
    verify_model_folder(registry, tmp_path, pipeline=v.pipeline, version=v.version)
    assert (
        write_model_version(
            registry, tmp_path, pipeline=v.pipeline, version=v.version, target="gpu", gpus=(0, 1)
        )
        == folder
    )
    weights = next((tmp_path / f"{v.name}-model" / "1").iterdir())
    weights.write_bytes(weights.read_bytes() + b"\n")
    with pytest.raises(ServingError, match="tampered"):
        verify_model_folder(registry, tmp_path, pipeline=v.pipeline, version=v.version)
    shutil.rmtree(tmp_path / f"{v.name}-wire")
    with pytest.raises(ServingError, match="-wire does not exist"):
        verify_model_folder(registry, tmp_path, pipeline=v.pipeline, version=v.version)
    with pytest.raises(ServingError, match="python backend"):
        write_model_version(
            registry,
            tmp_path / "x",
            pipeline=v.pipeline,
            version=v.version,
            target="gpu",
            fault="sleep_ms=1",
        )


_FIL_STAND_IN = """\
import os, site, sys

for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
    if entry and os.path.isdir(entry) and entry not in sys.path:
        site.addsitedir(entry)
import lightgbm
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.booster = lightgbm.Booster(model_file=os.path.join(folder, "model.txt"))

    def execute(self, requests):
        responses = []
        for request in requests:
            x = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, "input__0"))
            y = self.booster.predict(np.array(x, dtype=np.float32), num_threads=1)
            y = np.ascontiguousarray(y.reshape(-1, 1), dtype=np.float32)
            tensor = pb_utils.Tensor.from_dlpack("output__0", y)
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
"""


def test_gpu_ensemble_routes_the_wire_through_the_python_step_in_a_real_triton(
    server: LocalTritonServer, registry: LocalArtifactRegistry, frame: pd.DataFrame
) -> None:
    """The generated ensemble in the wheel's (CPU) tritonserver: FIL is not bundled, so the
    ``-model`` step is replaced by a python stand-in with FIL's tensor names (this bypasses
    verification on purpose); the ensemble config, the ``-wire`` step and the maps are real."""
    import tritonclient.http as httpclient

    v = _store(registry, "fraud_lgbm", LightGBMTrainer(seed=7, num_boost_round=10), frame)
    repo = Path(server.repo_dir)
    write_model_version(registry, repo, pipeline=v.pipeline, version=v.version, target="gpu")
    inner = repo / f"{v.name}-model"
    config = (inner / "config.pbtxt").read_text()
    config = config.replace('backend: "fil"', 'backend: "python"').replace("KIND_GPU", "KIND_CPU")
    (inner / "config.pbtxt").write_text(
        "\n".join(line for line in config.splitlines() if "gpus:" not in line) + "\n"
    )
    (inner / "1" / "model.py").write_text(_FIL_STAND_IN)
    client = httpclient.InferenceServerClient(url=server.url)
    try:
        client.load_model(v.name, headers=server.control_headers())  # the ensemble and its parts
        for name in (v.name, f"{v.name}-wire", f"{v.name}-model"):
            assert client.is_model_ready(name)
        rows = frame.head(300)
        np.testing.assert_allclose(
            _infer(server, v.name, _wire(rows)), v.model.predict_proba(rows), rtol=0, atol=1e-6
        )
    finally:
        client.close()
    # unloading the ensemble takes its composing models with it
    server.unload(v.name, wait=True, dependents=(f"{v.name}-wire", f"{v.name}-model"))
    assert not set(server.loaded()) & {v.name, f"{v.name}-wire", f"{v.name}-model"}


# ---- tasks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_lightgbm_serve_what_they_predict(
    server: LocalTritonServer, frame: pd.DataFrame, task: str
) -> None:
    """A multiclass (``[k]`` probabilities) and a regression (``[1]`` value) LightGBM model in
    the real server: the folder is written here from the pure builders (config with the task's
    output dims, the generated model.py, wire.json, the model files), not by
    write_model_version, whose config does not take the task yet."""
    import tritonclient.http as httpclient

    rows = frame.assign(
        shift=np.select([frame["hour"] < 8, frame["hour"] < 16], ["night", "day"], "evening"),
        spend=0.5 * frame["amount"].fillna(60.0) + 3.0 * (frame["channel"] == "web"),
    )
    label = "shift" if task == "multiclass" else "spend"
    model = LightGBMTrainer(seed=1, num_boost_round=20).fit(
        rows, features=FEATURES, label=label, task=task
    )
    width = model.output_width
    assert width == (3 if task == "multiclass" else 1)
    schema = WireSchema.from_frame(frame, FEATURES)
    name = triton_model_name("tasks_lgbm", task)
    folder = Path(server.repo_dir) / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(
        cpu_config(
            model_name=name,
            kind="lightgbm",
            wire_width=schema.width,
            task=task,
            output_width=width,
        )
    )
    (folder / "1" / "model.py").write_text(python_model_source())
    (folder / "1" / "wire.json").write_bytes(schema.to_json())
    (folder / "1" / "__pycache__").write_bytes(b"")
    for file_name, data in model.files().items():
        (folder / "1" / file_name).write_bytes(data)
    client = httpclient.InferenceServerClient(url=server.url)
    try:
        client.load_model(name, headers=server.control_headers())
        assert client.is_model_ready(name)
        x = encode(rows, schema)
        parts = []
        for start in range(0, len(x), 1000):  # two requests of at most max_batch_size
            chunk = np.ascontiguousarray(x[start : start + 1000], dtype=np.float32)
            tensor = httpclient.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            out = client.infer(name, [tensor]).as_numpy(OUTPUT_NAME)
            assert out.dtype == np.float32
            assert out.shape == (len(chunk), width)
            parts.append(out)
        served = np.concatenate(parts).astype(np.float64)
    finally:
        client.close()
        server.unload(name, wait=True)
        shutil.rmtree(folder)
    expected = model.predict(rows).reshape(len(rows), width)
    if task == "multiclass":
        assert model.classes == ("day", "evening", "night")
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-5)
        assert (served.argmax(axis=1) == expected.argmax(axis=1)).all()
    else:
        np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-6)  # label units
        assert served.std() > 1.0  # real predictions, not a constant


def _tamper(folder: Path, how: str, outside: Path) -> str:
    """Damages a written model folder; returns the text the refusal must contain."""
    if how == "tampered":
        with open(folder / "1" / "model.txt", "ab") as handle:
            handle.write(b"\n")
        return "tampered"
    if how == "missing":
        (folder / "1" / "preprocessing.json").unlink()
        return "misses"
    if how == "extra":
        (folder / "1" / "helper.py").write_text("import os\n")
        return "extra files"
    if how == "symlink":
        target = outside / "preprocessing.json"
        shutil.copy(folder / "1" / "preprocessing.json", target)  # identical content
        (folder / "1" / "preprocessing.json").unlink()
        os.symlink(target, folder / "1" / "preprocessing.json")
        return "symlink"
    if how == "dotdot":
        manifest = json.loads((folder / "lockgate.json").read_text())
        manifest["files"]["1/../../../outside.txt"] = {"source": "x", "sha256": "0" * 64}
        (folder / "lockgate.json").write_text(json.dumps(manifest))
        return "leaves the model folder"
    if how == "folder_symlink":
        copy = outside / "copy"
        shutil.copytree(folder, copy)
        shutil.rmtree(folder)
        os.symlink(copy, folder)
        return "symlink"
    if how == "no_manifest":
        (folder / "lockgate.json").unlink()
        return "half-written"
    if how == "tmp_entry":
        (folder / "1" / ".tmp-model.txt").write_bytes(b"partial")
        return "half-written"
    if how == "interrupted":
        shutil.rmtree(folder)
        (folder.parent / f".tmp-{folder.name}-abc123").mkdir()
        return "interrupted write"
    if how == "config_edited":
        path = folder / "config.pbtxt"
        path.write_text(path.read_text().replace("count: 1", "count: 4"))
        return "config.pbtxt differs"
    if how == "wire_edited":
        path = folder / "1" / "wire.json"
        schema = WireSchema.from_json(path.read_bytes())
        path.write_bytes(WireSchema(tuple(reversed(schema.columns))).to_json())
        return "wire.json differs"
    if how == "manifest_edited":
        manifest = json.loads((folder / "lockgate.json").read_text())
        manifest["n_features"] += 1
        (folder / "lockgate.json").write_text(json.dumps(manifest))
        return "lockgate.json differs"
    if how == "manifest_options_edited":  # what config.pbtxt is generated from: name both
        manifest = json.loads((folder / "lockgate.json").read_text())
        manifest["options"]["max_batch_size"] = 7
        (folder / "lockgate.json").write_text(json.dumps(manifest))
        return r"config.pbtxt was edited, or the manifest's options were"
    if how == "pyc_planted":
        (folder / "1" / "__pycache__").unlink()
        (folder / "1" / "__pycache__").mkdir()
        (folder / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"evil")
        return "extra files"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "tampered",
        "missing",
        "extra",
        "symlink",
        "dotdot",
        "folder_symlink",
        "no_manifest",
        "tmp_entry",
        "interrupted",
        "config_edited",
        "wire_edited",
        "manifest_edited",
        "manifest_options_edited",
        "pyc_planted",
    ],
)
def test_damaged_folders_are_refused_before_triton_sees_them(
    server: LocalTritonServer,
    registry: LocalArtifactRegistry,
    versions: dict[str, Version],
    tmp_path: Path,
    how: str,
) -> None:
    v = versions["tamper"]
    repo = Path(server.repo_dir)
    folder = repo / v.name
    try:
        write_model_version(registry, repo, pipeline=v.pipeline, version=v.version)
        expected = _tamper(folder, how, tmp_path)
        with pytest.raises(ServingError, match=expected) as refused:
            load_version(triton=server, registry=registry, pipeline=v.pipeline, version=v.version)
        message = str(refused.value)
        assert "rule" in message or "fix" in message
        assert "write_model_version" in message  # the fix is named
        assert not server.is_ready(v.name)  # Triton never loaded it
    finally:
        if folder.is_symlink():
            folder.unlink()
        shutil.rmtree(folder, ignore_errors=True)
        for stale in repo.glob(f".tmp-{v.name}-*"):
            shutil.rmtree(stale)


# ---- infra validation --------------------------------------------------------------------------


@pytest.fixture
def validate(
    server: LocalTritonServer, registry: LocalArtifactRegistry, frame: pd.DataFrame
) -> Callable[..., dict[str, Any]]:
    """``infra_validate`` of a stored version on the module's server, registry and frame."""

    def run(v: Version, **options: Any) -> dict[str, Any]:
        return infra_validate(
            triton=server,
            registry=registry,
            pipeline=v.pipeline,
            version=v.version,
            frame=frame,
            **options,
        )

    return run


def test_infra_validation_passes_a_good_candidate(
    server: LocalTritonServer, versions: dict[str, Version], validate: Callable[..., dict[str, Any]]
) -> None:
    v = versions["challenger"]
    report = validate(v, requests=100)
    assert report["passed"], report["failures"]
    assert report["rows"] == 500
    assert report["max_abs_diff"] <= 1e-5
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= 50.0
    assert report["requests"] == 100 * len(report["latency_passes"])  # 2 after a host stall
    json.dumps(report)  # JSON-able
    assert not server.is_ready(v.name)  # unloaded afterwards


def test_infra_validation_fails_a_slow_candidate(
    server: LocalTritonServer, versions: dict[str, Version], validate: Callable[..., dict[str, Any]]
) -> None:
    v = versions["slow"]
    report = validate(v, n_rows=100, requests=12, p99_budget_ms=50.0, fault="sleep_ms=80")
    assert not report["passed"]
    assert report["max_abs_diff"] <= 1e-5  # correct, only slow
    assert report["p99_ms"] >= 80.0
    # slow in both timed passes: the second pass does not rescue a slow model
    assert [p["p99_ms"] >= 80.0 for p in report["latency_passes"]] == [True, True]
    assert report["requests"] == 24
    (failure,) = report["failures"]
    assert failure["check"] == "latency"
    assert "exceeds the budget of 50 ms" in failure["message"]
    assert "better of 2 passes" in failure["message"]
    assert not server.is_ready(v.name)


def test_infra_validation_fails_a_tampered_candidate(
    server: LocalTritonServer,
    registry: LocalArtifactRegistry,
    versions: dict[str, Version],
    validate: Callable[..., dict[str, Any]],
) -> None:
    v = versions["tamper"]
    folder = write_model_version(registry, server.repo_dir, pipeline=v.pipeline, version=v.version)
    try:
        with open(folder / "1" / "model.txt", "ab") as handle:
            handle.write(b"\n")
        report = validate(v, requests=5)
        assert not report["passed"]
        (failure,) = report["failures"]
        assert failure["check"] == "integrity"
        assert "1/model.txt" in failure["message"]
        assert not server.is_ready(v.name)
    finally:
        shutil.rmtree(folder)


# ---- the process ----------------------------------------------------------------------------------


def test_a_copy_attaches_to_the_running_server(
    server: LocalTritonServer, registry: LocalArtifactRegistry, versions: dict[str, Version]
) -> None:
    twin = LocalTritonServer(repo_dir=server.repo_dir, work_dir=server.work_dir)
    assert twin.attached
    assert twin.start() is twin  # attaches, starts nothing
    assert (twin.url, twin.pid) == (server.url, server.pid)
    name = _serve(twin, registry, versions["champion"])
    assert name in server.loaded()
    twin.stop()  # only closes its connections: it did not start the server
    assert server.health()
    other = LocalTritonServer(repo_dir=str(Path(server.repo_dir) / "x"), work_dir=server.work_dir)
    with pytest.raises(ServingError, match="one server per work_dir"):
        other.start()


def test_dagster_assets_reach_the_server_through_the_resource(
    server: LocalTritonServer, registry: LocalArtifactRegistry, versions: dict[str, Version]
) -> None:
    import dagster as dg

    v = versions["champion"]
    name = _serve(server, registry, v)
    rows = _frame(9).dropna()  # TritonServer.infer refuses NaN (missing values) for now

    @dg.asset
    def scores(triton: TritonServer) -> list[float]:
        return [float(p) for p in triton.infer(name, _wire(rows))]

    result = dg.materialize([scores], resources={"triton": server})
    assert result.success
    np.testing.assert_allclose(
        result.output_for_node("scores"), v.model.predict_proba(rows), atol=1e-6
    )


def test_kill_then_start_again(
    tmp_path: Path, registry: LocalArtifactRegistry, versions: dict[str, Version]
) -> None:
    v = versions["champion"]
    triton = LocalTritonServer(
        repo_dir=str(tmp_path / "repo"), work_dir=str(tmp_path / "work"), exit_timeout_s=2
    )
    with triton:
        first = triton.pid
        assert first is not None
        name = _serve(triton, registry, v)
        x = _wire(_frame(10).dropna())
        before = triton.infer(name, x)
        stubs = [p for p in group_members(first) if p != first]
        assert stubs, "the python backend runs its model in stub processes"
        triton.kill()
        assert _gone(first)
        assert group_members(first) == []
        assert not triton.running
        assert triton.pid_file.exists()  # left behind, as by a real crash
        assert triton.state_file.exists()
        assert not triton.attached  # the files name a dead process
        with pytest.raises(ServingError, match="not running"):
            triton.infer(name, x)
        triton.start()
        assert triton.pid not in (None, first)
        assert triton.pid_file.read_text().strip() == str(triton.pid)
        assert triton.loaded() == []  # a fresh process: models are loaded again explicitly
        _serve(triton, registry, v)
        np.testing.assert_array_equal(triton.infer(name, x), before)
        second = triton.pid
    assert second is not None
    assert _gone(second)
    assert not triton.pid_file.exists()
    assert not triton.state_file.exists()
    assert isinstance(ServingError("x"), LockgateError)


def test_ensure_loaded_loads_a_folder_written_with_the_specs_options(
    server: LocalTritonServer, registry: LocalArtifactRegistry, frame: pd.DataFrame
) -> None:
    """After a restart the controller reloads the champion the serving asset wrote with the
    spec's batch size, instead of refusing it for differing from the defaults."""
    from types import SimpleNamespace

    from lockgate.assets.serving import ensure_loaded

    v = _store(registry, "fraud_lgbm", LightGBMTrainer(seed=9, num_boost_round=6), frame)
    write_model_version(
        registry, server.repo_dir, pipeline=v.pipeline, version=v.version, max_batch_size=64
    )
    stack = SimpleNamespace(triton=lambda: server, repo_dir=server.repo_dir)
    name = ensure_loaded(stack, registry, v.pipeline, v.version)  # type: ignore[arg-type]
    assert name == v.name
    assert server.is_ready(name)
    server.unload(name)


def test_a_fixed_port_in_use_is_refused_naming_it(tmp_path: Path) -> None:
    """A configured port is kept across restarts; one taken by another process stops the start
    before a server is spawned, with the port and how to free it in the message."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        triton = LocalTritonServer(
            repo_dir=str(tmp_path / "repo"), work_dir=str(tmp_path / "work"), fixed_grpc_port=port
        )
        with pytest.raises(ServingError, match=f"grpc port {port} on 127.0.0.1 is in use"):
            triton.start()
        assert not triton.running
        assert not triton.pid_file.exists()
