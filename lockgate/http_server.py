"""A lean HTTP/1.1 server for one ASGI app: the gateway's hot path without a framework.

uvicorn is general (any ASGI app, WebSockets, flow control for streamed bodies, proxy headers,
access logs, header validation of what the app sends); under the gateway on the 2-core benchmark
machine, where the gateway shares the cores with Triton and the clients, this server uses 20-40
us less CPU per request at 1-4 clients (``benchmarks/bench_gateway.py``, target
``gateway-uvicorn``). It does only what the gateway needs:

- HTTP/1.0 and 1.1 parsed by ``httptools`` (the parser uvicorn uses), keep-alive, pipelined
  requests answered in order, ``Expect: 100-continue``, chunked request bodies;
- the request body is read whole before the app runs (the gateway reads it whole anyway), with
  a size limit answered ``413`` before the rest of the body is read;
- the app's response start and body go out in one write; a streamed body (``more_body``) is
  sent chunked when the app gave no ``content-length``;
- a malformed request gets a ``400`` KServe-style error and the connection is closed;
- a connection idle, or with a request that stopped arriving, for ``keepalive_s`` is closed;
- a client that sends requests but does not read the answers is not read from until it does
  (the write buffer stays bounded);
- lifespan: the app's startup runs before the socket accepts, shutdown after the in-flight
  requests finished (or ``graceful_s`` passed); SIGTERM / SIGINT start the shutdown.

The app is called with plain ASGI 3 ``scope`` / ``receive`` / ``send``, so the same app still runs
under uvicorn (``python -m lockgate.gateway --server uvicorn``) or any ASGI server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

_STATUS_LINES: dict[int, bytes] = {}
_DISCONNECT: Message = {"type": "http.disconnect"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:  # e.g. 499, nginx's "client closed request"
            reason = "Client Closed Request" if status == 499 else "Status"
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("ascii"))
        _STATUS_LINES[status] = line
    return line


def _error_response(status: int, message: str) -> bytes:
    """A complete KServe-style error response that closes the connection."""
    body = json.dumps({"error": message}).encode()
    return (
        _status_line(status)
        + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        + b"connection: close\r\n\r\n"
        + body
    )


class _Cycle:
    """One request on a connection: its scope, body and response state."""

    __slots__ = ("body", "chunked", "done", "head", "keep_alive", "scope", "started")

    def __init__(self, scope: Scope, keep_alive: bool) -> None:
        self.scope = scope
        self.keep_alive = keep_alive
        self.body: list[bytes] = []
        self.started = False  # the response head went out
        self.chunked = False
        self.head = b""  # the response head, held until the first body message
        self.done = False  # the response is complete


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, run the app for each, in order."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body_size = 0
        self.current: _Cycle | None = None  # being parsed
        self.queue: deque[_Cycle] = deque()  # parsed, waiting for the one before to finish
        self.active: _Cycle | None = None  # the app runs it
        self.closed = False
        self.idle: asyncio.TimerHandle | None = None
        self.too_large: str | None = None
        self.lost: asyncio.Future[None] | None = None  # created by a receive() after the body
        self.write_paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        here = transport.get_extra_info("sockname")
        self.local = (str(here[0]), int(here[1])) if isinstance(here, tuple) else None
        self.server.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported by the gateway")
        except httptools.HttpParserError as exc:  # also wraps errors raised in the callbacks
            if self.too_large is not None:
                self._reject(413, self.too_large)
            else:
                self._reject(400, f"malformed HTTP request ({exc}); send HTTP/1.1")
            return
        if self.active is None:  # a request is partly read: it too must progress within keepalive_s
            self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading its requests until it does."""
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.transport is None or self.closed:
            return
        if self.queue:
            self._next()
        else:
            self.transport.resume_reading()

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(),
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.local,
        }
        self.current = _Cycle(scope, self.parser.should_keep_alive())
        for name, value in self.headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.server.max_body_bytes:
                    self._too_large(f"request body of {length} bytes")
            elif (
                name == b"expect"
                and value.lower() == b"100-continue"
                and self.transport is not None
                and self.active is None
                and not self.queue
            ):
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body_bytes:
            self._too_large("request body")
        assert self.current is not None
        self.current.body.append(body)

    def _too_large(self, what: str) -> None:
        self.too_large = (
            f"{what} exceeds {self.server.max_body_bytes} bytes (the gateway's limit); send "
            "smaller batches"
        )
        raise _TooLargeError(self.too_large)  # stops the parser

    def on_message_complete(self) -> None:
        cycle = self.current
        assert cycle is not None
        self.current = None
        if self.active is None and not self.write_paused:
            self._run(cycle)
        else:  # pipelined: answer in order; stop reading until the queue drains
            self.queue.append(cycle)
            if self.transport is not None:
                self.transport.pause_reading()

    # -- running the app ----------------------------------------------------------------

    def _run(self, cycle: _Cycle) -> None:
        self.active = cycle
        task = self.loop.create_task(self._call(cycle))
        self.server.tasks.add(task)
        task.add_done_callback(self.server.tasks.discard)

    async def _call(self, cycle: _Cycle) -> None:
        body = b"".join(cycle.body) if len(cycle.body) != 1 else cycle.body[0]
        cycle.body = []
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body and not self.closed:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            if not self.closed:  # ASGI: the next receive() waits for the client to go away
                if self.lost is None:
                    self.lost = self.loop.create_future()
                await self.lost
            return _DISCONNECT

        async def send(message: Message) -> None:
            self._send(cycle, message)

        try:
            await self.server.app(cycle.scope, receive, send)
        except Exception:
            logger.exception("unhandled error in the app for %s", cycle.scope.get("path"))
            if not cycle.started and not self.closed and self.transport is not None:
                self.transport.write(
                    _error_response(500, "internal gateway error; see the gateway log")
                )
                self.transport.close()
            cycle.done = True
        if not cycle.done and not self.closed and self.transport is not None:
            if not cycle.started:  # the app returned without answering
                self.transport.write(_error_response(500, "the app sent no response"))
            self.transport.close()
            cycle.done = True
        self._finished(cycle)

    def _send(self, cycle: _Cycle, message: Message) -> None:
        transport = self.transport
        if self.closed or transport is None or cycle.done:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if cycle.started:
                raise RuntimeError("http.response.start sent twice")
            status = int(message["status"])
            lines = [_status_line(status)]
            has_length = False
            for name, value in message.get("headers", ()):
                if name == b"content-length":
                    has_length = True
                lines.append(name + b": " + value + b"\r\n")
            if not cycle.keep_alive or self.server.stopping:
                cycle.keep_alive = False
                lines.append(b"connection: close\r\n")
            cycle.chunked = not has_length
            if cycle.chunked:
                lines.append(b"transfer-encoding: chunked\r\n")
            lines.append(b"\r\n")
            cycle.started = True
            cycle.head = b"".join(lines)
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not cycle.started:
            raise RuntimeError("http.response.body before http.response.start")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        head, cycle.head = cycle.head, b""
        if cycle.scope["method"] == "HEAD":
            body = b""
        if cycle.chunked:
            data = (b"%x\r\n%s\r\n" % (len(body), body)) if body else b""
            if not more:
                data += b"0\r\n\r\n"
        else:
            data = body
        transport.write(head + data if head else data)
        if not more:
            cycle.done = True
            if not cycle.keep_alive:
                transport.close()

    def _finished(self, cycle: _Cycle) -> None:
        self.active = None
        if self.closed or not cycle.keep_alive:
            self.queue.clear()
            return
        self._next()
        if self.active is None and not self.queue:
            self._arm_idle()

    def _next(self) -> None:
        """Start the next pipelined request, unless one runs or the client is not reading."""
        if self.write_paused or self.active is not None or not self.queue:
            return
        self._run(self.queue.popleft())
        if not self.queue and self.transport is not None:
            self.transport.resume_reading()

    # -- connection management ----------------------------------------------------------

    def _arm_idle(self) -> None:
        if self.server.stopping:
            self.close_if_idle()
            return
        self.idle = self.loop.call_later(self.server.keepalive_s, self._expire)

    def _expire(self) -> None:
        """keepalive_s without progress: close unless the app is answering a request."""
        self.idle = None
        if self.active is None and not self.queue and self.transport is not None:
            self.transport.close()

    def close_if_idle(self) -> None:
        """Close the connection unless a request is being read or answered."""
        if (
            self.active is None
            and self.current is None
            and not self.queue
            and self.transport is not None
            and not self.closed
        ):
            self.transport.close()

    def _reject(self, status: int, message: str) -> None:
        if self.transport is None or self.closed:
            return
        if self.active is None:
            self.transport.write(_error_response(status, message))
            self.transport.close()
        else:  # answer the request in progress first, then give up on the connection
            self.queue.clear()
            self.current = None
            self.transport.pause_reading()
            active = self.active
            active.keep_alive = False


