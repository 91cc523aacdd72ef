"""Resource limits of the serving path, against a real gateway process (GatewayServer on
uvicorn + httptools) in front of the fake KServe v2 upstream of ``tests/gateway/test_gateway.py``.

Each test talks raw HTTP/1.1 over a socket, so that it can send what no well-behaved client
sends: a body that inflates far beyond the limit, a URL or a header that never ends, a header
trickle, a body that stops arriving, more idle connections than the cap.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lockgate.gateway.process import GatewayServer

from .test_gateway import MODEL, WIDTH, FakeTriton, fake_pair, json_request, serve_fake

# real servers on loopback (uvicorn, gateway processes, a Feast store): the integration layer
pytestmark = pytest.mark.integration

BOUND_S = 30.0  # how long a test waits for an answer at most: a bound, not an assertion


@pytest.fixture
def upstream() -> Iterator[tuple[FakeTriton, str]]:
    """The fake KServe v2 server on a 127.0.0.1 port, under uvicorn in a thread."""
    fake = fake_pair()
    with serve_fake(fake) as url:
        yield fake, url


def _gateway(tmp_path: Path, upstream_url: str, **limits: object) -> GatewayServer:
    return GatewayServer(
        state_dir=str(tmp_path / "gw"),
        log_dir=str(tmp_path / "log"),
        upstream_url=upstream_url,
        **limits,  # type: ignore[arg-type]
    )


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=BOUND_S)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (content-length framed) from ``sock``; (0, {}, b"") if it closed first."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: a pipelined answer may follow
        byte = sock.recv(1)
        if not byte:
            return 0, {}, b""
        head += byte
    head, body = head[:-4], b""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return status, headers, body


def _closed(sock: socket.socket) -> bool:
    """Whether the peer closed ``sock`` (reads what is left; waits up to BOUND_S for it)."""
    sock.settimeout(BOUND_S)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _get(sock: socket.socket, path: str = "/v2/health/live") -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: gw\r\n\r\n".encode())
    return _read_response(sock)[0]


def _infer(url: str) -> int:
    body = json_request(np.ones((1, WIDTH), np.float32))
    with _connect(url) as sock:
        sock.sendall(
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nhost: gw\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body
        )
        return _read_response(sock)[0]


def _send_in_background(sock: socket.socket, data: bytes) -> threading.Thread:
    """Send ``data`` in 64 KiB pieces from a thread; stops quietly once the server closes."""

    def run() -> None:
        try:
            for i in range(0, len(data), 65536):
                sock.sendall(data[i : i + 65536])
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def _gzip_bomb(inflated: int) -> bytes:
    """A gzip member of ``inflated`` zero bytes, compressed in 1 MiB steps (a few hundred KB)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [comp.compress(block) for _ in range(inflated >> 20)]
    return b"".join(parts) + comp.flush()


# ---------------------------------------------------------------------------------------------
# body: the limit holds after decompression


def test_a_gzip_bomb_is_refused_413_with_bounded_memory(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    inflated = 512 << 20
    bomb = _gzip_bomb(inflated)
    assert len(bomb) < 1 << 20
    with _gateway(tmp_path, upstream[1]) as gw:
        gw.set_route(MODEL, {"mode": "single", "champion": "v1"})
        assert _infer(gw.url) == 200
        assert gw.pid is not None
        before = _peak_rss_bytes(gw.pid)
        with _connect(gw.url) as sock:
            sock.sendall(
                f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nhost: gw\r\n"
                f"content-encoding: gzip\r\ncontent-length: {len(bomb)}\r\n\r\n".encode()
                + bomb
            )
            status, _, body = _read_response(sock)
        assert status == 413, body
        error = json.loads(body)["error"]
        assert "after decompression" in error, error
        assert str(64 << 20) in error, error
        grown = _peak_rss_bytes(gw.pid) - before
        # the default limit is 64 MiB: the gateway never held the 512 MiB it would inflate to
        assert grown < inflated // 2, f"peak RSS grew by {grown >> 20} MiB"
        assert _infer(gw.url) == 200


def test_inflating_stops_at_the_limit_and_checks_the_stream() -> None:
    from lockgate.gateway.asgi import inflate_body as _inflate_body
    from lockgate.gateway.errors import ReplyError as _ReplyError

    data = json.dumps({"x": list(range(2000))}).encode()

    def gz(raw: bytes) -> bytes:
        comp = zlib.compressobj(6, zlib.DEFLATED, 31)
        return comp.compress(raw) + comp.flush()

    async def scenario() -> None:
        assert await _inflate_body(gz(data), "gzip", len(data)) == data
        assert await _inflate_body(zlib.compress(data), "deflate", len(data)) == data
        # gzip allows several members, concatenated
        assert await _inflate_body(gz(data) + gz(data), "gzip", 2 * len(data)) == data + data
        with pytest.raises(_ReplyError) as over:
            await _inflate_body(gz(data), "gzip", len(data) - 1)
        assert over.value.status == 413
        with pytest.raises(_ReplyError) as cut:
            await _inflate_body(gz(data)[:-12], "gzip", len(data))
        assert cut.value.status == 400
        assert "truncated" in str(cut.value)
        with pytest.raises(_ReplyError) as junk:
            await _inflate_body(b"not gzip at all", "gzip", len(data))
        assert junk.value.status == 400
        with pytest.raises(_ReplyError) as tail:
            await _inflate_body(zlib.compress(data) + b"x", "deflate", len(data))
        assert tail.value.status == 400

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------------
# request head: URL and header size caps, answered while they still arrive


def test_a_1mb_url_is_refused_414_before_it_ends(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1]) as gw, _connect(gw.url) as sock:
        # the request line never ends: a server that buffers the URL whole never answers
        sender = _send_in_background(sock, b"GET /" + b"a" * (1 << 20))
        status, headers, body = _read_response(sock)
        assert status == 414, body
        assert headers["connection"] == "close"
        assert "URL" in json.loads(body)["error"]
        assert _closed(sock)
        sender.join(BOUND_S)
        with _connect(gw.url) as fresh:
            assert _get(fresh) == 200


