"""The gateway's own logic, against a fake KServe v2 upstream.

Most tests call the ASGI app directly (no sockets) with an in-process upstream that calls the fake
server's ASGI app, so 10k requests take seconds. The HTTP tests run the fake upstream under
uvicorn in a thread and the gateway as a real subprocess (GatewayServer), including a kill -9 in
the middle of a load.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from lockgate.gateway.app import GatewayApp
from lockgate.gateway.errors import GatewayError, RouteError, UpstreamError
from lockgate.gateway.factory import create_app
from lockgate.gateway.named_inputs import FeatureContract, FeatureInputError
from lockgate.gateway.predlog import PredictionLog, read_prediction_log
from lockgate.gateway.predlog.records import encode_record as _encode_record
from lockgate.gateway.process import GatewayServer
from lockgate.gateway.routing import traffic_fraction
from lockgate.gateway.upstream import HttpUpstream, UpstreamResponse
from lockgate.serving.wire import WireSchema, encode

WIDTH = 4
MODEL = "fraud_lgbm"

# ---------------------------------------------------------------------------------------------
# fake KServe v2 upstream


@dataclass
class FakeModel:
    """One upstream model: output = row mean + offset."""

    offset: float = 0.0
    width: int = WIDTH
    fail_status: int | None = None
    delay_s: float = 0.0
    calls: int = 0
    poison: float | None = None  # a row holding this value makes the whole call fail (400)
    rows: list[int] = field(default_factory=list)  # rows per infer call
    pooled: bool = False  # answers one row for the whole call (the mean of all its rows)
    received: list[np.ndarray] = field(default_factory=list)  # INPUT__0 of each infer call


@dataclass
class FakeTriton:
    """A minimal KServe v2 server (JSON and binary tensors) as an ASGI app."""

    models: dict[str, FakeModel] = field(default_factory=dict)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        status, out_headers, out = await self.handle(scope["method"], scope["path"], headers, body)
        hdrs = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
        hdrs += [(k.encode(), v.encode()) for k, v in out_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": out})

    async def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = path.strip("/").split("/")
        if parts == ["v2", "health", "live"] or parts == ["v2", "health", "ready"]:
            return 200, {}, b""
        if len(parts) < 3 or parts[:2] != ["v2", "models"]:
            return 404, {}, b'{"error":"no such endpoint"}'
        model = self.models.get(parts[2])
        if model is None:
            msg = f"Request for unknown model: '{parts[2]}' is not found"
            return 404, {}, json.dumps({"error": msg}).encode()
        rest = parts[3:]
        if not rest:
            meta = {
                "name": parts[2],
                "versions": ["1"],
                "platform": "python",
                "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, model.width]}],
                "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 1]}],
            }
            return 200, {}, json.dumps(meta).encode()
        if rest == ["ready"]:
            return 200, {}, b""
        if rest == ["config"]:
            return 200, {}, json.dumps({"name": parts[2], "max_batch_size": 64}).encode()
        assert rest == ["infer"]
        assert method == "POST"
        model.calls += 1
        if model.delay_s:
            await asyncio.sleep(model.delay_s)
        if model.fail_status is not None:
            return model.fail_status, {}, b'{"error":"model exploded"}'
        hlen = int(headers.get("inference-header-content-length", len(body)))
        req = json.loads(body[:hlen])
        spec = req["inputs"][0]
        n, d = spec["shape"]
        if "binary_data_size" in spec.get("parameters", {}):
            x = np.frombuffer(body, "<f4", count=n * d, offset=hlen).reshape(n, d)
        else:
            x = np.asarray(spec["data"], dtype=np.float32).reshape(n, d)
        model.rows.append(n)
        model.received.append(x.copy())
        if model.poison is not None and (x == np.float32(model.poison)).any():
            return 400, {}, b'{"error":"row holds the poison value"}'
        y = (x.mean(axis=1, keepdims=True) + np.float32(model.offset)).astype(np.float32)
        if model.pooled:
            y = y.mean(axis=0, keepdims=True)
            n = 1
        binary = req.get("parameters", {}).get("binary_data_output", False) or any(
            o.get("parameters", {}).get("binary_data") for o in req.get("outputs", [])
        )
        out: dict[str, Any] = {"model_name": parts[2], "model_version": "1"}
        if "id" in req:
            out["id"] = req["id"]
        tensor: dict[str, Any] = {"name": "OUTPUT__0", "datatype": "FP32", "shape": [n, 1]}
        if binary:
            raw = y.tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            out["outputs"] = [tensor]
            head = json.dumps(out).encode()
            return 200, {"inference-header-content-length": str(len(head))}, head + raw
        tensor["data"] = y.ravel().tolist()
        out["outputs"] = [tensor]
        return 200, {}, json.dumps(out).encode()


class AsgiUpstream:
    """An Upstream that calls an ASGI app in-process (no sockets)."""

    def __init__(self, app: FakeTriton) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        try:
            status, out_headers, out = await asyncio.wait_for(
                self.app.handle(method, path, hdrs, body), timeout_s or 30.0
            )
        except TimeoutError:
            raise UpstreamError(f"fake upstream timed out on {path}", status=504) from None
        return UpstreamResponse(status, out_headers, out)

    async def aclose(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------
# helpers


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def version(self) -> str:
        return self.headers["x-lockgate-model-version"]

    @property
    def trace(self) -> str:
        return self.headers["x-lockgate-trace-id"]

    def outputs(self) -> np.ndarray:
        hlen = int(self.headers.get("inference-header-content-length", len(self.body)))
        header = json.loads(self.body[:hlen])
        out = header["outputs"][0]
        if "binary_data_size" in out.get("parameters", {}):
            return np.frombuffer(self.body, "<f4", offset=hlen).reshape(out["shape"])
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


ADMIN_TOKEN = "test-admin-token-0123456789"


async def call(
    app: GatewayApp,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    *,
    admin_auth: bool = True,
    inference_port: bool = False,
) -> Resp:
    """One request to the app; ``/admin`` paths go to the admin listener's app (``app.admin``)
    with the app's token and an actor, unless ``admin_auth`` is False (or ``inference_port``)."""
    target: Any = app
    if path.startswith("/admin") and not inference_port:
        target = app.admin
        if admin_auth:
            given = {k.lower() for k in headers or {}}
            extra = {"x-lockgate-actor": "test"}
            if app.admin_token and "authorization" not in given:
                extra["authorization"] = f"Bearer {app.admin_token}"
            headers = {**extra, **(headers or {})}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 0
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
            out_headers.update({k.decode(): v.decode() for k, v in msg["headers"]})
        else:
            chunks.append(msg.get("body", b""))

    await target(scope, receive, send)
    return Resp(status, out_headers, b"".join(chunks))


