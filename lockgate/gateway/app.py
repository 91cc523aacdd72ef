"""The lockgate gateway: the only door to the served models.

A raw ASGI application (no framework on the hot path) that speaks the KServe v2 HTTP protocol to
clients and to the upstream model server (Triton). Each lockgate model version is its own upstream
model named ``<pipeline>-<version>``; clients see the pipeline name (``fraud_lgbm``) and the gateway
routes each request to the champion's or the challenger's upstream model, so an unchanged
``tritonclient.http.InferenceServerClient`` pointed at the gateway just works.

Endpoints::

    GET  /v2/health/live | /v2/health/ready | /v2            health and server metadata
    GET  /v2/models/{name}[/versions/{v}]                   metadata of the routed model
    GET  /v2/models/{name}[/versions/{v}]/ready             readiness of the routed model
    GET  /v2/models/{name}[/versions/{v}]/config            upstream config, public name
    POST /v2/models/{name}[/versions/{v}]/infer             inference (v pins a lockgate version)
    GET  /metrics                                           Prometheus text exposition

Admin endpoints, served only on the **admin listener** (its own port, 127.0.0.1 by default; the
inference port answers 404 naming it), each with ``Authorization: Bearer <admin token>``
(compared in constant time; a missing header is 401, a wrong token 403)::

    GET  /admin/routes | /admin/routes/{name}               routing tables
    PUT  /admin/routes/{name}    DELETE /admin/routes/{name}
    GET  /admin/stats/{name}     POST /admin/stats/{name}/reset
    POST /admin/log/roll                                    close the WAL segment, roll to Parquet

The state-changing calls (PUT/DELETE routes, stats reset, log roll) must state who acts in an
``x-lockgate-actor`` header; each one that succeeds is appended to the audit log
(:class:`lockgate.audit.log.AuditLog`, kind ``gateway_admin``) with that actor and the token's
identity (``sha256:<first 12 hex digits>`` of the token). ``python -m lockgate.gateway`` refuses
to start without a non-empty token (``--admin-token-env`` or ``--admin-token-file``) or without
an audit log (``--audit-log``).

Routing table per public model (``PUT /admin/routes/{name}``, persisted to
``state_dir/routes.json``)::

    {"mode": "canary" | "shadow" | "bluegreen" | "single",
     "champion": "<version>", "challenger": "<version>" | null,
     "weight": 0..1,            # canary: share of traffic sent to the challenger
     "shadow_fraction": 0..1,   # shadow: share of champion traffic mirrored to the challenger
     "active": "champion" | "challenger"}   # bluegreen: who gets all traffic

Weighted choices hash the trace id (BLAKE2b, salted per purpose and model, keyed with the
gateway's secret ``state_dir/routing.key``), so a trace always lands on the same version of one
gateway (across restarts), raising a canary weight never moves a challenger trace back, and a
client that chooses its trace id still cannot choose its version. The
trace id is the client's ``x-lockgate-trace-id`` (else ``x-request-id``, else the W3C
``traceparent`` trace id, else 128 random bits in hex); it comes back in the
``x-lockgate-trace-id`` header and in the response's ``parameters.lockgate_trace_id``; the KServe
``id`` is echoed, ``model_name``/``model_version`` are the public name and the lockgate version.
JSON bodies and the binary tensor extension (``Inference-Header-Content-Length``, what
``tritonclient`` sends by default) pass through unchanged; gzip/deflate request bodies are
decompressed.

Inputs: clients send the pipeline's **features by name**, one input per feature (numeric FP32 and
other numeric types, categorical BYTES, shape ``[n]`` or ``[n, 1]``, JSON ``null`` for missing;
:mod:`lockgate.gateway.named_inputs`), and the gateway encodes them into the wire matrix with the wire
schema of the version it routes to (read once per version from the Triton model repository,
``create_app(model_repository=...)``); model metadata lists those inputs. A request that breaks
that contract is a 400 naming the feature and the fix, and is the client's fault: it never counts
as an error or schema violation of the version. Requests may still send the wire tensor itself
(one input ``INPUT__0``, FP32, ``[n, d]`` with ``d`` from the upstream metadata, finite values,
categorical columns holding wire codes when the wire schema is known): a violation of that is a
400, and a schema violation of the version it went to only if the request fits another version
of the route (the version's schema differs); a request no version takes is the client's fault
and never counts against a version.

Coalescing (:mod:`lockgate.gateway.coalesce`): once ``coalesce_inflight`` calls (default 2) are in flight
to one upstream model, further requests for it wait at the gateway and go upstream as one merged
call (rows concatenated, up to the model's ``max_batch_size``) as soon as a call returns; each
client gets its own rows back in the form it asked for, and its own log record. At light load
nothing waits. Only models with ``max_batch_size > 0`` and fixed-size outputs are merged, and
only requests whose answer the gateway rebuilds exactly; a merged call the model refuses is
retried request by request, so one bad row fails only its own request.

Crash safety: every answered inference request (errors included) is a record in a write-ahead log
(``log_dir/_wal/wal-<seq>.log``: CRC-checked frames of a binary header, the strings and the raw
FP32 rows) that is made durable before the response is sent: ``fsync`` durability (default) waits
for ``fdatasync``, group-committed across concurrent requests (under load a commit waits up to
``commit_delay_s`` until half of the requests in flight have a record waiting) and run by a
helper process (no GIL contention with the event loop); ``flush`` only waits for ``write``
(survives a crash of the gateway, not of the machine). A commit that fails (a full disk:
``ENOSPC`` from the preallocation, a short ``pwrite`` or ``fdatasync``) is undone, the segment
cut back to its last whole record, and its requests answered 503; the next commit writes after
that record, so a full disk costs the requests it refused and no answered one. A background
roller turns closed segments into Parquet files
(``log_dir/<model>/date=YYYY-MM-DD/part-<seq>.parquet``, temp name + fsync + rename; a failed
part's temp file is removed) and deletes a segment only once its parts are durable; at startup
leftover segments are converted first. ``POST /admin/log/roll`` closes the active segment and rolls it
now (before reading a log that must be complete in Parquet). Read both with
:func:`read_prediction_log`.

Run it with ``python -m lockgate.gateway --state-dir S --log-dir L --upstream-url URL --port 0
--ready-file F --admin-token-env LOCKGATE_GATEWAY_ADMIN_TOKEN --audit-log A`` (uvicorn with
httptools on uvloop, bounded by :class:`ServerLimits`: URL 414, head 431, slow head or body 408,
a connection cap that closes the oldest idle connection first; the body limit holds after
decompression), or through :class:`lockgate.resources.gateway.GatewayServer`. The app itself is
plain ASGI 3 and runs under any ASGI server (serve ``app.admin`` on a listener of its own for
the admin endpoints).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import queue
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import zlib
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

import httptools
import numpy as np

from lockgate._util.fs import fsync_path
from lockgate.audit.log import AuditLog
from lockgate.errors import LockgateError
from lockgate.gateway.coalesce import (
    FIXED_DTYPES,
    OutputPart,
    answer,
    merged_request,
    plan_of,
    split_response,
)
from lockgate.gateway.named_inputs import (
    FeatureContract,
    FeatureInputError,
    is_wire_request,
    wire_request,
)
from lockgate.gateway.prediction_sketch import key as _sketch_key
from lockgate.gateway.prediction_sketch import keys as _sketch_keys

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "INPUT_NAME",
    "LATENCY_BUCKETS_S",
    "LOG_ROW_GROUP_ROWS",
    "MODES",
    "OUTPUT_NAME",
    "PREDICTION_BUCKETS",
    "ROUTING_KEY_FILE",
    "GatewayApp",
    "GatewayError",
    "HttpUpstream",
    "PredictionLog",
    "PredictionLogError",
    "Route",
    "RouteError",
    "ServerLimits",
    "Upstream",
    "UpstreamError",
    "UpstreamResponse",
    "create_app",
    "iter_prediction_log",
    "main",
    "prediction_log_schema",
    "read_prediction_log",
    "traffic_fraction",
]

logger = logging.getLogger("lockgate.gateway")

LOG_ROW_GROUP_ROWS = 16_384
"""Rows per Parquet row group of the prediction log: readers decode one group at a time, so this
bounds the memory of streaming the log (:func:`iter_prediction_log`)."""

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"
MODES = ("bluegreen", "canary", "shadow", "single")
ROUTED_BY = ("bluegreen", "canary", "pinned", "retry", "shadow", "single")
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.5,
    1.0,
)
PREDICTION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
DIFF_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
COMMIT_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)

# \Z, not $: "$" also matches before a final newline, which would let "name\n" through
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,127}\Z")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_TRACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")
_DIGITS_RE = re.compile(r"[0-9]{1,10}\Z")
_REQUEST_TARGET_RE = re.compile(r"[!-~]+\Z")  # visible ASCII: no space, CR, LF or other bytes
_HEADER_VALUE_RE = re.compile(r"[ -~]*\Z")  # visible ASCII and spaces
_ROUTE_KEYS = ("mode", "champion", "challenger", "weight", "shadow_fraction", "active")
_WAL_MAGIC = b"LGW2"  # binary record header; see _encode_record
_WAL_MAGIC_V1 = b"LGW1"  # JSON record header of earlier gateways: still read, never written
_PREALLOC_STEP = 8 << 20
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FRAME = struct.Struct("<4sII")  # magic, payload length, crc32(payload)
_META_LEN = struct.Struct("<I")  # version 1: length of the JSON header
# ts (us), latency (ms), status, flags, byte lengths of trace/model/version/routed_by/request
# id/error, input rows and width, output rows and width, shadow diffs
_REC = struct.Struct("<qdiBHHHHIIIIIII")
_REC_DTYPE = np.dtype(
    [
        ("ts", "<i8"),
        ("lat", "<f8"),
        ("st", "<i4"),
        ("flags", "u1"),
        *[(f, "<u2") for f in ("lt", "lm", "lv", "lrb")],
        *[(f, "<u4") for f in ("lrid", "lerr", "ir", "iw", "or", "ow", "nd")],
    ]
)
assert _REC_DTYPE.itemsize == _REC.size
_F_SHADOW, _F_RID, _F_ERR, _F_IN, _F_OUT, _F_DIFF = 1, 2, 4, 8, 16, 32
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_JSON_CT = (b"content-type", b"application/json")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
try:  # about twice as fast as the standard library on the hot path; tritonclient depends on it
    import rapidjson

    _fast_loads: Callable[[bytes], Any] = rapidjson.loads
    _fast_dumps: Callable[[Any], str] = rapidjson.dumps
except ImportError:  # pragma: no cover
    _fast_loads = json.loads
    _fast_dumps = _dumps

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Durability = Literal["fsync", "flush"]


# ---------------------------------------------------------------------------------------------
# errors


class GatewayError(LockgateError):
    """The gateway refused a request or cannot do its work."""


class RouteError(GatewayError, ValueError):
    """A routing table is invalid."""


class UpstreamError(GatewayError):
    """The upstream model server could not be reached or did not answer in time.

    Attributes:
        status: the HTTP status the gateway answers with (502 unreachable, 504 timeout).
    """

    def __init__(self, message: str, *, status: int = 502, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class PredictionLogError(GatewayError):
    """The prediction log cannot be written, read or locked."""


class _ViolationError(Exception):
    """A request broke the input contract (a 400 and a schema violation)."""


# ---------------------------------------------------------------------------------------------
# routing


@dataclass(frozen=True)
class Route:
    """The routing table of one public model.

    Attributes:
        mode: ``canary`` (weighted split), ``shadow`` (champion answers, challenger mirrored),
            ``bluegreen`` (all traffic to ``active``) or ``single`` (champion only).
        champion: lockgate version id of the champion.
        challenger: lockgate version id of the challenger (None only in ``single`` mode).
        weight: canary share of traffic sent to the challenger, 0..1.
        shadow_fraction: shadow share of requests mirrored to the challenger, 0..1.
        active: bluegreen side that gets all traffic, ``champion`` or ``challenger``.
    """

    mode: str
    champion: str
    challenger: str | None = None
    weight: float = 0.0
    shadow_fraction: float = 0.0
    active: str = "champion"

    @classmethod
    def parse(cls, raw: object, *, name: str = "<model>") -> Route:
        """Validate a route given as JSON-like data.

        Args:
            raw: a mapping with the keys of the routing table.
            name: the public model name, for error messages.

        Returns:
            The normalised route.

        Raises:
            RouteError: a key is unknown or missing, or a value breaks its rule.
        """
        if not isinstance(raw, Mapping):
            raise RouteError(
                f"route for {name!r} is {type(raw).__name__}, not a JSON object; send e.g. "
                '{"mode": "canary", "champion": "v1", "challenger": "v2", "weight": 0.1}'
            )
        unknown = sorted(set(raw) - set(_ROUTE_KEYS))
        if unknown:
            raise RouteError(
                f"route for {name!r} has unknown key(s) {unknown}; allowed keys are "
                f"{list(_ROUTE_KEYS)}"
            )
        mode = raw.get("mode")
        if mode not in MODES:
            raise RouteError(f"route for {name!r}: mode={mode!r} is not one of {list(MODES)}")
        champion = _parse_version(raw.get("champion"), field="champion", name=name)
        challenger_raw = raw.get("challenger")
        if mode == "single":
            if challenger_raw is not None:
                raise RouteError(
                    f"route for {name!r}: mode 'single' takes no challenger (got "
                    f"{challenger_raw!r}); set challenger to null or use mode canary/shadow/"
                    "bluegreen"
                )
            challenger = None
        else:
            challenger = _parse_version(challenger_raw, field="challenger", name=name)
            if challenger == champion:
                raise RouteError(
                    f"route for {name!r}: challenger {challenger!r} equals the champion; "
                    "use two different versions or mode 'single'"
                )
        required = {"canary": "weight", "shadow": "shadow_fraction", "bluegreen": "active"}
        need = required.get(mode)
        if need is not None and raw.get(need) is None:
            raise RouteError(f"route for {name!r}: mode {mode!r} requires {need!r}")
        weight = _parse_fraction(raw.get("weight"), field="weight", name=name)
        shadow_fraction = _parse_fraction(
            raw.get("shadow_fraction"), field="shadow_fraction", name=name
        )
        active = raw.get("active", "champion")
        if active is None:
            active = "champion"
        if active not in ("champion", "challenger"):
            raise RouteError(
                f"route for {name!r}: active={active!r} must be 'champion' or 'challenger'"
            )
        if mode == "single" and active != "champion":
            raise RouteError(f"route for {name!r}: mode 'single' has no challenger to activate")
        return cls(
            mode=mode,
            champion=champion,
            challenger=challenger,
            weight=weight,
            shadow_fraction=shadow_fraction,
            active=active,
        )

    def to_json(self) -> dict[str, Any]:
        """The route as a JSON-ready dict with every key."""
        return {
            "mode": self.mode,
            "champion": self.champion,
            "challenger": self.challenger,
            "weight": self.weight,
            "shadow_fraction": self.shadow_fraction,
            "active": self.active,
        }

    @property
    def versions(self) -> list[str]:
        """Versions this route can send traffic to, champion first."""
        return [self.champion] if self.challenger is None else [self.champion, self.challenger]

    @property
    def primary(self) -> str:
        """The version that answers metadata and readiness queries."""
        if self.mode == "bluegreen" and self.active == "challenger" and self.challenger:
            return self.challenger
        return self.champion


def _parse_version(value: object, *, field: str, name: str) -> str:
    if not isinstance(value, str) or not _VERSION_RE.match(value):
        raise RouteError(
            f"route for {name!r}: {field}={value!r} is not a version id; use 1-128 characters "
            "from letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return value


def _parse_fraction(value: object, *, field: str, name: str) -> float:
    if value is None:
        return 0.0
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise RouteError(
            f"route for {name!r}: {field}={value!r} must be a number between 0 and 1 inclusive"
        )
    return float(value)


def traffic_fraction(
    *, model: str, trace_id: str, purpose: str = "canary", key: bytes = b""
) -> float:
    """The deterministic position in [0, 1) of a trace for one routing decision.

    A canary request goes to the challenger when this is below ``weight``; a shadow request is
    mirrored when it is below ``shadow_fraction``. The purpose salts the hash so the two
    decisions are independent. The gateway keys the hash with its secret routing key
    (``state_dir/routing.key``), so a client that picks its trace id cannot pick its version.

    Args:
        model: the public model name.
        trace_id: the request's trace id.
        purpose: ``canary`` or ``shadow``.
        key: the gateway's routing key (BLAKE2b key, at most 64 bytes; empty: unkeyed).

    Returns:
        A float in [0, 1), uniform over trace ids.
    """
    digest = hashlib.blake2b(
        f"{model}\x00{trace_id}".encode(), digest_size=8, person=purpose.encode()[:16], key=key
    ).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


ROUTING_KEY_FILE = "routing.key"


def _routing_key(state_dir: Path) -> bytes:
    """The gateway's secret routing key from ``state_dir/routing.key``, made on first use.

    Kept with the routes, so a trace id lands on the same version across restarts; readable by
    the gateway's user only. Clients never see it.
    """
    path = state_dir / ROUTING_KEY_FILE
    if not path.exists():  # made once: a second gateway starting meanwhile keeps the first key
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _atomic_write(tmp, (os.urandom(32).hex() + "\n").encode(), mode=0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        fsync_path(state_dir)
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if not 16 <= len(key) <= 64:
        raise GatewayError(
            f"{path} does not hold a routing key; rule: 16-64 random bytes as hex on one line; "
            "fix: delete the file (the gateway makes a new key; canary traces may then change "
            "version once)"
        )
    return key


class _RouteTable:
    """Routes by public model, persisted atomically to ``state_dir/routes.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "routes.json"
        self.routes: dict[str, Route] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                items = raw["routes"]
                self.routes = {n: Route.parse(r, name=n) for n, r in items.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise RouteError(
                    f"{self.path} cannot be loaded ({exc}); fix or delete the file (routes are "
                    "set again with PUT /admin/routes/<name>)"
                ) from exc

    def set(self, name: str, route: Route) -> None:
        routes = dict(self.routes)
        routes[name] = route
        self._persist(routes)
        self.routes = routes

    def delete(self, name: str) -> bool:
        if name not in self.routes:
            return False
        routes = dict(self.routes)
        del routes[name]
        self._persist(routes)
        self.routes = routes
        return True

    def to_json(self) -> dict[str, Any]:
        return {n: r.to_json() for n, r in sorted(self.routes.items())}

    def _persist(self, routes: Mapping[str, Route]) -> None:
        payload = {"format": 1, "routes": {n: r.to_json() for n, r in sorted(routes.items())}}
        _atomic_write(self.path, (json.dumps(payload, indent=2) + "\n").encode())


def _mkdirs_durable(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each parent whose entries changed."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        fsync_path(d.parent)


def _atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    _mkdirs_durable(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_path(path.parent)


# ---------------------------------------------------------------------------------------------
# upstream client


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

    asyncio protocol + httptools parser: about a tenth of aiohttp's per-request cost. A request
    on a reused idle connection that the server closed meanwhile (nothing received) is retried
    once on a fresh connection.

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


# ---------------------------------------------------------------------------------------------
# statistics and metrics


class _Histogram:
    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def observe_array(self, values: np.ndarray) -> None:
        if values.size <= 8:
            for v in values.tolist():
                self.observe(v)
            return
        idx = np.searchsorted(np.asarray(self.bounds), values, side="left")
        for i, c in enumerate(np.bincount(idx, minlength=len(self.counts)).tolist()):
            self.counts[i] += c
        self.total += float(values.sum())
        self.count += int(values.size)


class _Reservoir:
    """Uniform sample (Algorithm R) of a stream, bounded in size."""

    __slots__ = ("seen", "size", "values")

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            j = random.randrange(self.seen)
            if j < self.size:
                self.values[j] = value

    def summary(self, scale: float = 1.0) -> dict[str, float | int | None]:
        if not self.values:
            return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None, "samples": 0}
        arr = np.asarray(self.values) * scale
        p50, p90, p99 = np.quantile(arr, [0.5, 0.9, 0.99]).tolist()
        return {
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "mean": float(arr.mean()),
            "max": float(arr.max()),
            "samples": len(self.values),
        }


class _Window:
    """Counters since the last reset (what ``/admin/stats`` reports)."""

    def __init__(self) -> None:
        self.requests = 0
        self.answered = 0
        self.errors = 0
        self.violations = 0
        self.retried = 0
        self.latency = _Reservoir()
        self.pred_count = 0
        self.pred_sum = 0.0
        self.pred_bins = [0] * 10  # "probability": 10 bins over [0, 1]; "class": k argmax counts
        self.pred_kind = ""  # "" until the first prediction, then "probability" or "class"
        self.pred_sketch: dict[
            int, int
        ] = {}  # one-value outputs: lockgate.gateway.prediction_sketch
        self.pred_out_of_range = 0
        self.diff_count = 0
        self.diff_sum = 0.0
        self.diff_max = 0.0
        self.diffs = _Reservoir()

    def snapshot(self, *, shadow: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "answered": self.answered,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else 0.0,
            "schema_violations": self.violations,
            "schema_violation_rate": self.violations / self.requests if self.requests else 0.0,
            "latency_ms": self.latency.summary(1000.0),
            "prediction": {
                "count": self.pred_count,
                "mean": self.pred_sum / self.pred_count if self.pred_count else None,
                "kind": self.pred_kind or None,
                "histogram": {
                    "edges": (
                        None if self.pred_kind == "class" else [round(i / 10, 1) for i in range(11)]
                    ),
                    "counts": list(self.pred_bins),
                },
                "sketch": {str(k): c for k, c in sorted(self.pred_sketch.items())},
                "out_of_range": self.pred_out_of_range,
            },
        }
        if shadow:
            out["abs_diff"] = {
                "count": self.diff_count,
                "mean": self.diff_sum / self.diff_count if self.diff_count else None,
                "max": self.diff_max if self.diff_count else None,
                "p99": self.diffs.summary()["p99"],
            }
        else:
            out["retried_on_champion"] = self.retried
        return out


class _Series:
    """Cumulative metrics and a resettable window for one (model, version, shadow)."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.violations = 0
        self.retries = 0
        self.merged_calls = 0  # upstream calls that carried several requests' rows
        self.merged_requests = 0  # requests answered from such calls
        self.latency = _Histogram(LATENCY_BUCKETS_S)
        self.prediction = _Histogram(PREDICTION_BUCKETS)
        self.diff = _Histogram(DIFF_BUCKETS)
        self.window = _Window()

    def merged(self, requests: int) -> None:
        """Count one merged upstream call that carried ``requests`` requests."""
        self.merged_calls += 1
        self.merged_requests += requests

    def observe(
        self,
        *,
        latency_s: float,
        error: str | None,
        violation: bool,
        predictions: np.ndarray | None,
        diffs: np.ndarray | None = None,
    ) -> None:
        w = self.window
        self.requests += 1
        w.requests += 1
        if violation:
            self.violations += 1
            w.violations += 1
            return
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
            w.errors += 1
            return
        w.answered += 1
        self.latency.observe(latency_s)
        w.latency.add(latency_s)
        if predictions is not None and predictions.size:
            if predictions.ndim == 2 and predictions.shape[1] > 1:
                _observe_classes(self.prediction, w, predictions)
            else:
                _observe_values(self.prediction, w, predictions.reshape(-1))
        if diffs is not None and diffs.size:
            self.diff.observe_array(diffs)
            w.diff_count += int(diffs.size)
            w.diff_sum += float(diffs.sum())
            w.diff_max = max(w.diff_max, float(diffs.max()))
            for d in diffs.tolist()[:64]:
                w.diffs.add(d)


def _observe_values(hist: _Histogram, w: _Window, predictions: np.ndarray) -> None:
    """One value per row (binary P(label 1), a regression value): mean, 10 bins over [0, 1]
    (values outside count as out of range) and the value sketch (any finite value)."""
    if w.pred_kind == "class":  # the version changed width mid-window: not mixed in
        w.pred_out_of_range += int(predictions.size)
        return
    w.pred_kind = "probability"
    sketch = w.pred_sketch
    if predictions.size <= 8:  # the usual few rows: Python floats beat numpy reductions
        values = predictions.tolist()
        w.pred_count += len(values)
        w.pred_sum += sum(values)
        observe = hist.observe
        for p in values:
            observe(p)
            if 0.0 <= p <= 1.0:
                w.pred_bins[min(int(p * 10), 9)] += 1
            else:
                w.pred_out_of_range += 1
            if math.isfinite(p):
                k = _sketch_key(p)
                sketch[k] = sketch.get(k, 0) + 1
        return
    hist.observe_array(predictions)
    w.pred_count += int(predictions.size)
    w.pred_sum += float(predictions.sum())
    ok = (predictions >= 0.0) & (predictions <= 1.0)
    w.pred_out_of_range += int(predictions.size - ok.sum())
    bins = np.minimum((predictions[ok] * 10).astype(np.int64), 9)
    for i, c in enumerate(np.bincount(bins, minlength=10).tolist()):
        w.pred_bins[i] += c
    found, counts = np.unique(
        _sketch_keys(predictions[np.isfinite(predictions)]), return_counts=True
    )
    for k, c in zip(found.tolist(), counts.tolist(), strict=True):
        sketch[k] = sketch.get(k, 0) + c


def _observe_classes(hist: _Histogram, w: _Window, outputs: np.ndarray) -> None:
    """k class probabilities per row (multiclass): the histogram counts the predicted class
    (argmax, k bins in column order); the mean and the Prometheus histogram take the top-class
    probability. A row with a value outside [0, 1] (or NaN) is out of range and not counted."""
    n, k = outputs.shape
    if w.pred_kind == "probability" or (w.pred_kind == "class" and len(w.pred_bins) != k):
        w.pred_out_of_range += n  # the version changed width mid-window: not mixed in
        return
    if w.pred_kind != "class":
        w.pred_kind = "class"
        w.pred_bins = [0] * k
    ok = ((outputs >= 0.0) & (outputs <= 1.0)).all(axis=1)
    w.pred_out_of_range += int(n - ok.sum())
    good = outputs[ok]
    if not good.shape[0]:
        return
    top = good.max(axis=1)
    hist.observe_array(top)
    w.pred_count += int(top.size)
    w.pred_sum += float(top.sum())
    for i, c in enumerate(np.bincount(good.argmax(axis=1), minlength=k).tolist()):
        w.pred_bins[i] += c


def _merged_bins(live: _Window, shadow: _Window) -> list[int]:
    """The live and shadow histograms added; a window that saw no prediction adds nothing."""
    if not shadow.pred_kind:
        return list(live.pred_bins)
    if not live.pred_kind:
        return list(shadow.pred_bins)
    if len(live.pred_bins) != len(shadow.pred_bins):
        return list(live.pred_bins)  # widths differ (a misconfigured version): live wins
    return [a + b for a, b in zip(live.pred_bins, shadow.pred_bins, strict=True)]


class _Stats:
    """All gateway statistics: per public model, lockgate version and shadow flag."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, bool], _Series] = {}
        self.since: dict[str, float] = {}
        self.shadow_dropped: dict[str, int] = {}
        self.wal_commits = 0
        self.wal_records = 0
        self.wal_commit = _Histogram(COMMIT_BUCKETS_S)
        self.wal_errors = 0
        self.segments_rolled = 0
        self.inflight = 0

    def get(self, model: str, version: str, shadow: bool) -> _Series:
        key = (model, version, shadow)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series()
            self.since.setdefault(model, time.time())
        return s

    def reset(self, model: str) -> float:
        now = time.time()
        self.since[model] = now
        for (m, _, _), s in self.series.items():
            if m == model:
                s.window = _Window()
        self.shadow_dropped.pop(model, None)
        return now

    def snapshot(self, model: str, route: Route | None) -> dict[str, Any]:
        since = self.since.get(model, time.time())
        windows: dict[str, dict[bool, _Window]] = {}
        for (m, v, shadow), s in self.series.items():
            if m == model:
                windows.setdefault(v, {})[shadow] = s.window
        if route is not None:
            for v in route.versions:
                windows.setdefault(v, {})
        versions = {
            v: _version_snapshot(w.get(False, _Window()), w.get(True, _Window()), _role(route, v))
            for v, w in sorted(windows.items())
        }
        return {
            "model": model,
            "since": _iso(since),
            "since_unix": since,
            "now": _iso(time.time()),
            "route": None if route is None else route.to_json(),
            "histogram_edges": [round(i / 10, 1) for i in range(11)],
            "versions": versions,
            "shadow_dropped": self.shadow_dropped.get(model, 0),
        }

    def exposition(self) -> bytes:
        lines: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")

        items = sorted(self.series.items())
        head(
            "lockgate_gateway_requests_total",
            "counter",
            "Inference requests per public model, lockgate version and shadow flag.",
        )
        for (m, v, sh), s in items:
            lines.append(f"lockgate_gateway_requests_total{{{_labels(m, v, sh)}}} {s.requests}")
        head(
            "lockgate_gateway_errors_total",
            "counter",
            "Failed inference requests (upstream error, timeout, unreachable, log) by kind.",
        )
        for (m, v, sh), s in items:
            for kind, n in sorted(s.errors.items()):
                lines.append(
                    f'lockgate_gateway_errors_total{{{_labels(m, v, sh)},kind="{kind}"}} {n}'
                )
        head(
            "lockgate_gateway_schema_violations_total",
            "counter",
            "Requests refused by the input schema check, for the version they would have hit.",
        )
        for (m, v, sh), s in items:
            lines.append(
                f"lockgate_gateway_schema_violations_total{{{_labels(m, v, sh)}}} {s.violations}"
            )
        for name, text, attr in (
            (
                "lockgate_gateway_challenger_retries_total",
                "Failed canary challenger requests retried on the champion.",
                "retries",
            ),
            (
                "lockgate_gateway_coalesced_calls_total",
                "Upstream calls that carried the rows of several requests (coalescing under load).",
                "merged_calls",
            ),
            (
                "lockgate_gateway_coalesced_requests_total",
                "Requests sent upstream inside a coalesced call.",
                "merged_requests",
            ),
        ):  # counters of live traffic only: one line per (model, version)
            head(name, "counter", text)
            for (m, v, sh), s in items:
                if not sh:
                    lines.append(f"{name}{{{_labels(m, v, sh)}}} {getattr(s, attr)}")
        head(
            "lockgate_gateway_latency_seconds",
            "histogram",
            "Gateway latency of answered requests (receive to upstream answer, before the log).",
        )
        for (m, v, sh), s in items:
            _hist_lines(lines, "lockgate_gateway_latency_seconds", _labels(m, v, sh), s.latency)
        head(
            "lockgate_gateway_prediction",
            "histogram",
            "Predictions: OUTPUT__0 values of one-value outputs, the top-class probability of "
            "multiclass outputs.",
        )
        for (m, v, sh), s in items:
            _hist_lines(lines, "lockgate_gateway_prediction", _labels(m, v, sh), s.prediction)
        head(
            "lockgate_gateway_shadow_abs_diff",
            "histogram",
            "Absolute difference between the shadow (challenger) and the champion output.",
        )
        for (m, v, sh), s in items:
            if sh:
                _hist_lines(lines, "lockgate_gateway_shadow_abs_diff", _labels(m, v, sh), s.diff)
        head(
            "lockgate_gateway_shadow_dropped_total",
            "counter",
            "Shadow requests not sent because too many were in flight.",
        )
        for m, n in sorted(self.shadow_dropped.items()):
            lines.append(f'lockgate_gateway_shadow_dropped_total{{model="{_esc(m)}"}} {n}')
        head("lockgate_gateway_wal_commits_total", "counter", "Group commits of the WAL.")
        lines.append(f"lockgate_gateway_wal_commits_total {self.wal_commits}")
        head("lockgate_gateway_wal_records_total", "counter", "Records committed to the WAL.")
        lines.append(f"lockgate_gateway_wal_records_total {self.wal_records}")
        head("lockgate_gateway_wal_errors_total", "counter", "Failed WAL commits.")
        lines.append(f"lockgate_gateway_wal_errors_total {self.wal_errors}")
        head(
            "lockgate_gateway_wal_commit_seconds",
            "histogram",
            "Duration of one group commit (write + fdatasync).",
        )
        _hist_lines(lines, "lockgate_gateway_wal_commit_seconds", "", self.wal_commit)
        head(
            "lockgate_gateway_wal_segments_rolled_total",
            "counter",
            "WAL segments converted to Parquet and deleted.",
        )
        lines.append(f"lockgate_gateway_wal_segments_rolled_total {self.segments_rolled}")
        head("lockgate_gateway_inflight_requests", "gauge", "Inference requests in progress.")
        lines.append(f"lockgate_gateway_inflight_requests {self.inflight}")
        return ("\n".join(lines) + "\n").encode()


def _version_snapshot(live: _Window, shadow: _Window, role: str) -> dict[str, Any]:
    """Flat per-version stats (live + shadow where noted) plus detailed live/shadow blocks."""
    samples = live.latency.values + shadow.latency.values
    lat = np.asarray(samples) * 1000.0 if samples else None
    q = np.quantile(lat, [0.5, 0.9, 0.99]).tolist() if lat is not None else [None] * 3
    preds = live.pred_count + shadow.pred_count
    requests = live.requests
    errors = live.errors + shadow.errors
    violations = live.violations + shadow.violations
    total = live.requests + shadow.requests
    return {
        "role": role,
        "requests": requests,
        "answered": live.answered,
        "shadow_requests": shadow.requests,
        "errors": errors,
        "schema_violations": violations,
        "error_rate": errors / total if total else 0.0,
        "schema_violation_rate": violations / total if total else 0.0,
        "retried_on_champion": live.retried,
        "p50_ms": q[0],
        "p90_ms": q[1],
        "p99_ms": q[2],
        "latency_samples": len(samples),
        "mean_prediction": (live.pred_sum + shadow.pred_sum) / preds if preds else None,
        "prediction_histogram": _merged_bins(live, shadow),
        "prediction_kind": live.pred_kind or shadow.pred_kind or None,
        "prediction_sketch": {
            str(k): c
            for k, c in sorted(
                (
                    collections.Counter(live.pred_sketch) + collections.Counter(shadow.pred_sketch)
                ).items()
            )
        },
        "prediction_out_of_range": live.pred_out_of_range + shadow.pred_out_of_range,
        "shadow_mean_abs_diff": shadow.diff_sum / shadow.diff_count if shadow.diff_count else None,
        "shadow_max_abs_diff": shadow.diff_max if shadow.diff_count else None,
        "live": live.snapshot(shadow=False),
        "shadow": shadow.snapshot(shadow=True),
    }


def _role(route: Route | None, version: str) -> str:
    if route is None:
        return "unrouted"
    if version == route.champion:
        return "champion"
    if version == route.challenger:
        return "challenger"
    return "pinned"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="microseconds")


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(model: str, version: str, shadow: bool) -> str:
    return (
        f'model="{_esc(model)}",version="{_esc(version)}",shadow="{"true" if shadow else "false"}"'
    )


def _hist_lines(lines: list[str], name: str, labels: str, hist: _Histogram) -> None:
    sep = "," if labels else ""
    acc = 0
    for bound, c in zip(hist.bounds, hist.counts, strict=False):
        acc += c
        lines.append(f'{name}_bucket{{{labels}{sep}le="{bound!r}"}} {acc}')
    acc += hist.counts[-1]
    lines.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {acc}')
    suffix = f"{{{labels}}}" if labels else ""
    lines.append(f"{name}_sum{suffix} {hist.total!r}")
    lines.append(f"{name}_count{suffix} {hist.count}")


# ---------------------------------------------------------------------------------------------
# prediction log: WAL + group commit + Parquet roller


def prediction_log_schema() -> pa.Schema:
    """The Arrow schema of the prediction log (Parquet files and decoded WAL records).

    Columns: ``trace_id``; ``request_id`` (the client's KServe ``id``, nullable); ``ts``
    (timestamp[us, UTC], when the answer was ready); ``model`` (public name); ``version``
    (lockgate version); ``routed_by`` (canary, shadow, bluegreen, single, pinned, retry);
    ``shadow`` (True for mirrored challenger calls); ``status`` (HTTP status sent or, for
    shadow records, received); ``error`` (nullable); ``latency_ms`` (receive to upstream answer);
    ``inputs`` (list of FP32 rows, null when the body was unreadable); ``outputs`` (list of
    OUTPUT__0 rows, null on errors); ``shadow_abs_diff`` (per row, max absolute difference to the
    champion's output; shadow records only).
    """
    import pyarrow as pa

    rows = pa.list_(pa.list_(pa.float32()))
    return pa.schema(
        [
            ("trace_id", pa.string()),
            ("request_id", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("version", pa.string()),
            ("routed_by", pa.string()),
            ("shadow", pa.bool_()),
            ("status", pa.int32()),
            ("error", pa.string()),
            ("latency_ms", pa.float64()),
            ("inputs", rows),
            ("outputs", rows),
            ("shadow_abs_diff", pa.list_(pa.float32())),
        ]
    )


def _rows(a: np.ndarray) -> np.ndarray:
    """The array as little-endian FP32 [rows, values per row] (a scalar is one row of one)."""
    if a.ndim != 2:
        a = a.reshape(1, 1) if a.ndim == 0 else a.reshape(a.shape[0], math.prod(a.shape[1:]))
    return a.astype("<f4", copy=False)


def _encode_record(
    meta: Mapping[str, Any], inputs: np.ndarray | None, outputs: np.ndarray | None
) -> bytes:
    """One WAL frame: a fixed binary header (``_REC``), the strings, then the FP32 arrays.

    ``meta`` keys: ``t`` trace id, ``ts`` microseconds since the epoch, ``m`` model, ``v``
    version, ``rb`` routed by, ``st`` status, ``lat`` latency in ms; optional ``rid`` request id,
    ``err`` error text, ``sh`` shadow flag, ``diff`` per-row shadow differences.
    """
    flags = _F_SHADOW if meta.get("sh") else 0
    t = meta["t"].encode()
    m = meta["m"].encode()
    v = meta["v"].encode()
    rb = meta["rb"].encode()
    rid = meta.get("rid")
    err = meta.get("err")
    ridb = b"" if rid is None else rid.encode()
    errb = b"" if err is None else err.encode()
    parts = [b"", t, m, v, rb, ridb, errb]
    if rid is not None:
        flags |= _F_RID
    if err is not None:
        flags |= _F_ERR
    in_rows = in_width = out_rows = out_width = n_diff = 0
    if inputs is not None:
        x = _rows(inputs)
        flags |= _F_IN
        in_rows, in_width = x.shape
        parts.append(x.tobytes())
    if outputs is not None:
        y = _rows(outputs)
        flags |= _F_OUT
        out_rows, out_width = y.shape
        parts.append(y.tobytes())
    diff = meta.get("diff")
    if diff is not None:
        d = np.asarray(diff, dtype="<f4").reshape(-1)
        flags |= _F_DIFF
        n_diff = d.size
        parts.append(d.tobytes())
    parts[0] = _REC.pack(
        meta["ts"],
        meta["lat"],
        meta["st"],
        flags,
        len(t),
        len(m),
        len(v),
        len(rb),
        len(ridb),
        len(errb),
        in_rows,
        in_width,
        out_rows,
        out_width,
        n_diff,
    )
    payload = b"".join(parts)
    return _FRAME.pack(_WAL_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _frames(data: bytes, magic: bytes, min_len: int) -> tuple[list[int], list[int], int]:
    """Payload bounds of the intact frames at the start of ``data``, and where they stop."""
    starts: list[int] = []
    ends: list[int] = []
    view = memoryview(data)
    unpack, crc32, head = _FRAME.unpack_from, zlib.crc32, _FRAME.size
    off, size = 0, len(data)
    while off + head <= size:
        mg, length, crc = unpack(data, off)
        end = off + head + length
        if mg != magic or length < min_len or end > size or crc32(view[off + head : end]) != crc:
            break
        starts.append(off + head)
        ends.append(end)
        off = end
    return starts, ends, off


def _upgrade_v1(data: bytes) -> tuple[bytes, list[int], list[int], int]:
    """Re-encode a segment of version-1 records (JSON header) left by an older gateway."""
    starts, ends, stop = _frames(data, _WAL_MAGIC_V1, 4)
    frames: list[bytes] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    size = 0
    for s, e in zip(starts, ends, strict=True):
        try:
            (mlen,) = _META_LEN.unpack_from(data, s)
            meta = _fast_loads(data[s + 4 : s + 4 + mlen])
            off = s + 4 + mlen
            arrays: list[np.ndarray | None] = []
            for key in ("ish", "osh"):
                shape = meta.get(key)
                if shape is None:
                    arrays.append(None)
                    continue
                n = math.prod(shape)
                arrays.append(np.frombuffer(data, "<f4", count=n, offset=off).reshape(shape))
                off += 4 * n
            if off != e:
                raise ValueError("record length does not match its shapes")
            frame = _encode_record(meta, arrays[0], arrays[1])
            frames.append(frame)
            new_starts.append(size + _FRAME.size)
            size += len(frame)
            new_ends.append(size)
        except (ValueError, KeyError, TypeError, struct.error):
            stop = s - _FRAME.size
            break
    return b"".join(frames), new_starts, new_ends, stop


def _read_segment(path: Path) -> tuple[pa.Table, bool]:
    """Decode a WAL segment into a prediction-log table; stop at the first torn or corrupt frame.

    Columnar: one pass over the frames checks each CRC and slices the fields; the columns are
    built from those slices without decoding record by record.

    Returns:
        The table, and whether nothing but zero bytes follows the last record.
    """
    data = path.read_bytes()
    if data[:4] == _WAL_MAGIC_V1:
        body, starts, ends, stop = _upgrade_v1(data)
    else:
        body = data
        starts, ends, stop = _frames(data, _WAL_MAGIC, _REC.size)
    table, kept = _decode_frames(body, starts, ends)
    # a record that does not add up to its own header ends the segment like a torn frame
    clean = kept == len(starts) and (stop >= len(data) or not data[stop:].strip(b"\0"))
    return table, clean


def _decode_frames(data: bytes, starts: list[int], ends: list[int]) -> tuple[pa.Table, int]:
    """Prediction-log table of the records in ``data`` at the given payload bounds.

    Returns:
        The table and how many records it holds: a record whose header does not add up to its
        frame's length ends it.
    """
    import pyarrow as pa

    n = len(starts)
    head_len = _REC.size
    head = np.frombuffer(b"".join([data[s : s + head_len] for s in starts]), _REC_DTYPE)
    sizes = np.empty((n, 9), dtype=np.int64)
    for j, name in enumerate(("lt", "lm", "lv", "lrb", "lrid", "lerr")):
        sizes[:, j] = head[name]
    sizes[:, 6] = 4 * head["ir"].astype(np.int64) * head["iw"]
    sizes[:, 7] = 4 * head["or"].astype(np.int64) * head["ow"]
    sizes[:, 8] = 4 * head["nd"].astype(np.int64)
    pos = np.empty((n, 9), dtype=np.int64)
    pos[:, 0] = np.asarray(starts, dtype=np.int64) + head_len
    np.cumsum(sizes[:, :-1], axis=1, out=pos[:, 1:])
    pos[:, 1:] += pos[:, :1]
    bad = np.flatnonzero(pos[:, 8] + sizes[:, 8] != np.asarray(ends, dtype=np.int64))
    if bad.size:
        n = int(bad[0])
        head, sizes, pos = head[:n], sizes[:n], pos[:n]

    def field(j: int) -> bytes:
        return b"".join(
            [data[a : a + b] for a, b in zip(pos[:, j].tolist(), sizes[:, j].tolist(), strict=True)]
        )

    flags = head["flags"]
    columns = [
        _string_column(field(0), sizes[:, 0], None),
        _string_column(field(4), sizes[:, 4], flags & _F_RID != 0),
        pa.array(head["ts"], pa.timestamp("us", tz="UTC")),
        _string_column(field(1), sizes[:, 1], None),
        _string_column(field(2), sizes[:, 2], None),
        _string_column(field(3), sizes[:, 3], None),
        pa.array(flags & _F_SHADOW != 0, pa.bool_()),
        pa.array(head["st"], pa.int32()),
        _string_column(field(5), sizes[:, 5], flags & _F_ERR != 0),
        pa.array(head["lat"], pa.float64()),
        _rows_column(field(6), head["ir"], head["iw"], flags & _F_IN != 0),
        _rows_column(field(7), head["or"], head["ow"], flags & _F_OUT != 0),
        _list_column(field(8), head["nd"], flags & _F_DIFF != 0),
    ]
    return pa.Table.from_arrays(columns, schema=prediction_log_schema()), n


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    if out[-1] > np.iinfo(np.int32).max:
        raise PredictionLogError(
            f"a WAL segment holds {int(out[-1])} values in one column, over Arrow's 2**31 - 1; "
            "lower segment_max_bytes"
        )
    return out.astype(np.int32)


def _validity(valid: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    import pyarrow as pa

    if valid is None or valid.all():
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), int(valid.size - valid.sum())


def _string_column(data: bytes, lengths: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    import pyarrow as pa

    bitmap, nulls = _validity(valid)
    arr = pa.StringArray.from_buffers(
        len(lengths), pa.py_buffer(_offsets(lengths)), pa.py_buffer(data), bitmap, nulls
    )
    arr.validate(full=True)  # UTF-8 and offsets: a bug here must not write a bad Parquet file
    return arr


def _list_column(data: bytes, counts: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """list<float32> with ``counts[i]`` values per record (null where not ``valid``)."""
    import pyarrow as pa

    values = pa.array(np.frombuffer(data, "<f4"), pa.float32())
    mask = None if valid is None or valid.all() else pa.array(~valid)
    return pa.ListArray.from_arrays(pa.array(_offsets(counts)), values, mask=mask)


def _rows_column(data: bytes, rows: np.ndarray, width: np.ndarray, valid: np.ndarray) -> pa.Array:
    """list<list<float32>>: ``rows[i]`` rows of ``width[i]`` values per record."""
    import pyarrow as pa

    inner = _list_column(data, np.repeat(width, rows), None)
    return pa.ListArray.from_arrays(
        pa.array(_offsets(rows)), inner, mask=None if valid.all() else pa.array(~valid)
    )


_SEGMENT_RE = re.compile(r"^wal-(\d{20})\.log$")
_PART_RE = re.compile(r"^part-(\d{20})\.parquet$")


def _segment_seq(path: Path) -> int:
    m = _SEGMENT_RE.match(path.name)
    return int(m.group(1)) if m else -1


def _list_segments(wal_dir: Path) -> list[Path]:
    if not wal_dir.is_dir():
        return []
    return sorted(p for p in wal_dir.iterdir() if _SEGMENT_RE.match(p.name))


def _by_model_day(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    """Split a log table into (model, UTC day, rows) parts, sorted, rows in log order."""
    import pyarrow as pa

    if table.num_rows == 0:
        return []
    days = table.column("ts").cast(pa.int64()).to_numpy() // 86_400_000_000
    first = int(days.min())
    span = int(days.max()) - first + 1
    models = table.column("model").combine_chunks().dictionary_encode()
    names = models.dictionary.to_pylist()
    keys = models.indices.to_numpy().astype(np.int64) * span + (days - first)
    uniq, inverse = np.unique(keys, return_inverse=True)
    parts = []
    for g, key in enumerate(uniq.tolist()):
        day = (_EPOCH + dt.timedelta(days=first + key % span)).strftime("%Y-%m-%d")
        rows = table if len(uniq) == 1 else table.take(np.flatnonzero(inverse == g))
        parts.append((names[key // span], day, rows))
    return sorted(parts, key=lambda p: (p[0], p[1]))


def _roll_segment(path: Path, log_dir: Path) -> int:
    """Convert one closed WAL segment to Parquet parts, then delete it.

    A part is written to a hidden temp name, fsynced, renamed, and its folder fsynced; the segment
    is deleted only after every part is durable. Re-running after a crash rewrites the same part
    names (idempotent). A segment with bytes after its last valid record is kept as ``.torn``.

    Returns:
        The number of records converted.
    """
    import pyarrow.parquet as pq

    seq = _segment_seq(path)
    table, clean = _read_segment(path)
    for model, day, rows in _by_model_day(table):
        folder = log_dir / model / f"date={day}"
        _mkdirs_durable(folder)
        final = folder / f"part-{seq:020d}.parquet"
        tmp = folder / f".part-{seq:020d}.parquet.tmp"
        try:
            pq.write_table(rows, tmp, compression="zstd", row_group_size=LOG_ROW_GROUP_ROWS)
            fsync_path(tmp)
        except BaseException:  # e.g. a full disk: give the space back, retry the segment later
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.replace(tmp, final)
        fsync_path(folder)
    if not clean:
        torn = path.with_name(path.name + ".torn")
        os.replace(path, torn)
        logger.warning(
            "WAL segment %s has unreadable bytes after %d records; kept as %s",
            path,
            table.num_rows,
            torn,
        )
    else:
        path.unlink()
    fsync_path(path.parent)
    return table.num_rows


class PredictionLog:
    """Write-ahead prediction log with group commit and a Parquet roller.

    ``append`` buffers an encoded record and returns a future that resolves once the record is
    durable. One committer task takes everything buffered since its last round and writes it
    with one ``pwrite`` (on the event loop: a page-cache copy of a few kB into preallocated
    space); with ``fsync`` durability it then waits for one ``fdatasync``, run by a helper
    process (see :class:`_Syncer`) so the event loop keeps serving, and resolves the futures of
    the whole group when it returns: concurrent requests share one fsync, and the next group
    is collected while the disk works. Segments rotate by size and age (on an I/O thread); the
    roller converts closed segments to Parquet on its own thread.

    Args:
        log_dir: root folder of the log (``_wal/`` holds the segments).
        durability: ``fsync`` (fdatasync before answering; survives power loss) or ``flush``
            (``write`` to the OS before answering; survives a crash of the process only).
        segment_max_bytes: rotate the active segment beyond this size.
        segment_max_age_s: rotate a non-empty segment older than this.
        commit_interval_s: minimum time between group commits (0: commit as soon as the previous
            commit is done: lowest latency, still batched under load).
        commit_delay_s: with ``fsync``, hold a commit up to this long while at least
            ``commit_siblings`` requests in flight have no record yet, releasing it as soon as
            at least as many records wait as requests remain in flight (PostgreSQL's
            ``commit_delay`` / ``commit_siblings``, released at half). Under load one fdatasync
            then covers several requests instead of one or two, while the other half keep the
            upstream busy: on the 2-core benchmark machine this halved the gateway's CPU per
            request at 16 clients. A lone request is never held. 0 turns it off.
        commit_siblings: see ``commit_delay_s``.
        stats: where commit metrics are counted.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        *,
        durability: Durability = "fsync",
        segment_max_bytes: int = 64 << 20,
        segment_max_age_s: float = 60.0,
        commit_interval_s: float = 0.0,
        commit_delay_s: float = 0.001,
        commit_siblings: int = 2,
        stats: _Stats | None = None,
    ) -> None:
        if durability not in ("fsync", "flush"):
            raise GatewayError(f"durability={durability!r} must be 'fsync' or 'flush'")
        self.log_dir = Path(log_dir)
        self.wal_dir = self.log_dir / "_wal"
        self.durability = durability
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_s = segment_max_age_s
        self.commit_interval_s = commit_interval_s
        self.commit_delay_s = commit_delay_s
        self.commit_siblings = commit_siblings
        self.stats = stats or _Stats()
        self._gather: asyncio.Future[None] | None = None
        self._chunks: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._roll_wake: asyncio.Event | None = None
        self._io_lock: asyncio.Lock | None = None
        self._io_queue: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._io_queue = queue.SimpleQueue()
        self._io_thread: threading.Thread | None = None
        self._syncer: _Syncer | None = None
        self._done: asyncio.Future[None] | None = None
        self._roller: ThreadPoolExecutor | None = None
        self._active_seq = 1 << 62  # segments below this number are closed
        self._fd = -1
        self._seg_path: Path | None = None
        self._seg_size = 0
        self._seg_alloc = 0
        self._tail_dirty = False  # a failed write may have left bytes after _seg_size
        self._seg_started = 0.0
        self._last_seq = 0
        self._lock_fd = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------

    def recover(self) -> int:
        """Lock the log folder and convert segments left by an earlier process.

        Returns:
            Records recovered.

        Raises:
            PredictionLogError: another gateway holds the log folder.
        """
        _mkdirs_durable(self.wal_dir)
        if self._lock_fd < 0:
            fd = os.open(self.wal_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise PredictionLogError(
                    f"prediction log {self.log_dir} is in use by another gateway (lock "
                    f"{self.wal_dir / 'LOCK'}); give each gateway its own log_dir"
                ) from None
            self._lock_fd = fd
        total = 0
        for seg in _list_segments(self.wal_dir):
            self._last_seq = max(self._last_seq, _segment_seq(seg))
            n = _roll_segment(seg, self.log_dir)
            self.stats.segments_rolled += 1
            total += n
            logger.info("recovered %d records from %s", n, seg)
        return total

    async def start(self) -> None:
        """Recover leftovers, open a fresh segment and start the committer and roller."""
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._done.set_result(None)
        self._roller = ThreadPoolExecutor(1, thread_name_prefix="lockgate-roll")
        self._io_queue = queue.SimpleQueue()
        self._io_thread = threading.Thread(
            target=_io_worker, args=(self._io_queue, loop), name="lockgate-wal-io", daemon=True
        )
        self._io_thread.start()
        await loop.run_in_executor(self._roller, self.recover)
        await self._io(self._open_segment)
        if self.durability == "fsync":
            self._syncer = _Syncer(loop)
            self._syncer.start()
        self._wake = asyncio.Event()
        self._roll_wake = asyncio.Event()
        self._io_lock = asyncio.Lock()
        self._closing = False
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="lockgate-wal-commit"),
            asyncio.create_task(self._roll_loop(), name="lockgate-wal-roll"),
        ]

    async def close(self) -> None:
        """Commit what is buffered, close the segment, roll everything and unlock."""
        if not self._tasks:
            return
        self._closing = True
        assert self._wake is not None
        assert self._roll_wake is not None
        assert self._roller is not None
        self._wake.set()
        self._roll_wake.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._io(self._close_segment)
        if self._syncer is not None:
            self._syncer.close()
            self._syncer = None
        self._io_queue.put(None)
        if self._io_thread is not None:
            self._io_thread.join()
        self._active_seq = 1 << 62
        await asyncio.get_running_loop().run_in_executor(self._roller, self._roll_closed)
        self._roller.shutdown(wait=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- hot path -------------------------------------------------------------------------

    def append(self, record: bytes) -> asyncio.Future[None]:
        """Buffer an encoded record; the future resolves when it is durable."""
        if self._wake is None or self._closing or self._loop is None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            fut.set_exception(PredictionLogError("prediction log is not running"))
            return fut
        if (
            not self._chunks
            and self._io_lock is not None
            and not self._io_lock.locked()
            and self._fd >= 0
            and self._seg_size < self.segment_max_bytes
            and (self._syncer is None or self.stats.inflight <= 1)
        ):
            # Fast path, no hop through the committer: with flush durability the OS has the
            # record once pwrite returns; with fsync and no other request in flight, blocking
            # the event loop for one fdatasync (~0.1-0.2 ms) delays nobody and saves the
            # round trip to the fsync helper.
            start = self._seg_size
            try:
                self._write((record,))
                if self._syncer is not None:
                    os.fdatasync(self._fd)
            except OSError as exc:
                if self._seg_size != start:  # written but not confirmed durable: not logged
                    self._undo(start)
                fut = self._loop.create_future()
                fut.set_exception(self._commit_error(exc))
                return fut
            self.stats.wal_commits += 1
            self.stats.wal_records += 1
            if self._seg_size >= self.segment_max_bytes:
                self._wake.set()  # the committer rotates
            assert self._done is not None
            return self._done
        fut = self._loop.create_future()
        self._chunks.append(record)
        self._waiters.append(fut)
        self._wake.set()
        gather = self._gather
        if gather is not None and not gather.done() and not self._should_hold():
            gather.set_result(None)

        return fut

    def _should_hold(self) -> bool:
        """Whether a commit is worth holding: at least ``commit_siblings`` requests in flight
        have no record yet, and more of them than there are records waiting. Releasing once
        half have arrived keeps the other half at the upstream while the disk works."""
        waiting = len(self._waiters)
        others = self.stats.inflight - waiting
        return others >= self.commit_siblings and others > waiting

    def _commit_error(self, exc: BaseException) -> PredictionLogError:
        self.stats.wal_errors += 1
        logger.error("prediction log commit failed: %s", exc)
        return PredictionLogError(
            f"prediction log {self.wal_dir} cannot be written ({exc}); the request was not "
            "answered because it could not be logged; free disk space or fix permissions"
        )

    def append_nowait(self, record: bytes) -> None:
        """Buffer a record nobody waits for (shadow results); committed with the next group."""
        if self._wake is None or self._closing:
            return
        self._chunks.append(record)
        self._wake.set()

    def _io(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``fn`` on the I/O thread; the future settles on the event loop."""
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._io_queue.put((fn, fut))
        return fut

    async def _commit_loop(self) -> None:
        assert self._wake is not None
        assert self._io_lock is not None
        while True:
            if not self._chunks:
                if self._fd >= 0 and self._seg_size >= self.segment_max_bytes:
                    try:
                        async with self._io_lock:
                            if self._seg_size >= self.segment_max_bytes:
                                await self._io(self._rotate)
                        if self._roll_wake is not None:
                            self._roll_wake.set()
                    except Exception as exc:
                        logger.error("rotating the prediction log failed: %s", exc)
                        await asyncio.sleep(1.0)
                    continue
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if self.commit_interval_s > 0 and not self._closing:
                await asyncio.sleep(self.commit_interval_s)
            elif (
                self._syncer is not None
                and self.commit_delay_s > 0
                and not self._closing
                and self._should_hold()
            ):
                await self._gather_group()
            chunks, waiters = self._chunks, self._waiters
            self._chunks, self._waiters = [], []
            t0 = time.perf_counter()
            rotated = False
            try:
                async with self._io_lock:
                    if self._fd < 0:  # opening the next segment failed before (full disk)
                        await self._io(self._open_segment)
                    start = self._seg_size
                    self._write(chunks)
                    try:
                        if self._seg_size >= self.segment_max_bytes:
                            # syncs the full segment before closing it
                            await self._io(self._close_segment)
                            rotated = True
                        elif self._syncer is not None:
                            assert self._seg_path is not None
                            await self._syncer.sync(self._seg_path)
                    except BaseException:
                        if self._fd >= 0:  # not confirmed durable: these records are not logged
                            self._undo(start)
                        raise
                    if rotated:  # the records are durable in the closed segment
                        try:
                            await self._io(self._open_segment)
                        except OSError as exc:  # the next commit tries again
                            logger.error("opening a new WAL segment failed: %s", exc)
            except Exception as exc:
                err = self._commit_error(exc)
                for w in waiters:
                    if not w.done():
                        w.set_exception(err)
                continue
            self.stats.wal_commit.observe(time.perf_counter() - t0)
            self.stats.wal_commits += 1
            self.stats.wal_records += len(chunks)
            for w in waiters:
                if not w.done():
                    w.set_result(None)
            if rotated and self._roll_wake is not None:
                self._roll_wake.set()

    async def _gather_group(self) -> None:
        """Hold a commit until :meth:`_should_hold` says no (checked at each append) or
        ``commit_delay_s`` has passed (PostgreSQL's commit_delay/commit_siblings)."""
        assert self._loop is not None
        gather = self._gather = self._loop.create_future()
        timer = self._loop.call_later(self.commit_delay_s, _settle, gather, None, None)
        try:
            await gather
        finally:
            timer.cancel()
            self._gather = None

    async def _roll_loop(self) -> None:
        assert self._roll_wake is not None
        assert self._io_lock is not None
        assert self._roller is not None
        loop = asyncio.get_running_loop()
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.segment_max_age_s / 2, 0.05)):
                    await self._roll_wake.wait()
            self._roll_wake.clear()
            if self._closing:
                return
            try:
                if (
                    self._seg_size > 0
                    and time.monotonic() - self._seg_started >= self.segment_max_age_s
                ):
                    async with self._io_lock:
                        await self._io(self._rotate)
                await loop.run_in_executor(self._roller, self._roll_closed)
            except Exception as exc:  # keep serving; the segment stays and is retried
                logger.error("rolling the prediction log failed: %s", exc)

    async def rotate_now(self) -> tuple[int, int]:
        """Close the active segment and roll every closed segment to Parquet now.

        Returns:
            Segments and records rolled.
        """
        assert self._io_lock is not None
        assert self._roller is not None
        async with self._io_lock:
            await self._io(self._rotate)
        return await asyncio.get_running_loop().run_in_executor(self._roller, self._roll_closed)

    # -- file operations (event loop for write; I/O thread for the rest) ------------------

    def _write(self, chunks: list[bytes] | tuple[bytes, ...]) -> None:
        """Append records at the end of the segment, all or nothing.

        A write that fails part way (``ENOSPC`` after some bytes reached the file) is undone:
        the file is cut back to where the write began, so the next records follow the last
        whole one and no torn bytes ever sit between records. ``_seg_size`` moves only once
        every byte is written.
        """
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        start = self._seg_size
        end = start + len(data)
        if self._fd < 0:
            raise OSError(errno.EBADF, "no open WAL segment (opening one failed before)")
        try:
            if self._tail_dirty:
                os.ftruncate(self._fd, start)  # what a failed write left after the last record
                self._tail_dirty = False
                self._seg_alloc = start
            if end > self._seg_alloc:
                self._preallocate(end)
            view = memoryview(data)
            pos = start
            while view:
                n = os.pwrite(self._fd, view, pos)
                view = view[n:]
                pos += n
        except OSError:
            self._undo(start)
            raise
        self._seg_size = end

    def _undo(self, start: int) -> None:
        """Forget everything after ``start``: a failed write or an unconfirmed ``fdatasync``.

        The segment is cut back to ``start`` (giving the space back); if even that fails, the
        next write cuts it first. Records before ``start`` were made durable by earlier commits.
        """
        self._seg_size = start
        self._tail_dirty = True
        try:
            os.ftruncate(self._fd, start)
        except OSError as exc:
            logger.error(
                "cannot cut WAL segment %s back to %d bytes: %s", self._seg_path, start, exc
            )
            return
        self._tail_dirty = False
        self._seg_alloc = start

    def _preallocate(self, end: int) -> None:
        """Reserve the next blocks: fdatasync then need not journal a size change per commit
        (about 100 us instead of 170 us per fsync on ext4 here). Zeros past the last record
        read as the end of the segment.

        On a nearly full disk the step is cut to what this write needs; when even that does not
        fit, ``ENOSPC`` is raised (the commit fails, its requests get 503) and the next write
        tries again. Only a file system without ``fallocate`` turns preallocation off.
        """
        step = self._seg_alloc + min(_PREALLOC_STEP, self.segment_max_bytes)
        for target in (max(end, step), end):
            try:
                os.posix_fallocate(self._fd, self._seg_alloc, target - self._seg_alloc)
            except OSError as exc:
                if exc.errno in _NO_SPACE:
                    if target > end:
                        continue
                    raise
                self._seg_alloc = 1 << 62  # not supported here: plain appends
                return
            self._seg_alloc = target
            return

    def _open_segment(self) -> None:
        seq = max(time.time_ns() // 1000, self._last_seq + 1)
        self._last_seq = seq
        self._active_seq = seq  # before the file exists: the roller must never touch it
        path = self.wal_dir / f"wal-{seq:020d}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self._fd = fd
            self._seg_size = 0
            self._seg_alloc = 0
            self._tail_dirty = False
            with contextlib.suppress(OSError):  # a full disk: the first write tries again
                self._preallocate(1)
            os.fdatasync(fd)  # the preallocated size is durable
            fsync_path(self.wal_dir)  # the segment's name is durable before any record is acked
        except BaseException:
            self._fd = -1
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._seg_path = path
        self._seg_started = time.monotonic()

    def _close_segment(self) -> None:
        if self._fd >= 0:
            os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = -1
            self._seg_path = None

    def _rotate(self) -> None:
        self._close_segment()
        self._open_segment()

    def _roll_closed(self) -> tuple[int, int]:
        active = self._active_seq
        segments = records = 0
        for seg in _list_segments(self.wal_dir):
            if _segment_seq(seg) >= active:
                continue
            records += _roll_segment(seg, self.log_dir)
            segments += 1
            self.stats.segments_rolled += 1
        return segments, records


_SYNCER_CODE = r"""
import os
fd, current, buf = -1, b"", b""
while True:
    data = os.read(0, 65536)
    if not data:
        break
    buf += data
    while b"\n" in buf:
        path, buf = buf.split(b"\n", 1)
        try:
            if path != current:
                if fd >= 0:
                    os.close(fd)
                fd, current = -1, b""
                fd, current = os.open(path, os.O_RDONLY), path
            os.fdatasync(fd)
            os.write(1, b"K\n")
        except OSError as exc:
            os.write(1, b"E " + str(exc).encode().replace(b"\n", b" ") + b"\n")
"""


class _Syncer:
    """fdatasync in a helper process: no GIL between it and the event loop.

    A thread would need the GIL twice per commit; while the event loop is busy that wait runs
    into the interpreter's switch interval (5 ms), a convoy that made the group commit take 1-5 ms
    under load. The helper gets one line per commit (the segment path) on a pipe, runs
    ``fdatasync`` on its own descriptor of that file (fsync acts on the file, whichever
    descriptor), and answers ``K`` or ``E <error>``; the reply pipe is an event-loop reader. If
    the helper dies, the commits in flight fail (their requests get 503) and the next commit
    starts a new helper.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending: collections.deque[asyncio.Future[None]] = collections.deque()
        self.buf = b""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _SYNCER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        self.loop.add_reader(fd, self._readable)

    def sync(self, path: Path) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = self.loop.create_future()
        line = os.fsencode(path) + b"\n"
        for attempt in (0, 1):
            if self.proc is None:  # not started or found dead: no waitpid per commit
                self.start()
            assert self.proc is not None
            assert self.proc.stdin is not None
            try:
                os.write(self.proc.stdin.fileno(), line)
            except OSError as exc:  # died before the event loop saw its pipe close
                self._fail(f"the fsync helper exited ({exc})")  # commits it did not answer
                self._stop()
                if attempt:
                    fut.set_exception(OSError(f"cannot reach the fsync helper ({exc})"))
                    return fut
                continue
            self.pending.append(fut)
            return fut
        raise AssertionError("unreachable")  # pragma: no cover

    def _readable(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        try:
            data = os.read(self.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._fail("the fsync helper exited")
            self._stop()
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if not self.pending:
                continue
            fut = self.pending.popleft()
            if fut.done():
                continue
            if line == b"K":
                fut.set_result(None)
            else:
                fut.set_exception(OSError(line[2:].decode("utf-8", "replace")))

    def _fail(self, why: str) -> None:
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(OSError(why))

    def _stop(self) -> None:
        proc, self.proc = self.proc, None
        self.buf = b""
        if proc is None:
            return
        if proc.stdout is not None:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(proc.stdout.fileno())
            proc.stdout.close()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self._fail("the prediction log is closing")
        self._stop()


def _io_worker(
    jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The WAL's I/O thread: run each job, settle its future on the event loop."""
    while True:
        job = jobs.get()
        if job is None:
            return
        fn, fut = job
        try:
            result, error = fn(), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            loop.call_soon_threadsafe(_settle, fut, result, error)


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def iter_prediction_log(
    log_dir: str | os.PathLike[str],
    model: str | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Stream the prediction log as Arrow record batches, in log order, with bounded memory.

    Parquet parts come first (in segment order), then the records still in WAL segments, so
    batches arrive in the order requests were logged (by segment; ``ts`` within a segment
    follows commit order). Memory holds one Parquet row group batch or one WAL segment (at most
    the gateway's ``segment_max_bytes``) at a time, so a log larger than RAM streams fine.

    Safe while a gateway is running: the WAL segments are listed first and Parquet parts of
    those segments are skipped; a segment rolled to Parquet meanwhile is read from its parts
    instead, so nothing is lost or counted twice; a torn final record (being written) is
    ignored.

    Args:
        log_dir: the gateway's log folder.
        model: only this public model (default: all).
        since: only records with ``ts >= since`` (tz-aware, or naive meaning UTC).
        until: only records with ``ts < until``.
        columns: only these columns of :func:`prediction_log_schema` (default: all).
        batch_rows: most rows per batch read from Parquet.

    Yields:
        Non-empty record batches with the requested columns.

    Raises:
        PredictionLogError: ``columns`` names an unknown column or ``batch_rows < 1``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = prediction_log_schema()
    names = list(schema.names) if columns is None else list(columns)
    unknown = [c for c in names if c not in schema.names]
    if unknown or batch_rows < 1:
        raise PredictionLogError(
            f"columns {unknown} are not prediction-log columns ({schema.names})"
            if unknown
            else f"batch_rows={batch_rows}: must be at least 1"
        )
    lo = None if since is None else _utc_micros(since)
    hi = None if until is None else _utc_micros(until)
    first_day = None if since is None else _utc_day(since)
    root = Path(log_dir)
    wal = _list_segments(root / "_wal")
    wal_seqs = {_segment_seq(seg) for seg in wal}
    read_cols = names if "ts" in names or (lo is None and hi is None) else [*names, "ts"]

    def parts(seq: int | None) -> list[tuple[int, str, Path]]:
        if model is not None:
            models = [model]
        elif root.is_dir():
            models = sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME_RE.match(p.name))
        else:
            models = []
        found = []
        for m in models:
            for part in (root / m).glob("date=*/part-*.parquet"):
                match = _PART_RE.match(part.name)
                day = part.parent.name.removeprefix("date=")
                if match is None or (first_day is not None and day < first_day):
                    continue
                part_seq = int(match.group(1))
                if (seq is None and part_seq not in wal_seqs) or part_seq == seq:
                    found.append((part_seq, day, part))
        return sorted(found)

    def trimmed(batch: pa.RecordBatch) -> pa.RecordBatch | None:
        if lo is not None or hi is not None:
            ts = pc.cast(batch.column("ts"), pa.int64())
            keep = None
            if lo is not None:
                keep = pc.greater_equal(ts, lo)
            if hi is not None:
                upper = pc.less(ts, hi)
                keep = upper if keep is None else pc.and_(keep, upper)
            batch = batch.filter(keep)
        if batch.num_rows == 0:
            return None
        return batch.select(names)

    def from_parts(found: list[tuple[int, str, Path]]) -> Iterator[pa.RecordBatch]:
        for _, _, part in found:
            with pq.ParquetFile(part) as file:
                for batch in file.iter_batches(batch_size=batch_rows, columns=read_cols):
                    out = trimmed(batch)
                    if out is not None:
                        yield out

    yield from from_parts(parts(None))
    for seg in wal:
        try:
            table, _ = _read_segment(seg)
        except FileNotFoundError:  # rolled meanwhile: its Parquet parts are durable
            yield from from_parts(parts(_segment_seq(seg)))
            continue
        if model is not None:
            table = table.filter(pc.equal(table.column("model"), model))
        for batch in table.to_batches(max_chunksize=batch_rows):
            out = trimmed(batch)
            if out is not None:
                yield out


def _utc_micros(moment: dt.datetime) -> int:
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return int(aware.timestamp() * 1_000_000)


def _utc_day(moment: dt.datetime) -> str:
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return aware.astimezone(dt.UTC).strftime("%Y-%m-%d")


def read_prediction_log(log_dir: str | os.PathLike[str], model: str | None = None) -> pd.DataFrame:
    """Read the whole prediction log into memory (see :func:`iter_prediction_log` to stream).

    Args:
        log_dir: the gateway's log folder.
        model: only this public model (default: all).

    Returns:
        One row per logged request, sorted by ``ts``, with the columns of
        :func:`prediction_log_schema`. ``inputs``/``outputs`` cells hold arrays of rows; stack
        them with ``np.vstack([np.stack(c) for c in df.inputs])``.
    """
    import pyarrow as pa

    schema = prediction_log_schema()
    batches = list(iter_prediction_log(log_dir, model))
    table = pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
    df = table.to_pandas()
    return df.sort_values("ts", kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# the ASGI application


@dataclass(frozen=True, slots=True)
class _ModelInfo:
    width: int  # d of INPUT__0 ([n, d]); -1 if the upstream accepts any width
    max_batch: int = 0  # rows one merged request may carry; 0: never coalesce
    outputs: tuple[str, ...] = ()  # the model's outputs (all of fixed item size if max_batch)
    contract: FeatureContract | None = None  # named features (its wire.json), if known
    no_contract: str = ""  # why there is none (said to clients that send named features)


# What a request waiting to be merged is told: its rows of a merged answer, an error, "slot" (go
# upstream on your own, in a call slot held for you) or "alone" (the merged call was refused:
# go on your own, outside the slots, so that one bad row fails only its own request).
_MergeResult = dict[str, OutputPart] | tuple[str, int, str] | Literal["slot", "alone"]


class _Batcher:
    """Coalescing state of one upstream model: calls in flight and requests waiting."""

    __slots__ = ("inflight", "queue")

    def __init__(self) -> None:
        self.inflight = 0
        self.queue: collections.deque[tuple[np.ndarray, asyncio.Future[_MergeResult]]] = (
            collections.deque()
        )


class _ReplyError(Exception):
    """Short-circuit a handler with a KServe error response."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _not_started() -> _ReplyError:
    return _ReplyError(503, "gateway is not started; run it under an ASGI server with lifespan")


class GatewayApp:
    """The gateway as an ASGI 3 application (see :func:`create_app`).

    ``GET /admin/stats/{name}`` answers, since the last ``POST /admin/stats/{name}/reset`` (or
    since the gateway started)::

        {"model", "since" (ISO UTC), "since_unix", "now", "route", "shadow_dropped",
         "histogram_edges": [0.0, 0.1, ..., 1.0],
         "versions": {"<version>": {
             "role": "champion" | "challenger" | "pinned" | "unrouted",
             "requests",            # live requests routed to it (any outcome)
             "answered",            # live requests answered 200
             "shadow_requests",     # mirrored requests sent to it
             "errors", "schema_violations",          # live + shadow
             "error_rate", "schema_violation_rate",  # over live + shadow requests
             "retried_on_champion", # failed canary requests answered by the champion
             "p50_ms", "p90_ms", "p99_ms", "latency_samples",  # reservoir, live + shadow
             "mean_prediction", "prediction_histogram", "prediction_kind",
             "prediction_sketch", "prediction_out_of_range",
             "shadow_mean_abs_diff", "shadow_max_abs_diff",
             "live": {...}, "shadow": {...}}}}   # the same figures split by kind

    The prediction statistics follow the width of the version's ``OUTPUT__0`` answers (the
    gateway needs no task: the answers' shape tells): one value per row (binary P(label 1), a
    regression value) gives ``prediction_kind`` ``"probability"``, a ``prediction_histogram``
    of 10 bins over [0, 1] (values outside count in ``prediction_out_of_range``) and the
    value's mean, plus ``prediction_sketch``, the counts per :mod:`lockgate.gateway.prediction_sketch`
    bin of every finite value (how the canary compares regression outputs, whatever their
    scale); k values per row (multiclass probabilities) give ``"class"``: a histogram of k
    counts of the predicted class (argmax, in column order), the mean of the top-class
    probability, and rows with a value outside [0, 1] out of range. Live and shadow add up.

    Latency is measured from the request's arrival to the upstream answer being processed
    (before the log commit, whose cost ``lockgate_gateway_wal_commit_seconds`` shows). The
    Prometheus counters on ``/metrics`` are cumulative and never reset.
    """

    def __init__(
        self,
        *,
        state_dir: Path,
        log_dir: Path,
        upstream: Upstream | None,
        upstream_url: str | None,
        upstream_timeout_s: float,
        retry_challenger_on_champion: bool,
        durability: Durability,
        segment_max_bytes: int,
        segment_max_age_s: float,
        commit_interval_s: float,
        commit_delay_s: float,
        commit_siblings: int,
        max_shadow_inflight: int,
        max_body_bytes: int,
        admin_token: str | None,
        verify_routes: bool,
        coalesce_inflight: int = 2,
        model_repository: Path | None = None,
        routing_key: bytes | None = None,
        audit_log: AuditLog | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.audit_log = audit_log
        self.admin_port: int | None = None  # the admin listener's port, once bound (main())
        self.admin_url: str | None = None
        self.admin = _AdminApp(self)
        self.model_repository = model_repository
        self.log_dir = log_dir
        self.upstream_url = upstream_url
        self.upstream_timeout_s = upstream_timeout_s
        self.retry_challenger_on_champion = retry_challenger_on_champion
        self.max_shadow_inflight = max_shadow_inflight
        self.max_body_bytes = max_body_bytes
        self.admin_token = admin_token
        self.verify_routes = verify_routes
        self.coalesce_inflight = coalesce_inflight
        self._batchers: dict[str, _Batcher] = {}
        self._merged_tasks: set[asyncio.Task[None]] = set()
        state_dir.mkdir(parents=True, exist_ok=True)
        self.routes = _RouteTable(state_dir)
        self.routing_key = _routing_key(state_dir) if routing_key is None else routing_key
        self.stats = _Stats()
        self.log = PredictionLog(
            log_dir,
            durability=durability,
            segment_max_bytes=segment_max_bytes,
            segment_max_age_s=segment_max_age_s,
            commit_interval_s=commit_interval_s,
            commit_delay_s=commit_delay_s,
            commit_siblings=commit_siblings,
            stats=self.stats,
        )
        self._given_upstream = upstream
        self.upstream: Upstream | None = upstream
        self._info: dict[str, _ModelInfo] = {}
        self._info_pending: dict[str, asyncio.Future[_ModelInfo]] = {}
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def startup(self) -> None:
        """Recover the prediction log, open the upstream pool; called by ASGI lifespan."""
        if self.started:
            return
        import pyarrow.parquet  # noqa: F401  (import now, not on the roller's first run)

        if self.upstream is None:
            assert self.upstream_url is not None
            self.upstream = HttpUpstream(self.upstream_url, timeout_s=self.upstream_timeout_s)
        await self.log.start()
        self.started = True

    async def shutdown(self) -> None:
        """Finish shadow calls (briefly), commit and roll the log, close the pool."""
        if not self.started:
            return
        self.started = False
        if self._shadow_tasks:
            _, pending = await asyncio.wait(self._shadow_tasks, timeout=5.0)
            for t in pending:
                t.cancel()
        await self.log.close()
        if self.upstream is not None:
            await self.upstream.aclose()
        if self._given_upstream is None:
            self.upstream = None

    # -- ASGI entry -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        kind = scope["type"]
        if kind == "http":
            server = scope.get("server")
            if self.admin_port is not None and server and server[1] == self.admin_port:
                await self._admin_http(scope, receive, send)
                return
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                try:
                    await self.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.strip("/").split("/")
        try:
            if parts[0] == "v2":
                if len(parts) >= 3 and parts[1] == "models":
                    await self._models(parts, method, scope, receive, send)
                    return
                await self._v2_misc(parts, method, send)
                return
            if parts[0] == "admin":
                where = self.admin_url or "the admin listener (--admin-port)"
                raise _ReplyError(
                    404,
                    "admin endpoints are not served on the inference port; rule: they are "
                    f"served only on the admin port; fix: call them on {where} with "
                    "'Authorization: Bearer <admin token>'",
                )
            if parts == ["metrics"] and method == "GET":
                await _send(
                    send, 200, self.stats.exposition(), content_type=b"text/plain; version=0.0.4"
                )
                return
            raise _ReplyError(404, f"no endpoint {method} {path}; see /v2, /metrics")
        except _ReplyError as r:
            await _send_error(send, r.status, r.message)
        except UpstreamError as exc:
            await _send_error(send, exc.status, str(exc))
        except Exception as exc:  # a bug: answer in KServe form rather than a bare 500
            logger.exception("unhandled error on %s %s", method, path)
            with contextlib.suppress(Exception):
                await _send_error(send, 500, f"internal gateway error: {type(exc).__name__}")

    # -- KServe v2 ------------------------------------------------------------------------

    async def _v2_misc(self, parts: list[str], method: str, send: Send) -> None:
        if method != "GET":
            raise _ReplyError(405, f"method {method} not allowed on /{'/'.join(parts)}; use GET")
        if parts == ["v2"]:
            body = {
                "name": "lockgate-gateway",
                "version": _lockgate_version(),
                "extensions": ["binary_tensor_data", "lockgate_routing"],
            }
            await _send(send, 200, _dumps(body).encode())
            return
        if parts == ["v2", "health", "live"]:
            await _send(send, 200, b"")
            return
        if parts == ["v2", "health", "ready"]:
            ok = self.started and await self._upstream_ok("/v2/health/live")
            await _send(send, 200 if ok else 503, b"")
            return
        raise _ReplyError(404, f"no endpoint GET /{'/'.join(parts)}")

    async def _models(
        self, parts: list[str], method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # /v2/models/{name}[/versions/{v}][/infer|/ready|/config]
        name = parts[2]
        if not _NAME_RE.match(name):  # it becomes part of the upstream request line
            raise _ReplyError(400, _bad_name(name))
        rest = parts[3:]
        pinned: str | None = None
        if len(rest) >= 2 and rest[0] == "versions":
            pinned = rest[1]
            rest = rest[2:]
            if not _VERSION_RE.match(pinned):
                raise _ReplyError(
                    400,
                    f"version {pinned[:80]!r} is not a lockgate version id; use 1-128 characters "
                    "from letters, digits, '.', '_' and '-', starting with a letter or digit",
                )
        action = rest[0] if rest else ""
        if len(rest) > 1 or action not in ("", "infer", "ready", "config"):
            raise _ReplyError(404, f"no endpoint {method} {scope['path']}")
        if action == "infer":
            if method != "POST":
                raise _ReplyError(405, f"method {method} not allowed on {scope['path']}; use POST")
            await self._infer(scope, receive, send, name, pinned)
            return
        if method != "GET":
            raise _ReplyError(405, f"method {method} not allowed on {scope['path']}; use GET")
        route = self.routes.routes.get(name)
        if pinned is None:
            if route is None:
                raise _ReplyError(404, _no_route(name))
            version = route.primary
        else:
            version = pinned
        upstream_name = f"{name}-{version}"
        if action == "ready":
            ok = await self._upstream_ok(f"/v2/models/{upstream_name}/ready")
            await _send(send, 200 if ok else 503, b"")
            return
        suffix = "/config" if action == "config" else ""
        resp = await self._up().request(
            "GET", f"/v2/models/{upstream_name}{suffix}", timeout_s=min(self.upstream_timeout_s, 10)
        )
        if resp.status != 200:
            await _send_error(send, resp.status, _upstream_error_text(resp))
            return
        meta = json.loads(resp.body)
        meta["name"] = name
        if action == "":
            meta["versions"] = [version] if pinned or route is None else route.versions
            info = await self._model_info_or_none(upstream_name)
            if info is not None and info.contract is not None:  # the public contract
                meta["inputs"] = info.contract.metadata_inputs()
                params = meta.get("parameters")
                meta["parameters"] = {
                    **(params if isinstance(params, dict) else {}),
                    "lockgate_inputs": info.contract.metadata_note(),
                }
        await _send(send, 200, _dumps(meta).encode())

    async def _upstream_ok(self, path: str) -> bool:
        try:
            resp = await self._up().request("GET", path, timeout_s=min(self.upstream_timeout_s, 5))
        except UpstreamError:
            return False
        return resp.status == 200

    def _up(self) -> Upstream:
        if self.upstream is None:
            raise _not_started()
        return self.upstream

    async def _model_info(self, upstream_name: str) -> _ModelInfo:
        info = self._info.get(upstream_name)
        if info is not None:
            return info
        pending = self._info_pending.get(upstream_name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[_ModelInfo] = asyncio.get_running_loop().create_future()
        self._info_pending[upstream_name] = fut
        try:
            info = await self._fetch_info(upstream_name)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._info_pending.pop(upstream_name, None)
        fut.set_result(info)
        self._info[upstream_name] = info
        return info

    async def _fetch_info(self, upstream_name: str) -> _ModelInfo:
        resp = await self._up().request(
            "GET", f"/v2/models/{upstream_name}", timeout_s=min(self.upstream_timeout_s, 10)
        )
        if resp.status == 404 or (resp.status == 400 and b"unknown model" in resp.body):
            raise _ReplyError(
                404,
                f"upstream model {upstream_name!r} is not served ({_upstream_error_text(resp)}); "
                "load that version on the model server or fix the route",
            )
        if resp.status != 200:
            raise UpstreamError(
                f"upstream metadata of {upstream_name!r} failed with HTTP {resp.status}: "
                f"{_upstream_error_text(resp)}",
                status=502,
            )
        try:
            meta = json.loads(resp.body)
            spec = next(i for i in meta["inputs"] if i["name"] == INPUT_NAME)
            shape = spec["shape"]
            dtype = spec["datatype"]
        except (ValueError, KeyError, TypeError, StopIteration):
            raise UpstreamError(
                f"upstream model {upstream_name!r} has no input {INPUT_NAME!r} in its metadata; "
                f"served models must take {INPUT_NAME} FP32 [batch, d]",
                status=502,
            ) from None
        if dtype != "FP32":
            raise UpstreamError(
                f"upstream model {upstream_name!r} declares {INPUT_NAME} as {dtype}, not FP32; "
                "re-export the model with an FP32 input",
                status=502,
            )
        width = int(shape[-1]) if shape else -1
        outputs = meta.get("outputs")
        names = tuple(
            o["name"]
            for o in outputs or ()
            if isinstance(o, dict) and isinstance(o.get("name"), str)
        )
        fixed = bool(names) and all(
            isinstance(o, dict) and o.get("datatype") in FIXED_DTYPES for o in outputs
        )
        max_batch = 0
        if fixed and self.coalesce_inflight > 0:
            max_batch = await self._max_batch(upstream_name)
        contract, no_contract = await self._contract(upstream_name, width)
        return _ModelInfo(
            width=width,
            max_batch=max_batch,
            outputs=names,
            contract=contract,
            no_contract=no_contract,
        )

    async def _contract(self, upstream_name: str, width: int) -> tuple[FeatureContract | None, str]:
        """The version's named-feature contract from its ``wire.json``, or why there is none."""
        repo = self.model_repository
        if repo is None:
            return None, (
                "the gateway was started without --model-repository, so it knows no wire schema "
                f"for {upstream_name}"
            )
        try:  # a thread: the repository may be on a network file system
            contract = await asyncio.to_thread(FeatureContract.load, repo, upstream_name)
        except (OSError, ValueError) as exc:  # SchemaError is a ValueError
            logger.warning("no named-feature contract for %s: %s", upstream_name, exc)
            return None, f"the wire schema of {upstream_name} is unreadable ({exc})"
        if contract is None:
            return None, f"{repo} has no {upstream_name}/1/wire.json"
        if width not in (-1, contract.width):
            logger.warning(
                "wire.json of %s has %d features but the model takes %d; named features refused",
                upstream_name,
                contract.width,
                width,
            )
            return None, (
                f"the wire schema of {upstream_name} has {contract.width} features but the "
                f"model takes {width}"
            )
        return contract, ""

    async def _max_batch(self, upstream_name: str) -> int:
        """The model's ``max_batch_size`` from its config (0 if unknown: never coalesce)."""
        try:
            resp = await self._up().request(
                "GET",
                f"/v2/models/{upstream_name}/config",
                timeout_s=min(self.upstream_timeout_s, 10),
            )
            value = json.loads(resp.body).get("max_batch_size") if resp.status == 200 else 0
        except (UpstreamError, ValueError, AttributeError):
            return 0
        return value if isinstance(value, int) and value > 0 else 0

    # -- inference ------------------------------------------------------------------------

    async def _infer(
        self, scope: Scope, receive: Receive, send: Send, name: str, pinned: str | None
    ) -> None:
        t0 = time.perf_counter()
        trace: str | None = None
        ihcl: str | None = None
        encoding: str | None = None
        for k, v in scope["headers"]:
            if k == b"x-lockgate-trace-id":
                trace = v.decode("latin-1")
            elif k == b"inference-header-content-length":
                ihcl = v.decode("latin-1")
            elif k == b"x-request-id" and trace is None:
                trace = v.decode("latin-1")
            elif k == b"traceparent" and trace is None:
                fields = v.decode("latin-1").split("-")
                if len(fields) == 4 and len(fields[1]) == 32:
                    trace = fields[1]
            elif k == b"content-encoding":
                encoding = v.decode("latin-1").strip().lower()
        if trace is None:
            trace = f"{random.getrandbits(128):032x}"
        elif not _TRACE_RE.match(trace):
            raise _ReplyError(
                400,
                f"trace id {trace[:80]!r} is invalid; use 1-128 characters from letters, digits, "
                "'.', '_', ':' and '-' (or send none and the gateway makes one)",
            )
        if not self.started:
            raise _not_started()
        route = self.routes.routes.get(name)
        mirror = False
        if pinned is not None:
            version, routed_by = pinned, "pinned"
        elif route is None:
            raise _ReplyError(404, _no_route(name))
        elif route.mode == "canary":
            routed_by = "canary"
            if (
                route.weight > 0.0
                and traffic_fraction(model=name, trace_id=trace, key=self.routing_key)
                < route.weight
            ):
                version = route.challenger  # type: ignore[assignment]
            else:
                version = route.champion
        elif route.mode == "shadow":
            routed_by, version = "shadow", route.champion
            mirror = (
                route.shadow_fraction > 0.0
                and traffic_fraction(
                    model=name, trace_id=trace, purpose="shadow", key=self.routing_key
                )
                < route.shadow_fraction
            )
        elif route.mode == "bluegreen":
            routed_by, version = "bluegreen", route.primary
        else:
            routed_by, version = "single", route.champion

        self.stats.inflight += 1
        try:
            body = await _read_body(receive, self.max_body_bytes)
            if encoding in ("gzip", "deflate"):
                body = await _inflate_body(body, encoding, self.max_body_bytes)
            elif encoding not in (None, "identity"):
                raise _ReplyError(415, f"Content-Encoding {encoding!r} is not supported; use gzip")
            status, out_body, out_headers = await self._serve_infer(
                name, version, routed_by, trace, body, ihcl, t0, route, mirror
            )
        finally:
            self.stats.inflight -= 1
        headers = [(b"x-lockgate-trace-id", trace.encode()), *out_headers]
        await _send(send, status, out_body, headers=headers)

    async def _serve_infer(
        self,
        name: str,
        version: str,
        routed_by: str,
        trace: str,
        body: bytes,
        ihcl: str | None,
        t0: float,
        route: Route | None,
        mirror: bool,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        request_id: str | None = None
        inputs: np.ndarray | None = None
        fwd_headers = {"Content-Type": "application/json"}
        if ihcl is not None:  # only plain digits pass _parse_request; forwarded as a number
            fwd_headers["Inference-Header-Content-Length"] = (
                str(int(ihcl)) if _DIGITS_RE.match(ihcl) else ihcl
            )
        # 1. schema check against the target version's input width
        try:
            info = await self._model_info(f"{name}-{version}")
        except (_ReplyError, UpstreamError) as exc:
            status = exc.status
            msg = exc.message if isinstance(exc, _ReplyError) else str(exc)
            if route is not None and version in route.versions:  # bounded label cardinality
                self.stats.get(name, version, False).observe(
                    latency_s=0.0, error="unavailable", violation=False, predictions=None
                )
            return await self._finish_error(
                name, version, routed_by, trace, None, None, status, msg, t0
            )
        series = self.stats.get(name, version, False)
        named = False
        try:
            request_id, inputs, header, named = _parse_request(body, ihcl, info, name, version)
        except _ViolationError as exc:
            # the version's fault only if the request fits another version of the route (its
            # schema differs); a request no version takes is the client's: never counted
            if routed_by != "pinned" and await self._fits_another(name, version, route, body, ihcl):
                series.observe(latency_s=0.0, error=None, violation=True, predictions=None)
            return await self._finish_error(
                name, version, routed_by, trace, request_id, inputs, 400, str(exc), t0
            )
        except FeatureInputError as exc:  # the client's fault: not counted against the version
            return await self._finish_error(
                name, version, routed_by, trace, request_id, None, 400, str(exc), t0
            )
        if named:  # forward the wire matrix the features were encoded into
            body, hlen, header = wire_request(header, inputs)
            fwd_headers = {
                "Content-Type": "application/json",
                "Inference-Header-Content-Length": str(hlen),
            }
        # 2. forward, on its own or (under load) merged with other requests for this version
        merged: tuple[bytes, int | None, np.ndarray | None] | None = None
        plan = (
            plan_of(header, info.outputs)
            if info.max_batch and inputs.shape[0] <= info.max_batch
            else None
        )
        if plan is None:
            resp, err = await self._forward(name, version, body, fwd_headers)
        else:
            resp, parts, err = await self._coalesced(name, version, info, inputs, body, fwd_headers)
            if parts is not None:
                try:
                    merged = self._merged_answer(plan, parts, name, version, request_id, trace)
                except ValueError as exc:
                    err = ("bad_response", 502, f"upstream model {name}-{version}: {exc}")
        if (
            err is not None
            and routed_by == "canary"
            and route is not None
            and version == route.challenger
            and self.retry_challenger_on_champion
        ):
            series.observe(latency_s=0.0, error=err[0], violation=False, predictions=None)
            series.retries += 1
            series.window.retried += 1
            champion_info = await self._model_info_or_none(f"{name}-{route.champion}")
            if (
                champion_info is not None
                and champion_info.width in (-1, info.width)
                and (not named or _same_contract(champion_info, info))
            ):
                version, routed_by = route.champion, "retry"
                series = self.stats.get(name, version, False)
                resp, err = await self._forward(name, version, body, fwd_headers)
            else:
                return await self._finish_error(
                    name, version, routed_by, trace, request_id, inputs, err[1], err[2], t0
                )
        if err is not None:
            series.observe(latency_s=0.0, error=err[0], violation=False, predictions=None)
            return await self._finish_error(
                name, version, routed_by, trace, request_id, inputs, err[1], err[2], t0
            )
        # 3. rewrite the answer, log it durably, then answer
        try:
            if merged is not None:
                out_body, out_ihcl, outputs = merged
            else:
                assert resp is not None
                out_body, out_ihcl, outputs = _rewrite_response(resp, name, version, trace)
        except (ValueError, KeyError, TypeError) as exc:
            series.observe(latency_s=0.0, error="bad_response", violation=False, predictions=None)
            return await self._finish_error(
                name,
                version,
                routed_by,
                trace,
                request_id,
                inputs,
                502,
                f"upstream model {name}-{version} sent an unreadable response ({exc})",
                t0,
            )
        latency = time.perf_counter() - t0
        meta = {
            "t": trace,
            "ts": time.time_ns() // 1000,
            "m": name,
            "v": version,
            "rb": routed_by,
            "st": 200,
            "lat": latency * 1000.0,
        }
        if request_id is not None:
            meta["rid"] = request_id
        try:
            await self.log.append(_encode_record(meta, inputs, outputs))
        except PredictionLogError as exc:
            series.observe(latency_s=latency, error="log", violation=False, predictions=None)
            return 503, _error_body(str(exc)), []
        series.observe(latency_s=latency, error=None, violation=False, predictions=outputs)
        if mirror and route is not None and route.challenger is not None:
            self._start_shadow(
                name,
                route.challenger,
                trace,
                request_id,
                body,
                fwd_headers,
                inputs,
                outputs,
                info.width,
            )
        headers = [(b"x-lockgate-model-version", version.encode())]
        if out_ihcl is not None:
            headers.append((b"inference-header-content-length", str(out_ihcl).encode()))
        return 200, out_body, headers

    async def _fits_another(
        self, name: str, version: str, route: Route | None, body: bytes, ihcl: str | None
    ) -> bool:
        """Whether a request ``version`` refused fits another version of the route."""
        for other in route.versions if route is not None else ():
            if other == version:
                continue
            info = await self._model_info_or_none(f"{name}-{other}")
            if info is None:
                continue
            try:
                _parse_request(body, ihcl, info, name, other)
            except (_ViolationError, FeatureInputError):
                continue
            return True
        return False

    async def _coalesced(
        self,
        name: str,
        version: str,
        info: _ModelInfo,
        inputs: np.ndarray,
        body: bytes,
        headers: Mapping[str, str],
    ) -> tuple[UpstreamResponse | None, dict[str, OutputPart] | None, tuple[str, int, str] | None]:
        """Forward on its own while few calls are in flight; else wait and go in a merged one.

        Returns (response, None, None) when sent on its own, (None, parts, None) with this
        request's rows of a merged answer, or (None, None, error).
        """
        upstream = f"{name}-{version}"
        batcher = self._batchers.get(upstream)
        if batcher is None:
            batcher = self._batchers[upstream] = _Batcher()
        got: _MergeResult
        if batcher.inflight < self.coalesce_inflight and not batcher.queue:
            batcher.inflight += 1
            got = "slot"
        else:
            fut: asyncio.Future[_MergeResult] = asyncio.get_running_loop().create_future()
            batcher.queue.append((inputs, fut))
            self._dispatch(batcher, name, version, info)
            try:
                got = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() == "slot":
                    self._release(batcher, name, version, info)  # the slot held for it is unused
                raise
        if got == "slot" or got == "alone":  # the original request, on its own
            try:
                resp, err = await self._forward(name, version, body, headers)
            finally:
                if got == "slot":
                    self._release(batcher, name, version, info)
            return resp, None, err
        if isinstance(got, tuple):
            return None, None, got
        return None, got, None

    def _release(self, batcher: _Batcher, name: str, version: str, info: _ModelInfo) -> None:
        """A call slot is free again: send what waits."""
        batcher.inflight -= 1
        self._dispatch(batcher, name, version, info)

    def _dispatch(self, batcher: _Batcher, name: str, version: str, info: _ModelInfo) -> None:
        """Send what waits as merged calls while fewer than ``coalesce_inflight`` are out."""
        queue = batcher.queue
        while queue and batcher.inflight < self.coalesce_inflight:
            items = []
            rows = 0
            while queue and rows + queue[0][0].shape[0] <= info.max_batch:
                item = queue.popleft()
                if not item[1].done():  # its client went away meanwhile
                    items.append(item)
                    rows += item[0].shape[0]
            if not items:
                continue
            batcher.inflight += 1
            if len(items) == 1:  # a call of one: cheaper as the request it is
                items[0][1].set_result("slot")
                continue
            task = asyncio.get_running_loop().create_task(
                self._run_merged(batcher, name, version, info, items)
            )
            self._merged_tasks.add(task)
            task.add_done_callback(self._merged_tasks.discard)

    async def _run_merged(
        self,
        batcher: _Batcher,
        name: str,
        version: str,
        info: _ModelInfo,
        items: list[tuple[np.ndarray, asyncio.Future[_MergeResult]]],
    ) -> None:
        results: list[_MergeResult]
        try:
            arrays = [x for x, _ in items]
            body, hlen = merged_request(INPUT_NAME, arrays)
            headers = {
                "Content-Type": "application/json",
                "Inference-Header-Content-Length": str(hlen),
            }
            resp, err = await self._forward(name, version, body, headers)
            if resp is not None:
                self.stats.get(name, version, False).merged(len(items))
                try:
                    head, off, _ = _response_header(resp)
                    results = list(
                        split_response(head, resp.body, off, [x.shape[0] for x in arrays])
                    )
                except (ValueError, TypeError, AttributeError) as exc:
                    # rows that do not come back one for one: this model is not merged again
                    logger.warning(
                        "upstream model %s-%s answered a merged call of %d rows in a form that "
                        "cannot be split (%s); its requests now go upstream one by one",
                        name,
                        version,
                        sum(x.shape[0] for x in arrays),
                        exc,
                    )
                    upstream = f"{name}-{version}"
                    if self._info.get(upstream) is info:
                        self._info[upstream] = replace(info, max_batch=0)
                    results = ["alone"] * len(items)
            elif err is not None and err[0] in ("upstream_4xx", "upstream_5xx"):
                # the model refused the batch: one request may be to blame, so each goes alone
                results = ["alone"] * len(items)
            else:  # timeout or unreachable: the same for every request of the batch
                assert err is not None
                results = [err] * len(items)
        except BaseException as exc:  # a bug or cancellation: nobody may wait forever
            results = [("internal", 500, f"internal gateway error: {type(exc).__name__}")] * len(
                items
            )
            if not isinstance(exc, Exception):
                raise
            logger.exception("merged upstream call to %s-%s failed", name, version)
        finally:
            for (_, fut), result in zip(items, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
            self._release(batcher, name, version, info)

    @staticmethod
    def _merged_answer(
        plan: tuple[tuple[str, bool], ...],
        parts: dict[str, OutputPart],
        name: str,
        version: str,
        request_id: str | None,
        trace: str,
    ) -> tuple[bytes, int | None, np.ndarray | None]:
        body, hlen = answer(
            plan,
            parts,
            model_name=name,
            model_version=version,
            request_id=request_id,
            parameters={"lockgate_trace_id": trace},
        )
        out = parts.get(OUTPUT_NAME)
        logged = None
        if out is not None and out.datatype == "FP32":
            logged = np.frombuffer(out.data, dtype="<f4").reshape(out.shape[0], -1)
        return body, hlen, logged

    async def _model_info_or_none(self, upstream_name: str) -> _ModelInfo | None:
        try:
            return await self._model_info(upstream_name)
        except (_ReplyError, UpstreamError):
            return None

    async def _forward(
        self, name: str, version: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[UpstreamResponse | None, tuple[str, int, str] | None]:
        """Send an infer request upstream; return (response, None) or (None, (kind, status, msg))."""
        try:
            resp = await self._up().request(
                "POST",
                f"/v2/models/{name}-{version}/infer",
                body=body,
                headers=headers,
                timeout_s=self.upstream_timeout_s,
            )
        except UpstreamError as exc:
            kind = "timeout" if exc.status == 504 else "unreachable"
            return None, (kind, exc.status, str(exc))
        if resp.status != 200:
            if resp.status == 404:  # unloaded meanwhile: look its metadata up again next time
                self._info.pop(f"{name}-{version}", None)
            kind = "upstream_5xx" if resp.status >= 500 else "upstream_4xx"
            return None, (kind, resp.status, _upstream_error_text(resp))
        return resp, None

    async def _finish_error(
        self,
        name: str,
        version: str,
        routed_by: str,
        trace: str,
        request_id: str | None,
        inputs: np.ndarray | None,
        status: int,
        message: str,
        t0: float,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        meta: dict[str, Any] = {
            "t": trace,
            "ts": time.time_ns() // 1000,
            "m": name,
            "v": version,
            "rb": routed_by,
            "st": status,
            "err": message[:2000],
            "lat": (time.perf_counter() - t0) * 1000.0,
        }
        if request_id is not None:
            meta["rid"] = request_id
        try:
            await self.log.append(_encode_record(meta, inputs, None))
        except PredictionLogError as exc:  # an answer is a logged answer, errors included
            return 503, _error_body(str(exc)), []
        return status, _error_body(message), [(b"x-lockgate-model-version", version.encode())]

    # -- shadow ---------------------------------------------------------------------------

    def _start_shadow(
        self,
        name: str,
        challenger: str,
        trace: str,
        request_id: str | None,
        body: bytes,
        headers: Mapping[str, str],
        inputs: np.ndarray | None,
        champion_out: np.ndarray | None,
        width: int,
    ) -> None:
        if len(self._shadow_tasks) >= self.max_shadow_inflight:
            self.stats.shadow_dropped[name] = self.stats.shadow_dropped.get(name, 0) + 1
            return
        task = asyncio.create_task(
            self._shadow(name, challenger, trace, request_id, body, headers, inputs, champion_out)
        )
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self,
        name: str,
        version: str,
        trace: str,
        request_id: str | None,
        body: bytes,
        headers: Mapping[str, str],
        inputs: np.ndarray | None,
        champion_out: np.ndarray | None,
    ) -> None:
        t0 = time.perf_counter()
        series = self.stats.get(name, version, True)
        status = 200
        err_text: str | None = None
        outputs: np.ndarray | None = None
        diffs: np.ndarray | None = None
        try:
            info = await self._model_info(f"{name}-{version}")
            if inputs is not None and info.width not in (-1, inputs.shape[1]):
                series.observe(latency_s=0.0, error=None, violation=True, predictions=None)
                status, err_text = (
                    400,
                    (
                        f"shadow version {version!r} expects width {info.width}, request has "
                        f"{inputs.shape[1]}"
                    ),
                )
            else:
                resp, err = await self._forward(name, version, body, headers)
                if err is not None:
                    series.observe(latency_s=0.0, error=err[0], violation=False, predictions=None)
                    status, err_text = err[1], err[2]
                else:
                    assert resp is not None
                    _, _, outputs = _rewrite_response(resp, name, version, trace)
                    if (
                        outputs is not None
                        and champion_out is not None
                        and outputs.shape == champion_out.shape
                    ):
                        diffs = np.abs(outputs - champion_out).reshape(outputs.shape[0], -1)
                        diffs = diffs.max(axis=1)
                    series.observe(
                        latency_s=time.perf_counter() - t0,
                        error=None,
                        violation=False,
                        predictions=outputs,
                        diffs=diffs,
                    )
        except (_ReplyError, UpstreamError, ValueError, KeyError, TypeError) as exc:
            series.observe(latency_s=0.0, error="shadow", violation=False, predictions=None)
            status = getattr(exc, "status", 502)
            err_text = str(exc)
        meta: dict[str, Any] = {
            "t": trace,
            "ts": time.time_ns() // 1000,
            "m": name,
            "v": version,
            "rb": "shadow",
            "sh": True,
            "st": status,
            "lat": (time.perf_counter() - t0) * 1000.0,
        }
        if err_text is not None:
            meta["err"] = err_text[:2000]
        if request_id is not None:
            meta["rid"] = request_id
        if diffs is not None:
            meta["diff"] = diffs
        self.log.append_nowait(_encode_record(meta, inputs, outputs))

    async def drain_shadow(self) -> None:
        """Wait for in-flight shadow requests (tests, shutdown)."""
        while self._shadow_tasks:
            await asyncio.wait(set(self._shadow_tasks))

    # -- admin ----------------------------------------------------------------------------

    async def _admin_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request of the admin listener: ``/admin/*`` behind the token."""
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.strip("/").split("/")
        try:
            if parts == ["v2", "health", "live"] and method == "GET":
                await _send(send, 200, b"")
                return
            if parts[0] != "admin":
                raise _ReplyError(
                    404,
                    f"no endpoint {method} {path} on the admin port; rule: it serves /admin/* "
                    "only; fix: send inference and metadata calls to the inference port",
                )
            self._check_admin_token(scope)
            await self._admin(parts, method, scope, receive, send)
        except _ReplyError as r:
            await _send_error(send, r.status, r.message)
        except UpstreamError as exc:
            await _send_error(send, exc.status, str(exc))
        except Exception as exc:  # a bug: answer in KServe form rather than a bare 500
            logger.exception("unhandled error on admin %s %s", method, path)
            with contextlib.suppress(Exception):
                await _send_error(send, 500, f"internal gateway error: {type(exc).__name__}")

    def _check_admin_token(self, scope: Scope) -> None:
        if not self.admin_token:
            raise _ReplyError(
                403,
                "this gateway has no admin token, so its admin endpoints refuse every call; "
                "rule: admin calls need a token; fix: start it with --admin-token-env or "
                "--admin-token-file (create_app(admin_token=...))",
            )
        got = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not got:
            raise _ReplyError(
                401,
                "admin endpoints need 'Authorization: Bearer <admin token>'; fix: send the "
                "token the gateway was started with (local stack: <serving>/gateway/admin.token)",
            )
        if not _consteq(got, f"Bearer {self.admin_token}".encode()):
            raise _ReplyError(
                403, "the admin token is wrong; fix: send the token the gateway was started with"
            )

    @property
    def admin_token_id(self) -> str:
        """The token's identity in the audit log: ``sha256:<first 12 hex digits>``."""
        return _token_id(self.admin_token or "")

    async def _audit_admin(
        self, scope: Scope, action: str, pipeline: str, payload: dict[str, Any]
    ) -> None:
        """Append one state-changing admin call to the audit log (kind ``gateway_admin``)."""
        actor = _admin_actor(scope)
        if self.audit_log is None:
            logger.warning("admin %s on %s by %s: no audit log configured", action, pipeline, actor)
            return
        client = scope.get("client")
        body = {
            "action": action,
            "token_id": self.admin_token_id,
            "client": f"{client[0]}:{client[1]}" if client else None,
            **payload,
        }
        try:
            await asyncio.to_thread(
                self.audit_log.append, "gateway_admin", pipeline=pipeline, actor=actor, payload=body
            )
        except Exception as exc:
            logger.exception("audit append failed for admin %s on %s", action, pipeline)
            raise _ReplyError(
                500,
                f"admin {action} on {pipeline!r} was applied but could not be audited ({exc}); "
                f"fix: repair the audit log {self.audit_log.path} (`lockgate audit verify`)",
            ) from None

    async def _admin(
        self, parts: list[str], method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        sub = parts[1:]
        changes = (
            (len(sub) == 2 and sub[0] == "routes" and method in ("PUT", "DELETE"))
            or (sub == ["log", "roll"] and method == "POST")
            or (len(sub) == 3 and sub[0] == "stats" and sub[2] == "reset" and method == "POST")
        )
        if changes:
            _admin_actor(scope)  # refuse before anything changes
        if len(sub) >= 2 and sub[0] in ("routes", "stats") and not _NAME_RE.match(sub[1]):
            raise _ReplyError(400, _bad_name(sub[1]))
        if sub == ["routes"] and method == "GET":
            await _send(send, 200, _dumps({"routes": self.routes.to_json()}).encode())
            return
        if len(sub) == 2 and sub[0] == "routes":
            name = sub[1]
            if method == "GET":
                route = self.routes.routes.get(name)
                if route is None:
                    raise _ReplyError(404, _no_route(name))
                await _send(send, 200, _dumps({"name": name, "route": route.to_json()}).encode())
                return
            if method == "PUT":
                await self._put_route(name, scope, receive, send)
                return
            if method == "DELETE":
                previous = self.routes.routes.get(name)
                if not self.routes.delete(name):
                    raise _ReplyError(404, _no_route(name))
                await self._audit_admin(
                    scope,
                    "route_delete",
                    name,
                    {"previous": previous.to_json() if previous is not None else None},
                )
                await _send(send, 200, _dumps({"name": name, "deleted": True}).encode())
                return
            raise _ReplyError(405, f"method {method} not allowed on /admin/routes/{name}")
        if sub == ["stats"] and method == "GET":
            names = sorted({m for m, _, _ in self.stats.series} | set(self.routes.routes))
            snap = {n: self.stats.snapshot(n, self.routes.routes.get(n)) for n in names}
            await _send(send, 200, _dumps({"models": snap}).encode())
            return
        if len(sub) == 2 and sub[0] == "stats" and method == "GET":
            name = sub[1]
            snap = self.stats.snapshot(name, self.routes.routes.get(name))
            await _send(send, 200, _dumps(snap).encode())
            return
        if sub == ["log", "roll"] and method == "POST":
            if not self.started:
                raise _not_started()
            try:
                segments, records = await self.log.rotate_now()
            except (OSError, PredictionLogError) as exc:
                raise _ReplyError(
                    500, f"rolling the prediction log failed ({exc}); the segments stay in _wal"
                ) from None
            body = {"segments": segments, "records": records}
            await self._audit_admin(scope, "log_roll", "*", dict(body))
            await _send(send, 200, _dumps(body).encode())
            return
        if len(sub) == 3 and sub[0] == "stats" and sub[2] == "reset" and method == "POST":
            since = self.stats.reset(sub[1])
            await self._audit_admin(scope, "stats_reset", sub[1], {"since": _iso(since)})
            await _send(
                send, 200, _dumps({"model": sub[1], "reset": True, "since": _iso(since)}).encode()
            )
            return
        raise _ReplyError(404, f"no admin endpoint {method} {scope['path']}")

    async def _put_route(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, 1 << 20)
        try:
            raw = json.loads(body)
        except ValueError as exc:
            raise _ReplyError(400, f"route body is not JSON ({exc}); send a JSON object") from None
        try:
            route = Route.parse(raw, name=name)
        except RouteError as exc:
            raise _ReplyError(400, str(exc)) from None
        for v in route.versions:
            self._info.pop(f"{name}-{v}", None)
        if self.verify_routes:
            for v in route.versions:
                try:
                    await self._model_info(f"{name}-{v}")
                except _ReplyError as exc:
                    raise _ReplyError(
                        409,
                        f"route for {name!r} refused: version {v!r} is not servable ({exc.message})",
                    ) from None
                except UpstreamError as exc:
                    raise _ReplyError(
                        409, f"route for {name!r} refused: version {v!r} is not servable ({exc})"
                    ) from None
        previous = self.routes.routes.get(name)
        try:
            self.routes.set(name, route)
        except OSError as exc:
            raise _ReplyError(
                500, f"route could not be saved to {self.routes.path} ({exc})"
            ) from None
        logger.info("route %s -> %s", name, route.to_json())
        await self._audit_admin(
            scope,
            "route_put",
            name,
            {
                "route": route.to_json(),
                "previous": previous.to_json() if previous is not None else None,
            },
        )
        await _send(send, 200, _dumps({"name": name, "route": route.to_json()}).encode())


# ---------------------------------------------------------------------------------------------
# request / response helpers


def _same_contract(a: _ModelInfo, b: _ModelInfo) -> bool:
    """Whether two versions encode named features alike (the same wire schema)."""
    return a.contract is not None and b.contract is not None and a.contract == b.contract


def _parse_request(
    body: bytes, ihcl: str | None, info: _ModelInfo, name: str, version: str
) -> tuple[str | None, np.ndarray, dict[str, Any], bool]:
    """Check one KServe v2 infer request against the contract.

    Returns:
        (id, FP32 wire rows, header, named): ``named`` when the rows were encoded from named
        features (a :class:`FeatureInputError` if they break that contract), else the request
        is the wire tensor ``INPUT__0`` (a :class:`_ViolationError` if it breaks that one).
    """
    width = info.width
    hlen = len(body) if ihcl is None else _header_length(ihcl, len(body))
    try:
        header = _fast_loads(body[:hlen] if hlen < len(body) else body)
    except (ValueError, TypeError) as exc:
        where = (
            "request body"
            if ihcl is None
            else f"JSON header (the first {hlen} bytes, per Inference-Header-Content-Length)"
        )
        raise _ViolationError(
            f"{where} is not valid JSON ({exc}); rule: a KServe v2 request is a JSON object "
            "with 'inputs'; fix: send valid JSON"
            + ("" if ihcl is None else " and the header's exact byte length")
        ) from None
    if not isinstance(header, dict):
        raise _ViolationError("request body must be a JSON object with 'inputs'")
    rid = header.get("id")
    request_id = rid if isinstance(rid, str) else None
    inputs = header.get("inputs")
    if info.contract is not None and not is_wire_request(inputs):
        rows = info.contract.encode(inputs, body, hlen, model=f"{name} version {version}")
        return request_id, rows, header, True
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _ViolationError(
            f"request must have exactly one input {INPUT_NAME!r} (got "
            f"{len(inputs) if isinstance(inputs, list) else 'no'} inputs); named features "
            f"need the version's wire schema, which is unknown: {info.no_contract}"
        )
    spec = inputs[0]
    if spec.get("name") != INPUT_NAME:
        raise _ViolationError(
            f"input name {spec.get('name')!r} is not {INPUT_NAME!r}; rename it (named features "
            f"need the version's wire schema, which is unknown: {info.no_contract})"
        )
    if spec.get("datatype") != "FP32":
        raise _ViolationError(
            f"input {INPUT_NAME} has datatype {spec.get('datatype')!r}; send FP32 (float32)"
        )
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        or shape[0] < 1
        or shape[1] < 1
    ):
        raise _ViolationError(
            f"input {INPUT_NAME} has shape {shape!r}; send [batch, d] with batch >= 1"
        )
    n, d = shape
    if width >= 0 and d != width:
        raise _ViolationError(
            f"input {INPUT_NAME} has {d} features per row; this model takes {width}"
        )
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise _ViolationError("input 'parameters' must be a JSON object")
    if "shared_memory_region" in params:
        raise _ViolationError(
            "shared-memory inputs cannot pass the gateway; send the data in the body"
        )
    size = params.get("binary_data_size")
    if size is not None:
        if size != n * d * 4 or hlen + size > len(body):
            raise _ViolationError(
                f"binary_data_size={size!r} must be {n * d * 4} bytes for shape {shape} FP32 and "
                f"fit the body ({len(body) - hlen} bytes after the JSON header)"
            )
        arr = np.frombuffer(body, dtype="<f4", count=n * d, offset=hlen).reshape(n, d)
    else:
        data = spec.get("data")
        if not isinstance(data, list):
            raise _ViolationError(f"input {INPUT_NAME} has no 'data' list and no binary_data_size")
        try:
            raw = np.asarray(data)
        except ValueError:
            raise _ViolationError(
                f"input {INPUT_NAME} data is ragged; send {n}x{d} numbers"
            ) from None
        if raw.dtype.kind not in "iuf":
            raise _ViolationError(_not_numbers(data))
        if raw.size != n * d:
            raise _ViolationError(
                f"input {INPUT_NAME} has {raw.size} values for shape {shape}; send {n * d}"
            )
        with np.errstate(over="ignore"):
            arr = raw.astype(np.float32).reshape(n, d)
    infinite = np.isinf(arr)  # NaN is allowed: it is how the wire format says "missing"
    if infinite.any():
        bad = int(infinite.sum())
        raise _ViolationError(
            f"input {INPUT_NAME} has {bad} infinite value(s) (inf or beyond FP32 range); rule: "
            "values are finite, NaN marks a missing value; fix: clip or drop them"
        )
    if info.contract is not None:  # categorical columns must hold codes (else a model error)
        try:
            info.contract.check_wire(arr, model=f"{name} version {version}")
        except FeatureInputError as exc:
            raise _ViolationError(str(exc)) from None
    return request_id, arr, header, False


def _not_numbers(data: list[Any]) -> str:
    """Why JSON ``data`` of the wire tensor is not all numbers, and how to send a missing value."""

    def flat(values: list[Any]) -> Iterator[Any]:  # a stack, not recursion: any nesting depth
        stack = [iter(values)]
        while stack:
            for v in stack[-1]:
                if isinstance(v, list):
                    stack.append(iter(v))
                    break
                yield v
            else:
                stack.pop()

    at, bad = next(
        (
            (i, v)
            for i, v in enumerate(flat(data))
            if isinstance(v, bool) or not isinstance(v, int | float)
        ),
        (0, None),
    )
    what = "null" if bad is None else f"{type(bad).__name__} {str(bad)[:40]!r}"
    return (
        f"input {INPUT_NAME} data holds a JSON {what} at flat position {at}; rule: "
        f"{INPUT_NAME} data is numbers only (no null, strings or booleans); fix: send a missing "
        "value as NaN, which JSON cannot carry, so send the tensor as binary data "
        "(tritonclient's default, binary_data=True) with NaN in it, or send the features by "
        "name, where JSON null means missing (GET /v2/models/<name> lists them)"
    )


def _header_length(ihcl: str, body_len: int) -> int:
    """The ``Inference-Header-Content-Length`` as a number of bytes, checked strictly.

    Plain decimal digits only: Python's ``int`` would also take ``"24_5"``, ``" 24"`` or
    ``"+24"``, which the model server refuses (the gateway forwards the length it checked).
    """
    if not _DIGITS_RE.match(ihcl) or not 0 < int(ihcl) <= body_len:
        raise _ViolationError(
            f"header Inference-Header-Content-Length={ihcl[:40]!r} is invalid; rule: the byte "
            f"length of the request's JSON header, plain decimal digits between 1 and the body's "
            f"{body_len} bytes; fix: send len(json_header) (tritonclient sets it for you), or "
            "drop the header for an all-JSON body"
        )
    return int(ihcl)


def _response_header(resp: UpstreamResponse) -> tuple[dict[str, Any], int, bool]:
    """An upstream answer's JSON header, its length, and whether binary data follows it."""
    ihcl = resp.headers.get("inference-header-content-length")
    if ihcl is None:
        return _fast_loads(resp.body), len(resp.body), False
    hlen = int(ihcl)
    return _fast_loads(resp.body[:hlen]), hlen, True


def _rewrite_response(
    resp: UpstreamResponse, name: str, version: str, trace: str
) -> tuple[bytes, int | None, np.ndarray | None]:
    """Present the public name, add the trace id; return (body, header length, outputs)."""
    header, hlen, binary = _response_header(resp)
    body = resp.body
    outputs: np.ndarray | None = None
    off = hlen
    for out in header.get("outputs") or ():
        params = out.get("parameters") or {}
        size = params.get("binary_data_size")
        if out.get("name") == OUTPUT_NAME and out.get("datatype") == "FP32":
            shape = out.get("shape") or [0]
            n = math.prod(shape)
            if size is not None:
                arr = np.frombuffer(body, dtype="<f4", count=n, offset=off)
            else:
                arr = np.asarray(out.get("data"), dtype=np.float32).reshape(-1)
            outputs = (
                arr.reshape(shape[0], -1) if len(shape) >= 1 and shape[0] else arr.reshape(-1, 1)
            )
        if size is not None:
            off += int(size)
    header["model_name"] = name
    header["model_version"] = version
    params = header.get("parameters")
    if not isinstance(params, dict):
        params = {}
    params["lockgate_trace_id"] = trace
    header["parameters"] = params
    new_header = _fast_dumps(header).encode()
    if binary:
        return new_header + body[hlen:], len(new_header), outputs
    return new_header, None, outputs


def _upstream_error_text(resp: UpstreamResponse) -> str:
    try:
        err = json.loads(resp.body).get("error")
        if isinstance(err, str):
            return err
    except (ValueError, AttributeError):
        pass
    text = resp.body[:500].decode("utf-8", "replace")
    return f"upstream HTTP {resp.status}: {text}" if text else f"upstream HTTP {resp.status}"


def _bad_name(name: str) -> str:
    return (
        f"model name {name[:80]!r} is invalid; use 1-128 characters from letters, digits, '_' "
        "and '.', starting with a letter or digit (the pipeline name, e.g. 'fraud_lgbm')"
    )


def _no_route(name: str) -> str:
    return (
        f"model {name!r} has no route; set one with PUT /admin/routes/{name} "
        '(e.g. {"mode": "single", "champion": "<version>"})'
    )


def _error_body(message: str) -> bytes:
    return _dumps({"error": message}).encode()


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _ReplyError(499, "client disconnected")
        chunk: bytes = msg.get("body", b"")
        size += len(chunk)
        if size > limit:  # whether the server sends the body whole or in parts
            raise _ReplyError(413, f"request body exceeds {limit} bytes; send smaller batches")
        if not msg.get("more_body"):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)


_INFLATE_STEP = 1 << 20


async def _inflate_body(body: bytes, encoding: str, limit: int) -> bytes:
    """Decompress a ``gzip`` or ``deflate`` (zlib) request body, at most ``limit`` bytes out.

    Inflates in steps of at most 1 MiB of output, stops as soon as the output passes ``limit``
    (413: a small body that inflates to gigabytes costs at most ``limit`` bytes of memory) and
    lets other requests run between steps.
    """
    wbits = 31 if encoding == "gzip" else 15
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    data = body
    try:
        while True:
            chunk = inflater.decompress(data, min(_INFLATE_STEP, limit + 1 - len(out)))
            out += chunk
            if len(out) > limit:
                raise _ReplyError(
                    413,
                    f"request body inflates ({encoding}) to more than {limit} bytes; rule: "
                    "max_body_bytes holds after decompression; fix: send smaller batches",
                )
            data = inflater.unconsumed_tail
            if inflater.eof:
                data = inflater.unused_data
                if not data:
                    return bytes(out)
                if encoding != "gzip":
                    raise _ReplyError(400, "request body has data after its deflate stream")
                inflater = zlib.decompressobj(wbits)  # gzip: the next member
            elif not data and not chunk:
                raise _ReplyError(400, f"request body is not valid {encoding} (truncated)")
            if len(out) >= _INFLATE_STEP:
                await asyncio.sleep(0)
    except zlib.error as exc:
        raise _ReplyError(400, f"request body is not valid {encoding} ({exc})") from None


async def _send(
    send: Send,
    status: int,
    body: bytes,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/json",
) -> None:
    hdrs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str) -> None:
    await _send(send, status, _error_body(message))


def _consteq(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


ACTOR_HEADER = "x-lockgate-actor"
"""The header in which a state-changing admin call states who acts (recorded in the audit log)."""


def _token_id(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _admin_actor(scope: Scope) -> str:
    raw = next((v for k, v in scope["headers"] if k == ACTOR_HEADER.encode()), b"")
    actor = raw.decode("utf-8", "replace").strip()
    if not actor or len(actor) > 200 or not actor.isprintable():
        raise _ReplyError(
            400,
            f"admin changes need an {ACTOR_HEADER!r} header naming who acts (1-200 printable "
            f"characters), got {actor[:40]!r}; rule: every admin change is audited with its "
            f"actor; fix: send e.g. '{ACTOR_HEADER}: alice' (lockgate's clients send it)",
        )
    return actor


class _AdminApp:
    """The admin endpoints of a :class:`GatewayApp` as their own ASGI app (the admin listener).

    It shares the gateway's state; the gateway's own lifespan starts and stops that state, so
    this app ignores lifespan events.
    """

    def __init__(self, gateway: GatewayApp) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope on the admin listener."""
        if scope["type"] == "http":
            await self.gateway._admin_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return


def _lockgate_version() -> str:
    try:
        from importlib.metadata import version

        return version("lockgate")
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# factory and entry point


def create_app(
    *,
    state_dir: str | os.PathLike[str],
    log_dir: str | os.PathLike[str],
    upstream_url: str | None = None,
    upstream: Upstream | None = None,
    upstream_timeout_s: float = 30.0,
    retry_challenger_on_champion: bool = True,
    durability: Durability = "fsync",
    segment_max_bytes: int = 64 << 20,
    segment_max_age_s: float = 60.0,
    commit_interval_s: float = 0.0,
    commit_delay_s: float = 0.001,
    commit_siblings: int = 2,
    max_shadow_inflight: int = 64,
    max_body_bytes: int = 64 << 20,
    admin_token: str | None = None,
    verify_routes: bool = True,
    coalesce_inflight: int = 2,
    model_repository: str | os.PathLike[str] | None = None,
    routing_key: bytes | None = None,
    audit_log: str | os.PathLike[str] | AuditLog | None = None,
) -> GatewayApp:
    """Build the gateway ASGI app.

    Args:
        state_dir: folder of ``routes.json`` (the routing tables survive restarts).
        log_dir: folder of the prediction log (WAL segments and Parquet parts).
        upstream_url: base URL of the KServe v2 model server, e.g. ``http://127.0.0.1:8000``.
        upstream: an :class:`Upstream` object instead of a URL (tests, custom transports).
        upstream_timeout_s: timeout of one upstream inference call (504 after it).
        retry_challenger_on_champion: in canary mode, answer a failed challenger request from
            the champion (both the challenger error and the retry are counted).
        durability: ``fsync`` (fdatasync before answering) or ``flush`` (write to the OS only:
            survives a crash of the gateway, not of the machine).
        segment_max_bytes: WAL segment size that triggers rotation and a Parquet roll.
        segment_max_age_s: WAL segment age that triggers rotation and a Parquet roll.
        commit_interval_s: minimum time between group commits (0 = adaptive).
        commit_delay_s: with ``fsync``, hold a group commit up to this long while at least
            ``commit_siblings`` other requests are in flight and more of them than records
            wait, so that one fdatasync covers them too (0 = never hold). Light load is never
            held.
        commit_siblings: requests in flight, beyond those already waiting for the commit,
            that make a commit worth holding.
        max_shadow_inflight: concurrent shadow calls at most; more are dropped and counted.
        max_body_bytes: largest accepted request body.
        admin_token: the bearer token of the admin endpoints (``app.admin``, the admin
            listener); None or empty: every admin call is refused (403).
        verify_routes: ``PUT /admin/routes`` checks that every version is served upstream.
        coalesce_inflight: upstream calls in flight per model version before further requests
            wait at the gateway and go upstream merged into one call as soon as one returns
            (:mod:`lockgate.gateway.coalesce`); 0 never merges. Only models with ``max_batch_size > 0``
            and outputs of fixed item size are merged, and only requests whose answer the
            gateway rebuilds exactly.
        model_repository: the Triton model repository the versions were written to; the
            gateway reads each version's wire schema from it (``<pipeline>-<version>/1/wire.json``
            or, on the GPU target, ``<pipeline>-<version>-wire/1/wire.json``; once per version)
            so that clients can send named features (:mod:`lockgate.gateway.named_inputs`). Without
            it, clients send the wire tensor ``INPUT__0`` themselves.
        routing_key: the secret that keys the canary and shadow hashes of trace ids (16-64
            bytes; give replicas that must route alike the same one). None: the key in
            ``state_dir/routing.key``, made at first start.
        audit_log: where state-changing admin calls are audited (a path or an
            :class:`lockgate.audit.log.AuditLog`; a path signs its witness with the key
            :class:`~lockgate.audit.log.AuditLog` finds: ``$LOCKGATE_SIGNING_KEY`` or
            ``<log folder>/../keys/signing.key``). None: not audited (in-process use only;
            ``python -m lockgate.gateway`` requires one).

    Returns:
        The ASGI application; start it with the ASGI lifespan protocol (uvicorn does) or call
        :meth:`GatewayApp.startup` / :meth:`GatewayApp.shutdown` yourself.

    Raises:
        GatewayError: neither or both of ``upstream_url`` and ``upstream`` were given, or a
            setting is out of range.
        RouteError: ``state_dir/routes.json`` cannot be loaded.
    """
    if (upstream_url is None) == (upstream is None):
        raise GatewayError(
            "create_app needs exactly one of upstream_url (e.g. 'http://127.0.0.1:8000') or "
            "upstream (an Upstream object)"
        )
    if upstream_url is not None:
        HttpUpstream(upstream_url)  # validate early
    for label, value in (
        ("upstream_timeout_s", upstream_timeout_s),
        ("segment_max_age_s", segment_max_age_s),
    ):
        if not value > 0:
            raise GatewayError(f"{label}={value!r} must be > 0 seconds")
    if segment_max_bytes < 1024:
        raise GatewayError(f"segment_max_bytes={segment_max_bytes} must be at least 1024")
    if commit_interval_s < 0:
        raise GatewayError(f"commit_interval_s={commit_interval_s} must be >= 0")
    if not 0 <= commit_delay_s <= 0.1:
        raise GatewayError(
            f"commit_delay_s={commit_delay_s!r} must be between 0 and 0.1 seconds; it is added "
            "to the latency of every held request"
        )
    if commit_siblings < 1:
        raise GatewayError(f"commit_siblings={commit_siblings!r} must be at least 1")
    if routing_key is not None and not 16 <= len(routing_key) <= 64:
        raise GatewayError(
            f"routing_key has {len(routing_key)} bytes; rule: 16-64 random bytes; fix: use "
            "os.urandom(32)"
        )
    if coalesce_inflight < 0:
        raise GatewayError(
            f"coalesce_inflight={coalesce_inflight!r} must be >= 0 (0 never merges requests)"
        )
    return GatewayApp(
        state_dir=Path(state_dir),
        log_dir=Path(log_dir),
        upstream=upstream,
        upstream_url=upstream_url,
        upstream_timeout_s=upstream_timeout_s,
        retry_challenger_on_champion=retry_challenger_on_champion,
        durability=durability,
        segment_max_bytes=segment_max_bytes,
        segment_max_age_s=segment_max_age_s,
        commit_interval_s=commit_interval_s,
        commit_delay_s=commit_delay_s,
        commit_siblings=commit_siblings,
        max_shadow_inflight=max_shadow_inflight,
        max_body_bytes=max_body_bytes,
        admin_token=admin_token,
        verify_routes=verify_routes,
        coalesce_inflight=coalesce_inflight,
        model_repository=None if model_repository is None else Path(model_repository),
        routing_key=routing_key,
        audit_log=(
            AuditLog(audit_log)
            if audit_log is not None and not isinstance(audit_log, AuditLog)
            else audit_log
        ),
    )


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
        max_connections: open client connections at most; at the cap a new connection closes
            the oldest idle keep-alive connection, or is answered 503 when none is idle.
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
    max_url_bytes: int = 8192
    max_header_bytes: int = 32768
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keepalive_timeout_s: float = 75.0

    def __post_init__(self) -> None:
        for name, low in (
            ("max_connections", 1),
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


def _refusal(status: int, message: str) -> bytes:
    """A whole error response that closes the connection."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

    body = _error_body(message)
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


def _http_protocol(limits: ServerLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with :class:`_CoalescingTransport` under it and ``limits``.

    uvicorn bounds none of a request head, the time it or a body may take, nor the connections
    (``limit_concurrency`` answers 503 to busy and idle alike); this counts the bytes of a head
    as they arrive (URL in ``on_url``, the head as read), arms a timer only when a head or a
    body spans reads, and keeps the idle keep-alive connections in age order so that the
    oldest goes first at the connection cap.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    idle: dict[Any, None] = {}  # connections with no request in progress, oldest first
    evicting: set[Any] = set()  # closed for the cap, not yet lost
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

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            wrapped = _CoalescingTransport(transport, self.loop)
            super().connection_made(wrapped)  # type: ignore[arg-type]
            if len(self.connections) - len(evicting) > limits.max_connections:
                oldest = next(iter(idle), None)
                if oldest is None:
                    self._refuse(
                        503,
                        f"the gateway holds max_connections={limits.max_connections} busy "
                        "connections; retry later, or raise --max-connections",
                    )
                    return
                del idle[oldest]
                evicting.add(oldest)
                oldest.transport.close()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            idle[self] = None

        def connection_lost(self, exc: Exception | None) -> None:
            idle.pop(self, None)
            evicting.discard(self)
            self._cancel_timers()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timeout_keep_alive_task is not None:  # armed: nothing else in progress
                idle[self] = None

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
            idle.pop(self, None)
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
            idle.pop(self, None)
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


ADMIN_TOKEN_ENV = "LOCKGATE_GATEWAY_ADMIN_TOKEN"
"""The environment variable lockgate's clients and the local stack pass the admin token in."""


def _add_admin_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("admin listener")
    group.add_argument(
        "--admin-host",
        default="127.0.0.1",
        help="address of the admin listener (default 127.0.0.1: reachable from this machine only)",
    )
    group.add_argument(
        "--admin-port", type=int, default=0, help="port of the admin listener (0 picks a free one)"
    )
    group.add_argument(
        "--admin-token-env",
        help=f"name of an environment variable with the admin bearer token (e.g. {ADMIN_TOKEN_ENV}, "
        "set from a secret)",
    )
    group.add_argument(
        "--admin-token-file", type=Path, help="file with the admin bearer token (mode 0600)"
    )
    group.add_argument(
        "--audit-log",
        type=Path,
        required=True,
        help="the lockgate audit log (audit.jsonl) every admin change is appended to; its "
        "witness is signed with $LOCKGATE_SIGNING_KEY or <log folder>/../keys/signing.key",
    )


def _admin_token(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The admin token from ``--admin-token-env`` / ``--admin-token-file``; exits without one."""
    if bool(args.admin_token_env) == bool(args.admin_token_file):
        parser.error(
            "the admin API needs a token; rule: give exactly one of --admin-token-env NAME or "
            f"--admin-token-file PATH; fix: e.g. `--admin-token-env {ADMIN_TOKEN_ENV}` with the "
            "variable set from a secret (the local serving stack generates one for you)"
        )
    if args.admin_token_env:
        token = os.environ.get(args.admin_token_env, "").strip()
        where = f"the environment variable {args.admin_token_env}"
    else:
        try:
            token = args.admin_token_file.read_text().strip()
        except OSError as exc:
            parser.error(f"--admin-token-file {args.admin_token_file} cannot be read ({exc})")
        where = f"the file {args.admin_token_file}"
    if len(token) < 16:
        parser.error(
            f"{where} holds {'no' if not token else 'a too short'} admin token; rule: at least "
            "16 characters (unset or empty tokens are refused, never treated as 'no auth'); "
            "fix: set it to e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return token


def _bind_admin(app: GatewayApp, host: str, port: int, inference_port: int) -> socket.socket:
    """Bind and listen on the admin socket; record its address on ``app``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    app.admin_port = sock.getsockname()[1]
    if app.admin_port == inference_port:  # only possible with SO_REUSEPORT tricks
        raise GatewayError(f"admin port {app.admin_port} equals the inference port; use another")
    app.admin_url = f"http://{host}:{app.admin_port}"
    return sock


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The HTTP server's limits (:class:`ServerLimits`) and the body limit."""
    defaults = ServerLimits()
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=64 << 20,
        help="largest request body, also after decompression (413)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=defaults.max_connections,
        help="open client connections at most; at the cap the oldest idle one is closed, or a "
        "new one is answered 503 when none is idle",
    )
    parser.add_argument(
        "--max-url-bytes", type=int, default=defaults.max_url_bytes, help="longest URL (414)"
    )
    parser.add_argument(
        "--max-header-bytes",
        type=int,
        default=defaults.max_header_bytes,
        help="largest request head without the URL (431)",
    )
    parser.add_argument(
        "--header-timeout-s",
        type=float,
        default=defaults.header_timeout_s,
        help="a request head arrives whole within this of its first byte (408)",
    )
    parser.add_argument(
        "--body-timeout-s",
        type=float,
        default=defaults.body_timeout_s,
        help="a request body arrives whole within this of its head (408)",
    )
    parser.add_argument(
        "--keepalive-timeout-s",
        type=float,
        default=defaults.keepalive_timeout_s,
        help="a connection with no request in progress is closed after this",
    )


def _server_limits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServerLimits:
    try:
        return ServerLimits(
            max_connections=args.max_connections,
            max_url_bytes=args.max_url_bytes,
            max_header_bytes=args.max_header_bytes,
            header_timeout_s=args.header_timeout_s,
            body_timeout_s=args.body_timeout_s,
            keepalive_timeout_s=args.keepalive_timeout_s,
        )
    except GatewayError as exc:
        parser.error(str(exc))


def _fit_open_files(limits: ServerLimits, spare: int = 256) -> ServerLimits:
    """Raise the soft open-file limit to hold ``max_connections`` + ``spare`` descriptors (WAL,
    Parquet, upstream connections); where the hard limit is lower, lower the cap to fit."""
    import resource

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


def main(argv: list[str] | None = None) -> int:
    """Run the gateway on uvicorn (httptools, uvloop) with :class:`ServerLimits`.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m lockgate.gateway", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--log-dir", required=True, type=Path)
    parser.add_argument("--upstream-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, help="JSON {pid, port, url} written once up")
    parser.add_argument("--durability", choices=["fsync", "flush"], default="fsync")
    parser.add_argument("--upstream-timeout-s", type=float, default=30.0)
    parser.add_argument("--no-retry-challenger", action="store_true")
    parser.add_argument("--segment-max-bytes", type=int, default=64 << 20)
    parser.add_argument("--segment-max-age-s", type=float, default=60.0)
    parser.add_argument("--commit-interval-s", type=float, default=0.0)
    parser.add_argument("--commit-delay-s", type=float, default=0.001)
    parser.add_argument("--commit-siblings", type=int, default=2)
    parser.add_argument(
        "--coalesce-inflight",
        type=int,
        default=2,
        help="upstream calls in flight per model version before requests are merged (0: never)",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        help="the Triton model repository: each version's wire.json lets clients send named "
        "features",
    )
    _add_admin_arguments(parser)
    parser.add_argument(
        "--routing-key-env",
        help="name of an environment variable with the routing key in hex (replicas that must "
        "route alike); default: state_dir/routing.key",
    )
    parser.add_argument("--no-verify-routes", action="store_true")
    parser.add_argument("--log-level", default="warning")
    _add_server_arguments(parser)
    args = parser.parse_args(argv)
    limits = _server_limits(args, parser)

    import uvloop

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    token = _admin_token(args, parser)
    routing_key = None
    if args.routing_key_env:
        try:
            routing_key = bytes.fromhex(os.environ[args.routing_key_env])
        except (KeyError, ValueError):
            parser.error(
                f"--routing-key-env {args.routing_key_env}: the variable must be set to 16-64 "
                "bytes in hex (e.g. from `python -c 'import os; print(os.urandom(32).hex())'`)"
            )
    app = create_app(
        state_dir=args.state_dir,
        log_dir=args.log_dir,
        upstream_url=args.upstream_url,
        upstream_timeout_s=args.upstream_timeout_s,
        retry_challenger_on_champion=not args.no_retry_challenger,
        durability=args.durability,
        segment_max_bytes=args.segment_max_bytes,
        segment_max_age_s=args.segment_max_age_s,
        commit_interval_s=args.commit_interval_s,
        commit_delay_s=args.commit_delay_s,
        commit_siblings=args.commit_siblings,
        admin_token=token,
        verify_routes=not args.no_verify_routes,
        coalesce_inflight=args.coalesce_inflight,
        model_repository=args.model_repository,
        routing_key=routing_key,
        audit_log=args.audit_log,
        max_body_bytes=args.max_body_bytes,
    )
    limits = _fit_open_files(limits)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    admin_sock = _bind_admin(app, args.admin_host, args.admin_port, port)

    def ready() -> None:
        if args.ready_file is not None:
            info = {"pid": os.getpid(), "port": port, "url": f"http://{args.host}:{port}"}
            info |= {"admin_port": app.admin_port, "admin_url": app.admin_url}
            _atomic_write(args.ready_file, json.dumps(info).encode())

    import uvicorn

    config = uvicorn.Config(
        app,
        loop="none",
        http=_http_protocol(limits),
        timeout_keep_alive=limits.keepalive_timeout_s,  # type: ignore[arg-type]
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        workers=1,
        timeout_graceful_shutdown=10,
        backlog=4096,
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock, admin_sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            ready()
        await task

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
