"""The gateway's admin API, served on its own listener behind a bearer token.

:class:`AdminApp` answers ``/admin/routes``, ``/admin/stats`` and ``/admin/log/roll`` for one
:class:`~lockgate.gateway.app.GatewayApp` (``app.admin``): the token is compared in constant
time (missing: 401, wrong: 403), state-changing calls must name who acts in the
``x-lockgate-actor`` header (:data:`ACTOR_HEADER`) and each one that succeeds is appended to the
audit log (kind ``gateway_admin``) with that actor and the token's identity
(:func:`token_id`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from lockgate.gateway.asgi import Receive, Scope, Send, read_body, respond, respond_error
from lockgate.gateway.errors import (
    PredictionLogError,
    ReplyError,
    RouteError,
    UpstreamError,
    not_started,
)
from lockgate.gateway.kserve import bad_name, dumps_compact, no_route
from lockgate.gateway.routing import NAME_RE, Route
from lockgate.gateway.stats import iso_utc

if TYPE_CHECKING:
    from lockgate.gateway.app import GatewayApp

__all__ = ["ACTOR_HEADER", "AdminApp", "token_id"]

logger = logging.getLogger("lockgate.gateway")


def _consteq(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)


ACTOR_HEADER = "x-lockgate-actor"
"""The header in which a state-changing admin call states who acts (recorded in the audit log)."""


def token_id(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _admin_actor(scope: Scope) -> str:
    raw = next((v for k, v in scope["headers"] if k == ACTOR_HEADER.encode()), b"")
    actor = raw.decode("utf-8", "replace").strip()
    if not actor or len(actor) > 200 or not actor.isprintable():
        raise ReplyError(
            400,
            f"admin changes need an {ACTOR_HEADER!r} header naming who acts (1-200 printable "
            f"characters), got {actor[:40]!r}; rule: every admin change is audited with its "
            f"actor; fix: send e.g. '{ACTOR_HEADER}: alice' (lockgate's clients send it)",
        )
    return actor


class AdminApp:
    """The admin endpoints of a :class:`GatewayApp` as their own ASGI app (the admin listener).

    It shares the gateway's state; the gateway's own lifespan starts and stops that state, so
    this app ignores lifespan events.
    """

    def __init__(self, gateway: GatewayApp) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope on the admin listener."""
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request of the admin listener: ``/admin/*`` behind the token."""
        path: str = scope["path"]
        method: str = scope["method"]
        parts = path.strip("/").split("/")
        try:
            if parts == ["v2", "health", "live"] and method == "GET":
                await respond(send, 200, b"")
                return
            if parts[0] != "admin":
                raise ReplyError(
                    404,
                    f"no endpoint {method} {path} on the admin port; rule: it serves /admin/* "
                    "only; fix: send inference and metadata calls to the inference port",
                )
            self._check_token(scope)
            await self._dispatch(parts, method, scope, receive, send)
        except ReplyError as r:
            await respond_error(send, r.status, r.message)
        except UpstreamError as exc:
            await respond_error(send, exc.status, str(exc))
        except Exception as exc:  # a bug: answer in KServe form rather than a bare 500
            logger.exception("unhandled error on admin %s %s", method, path)
            with contextlib.suppress(Exception):
                await respond_error(send, 500, f"internal gateway error: {type(exc).__name__}")

    def _check_token(self, scope: Scope) -> None:
        gw = self.gateway
        if not gw.admin_token:
            raise ReplyError(
                403,
                "this gateway has no admin token, so its admin endpoints refuse every call; "
                "rule: admin calls need a token; fix: start it with --admin-token-env or "
                "--admin-token-file (create_app(admin_token=...))",
            )
        got = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if not got:
            raise ReplyError(
                401,
                "admin endpoints need 'Authorization: Bearer <admin token>'; fix: send the "
                "token the gateway was started with (local stack: <serving>/gateway/admin.token)",
            )
        if not _consteq(got, f"Bearer {gw.admin_token}".encode()):
            raise ReplyError(
                403, "the admin token is wrong; fix: send the token the gateway was started with"
            )

    async def _audit(
        self, scope: Scope, action: str, pipeline: str, payload: dict[str, Any]
    ) -> None:
        """Append one state-changing admin call to the audit log (kind ``gateway_admin``)."""
        gw = self.gateway
        actor = _admin_actor(scope)
        if gw.audit_log is None:
            logger.warning("admin %s on %s by %s: no audit log configured", action, pipeline, actor)
            return
        client = scope.get("client")
        body = {
            "action": action,
            "token_id": gw.admin_token_id,
            "client": f"{client[0]}:{client[1]}" if client else None,
            **payload,
        }
        try:
            await asyncio.to_thread(
                gw.audit_log.append, "gateway_admin", pipeline=pipeline, actor=actor, payload=body
            )
        except Exception as exc:
            logger.exception("audit append failed for admin %s on %s", action, pipeline)
            raise ReplyError(
                500,
                f"admin {action} on {pipeline!r} was applied but could not be audited ({exc}); "
                f"fix: repair the audit log {gw.audit_log.path} (`lockgate audit verify`)",
            ) from None

    async def _dispatch(
        self, parts: list[str], method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        gw = self.gateway
        sub = parts[1:]
        changes = (
            (len(sub) == 2 and sub[0] == "routes" and method in ("PUT", "DELETE"))
            or (sub == ["log", "roll"] and method == "POST")
            or (len(sub) == 3 and sub[0] == "stats" and sub[2] == "reset" and method == "POST")
        )
        if changes:
            _admin_actor(scope)  # refuse before anything changes
        if len(sub) >= 2 and sub[0] in ("routes", "stats") and not NAME_RE.match(sub[1]):
            raise ReplyError(400, bad_name(sub[1]))
        if sub == ["routes"] and method == "GET":
            await respond(send, 200, dumps_compact({"routes": gw.routes.to_json()}).encode())
            return
        if len(sub) == 2 and sub[0] == "routes":
            name = sub[1]
            if method == "GET":
                route = gw.routes.routes.get(name)
                if route is None:
                    raise ReplyError(404, no_route(name))
                await respond(
                    send, 200, dumps_compact({"name": name, "route": route.to_json()}).encode()
                )
                return
            if method == "PUT":
                await self._put_route(name, scope, receive, send)
                return
            if method == "DELETE":
                previous = gw.routes.routes.get(name)
                if not gw.routes.delete(name):
                    raise ReplyError(404, no_route(name))
                await self._audit(
                    scope,
                    "route_delete",
                    name,
                    {"previous": previous.to_json() if previous is not None else None},
                )
                await respond(send, 200, dumps_compact({"name": name, "deleted": True}).encode())
                return
            raise ReplyError(405, f"method {method} not allowed on /admin/routes/{name}")
        if sub == ["stats"] and method == "GET":
            names = sorted({m for m, _, _ in gw.stats.series} | set(gw.routes.routes))
            snap = {n: gw.stats.snapshot(n, gw.routes.routes.get(n)) for n in names}
            await respond(send, 200, dumps_compact({"models": snap}).encode())
            return
        if len(sub) == 2 and sub[0] == "stats" and method == "GET":
            name = sub[1]
            model_stats = gw.stats.snapshot(name, gw.routes.routes.get(name))
            await respond(send, 200, dumps_compact(model_stats).encode())
            return
        if sub == ["log", "roll"] and method == "POST":
            if not gw.started:
                raise not_started()
            try:
                segments, records = await gw.log.rotate_now()
            except (OSError, PredictionLogError) as exc:
                raise ReplyError(
                    500, f"rolling the prediction log failed ({exc}); the segments stay in _wal"
                ) from None
            body = {"segments": segments, "records": records}
            await self._audit(scope, "log_roll", "*", dict(body))
            await respond(send, 200, dumps_compact(body).encode())
            return
        if len(sub) == 3 and sub[0] == "stats" and sub[2] == "reset" and method == "POST":
            since = gw.stats.reset(sub[1])
            await self._audit(scope, "stats_reset", sub[1], {"since": iso_utc(since)})
            await respond(
                send,
                200,
                dumps_compact({"model": sub[1], "reset": True, "since": iso_utc(since)}).encode(),
            )
            return
        raise ReplyError(404, f"no admin endpoint {method} {scope['path']}")

    async def _put_route(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        gw = self.gateway
        body = await read_body(receive, 1 << 20)
        try:
            raw = json.loads(body)
        except ValueError as exc:
            raise ReplyError(400, f"route body is not JSON ({exc}); send a JSON object") from None
        try:
            route = Route.parse(raw, name=name)
        except RouteError as exc:
            raise ReplyError(400, str(exc)) from None
        for v in route.versions:
            gw.models.forget(f"{name}-{v}")
        if gw.verify_routes:
            for v in route.versions:
                try:
                    await gw.models.get(f"{name}-{v}")
                except ReplyError as exc:
                    raise ReplyError(
                        409,
                        f"route for {name!r} refused: version {v!r} is not servable ({exc.message})",
                    ) from None
                except UpstreamError as exc:
                    raise ReplyError(
                        409, f"route for {name!r} refused: version {v!r} is not servable ({exc})"
                    ) from None
        previous = gw.routes.routes.get(name)
        try:
            gw.routes.set(name, route)
        except OSError as exc:
            raise ReplyError(500, f"route could not be saved to {gw.routes.path} ({exc})") from None
        logger.info("route %s -> %s", name, route.to_json())
        await self._audit(
            scope,
            "route_put",
            name,
            {
                "route": route.to_json(),
                "previous": previous.to_json() if previous is not None else None,
            },
        )
        await respond(send, 200, dumps_compact({"name": name, "route": route.to_json()}).encode())