def json_request(x: np.ndarray, *, request_id: str | None = None) -> bytes:
    req: dict[str, Any] = {
        "inputs": [
            {"name": "INPUT__0", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
        ]
    }
    if request_id is not None:
        req["id"] = request_id
    return json.dumps(req).encode()


def binary_request(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = x.astype("<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT__0",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


ROW = np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32)


def fake_pair() -> FakeTriton:
    return FakeTriton({f"{MODEL}-v1": FakeModel(0.0), f"{MODEL}-v2": FakeModel(0.1)})


@contextlib.asynccontextmanager
async def running(tmp_path: Path, fake: FakeTriton, **kw: Any) -> AsyncIterator[GatewayApp]:
    kw.setdefault("durability", "fsync")
    kw.setdefault("admin_token", ADMIN_TOKEN)
    app = create_app(
        state_dir=tmp_path / "state", log_dir=tmp_path / "log", upstream=AsgiUpstream(fake), **kw
    )
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()


async def put_route(app: GatewayApp, route: Mapping[str, Any], name: str = MODEL) -> Resp:
    return await call(app, "PUT", f"/admin/routes/{name}", json.dumps(route).encode())


async def infer(
    app: GatewayApp, *, trace: str | None = None, x: np.ndarray = ROW, version: str | None = None
) -> Resp:
    headers = {"x-lockgate-trace-id": trace} if trace else {}
    path = (
        f"/v2/models/{MODEL}/versions/{version}/infer" if version else f"/v2/models/{MODEL}/infer"
    )
    return await call(app, "POST", path, json_request(x), headers)


async def gather_limited(coros: list[Any], limit: int = 200) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(coros), limit):
        out += await asyncio.gather(*coros[i : i + limit])
    return out


# ---------------------------------------------------------------------------------------------
# routing


def test_canary_split_is_within_two_points_over_10k_requests(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            r = await put_route(
                app, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.3}
            )
            assert r.status == 200, r.body
            responses = await gather_limited([infer(app) for _ in range(10_000)])
            assert all(x.status == 200 for x in responses)
            counts = Counter(x.version for x in responses)
            share = counts["v2"] / 10_000
            assert abs(share - 0.3) <= 0.02, counts
            # the answers really came from the version the header names
            for x in responses[:200]:
                expected = ROW.mean() + (0.1 if x.version == "v2" else 0.0)
                assert x.outputs()[0, 0] == pytest.approx(expected, abs=1e-6)
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert stats["versions"]["v2"]["requests"] == counts["v2"]
            assert stats["versions"]["v1"]["requests"] == counts["v1"]
            assert stats["versions"]["v2"]["role"] == "challenger"

    asyncio.run(scenario())


@pytest.mark.parametrize("weight", [0.01, 0.1, 0.5, 0.9])
def test_traffic_fraction_is_uniform(weight: float) -> None:
    traces = [uuid.uuid4().hex for _ in range(20_000)] + [f"req-{i}" for i in range(20_000)]
    share = np.mean([traffic_fraction(model=MODEL, trace_id=t) < weight for t in traces])
    assert abs(share - weight) <= 0.01


def test_routing_is_deterministic_per_trace_and_monotone_in_weight(tmp_path: Path) -> None:
    traces = [f"trace-{i}" for i in range(300)]

    async def versions(weight: float) -> dict[str, str]:
        async with running(tmp_path, fake_pair()) as app:
            route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": weight}
            assert (await put_route(app, route)).status == 200
            first = await asyncio.gather(*[infer(app, trace=t) for t in traces])
            again = await asyncio.gather(*[infer(app, trace=t) for t in traces])
            assert [r.version for r in first] == [r.version for r in again]
            assert [r.trace for r in first] == traces
            return {t: r.version for t, r in zip(traces, first, strict=True)}

    low = asyncio.run(versions(0.2))
    low_again = asyncio.run(versions(0.2))  # a fresh app (restart) routes the same way
    high = asyncio.run(versions(0.6))
    assert low == low_again
    key = bytes.fromhex((tmp_path / "state" / "routing.key").read_text())  # the gateway's secret
    for t in traces:
        expected = "v2" if traffic_fraction(model=MODEL, trace_id=t, key=key) < 0.2 else "v1"
        assert low[t] == expected
        if low[t] == "v2":  # raising the weight never moves a challenger trace back
            assert high[t] == "v2"
    assert sum(v == "v2" for v in high.values()) > sum(v == "v2" for v in low.values())


def test_shadow_never_changes_the_response_and_records_diffs(tmp_path: Path) -> None:
    fake = fake_pair()

    async def scenario() -> None:
        async with running(tmp_path, fake) as app:
            route = {"mode": "shadow", "champion": "v1", "challenger": "v2", "shadow_fraction": 1.0}
            assert (await put_route(app, route)).status == 200
            xs = [np.random.default_rng(i).random((2, WIDTH), dtype=np.float32) for i in range(50)]
            responses = await asyncio.gather(*[infer(app, x=x) for x in xs])
            await app.drain_shadow()
            for x, r in zip(xs, responses, strict=True):
                assert r.status == 200
                assert r.version == "v1"
                np.testing.assert_allclose(r.outputs(), x.mean(axis=1, keepdims=True), atol=1e-6)
            assert fake.models[f"{MODEL}-v2"].calls == 50
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            v2 = stats["versions"]["v2"]
            assert v2["requests"] == 0
            assert v2["shadow_requests"] == 50
            assert v2["shadow_mean_abs_diff"] == pytest.approx(0.1, abs=1e-5)
            assert stats["versions"]["v1"]["requests"] == 50
            metrics = (await call(app, "GET", "/metrics")).body.decode()
            assert 'lockgate_gateway_shadow_abs_diff_count{model="fraud_lgbm",version="v2"' in (
                metrics
            )
            # a slow, then failing challenger delays and fails nothing
            fake.models[f"{MODEL}-v2"].delay_s = 1.0
            t0 = time.perf_counter()
            slow = await asyncio.gather(*[infer(app) for _ in range(20)])
            assert time.perf_counter() - t0 < 0.8
            assert all(r.status == 200 and r.version == "v1" for r in slow)
            await app.drain_shadow()
            fake.models[f"{MODEL}-v2"].delay_s = 0.0
            fake.models[f"{MODEL}-v2"].fail_status = 500
            failing = await asyncio.gather(*[infer(app) for _ in range(20)])
            assert all(r.status == 200 and r.version == "v1" for r in failing)
            await app.drain_shadow()
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert stats["versions"]["v2"]["shadow"]["errors"] == 20
            assert stats["versions"]["v1"]["errors"] == 0

    asyncio.run(scenario())
    log = read_prediction_log(tmp_path / "log", MODEL)
    shadow = log[log.shadow]
    assert len(shadow) == 90
    assert set(shadow.version) == {"v2"}
    ok = shadow[shadow.status == 200]
    assert len(ok) == 70
    assert all(float(np.max(d)) == pytest.approx(0.1, abs=1e-5) for d in ok.shadow_abs_diff)
    champion = log[~log.shadow]
    assert len(champion) == 90
    assert set(champion.routed_by) == {"shadow"}
    assert set(ok.trace_id) <= set(champion.trace_id)


def test_shadow_fraction_mirrors_the_hashed_share(tmp_path: Path) -> None:
    fake = fake_pair()

    async def scenario() -> None:
        async with running(tmp_path, fake) as app:
            route = {
                "mode": "shadow",
                "champion": "v1",
                "challenger": "v2",
                "shadow_fraction": 0.25,
            }
            await put_route(app, route)
            traces = [f"t{i}" for i in range(2000)]
            await gather_limited([infer(app, trace=t) for t in traces])
            await app.drain_shadow()
            expected = sum(
                traffic_fraction(model=MODEL, trace_id=t, purpose="shadow", key=app.routing_key)
                < 0.25
                for t in traces
            )
            # a mirror beyond max_shadow_inflight is dropped and counted, never queued (under
            # load some are): every hashed request is either mirrored or counted as dropped
            dropped = app.stats.shadow_dropped.get(MODEL, 0)
            assert fake.models[f"{MODEL}-v2"].calls + dropped == expected
            assert dropped < expected / 2
            assert abs(expected / 2000 - 0.25) < 0.05  # binomial: sd 0.01 around the share

    asyncio.run(scenario())


def test_bluegreen_switch_is_one_admin_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            route = {
                "mode": "bluegreen",
                "champion": "v1",
                "challenger": "v2",
                "active": "champion",
            }
            assert (await put_route(app, route)).status == 200
            before = await asyncio.gather(*[infer(app) for _ in range(100)])
            assert {r.version for r in before} == {"v1"}
            assert (await put_route(app, {**route, "active": "challenger"})).status == 200
            after = await asyncio.gather(*[infer(app) for _ in range(100)])
            assert {r.version for r in after} == {"v2"}
            assert {r.json()["model_version"] for r in after} == {"v2"}
            meta = (await call(app, "GET", f"/v2/models/{MODEL}")).json()
            assert meta["name"] == MODEL

    asyncio.run(scenario())


def test_single_mode_and_pinned_versions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            assert (await put_route(app, {"mode": "single", "champion": "v1"})).status == 200
            assert {(await infer(app)).version for _ in range(20)} == {"v1"}
            pinned = await infer(app, version="v2")
            assert pinned.status == 200
            assert pinned.version == "v2"
            assert pinned.json()["model_version"] == "v2"
            missing = await infer(app, version="v9")
            assert missing.status == 404
            assert "fraud_lgbm-v9" in missing.json()["error"]
            unknown = await call(app, "POST", "/v2/models/nope/infer", json_request(ROW))
            assert unknown.status == 404
            assert "PUT /admin/routes/nope" in unknown.json()["error"]

    asyncio.run(scenario())
    log = read_prediction_log(tmp_path / "log", MODEL)
    assert set(log[log.routed_by == "pinned"].version) == {"v2", "v9"}


# ---------------------------------------------------------------------------------------------
# protocol: trace ids, binary tensors, metadata, errors


def test_trace_id_is_accepted_generated_and_returned(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            given = await call(
                app,
                "POST",
                f"/v2/models/{MODEL}/infer",
                json_request(ROW, request_id="req-7"),
                {"x-lockgate-trace-id": "abc-123"},
            )
            assert given.trace == "abc-123"
            assert given.json()["parameters"]["lockgate_trace_id"] == "abc-123"
            assert given.json()["id"] == "req-7"
            assert given.json()["model_name"] == MODEL
            rid = await call(
                app, "POST", f"/v2/models/{MODEL}/infer", json_request(ROW), {"x-request-id": "r9"}
            )
            assert rid.trace == "r9"
            tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            w3c = await call(
                app, "POST", f"/v2/models/{MODEL}/infer", json_request(ROW), {"traceparent": tp}
            )
            assert w3c.trace == "4bf92f3577b34da6a3ce929d0e0e4736"
            made = await infer(app)
            assert len(made.trace) == 32
            assert int(made.trace, 16) >= 0
            bad = await infer(app, trace="has space")
            assert bad.status == 400
            assert "trace id" in bad.json()["error"]

    asyncio.run(scenario())


def test_binary_tensors_and_gzip_pass_through(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            x = np.arange(12, dtype=np.float32).reshape(3, WIDTH)
            body, headers = binary_request(x)
            r = await call(app, "POST", f"/v2/models/{MODEL}/infer", body, headers)
            assert r.status == 200
            assert "inference-header-content-length" in r.headers
            np.testing.assert_allclose(r.outputs(), x.mean(axis=1, keepdims=True))
            header = json.loads(r.body[: int(r.headers["inference-header-content-length"])])
            assert header["parameters"]["lockgate_trace_id"] == r.trace
            gz = await call(
                app,
                "POST",
                f"/v2/models/{MODEL}/infer",
                gzip.compress(json_request(x)),
                {"content-encoding": "gzip"},
            )
            assert gz.status == 200
            np.testing.assert_allclose(gz.outputs(), x.mean(axis=1, keepdims=True))

    asyncio.run(scenario())
    log = read_prediction_log(tmp_path / "log", MODEL)
    np.testing.assert_array_equal(np.stack(log.inputs[0]), np.arange(12).reshape(3, WIDTH))


def test_server_and_model_metadata_present_the_public_name(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            await put_route(
                app, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0}
            )
            assert (await call(app, "GET", "/v2/health/live")).status == 200
            assert (await call(app, "GET", "/v2/health/ready")).status == 200
            server = (await call(app, "GET", "/v2")).json()
            assert "binary_tensor_data" in server["extensions"]
            meta = (await call(app, "GET", f"/v2/models/{MODEL}")).json()
            assert meta["name"] == MODEL
            assert meta["versions"] == ["v1", "v2"]
            assert meta["inputs"][0]["shape"] == [-1, WIDTH]
            pinned = (await call(app, "GET", f"/v2/models/{MODEL}/versions/v2")).json()
            assert pinned["name"] == MODEL
            assert pinned["versions"] == ["v2"]
            assert (await call(app, "GET", f"/v2/models/{MODEL}/ready")).status == 200
            assert (await call(app, "GET", f"/v2/models/{MODEL}/versions/v2/ready")).status == 200
            assert (await call(app, "GET", f"/v2/models/{MODEL}/versions/v7/ready")).status == 503
            assert (await call(app, "GET", "/v2/models/other")).status == 404
            assert (await call(app, "GET", "/nope")).status == 404
            assert (await call(app, "GET", f"/v2/models/{MODEL}/infer")).status == 405

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r["inputs"][0].update(name="X"), "input name 'X'"),
        (lambda r: r["inputs"][0].update(datatype="FP64"), "datatype 'FP64'"),
        (lambda r: r["inputs"][0].update(shape=[1, 3], data=[1, 2, 3]), "this model takes 4"),
        (lambda r: r["inputs"][0].update(shape=[1, 4], data=[1, 2, 3]), "has 3 values"),
        (lambda r: r["inputs"][0].update(data=[[1, 2, float("inf"), 4]]), "infinite"),
        (lambda r: r["inputs"][0].update(data=[[1, 2, 1e39, 4]]), "infinite"),
        (lambda r: r["inputs"][0].update(data=[["a", "b", "c", "d"]]), "numbers only"),
        (lambda r: r["inputs"][0].update(shape=[0, 4], data=[]), "batch >= 1"),
        (lambda r: r["inputs"].append(dict(r["inputs"][0])), "exactly one input"),
        (lambda r: r.pop("inputs"), "exactly one input"),
    ],
)
def test_wire_violations_are_400_and_never_counted_against_a_version(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], Any], fragment: str
) -> None:
    fake = fake_pair()

    async def scenario() -> None:
        async with running(tmp_path, fake) as app:
            route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
            await put_route(app, route)
            traces = [f"bad-{i}" for i in range(40)]
            for t in traces:
                req = json.loads(json_request(ROW))
                mutate(req)
                r = await call(
                    app,
                    "POST",
                    f"/v2/models/{MODEL}/infer",
                    json.dumps(req).encode(),
                    {"x-lockgate-trace-id": t},
                )
                assert r.status == 400, r.body
                assert fragment in r.json()["error"], r.json()
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            for v in ("v1", "v2"):  # no version takes it: the client's fault
                assert stats["versions"][v]["schema_violations"] == 0
                assert stats["versions"][v]["errors"] == 0
            assert fake.models[f"{MODEL}-v1"].calls + fake.models[f"{MODEL}-v2"].calls == 0

    asyncio.run(scenario())


def test_a_request_only_the_champion_takes_is_a_violation_of_the_challenger(
    tmp_path: Path,
) -> None:
    fake = fake_pair()
    fake.models[f"{MODEL}-v2"].width = WIDTH + 1  # the challenger's schema differs

    async def scenario() -> None:
        async with running(tmp_path, fake) as app:
            route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
            await put_route(app, route)
            responses = await gather_limited([infer(app, trace=f"t{i}") for i in range(200)])
            refused = [r for r in responses if r.status == 400]
            assert refused
            assert all(r.version == "v2" for r in refused)
            assert all("this model takes 5" in r.json()["error"] for r in refused)
            assert {r.status for r in responses if r.version == "v1"} == {200}
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert stats["versions"]["v2"]["schema_violations"] == len(refused)
            assert stats["versions"]["v1"]["schema_violations"] == 0
            pinned = await infer(app, x=np.ones((1, WIDTH + 2), np.float32), version="v2")
            assert pinned.status == 400  # a pinned request is the client's choice: not counted
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert stats["versions"]["v2"]["schema_violations"] == len(refused)

    asyncio.run(scenario())


