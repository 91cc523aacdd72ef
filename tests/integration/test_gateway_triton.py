"""The gateway in front of a real tritonserver (the nvidia-pytriton wheel's binary, CPU).

Two python-backend models side by side, ``fraud_lgbm-v1`` (row mean) and ``fraud_lgbm-v2`` (row
mean + 0.1), DLPack in and out (the numpy bridge of the stub is broken under numpy 2). The
gateway runs as a subprocess (GatewayServer); clients are unchanged ``tritonclient.http``.
A real LightGBM ``churn`` version, written by lockgate into the same repository, is called with
named features by the README's own ``tritonclient`` and ``curl`` examples.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as th
import tritonclient.http.aio as tha
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._common import CONFIG  # the python-backend model config of the benchmarks
from lockgate.gateway.predlog import read_prediction_log
from lockgate.gateway.process import GatewayServer
from lockgate.gateway.routing import traffic_fraction
from lockgate.gateway.upstream import HttpUpstream
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.serving.model_repository import load_version, write_model_version
from lockgate.serving.triton_server import LocalTritonServer
from lockgate.serving.wire import WireSchema, encode, wire_schema_for_version
from lockgate.training import LightGBMTrainer, TrainedModel

from .fitted import store_fitted

MODEL = "fraud_lgbm"
WIDTH = 6

MODEL_PY = textwrap.dedent(
    """\
    import time

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            self.offset = np.float32({offset})

        def execute(self, requests):
            time.sleep({sleep})
            responses = []
            for request in requests:
                x = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, "INPUT__0"))
                y = np.ascontiguousarray(x.mean(axis=1, keepdims=True) + self.offset)
                out = pb_utils.Tensor.from_dlpack("OUTPUT__0", y.astype(np.float32))
                responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            return responses
    """
)


def write_model(repo: Path, name: str, offset: float, sleep_s: float = 0.0) -> None:
    folder = repo / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(CONFIG.format(width=WIDTH))
    (folder / "1" / "model.py").write_text(MODEL_PY.format(offset=offset, sleep=sleep_s))


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTritonServer]:
    root = tmp_path_factory.mktemp("triton")
    repo = root / "repo"
    write_model(repo, f"{MODEL}-v1", 0.0)
    write_model(repo, f"{MODEL}-v2", 0.1)
    write_model(repo, f"{MODEL}-v3", 0.2, sleep_s=0.01)  # 10 ms per execute: calls overlap
    server = LocalTritonServer(repo_dir=str(repo), work_dir=str(root / "work"))
    server.start()
    try:
        server.load(f"{MODEL}-v1")
        server.load(f"{MODEL}-v2")
        server.load(f"{MODEL}-v3")
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(tmp_path: Path, triton: LocalTritonServer) -> Iterator[GatewayServer]:
    server = GatewayServer(
        state_dir=str(tmp_path / "gw"),
        log_dir=str(tmp_path / "log"),
        upstream_url=triton.url,
        model_repository=triton.repo_dir,  # where lockgate writes versions (and wire.json)
    )
    with server:
        yield server


def _infer(
    client: th.InferenceServerClient, model: str, x: np.ndarray, *, binary: bool, **kw: object
) -> th.InferResult:
    inp = th.InferInput("INPUT__0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = th.InferRequestedOutput("OUTPUT__0", binary_data=binary)
    return client.infer(model, [inp], outputs=[out], **kw)  # type: ignore[arg-type]


def test_gateway_answers_exactly_like_triton(
    gateway: GatewayServer, triton: LocalTritonServer
) -> None:
    gateway.set_route(MODEL, {"mode": "single", "champion": "v1"})
    direct = th.InferenceServerClient(triton.url)
    proxied = th.InferenceServerClient(gateway.host_port)
    try:
        assert proxied.is_server_live()
        assert proxied.is_model_ready(MODEL)
        meta = proxied.get_model_metadata(MODEL)
        assert meta["name"] == MODEL
        assert meta["inputs"][0]["shape"] == [-1, WIDTH]
        rng = np.random.default_rng(3)
        for i in range(30):
            x = rng.normal(size=(int(rng.integers(1, 9)), WIDTH)).astype(np.float32)
            binary = i % 2 == 0
            for version in ("v1", "v2"):
                want = _infer(direct, f"{MODEL}-{version}", x, binary=binary)
                got = _infer(
                    proxied, MODEL, x, binary=binary, model_version=version, request_id=f"r{i}"
                )
                np.testing.assert_array_equal(got.as_numpy("OUTPUT__0"), want.as_numpy("OUTPUT__0"))
                response = got.get_response()
                assert response["model_name"] == MODEL
                assert response["model_version"] == version
                assert response["id"] == f"r{i}"
                assert len(response["parameters"]["lockgate_trace_id"]) == 32
            routed = _infer(proxied, MODEL, x, binary=binary)
            np.testing.assert_array_equal(
                routed.as_numpy("OUTPUT__0"),
                _infer(direct, f"{MODEL}-v1", x, binary=binary).as_numpy("OUTPUT__0"),
            )
    finally:
        direct.close()
        proxied.close()
    log = read_prediction_log(gateway.log_dir, MODEL)
    assert len(log) == 90
    assert set(log.status) == {200}
    row = log.iloc[-1]
    np.testing.assert_allclose(
        np.stack(row.outputs), np.stack(row.inputs).mean(axis=1, keepdims=True), atol=1e-6
    )


def test_traffic_split_and_trace_ids_over_real_triton(gateway: GatewayServer) -> None:
    gateway.set_route(
        MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.3}
    )
    traces = [f"split-{i}" for i in range(2000)]
    x = np.full((1, WIDTH), 0.5, np.float32)
    tensor = {"name": "INPUT__0", "datatype": "FP32", "shape": [1, WIDTH], "data": x.tolist()}
    body = json.dumps({"inputs": [tensor]}).encode()

    async def load() -> list[tuple[str, str, float]]:
        up = HttpUpstream(gateway.url, max_connections=16)
        sem = asyncio.Semaphore(16)

        async def one(trace: str) -> tuple[str, str, float]:
            async with sem:
                r = await up.request(
                    "POST",
                    f"/v2/models/{MODEL}/infer",
                    body=body,
                    headers={"x-lockgate-trace-id": trace},
                )
            assert r.status == 200, r.body
            out = json.loads(r.body)
            assert out["parameters"]["lockgate_trace_id"] == trace
            return (
                r.headers["x-lockgate-trace-id"],
                out["model_version"],
                out["outputs"][0]["data"][0],
            )

        try:
            return await asyncio.gather(*[one(t) for t in traces])
        finally:
            await up.aclose()

    results = asyncio.run(load())
    assert [r[0] for r in results] == traces
    key = bytes.fromhex((Path(gateway.state_dir) / "routing.key").read_text())  # its secret
    for trace, version, value in results:
        expected = "v2" if traffic_fraction(model=MODEL, trace_id=trace, key=key) < 0.3 else "v1"
        assert version == expected
        assert value == pytest.approx(0.5 + (0.1 if version == "v2" else 0.0), abs=1e-6)
    share = Counter(v for _, v, _ in results)["v2"] / len(results)
    # the routing key is random per gateway, so the share is a binomial sample: 4 standard
    # deviations (0.041 at 2,000 traces) keeps a fair hash passing but for 1 run in ~16,000
    # (0.02 failed about 1 run in 20); every trace's version is checked exactly above
    assert abs(share - 0.3) <= 4 * (0.3 * 0.7 / len(results)) ** 0.5
    stats = gateway.stats(MODEL)
    assert stats["versions"]["v2"]["requests"] == Counter(v for _, v, _ in results)["v2"]
    assert stats["versions"]["v1"]["errors"] == stats["versions"]["v2"]["errors"] == 0
    assert stats["versions"]["v1"]["p99_ms"] is not None


def test_shadow_against_real_triton(gateway: GatewayServer) -> None:
    gateway.set_route(
        MODEL, {"mode": "shadow", "champion": "v1", "challenger": "v2", "shadow_fraction": 1.0}
    )
    client = th.InferenceServerClient(gateway.host_port)
    try:
        x = np.linspace(0, 1, 4 * WIDTH, dtype=np.float32).reshape(4, WIDTH)
        for _ in range(20):
            res = _infer(client, MODEL, x, binary=True)
            assert res.get_response()["model_version"] == "v1"
            np.testing.assert_allclose(
                res.as_numpy("OUTPUT__0"), x.mean(axis=1, keepdims=True), atol=1e-6
            )
    finally:
        client.close()
    for _ in range(100):
        stats = gateway.stats(MODEL)["versions"]["v2"]
        if stats["shadow_requests"] == 20:
            break
        time.sleep(0.05)
    assert stats["shadow_requests"] == 20
    assert stats["shadow_mean_abs_diff"] == pytest.approx(0.1, abs=1e-5)


def test_concurrent_tritonclient_requests_are_coalesced_and_answered_exactly(
    gateway: GatewayServer, triton: LocalTritonServer
) -> None:
    gateway.set_route(MODEL, {"mode": "single", "champion": "v3"})
    rng = np.random.default_rng(11)
    xs = [rng.normal(size=(int(rng.integers(1, 5)), WIDTH)).astype(np.float32) for _ in range(96)]
    direct = th.InferenceServerClient(triton.url)
    try:
        want = [_infer(direct, f"{MODEL}-v3", x, binary=True).as_numpy("OUTPUT__0") for x in xs]
    finally:
        direct.close()

    async def send_all() -> list[Any]:
        client = tha.InferenceServerClient(gateway.host_port)
        try:
            calls = []
            for i, x in enumerate(xs):
                binary = i % 2 == 0
                inp = tha.InferInput("INPUT__0", list(x.shape), "FP32")
                inp.set_data_from_numpy(x, binary_data=binary)
                out = tha.InferRequestedOutput("OUTPUT__0", binary_data=binary)
                calls.append(
                    client.infer(
                        MODEL,
                        [inp],
                        outputs=[out],
                        request_id=f"c{i}",
                        headers={"x-lockgate-trace-id": f"coalesce-{i}"},
                    )
                )
            return list(await asyncio.gather(*calls))
        finally:
            await client.close()

    got = asyncio.run(send_all())
    for i, (result, expected) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), expected)
        response = result.get_response()
        assert response["id"] == f"c{i}"
        assert (response["model_name"], response["model_version"]) == (MODEL, "v3")
        assert response["parameters"]["lockgate_trace_id"] == f"coalesce-{i}"
    metrics = gateway.metrics()
    merged = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "lockgate_gateway_coalesced_requests_total"
        and sample.labels["version"] == "v3"
    ]
    assert len(merged) == 1
    assert merged[0] > 24  # most requests went up inside merged calls
    log = read_prediction_log(gateway.log_dir, MODEL).set_index("trace_id")
    assert len(log) == len(xs)
    for i, x in enumerate(xs):
        np.testing.assert_array_equal(np.stack(log.loc[f"coalesce-{i}"].inputs), x)
        np.testing.assert_array_equal(np.stack(log.loc[f"coalesce-{i}"].outputs), want[i])


# ---- named features: the README's examples against a real LightGBM version -----------------

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
CHURN_FEATURES = ["tenure_months", "monthly_spend", "support_calls_30d", "plan"]
SNAPSHOT = "c" * 64


def readme_example(language: str) -> str:
    """The code block of ``language`` in the README's "Calling a served model" section."""
    section = README.split("## Calling a served model\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert block is not None, f"README has no {language} example under 'Calling a served model'"
    return block.group(1)


def churn_frame(n: int, seed: int) -> pd.DataFrame:
    """Rows like ``lockgate init``'s churn data: int64, float64 (NaN missing), object."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure_months": rng.integers(1, 72, n),
            "monthly_spend": np.round(rng.gamma(2.0, 30.0, n), 2),
            "support_calls_30d": rng.poisson(1.5, n),
            "plan": rng.choice(["basic", "plus", "pro"], n).astype(object),
        }
    )
    frame.loc[::17, "monthly_spend"] = np.nan
    score = frame["support_calls_30d"] - frame["tenure_months"] / 12 + (frame["plan"] == "basic")
    frame["churned"] = (score + rng.normal(0, 1, n) > 0).astype(int)
    return frame


@pytest.fixture(scope="module")
def churn(
    triton: LocalTritonServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, TrainedModel]:
    """A LightGBM churn version in a real registry, written and loaded by lockgate."""
    registry = LocalArtifactRegistry(root=str(tmp_path_factory.mktemp("churn") / "artifacts"))
    frame = churn_frame(1200, seed=1)
    trainer = LightGBMTrainer(seed=1, num_boost_round=20)
    version, model = store_fitted(
        registry,
        "churn",
        trainer,
        frame,
        snapshot=SNAPSHOT,
        features=CHURN_FEATURES,
        label="churned",
    )
    assert triton.repo_dir is not None
    write_model_version(registry, triton.repo_dir, pipeline="churn", version=version)
    load_version(triton=triton, registry=registry, pipeline="churn", version=version)
    schema = wire_schema_for_version(registry, "churn", version)
    assert [c.kind for c in schema.columns] == ["numeric", "numeric", "numeric", "categorical"]
    return version, model


def test_readme_tritonclient_example_answers_what_the_model_predicts(
    gateway: GatewayServer, churn: tuple[str, TrainedModel]
) -> None:
    version, model = churn
    gateway.set_route("churn", {"mode": "single", "champion": version})
    code = readme_example("python")
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    rows = churn_frame(40, seed=9)[CHURN_FEATURES]
    rows.loc[3, "plan"] = "enterprise"  # a plan the model never saw
    namespace: dict[str, Any] = {"rows": rows}
    exec(compile(code.replace("127.0.0.1:8080", gateway.host_port), "README.md", "exec"), namespace)
    scores = namespace["scores"]
    assert scores.shape == (40, 1)
    np.testing.assert_array_equal(scores[:, 0], model.predict(rows).astype(np.float32))
    meta = json.loads(
        urllib.request.build_opener(urllib.request.ProxyHandler({}))
        .open(f"{gateway.url}/v2/models/churn")
        .read()
    )
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("tenure_months", "FP32"),
        ("monthly_spend", "FP32"),
        ("support_calls_30d", "FP32"),
        ("plan", "BYTES"),
    ]
    gateway.roll_log()
    log = read_prediction_log(gateway.log_dir, "churn")  # the wire rows, as drift reads them
    schema = [(c, "categorical" if c == "plan" else "numeric") for c in CHURN_FEATURES]
    want = encode(rows, WireSchema.of(schema))
    np.testing.assert_array_equal(np.stack(log.inputs.iloc[-1]), want)


def test_readme_curl_example_answers_what_the_model_predicts(
    gateway: GatewayServer, churn: tuple[str, TrainedModel]
) -> None:
    version, model = churn
    gateway.set_route("churn", {"mode": "single", "champion": version})
    command = readme_example("bash").replace("127.0.0.1:8080", gateway.host_port)
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    if shutil.which("curl"):  # the exact command line of the README
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, env=env, timeout=60, check=True
        )
        answer = json.loads(done.stdout)
    else:  # the same request without curl
        payload = re.search(r"-d '(.*)'", command, re.S)
        assert payload is not None
        url = re.search(r"(http://\S+/infer)", command)
        assert url is not None
        request = urllib.request.Request(url.group(1), data=payload.group(1).encode())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        answer = json.loads(opener.open(request).read())
    rows = pd.DataFrame(
        {
            "tenure_months": [14, 3],
            "monthly_spend": [59.9, np.nan],
            "support_calls_30d": [0, 4],
            "plan": ["pro", None],
        }
    )
    assert answer["model_name"] == "churn"
    assert answer["model_version"] == version
    got = np.asarray(answer["outputs"][0]["data"], dtype=np.float32)
    np.testing.assert_array_equal(got, model.predict(rows).astype(np.float32))


# ---- hardening: hostile names, bad codes and bad headers never reach Triton ------------------


def _post(
    url: str, target: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request with the target sent exactly as given (percent escapes and all)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("POST", target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_smuggling_model_names_never_reach_triton(gateway: GatewayServer) -> None:
    gateway.set_route(MODEL, {"mode": "single", "champion": "v1"})
    x = np.full((1, WIDTH), 0.5, np.float32)
    tensor = {"name": "INPUT__0", "datatype": "FP32", "shape": [1, WIDTH], "data": x.tolist()}
    body = json.dumps({"inputs": [tensor]}).encode()
    names = [
        f"{MODEL}-v1%0d%0aX-Smuggled:%201",
        f"{MODEL}-v1%20HTTP/1.1%0d%0aHost:%20x%0d%0a%0d%0aGET%20",
        f"{MODEL}%0a",
        "fraud%E2%82%AC",
    ]

    async def load() -> list[tuple[str, int, bytes]]:
        async def one(target: str) -> tuple[str, int, bytes]:
            status, out = await asyncio.to_thread(_post, gateway.url, target, body)
            return target, status, out

        hostile = [f"/v2/models/{n}/versions/v1/infer" for n in names for _ in range(10)]
        normal = [f"/v2/models/{MODEL}/infer"] * 20
        return list(await asyncio.gather(*[one(t) for t in hostile + normal]))

    results = asyncio.run(load())
    for target, status, out in results:
        if target == f"/v2/models/{MODEL}/infer":
            assert status == 200, out
            assert json.loads(out)["outputs"][0]["data"] == [pytest.approx(0.5)]
        else:
            assert status == 400, (target, status, out)
            assert "is invalid; use 1-128 characters" in json.loads(out)["error"]
    assert "Traceback" not in gateway.log_tail(200)


def test_a_bad_categorical_code_is_a_client_error_not_a_triton_500(
    gateway: GatewayServer, churn: tuple[str, TrainedModel]
) -> None:
    version, model = churn
    gateway.set_route("churn", {"mode": "single", "champion": version})
    rows = churn_frame(4, seed=3)[CHURN_FEATURES]
    schema = WireSchema.of(
        [(c, "categorical" if c == "plan" else "numeric") for c in CHURN_FEATURES]
    )
    x = encode(rows, schema)
    good = {"name": "INPUT__0", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
    status, out = _post(
        gateway.url, "/v2/models/churn/infer", json.dumps({"inputs": [good]}).encode()
    )
    assert status == 200, out
    np.testing.assert_array_equal(
        np.asarray(json.loads(out)["outputs"][0]["data"], np.float32),
        model.predict(rows).astype(np.float32),
    )
    x[2, 3] = 0.5  # the model's own category code, not code24 of the string
    bad = {**good, "data": x.tolist()}
    for i in range(20):
        status, out = _post(
            gateway.url,
            "/v2/models/churn/infer",
            json.dumps({"inputs": [bad]}).encode(),
            {"x-lockgate-trace-id": f"bad-code-{i}"},
        )
        assert status == 400, out
        error = json.loads(out)["error"]
        assert "column 3 ('plan')" in error, error
        assert "row 2 holds 0.5" in error, error
    counted = gateway.stats("churn")["versions"][version]
    assert (counted["errors"], counted["schema_violations"]) == (0, 0), counted


def test_an_inference_header_length_python_reads_but_triton_does_not_is_a_400(
    gateway: GatewayServer,
) -> None:
    gateway.set_route(MODEL, {"mode": "single", "champion": "v1"})
    x = np.full((2, WIDTH), 0.25, np.float32)
    raw = x.tobytes()
    head = {
        "id": "",
        "inputs": [
            {
                "name": "INPUT__0",
                "datatype": "FP32",
                "shape": [2, WIDTH],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
    }
    head["id"] = "p" * (245 - len(json.dumps(head)))
    header = json.dumps(head).encode()
    assert len(header) == 245
    status, out = _post(
        gateway.url,
        f"/v2/models/{MODEL}/infer",
        header + raw,
        {"Inference-Header-Content-Length": "245"},
    )
    assert status == 200, out
    status, out = _post(  # int("24_5") == 245 in Python; Triton refuses it with a 500
        gateway.url,
        f"/v2/models/{MODEL}/infer",
        header + raw,
        {"Inference-Header-Content-Length": "24_5"},
    )
    assert status == 400, out
    error = json.loads(out)["error"]
    assert "header Inference-Header-Content-Length='24_5' is invalid" in error, error
    counted = gateway.stats(MODEL)["versions"]["v1"]
    assert (counted["errors"], counted["schema_violations"]) == (0, 0), counted
