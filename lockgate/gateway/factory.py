"""Building the gateway's ASGI app: :func:`create_app` (keyword settings, for code and tests)
and :func:`app_from_config` (a :class:`~lockgate.gateway.config.GatewayConfig`, for the command
line); both end in one :class:`~lockgate.gateway.app.GatewayApp`.
"""

from __future__ import annotations

import os
from pathlib import Path

from lockgate.audit.log import AuditLog
from lockgate.gateway.app import GatewayApp
from lockgate.gateway.config import GatewayConfig
from lockgate.gateway.errors import GatewayError
from lockgate.gateway.predlog.wal import Durability
from lockgate.gateway.upstream import Upstream
from lockgate.state.audit import PostgresAuditLog

__all__ = ["app_from_config", "create_app"]


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
    online_features: str | os.PathLike[str] | None = None,
    routing_key: bytes | None = None,
    audit_log: str | os.PathLike[str] | AuditLog | PostgresAuditLog | None = None,
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
        online_features: the JSON file of the models whose clients may send entity keys
            instead of features (:mod:`lockgate.gateway.online_features`).
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
    config = GatewayConfig(
        state_dir=Path(state_dir),
        log_dir=Path(log_dir),
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
        verify_routes=verify_routes,
        coalesce_inflight=coalesce_inflight,
        model_repository=(
            None
            if model_repository is None
            else model_repository
            if isinstance(model_repository, str) and "://" in model_repository
            else Path(model_repository)
        ),
        online_features=None if online_features is None else Path(online_features),
    )
    return app_from_config(
        config,
        upstream=upstream,
        admin_token=admin_token,
        routing_key=routing_key,
        audit_log=audit_log,
    )


def app_from_config(
    config: GatewayConfig,
    *,
    upstream: Upstream | None = None,
    admin_token: str | None = None,
    routing_key: bytes | None = None,
    audit_log: str | os.PathLike[str] | AuditLog | PostgresAuditLog | None = None,
) -> GatewayApp:
    """Build the gateway ASGI app from its settings (what :func:`create_app` and the command
    line do); the arguments beside ``config`` are those of :func:`create_app`.

    Raises:
        GatewayError: neither or both of ``config.upstream_url`` and ``upstream`` were given, or
            the routing key is not 16-64 bytes.
        RouteError: ``state_dir/routes.json`` cannot be loaded.
    """
    if (config.upstream_url is None) == (upstream is None):
        raise GatewayError(
            "create_app needs exactly one of upstream_url (e.g. 'http://127.0.0.1:8000') or "
            "upstream (an Upstream object)"
        )
    if routing_key is not None and not 16 <= len(routing_key) <= 64:
        raise GatewayError(
            f"routing_key has {len(routing_key)} bytes; rule: 16-64 random bytes; fix: use "
            "os.urandom(32)"
        )
    return GatewayApp(
        config,
        upstream=upstream,
        admin_token=admin_token,
        routing_key=routing_key,
        audit_log=(
            AuditLog(audit_log)
            if audit_log is not None and not isinstance(audit_log, AuditLog | PostgresAuditLog)
            else audit_log
        ),
    )