def test_unreadable_bodies_are_client_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            for body, headers in [
                (b"{not json", {}),
                (b"[1, 2]", {}),
                (b'{"inputs": []}xxxx', {"Inference-Header-Content-Length": "14"}),
                (b"{}", {"Inference-Header-Content-Length": "99"}),
            ]:
                r = await call(app, "POST", f"/v2/models/{MODEL}/infer", body, headers)
                assert r.status == 400
                assert "error" in r.json()
            head = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "INPUT__0",
                            "datatype": "FP32",
                            "shape": [1, 4],
                            "parameters": {"binary_data_size": 16},
                        }
                    ]
                }
            ).encode()
            short = head + b"\0" * 8
            r = await call(
                app,
                "POST",
                f"/v2/models/{MODEL}/infer",
                short,
                {"Inference-Header-Content-Length": str(len(head))},
            )
            assert r.status == 400
            assert "binary_data_size" in r.json()["error"]
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert stats["versions"]["v1"]["schema_violations"] == 0
            assert stats["versions"]["v1"]["errors"] == 0

    asyncio.run(scenario())


def test_a_body_over_the_limit_is_413_also_when_it_arrives_in_one_message(tmp_path: Path) -> None:
    fake = fake_pair()
    body = json_request(ROW)

    async def scenario() -> None:
        async with running(tmp_path, fake, max_body_bytes=len(body) - 1) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            whole = await call(app, "POST", f"/v2/models/{MODEL}/infer", body)
            assert whole.status == 413
            assert f"exceeds {len(body) - 1} bytes" in whole.json()["error"]
        async with running(tmp_path, fake, max_body_bytes=len(body)) as app:
            assert (await call(app, "POST", f"/v2/models/{MODEL}/infer", body)).status == 200

    asyncio.run(scenario())
    assert fake.models[f"{MODEL}-v1"].calls == 1


def test_failing_challenger_is_retried_on_the_champion(tmp_path: Path) -> None:
    fake = fake_pair()
    fake.models[f"{MODEL}-v2"].fail_status = 500

    async def scenario() -> None:
        async with running(tmp_path, fake) as app:
            route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
            await put_route(app, route)
            responses = await asyncio.gather(*[infer(app) for _ in range(400)])
            assert all(r.status == 200 and r.version == "v1" for r in responses)
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            v2 = stats["versions"]["v2"]
            assert v2["errors"] == v2["requests"] == v2["retried_on_champion"] > 100
            assert stats["versions"]["v1"]["requests"] == 400
            metrics = (await call(app, "GET", "/metrics")).body.decode()
            assert 'kind="upstream_5xx"' in metrics

    asyncio.run(scenario())
    log = read_prediction_log(tmp_path / "log", MODEL)
    assert len(log) == 400
    assert set(log.version) == {"v1"}
    assert set(log.routed_by) == {"canary", "retry"}


def test_without_retry_only_the_challenger_share_sees_errors(tmp_path: Path) -> None:
    fake = fake_pair()
    fake.models[f"{MODEL}-v2"].fail_status = 503

    async def scenario() -> None:
        async with running(tmp_path, fake, retry_challenger_on_champion=False) as app:
            route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.3}
            await put_route(app, route)
            responses = await gather_limited([infer(app) for _ in range(1000)])
            by_version = Counter((r.version, r.status) for r in responses)
            assert set(by_version) == {("v1", 200), ("v2", 503)}
            failed = next(r for r in responses if r.status != 200)
            assert failed.json() == {"error": "model exploded"}
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert stats["versions"]["v2"]["error_rate"] == 1.0
            assert stats["versions"]["v1"]["error_rate"] == 0.0

    asyncio.run(scenario())


def test_upstream_timeout_is_504(tmp_path: Path) -> None:
    fake = fake_pair()

    async def scenario() -> None:
        async with running(tmp_path, fake, upstream_timeout_s=0.2) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            fake.models[f"{MODEL}-v1"].delay_s = 1.0
            r = await infer(app)
            assert r.status == 504
            assert "timed out" in r.json()["error"]
            metrics = (await call(app, "GET", "/metrics")).body.decode()
            assert 'kind="timeout"} 1' in metrics

    asyncio.run(scenario())


def test_unreachable_upstream_is_502(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario() -> None:
        app = create_app(
            state_dir=tmp_path / "s",
            log_dir=tmp_path / "l",
            upstream_url=f"http://127.0.0.1:{port}",
            verify_routes=False,
            admin_token=ADMIN_TOKEN,
        )
        await app.startup()
        try:
            await put_route(app, {"mode": "single", "champion": "v1"})
            r = await infer(app)
            assert r.status == 502
            assert "unreachable" in r.json()["error"]
            assert (await call(app, "GET", "/v2/health/ready")).status == 503
        finally:
            await app.shutdown()

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# coalescing


def _mixed_request(i: int, x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """Request i in one of four forms: JSON or binary input, JSON or binary output, id or not."""
    if i % 4 == 0:
        return json_request(x, request_id=f"req-{i}"), {}
    if i % 4 == 1:
        return binary_request(x)
    raw = x.astype("<f4").tobytes()
    head: dict[str, Any] = {
        "inputs": [
            {
                "name": "INPUT__0",
                "datatype": "FP32",
                "shape": list(x.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "OUTPUT__0", "parameters": {"binary_data": i % 4 == 3}}],
        "id": f"req-{i}",
    }
    encoded = json.dumps(head).encode()
    return encoded + raw, {"Inference-Header-Content-Length": str(len(encoded))}


def _counter(text: str, name: str) -> float:
    """A Prometheus sample's value summed over its label sets."""
    families = text_string_to_metric_families(text)
    return sum(x.value for f in families for x in f.samples if x.name == name)


def test_concurrent_requests_are_merged_and_each_answered_with_its_own_rows(
    tmp_path: Path,
) -> None:
    fake = fake_pair()
    fake.models[f"{MODEL}-v1"].delay_s = 0.02  # calls overlap: later requests must queue
    n = 96
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(int(rng.integers(1, 4)), WIDTH)).astype(np.float32) for _ in range(n)]

    async def scenario() -> list[Resp]:
        async with running(tmp_path, fake) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            calls = []
            for i, x in enumerate(xs):
                body, headers = _mixed_request(i, x)
                headers["x-lockgate-trace-id"] = f"t-{i}"
                calls.append(call(app, "POST", f"/v2/models/{MODEL}/infer", body, headers))
            out = await asyncio.gather(*calls)
            metrics = (await call(app, "GET", "/metrics")).body.decode()
            merged_calls = _counter(metrics, "lockgate_gateway_coalesced_calls_total")
            merged_reqs = _counter(metrics, "lockgate_gateway_coalesced_requests_total")
            assert 0 < merged_calls < merged_reqs <= n
            return out

    answers = asyncio.run(scenario())
    model = fake.models[f"{MODEL}-v1"]
    assert sum(model.rows) == sum(len(x) for x in xs)  # every row went up exactly once
    assert model.calls < n / 4  # two alone, then merged batches
    assert max(model.rows) <= 64  # the model's max_batch_size
    for i, (x, r) in enumerate(zip(xs, answers, strict=True)):
        assert r.status == 200, r.body
        assert r.trace == f"t-{i}"
        hlen = int(r.headers.get("inference-header-content-length", len(r.body)))
        header = json.loads(r.body[:hlen])
        assert header["model_name"] == MODEL
        assert header["model_version"] == "v1"
        assert header["parameters"] == {"lockgate_trace_id": f"t-{i}"}
        assert header.get("id") == (None if i % 4 == 1 else f"req-{i}")
        out = header["outputs"][0]
        assert out["shape"] == [len(x), 1]
        binary = i % 4 in (1, 3)
        assert ("binary_data_size" in out.get("parameters", {})) is binary
        assert ("data" in out) is not binary
        assert ("inference-header-content-length" in r.headers) is binary
        np.testing.assert_allclose(r.outputs(), x.mean(axis=1, keepdims=True), rtol=1e-6)
    log = read_prediction_log(tmp_path / "log", MODEL).set_index("trace_id")
    assert len(log) == n
    for i, x in enumerate(xs):
        row = log.loc[f"t-{i}"]
        np.testing.assert_array_equal(np.stack(row.inputs), x)
        np.testing.assert_allclose(np.stack(row.outputs), x.mean(axis=1, keepdims=True), rtol=1e-6)


def test_a_request_with_nobody_to_merge_with_waits_for_a_slot_and_goes_as_sent(
    tmp_path: Path,
) -> None:
    fake = fake_pair()
    model = fake.models[f"{MODEL}-v1"]
    model.delay_s = 0.05

    async def scenario() -> tuple[list[Resp], str]:
        async with running(tmp_path, fake) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            first = [asyncio.ensure_future(infer(app, trace=f"a-{i}")) for i in range(2)]
            await asyncio.sleep(0.01)  # both calls are in flight: the third must wait
            third = await infer(app, trace="a-2", x=ROW * 2)
            answers = [*(await asyncio.gather(*first)), third]
            return answers, (await call(app, "GET", "/metrics")).body.decode()

    answers, metrics = asyncio.run(scenario())
    assert [r.status for r in answers] == [200, 200, 200]
    assert answers[2].outputs()[0, 0] == pytest.approx(0.5, abs=1e-6)
    assert model.calls == 3
    assert _counter(metrics, "lockgate_gateway_coalesced_calls_total") == 0


def test_a_merged_call_the_model_refuses_is_retried_request_by_request(tmp_path: Path) -> None:
    fake = fake_pair()
    model = fake.models[f"{MODEL}-v1"]
    model.delay_s = 0.02
    model.poison = 7.0
    xs = [np.full((1, WIDTH), 7.0 if i == 20 else i / 40, np.float32) for i in range(40)]

    async def scenario() -> list[Resp]:
        async with running(tmp_path, fake) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            return await asyncio.gather(
                *[infer(app, trace=f"p-{i}", x=x) for i, x in enumerate(xs)]
            )

    answers = asyncio.run(scenario())
    assert [r.status for r in answers] == [400 if i == 20 else 200 for i in range(40)]
    assert "poison" in answers[20].json()["error"]
    for i, r in enumerate(answers):
        if i != 20:
            assert r.outputs()[0, 0] == pytest.approx(i / 40, abs=1e-6)
    assert max(model.rows) > 1  # the poisoned row did go up inside a merged call first


def test_a_model_whose_merged_answer_cannot_be_split_is_not_merged_again(tmp_path: Path) -> None:
    fake = fake_pair()
    model = fake.models[f"{MODEL}-v1"]
    model.delay_s = 0.02
    model.pooled = True  # one row back per call: wrong for a batch, right for one row
    xs = [np.full((1, WIDTH), i / 20, np.float32) for i in range(20)]

    async def scenario() -> tuple[list[Resp], list[Resp], str]:
        async with running(tmp_path, fake) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            first = await asyncio.gather(*[infer(app, x=x) for x in xs])
            second = await asyncio.gather(*[infer(app, x=x) for x in xs])
            return first, second, (await call(app, "GET", "/metrics")).body.decode()

    first, second, metrics = asyncio.run(scenario())
    for answers in (first, second):
        assert [r.status for r in answers] == [200] * 20
        for i, r in enumerate(answers):
            assert r.outputs()[0, 0] == pytest.approx(i / 20, abs=1e-6)
    # 2 alone, 1 merged call of 18 that could not be split, those 18 again one by one; then
    # the second wave goes one by one from the start
    assert model.calls == 2 + 1 + 18 + 20
    assert _counter(metrics, "lockgate_gateway_coalesced_calls_total") == 1


def test_a_merged_call_that_times_out_fails_each_of_its_requests_once(tmp_path: Path) -> None:
    fake = fake_pair()
    fake.models[f"{MODEL}-v1"].delay_s = 0.3

    async def scenario() -> list[Resp]:
        async with running(tmp_path, fake, upstream_timeout_s=0.1) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            return await asyncio.gather(*[infer(app, trace=f"s-{i}") for i in range(10)])

    answers = asyncio.run(scenario())
    assert [r.status for r in answers] == [504] * 10
    model = fake.models[f"{MODEL}-v1"]
    assert model.calls == 3  # two alone, the other eight in one merged call, none retried


def test_coalescing_off_and_unmergeable_requests_go_upstream_alone(tmp_path: Path) -> None:
    def load(folder: str, **kw: Any) -> FakeModel:
        fake = fake_pair()
        fake.models[f"{MODEL}-v1"].delay_s = 0.01
        tensor = {"name": "INPUT__0", "datatype": "FP32", "shape": [1, WIDTH], "data": ROW.tolist()}
        # "priority" is an option the gateway does not rebuild: such a request goes alone
        odd = json.dumps({"inputs": [tensor], "parameters": {"priority": 1}}).encode()

        async def scenario() -> None:
            async with running(tmp_path / folder, fake, **kw) as app:
                await put_route(app, {"mode": "single", "champion": "v1"})
                answers = await asyncio.gather(
                    *[infer(app) for _ in range(12)],
                    *[call(app, "POST", f"/v2/models/{MODEL}/infer", odd) for _ in range(12)],
                )
                assert {r.status for r in answers} == {200}

        asyncio.run(scenario())
        return fake.models[f"{MODEL}-v1"]

    off = load("off", coalesce_inflight=0)
    assert off.calls == 24
    assert set(off.rows) == {1}
    on = load("on")
    assert on.calls < 24  # the plain requests merged...
    assert on.rows.count(1) >= 12  # ...the ones with "priority" each went alone


# ---------------------------------------------------------------------------------------------
# named features (lockgate.gateway.named_inputs): the contract clients use

SCHEMA = WireSchema.of(
    [("amount", "numeric"), ("hour", "numeric"), ("plan", "categorical"), ("is_new", "numeric")]
)
FRAME = pd.DataFrame(
    {
        "amount": [12.5, None, 3e5],
        "hour": [13, 2, 23],
        "plan": ["pro", None, "basic"],
        "is_new": [True, False, True],
    }
)


def write_wire(repo: Path, *versions: str, schema: WireSchema = SCHEMA) -> Path:
    """The wire.json lockgate writes into each version's Triton model folder."""
    for version in versions:
        folder = repo / f"{MODEL}-{version}" / "1"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "wire.json").write_bytes(schema.to_json())
    return repo


