"""Triton config builders: every generated config is a valid Triton ModelConfig; model.py works.

The protobuf check uses Triton's own schema (``tritonclient.grpc.model_config_pb2``) through
``google.protobuf.text_format.Parse``, which rejects unknown fields and wrong types. ``model.py``
is run here against a stand-in ``triton_python_backend_utils`` (the real one only exists inside
the stub); tests/integration/test_triton.py runs it in the real server.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import DataType, ModelConfig, ModelInstanceGroup

from lockgate.errors import SchemaError, SpecError
from lockgate.serving.triton_config import (
    FIL_INPUT_NAME,
    FIL_OUTPUT_NAME,
    INPUT_NAME,
    MODEL_KINDS,
    OUTPUT_NAME,
    PREPROCESSED_NAME,
    cpu_config,
    gpu_component_names,
    gpu_config,
    model_io_names,
    parse_config,
    parse_fault,
    python_model_source,
    split_triton_model_name,
    triton_model_name,
)
from lockgate.serving.wire import WIRE_FILE, WireSchema, code24, encode
from lockgate.training import LightGBMTrainer, TorchTrainer, TrainedModel

NAME = "fraud_lgbm-1df59d62da45"


def _proto(text: str) -> ModelConfig:
    return text_format.Parse(text, ModelConfig())


def _params(config: ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


@pytest.mark.parametrize("kind", MODEL_KINDS)
@pytest.mark.parametrize("warmup", [True, False])
def test_cpu_config_is_a_python_backend_model_config(kind: str, warmup: bool) -> None:
    text = cpu_config(model_name=NAME, kind=kind, wire_width=12, instances=2, warmup=warmup)
    config = _proto(text)
    assert config.name == NAME
    assert config.backend == "python"
    assert config.platform == ""
    assert config.max_batch_size == 1024
    assert list(config.version_policy.specific.versions) == [1]
    (inp,) = config.input
    (out,) = config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == (INPUT_NAME, DataType.TYPE_FP32, [12])
    assert (out.name, out.data_type, list(out.dims)) == (OUTPUT_NAME, DataType.TYPE_FP32, [1])
    (group,) = config.instance_group
    assert group.kind == ModelInstanceGroup.Kind.KIND_CPU
    assert group.count == 2
    assert config.HasField("dynamic_batching")
    assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 1000
    if warmup:
        (sample,) = config.model_warmup
        assert sample.batch_size == 1
        data = sample.inputs[INPUT_NAME]
        assert data.zero_data
        assert (data.data_type, list(data.dims)) == (DataType.TYPE_FP32, [12])
    else:
        assert len(config.model_warmup) == 0
    assert _params(config) == {"lockgate_kind": kind}


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_gpu_config_is_an_ensemble_of_the_wire_step_and_fil_or_libtorch(kind: str) -> None:
    texts = gpu_config(
        model_name=NAME, kind=kind, wire_width=9, n_features=7, instances=2, gpus=(0, 3)
    )
    wire_name, inner_name = gpu_component_names(NAME)
    assert (wire_name, inner_name) == (f"{NAME}-wire", f"{NAME}-model")
    assert list(texts) == [wire_name, inner_name, NAME]  # load order: the ensemble last
    configs = {name: _proto(text) for name, text in texts.items()}
    assert {name: c.name for name, c in configs.items()} == {n: n for n in texts}
    for config in configs.values():
        assert config.max_batch_size == 1024
        assert list(config.version_policy.specific.versions) == [1]

    # <name>-wire: python on CPU, wire [9] -> preprocessed [7]
    wire = configs[wire_name]
    assert wire.backend == "python"
    (group,) = wire.instance_group
    assert (group.kind, group.count) == (ModelInstanceGroup.Kind.KIND_CPU, 4)  # 2 per GPU
    (inp,) = wire.input
    (out,) = wire.output
    assert (inp.name, list(inp.dims)) == (INPUT_NAME, [9])
    assert (out.name, out.data_type, list(out.dims)) == (
        PREPROCESSED_NAME,
        DataType.TYPE_FP32,
        [7],
    )
    assert wire.model_warmup[0].inputs[INPUT_NAME].zero_data
    assert list(wire.model_warmup[0].inputs[INPUT_NAME].dims) == [9]
    assert _params(wire) == {"lockgate_kind": kind, "lockgate_output": "preprocessed"}

    # <name>-model: FIL / libtorch on the GPUs, preprocessed [7] -> [1]
    inner = configs[inner_name]
    (group,) = inner.instance_group
    assert group.kind == ModelInstanceGroup.Kind.KIND_GPU
    assert (group.count, list(group.gpus)) == (2, [0, 3])
    assert inner.HasField("dynamic_batching")
    (inp,) = inner.input
    (out,) = inner.output
    assert list(inp.dims) == [7]
    assert list(out.dims) == [1]
    assert out.data_type == DataType.TYPE_FP32
    assert inner.model_warmup[0].inputs[inp.name].zero_data
    params = _params(inner)
    if kind == "lightgbm":
        assert inner.backend == "fil"
        assert (inp.name, out.name) == (FIL_INPUT_NAME, FIL_OUTPUT_NAME)  # fixed by FIL
        assert params["model_type"] == "lightgbm"
        # one probability per row: not class labels, not two probability columns
        assert params["output_class"] == "false"
        assert params["predict_proba"] == "false"
        assert params["storage_type"] == "AUTO"
        assert float(params["threshold"]) == 0.5
    else:
        assert inner.platform == "pytorch_libtorch"
        assert inner.default_model_filename == "model.pt"
        assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME)
        assert params["INFERENCE_MODE"] == "true"

    # <name>: the ensemble clients call, wire [9] -> probability [1], on every kind
    ensemble = configs[NAME]
    assert ensemble.platform == "ensemble"
    assert len(ensemble.instance_group) == 0
    assert not ensemble.HasField("dynamic_batching")
    assert len(ensemble.model_warmup) == 0
    (inp,) = ensemble.input
    (out,) = ensemble.output
    assert (inp.name, list(inp.dims)) == (INPUT_NAME, [9])
    assert (out.name, list(out.dims)) == (OUTPUT_NAME, [1])
    first, second = ensemble.ensemble_scheduling.step
    assert (first.model_name, first.model_version) == (wire_name, 1)
    assert dict(first.input_map) == {INPUT_NAME: INPUT_NAME}
    (tensor,) = first.output_map.values()
    assert dict(first.output_map) == {PREPROCESSED_NAME: tensor}
    assert (second.model_name, second.model_version) == (inner_name, 1)
    assert dict(second.input_map) == {inner.input[0].name: tensor}
    assert dict(second.output_map) == {inner.output[0].name: OUTPUT_NAME}
    assert model_io_names(kind=kind, target="gpu") == (INPUT_NAME, OUTPUT_NAME)
    assert model_io_names(kind=kind, target="cpu") == (INPUT_NAME, OUTPUT_NAME)


def test_fault_parameter_is_in_the_cpu_config() -> None:
    config = _proto(cpu_config(model_name=NAME, kind="lightgbm", wire_width=3, fault="sleep_ms=50"))
    assert _params(config)["lockgate_fault"] == "sleep_ms=50"
    config = _proto(
        cpu_config(model_name=NAME, kind="torch", wire_width=3, fault="error_rate=0.5,seed=2")
    )
    assert _params(config)["lockgate_fault"] == "error_rate=0.5,seed=2"


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        ("sleep=5", "keys"),
        ("sleep_ms=fast", "not a number"),
        ("sleep_ms=-1", "out of range"),
        ("error_rate=1.5", "out of range"),
        ("sleep_ms=1,sleep_ms=2", "each key once"),
    ],
)
def test_bad_fault_specs_are_refused(fault: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        parse_fault(fault)
    with pytest.raises(SpecError, match=match):
        cpu_config(model_name=NAME, kind="lightgbm", wire_width=3, fault=fault)


def test_parse_fault_values() -> None:
    assert parse_fault(None) == {}
    assert parse_fault("") == {}
    assert parse_fault("sleep_ms=80, error_rate=0.25 ,seed=7") == {
        "sleep_ms": 80,
        "error_rate": 0.25,
        "seed": 7,
    }


def test_parse_config_reads_the_structure_protobuf_validates() -> None:
    texts = gpu_config(model_name=NAME, kind="lightgbm", wire_width=6, n_features=5, gpus=(1,))
    text = texts[f"{NAME}-model"]
    parsed = parse_config(text)
    config = _proto(text)
    assert parsed["name"] == config.name
    assert parsed["backend"] == "fil"
    assert parsed["max_batch_size"] == 1024
    assert parsed["input"] == [{"name": "input__0", "data_type": "TYPE_FP32", "dims": [5]}]
    assert parsed["instance_group"] == [{"count": 1, "kind": "KIND_GPU", "gpus": [1]}]
    assert parsed["dynamic_batching"] == {"max_queue_delay_microseconds": 100}
    assert parsed["model_warmup"][0]["inputs"]["value"]["zero_data"] is True
    params = {p["key"]: p["value"]["string_value"] for p in parsed["parameters"]}
    assert params == _params(config)
    ensemble = parse_config(texts[NAME])
    steps = ensemble["ensemble_scheduling"]["step"]
    assert [step["model_name"] for step in steps] == [f"{NAME}-wire", f"{NAME}-model"]
    assert steps[1]["input_map"] == {"key": "input__0", "value": "preprocessed"}
    with pytest.raises(SpecError):
        parse_config("input [ { name: 'x' ")


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(SpecError, match="unknown"):
        cpu_config(model_name=NAME, kind="XG-Boost", wire_width=3)
    with pytest.raises(SpecError, match=r"no GPU serving path.*device='cpu'"):
        gpu_config(model_name=NAME, kind="sklearn", wire_width=3, n_features=3)
    with pytest.raises(SpecError, match="wire_width"):
        cpu_config(model_name=NAME, kind="torch", wire_width=0)
    with pytest.raises(SpecError, match="n_features"):
        gpu_config(model_name=NAME, kind="torch", wire_width=3, n_features=0)
    with pytest.raises(SpecError, match="max_batch_size"):
        gpu_config(model_name=NAME, kind="torch", wire_width=3, n_features=3, max_batch_size=0)
    with pytest.raises(SpecError, match="gpus"):
        gpu_config(model_name=NAME, kind="torch", wire_width=3, n_features=3, gpus=())
    with pytest.raises(SpecError, match="gpus"):
        gpu_config(model_name=NAME, kind="torch", wire_width=3, n_features=3, gpus=(0, 0))
    with pytest.raises(SpecError, match="<pipeline>-<version>"):
        cpu_config(model_name="no_version", kind="torch", wire_width=3)
    with pytest.raises(SpecError, match="target"):
        model_io_names(kind="torch", target="tpu")


def test_model_names_round_trip_and_refuse_ambiguity() -> None:
    assert triton_model_name("fraud_lgbm", "1df59d62da45") == NAME
    assert split_triton_model_name(NAME) == ("fraud_lgbm", "1df59d62da45")
    for pipeline, version in [("fraud-lgbm", "abc"), ("Fraud", "abc"), ("fraud", "../x")]:
        with pytest.raises(SpecError, match="cannot name a Triton model"):
            triton_model_name(pipeline, version)
    with pytest.raises(SpecError):
        split_triton_model_name("fraud-ab-c")


def test_model_source_is_deterministic_and_uses_dlpack() -> None:
    source = python_model_source()
    assert source == python_model_source()
    compile(source, "model.py", "exec")
    assert "from_dlpack" in source
    assert ".as_numpy(" not in source  # broken under numpy 2 in the stub
    assert "from lockgate.trainers import TrainedModel" in source  # one preprocessing
    assert "from lockgate.wire import" in source
    assert "self.model.predict(frame).reshape(-1, self.output_width)" in source  # any task
    assert "predict_proba" not in source


# the bytes of model.py as lockgate 0.1.0 wrote them before the subpackages (commit 8742583): every
# model folder is verified against what lockgate generates now, so a folder written then must verify
PRE_SUBPACKAGE_MODEL_PY_SHA256 = {
    None: "1c9b91b106a999f34b230bc392f25c238f24f61cacc820771ae620a9466250e1",
    "lightgbm": "1c9b91b106a999f34b230bc392f25c238f24f61cacc820771ae620a9466250e1",
    "torch": "1c9b91b106a999f34b230bc392f25c238f24f61cacc820771ae620a9466250e1",
    "sklearn": "4a730f7e6e0937b7f8759495082fd93c15e51f509462918752128bd5bdad6dc1",
}


@pytest.mark.parametrize("kind", list(PRE_SUBPACKAGE_MODEL_PY_SHA256))
def test_model_source_is_byte_identical_to_what_folders_written_before_hold(
    kind: str | None,
) -> None:
    source = python_model_source(kind)
    assert hashlib.sha256(source.encode()).hexdigest() == PRE_SUBPACKAGE_MODEL_PY_SHA256[kind]


def test_the_model_source_imports_resolve_through_the_old_module_paths() -> None:
    import lockgate.trainers
    import lockgate.wire

    assert lockgate.trainers.TrainedModel is TrainedModel
    assert lockgate.wire.WireDecoder.__module__ == "lockgate.serving.wire"


# ---- model.py against a stand-in for triton_python_backend_utils ------------------------------


class _FakeTensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name = name
        self.array = array

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self.array.__dlpack_device__()

    @staticmethod
    def from_dlpack(name: str, obj: Any) -> _FakeTensor:
        return _FakeTensor(name, np.from_dlpack(obj).copy())


class _FakeError:
    """pb_utils.TritonError: a message and a code (INTERNAL unless given)."""

    INTERNAL = "INTERNAL"
    INVALID_ARG = "INVALID_ARG"

    def __init__(self, message: str, code: str = "INTERNAL") -> None:
        self.message = message
        self.code = code


class _FakeResponse:
    def __init__(self, output_tensors: list[_FakeTensor], error: _FakeError | None = None):
        self.output_tensors = output_tensors
        self.error = error


def _fake_pb_utils() -> types.ModuleType:
    module = types.ModuleType("triton_python_backend_utils")
    module.Tensor = _FakeTensor  # type: ignore[attr-defined]
    module.TritonError = _FakeError  # type: ignore[attr-defined]
    module.InferenceResponse = _FakeResponse  # type: ignore[attr-defined]
    module.get_input_tensor_by_name = lambda request, name: request.get(name)  # type: ignore[attr-defined]
    return module


def _frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 40.0, n),
            "hour": rng.integers(0, 24, n).astype(float),
            "channel": rng.choice(["web", "pos", "atm"], n),
        }
    )
    frame["y"] = ((frame["amount"] > 90) ^ (rng.random(n) < 0.1)).astype(int)
    # labels of the other tasks, derived without drawing (the columns above stay as they were)
    frame["size"] = np.select(
        [frame["amount"] < 40, frame["amount"] > 110], ["small", "large"], default="medium"
    )
    frame["value"] = 0.5 * frame["amount"] + 2.0 * (frame["channel"] == "web") + frame["hour"]
    return frame


FEATURES = ["amount", "hour", "channel"]


def _served_model(
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    fault: str = "",
    output: str = "probability",
    task: str = "binary",
    config_width: int | None = None,
) -> tuple[Any, TrainedModel, pd.DataFrame, WireSchema]:
    frame = _frame()
    trainer = (
        LightGBMTrainer(seed=1, num_boost_round=10)
        if kind == "lightgbm"
        else TorchTrainer(seed=1, epochs=2)
    )
    label = {"binary": "y", "multiclass": "size", "regression": "value"}[task]
    model = trainer.fit(frame, features=FEATURES, label=label, task=task)  # type: ignore[arg-type]
    schema = WireSchema.from_frame(frame, FEATURES)
    version_dir = tmp_path / "m" / "1"
    version_dir.mkdir(parents=True)
    for name, data in model.files().items():
        (version_dir / name).write_bytes(data)
    (version_dir / WIRE_FILE).write_bytes(schema.to_json())
    (version_dir / "__pycache__").write_bytes(b"")
    if output == "probability":
        width = model.output_width if config_width is None else config_width
        text = cpu_config(
            model_name=NAME,
            kind=kind,
            wire_width=schema.width,
            task=task if config_width is None else "multiclass" if width > 1 else "binary",
            output_width=width,
            fault=fault or None,
        )
    else:
        n_features = model.preprocess(frame.head(1)).shape[1]
        text = gpu_config(
            model_name=NAME, kind=kind, wire_width=schema.width, n_features=n_features
        )[f"{NAME}-wire"]
    config = _proto(text)
    from google.protobuf.json_format import MessageToDict

    config_json = json.dumps(MessageToDict(config, preserving_proto_field_name=True))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # model.py replaces it
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # model.py sets a default in the process
    namespace: dict[str, Any] = {"__name__": "model"}
    exec(compile(python_model_source(), str(version_dir / "model.py"), "exec"), namespace)
    served = namespace["TritonPythonModel"]()
    served.initialize(
        {
            "model_config": config_json,
            "model_repository": str(tmp_path / "m"),
            "model_version": "1",
        }
    )
    return served, model, frame, schema


def _request(x: np.ndarray) -> dict[str, _FakeTensor]:
    return {INPUT_NAME: _FakeTensor(INPUT_NAME, np.ascontiguousarray(x, dtype=np.float32))}


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_py_batches_requests_and_isolates_bad_ones(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, model, frame, schema = _served_model(kind, tmp_path, monkeypatch)
    frame.loc[frame.index[1], "channel"] = "never seen"
    frame.loc[frame.index[2], "amount"] = np.nan
    x = encode(frame, schema)
    expected = model.predict_proba(frame)
    bad_shape = x[:2, :-1]
    infinite = x[:1].copy()
    infinite[0, 0] = np.inf
    not_a_code = x[:1].copy()
    not_a_code[0, 2] = 0.5
    responses = served.execute(
        [
            _request(x[:5]),
            _request(bad_shape),
            _request(x[5:6]),
            _request(infinite),
            {},
            _request(not_a_code),
        ]
    )
    assert len(responses) == 6
    ok = [responses[0], responses[2]]
    for response, rows in zip(ok, [slice(0, 5), slice(5, 6)], strict=True):
        assert response.error is None
        (tensor,) = response.output_tensors
        assert tensor.name == OUTPUT_NAME
        assert tensor.array.dtype == np.float32
        assert tensor.array.shape == (rows.stop - rows.start, 1)
        np.testing.assert_allclose(tensor.array[:, 0], expected[rows], rtol=0, atol=1e-7)
    assert "shape [2, 2]" in responses[1].error.message
    assert "lockgate.wire.encode" in responses[1].error.message
    assert "infinite" in responses[3].error.message
    assert "no input 'INPUT__0'" in responses[4].error.message
    assert "no code24" in responses[5].error.message
    # the client's bad input is INVALID_ARG (HTTP 400 from Triton), never an internal error
    assert {responses[i].error.code for i in (1, 3, 4, 5)} == {"INVALID_ARG"}
    (warmup,) = served.execute([_request(np.zeros((1, schema.width)))])
    assert warmup.error is None  # zeros: numeric 0, unknown category


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_py_as_the_gpu_wire_step_returns_the_preprocessed_matrix(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, model, frame, schema = _served_model(kind, tmp_path, monkeypatch, output="preprocessed")
    rows = frame.head(7)
    (response,) = served.execute([_request(encode(rows, schema))])
    assert response.error is None
    (tensor,) = response.output_tensors
    assert tensor.name == PREPROCESSED_NAME
    if kind == "lightgbm":
        np.testing.assert_array_equal(tensor.array, model.preprocess(rows))
    else:  # standardised from float32(amount): float32 rounding (see lockgate.serving.wire)
        np.testing.assert_allclose(tensor.array, model.preprocess(rows), rtol=0, atol=1e-6)


def test_model_py_refuses_a_vocabulary_with_a_code24_collision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.serving.test_wire import _collision

    first, second = _collision()
    assert code24(first) == code24(second)
    frame = _frame()
    frame["channel"] = np.where(np.arange(len(frame)) % 2 == 0, first, second)
    model = LightGBMTrainer(seed=1, num_boost_round=3).fit(frame, features=FEATURES, label="y")
    folder = tmp_path / "m" / "1"
    folder.mkdir(parents=True)
    for name, data in model.files().items():
        (folder / name).write_bytes(data)
    (folder / WIRE_FILE).write_bytes(WireSchema.from_frame(frame, FEATURES).to_json())
    config = _proto(cpu_config(model_name=NAME, kind="lightgbm", wire_width=3))
    from google.protobuf.json_format import MessageToDict

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    namespace: dict[str, Any] = {"__name__": "model"}
    exec(compile(python_model_source(), str(folder / "model.py"), "exec"), namespace)
    with pytest.raises(SchemaError, match="share the wire code24"):
        namespace["TritonPythonModel"]().initialize(
            {
                "model_config": json.dumps(MessageToDict(config, preserving_proto_field_name=True)),
                "model_repository": str(tmp_path / "m"),
                "model_version": "1",
            }
        )


def test_model_py_fault_drills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served, _, frame, schema = _served_model(
        "lightgbm", tmp_path / "a", monkeypatch, fault="sleep_ms=40"
    )
    x = encode(frame.head(3), schema)
    zeros = np.zeros((1, schema.width))
    started = time.perf_counter()
    (warmup,) = served.execute([_request(zeros)])  # Triton's warmup: no drill
    assert time.perf_counter() - started < 0.04
    assert warmup.error is None
    started = time.perf_counter()
    (response,) = served.execute([_request(x)])
    assert time.perf_counter() - started >= 0.04
    assert response.error is None
    served, *_ = _served_model("lightgbm", tmp_path / "b", monkeypatch, fault="error_rate=1.0")
    (warmup,) = served.execute([_request(zeros)])
    assert warmup.error is None
    (failed,) = served.execute([_request(x)])
    assert "lockgate_fault injected an error" in failed.error.message
    served, *_ = _served_model(
        "lightgbm", tmp_path / "c", monkeypatch, fault="error_rate=0.5,seed=3"
    )
    served.execute([_request(x[:1])])  # warmup
    responses = served.execute([_request(x[i : i + 1]) for i in range(3)] * 20)
    errors = [r for r in responses if r.error is not None]
    assert 10 < len(errors) < 50
    assert all("lockgate_fault injected an error" in r.error.message for r in errors)
    assert all(r.output_tensors for r in responses if r.error is None)


# ---- tasks: output dims per task ----------------------------------------------------------------

TASK_WIDTHS = [("binary", 1), ("regression", 1), ("multiclass", 4)]


@pytest.mark.parametrize(("task", "width"), TASK_WIDTHS)
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_cpu_config_output_dims_follow_the_task(kind: str, task: str, width: int) -> None:
    text = cpu_config(model_name=NAME, kind=kind, wire_width=12, task=task, output_width=width)
    (out,) = _proto(text).output
    assert (out.name, out.data_type, list(out.dims)) == (OUTPUT_NAME, DataType.TYPE_FP32, [width])
    parsed = parse_config(text)
    assert parsed["output"] == [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [width]}]
    assert parsed["input"][0]["dims"] == [12]  # the wire is the same for every task
    if task != "multiclass":  # one value per row: the same text as a binary model's
        assert text == cpu_config(model_name=NAME, kind=kind, wire_width=12)


@pytest.mark.parametrize(("task", "width"), TASK_WIDTHS)
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_gpu_config_output_dims_follow_the_task(kind: str, task: str, width: int) -> None:
    texts = gpu_config(
        model_name=NAME, kind=kind, wire_width=9, n_features=7, task=task, output_width=width
    )
    wire_name, inner_name = gpu_component_names(NAME)
    parsed = {name: parse_config(text) for name, text in texts.items()}
    for text in texts.values():
        _proto(text)  # valid against Triton's schema
    assert parsed[wire_name]["output"][0]["dims"] == [7]  # preprocessing does not change
    assert parsed[inner_name]["output"][0]["dims"] == [width]
    assert parsed[NAME]["output"] == [
        {"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [width]}
    ]
    params = _params(_proto(texts[inner_name]))
    if kind == "lightgbm":
        # multiclass: FIL returns the k class probabilities; otherwise one value per row
        assert params["predict_proba"] == ("true" if task == "multiclass" else "false")
        assert params["output_class"] == "false"
    else:
        assert parsed[inner_name]["platform"] == "pytorch_libtorch"
    if task == "binary":
        assert texts == gpu_config(model_name=NAME, kind=kind, wire_width=9, n_features=7)


@pytest.mark.parametrize(
    ("task", "width", "match"),
    [
        ("multiclass", 1, r"output_width=1 for task='multiclass'.*at least 2"),
        ("regression", 3, r"output_width=3 for task='regression'.*output_width=1"),
        ("binary", 2, r"output_width=2 for task='binary'"),
        ("binary", 0, r"output_width=0 is invalid"),
        ("ranking", 1, r"task 'ranking' is unknown"),
    ],
)
def test_task_and_output_width_must_agree(task: str, width: int, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        cpu_config(model_name=NAME, kind="lightgbm", wire_width=3, task=task, output_width=width)
    with pytest.raises(SpecError, match=match):
        gpu_config(
            model_name=NAME,
            kind="torch",
            wire_width=3,
            n_features=3,
            task=task,
            output_width=width,
        )


@pytest.mark.parametrize("task", ["multiclass", "regression"])
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_py_serves_predict_for_every_task(
    kind: str, task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, model, frame, schema = _served_model(kind, tmp_path, monkeypatch, task=task)
    assert model.task == task
    width = model.output_width
    assert width == (3 if task == "multiclass" else 1)
    rows = frame.head(9)
    x = encode(rows, schema)
    first, second = served.execute([_request(x[:4]), _request(x[4:])])
    expected = model.predict(rows).reshape(len(rows), width)
    for response, part in ((first, slice(0, 4)), (second, slice(4, 9))):
        assert response.error is None
        (tensor,) = response.output_tensors
        assert tensor.name == OUTPUT_NAME
        assert tensor.array.dtype == np.float32
        assert tensor.array.shape == (part.stop - part.start, width)
        # float32 rounding: relative for values in label units
        np.testing.assert_allclose(tensor.array, expected[part], rtol=1e-6, atol=1e-7)
    if task == "multiclass":
        assert model.classes == ("large", "medium", "small")
        np.testing.assert_allclose(first.output_tensors[0].array.sum(axis=1), 1.0, atol=1e-6)


def test_model_py_refuses_a_config_whose_output_width_is_not_the_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ValueError, match=r"declares OUTPUT__0 \[1\] but the multiclass model gives"
    ):
        _served_model("lightgbm", tmp_path, monkeypatch, task="multiclass", config_width=1)