def test_a_1mb_header_is_refused_431_before_it_ends(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1]) as gw, _connect(gw.url) as sock:
        head = b"GET /v2/health/live HTTP/1.1\r\nhost: gw\r\nx-big: "
        sender = _send_in_background(sock, head + b"a" * (1 << 20))
        status, _, body = _read_response(sock)
        assert status == 431, body
        assert "header" in json.loads(body)["error"]
        assert _closed(sock)
        sender.join(BOUND_S)
        with _connect(gw.url) as fresh:
            assert _get(fresh) == 200


def test_many_small_headers_add_up_to_the_cap(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1], max_header_bytes=4096) as gw:
        with _connect(gw.url) as sock:
            lines = "".join(f"x-h{i}: {'v' * 40}\r\n" for i in range(100))  # about 4.9 KB
            sock.sendall(f"GET /v2/health/live HTTP/1.1\r\n{lines}\r\n".encode())
            assert _read_response(sock)[0] == 431
        with _connect(gw.url) as sock:
            lines = "".join(f"x-h{i}: {'v' * 40}\r\n" for i in range(60))  # about 2.9 KB
            sock.sendall(f"GET /v2/health/live HTTP/1.1\r\n{lines}\r\n".encode())
            assert _read_response(sock)[0] == 200


# ---------------------------------------------------------------------------------------------
# connections: a cap, the oldest idle closed first


def test_idle_connections_beyond_the_cap_close_the_oldest_idle_first(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1], max_connections=4, keepalive_timeout_s=600) as gw:
        gw.set_route(MODEL, {"mode": "single", "champion": "v1"})
        socks = [_connect(gw.url) for _ in range(4)]
        try:
            for sock in socks:  # each answered one request and stays open, idle, in this order
                assert _get(sock) == 200
            socks.append(_connect(gw.url))  # a fifth: the oldest idle one makes room
            assert _get(socks[4]) == 200
            assert _closed(socks[0])
            assert _get(socks[1]) == 200  # idle since just now: socks[2] is the oldest idle
            socks.append(_connect(gw.url))
            assert _get(socks[5]) == 200
            assert _closed(socks[2])
            for sock in (socks[1], socks[3], socks[4]):
                assert _get(sock) == 200  # still open
            assert _infer(gw.url) == 200  # a normal request on a new connection
        finally:
            for sock in socks:
                sock.close()


def test_connections_beyond_the_cap_are_refused_503_when_none_is_idle(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1], max_connections=2, header_timeout_s=600) as gw:
        busy = [_connect(gw.url) for _ in range(2)]
        try:
            for sock in busy:  # a request that is still arriving: not idle
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
            with _connect(gw.url) as extra:
                status, _, body = _read_response(extra)
                assert status == 503, body
                assert "max_connections=2" in json.loads(body)["error"]
            busy[0].sendall(b"host: gw\r\n\r\n")  # the busy ones still complete
            assert _read_response(busy[0])[0] == 200
        finally:
            for sock in busy:
                sock.close()