def named_inputs_json(frame: pd.DataFrame = FRAME) -> list[dict[str, Any]]:
    """One JSON input per feature: FP64, INT64 as [n, 1] nested, BYTES and BOOL, null = missing."""
    n = len(frame)
    amount = [None if pd.isna(v) else float(v) for v in frame["amount"]]
    plan = [None if pd.isna(v) else str(v) for v in frame["plan"]]
    return [
        {"name": "amount", "datatype": "FP64", "shape": [n], "data": amount},
        {
            "name": "hour",
            "datatype": "INT64",
            "shape": [n, 1],
            "data": [[int(v)] for v in frame.hour],
        },
        {"name": "plan", "datatype": "BYTES", "shape": [n], "data": plan},
        {
            "name": "is_new",
            "datatype": "BOOL",
            "shape": [n],
            "data": [bool(v) for v in frame.is_new],
        },
    ]


def named_json(frame: pd.DataFrame = FRAME, **header: Any) -> bytes:
    return json.dumps({"inputs": named_inputs_json(frame), **header}).encode()


def bytes_tensor(values: list[str]) -> bytes:
    """KServe binary BYTES: a 4-byte little-endian length, then the UTF-8 bytes, per element."""
    return b"".join(struct.pack("<I", len(b)) + b for b in (v.encode() for v in values))


def named_binary(
    frame: pd.DataFrame, *, json_plan: bool = False, binary_output: bool = True
) -> tuple[bytes, dict[str, str]]:
    """Binary FP32, INT32, BYTES and BOOL tensors (the plan as JSON when asked: null travels)."""
    n = len(frame)
    tensors = [
        ("amount", "FP32", frame["amount"].to_numpy(np.float32).tobytes()),
        ("hour", "INT32", frame["hour"].to_numpy(np.int32).tobytes()),
        ("plan", "BYTES", bytes_tensor([str(v) for v in frame["plan"]])),
        ("is_new", "BOOL", frame["is_new"].to_numpy(bool).tobytes()),
    ]
    inputs: list[dict[str, Any]] = []
    blobs = []
    for name, datatype, raw in tensors:
        if name == "plan" and json_plan:
            plan = [None if pd.isna(v) else str(v) for v in frame["plan"]]
            inputs.append({"name": name, "datatype": datatype, "shape": [n], "data": plan})
            continue
        spec = {"name": name, "datatype": datatype, "shape": [n]}
        inputs.append({**spec, "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    head = json.dumps(
        {"inputs": inputs, "parameters": {"binary_data_output": binary_output}}
    ).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.parametrize("n", [1, 3, 64, 65, 700])
def test_named_inputs_encode_exactly_like_wire_encode_at_any_size(n: int) -> None:
    rng = np.random.default_rng(n)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(0, 1e6, n),
            "hour": rng.integers(-(2**31), 2**31, n),  # INT32 in binary, rounded to float32
            "plan": rng.choice(["basic", "pro", "café", "", "x" * 300], n).astype(object),
            "is_new": rng.random(n) < 0.3,
        }
    )
    frame.loc[frame.index[::5], "amount"] = np.nan
    frame.loc[frame.index[1::7], "plan"] = None
    contract = FeatureContract(SCHEMA)
    want = encode(frame, SCHEMA)
    as_json = named_inputs_json(frame)
    as_json[0]["data"] = [
        float("nan") if v is None and i % 2 else v for i, v in enumerate(as_json[0]["data"])
    ]
    got = contract.encode(json.loads(json.dumps(as_json)), b"", 0, model="m")  # NaN and null
    assert got.flags.c_contiguous
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    plain = frame.assign(plan=frame.plan.fillna("none"))
    body, headers = named_binary(plain)
    hlen = int(headers["Inference-Header-Content-Length"])
    got = contract.encode(json.loads(body[:hlen])["inputs"], body, hlen, model="m")
    np.testing.assert_array_equal(got, encode(plain, SCHEMA))
    # other numeric datatypes, binary: FP16, UINT64, INT8 and FP64 all land as float32
    for datatype, values in [
        ("FP16", np.array([0.5, np.nan, -2.0], "<f2")),
        ("UINT64", np.array([0, 2**63, 7], "<u8")),
        ("INT8", np.array([-3, 0, 5], "i1")),
        ("FP64", np.array([1e-3, np.nan, 3e38], "<f8")),
    ]:
        raw = values.tobytes()
        spec = {"name": "amount", "datatype": datatype, "shape": [3]}
        inputs = [
            {**spec, "parameters": {"binary_data_size": len(raw)}},
            *named_inputs_json(FRAME)[1:],
        ]
        out = contract.encode(inputs, raw, 0, model="m")
        expected = encode(FRAME.assign(amount=values.astype(np.float64)), SCHEMA)
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("n", [3, 100])
@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ([10**400], "beyond float32's range (first in row 0)"),
        ([float("inf")], "beyond float32's range (first in row 0)"),
        ([{"a": 1}], "got \"{'a': 1}\" (dict) in row 0"),
        ([[1, 2]], "nested data that is not one value per row"),
    ],
)
def test_named_inputs_refuse_bad_numbers_at_any_size(
    n: int, values: list[Any], fragment: str
) -> None:
    frame = pd.concat([FRAME] * (n // 3 + 1)).head(n).reset_index(drop=True)
    inputs = named_inputs_json(frame)
    inputs[0]["data"] = values + inputs[0]["data"][len(values) :]
    with pytest.raises(FeatureInputError) as caught:
        FeatureContract(SCHEMA).encode(json.loads(json.dumps(inputs)), b"", 0, model="m")
    assert fragment in str(caught.value)
    assert "'amount'" in str(caught.value)


def test_named_features_in_json_and_binary_are_encoded_like_wire_encode(tmp_path: Path) -> None:
    fake = fake_pair()
    repo = write_wire(tmp_path / "repo", "v1", "v2")
    want = encode(FRAME, SCHEMA)
    plain = FRAME.assign(plan=FRAME.plan.fillna("none"))  # binary BYTES cannot carry null

    async def scenario() -> list[Resp]:
        async with running(tmp_path, fake, model_repository=repo) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            path = f"/v2/models/{MODEL}/infer"
            answers = [
                await call(app, "POST", path, named_json(id="r1"), {"x-lockgate-trace-id": "j"})
            ]
            body, headers = named_binary(FRAME, json_plan=True)  # binary and JSON mixed
            answers.append(await call(app, "POST", path, body, {**headers, "x-request-id": "m"}))
            body, headers = named_binary(plain, binary_output=False)  # all binary, JSON answer
            answers.append(await call(app, "POST", path, body, {**headers, "x-request-id": "b"}))
            pinned = f"/v2/models/{MODEL}/versions/v2/infer"
            answers.append(await call(app, "POST", pinned, named_json()))
            return answers

    json_answer, mixed, binary, pinned = asyncio.run(scenario())
    received = fake.models[f"{MODEL}-v1"].received
    assert len(received) == 3
    np.testing.assert_array_equal(received[0], want)  # NaN where null was sent
    np.testing.assert_array_equal(received[1], want)
    np.testing.assert_array_equal(received[2], encode(plain, SCHEMA))
    np.testing.assert_array_equal(fake.models[f"{MODEL}-v2"].received[0], want)
    assert np.isnan(want[1, 0])
    assert np.isnan(want[1, 2])
    for r in (json_answer, mixed, binary, pinned):
        assert r.status == 200, r.body
    header = json_answer.json()
    assert header["id"] == "r1"
    assert header["model_name"] == MODEL
    assert "inference-header-content-length" in mixed.headers  # the form the client asked for
    assert "inference-header-content-length" not in binary.headers
    np.testing.assert_allclose(binary.outputs(), encode(plain, SCHEMA).mean(axis=1, keepdims=True))
    assert pinned.version == "v2"
    log = read_prediction_log(tmp_path / "log", MODEL).set_index("trace_id")
    np.testing.assert_array_equal(np.stack(log.loc["j"].inputs), want)  # the wire rows
    np.testing.assert_array_equal(np.stack(log.loc["b"].inputs), encode(plain, SCHEMA))


def _named(mutate: Callable[[list[dict[str, Any]]], Any]) -> Callable[[], tuple[bytes, dict]]:
    def build() -> tuple[bytes, dict[str, str]]:
        inputs = named_inputs_json()
        mutate(inputs)
        return json.dumps({"inputs": inputs}).encode(), {}

    return build


def _binary_bad(which: str) -> Callable[[], tuple[bytes, dict[str, str]]]:
    def build() -> tuple[bytes, dict[str, str]]:
        plain = FRAME.assign(plan=FRAME.plan.fillna("none"))
        body, headers = named_binary(plain)
        hlen = int(headers["Inference-Header-Content-Length"])
        head = json.loads(body[:hlen])
        blob = body[hlen:]
        sizes = [i["parameters"]["binary_data_size"] for i in head["inputs"]]
        amount, hour, plan, is_new = np.split(np.frombuffer(blob, np.uint8), np.cumsum(sizes)[:-1])
        if which == "size":
            head["inputs"][0]["parameters"]["binary_data_size"] = 8
            amount = amount[:8]
        elif which == "utf8":
            plan = np.frombuffer(
                bytes_tensor(["pro", "x", "basic"]).replace(b"x", b"\xff"), np.uint8
            )
        elif which == "short":
            plan = np.frombuffer(bytes_tensor(["pro", "basic"]), np.uint8)
            head["inputs"][2]["parameters"]["binary_data_size"] = len(plan)
        elif which == "beyond":
            head["inputs"][3]["parameters"]["binary_data_size"] = 999
        new_head = json.dumps(head).encode()
        parts = b"".join(a.tobytes() for a in (amount, hour, plan, is_new))
        return new_head + parts, {"Inference-Header-Content-Length": str(len(new_head))}

    return build


NAMED_ERRORS: list[tuple[str, Callable[[], tuple[bytes, dict[str, str]]], list[str]]] = [
    (
        "unknown",
        _named(lambda i: i[0].update(name="amout")),
        ["'amout' is not a feature of fraud_lgbm version v", "did you mean 'amount'?", "fix:"],
    ),
    ("missing", _named(lambda i: i.pop(2)), ["lacks feature(s) 'plan' (BYTES)", "fix: add"]),
    ("twice", _named(lambda i: i.append(dict(i[0]))), ["feature 'amount' is sent twice"]),
    (
        "bytes for numeric",
        _named(lambda i: i[0].update(datatype="BYTES", data=["12.5", "1", "2"])),
        ["feature 'amount'", "datatype 'BYTES'", "numeric feature is sent as FP32"],
    ),
    (
        "numeric datatype for categorical",
        _named(lambda i: i[2].update(datatype="FP32", data=[1, 2, 3])),
        ["feature 'plan'", "is categorical but was sent as FP32", "datatype BYTES"],
    ),
    (
        "number as category",
        _named(lambda i: i[2].update(data=["pro", 3, None])),
        ["categorical feature 'plan' got 3 (int) in row 1", 'e.g. "3"'],
    ),
    (
        "string as number",
        _named(lambda i: i[0].update(data=[12.5, "7", None])),
        ["numeric feature 'amount' got '7' (str) in row 1", "not a string"],
    ),
    ("unknown datatype", _named(lambda i: i[0].update(datatype="FLOAT")), ["datatype 'FLOAT'"]),
    (
        "rows differ",
        _named(lambda i: i[3].update(shape=[2], data=[True, False])),
        ["feature 'is_new' has 2 rows but 'amount' has 3", "same number of rows"],
    ),
    (
        "values for shape",
        _named(lambda i: i[0].update(data=[1.0, 2.0])),
        ["feature 'amount' has 2 value(s) for 3 row(s)"],
    ),
    ("shape", _named(lambda i: i[1].update(shape=[3, 2])), ["feature 'hour'", "shape [3, 2]"]),
    (
        "too many rows",
        _named(lambda i: i[0].update(shape=[70_000])),
        ["feature 'amount'", "1 <= n <= 65536"],
    ),
    (
        "beyond float32",
        _named(lambda i: i[0].update(data=[1e39, 1.0, 2.0])),
        ["numeric feature 'amount'", "beyond float32's range"],
    ),
    (
        "long string",
        _named(lambda i: i[2].update(data=["x" * 2000, "a", "b"])),
        ["feature 'plan' has a value longer than 1024 bytes in row 0"],
    ),
    (
        "wire tensor with features",
        _named(lambda i: i.append({"name": "INPUT__0", "datatype": "FP32", "shape": [3, 4]})),
        ["'INPUT__0' came with other inputs"],
    ),
    ("no inputs", _named(lambda i: i.clear()), ["has no inputs", "amount (numeric)"]),
    (
        "shared memory",
        _named(lambda i: i[2].update(parameters={"shared_memory_region": "r"})),
        ["feature 'plan' uses shared memory"],
    ),
    ("binary size", _binary_bad("size"), ["'amount' has binary_data_size=8", "take 12 bytes"]),
    ("binary utf-8", _binary_bad("utf8"), ["'plan' has a value that is not UTF-8 in row 1"]),
    ("binary short", _binary_bad("short"), ["'plan' has binary_data_size=", "ends inside row 2"]),
    (
        "binary beyond",
        _binary_bad("beyond"),
        ["'is_new' has binary_data_size=999", "fits the body"],
    ),
]


@pytest.mark.parametrize(
    ("case", "build", "fragments"), NAMED_ERRORS, ids=[c[0] for c in NAMED_ERRORS]
)
def test_named_feature_errors_are_client_errors_never_counted_against_a_version(
    tmp_path: Path,
    case: str,
    build: Callable[[], tuple[bytes, dict[str, str]]],
    fragments: list[str],
) -> None:
    fake = fake_pair()
    repo = write_wire(tmp_path / "repo", "v1", "v2")
    traces = [f"bad-{i}" for i in range(8)]

    async def scenario() -> None:
        async with running(tmp_path, fake, model_repository=repo) as app:
            route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
            await put_route(app, route)
            for t in traces:
                body, headers = build()
                r = await call(
                    app,
                    "POST",
                    f"/v2/models/{MODEL}/infer",
                    body,
                    {**headers, "x-lockgate-trace-id": t},
                )
                assert r.status == 400, (case, r.body)
                for fragment in fragments:
                    assert fragment in r.json()["error"], r.json()["error"]
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            for v in ("v1", "v2"):  # nothing for the canary to judge a version by
                counted = stats["versions"][v]
                assert (counted["requests"], counted["errors"], counted["schema_violations"]) == (
                    0,
                    0,
                    0,
                )
            metrics = (await call(app, "GET", "/metrics")).body.decode()
            assert _counter(metrics, "lockgate_gateway_requests_total") == 0

    asyncio.run(scenario())
    assert fake.models[f"{MODEL}-v1"].calls + fake.models[f"{MODEL}-v2"].calls == 0
    log = read_prediction_log(tmp_path / "log", MODEL)
    assert sorted(log.trace_id) == traces  # every refusal is in the log, as a 400
    assert set(log.status) == {400}


def test_model_metadata_lists_the_named_inputs(tmp_path: Path) -> None:
    fake = fake_pair()
    fake.models[f"{MODEL}-v3"] = FakeModel(0.2)  # written before wire.json existed
    repo = write_wire(tmp_path / "repo", "v1", "v2")

    async def scenario() -> None:
        async with running(tmp_path, fake, model_repository=repo) as app:
            await put_route(
                app, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0}
            )
            meta = (await call(app, "GET", f"/v2/models/{MODEL}")).json()
            assert meta["name"] == MODEL
            assert meta["inputs"] == [
                {"name": "amount", "datatype": "FP32", "shape": [-1]},
                {"name": "hour", "datatype": "FP32", "shape": [-1]},
                {"name": "plan", "datatype": "BYTES", "shape": [-1]},
                {"name": "is_new", "datatype": "FP32", "shape": [-1]},
            ]
            assert meta["outputs"] == [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 1]}]
            note = meta["parameters"]["lockgate_inputs"]
            assert "JSON null" in note
            assert "INPUT__0 FP32 [n, 4]" in note
            old = (await call(app, "GET", f"/v2/models/{MODEL}/versions/v3")).json()
            assert old["inputs"] == [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, WIDTH]}]
            assert "parameters" not in old
            # a version without wire.json takes the wire tensor only, and says why
            r = await call(app, "POST", f"/v2/models/{MODEL}/versions/v3/infer", named_json())
            assert r.status == 400
            assert f"has no {MODEL}-v3/1/wire.json" in r.json()["error"]

    asyncio.run(scenario())