class _TooLargeError(Exception):
    pass


class LeanServer:
    """Serve one ASGI app on a bound socket until SIGTERM / SIGINT or :meth:`stop`.

    Args:
        app: the ASGI 3 app. If it has ``startup()`` / ``shutdown()`` coroutines they run
            around serving; otherwise the ASGI lifespan protocol is not used.
        max_body_bytes: largest request body; a bigger one is answered ``413``.
        keepalive_s: idle keep-alive connections are closed after this.
        graceful_s: on shutdown, time given to requests in flight before they are cut.
        backlog: listen backlog.
    """

    def __init__(
        self,
        app: Any,
        *,
        max_body_bytes: int = 64 << 20,
        keepalive_s: float = 75.0,
        graceful_s: float = 10.0,
        backlog: int = 4096,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.keepalive_s = keepalive_s
        self.graceful_s = graceful_s
        self.backlog = backlog
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.started = False
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def stop(self) -> None:
        """Start a graceful shutdown."""
        if self._stop is not None:
            self._stop.set()

    async def serve(self, sock: socket.socket, on_ready: Callable[[], None] | None = None) -> None:
        """Start the app, accept on ``sock`` until stopped, then shut down gracefully."""
        self._loop = loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stop.set)
        startup = getattr(self.app, "startup", None)
        if startup is not None:
            await startup()
        sock.setblocking(False)
        server = await loop.create_server(
            lambda: _Connection(self), sock=sock, backlog=self.backlog
        )
        self.started = True
        try:
            if on_ready is not None:
                on_ready()
            await self._stop.wait()
        finally:
            self.stopping = True
            server.close()
            for conn in list(self.connections):
                conn.close_if_idle()
            if self.tasks:
                _, pending = await asyncio.wait(set(self.tasks), timeout=self.graceful_s)
                for task in pending:
                    task.cancel()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            shutdown = getattr(self.app, "shutdown", None)
            if shutdown is not None:
                await shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