def test_a_full_inference_listener_never_blocks_the_admin_listener(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    # what a flood of clients must not do: take the connections a rollback needs. Before each
    # listener was counted apart, the busy inference connections evicted the controller's idle
    # admin connection and a new admin call was answered 503.
    with _gateway(
        tmp_path, upstream[1], max_connections=2, header_timeout_s=600, keepalive_timeout_s=600
    ) as gw:
        controller = _connect(gw.admin_url)
        busy = [_connect(gw.url) for _ in range(2)]
        try:
            assert _get(controller) == 200  # an idle keep-alive admin connection, the oldest
            for sock in busy:  # the inference listener at its cap, every connection busy
                sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
            with _connect(gw.url) as extra:
                status, _, body = _read_response(extra)
                assert status == 503, body
                assert "max_connections=2" in json.loads(body)["error"]
            assert _get(controller) == 200  # not evicted for the inference cap
            route = {"mode": "single", "champion": "v1"}
            stored = gw.set_route(MODEL, route)  # a new admin call goes through
            assert (stored["mode"], stored["champion"]) == ("single", "v1")
            assert gw.routes()[MODEL]["champion"] == "v1"
        finally:
            controller.close()
            for sock in busy:
                sock.close()


def test_the_admin_listener_has_its_own_cap(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with (
        _gateway(tmp_path, upstream[1], max_admin_connections=1, header_timeout_s=600) as gw,
        _connect(gw.admin_url) as busy,
    ):
        busy.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        with _connect(gw.admin_url) as extra:
            status, _, body = _read_response(extra)
            assert status == 503, body
            error = json.loads(body)["error"]
            assert "admin listener holds max_admin_connections=1 busy connections" in error
            assert "--max-admin-connections" in error
        with _connect(gw.url) as sock:
            assert _get(sock) == 200  # the inference listener is not affected
        busy.sendall(b"host: gw\r\n\r\n")
        assert _read_response(busy)[0] == 200


# ---------------------------------------------------------------------------------------------
# timeouts: slow headers, a body that stops arriving, silent connections


def test_a_slowloris_header_trickle_is_closed_after_the_header_timeout(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1], header_timeout_s=1.0) as gw, _connect(gw.url) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nhost: gw\r\n")
        sock.settimeout(0.25)
        answer = b""
        closed = False
        for i in range(int(BOUND_S / 0.25)):  # one header line every 0.25 s, never the end
            try:
                sock.sendall(f"x-slow-{i}: a\r\n".encode())
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            answer += chunk
        assert closed
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        with _connect(gw.url) as fresh:
            assert _get(fresh) == 200


def test_a_body_that_stops_arriving_is_closed_after_the_body_timeout(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1], body_timeout_s=1.0) as gw, _connect(gw.url) as sock:
        gw.set_route(MODEL, {"mode": "single", "champion": "v1"})
        sock.sendall(
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nhost: gw\r\n"
            'content-length: 1000\r\n\r\n{"inputs": '.encode()
        )
        status, _, body = _read_response(sock)
        assert status == 408, body
        assert "body" in json.loads(body)["error"]
        assert _closed(sock)
        assert _infer(gw.url) == 200


def test_a_silent_connection_is_closed_after_the_keepalive_timeout(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    with _gateway(tmp_path, upstream[1], keepalive_timeout_s=1.0) as gw:
        with _connect(gw.url) as silent:
            assert _closed(silent)  # never sent a byte
        with _connect(gw.url) as after_one:
            assert _get(after_one) == 200
            assert _closed(after_one)  # idle after its request


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_connections", 0),
        ("max_url_bytes", 10),
        ("max_header_bytes", 100),
        ("header_timeout_s", 0),
        ("body_timeout_s", -1),
        ("keepalive_timeout_s", 0),
    ],
)
def test_limits_out_of_range_are_refused_with_the_rule(
    tmp_path: Path, field: str, value: float
) -> None:
    with pytest.raises(ValueError, match=field):
        _gateway(tmp_path, "http://127.0.0.1:1", **{field: value})


def test_requests_split_across_reads_and_pipelined_requests_are_served(
    tmp_path: Path, upstream: tuple[FakeTriton, str]
) -> None:
    body = json_request(np.ones((1, WIDTH), np.float32))
    head = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nhost: gw\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode()
    with _gateway(tmp_path, upstream[1], max_header_bytes=1024) as gw, _connect(gw.url) as sock:
        gw.set_route(MODEL, {"mode": "single", "champion": "v1"})
        for piece in (head[:10], head[10:50], head[50:], body[:5], body[5:]):
            sock.sendall(piece)
            time.sleep(0.05)
        assert _read_response(sock)[0] == 200
        get = b"GET /v2/health/live HTTP/1.1\r\nhost: gw\r\n\r\n"
        sock.sendall(head + body + get + head + body)  # three requests in one write
        assert [_read_response(sock)[0] for _ in range(3)] == [200, 200, 200]
        assert _get(sock) == 200


def test_the_connection_cap_fits_the_open_file_limit() -> None:
    """Raised to the cap where the hard limit allows, the cap lowered (with a warning) where
    not; in a child process, whose limits the test may lower for good."""
    code = (
        "import resource\n"
        "from lockgate.gateway.server import ServerLimits, fit_open_files as _fit_open_files\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))\n"
        "print(_fit_open_files(ServerLimits(max_connections=600)).max_connections,\n"
        "      resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (512, 512))\n"
        "print(_fit_open_files(ServerLimits(max_connections=600)).max_connections)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = done.stdout.splitlines()
    assert first.split() == ["600", "920"]  # + 64 admin connections + 256 spare
    assert second == "192"
    assert "raise `ulimit -n`" in done.stderr
