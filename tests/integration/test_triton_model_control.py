"""Only lockgate loads models: the tritonserver lockgate starts restricts its model-repository
API (load, unload, index) over HTTP and gRPC to calls with lockgate's secret header, while
inference, health and metadata stay open (issue 13, item 2). A real tritonserver from the
nvidia-pytriton wheel, one tiny python-backend model.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockgate.serving.triton_server import CONTROL_HEADER, LocalTritonServer

MODEL = "toy-v1"

_CONFIG = """name: "toy-v1"
backend: "python"
max_batch_size: 0
input [{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ -1 ] }]
output [{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ -1 ] }]
instance_group [{ kind: KIND_CPU count: 1 }]
"""

_MODEL_PY = """import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[]) for _ in requests]
"""


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[LocalTritonServer]:
    repo = tmp_path / "repo"
    (repo / MODEL / "1").mkdir(parents=True)
    (repo / MODEL / "config.pbtxt").write_text(_CONFIG)
    (repo / MODEL / "1" / "model.py").write_text(_MODEL_PY)
    with LocalTritonServer(repo_dir=str(repo), work_dir=str(tmp_path / "work")) as server:
        yield server


def test_only_lockgate_loads_and_unloads_models(triton: LocalTritonServer) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    assert stat.S_IMODE(triton.control_file.stat().st_mode) == 0o600
    secret = triton.control_headers()[CONTROL_HEADER]
    assert secret not in triton.log_file.read_text()  # the command line is logged masked
    http = httpclient.InferenceServerClient(url=triton.url)
    grpc = grpcclient.InferenceServerClient(url=f"127.0.0.1:{triton.grpc_port}")
    try:
        for headers in (None, {CONTROL_HEADER: "guess"}):
            with pytest.raises(InferenceServerException, match="restricted"):
                http.load_model(MODEL, headers=headers)
            with pytest.raises(InferenceServerException, match="restricted"):
                http.get_model_repository_index(headers=headers)
        with pytest.raises(InferenceServerException, match="restricted"):
            grpc.load_model(MODEL)
        assert not http.is_model_ready(MODEL)  # health stays open; nothing was loaded

        triton.load(MODEL)  # lockgate's own load sends the header
        assert triton.loaded() == [MODEL]
        assert http.is_model_ready(MODEL)
        assert http.get_model_metadata(MODEL)["name"] == MODEL  # metadata stays open

        with pytest.raises(InferenceServerException, match="restricted"):
            http.unload_model(MODEL)
        assert http.is_model_ready(MODEL)
        triton.unload(MODEL)
        assert triton.loaded() == []
    finally:
        http.close()
        grpc.close()
