"""The lean HTTP/1.1 server under the gateway, over real sockets on 127.0.0.1.

A small ASGI app (echo, sleep, stream, raise) is served by :class:`LeanServer` in this event loop;
the requests are raw bytes so that keep-alive, pipelining, chunked bodies, limits and malformed
input are exactly what the test says.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from lockgate.http_server import LeanServer


class EchoApp:
    """``/echo`` returns the body; ``/sleep/<ms>`` answers after a delay; ``/stream`` streams;
    ``/boom`` raises; ``/silent`` returns without answering."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def startup(self) -> None:
        self.events.append("startup")

    async def shutdown(self) -> None:
        self.events.append("shutdown")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        msg = await receive()
        body = msg["body"]
        path = scope["path"]
        if path.startswith("/sleep/"):
            await asyncio.sleep(int(path.rsplit("/", 1)[1]) / 1000)
            body = path.encode()
            self.events.append(f"answered {path}")
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"ab", b"", b"cde"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        elif path == "/big":
            body = b"x" * (256 << 10)
        elif path == "/hold":  # waits for the client to go away
            self.events.append((await receive())["type"])
            return
        elif path == "/boom":
            raise RuntimeError("boom")
        elif path == "/silent":
            return
        elif path != "/echo":
            body = json.dumps({"path": path, "query": scope["query_string"].decode()}).encode()
        headers = [
            (b"content-length", str(len(body)).encode()),
            (b"x-method", scope["method"].encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[tuple[LeanServer, EchoApp, int]]:
    app = EchoApp()
    server = LeanServer(app, **kw)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(sock, on_ready=ready.set))
    await asyncio.wait_for(ready.wait(), 5)
    try:
        yield server, app, port
    finally:
        server.stop()
        await asyncio.wait_for(task, 15)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (lower-case), body (content-length or chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ln)}
    if status == 100:
        return status, headers, b""
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, headers, body
            body += chunk[:-2]
    return status, headers, await reader.readexactly(int(headers["content-length"]))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    async def main() -> None:
        async with serving() as (_, app, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            assert await read_response(reader) == (
                200,
                {"content-length": "5", "x-method": "POST"},
                b"hello",
            )
            # three requests in one write; the first is the slowest, answers keep the order
            writer.write(
                b"GET /sleep/80 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /sleep/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /q?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            bodies = [(await read_response(reader))[2] for _ in range(3)]
            assert bodies[:2] == [b"/sleep/80", b"/sleep/1"]
            assert json.loads(bodies[2]) == {"path": "/q", "query": "a=1"}
            writer.close()
        assert app.events == ["startup", "answered /sleep/80", "answered /sleep/1", "shutdown"]

    run(main())


def test_chunked_request_body_and_expect_100_continue() -> None:
    async def main() -> None:
        async with serving() as (_, _app, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            assert (await read_response(reader))[2] == b"abcde"
            writer.write(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            )
            assert (await read_response(reader))[0] == 100
            writer.write(b"ok")
            assert (await read_response(reader))[2] == b"ok"
            writer.close()

    run(main())


def test_streamed_response_is_chunked() -> None:
    async def main() -> None:
        async with serving() as (_, _app, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert (status, headers["transfer-encoding"], body) == (200, "chunked", b"abcde")
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz")
            assert (await read_response(reader))[2] == b"z"  # still in sync after the stream
            writer.close()

    run(main())


@pytest.mark.parametrize(
    ("request_bytes", "status", "fragment"),
    [
        (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 413, "exceeds 64 bytes"),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"50\r\n" + b"x" * 80 + b"\r\n0\r\n\r\n",
            413,
            "exceeds 64 bytes",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed HTTP request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n", 400, "malformed HTTP request"),
    ],
)
def test_bad_requests_get_a_clear_error_and_the_connection_closes(
    request_bytes: bytes, status: int, fragment: str
) -> None:
    async def main() -> None:
        async with serving(max_body_bytes=64) as (_, _app, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request_bytes)
            got, headers, body = await read_response(reader)
            assert got == status
            assert headers["connection"] == "close"
            assert fragment in json.loads(body)["error"]
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
            writer.close()

    run(main())


def test_app_errors_are_500_and_http10_closes() -> None:
    async def main() -> None:
        async with serving() as (_, _app, port):
            for path, fragment in (
                (b"/boom", "internal gateway error"),
                (b"/silent", "no response"),
            ):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _, body = await read_response(reader)
                assert status == 500
                assert fragment in json.loads(body)["error"]
                writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /echo HTTP/1.0\r\n\r\n")
            status, headers, body = await read_response(reader)
            assert (status, headers["connection"], body) == (200, "close", b"")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(main())


def test_a_client_that_does_not_read_is_not_read_from() -> None:
    """200 pipelined requests for 256 KiB answers, none read: the server stops reading instead of
    buffering 50 MiB, and answers them all once the client reads."""

    async def main() -> None:
        async with serving() as (server, _app, port):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            await asyncio.sleep(0.5)
            (conn,) = server.connections
            assert conn.write_paused
            assert conn.transport is not None
            assert conn.transport.get_write_buffer_size() < 4 << 20
            for _ in range(200):
                status, _, body = await read_response(reader)
                assert (status, len(body)) == (200, 256 << 10)
            writer.close()

    run(main())


def test_receive_after_the_body_reports_the_client_disconnect() -> None:
    async def main() -> None:
        async with serving() as (_, app, port):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.05)
            assert app.events == ["startup"]
            writer.close()
            for _ in range(100):
                if len(app.events) > 1:
                    break
                await asyncio.sleep(0.02)
            assert app.events == ["startup", "http.disconnect"]

    run(main())


def test_stop_finishes_requests_in_flight_then_runs_shutdown() -> None:
    async def main() -> None:
        app_events: list[str] = []
        async with serving(keepalive_s=0.2) as (server, app, port):
            app_events = app.events
            idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
            # an idle keep-alive connection is closed after keepalive_s
            assert await asyncio.wait_for(idle_r.read(), 5) == b""
            idle_w.close()
            # so is one whose request stopped arriving (headers and half the body sent)
            stall_r, stall_w = await asyncio.open_connection("127.0.0.1", port)
            stall_w.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
            assert await asyncio.wait_for(stall_r.read(), 5) == b""
            stall_w.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /sleep/300 HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.05)
            server.stop()
            status, headers, body = await read_response(reader)
            assert (status, body, headers["connection"]) == (200, b"/sleep/300", "close")
            writer.close()
        assert app_events == ["startup", "answered /sleep/300", "shutdown"]
        with pytest.raises(ConnectionRefusedError):  # the listening socket is closed
            await asyncio.open_connection("127.0.0.1", port)

    run(main())