def test_the_wire_tensor_still_works_next_to_named_features(tmp_path: Path) -> None:
    fake = fake_pair()
    repo = write_wire(tmp_path / "repo", "v1", "v2")

    async def scenario() -> None:
        async with running(tmp_path, fake, model_repository=repo) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            x = encode(FRAME, SCHEMA)  # column 2 ('plan') holds wire codes
            r = await infer(app, x=x)
            assert r.status == 200, r.body
            np.testing.assert_allclose(r.outputs(), x.mean(axis=1, keepdims=True))
            body, headers = binary_request(x)
            assert (
                await call(app, "POST", f"/v2/models/{MODEL}/infer", body, headers)
            ).status == 200
            bad = await infer(app, x=x[:, :3])  # the wire contract still holds
            assert bad.status == 400
            assert "this model takes 4" in bad.json()["error"]
            for code in (0.5, -1.0, 2.0**24):  # a categorical column holds no code
                wrong = x.copy()
                wrong[1, 2] = code
                bad = await infer(app, x=wrong)
                assert bad.status == 400, bad.body
                error = bad.json()["error"]
                assert f"column 2 ('plan') of {MODEL} version v1 is categorical" in error
                assert f"row 1 holds {code!r}" in error
                assert "NaN for missing" in error
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert stats["versions"]["v1"]["schema_violations"] == 0  # the client's fault
            assert stats["versions"]["v1"]["errors"] == 0

    asyncio.run(scenario())


def test_without_a_model_repository_named_features_are_refused_with_the_fix(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            r = await call(app, "POST", f"/v2/models/{MODEL}/infer", named_json())
            assert r.status == 400
            assert "without --model-repository" in r.json()["error"]

    asyncio.run(scenario())


def test_a_wire_schema_that_does_not_fit_the_model_is_not_used(tmp_path: Path) -> None:
    wide = WireSchema.of([*[(c.name, c.kind) for c in SCHEMA.columns], ("extra", "numeric")])
    repo = write_wire(tmp_path / "repo", "v1", schema=wide)
    (repo / f"{MODEL}-v2" / "1").mkdir(parents=True)
    (repo / f"{MODEL}-v2" / "1" / "wire.json").write_text("{not json")

    async def scenario() -> None:
        async with running(tmp_path, fake_pair(), model_repository=repo) as app:
            for version, fragment in (
                ("v1", "has 5 features but the model takes 4"),
                ("v2", "unreadable"),
            ):
                path = f"/v2/models/{MODEL}/versions/{version}/infer"
                r = await call(app, "POST", path, named_json())
                assert r.status == 400
                assert fragment in r.json()["error"]
                assert (await call(app, "POST", path, json_request(ROW))).status == 200

    asyncio.run(scenario())


def test_named_requests_are_coalesced_and_each_answered_with_its_own_rows(tmp_path: Path) -> None:
    fake = fake_pair()
    fake.models[f"{MODEL}-v1"].delay_s = 0.02  # calls overlap: later requests must queue
    repo = write_wire(tmp_path / "repo", "v1")
    rng = np.random.default_rng(7)
    frames = []
    for _ in range(48):
        n = int(rng.integers(1, 4))
        frames.append(
            pd.DataFrame(
                {
                    "amount": rng.normal(50, 10, n),
                    "hour": rng.integers(0, 24, n),
                    "plan": rng.choice(["basic", "plus", "pro"], n),
                    "is_new": rng.random(n) < 0.5,
                }
            )
        )

    async def scenario() -> tuple[list[Resp], str]:
        async with running(tmp_path, fake, model_repository=repo) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            calls = []
            for i, frame in enumerate(frames):
                if i % 2:
                    body, headers = named_binary(frame, binary_output=i % 4 == 1)
                else:
                    body, headers = named_json(frame, id=f"req-{i}"), {}
                headers["x-lockgate-trace-id"] = f"t-{i}"
                calls.append(call(app, "POST", f"/v2/models/{MODEL}/infer", body, headers))
            answers = await asyncio.gather(*calls)
            return answers, (await call(app, "GET", "/metrics")).body.decode()

    answers, metrics = asyncio.run(scenario())
    assert _counter(metrics, "lockgate_gateway_coalesced_calls_total") > 0
    model = fake.models[f"{MODEL}-v1"]
    assert model.calls < len(frames) / 2
    assert sum(model.rows) == sum(len(f) for f in frames)
    log = read_prediction_log(tmp_path / "log", MODEL).set_index("trace_id")
    for i, (frame, r) in enumerate(zip(frames, answers, strict=True)):
        assert r.status == 200, r.body
        x = encode(frame, SCHEMA)
        np.testing.assert_allclose(r.outputs(), x.mean(axis=1, keepdims=True), rtol=1e-6)
        if i % 2 == 0:
            assert r.json()["id"] == f"req-{i}"
        np.testing.assert_array_equal(np.stack(log.loc[f"t-{i}"].inputs), x)


def test_named_requests_are_mirrored_and_retried_as_their_wire_rows(tmp_path: Path) -> None:
    fake = fake_pair()
    repo = write_wire(tmp_path / "repo", "v1", "v2")
    want = encode(FRAME, SCHEMA)

    async def scenario() -> None:
        async with running(tmp_path, fake, model_repository=repo) as app:
            shadow = {
                "mode": "shadow",
                "champion": "v1",
                "challenger": "v2",
                "shadow_fraction": 1.0,
            }
            await put_route(app, shadow)
            r = await call(app, "POST", f"/v2/models/{MODEL}/infer", named_json())
            assert r.status == 200
            await app.drain_shadow()
            np.testing.assert_array_equal(fake.models[f"{MODEL}-v2"].received[-1], want)
            fake.models[f"{MODEL}-v2"].fail_status = 500
            canary = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 1.0}
            await put_route(app, canary)
            r = await call(app, "POST", f"/v2/models/{MODEL}/infer", named_json())
            assert r.status == 200, r.body
            assert r.version == "v1"  # the failed challenger call, answered by the champion
            np.testing.assert_array_equal(fake.models[f"{MODEL}-v1"].received[-1], want)

    asyncio.run(scenario())


