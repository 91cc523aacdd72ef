"""The gateway's HTTP server under uvicorn: bounded requests and one write per response.

:class:`ServerLimits` says what one client may cost (URL 414, head 431, slow head or body 408,
idle keep-alive timeout, a connection cap per listener that closes the oldest idle connection
first or answers 503); :func:`http_protocol` is uvicorn's httptools protocol with those limits and
:class:`_CoalescingTransport` under it (header block and body in one ``send``);
:func:`fit_open_files` raises the open-file limit to fit the connection cap, or lowers the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, fields, replace
from typing import Any

import httptools

from lockgate.gateway.errors import GatewayError
from lockgate.gateway.kserve import error_body

__all__ = ["SERVER_LIMIT_FIELDS", "ServerLimits", "fit_open_files", "http_protocol"]

logger = logging.getLogger("lockgate.gateway")


class _CoalescingTransport:
    """Sends an HTTP response's header block and its body in one ``send``.

    uvicorn writes the status line + headers on ``http.response.start`` and the body on
    ``http.response.body``: two syscalls and, with TCP_NODELAY, two segments on the wire. This
    holds a header block until the next write (the body, written in the same event-loop step) or
    the end of the step, whichever comes first.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data[:9] == b"HTTP/1.1 " and data[9:12] != b"100" and data[-4:] == b"\r\n\r\n":
            self._held = data
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def writelines(self, lines: Any) -> None:
        self._flush()
        self._transport.writelines(lines)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@dataclass(frozen=True)
class ServerLimits:
    """What one client may cost the gateway's HTTP server (``python -m lockgate.gateway``).

    Attributes:
        max_connections: open client connections of the inference listener at most; at the
            cap a new connection closes the oldest idle keep-alive connection, or is answered
            503 when none is idle.
        max_admin_connections: the same for the admin listener, counted on its own: a flood
            of inference connections never takes the connections the canary controller needs
            to roll back or reroute, and an admin client never evicts an inference one.
        max_url_bytes: longest request target (414 while it still arrives).
        max_header_bytes: largest request head without the URL: request line and header lines
            together (431 while they still arrive).
        header_timeout_s: a request head must arrive whole within this many seconds of its
            first byte (408, then closed: slow-header clients).
        body_timeout_s: a request body must arrive whole within this many seconds of its head
            (408, then closed).
        keepalive_timeout_s: a connection with no request in progress is closed after this
            many seconds (also one that never sends a byte).
    """

    max_connections: int = 4096
    max_admin_connections: int = 64
    max_url_bytes: int = 8192
    max_header_bytes: int = 32768
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_timeout_s: float = 75.0

    def __post_init__(self) -> None:
        for name, low in (
            ("max_connections", 1),
            ("max_admin_connections", 1),
            ("max_url_bytes", 256),
            ("max_header_bytes", 1024),
        ):
            if getattr(self, name) < low:
                raise GatewayError(
                    f"{name}={getattr(self, name)!r} must be at least {low}; fix: pass "
                    f"--{name.replace('_', '-')} {low} or more"
                )
        for name in ("header_timeout_s", "body_timeout_s", "keepalive_timeout_s"):
            if not getattr(self, name) > 0:
                raise GatewayError(
                    f"{name}={getattr(self, name)!r} must be > 0 seconds; fix: pass "
                    f"--{name.replace('_', '-')} with a positive number"
                )


SERVER_LIMIT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ServerLimits))
"""The names of :class:`ServerLimits`' settings, in order (also their command-line options)."""


