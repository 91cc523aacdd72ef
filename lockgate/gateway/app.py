"""The gateway's ASGI application: :class:`GatewayApp` and :func:`create_app`.

:class:`GatewayApp` is plain ASGI 3 (no framework on the hot path): it serves the KServe v2
endpoints, health, metadata and ``/metrics`` on the inference listener, routes each infer
request to a version (:mod:`lockgate.gateway.routing`), checks it against that version's
contract (:mod:`lockgate.gateway.models`, :mod:`lockgate.gateway.kserve`), forwards it upstream
on its own or merged under load (:mod:`lockgate.gateway.merge_queue`), logs it durably before
answering (:mod:`lockgate.gateway.predlog`) and mirrors it to a shadow challenger
(:mod:`lockgate.gateway.shadow`); ``app.admin`` serves the admin API
(:mod:`lockgate.gateway.admin`). :func:`create_app` builds it from keyword settings,
:func:`app_from_config` from a :class:`~lockgate.gateway.config.GatewayConfig`. The whole design
is described in :mod:`lockgate.gateway`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from lockgate.audit.log import AuditLog
from lockgate.gateway.admin import AdminApp, token_id
from lockgate.gateway.asgi import (
    Receive,
    Scope,
    Send,
    inflate_body,
    read_body,
    respond,
    respond_error,
)
from lockgate.gateway.coalesce import plan_of
from lockgate.gateway.config import GatewayConfig
from lockgate.gateway.errors import (
    PredictionLogError,
    ReplyError,
    UpstreamError,
    ViolationError,
    not_started,
)
from lockgate.gateway.kserve import (
    DIGITS_RE,
    bad_name,
    dumps_compact,
    error_body,
    no_route,
    parse_request,
    rewrite_response,
    upstream_error_text,
)
from lockgate.gateway.merge_queue import MergeQueue, merged_answer
from lockgate.gateway.metrics import render_metrics
from lockgate.gateway.models import ModelDirectory, same_contract
from lockgate.gateway.named_inputs import FeatureInputError, wire_request
from lockgate.gateway.online_features import (
    EntityKeys,
    OnlineFeatures,
    entity_header,
    load_online_features,
)
from lockgate.gateway.predlog.export import PredictionLogExport
from lockgate.gateway.predlog.records import encode_record
from lockgate.gateway.predlog.wal import PredictionLog
from lockgate.gateway.routing import (
    NAME_RE,
    VERSION_RE,
    Route,
    RouteTable,
    load_routing_key,
    traffic_fraction,
)
from lockgate.gateway.shadow import ShadowMirror
from lockgate.gateway.stats import Stats
from lockgate.gateway.upstream import HttpUpstream, Upstream, UpstreamResponse
from lockgate.state.audit import PostgresAuditLog

__all__ = ["GatewayApp"]

logger = logging.getLogger("lockgate.gateway")

_TRACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z")


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

    Args:
        config: the gateway's settings (checked when the config was built).
        upstream: an :class:`Upstream` object instead of ``config.upstream_url``.
        admin_token: the admin bearer token (None: every admin call is refused).
        routing_key: the routing secret (None: ``state_dir/routing.key``).
        audit_log: where state-changing admin calls are audited (None: not audited).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        upstream: Upstream | None = None,
        admin_token: str | None = None,
        routing_key: bytes | None = None,
        audit_log: AuditLog | PostgresAuditLog | None = None,
    ) -> None:
        self.config = config
        state_dir = self.state_dir = config.state_dir
        self.audit_log = audit_log
        self.admin_port: int | None = None  # the admin listener's port, once bound (main())
        self.admin_url: str | None = None
        self.admin = AdminApp(self)
        self.model_repository = config.model_repository
        self.log_dir = config.log_dir
        self.upstream_url = config.upstream_url
        self.upstream_timeout_s = config.upstream_timeout_s
        self.retry_challenger_on_champion = config.retry_challenger_on_champion
        self.max_shadow_inflight = config.max_shadow_inflight
        self.max_body_bytes = config.max_body_bytes
        self.admin_token = admin_token
        self.verify_routes = config.verify_routes
        self.coalesce_inflight = config.coalesce_inflight
        self.online = (
            OnlineFeatures(load_online_features(config.online_features))
            if config.online_features is not None
            else None
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        self.routes = RouteTable(state_dir)
        self.routing_key = load_routing_key(state_dir) if routing_key is None else routing_key
        self.stats = Stats()
        self.log = PredictionLog(
            config.log_dir,
            export=(
                PredictionLogExport(url=config.prediction_log_url)
                if config.prediction_log_url
                else None
            ),
            durability=config.durability,  # type: ignore[arg-type]  # checked by GatewayConfig
            segment_max_bytes=config.segment_max_bytes,
            segment_max_age_s=config.segment_max_age_s,
            commit_interval_s=config.commit_interval_s,
            commit_delay_s=config.commit_delay_s,
            commit_siblings=config.commit_siblings,
            stats=self.stats,
        )
        self._given_upstream = upstream
        self.upstream: Upstream | None = upstream
        self.models = ModelDirectory(
            self._up,
            timeout_s=config.upstream_timeout_s,
            model_repository=config.model_repository,
            merge=config.coalesce_inflight > 0,
        )
        self.merges = MergeQueue(
            self._forward,
            stats=self.stats,
            models=self.models,
            inflight_limit=config.coalesce_inflight,
        )
        self.shadow = ShadowMirror(
            self._forward,
            stats=self.stats,
            models=self.models,
            log=self.log,
            max_inflight=config.max_shadow_inflight,
        )
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
        if self.online is not None:  # Feast is opened (and imported) only now
            await self.online.open()
        await self.log.start()
        self.started = True

    async def shutdown(self) -> None:
        """Finish shadow calls (briefly), commit and roll the log, close the pool."""
        if not self.started:
            return
        self.started = False
        await self.shadow.close(timeout_s=5.0)
        await self.log.close()
        if self.online is not None:
            self.online.close()
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
                await self.admin.handle(scope, receive, send)
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
                raise ReplyError(
                    404,
                    "admin endpoints are not served on the inference port; rule: they are "
                    f"served only on the admin port; fix: call them on {where} with "
                    "'Authorization: Bearer <admin token>'",
                )
            if parts == ["metrics"] and method == "GET":
                await respond(
                    send, 200, render_metrics(self.stats), content_type=b"text/plain; version=0.0.4"
                )
                return
            raise ReplyError(404, f"no endpoint {method} {path}; see /v2, /metrics")
        except ReplyError as r:
            await respond_error(send, r.status, r.message)
        except UpstreamError as exc:
            await respond_error(send, exc.status, str(exc))
        except Exception as exc:  # a bug: answer in KServe form rather than a bare 500
            logger.exception("unhandled error on %s %s", method, path)
            with contextlib.suppress(Exception):
                await respond_error(send, 500, f"internal gateway error: {type(exc).__name__}")

    # -- KServe v2 ------------------------------------------------------------------------

    async def _v2_misc(self, parts: list[str], method: str, send: Send) -> None:
        if method != "GET":
            raise ReplyError(405, f"method {method} not allowed on /{'/'.join(parts)}; use GET")
        if parts == ["v2"]:
            body = {
                "name": "lockgate-gateway",
                "version": _lockgate_version(),
                "extensions": ["binary_tensor_data", "lockgate_routing"],
            }
            await respond(send, 200, dumps_compact(body).encode())
            return
        if parts == ["v2", "health", "live"]:
            await respond(send, 200, b"")
            return
        if parts == ["v2", "health", "ready"]:
            ok = self.started and await self._upstream_ok("/v2/health/live")
            await respond(send, 200 if ok else 503, b"")
            return
        raise ReplyError(404, f"no endpoint GET /{'/'.join(parts)}")

    async def _models(
        self, parts: list[str], method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # /v2/models/{name}[/versions/{v}][/infer|/ready|/config]
        name = parts[2]
        if not NAME_RE.match(name):  # it becomes part of the upstream request line
            raise ReplyError(400, bad_name(name))
        rest = parts[3:]
        pinned: str | None = None
        if len(rest) >= 2 and rest[0] == "versions":
            pinned = rest[1]
            rest = rest[2:]
            if not VERSION_RE.match(pinned):
                raise ReplyError(
                    400,
                    f"version {pinned[:80]!r} is not a lockgate version id; use 1-128 characters "
                    "from letters, digits, '.', '_' and '-', starting with a letter or digit",
                )
        action = rest[0] if rest else ""
        if len(rest) > 1 or action not in ("", "infer", "ready", "config"):
            raise ReplyError(404, f"no endpoint {method} {scope['path']}")
        if action == "infer":
            if method != "POST":
                raise ReplyError(405, f"method {method} not allowed on {scope['path']}; use POST")
            await self._infer(scope, receive, send, name, pinned)
            return
        if method != "GET":
            raise ReplyError(405, f"method {method} not allowed on {scope['path']}; use GET")
        route = self.routes.routes.get(name)
        if pinned is None:
            if route is None:
                raise ReplyError(404, no_route(name))
            version = route.primary
        else:
            version = pinned
        upstream_name = f"{name}-{version}"
        if action == "ready":
            ok = await self._upstream_ok(f"/v2/models/{upstream_name}/ready")
            await respond(send, 200 if ok else 503, b"")
            return
        suffix = "/config" if action == "config" else ""
        resp = await self._up().request(
            "GET", f"/v2/models/{upstream_name}{suffix}", timeout_s=min(self.upstream_timeout_s, 10)
        )
        if resp.status != 200:
            await respond_error(send, resp.status, upstream_error_text(resp))
            return
        meta = json.loads(resp.body)
        meta["name"] = name
        if action == "":
            meta["versions"] = [version] if pinned or route is None else route.versions
            info = await self.models.get_or_none(upstream_name)
            if info is not None and info.contract is not None:  # the public contract
                meta["inputs"] = info.contract.metadata_inputs()
                params = meta.get("parameters")
                meta["parameters"] = {
                    **(params if isinstance(params, dict) else {}),
                    "lockgate_inputs": info.contract.metadata_note(),
                }
        await respond(send, 200, dumps_compact(meta).encode())

    async def _upstream_ok(self, path: str) -> bool:
        try:
            resp = await self._up().request("GET", path, timeout_s=min(self.upstream_timeout_s, 5))
        except UpstreamError:
            return False
        return resp.status == 200

    def _up(self) -> Upstream:
        if self.upstream is None:
            raise not_started()
        return self.upstream

    @property
    def admin_token_id(self) -> str:
        """The token's identity in the audit log: ``sha256:<first 12 hex digits>``."""
        return token_id(self.admin_token or "")

    async def drain_shadow(self) -> None:
        """Wait for in-flight shadow requests (tests, shutdown)."""
        await self.shadow.drain()

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
            raise ReplyError(
                400,
                f"trace id {trace[:80]!r} is invalid; use 1-128 characters from letters, digits, "
                "'.', '_', ':' and '-' (or send none and the gateway makes one)",
            )
        if not self.started:
            raise not_started()
        route = self.routes.routes.get(name)
        mirror = False
        if pinned is not None:
            version, routed_by = pinned, "pinned"
        elif route is None:
            raise ReplyError(404, no_route(name))
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
            body = await read_body(receive, self.max_body_bytes)
            if encoding in ("gzip", "deflate"):
                body = await inflate_body(body, encoding, self.max_body_bytes)
            elif encoding not in (None, "identity"):
                raise ReplyError(415, f"Content-Encoding {encoding!r} is not supported; use gzip")
            status, out_body, out_headers = await self._serve_infer(
                name, version, routed_by, trace, body, ihcl, t0, route, mirror
            )
        finally:
            self.stats.inflight -= 1
        headers = [(b"x-lockgate-trace-id", trace.encode()), *out_headers]
        await respond(send, status, out_body, headers=headers)

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
        if ihcl is not None:  # only plain digits pass parse_request; forwarded as a number
            fwd_headers["Inference-Header-Content-Length"] = (
                str(int(ihcl)) if DIGITS_RE.match(ihcl) else ihcl
            )
        # 1. schema check against the target version's input width
        try:
            info = await self.models.get(f"{name}-{version}")
        except (ReplyError, UpstreamError) as exc:
            status = exc.status
            msg = exc.message if isinstance(exc, ReplyError) else str(exc)
            if route is not None and version in route.versions:  # bounded label cardinality
                self.stats.get(name, version, False).observe(
                    latency_s=0.0, error="unavailable", violation=False, predictions=None
                )
            return await self._finish_error(
                name, version, routed_by, trace, None, None, status, msg, t0
            )
        series = self.stats.get(name, version, False)
        named = False
        entities: EntityKeys | None = None
        online = self.online.get(name) if self.online is not None else None
        entity_request = None
        if online is not None and info.contract is not None:
            found = entity_header(online, body, ihcl)
            if found is not None:
                entity_request = (online, info.contract, *found)
        try:
            if entity_request is not None:  # entity keys: the features come from Feast
                service, contract, header, hlen, request_id = entity_request
                entities = service.decode_keys(header["inputs"], body, hlen)
                values = await service.fetch(entities)
                inputs = service.encode(values, contract.schema, version=version)
                named = True
            else:
                request_id, inputs, header, named = parse_request(body, ihcl, info, name, version)
        except ReplyError as exc:  # the online store failed or timed out: not the version's fault
            return await self._finish_error(
                name,
                version,
                routed_by,
                trace,
                request_id,
                None,
                exc.status,
                exc.message,
                t0,
                entities=entities,
            )
        except ViolationError as exc:
            # the version's fault only if the request fits another version of the route (its
            # schema differs); a request no version takes is the client's: never counted
            if routed_by != "pinned" and await self._fits_another(name, version, route, body, ihcl):
                series.observe(latency_s=0.0, error=None, violation=True, predictions=None)
            return await self._finish_error(
                name, version, routed_by, trace, request_id, inputs, 400, str(exc), t0
            )
        except FeatureInputError as exc:  # the client's fault: not counted against the version
            message = str(exc)
            if online is not None and entity_request is None:
                message += (
                    f"; {name} also takes its entity keys alone ({online.keys_text()}), and the "
                    f"gateway looks the features up in Feast (feature service "
                    f"{online.source.feature_service!r})"
                )
            return await self._finish_error(
                name, version, routed_by, trace, request_id, None, 400, message, t0
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
            resp, parts, err = await self.merges.call(
                name, version, info, inputs, body, fwd_headers
            )
            if parts is not None:
                try:
                    merged = merged_answer(plan, parts, name, version, request_id, trace)
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
            champion_info = await self.models.get_or_none(f"{name}-{route.champion}")
            if (
                champion_info is not None
                and champion_info.width in (-1, info.width)
                and (not named or same_contract(champion_info, info))
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
                out_body, out_ihcl, outputs = rewrite_response(resp, name, version, trace)
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
        if entities is not None:
            meta["ek"] = entities.to_json()
        try:
            await self.log.append(encode_record(meta, inputs, outputs))
        except PredictionLogError as exc:
            series.observe(latency_s=latency, error="log", violation=False, predictions=None)
            return 503, error_body(str(exc)), []
        series.observe(latency_s=latency, error=None, violation=False, predictions=outputs)
        if mirror and route is not None and route.challenger is not None:
            self.shadow.start(
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
            info = await self.models.get_or_none(f"{name}-{other}")
            if info is None:
                continue
            try:
                parse_request(body, ihcl, info, name, other)
            except (ViolationError, FeatureInputError):
                continue
            return True
        return False

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
                self.models.forget(f"{name}-{version}")
            kind = "upstream_5xx" if resp.status >= 500 else "upstream_4xx"
            return None, (kind, resp.status, upstream_error_text(resp))
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
        *,
        entities: EntityKeys | None = None,
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
        if entities is not None:  # a failed online lookup: the keys it was for
            meta["ek"] = entities.to_json()
        try:
            await self.log.append(encode_record(meta, inputs, None))
        except PredictionLogError as exc:  # an answer is a logged answer, errors included
            return 503, error_body(str(exc)), []
        return status, error_body(message), [(b"x-lockgate-model-version", version.encode())]


def _lockgate_version() -> str:
    try:
        from importlib.metadata import version

        return version("lockgate")
    except Exception:
        return "unknown"


if __name__ == "__main__":  # ``python -m lockgate.gateway.app``: what launchers run (cmdline check)
    from lockgate.gateway.cli import main

    raise SystemExit(main())
