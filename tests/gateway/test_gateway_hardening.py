"""The serving path under a full disk, hostile model names, client-chosen trace ids and bad
headers: a real gateway process (GatewayServer) in front of the fake KServe v2 upstream of
``tests/gateway/test_gateway.py`` served by uvicorn in a thread.

The full-disk test mounts a small tmpfs of its own (root or CAP_SYS_ADMIN; skipped otherwise),
fills it while requests are answered, frees it, and checks the prediction log against every
answer the clients got.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from lockgate.gateway.predlog import iter_prediction_log
from lockgate.gateway.process import GatewayServer
from lockgate.gateway.routing import traffic_fraction
from lockgate.gateway.upstream import HttpUpstream
from lockgate.serving.wire import encode

from .test_gateway import (
    FRAME,
    MODEL,
    SCHEMA,
    WIDTH,
    FakeTriton,
    binary_request,
    fake_pair,
    json_request,
    serve_fake,
    write_wire,
)

# real servers on loopback (uvicorn, gateway processes, a Feast store): the integration layer
pytestmark = pytest.mark.integration


@pytest.fixture
def upstream() -> Iterator[tuple[FakeTriton, str]]:
    """The fake KServe v2 server on a 127.0.0.1 port, under uvicorn in a thread."""
    fake = fake_pair()
    with serve_fake(fake) as url:
        yield fake, url


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test only (unmounted after it)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine: the full-disk test needs a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a 1 MiB tmpfs at {mount} ({done.stderr.strip()}); the full-disk "
            "test needs root or CAP_SYS_ADMIN"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _parquet_traces(log_dir: Path) -> list[str]:
    traces: list[str] = []
    for part in sorted(log_dir.glob(f"{MODEL}/date=*/part-*.parquet")):
        traces += pq.read_table(part, columns=["trace_id"]).column("trace_id").to_pylist()
    return traces


def _iter_traces(log_dir: Path) -> list[str]:
    return [
        t
        for batch in iter_prediction_log(log_dir, MODEL, columns=["trace_id"])
        for t in batch.column("trace_id").to_pylist()
    ]


# ---------------------------------------------------------------------------------------------
# item 1: a full disk loses no answered request


@pytest.mark.parametrize("durability", ["fsync", "flush"])
def test_a_full_disk_loses_no_answered_request(
    tmp_path: Path, small_disk: Path, upstream: tuple[FakeTriton, str], durability: str
) -> None:
    log_dir = small_disk / "log"
    server = GatewayServer(
        state_dir=str(tmp_path / "gw"),  # routes and the gateway's own log stay off the tmpfs
        log_dir=str(log_dir),
        upstream_url=upstream[1],
        durability=durability,
        segment_max_bytes=64 * 1024,  # segments rotate (and roll) while the disk is full
    )
    answers: dict[str, tuple[int, str]] = {}
    rng = np.random.default_rng(5)

    async def load(prefix: str, requests: int, until_full: int | None = None) -> None:
        up = HttpUpstream(server.url, timeout_s=30, max_connections=8)
        counter = iter(range(requests))
        full = 0

        async def client() -> None:
            nonlocal full
            for i in counter:
                if until_full is not None and full >= until_full:
                    return
                trace = f"{prefix}-{i}"
                rows = int(rng.integers(20, 160))  # records of 0.4-2.7 kB: they straddle pages
                if i % 11 == 5:  # a client error is answered, and logged, too
                    x = np.ones((rows, WIDTH + 1), np.float32)
                else:
                    x = rng.normal(size=(rows, WIDTH)).astype(np.float32)
                body, headers = binary_request(x) if i % 2 else (json_request(x), {})
                r = await up.request(
                    "POST",
                    f"/v2/models/{MODEL}/infer",
                    body=body,
                    headers={**headers, "x-lockgate-trace-id": trace},
                )
                message = json.loads(r.body).get("error", "") if r.status != 200 else ""
                answers[trace] = (r.status, message)
                if r.status == 503:
                    full += 1

        try:
            await asyncio.gather(*[client() for _ in range(8)])
        finally:
            await up.aclose()

    server.start()
    try:
        server.set_route(
            MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.3}
        )
        asyncio.run(load("before", 40))
        filler = small_disk / "filler"
        with open(filler, "wb") as f:  # leave ~40 kB: the log fills the rest
            f.write(b"\1" * (shutil.disk_usage(small_disk).free - 40 * 1024))
        asyncio.run(load("full", 3000, until_full=60))
        refused = [t for t, (st, _) in answers.items() if st == 503]
        assert len(refused) >= 60, "the disk never filled up"
        for t in refused:
            assert "free disk space" in answers[t][1], answers[t]
        filler.unlink()  # space is back
        asyncio.run(load("after", 120))
        assert all(answers[f"after-{i}"][0] in (200, 400) for i in range(120))
        # readable while the gateway runs: WAL segments and Parquet parts together
        live = _iter_traces(log_dir)
        rolled = server.roll_log()
        assert rolled["records"] > 0
    finally:
        server.stop()
    answered = {t for t, (st, _) in answers.items() if st != 503}
    assert {st for st, _ in answers.values()} == {200, 400, 503}
    parquet = _parquet_traces(log_dir)
    assert len(parquet) == len(set(parquet))
    assert set(parquet) == answered, (
        f"{len(answered - set(parquet))} of {len(answered)} answered requests are missing from "
        f"the Parquet log; {len(set(parquet) - answered)} unanswered ones are in it"
    )
    assert set(live) == answered
    assert set(_iter_traces(log_dir)) == answered
    assert not list(log_dir.rglob("*.torn"))
    assert not list(log_dir.rglob("*.tmp"))
    assert not [p for p in (log_dir / "_wal").iterdir() if p.name != "LOCK"]
    assert os.path.ismount(small_disk)


def _http(
    url: str, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with the target sent exactly as given (percent escapes and all)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# item 3: model names are validated on every path


SMUGGLING_NAMES = [
    "fraud_lgbm%0d%0aX-Smuggled:%201",  # CR LF: a second header line upstream
    "fraud_lgbm%0a",  # a lone final LF ('$' in a regex lets it through)
    "fraud_lgbm%20x",  # a space ends the request target
    "fraud%E2%82%AC",  # not latin-1: the upstream request line cannot even be encoded
    "fraud%C3%A9",  # latin-1, not ASCII
]


@pytest.mark.parametrize("name", SMUGGLING_NAMES)
def test_model_names_are_validated_on_every_path_before_going_upstream(
    tmp_path: Path, upstream: tuple[FakeTriton, str], name: str
) -> None:
    fake = upstream[0]
    body = json_request(np.ones((1, WIDTH), np.float32))
    with GatewayServer(
        state_dir=str(tmp_path / "gw"), log_dir=str(tmp_path / "log"), upstream_url=upstream[1]
    ) as server:
        server.set_route(MODEL, {"mode": "single", "champion": "v1"})
        for method, target in [
            ("POST", f"/v2/models/{name}/versions/v1/infer"),
            ("POST", f"/v2/models/{name}/infer"),
            ("GET", f"/v2/models/{name}/versions/v1"),
            ("GET", f"/v2/models/{name}/versions/v1/ready"),
            ("GET", f"/v2/models/{name}/versions/v1/config"),
            ("GET", f"/v2/models/{name}"),
            ("GET", f"/admin/routes/{name}"),
            ("GET", f"/admin/stats/{name}"),
            ("POST", f"/admin/stats/{name}/reset"),
        ]:
            admin = target.startswith("/admin")  # the admin listener, with token and actor
            url = server.admin_url if admin else server.url
            auth = {"Authorization": f"Bearer {server.token()}", "x-lockgate-actor": "t"}
            data = body if method == "POST" else b""
            status, _, out = _http(url, method, target, data, auth if admin else None)
            assert status == 400, (method, target, status, out)
            error = json.loads(out)["error"]
            assert "is invalid; use 1-128 characters" in error, error
            assert "letters, digits, '_' and '.'" in error, error
        assert sum(m.calls for m in fake.models.values()) == 0
        # the gateway still serves, and a valid name still works on every path
        status, _, out = _http(server.url, "POST", f"/v2/models/{MODEL}/versions/v1/infer", body)
        assert status == 200, out
        log_text = server.log_file.read_text()
    assert "Traceback" not in log_text


@pytest.mark.parametrize("version", ["v1%0a", "v1%0d%0aX:%201", "v%E2%82%AC"])
def test_pinned_versions_are_validated_before_going_upstream(
    tmp_path: Path, upstream: tuple[FakeTriton, str], version: str
) -> None:
    body = json_request(np.ones((1, WIDTH), np.float32))
    with GatewayServer(
        state_dir=str(tmp_path / "gw"), log_dir=str(tmp_path / "log"), upstream_url=upstream[1]
    ) as server:
        status, _, out = _http(
            server.url, "POST", f"/v2/models/{MODEL}/versions/{version}/infer", body
        )
    assert status == 400, out
    assert "is not a lockgate version id; use 1-128 characters" in json.loads(out)["error"]
    assert sum(m.calls for m in upstream[0].models.values()) == 0


# ---------------------------------------------------------------------------------------------
# item 9: a client can neither choose its version nor poison a canary


def _versions(url: str, traces: list[str]) -> list[str]:
    body = json_request(np.ones((1, WIDTH), np.float32))

    async def run() -> list[str]:
        up = HttpUpstream(url, max_connections=8)
        sem = asyncio.Semaphore(8)

        async def one(trace: str) -> str:
            async with sem:
                r = await up.request(
                    "POST",
                    f"/v2/models/{MODEL}/infer",
                    body=body,
                    headers={"x-lockgate-trace-id": trace},
                )
            assert r.status == 200, r.body
            return r.headers["x-lockgate-model-version"]

        try:
            return list(await asyncio.gather(*[one(t) for t in traces]))
        finally:
            await up.aclose()

    return asyncio.run(run())


def test_canary_routing_is_keyed_by_a_per_gateway_secret(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    route = {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
    traces = [f"pick-{i}" for i in range(400)]
    seen: dict[str, list[str]] = {}
    for gw in ("a", "b"):
        with GatewayServer(
            state_dir=str(tmp_path / gw),
            log_dir=str(tmp_path / f"log-{gw}"),
            upstream_url=upstream[1],
        ) as server:
            server.set_route(MODEL, route)
            seen[gw] = _versions(server.url, traces)
            assert _versions(server.url, traces) == seen[gw]  # sticky within the gateway's life
    with GatewayServer(
        state_dir=str(tmp_path / "a"), log_dir=str(tmp_path / "log-a"), upstream_url=upstream[1]
    ) as server:
        assert _versions(server.url, traces) == seen["a"]  # and across its restarts
    # the public, unkeyed hash does not tell a client where its trace id goes; other gateways
    # (other secrets) split the same trace ids another way
    public = ["v2" if traffic_fraction(model=MODEL, trace_id=t) < 0.5 else "v1" for t in traces]
    for a, b in ((seen["a"], seen["b"]), (seen["a"], public), (seen["b"], public)):
        agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(traces)
        assert 0.3 < agree < 0.7, agree  # independent: about half agree by chance
    for versions in seen.values():
        assert 0.4 < versions.count("v2") / len(traces) < 0.6
    for gw in ("a", "b"):  # the secret is readable by the gateway's user only
        assert (tmp_path / gw / "routing.key").stat().st_mode & 0o077 == 0


def test_bad_categorical_codes_are_client_errors_never_counted_against_the_challenger(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    fake = upstream[0]
    repo = write_wire(tmp_path / "repo", "v1", "v2")
    x = encode(FRAME, SCHEMA)
    x[:, 2] = 7.5  # 'plan' is categorical: 7.5 is no code24
    body, headers = binary_request(x)
    with GatewayServer(
        state_dir=str(tmp_path / "gw"),
        log_dir=str(tmp_path / "log"),
        upstream_url=upstream[1],
        model_repository=str(repo),
    ) as server:
        server.set_route(
            MODEL, {"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.5}
        )
        for i in range(60):
            status, _, out = _http(
                server.url,
                "POST",
                f"/v2/models/{MODEL}/infer",
                body,
                {**headers, "x-lockgate-trace-id": f"poison-{i}"},
            )
            assert status == 400, out
            error = json.loads(out)["error"]
            assert "column 2 ('plan')" in error, error
            assert "holds 7.5" in error, error
            assert "fix: send the features by name" in error, error
        stats = server.stats(MODEL)["versions"]
        for v in ("v1", "v2"):  # nothing a canary judges a version by
            assert (stats[v]["errors"], stats[v]["schema_violations"]) == (0, 0), stats[v]
    assert fake.models[f"{MODEL}-v1"].calls + fake.models[f"{MODEL}-v2"].calls == 0


# ---------------------------------------------------------------------------------------------
# item 10: messages name the value, the rule and the fix


def _binary_with_header_length(x: np.ndarray, length: int) -> bytes:
    """A binary request whose JSON header is exactly ``length`` bytes (padded in its id)."""
    body, headers = binary_request(x)
    hlen = int(headers["Inference-Header-Content-Length"])
    head = json.loads(body[:hlen])
    head["id"] = ""
    pad = length - len(json.dumps(head).encode())
    assert pad >= 0
    head["id"] = "p" * pad
    raw = json.dumps(head).encode()
    assert len(raw) == length
    return raw + body[hlen:]


@pytest.mark.parametrize("header", ["24_5", "+245", "0xf5", "abc", "245.0", "2450", "0"])
def test_a_bad_inference_header_content_length_is_named(
    tmp_path: Path, upstream: tuple[FakeTriton, str], header: str
) -> None:
    body = _binary_with_header_length(np.ones((2, WIDTH), np.float32), 245)
    with GatewayServer(
        state_dir=str(tmp_path / "gw"), log_dir=str(tmp_path / "log"), upstream_url=upstream[1]
    ) as server:
        server.set_route(MODEL, {"mode": "single", "champion": "v1"})
        ok, _, out = _http(
            server.url,
            "POST",
            f"/v2/models/{MODEL}/infer",
            body,
            {"Inference-Header-Content-Length": "245"},
        )
        assert ok == 200, out
        status, _, out = _http(
            server.url,
            "POST",
            f"/v2/models/{MODEL}/infer",
            body,
            {"Inference-Header-Content-Length": header},
        )
        stats = server.stats(MODEL)["versions"]["v1"]
    assert status == 400, out
    error = json.loads(out)["error"]
    assert "header Inference-Header-Content-Length=" in error, error
    assert "plain decimal digits" in error, error
    assert "fix: send len(json_header)" in error, error
    assert "body is not valid JSON" not in error, error
    assert (stats["errors"], stats["schema_violations"]) == (0, 0)
    assert upstream[0].models[f"{MODEL}-v1"].calls == 1


@pytest.mark.parametrize(
    ("data", "what"),
    [
        ([[1.0, None, 3.0, 4.0]], "JSON null at flat position 1"),
        ([[1.0, 2.0, "NaN", 4.0]], "JSON str 'NaN' at flat position 2"),
        ([[True, None, 3.0, 4.0]], "JSON bool 'True' at flat position 0"),
        ([["a", "b", "c", "d"]], "JSON str 'a' at flat position 0"),
    ],
)
def test_non_numbers_in_the_wire_tensor_say_how_to_send_a_missing_value(
    tmp_path: Path, upstream: tuple[FakeTriton, str], data: list[list[object]], what: str
) -> None:
    tensor = {"name": "INPUT__0", "datatype": "FP32", "shape": [1, WIDTH], "data": data}
    body = json.dumps({"inputs": [tensor]}).encode()
    with GatewayServer(
        state_dir=str(tmp_path / "gw"), log_dir=str(tmp_path / "log"), upstream_url=upstream[1]
    ) as server:
        server.set_route(MODEL, {"mode": "single", "champion": "v1"})
        status, _, out = _http(server.url, "POST", f"/v2/models/{MODEL}/infer", body)
    assert status == 400, out
    error = json.loads(out)["error"]
    assert what in error, error
    assert "-kind" not in error, error  # no numpy jargon
    assert "send a missing value as NaN" in error, error
    assert "binary_data=True" in error, error
    assert "JSON null means missing" in error, error
