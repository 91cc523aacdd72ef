"""``python -m lockgate.gateway``: the gateway's command line.

:func:`main` parses the options into a :class:`~lockgate.gateway.config.GatewayConfig` (and the
HTTP server's :class:`~lockgate.gateway.server.ServerLimits`), reads the admin token
(``--admin-token-env`` or ``--admin-token-file``; it refuses to start without one, or without
``--audit-log``), binds the inference and admin listeners, and serves the app on uvicorn
(httptools on uvloop, one worker); once up it writes ``--ready-file`` (``{pid, port, url,
admin_port, admin_url}``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path

import lockgate.gateway
from lockgate._util.fs import atomic_write
from lockgate.gateway.app import GatewayApp
from lockgate.gateway.config import ADMIN_TOKEN_ENV, GatewayConfig
from lockgate.gateway.errors import GatewayError
from lockgate.gateway.factory import app_from_config
from lockgate.gateway.server import (
    SERVER_LIMIT_FIELDS,
    ServerLimits,
    fit_open_files,
    http_protocol,
)
from lockgate.state.audit import PostgresAuditLog

__all__ = ["build_parser", "main"]


def _repository(value: str) -> Path | str:
    """A model repository option: an object-store URL as it is, a folder as a path."""
    return value if "://" in value else Path(value)


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
        help="the lockgate audit log (audit.jsonl) every admin change is appended to; its "
        "witness is signed with $LOCKGATE_SIGNING_KEY or <log folder>/../keys/signing.key",
    )
    group.add_argument(
        "--audit-url-env",
        help="instead of --audit-log: name of an environment variable with the PostgreSQL URL "
        "of the shared state (e.g. LOCKGATE_STATE_DB_URL), whose 'gateway' audit chain every "
        "replica appends to (signed with $LOCKGATE_SIGNING_KEY)",
    )


def _audit_log(
    args: argparse.Namespace, parser: argparse.ArgumentParser
) -> Path | PostgresAuditLog:
    """The admin audit log: the ``--audit-log`` file, or the shared state's ``gateway`` chain."""
    if (args.audit_log is None) == (args.audit_url_env is None):
        parser.error(
            "admin changes must be audited; rule: give exactly one of --audit-log PATH or "
            "--audit-url-env NAME; fix: e.g. `--audit-log state/audit/gateway.jsonl`, or "
            "`--audit-url-env LOCKGATE_STATE_DB_URL` for replicas sharing PostgreSQL"
        )
    if args.audit_log is not None:
        path: Path = args.audit_log
        return path
    url = os.environ.get(args.audit_url_env, "").strip()
    if not url:
        parser.error(
            f"--audit-url-env {args.audit_url_env}: the variable is not set; fix: set it to the "
            "PostgreSQL URL of the shared state"
        )
    return PostgresAuditLog(url, log="gateway")


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


_LIMIT_HELP = {
    "max_connections": "open client connections at most; at the cap the oldest idle one is "
    "closed, or a new one is answered 503 when none is idle",
    "max_admin_connections": "the same cap for the admin listener, counted apart from the "
    "inference listener's (a flood of inference connections never blocks a rollback)",
    "max_url_bytes": "longest URL (414)",
    "max_header_bytes": "largest request head without the URL (431)",
    "header_timeout_s": "a request head arrives whole within this of its first byte (408)",
    "body_timeout_s": "a request body arrives whole within this of its head (408)",
    "keepalive_timeout_s": "a connection with no request in progress is closed after this",
}
"""The ``--help`` of each :class:`ServerLimits` option (``--max-connections`` ...)."""


def _add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The HTTP server's limits (:class:`ServerLimits`) and the body limit."""
    defaults = ServerLimits()
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=64 << 20,
        help="largest request body, also after decompression (413)",
    )
    for name in SERVER_LIMIT_FIELDS:
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=_LIMIT_HELP[name],
        )


def _config(args: argparse.Namespace, limits: ServerLimits) -> GatewayConfig:
    """The gateway's settings from the command line (:class:`GatewayError` if out of range)."""
    not_options = {"retry_challenger_on_champion", "verify_routes", "limits"}
    same = {k: getattr(args, k) for k in GatewayConfig.model_fields if k not in not_options}
    return GatewayConfig(
        **same,
        retry_challenger_on_champion=not args.no_retry_challenger,
        verify_routes=not args.no_verify_routes,
        limits=limits,
    )


def _server_limits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> ServerLimits:
    try:
        return ServerLimits(**{name: getattr(args, name) for name in SERVER_LIMIT_FIELDS})
    except GatewayError as exc:
        parser.error(str(exc))


def build_parser() -> argparse.ArgumentParser:
    """The gateway's argument parser (the options :meth:`GatewayConfig.to_argv` writes, and the
    listener, admin and logging options)."""
    parser = argparse.ArgumentParser(
        prog="python -m lockgate.gateway", description=lockgate.gateway.__doc__
    )
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
        "--max-shadow-inflight",
        type=int,
        default=64,
        help="concurrent shadow calls at most; more are dropped and counted",
    )
    parser.add_argument(
        "--coalesce-inflight",
        type=int,
        default=2,
        help="upstream calls in flight per model version before requests are merged (0: never)",
    )
    parser.add_argument(
        "--model-repository",
        type=_repository,
        help="the Triton model repository (a folder, or s3://bucket/prefix with the AWS_* "
        "variables): each version's wire.json lets clients send named features",
    )
    parser.add_argument(
        "--prediction-log-url",
        help="object storage (s3://bucket/prefix) the rolled Parquet parts of the prediction "
        "log are exported to, read back and verified (credentials: the AWS_* variables)",
    )
    parser.add_argument(
        "--online-features",
        type=Path,
        help="JSON file mapping public model names to their Feast repository and feature "
        'service ({"<model>": {"feast_repo": ..., "feature_service": ...}}): requests may then '
        "carry the entity keys instead of the features, looked up in Feast's online store",
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the gateway on uvicorn (httptools, uvloop) with :class:`ServerLimits`.

    Args:
        argv: command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = build_parser()
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
    audit_log = _audit_log(args, parser)
    try:
        app = app_from_config(
            _config(args, limits), admin_token=token, routing_key=routing_key, audit_log=audit_log
        )
    except GatewayError as exc:  # e.g. an unreadable --online-features file: say why, no trace
        parser.error(str(exc))
    limits = fit_open_files(limits)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]
    admin_sock = _bind_admin(app, args.admin_host, args.admin_port, port)

    def ready() -> None:
        if args.ready_file is not None:
            info = {"pid": os.getpid(), "port": port, "url": f"http://{args.host}:{port}"}
            info |= {"admin_port": app.admin_port, "admin_url": app.admin_url}
            atomic_write(args.ready_file, json.dumps(info).encode())

    import uvicorn

    config = uvicorn.Config(
        app,
        loop="none",
        http=http_protocol(limits, admin_port=app.admin_port),
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
