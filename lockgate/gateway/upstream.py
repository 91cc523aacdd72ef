"""The gateway's HTTP client to the upstream model server (Triton): asyncio and httptools.

:class:`HttpUpstream` is a small keep-alive HTTP/1.1 connection pool (measured against Triton in
one run, ``benchmarks/bench_upstream.py``: 2.2x less client CPU per request than aiohttp at one
sender and 3.4x less at 16; 7x and 36x less than httpx) behind the :class:`Upstream` protocol the gateway needs; it refuses request
targets and header values that are not plain ASCII, retries a request once on a fresh connection
when a reused one was closed before answering, and raises :class:`UpstreamError` (502
unreachable, 504 timeout) when there is no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from lockgate.gateway.errors import GatewayError, UpstreamError

__all__ = ["HttpUpstream", "Upstream", "UpstreamResponse"]

_REQUEST_TARGET_RE = re.compile(r"[!-~]+\Z")  # visible ASCII: no space, CR, LF or other bytes
_HEADER_VALUE_RE = re.compile(r"[ -~]*\Z")  # visible ASCII and spaces


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """One HTTP response from the upstream model server.

    Attributes:
        status: HTTP status code.
        headers: response headers, names lower-cased.
        body: the whole response body.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes


class Upstream(Protocol):
    """What the gateway needs from an upstream KServe v2 server."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Send one request; raise :class:`UpstreamError` if there is no answer."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class _ConnectionLostError(Exception):
    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection lost")
        self.got_bytes = got_bytes


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, responses parsed by httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[UpstreamResponse] | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.closed = False
        self.got_bytes = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"upstream sent an invalid HTTP response ({exc})"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        response = UpstreamResponse(self.parser.get_status_code(), self.headers, body)
        self.keep_alive = self.parser.should_keep_alive()
        self.headers = {}
        self.body = []
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_ConnectionLostError(self.got_bytes))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpUpstream:
    """A small, fast HTTP/1.1 keep-alive client pool for one upstream server.

    asyncio protocol + httptools parser: a third to a half of aiohttp's client CPU per request
    (``benchmarks/results/upstream.json``). A request on a reused idle connection that the server
    closed meanwhile (nothing received) is retried once on a fresh connection.

    Args:
        url: base URL, ``http://host:port`` or ``host:port`` (``https`` works too), optionally
            with a path prefix.
        timeout_s: default per-request timeout.
        max_connections: open connections at most; more concurrent requests wait.
    """

    def __init__(self, url: str, *, timeout_s: float = 30.0, max_connections: int = 256) -> None:
        if "://" not in url:
            url = f"http://{url}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GatewayError(
                f"upstream url {url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000"
            )
        self.url = url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if parts.scheme == "https" else None
        )
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._idle: list[_Conn] = []
        self._open = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        """Send one request and return the whole response.

        Args:
            method: HTTP method.
            path: path (with query string) below the base URL.
            body: request body.
            headers: extra request headers.
            timeout_s: per-request timeout (default: the pool's).

        Returns:
            The response.

        Raises:
            UpstreamError: connection refused or lost (502), timeout (504).
        """
        loop = asyncio.get_running_loop()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        unsafe = next(
            (
                v
                for v, rule in (
                    (path, _REQUEST_TARGET_RE),
                    *((k, _REQUEST_TARGET_RE) for k in headers or ()),
                    *((v, _HEADER_VALUE_RE) for v in (headers or {}).values()),
                )
                if not rule.match(v)
            ),
            None,
        )
        if unsafe is not None:  # CR/LF would split the request (smuggling)
            raise GatewayError(
                f"refusing to send {method} {path[:80]!r} upstream: {unsafe[:80]!r} holds "
                "characters outside visible ASCII (CR, LF, control or non-ASCII characters); "
                "validate names before building upstream requests"
            )
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        ).encode("latin-1")
        for attempt in (0, 1):
            conn, reused = await self._acquire(loop, timeout)
            waiter: asyncio.Future[UpstreamResponse] = loop.create_future()
            conn.waiter = waiter
            conn.got_bytes = False
            assert conn.transport is not None
            conn.transport.write(head + body if body else head)
            timer = loop.call_later(timeout, _expire, waiter, self.url, path, timeout)
            try:
                response = await waiter
            except _ConnectionLostError as exc:
                self._discard(conn)
                if reused and not exc.got_bytes and attempt == 0:
                    continue
                raise UpstreamError(
                    f"upstream {self.url} closed the connection during {method} {path}",
                    status=502,
                    retryable=not exc.got_bytes,
                ) from None
            except BaseException:
                self._discard(conn)
                raise
            finally:
                timer.cancel()
            if conn.keep_alive and not conn.closed and not self._closed:
                self._release(conn)
            else:
                self._discard(conn)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acquire(self, loop: asyncio.AbstractEventLoop, timeout: float) -> tuple[_Conn, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
            self._open -= 1
        while self._open >= self.max_connections:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            try:
                await fut
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn, True
                self._open -= 1
        self._open += 1
        try:
            async with asyncio.timeout(timeout):
                _, proto = await loop.create_connection(
                    _Conn, self._host, self._port, ssl=self._ssl
                )
        except TimeoutError:
            self._open -= 1
            self._wake()
            raise UpstreamError(
                f"upstream {self.url} did not accept a connection within {timeout:g} s",
                status=504,
                retryable=True,
            ) from None
        except OSError as exc:
            self._open -= 1
            self._wake()
            raise UpstreamError(
                f"upstream {self.url} is unreachable ({exc.strerror or exc}); start the model "
                "server or fix the gateway's upstream URL",
                status=502,
                retryable=True,
            ) from None
        except BaseException:
            self._open -= 1
            self._wake()
            raise
        return proto, False

    def _release(self, conn: _Conn) -> None:
        self._idle.append(conn)
        self._wake()

    def _discard(self, conn: _Conn) -> None:
        conn.close()
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            fut = self._waiters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return

    async def aclose(self) -> None:
        """Close all idle connections; busy ones close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            self._open -= 1


def _expire(waiter: asyncio.Future[UpstreamResponse], url: str, path: str, timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(
            UpstreamError(f"upstream {url} did not answer {path} within {timeout:g} s", status=504)
        )