def test_tritonclient_sends_named_features_through_the_gateway_process(
    tmp_path: Path, fake_http: tuple[FakeTriton, str]
) -> None:
    import tritonclient.http as th

    fake, url = fake_http
    server = GatewayServer(
        state_dir=str(tmp_path / "gw"),
        log_dir=str(tmp_path / "log"),
        upstream_url=url,
        model_repository=str(write_wire(tmp_path / "repo", "v1", "v2")),
    )
    assert "--model-repository" in server.command()
    plain = FRAME.assign(plan=FRAME.plan.fillna("none"), hour=FRAME.hour.astype(np.int64))
    with server:
        server.set_route(MODEL, {"mode": "single", "champion": "v1"})
        client = th.InferenceServerClient(server.host_port)
        try:
            for binary in (True, False):
                inputs = []
                for name, column in plain.items():
                    values = column.to_numpy(dtype=object if name == "plan" else None)
                    datatype = {
                        "amount": "FP64",
                        "hour": "INT64",
                        "plan": "BYTES",
                        "is_new": "BOOL",
                    }
                    tensor = th.InferInput(str(name), [len(values)], datatype[str(name)])
                    tensor.set_data_from_numpy(values, binary_data=binary)
                    inputs.append(tensor)
                out = client.infer(MODEL, inputs).as_numpy("OUTPUT__0")
                x = encode(plain, SCHEMA)
                np.testing.assert_allclose(out, x.mean(axis=1, keepdims=True), rtol=1e-6)
                np.testing.assert_array_equal(fake.models[f"{MODEL}-v1"].received[-1], x)
            names = [i["name"] for i in client.get_model_metadata(MODEL)["inputs"]]
            assert names == ["amount", "hour", "plan", "is_new"]
        finally:
            client.close()


# ---------------------------------------------------------------------------------------------
# admin