def _refusal(status: int, message: str) -> bytes:
    """A whole error response that closes the connection."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

    body = error_body(message)
    return (
        STATUS_LINE[status]
        + b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        + b"connection: close\r\n\r\n"
        + body
    )


def _url_rule(limit: int) -> str:
    return f"request URL exceeds {limit} bytes; rule: max_url_bytes; fix: send the data in the body"


def _header_rule(limit: int) -> str:
    return (
        f"request header fields exceed {limit} bytes; rule: max_header_bytes bounds the request "
        "head; fix: send fewer or shorter headers"
    )


def http_protocol(limits: ServerLimits, *, admin_port: int | None = None) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with :class:`_CoalescingTransport` under it and ``limits``.

    uvicorn bounds none of a request head, the time it or a body may take, nor the connections
    (``limit_concurrency`` answers 503 to busy and idle alike, and counts every listener of the
    server together); this counts the bytes of a head as they arrive (URL in ``on_url``, the
    head as read), arms a timer only when a head or a body spans reads, and keeps the idle
    keep-alive connections in age order so that the oldest goes first at the connection cap.
    Connections accepted on ``admin_port`` (the admin listener of the same server) are counted,
    capped (``max_admin_connections``) and evicted apart from the inference listener's.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class _Listener:
        """One listener's connections: all of them, the idle ones oldest first, and those
        closed for its cap and not yet lost."""

        def __init__(self, cap: int, option: str, what: str) -> None:
            self.cap, self.option, self.what = cap, option, what
            self.open: set[Any] = set()
            self.idle: dict[Any, None] = {}
            self.evicting: set[Any] = set()

    inference = _Listener(limits.max_connections, "max_connections", "")
    admin = _Listener(limits.max_admin_connections, "max_admin_connections", "'s admin listener")
    linger_s = 2.0

    class _LimitError(Exception):
        pass

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.url = b""
            self._in_head = True  # no request in progress, or its head is
            self._head_bytes = 0  # bytes read since the head in progress began (at least)
            self._counted = False  # whether _head_bytes saw the head in progress from its start
            self._limit: tuple[int, str] | None = None
            self._refused = False
            self._head_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._listener = inference

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            sockname = transport.get_extra_info("sockname")
            port = sockname[1] if isinstance(sockname, tuple) and len(sockname) > 1 else None
            listener = self._listener = (
                admin if admin_port is not None and port == admin_port else inference
            )
            wrapped = _CoalescingTransport(transport, self.loop)
            super().connection_made(wrapped)  # type: ignore[arg-type]
            listener.open.add(self)
            if len(listener.open) - len(listener.evicting) > listener.cap:
                oldest = next(iter(listener.idle), None)
                if oldest is None:
                    flag = listener.option.replace("_", "-")
                    self._refuse(
                        503,
                        f"the gateway{listener.what} holds {listener.option}={listener.cap} "
                        f"busy connections; retry later, or raise --{flag}",
                    )
                    return
                del listener.idle[oldest]
                listener.evicting.add(oldest)
                oldest.transport.close()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            listener.idle[self] = None

        def connection_lost(self, exc: Exception | None) -> None:
            listener = self._listener
            listener.open.discard(self)
            listener.idle.pop(self, None)
            listener.evicting.discard(self)
            self._cancel_timers()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timeout_keep_alive_task is not None:  # armed: nothing else in progress
                self._listener.idle[self] = None

        def _cancel_timers(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering after a refusal: read and drop
            self._unset_keepalive_if_required()
            self._listener.idle.pop(self, None)
            if self._in_head:
                self._head_bytes += len(data)
                self._counted = True
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
                return
            except httptools.HttpParserError:
                if self._limit is not None:
                    self._refuse(*self._limit)
                else:
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                return
            if self._in_head:
                if self._head_bytes == 0:
                    return  # nothing of a next request yet
                if len(self.url) > limits.max_url_bytes:
                    self._refuse(414, _url_rule(limits.max_url_bytes))
                elif self._head_bytes - len(self.url) > limits.max_header_bytes:
                    self._refuse(431, _header_rule(limits.max_header_bytes))
                elif self._head_timer is None:
                    self._head_timer = self.loop.call_later(
                        limits.header_timeout_s, self._head_timeout
                    )
            elif self._body_timer is None:
                self._body_timer = self.loop.call_later(
                    limits.body_timeout_s, self._body_timeout, self.cycle
                )

        def on_headers_complete(self) -> None:
            if len(self.url) > limits.max_url_bytes:
                self._limit = (414, _url_rule(limits.max_url_bytes))
                raise _LimitError
            if (
                not self._counted or self._head_bytes - len(self.url) > limits.max_header_bytes
            ) and (sum(len(k) + len(v) + 4 for k, v in self.headers) > limits.max_header_bytes):
                self._limit = (431, _header_rule(limits.max_header_bytes))
                raise _LimitError
            self._in_head = False
            self._head_bytes = 0
            self._counted = False  # a next request in this read began after the count
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head = True
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            super().on_message_complete()

        def _head_timeout(self) -> None:
            self._head_timer = None
            self._refuse(
                408,
                f"request head not received whole within {limits.header_timeout_s} s; rule: "
                "header_timeout_s; fix: send the request line and headers at once",
            )

        def _body_timeout(self, cycle: Any) -> None:
            self._body_timer = None
            if cycle is not self.cycle or self._in_head or self.transport.is_closing():
                return
            if self.flow.read_paused:  # the app does not read yet: not the client's delay
                self._body_timer = self.loop.call_later(
                    limits.body_timeout_s, self._body_timeout, cycle
                )
                return
            if cycle.response_started:
                self.transport.close()
                return
            cycle.disconnected = True  # the app reads a disconnect and its answer is dropped
            cycle.message_event.set()
            self._refuse(
                408,
                f"request body not received whole within {limits.body_timeout_s} s of its "
                "head; rule: body_timeout_s; fix: send the body at once, or in smaller "
                "requests",
            )

        def _refuse(self, status: int, message: str) -> None:
            """Answer ``status`` and close (after the client stopped sending, or linger_s)."""
            self._refused = True
            self._cancel_timers()
            self._unset_keepalive_if_required()
            self._listener.idle.pop(self, None)
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete and not cycle.disconnected:
                cycle.keep_alive = False  # an earlier request's answer: close after it
                self.flow.pause_reading()
                return
            self.transport.write(_refusal(status, message))
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(linger_s, self.transport.close)
            else:
                self.transport.close()

    return LimitedHttpToolsProtocol


def fit_open_files(limits: ServerLimits, spare: int = 256) -> ServerLimits:
    """Raise the soft open-file limit to hold ``max_connections`` + ``max_admin_connections`` +
    ``spare`` descriptors (WAL, Parquet, upstream connections); where the hard limit is lower,
    lower the inference cap to fit (the admin listener keeps its own)."""
    import resource

    spare += limits.max_admin_connections
    need = limits.max_connections + spare
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft < need:
            fitted = max(1, soft - spare)
            logger.warning(
                "max_connections=%d needs %d open files but RLIMIT_NOFILE is %d (hard %d): "
                "serving with max_connections=%d; raise `ulimit -n` to keep the setting",
                limits.max_connections,
                need,
                soft,
                hard,
                fitted,
            )
            return replace(limits, max_connections=fitted)
    return limits