@pytest.mark.parametrize(
    ("route", "fragment"),
    [
        ({"mode": "blue", "champion": "v1"}, "mode='blue'"),
        ({"mode": "single"}, "champion=None"),
        ({"mode": "single", "champion": "v 1"}, "not a version id"),
        ({"mode": "single", "champion": "v1", "challenger": "v2"}, "takes no challenger"),
        ({"mode": "canary", "champion": "v1", "challenger": "v2"}, "requires 'weight'"),
        ({"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 1.5}, "between 0"),
        ({"mode": "canary", "champion": "v1", "challenger": "v2", "weight": True}, "between 0"),
        ({"mode": "canary", "champion": "v1", "challenger": "v2", "weight": "0.1"}, "between 0"),
        ({"mode": "canary", "champion": "v1", "challenger": "v1", "weight": 0.1}, "equals"),
        ({"mode": "canary", "champion": "v1", "weight": 0.1}, "challenger=None"),
        ({"mode": "shadow", "champion": "v1", "challenger": "v2"}, "requires 'shadow_fraction'"),
        ({"mode": "bluegreen", "champion": "v1", "challenger": "v2"}, "requires 'active'"),
        (
            {"mode": "bluegreen", "champion": "v1", "challenger": "v2", "active": "blue"},
            "'champion' or 'challenger'",
        ),
        ({"mode": "single", "champion": "v1", "wieght": 0.1}, "unknown key(s) ['wieght']"),
        (["single"], "not a JSON object"),
    ],
)
def test_admin_rejects_invalid_routes(tmp_path: Path, route: Any, fragment: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            r = await put_route(app, route)
            assert r.status == 400, r.body
            assert fragment in r.json()["error"]
            assert (await call(app, "GET", "/admin/routes")).json() == {"routes": {}}

    asyncio.run(scenario())


def test_admin_errors_for_unserved_versions_bad_json_and_names(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            r = await put_route(
                app, {"mode": "canary", "champion": "v1", "challenger": "v3", "weight": 0.1}
            )
            assert r.status == 409
            assert "'v3' is not servable" in r.json()["error"]
            r = await call(app, "PUT", f"/admin/routes/{MODEL}", b"{oops")
            assert r.status == 400
            assert "not JSON" in r.json()["error"]
            r = await call(app, "PUT", "/admin/routes/bad name", b"{}")
            assert r.status == 400
            assert "model name" in r.json()["error"]
            assert (await call(app, "GET", f"/admin/routes/{MODEL}")).status == 404
            assert (await call(app, "DELETE", f"/admin/routes/{MODEL}")).status == 404
            await put_route(app, {"mode": "single", "champion": "v1"})
            got = (await call(app, "GET", f"/admin/routes/{MODEL}")).json()
            assert got["route"]["champion"] == "v1"
            assert got["route"]["challenger"] is None
            assert (await call(app, "DELETE", f"/admin/routes/{MODEL}")).status == 200
            assert (await infer(app)).status == 404

    asyncio.run(scenario())


def test_admin_token(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair(), admin_token="s3cret") as app:
            assert (await call(app, "GET", "/admin/routes", admin_auth=False)).status == 401
            wrong = {"authorization": "Bearer s3cre"}
            assert (
                await call(app, "GET", "/admin/routes", headers=wrong, admin_auth=False)
            ).status == 403
            ok = await call(app, "GET", "/admin/routes", headers={"authorization": "Bearer s3cret"})
            assert ok.status == 200
            put = await call(
                app,
                "PUT",
                f"/admin/routes/{MODEL}",
                json.dumps({"mode": "single", "champion": "v1"}).encode(),
                {"authorization": "Bearer s3cret", "x-lockgate-actor": "t"},
                inference_port=True,
            )
            assert put.status == 404
            assert "admin port" in put.json()["error"]
            good = {"authorization": "Bearer s3cret"}
            assert (await call(app, "GET", "/admin/routes", headers=good)).json() == {"routes": {}}

    asyncio.run(scenario())


def test_routes_persist_across_restarts(tmp_path: Path) -> None:
    route = {
        "mode": "canary",
        "champion": "v1",
        "challenger": "v2",
        "weight": 0.25,
        "shadow_fraction": 0.0,
        "active": "champion",
    }

    async def first() -> None:
        async with running(tmp_path, fake_pair()) as app:
            assert (await put_route(app, route)).status == 200

    async def second() -> dict[str, Any]:
        async with running(tmp_path, fake_pair()) as app:
            return dict((await call(app, "GET", "/admin/routes")).json())

    asyncio.run(first())
    saved = json.loads((tmp_path / "state" / "routes.json").read_text())
    assert saved["routes"] == {MODEL: route}
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]
    assert asyncio.run(second()) == {"routes": {MODEL: route}}
    (tmp_path / "state" / "routes.json").write_text('{"routes": {"x": {"mode": "nope"}}}')
    with pytest.raises(RouteError, match=r"routes\.json cannot be loaded"):
        create_app(state_dir=tmp_path / "state", log_dir=tmp_path / "log", upstream_url="h:1")


def test_stats_window_and_reset(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            xs = np.linspace(0, 1, 40 * WIDTH, dtype=np.float32).reshape(40, WIDTH)
            for x in xs:
                assert (await infer(app, x=x[None, :])).status == 200
            stats = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            v1 = stats["versions"]["v1"]
            assert v1["requests"] == 40
            assert v1["answered"] == 40
            assert v1["p50_ms"] > 0
            assert v1["p99_ms"] >= v1["p50_ms"]
            assert v1["mean_prediction"] == pytest.approx(float(xs.mean(axis=1).mean()), 1e-5)
            assert sum(v1["prediction_histogram"]) == 40
            assert len(v1["prediction_histogram"]) == 10
            assert stats["histogram_edges"][0] == 0.0
            assert stats["histogram_edges"][-1] == 1.0
            reset = (await call(app, "POST", f"/admin/stats/{MODEL}/reset")).json()
            assert reset["reset"] is True
            after = (await call(app, "GET", f"/admin/stats/{MODEL}")).json()
            assert after["since"] == reset["since"]
            assert after["versions"]["v1"]["requests"] == 0
            assert after["versions"]["v1"]["p50_ms"] is None
            # the Prometheus counters are cumulative, not reset
            families = {
                f.name: f
                for f in text_string_to_metric_families(
                    (await call(app, "GET", "/metrics")).body.decode()
                )
            }
            requests = families["lockgate_gateway_requests"].samples
            assert any(s.labels["version"] == "v1" and s.value == 40 for s in requests)
            latency = families["lockgate_gateway_latency_seconds"].samples
            count = next(s for s in latency if s.name.endswith("_count"))
            assert count.value == 40
            preds = families["lockgate_gateway_prediction"].samples
            inf = next(s for s in preds if s.labels.get("le") == "+Inf")
            assert inf.value == 40

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# prediction log


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_every_answered_request_is_logged(tmp_path: Path, durability: str) -> None:
    fake = fake_pair()

    async def scenario() -> list[Resp]:
        async with running(tmp_path, fake, durability=durability) as app:
            route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
            await put_route(app, route)
            rng = np.random.default_rng(0)
            xs = [
                rng.random((int(rng.integers(1, 5)), WIDTH), dtype=np.float32) for _ in range(300)
            ]
            responses = await gather_limited([infer(app, x=x) for x in xs], limit=64)
            # while running: the records are in the WAL, readable
            live = read_prediction_log(tmp_path / "log", MODEL)
            assert len(live) == 300
            for r, x in zip(responses, xs, strict=True):
                r.x = x  # type: ignore[attr-defined]
            return responses

    responses = asyncio.run(scenario())
    log = read_prediction_log(tmp_path / "log", MODEL).set_index("trace_id")
    assert len(log) == 300
    for r in responses:
        row = log.loc[r.trace]
        assert row.version == r.version
        assert row.routed_by == "canary"
        assert not row.shadow
        assert row.status == 200
        assert row.latency_ms > 0
        np.testing.assert_array_equal(np.stack(row.inputs), r.x)  # type: ignore[attr-defined]
        np.testing.assert_array_equal(np.stack(row.outputs), r.outputs())
    assert str(log.ts.dtype) == "datetime64[us, UTC]"
    # after a clean shutdown everything is Parquet, in the documented layout
    wal = tmp_path / "log" / "_wal"
    assert not list(wal.glob("wal-*.log"))
    parts = sorted((tmp_path / "log" / MODEL).glob("date=*/part-*.parquet"))
    assert parts
    assert not list((tmp_path / "log").rglob("*.tmp"))
    assert read_prediction_log(tmp_path / "log").shape[0] == 300


def wal_meta(trace: str, ts: int | None = None, **over: Any) -> dict[str, Any]:
    """Metadata of one prediction-log record (what ``_encode_record`` reads), now by default."""
    meta: dict[str, Any] = {
        "t": trace,
        "ts": int(time.time() * 1e6) if ts is None else ts,
        "m": MODEL,
        "v": "v1",
        "rb": "single",
        "st": 200,
        "lat": 1.0,
    }
    meta.update(over)
    return meta


def test_group_commit_waits_for_half_the_requests_in_flight_only_under_load(
    tmp_path: Path,
) -> None:
    """fsync commits are held (commit_delay_s) while commit_siblings or more requests in flight
    have no record, and released as soon as as many records wait as requests remain in flight
    (the rest keep the upstream busy meanwhile); light load is never held."""

    def meta(i: int) -> dict[str, Any]:
        return wal_meta(f"t{i}", i)

    async def scenario() -> None:
        # a long hold: a commit released before it was released by the records, not the
        # timer (no wall-clock assertion, only a generous bound on waiting)
        log = PredictionLog(
            tmp_path / "log", durability="fsync", commit_delay_s=60.0, commit_siblings=2
        )
        await log.start()
        stats = log.stats
        bound = 30.0
        try:
            # six requests in flight; the first record arrives alone and is held
            stats.inflight = 6
            first = log.append(_encode_record(meta(0), None, None))
            await asyncio.sleep(0.05)
            assert not first.done()
            second = log.append(_encode_record(meta(1), None, None))
            await asyncio.sleep(0.05)
            assert not second.done()  # 2 waiting, 4 still in flight: still held
            assert stats.wal_commits == 0
            third = log.append(_encode_record(meta(2), None, None))  # 3 waiting, 3 in flight
            await asyncio.wait_for(asyncio.gather(first, second, third), bound)
            assert (stats.wal_commits, stats.wal_records) == (1, 3)
            # two in flight (fewer than commit_siblings besides the waiter): committed at once
            stats.inflight = 2
            await asyncio.wait_for(log.append(_encode_record(meta(3), None, None)), bound)
            assert (stats.wal_commits, stats.wal_records) == (2, 4)
            # a held commit is released by the timer when the others never log
            log.commit_delay_s = 2.0
            stats.inflight = 6
            held = log.append(_encode_record(meta(4), None, None))
            await asyncio.sleep(0.05)
            assert not held.done()  # held: nothing else logs
            await asyncio.wait_for(held, bound)  # then the timer lets it go
            assert (stats.wal_commits, stats.wal_records) == (3, 5)
            stats.inflight = 0
        finally:
            await log.close()
        assert read_prediction_log(tmp_path / "log", MODEL).trace_id.tolist() == [
            f"t{i}" for i in range(5)
        ]

    asyncio.run(scenario())


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_wal_segments_roll_to_parquet_while_serving(tmp_path: Path, durability: str) -> None:
    async def scenario() -> None:
        async with running(
            tmp_path, fake_pair(), segment_max_bytes=4096, durability=durability
        ) as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            traces = [f"roll-{i}" for i in range(400)]
            await gather_limited([infer(app, trace=t) for t in traces], limit=20)
            deadline = time.monotonic() + 10
            while app.stats.segments_rolled < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert app.stats.segments_rolled >= 5
            parts = list((tmp_path / "log" / MODEL).glob("date=*/part-*.parquet"))
            assert len(parts) >= 5
            log = read_prediction_log(tmp_path / "log", MODEL)
            assert sorted(log.trace_id) == sorted(traces)  # no loss, no duplicates

    asyncio.run(scenario())


def test_admin_log_roll_puts_every_answered_request_in_parquet_now(tmp_path: Path) -> None:
    async def scenario() -> None:
        idle = create_app(
            state_dir=tmp_path / "idle",
            log_dir=tmp_path / "idle-log",
            upstream_url="h:1",
            admin_token=ADMIN_TOKEN,
        )
        refused = await call(idle, "POST", "/admin/log/roll")
        assert refused.status == 503
        assert "not started" in refused.json()["error"]
        async with running(tmp_path, fake_pair()) as app:  # default 60 s segments
            await put_route(app, {"mode": "single", "champion": "v1"})
            traces = [f"now-{i}" for i in range(30)]
            await gather_limited([infer(app, trace=t) for t in traces], limit=8)
            assert not list((tmp_path / "log").glob(f"{MODEL}/date=*/part-*.parquet"))
            resp = await call(app, "POST", "/admin/log/roll")
            assert resp.status == 200
            assert resp.json() == {"segments": 1, "records": 30}
            parts = list((tmp_path / "log").glob(f"{MODEL}/date=*/part-*.parquet"))
            assert len(parts) == 1
            assert sorted(pd.read_parquet(parts[0]).trace_id) == sorted(traces)
            # the fresh segment keeps logging; a second roll takes only what came since
            await infer(app, trace="after")
            assert (await call(app, "POST", "/admin/log/roll")).json() == {
                "segments": 1,
                "records": 1,
            }
            assert sorted(read_prediction_log(tmp_path / "log", MODEL).trace_id) == sorted(
                [*traces, "after"]
            )

    asyncio.run(scenario())


def test_leftover_wal_segment_is_recovered_at_startup(tmp_path: Path) -> None:
    wal = tmp_path / "log" / "_wal"
    wal.mkdir(parents=True)
    ts = int(time.time() * 1e6)
    records = [
        _encode_record(
            wal_meta(f"crash-{i}", ts + i, rb="canary"),
            np.full((1, WIDTH), i, np.float32),
            np.full((1, 1), i / 10, np.float32),
        )
        for i in range(10)
    ]
    segment = wal / "wal-00000000000000000007.log"
    segment.write_bytes(b"".join(records) + records[0][:13])  # torn final write

    async def scenario() -> None:
        async with running(tmp_path, fake_pair()) as app:
            assert app.stats.segments_rolled == 1

    asyncio.run(scenario())
    log = read_prediction_log(tmp_path / "log", MODEL)
    assert list(log.trace_id) == [f"crash-{i}" for i in range(10)]
    assert not segment.exists()
    assert (wal / (segment.name + ".torn")).exists()  # kept for inspection, not deleted
    day = time.strftime("%Y-%m-%d", time.gmtime(ts / 1e6))
    assert (tmp_path / "log" / MODEL / f"date={day}" / "part-00000000000000000007.parquet").exists()


def _roll_records(tmp_path: Path, data: bytes) -> tuple[Path, int]:
    from lockgate.gateway.predlog.parquet import roll_segment as _roll_segment

    wal = tmp_path / "log" / "_wal"
    wal.mkdir(parents=True, exist_ok=True)
    segment = wal / "wal-00000000000000000009.log"
    segment.write_bytes(data + bytes(64))  # preallocated zeros after the last record
    return segment, _roll_segment(segment, tmp_path / "log")


def test_wal_records_roll_to_every_column_unchanged(tmp_path: Path) -> None:
    ts = 1_790_000_000_000_000  # 2026-09-21 UTC; record 2 lands a day later
    cases: list[tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]] = [
        (
            {
                "t": "a" * 128,
                "ts": ts,
                "m": MODEL,
                "v": "v1",
                "rb": "canary",
                "st": 200,
                "lat": 0.25,
                "rid": "req-\u00e9-1",
            },
            np.arange(3 * WIDTH, dtype=np.float32).reshape(3, WIDTH),
            np.array([[0.5], [0.25], [-1.0]], np.float32),
        ),
        (  # an error: no outputs, a non-ASCII message, no request id
            {
                "t": "b",
                "ts": ts + 1,
                "m": MODEL,
                "v": "v2",
                "rb": "retry",
                "st": 502,
                "lat": 12.5,
                "err": "upstream \u2192 timed out",
            },
            np.ones((1, WIDTH), np.float64),  # stored as FP32
            None,
        ),
        (  # shadow record with per-row diffs, 1-D outputs, next UTC day
            {
                "t": "c",
                "ts": ts + 86_400_000_000,
                "m": MODEL,
                "v": "v2",
                "rb": "shadow",
                "sh": True,
                "st": 200,
                "lat": 1.0,
                "diff": np.array([0.125, 0.0], np.float32),
            },
            np.zeros((2, 2, 2), np.float32),  # rows of 2x2 are flattened to 4 values
            np.array([0.75, 0.5], np.float32),
        ),
        (  # unreadable body: no inputs at all; another model
            {
                "t": "d",
                "ts": ts + 2,
                "m": "other_model",
                "v": "v1",
                "rb": "single",
                "st": 400,
                "lat": 0.0,
                "err": "",
            },
            None,
            None,
        ),
        (
            {"t": "e", "ts": ts + 3, "m": MODEL, "v": "v1", "rb": "pinned", "st": 200, "lat": 0.5},
            np.zeros((0, WIDTH), np.float32),
            np.zeros((0, 1), np.float32),
        ),
    ]
    _, n = _roll_records(tmp_path, b"".join(_encode_record(m, x, y) for m, x, y in cases))
    assert n == len(cases)
    days = sorted(p.parent.name for p in (tmp_path / "log").rglob("part-*.parquet"))
    assert days == ["date=2026-09-21", "date=2026-09-21", "date=2026-09-22"]
    log = pd.concat(
        [
            read_prediction_log(tmp_path / "log", MODEL),
            read_prediction_log(tmp_path / "log", "other_model"),
        ]
    ).set_index("trace_id")
    assert sorted(log.index) == ["a" * 128, "b", "c", "d", "e"]
    for meta, x, y in cases:
        row = log.loc[meta["t"]]
        assert row.ts.value // 1000 == meta["ts"]
        assert (row.model, row.version, row.routed_by) == (meta["m"], meta["v"], meta["rb"])
        assert (row.status, row.latency_ms, row.shadow) == (
            meta["st"],
            meta["lat"],
            bool(meta.get("sh")),
        )
        assert row.request_id == meta.get("rid")
        assert row.error == meta.get("err")
        for got, want in ((row.inputs, x), (row.outputs, y)):
            if want is None:
                assert got is None
            else:
                flat = want.reshape(len(want), -1 if want.size else want.shape[-1])
                assert [list(r) for r in got] == flat.astype(np.float32).tolist()
        if "diff" in meta:
            assert list(row.shadow_abs_diff) == meta["diff"].tolist()
        else:
            assert row.shadow_abs_diff is None


def test_wal_segment_of_an_earlier_gateway_version_is_recovered(tmp_path: Path) -> None:
    """Version-1 segments (JSON record header) left by an older gateway still roll unchanged."""
    import struct
    import zlib

    def v1_frame(meta: dict[str, Any], x: np.ndarray | None, y: np.ndarray | None) -> bytes:
        meta = dict(meta)
        if x is not None:
            meta["ish"] = list(x.shape)
        if y is not None:
            meta["osh"] = list(y.shape)
        head = json.dumps(meta).encode()
        payload = struct.pack("<I", len(head)) + head
        payload += b"".join(a.astype("<f4").tobytes() for a in (x, y) if a is not None)
        return struct.pack("<4sII", b"LGW1", len(payload), zlib.crc32(payload)) + payload

    ts = int(time.time() * 1e6)
    frames = [
        v1_frame(
            wal_meta(
                f"old-{i}",
                ts + i,
                lat=0.5,
                **({"rid": f"r{i}"} if i % 2 else {"err": "boom", "st": 502}),
            ),
            np.full((1, WIDTH), i, np.float32),
            np.full((1, 1), i / 4, np.float32) if i % 2 else None,
        )
        for i in range(6)
    ]
    segment, n = _roll_records(tmp_path, b"".join(frames))
    assert n == 6
    assert not segment.exists()
    log = read_prediction_log(tmp_path / "log", MODEL)
    assert list(log.trace_id) == [f"old-{i}" for i in range(6)]
    assert list(log.request_id) == [None, "r1", None, "r3", None, "r5"]
    assert list(log.status) == [502, 200, 502, 200, 502, 200]
    assert [r[0][0] for r in log.inputs] == [0, 1, 2, 3, 4, 5]
    assert [None if o is None else o[0][0] for o in log.outputs] == [
        None,
        0.25,
        None,
        0.75,
        None,
        1.25,
    ]


def test_a_record_that_contradicts_its_header_ends_the_segment(tmp_path: Path) -> None:
    """A frame whose CRC holds but whose lengths do not add up (a writer bug, not a torn
    write) is not decoded: the records before it roll, and the segment is kept as .torn."""
    import struct
    import zlib

    def meta(i: int) -> dict[str, Any]:
        return wal_meta(f"r{i}")

    good = [_encode_record(meta(i), np.ones((1, WIDTH), np.float32), None) for i in range(3)]
    bad = bytearray(_encode_record(meta(3), np.ones((1, WIDTH), np.float32), None))
    payload = bad[12:]
    struct.pack_into("<I", payload, 37, 2)  # header says 2 input rows; the body holds 1
    forged = struct.pack("<4sII", b"LGW2", len(payload), zlib.crc32(payload)) + payload
    after = _encode_record(meta(4), None, None)
    segment, n = _roll_records(tmp_path, b"".join(good) + forged + after)
    assert n == 3
    assert list(read_prediction_log(tmp_path / "log", MODEL).trace_id) == ["r0", "r1", "r2"]
    assert not segment.exists()
    assert segment.with_name(segment.name + ".torn").exists()


def test_one_gateway_per_log_dir(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, fake_pair()):
            other = create_app(
                state_dir=tmp_path / "other", log_dir=tmp_path / "log", upstream_url="h:1"
            )
            with pytest.raises(Exception, match="in use by another gateway"):
                await other.startup()

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# over HTTP: fake upstream under uvicorn, the gateway as a subprocess


@contextlib.contextmanager
def serve_fake(fake: FakeTriton) -> Iterator[str]:
    """The fake KServe v2 server on a 127.0.0.1 port, under uvicorn in a thread; yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(fake, log_level="error", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def fake_http() -> Iterator[tuple[FakeTriton, str]]:
    fake = fake_pair()
    with serve_fake(fake) as url:
        yield fake, url


@pytest.fixture
def gateway(tmp_path: Path, fake_http: tuple[FakeTriton, str]) -> Iterator[GatewayServer]:
    server = GatewayServer(
        state_dir=str(tmp_path / "gw"), log_dir=str(tmp_path / "log"), upstream_url=fake_http[1]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_http_upstream_client_against_a_real_server(fake_http: tuple[FakeTriton, str]) -> None:
    fake, url = fake_http

    async def scenario() -> None:
        up = HttpUpstream(url.removeprefix("http://"), max_connections=4)
        try:
            body, headers = binary_request(ROW)
            results = await asyncio.gather(
                *[
                    up.request("POST", f"/v2/models/{MODEL}-v1/infer", body=body, headers=headers)
                    for _ in range(50)
                ]
            )
            assert {r.status for r in results} == {200}
            assert up._open <= 4
            missing = await up.request("GET", "/v2/models/nope")
            assert missing.status == 404
            fake.models[f"{MODEL}-v1"].delay_s = 0.5
            with pytest.raises(UpstreamError, match=r"within 0\.1 s") as info:
                await up.request(
                    "POST",
                    f"/v2/models/{MODEL}-v1/infer",
                    body=body,
                    headers=headers,
                    timeout_s=0.1,
                )
            assert info.value.status == 504
            fake.models[f"{MODEL}-v1"].delay_s = 0.0
            again = await up.request(
                "POST", f"/v2/models/{MODEL}-v1/infer", body=body, headers=headers
            )
            assert again.status == 200
        finally:
            await up.aclose()

    asyncio.run(scenario())
    assert fake.models[f"{MODEL}-v1"].calls == 52


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (f"/v2/models/{MODEL}\r\nX-Smuggled: 1-v1", {}),
        (f"/v2/models/{MODEL} HTTP/1.1", {}),
        ("/v2/models/fraud\u20ac-v1", {}),
        (f"/v2/models/{MODEL}-v1", {"X-A": "1\r\nX-B: 2"}),
        (f"/v2/models/{MODEL}-v1", {"X-A\n": "1"}),
    ],
)
def test_http_upstream_refuses_to_send_a_request_line_that_could_be_split(
    fake_http: tuple[FakeTriton, str], path: str, headers: dict[str, str]
) -> None:
    url = fake_http[1]

    async def scenario() -> None:
        up = HttpUpstream(url)
        try:
            with pytest.raises(GatewayError, match="characters outside visible ASCII"):
                await up.request("GET", path, headers=headers)
            ok = await up.request("GET", f"/v2/models/{MODEL}-v1", headers={"X-A": "a b"})
            assert ok.status == 200
        finally:
            await up.aclose()

    asyncio.run(scenario())


def test_tritonclient_works_unchanged_through_the_gateway(gateway: GatewayServer) -> None:
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    gateway.set_route(
        MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
    )
    assert gateway.routes()[MODEL]["weight"] == 0.5
    with pytest.raises(RouteError, match="requires 'weight'"):
        gateway.set_route(MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2"})
    client = th.InferenceServerClient(gateway.host_port)
    try:
        assert client.is_server_live()
        assert client.is_model_ready(MODEL)
        assert client.get_model_metadata(MODEL)["name"] == MODEL
        x = np.arange(8, dtype=np.float32).reshape(2, WIDTH)
        seen = Counter()
        for binary in (True, False):
            for i in range(40):
                inp = th.InferInput("INPUT__0", [2, WIDTH], "FP32")
                inp.set_data_from_numpy(x, binary_data=binary)
                out = th.InferRequestedOutput("OUTPUT__0", binary_data=binary)
                res = client.infer(MODEL, [inp], outputs=[out], request_id=f"id{i}")
                response = res.get_response()
                assert response["id"] == f"id{i}"
                assert response["model_name"] == MODEL
                assert len(response["parameters"]["lockgate_trace_id"]) == 32
                version = response["model_version"]
                seen[version] += 1
                expected = x.mean(axis=1, keepdims=True) + (0.1 if version == "v2" else 0.0)
                np.testing.assert_allclose(res.as_numpy("OUTPUT__0"), expected, atol=1e-6)
        assert set(seen) == {"v1", "v2"}
        inp = th.InferInput("INPUT__0", [2, WIDTH], "FP32")
        inp.set_data_from_numpy(x)
        pinned = client.infer(MODEL, [inp], model_version="v2")
        assert pinned.get_response()["model_version"] == "v2"
        bad = th.InferInput("INPUT__0", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
        with pytest.raises(InferenceServerException, match="this model takes 4"):
            client.infer(MODEL, [bad])
    finally:
        client.close()
    stats = gateway.stats(MODEL)  # the 400 is the client's fault: no version's request
    assert stats["versions"]["v1"]["requests"] + stats["versions"]["v2"]["requests"] == 81
    assert "lockgate_gateway_requests_total" in gateway.metrics()
    assert gateway.reset_stats(MODEL)["reset"] is True
    rolled = gateway.roll_log()  # every answered request, the 400 included, is in Parquet now
    assert rolled == {"segments": 1, "records": 82}
    parts = list(Path(gateway.log_dir).glob(f"{MODEL}/date=*/part-*.parquet"))
    assert sum(len(pd.read_parquet(p)) for p in parts) == 82


def test_kill_9_mid_load_loses_no_answered_request(
    tmp_path: Path, fake_http: tuple[FakeTriton, str]
) -> None:
    server = GatewayServer(
        state_dir=str(tmp_path / "gw"),
        log_dir=str(tmp_path / "log"),
        upstream_url=fake_http[1],
        segment_max_bytes=64 * 1024,  # several segments, some rolled, one open at the kill
    )
    server.start()
    server.set_route(MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.3})
    answered: list[str] = []
    errors = 0

    async def load() -> None:
        nonlocal errors
        up = HttpUpstream(server.url, timeout_s=5)
        body = json_request(ROW)
        stop_at = time.monotonic() + 1.5
        killed = False

        async def client(i: int) -> None:
            nonlocal errors
            n = 0
            while time.monotonic() < stop_at:
                trace = f"c{i}-{n}"
                n += 1
                try:
                    r = await up.request(
                        "POST",
                        f"/v2/models/{MODEL}/infer",
                        body=body,
                        headers={"x-lockgate-trace-id": trace},
                    )
                except Exception:
                    errors += 1
                    await asyncio.sleep(0.01)
                    continue
                if r.status == 200:
                    answered.append(r.headers["x-lockgate-trace-id"])

        async def killer() -> None:
            nonlocal killed
            await asyncio.sleep(0.7)
            server.kill()  # SIGKILL, mid-load
            killed = True

        await asyncio.gather(*[client(i) for i in range(16)], killer())
        await up.aclose()
        assert killed

    asyncio.run(load())
    assert len(answered) > 100
    assert errors > 0
    # before recovery: the leftover WAL segment(s) are readable as they are
    segments = list((tmp_path / "log" / "_wal").glob("wal-*.log"))
    assert segments
    logged = set(read_prediction_log(tmp_path / "log", MODEL).trace_id)
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} answered requests are not in the log"
    # a restart converts the leftovers to Parquet first
    server.start()
    try:
        assert server.routes()[MODEL]["weight"] == 0.3
        assert not [s for s in segments if s.exists()]
        parquet_only = set(read_prediction_log(tmp_path / "log", MODEL).trace_id)
        assert set(answered) <= parquet_only
    finally:
        server.stop()
    assert not os.path.exists(server.pid_file)


def test_fsync_helper_is_restarted_after_it_dies(tmp_path: Path) -> None:
    import signal

    async def scenario() -> None:
        async with running(tmp_path, fake_pair(), durability="fsync") as app:
            await put_route(app, {"mode": "single", "champion": "v1"})
            assert (await infer(app)).status == 200
            syncer = app.log._syncer
            assert syncer is not None
            assert syncer.proc is not None
            old = syncer.proc.pid
            os.kill(old, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while syncer.proc is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # the event loop sees the pipe close
            responses = await asyncio.gather(*[infer(app) for _ in range(20)])
            assert {r.status for r in responses} == {200}
            assert syncer.proc is not None
            assert syncer.proc.pid != old
            # dead before the event loop noticed: the next commit's write meets EPIPE, starts
            # a new helper and is synced by it
            second = syncer.proc
            os.kill(second.pid, signal.SIGKILL)
            second.wait()
            assert app.log._seg_path is not None
            await syncer.sync(app.log._seg_path)
            assert syncer.proc is not None
            assert syncer.proc.pid not in (old, second.pid)
            responses = await asyncio.gather(*[infer(app) for _ in range(5)])
            assert {r.status for r in responses} == {200}
            assert syncer.proc is not None
            assert syncer.proc.pid not in (old, second.pid)

    asyncio.run(scenario())
    assert len(read_prediction_log(tmp_path / "log", MODEL)) == 26


def test_coalescing_transport_sends_headers_and_body_together() -> None:
    from lockgate.gateway.server import _CoalescingTransport

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def close(self) -> None:
            self.closed = True

        def get_extra_info(self, name: str) -> str:
            return f"info:{name}"

    async def scenario() -> None:
        raw = Recorder()
        t = _CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
        t.write(head)
        t.write(b"{}")
        assert raw.writes == [head + b"{}"]
        t.write(head)  # a response without a body write (HEAD): flushed at the end of the step
        assert len(raw.writes) == 1
        await asyncio.sleep(0)
        assert raw.writes[-1] == head
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # never held
        assert raw.writes[-1] == b"HTTP/1.1 100 Continue\r\n\r\n"
        t.write(head)
        t.close()
        assert raw.writes[-1] == head
        assert raw.closed
        assert t.get_extra_info("peername") == "info:peername"

    asyncio.run(scenario())
