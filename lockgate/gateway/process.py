"""The gateway's admin client and its process: a local gateway process, or a gateway run elsewhere
(plain classes; :mod:`lockgate.resources.gateway` wraps them as Dagster resources).

:class:`Gateway` is the admin client every variant shares (routes, stats, health, metrics, over
the gateway's HTTP admin API, which listens on its own port, 127.0.0.1 by default, and needs the
bearer token; each call states its actor in ``x-lockgate-actor`` and the gateway audits every
change). :class:`GatewayServer` also runs the gateway
(``python -m lockgate.gateway``: uvicorn on uvloop with bounded requests, one worker) as a
child process on 127.0.0.1; :class:`RemoteGateway` points at an existing one (production).

Files of a :class:`GatewayServer` under ``state_dir``: ``routes.json`` (the routing tables, kept
by the gateway), ``gateway.pid``, ``gateway.ready.json`` (``{pid, port, url, admin_port,
admin_url}``, written once the gateway listens), ``gateway.log`` (its output, appended by every
start) and ``admin.token`` (mode 0600: the admin token, generated at the first start unless
``admin_token`` is given; every lockgate client of this state_dir reads it).

Example:
    >>> server = GatewayServer(state_dir="/tmp/gw", log_dir="/tmp/gw/log",
    ...                        upstream_url="127.0.0.1:8000")  # doctest: +SKIP
    >>> with server:  # doctest: +SKIP
    ...     server.set_route("fraud_lgbm", {"mode": "single", "champion": "v1"})
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, cast

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from lockgate._util.fs import atomic_write
from lockgate._util.process import ManagedServer, cmdline_contains
from lockgate.gateway.admin import ACTOR_HEADER
from lockgate.gateway.config import ADMIN_TOKEN_ENV, GatewayConfig
from lockgate.gateway.errors import GatewayError, RouteError
from lockgate.gateway.replicas import admin_endpoints, merge_stats
from lockgate.gateway.routing import SHARED_STATE_ENV
from lockgate.gateway.server import SERVER_LIMIT_FIELDS, ServerLimits

if TYPE_CHECKING:
    from lockgate.gateway.stats import AdminStats

__all__ = ["Gateway", "GatewayServer", "RemoteGateway", "default_actor"]

_READY_FILE = "gateway.ready.json"
_TOKEN_FILE = "admin.token"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_url(url: str) -> str:
    return url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"


def default_actor() -> str:
    """Who acts when a caller names nobody: ``user@host (program)``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return f"{user}@{socket.gethostname()} ({program})"


class Gateway(BaseModel, ABC):
    """Admin client of a lockgate gateway.

    Attributes:
        admin_token: bearer token of the admin endpoints; None: the variant's default
            (:class:`GatewayServer`: its ``admin.token`` file; :class:`RemoteGateway`:
            ``$LOCKGATE_GATEWAY_ADMIN_TOKEN``).
        actor: who acts, sent with every admin call and recorded in the audit log with each
            change; None: ``user@host (program)``.
        timeout_s: timeout of each admin HTTP call, in seconds.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    admin_token: str | None = None
    actor: str | None = None
    timeout_s: float = 30.0

    @property
    @abstractmethod
    def url(self) -> str:
        """Base URL of the gateway's inference listener, e.g. ``http://127.0.0.1:8080``."""

    @property
    @abstractmethod
    def admin_url(self) -> str:
        """Base URL of the gateway's admin listener, e.g. ``http://127.0.0.1:8081``."""

    def token(self) -> str:
        """The admin token this client sends.

        Raises:
            GatewayError: no token is configured (the message says where to put one).
        """
        token = (self.admin_token or os.environ.get(ADMIN_TOKEN_ENV, "")).strip()
        if not token:
            raise GatewayError(
                "no admin token for the gateway; rule: its admin API needs a bearer token; fix: "
                f"set {ADMIN_TOKEN_ENV} (from the secret the gateway was started with) or pass "
                "admin_token="
            )
        return token

    @property
    def host_port(self) -> str:
        """``host:port`` of the gateway, as ``tritonclient.http.InferenceServerClient`` wants."""
        return self.url.split("://", 1)[1]

    # ---- admin API ------------------------------------------------------------------------

    def admin_urls(self) -> list[str]:
        """Every replica's admin base URL (one for a single gateway)."""
        return [self.admin_url]

    def _call(self, method: str, path: str, body: object = None, *, base: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode()
        base = base or self.admin_url
        request = urllib.request.Request(f"{base}{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {self.token()}")
        request.add_header(ACTOR_HEADER, self.actor or default_actor())
        try:
            with _NO_PROXY.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                message = text
            if exc.code == 400 and path.startswith("/admin/routes/"):
                raise RouteError(message) from None
            raise GatewayError(
                f"gateway admin {base} answered {method} {path} with HTTP {exc.code}: {message}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise GatewayError(
                f"gateway admin {base} is unreachable for {method} {path} ({exc}); start it "
                "(GatewayServer.start()) or fix its admin URL"
            ) from None
        return json.loads(raw) if raw else None

    def health(self) -> bool:
        """Whether the gateway answers ``/v2/health/live``."""
        try:
            with _NO_PROXY.open(f"{self.url}/v2/health/live", timeout=2.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, GatewayError):
            return False

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the gateway reaches the model behind a public name, pinned to ``version``
        (``GET /v2/models/{name}[/versions/{v}]/ready``: the gateway asks its upstream).

        Returns:
            True when the gateway answers 200; False when it answers otherwise or is down.
        """
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/ready"
        try:
            with _NO_PROXY.open(f"{self.url}{path}", timeout=min(self.timeout_s, 10.0)) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError, GatewayError):
            return False

    def set_route(self, name: str, route: Mapping[str, Any]) -> dict[str, Any]:
        """Set the routing table of one public model (``PUT /admin/routes/{name}``).

        Args:
            name: public model (pipeline) name.
            route: ``{"mode", "champion", "challenger", "weight", "shadow_fraction", "active"}``
                (see :class:`lockgate.gateway.app.Route`).

        Returns:
            The normalised route the gateway stored.

        Raises:
            RouteError: the gateway refused the route (the message says why).
            GatewayError: the gateway is unreachable or refused otherwise (e.g. a version is
                not served upstream: HTTP 409).
        """
        result = self._call("PUT", f"/admin/routes/{name}", dict(route))
        return dict(result["route"])

    def routes(self) -> dict[str, dict[str, Any]]:
        """All routing tables, by public model name."""
        return dict(self._call("GET", "/admin/routes")["routes"])

    def delete_route(self, name: str) -> None:
        """Remove a public model's route (its requests then get 404)."""
        self._call("DELETE", f"/admin/routes/{name}")

    def stats(self, name: str) -> AdminStats:
        """Per-version statistics of a public model since the last reset (``/admin/stats``);
        with several replicas, every replica's merged (:func:`lockgate.gateway.replicas.merge_stats`).

        Raises:
            GatewayError: a replica is unreachable or refuses (a partial count would judge a
                canary on part of its traffic).
        """
        path = f"/admin/stats/{name}"
        answers = [self._call("GET", path, base=base) for base in self.admin_urls()]
        return cast("AdminStats", merge_stats(answers) if len(answers) > 1 else dict(answers[0]))

    def reset_stats(self, name: str) -> dict[str, Any]:
        """Restart the statistics window of a public model (on every replica)."""
        answers = [
            self._call("POST", f"/admin/stats/{name}/reset", base=base)
            for base in self.admin_urls()
        ]
        return dict(answers[-1]) | {"replicas": len(answers)}

    def roll_log(self) -> dict[str, int]:
        """Close the active WAL segment and roll it to Parquet now (``POST /admin/log/roll``),
        on every replica.

        Returns:
            ``{"segments": rolled, "records": rolled}`` (summed over the replicas).
        """
        total = {"segments": 0, "records": 0}
        for base in self.admin_urls():
            rolled = dict(self._call("POST", "/admin/log/roll", base=base))
            total = {k: total[k] + int(rolled.get(k) or 0) for k in total}
        return total

    def metrics(self) -> str:
        """The Prometheus text exposition of ``/metrics``."""
        try:
            with _NO_PROXY.open(f"{self.url}/metrics", timeout=self.timeout_s) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, OSError) as exc:
            raise GatewayError(f"gateway {self.url} is unreachable for /metrics ({exc})") from None


class RemoteGateway(Gateway):
    """A gateway run elsewhere (a Kubernetes service), one replica or several; no process
    management.

    Routes are set on the first replica (replicas share them through the state database);
    statistics are read from every replica and merged, and resets and log rolls go to every
    replica (:mod:`lockgate.gateway.replicas`).

    Attributes:
        gateway_url: ``http(s)://host:port`` or ``host:port`` of the gateway's inference port.
        gateway_admin_url: the same for its admin port (a service only the control plane
            reaches); several replicas separated by commas, or ``http+dns://host:port`` for
            every address of a headless Service; None: ``$LOCKGATE_GATEWAY_ADMIN_URL``.
    """

    gateway_url: str
    gateway_admin_url: str | None = None

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return _http_url(self.gateway_url)

    @property
    def admin_url(self) -> str:
        """Base URL of the (first) replica's admin listener."""
        return self.admin_urls()[0]

    def admin_urls(self) -> list[str]:
        """Every replica's admin base URL (resolved on each call: replicas come and go)."""
        url = self.gateway_admin_url or os.environ.get("LOCKGATE_GATEWAY_ADMIN_URL", "")
        if not url.strip():
            raise GatewayError(
                f"no admin URL for the gateway {self.url}; rule: its admin API listens on its "
                "own port; fix: set LOCKGATE_GATEWAY_ADMIN_URL or gateway_admin_url="
            )
        return admin_endpoints(url)


_IDENTITY = "lockgate.gateway.app"
"""What a gateway's command line contains (``python -m lockgate.gateway.app``)."""


_CONFIG_FIELDS = (
    "durability",
    "upstream_timeout_s",
    "retry_challenger_on_champion",
    "segment_max_bytes",
    "segment_max_age_s",
    "verify_routes",
    "coalesce_inflight",
    "max_body_bytes",
    "prediction_log_url",
)
"""Settings a :class:`GatewayServer` passes to :class:`GatewayConfig` as they are."""


def _is_gateway(pid: int) -> bool:
    return cmdline_contains(pid, _IDENTITY)


class GatewayServer(Gateway, ManagedServer):
    """The gateway as a child process on 127.0.0.1 (development, tests, the demo).

    Attributes:
        state_dir: folder of ``routes.json``, the PID file, the ready file and the log.
        log_dir: folder of the prediction log.
        upstream_url: the KServe v2 model server (``host:port`` or ``http://host:port``).
        port: port to bind on 127.0.0.1 (0: a free one, chosen by the gateway itself).
        admin_port: port of the admin listener on 127.0.0.1 (0: a free one).
        audit_path: the audit log every admin change is appended to; None:
            ``<state_dir>/audit/audit.jsonl`` (its witness key ``<state_dir>/keys/signing.key``
            unless ``$LOCKGATE_SIGNING_KEY`` is set).
        durability: ``fsync`` (fdatasync before answering) or ``flush`` (OS write only).
        upstream_timeout_s: timeout of one upstream inference call.
        retry_challenger_on_champion: answer failed canary challenger requests from the champion.
        segment_max_bytes: WAL segment size that triggers a Parquet roll.
        segment_max_age_s: WAL segment age that triggers a Parquet roll.
        verify_routes: refuse routes naming versions the upstream does not serve.
        coalesce_inflight: upstream calls in flight per model version before further requests
            are merged into one call (0: never; see :mod:`lockgate.gateway.coalesce`).
        model_repository: the Triton model repository the versions were written to; with it,
            clients send named features and the gateway encodes them with each version's
            ``wire.json`` (:mod:`lockgate.gateway.named_inputs`). None: clients send ``INPUT__0``.
        max_body_bytes: largest request body, also after gzip/deflate decompression (413).
        state_url: the PostgreSQL state database replicas share: routes, the routing key and
            the admin audit chain (``gateway``) live there instead of under ``state_dir`` and
            ``audit_path`` (passed to the process in ``$LOCKGATE_STATE_DB_URL``, never on its
            command line); None: ``$LOCKGATE_STATE_DB_URL`` when this process has it, else files.
        prediction_log_url: object storage the rolled Parquet parts are exported to.
        online_features: the JSON file of the models whose clients may send entity keys
            instead of features (:mod:`lockgate.gateway.online_features`).
        max_connections, max_admin_connections, max_url_bytes, max_header_bytes,
            header_timeout_s, body_timeout_s, keepalive_timeout_s: the HTTP server's limits
            (:class:`lockgate.gateway.app.ServerLimits`: 503 or the oldest idle connection closed
            at each listener's cap, 414, 431, 408).
        startup_timeout_s: how long :meth:`start` waits for the gateway to listen.
        stop_timeout_s: how long :meth:`stop` waits after SIGTERM before SIGKILL.
    """

    state_dir: str
    log_dir: str
    upstream_url: str
    port: int = 0
    admin_port: int = 0
    audit_path: str | None = None
    durability: str = "fsync"
    upstream_timeout_s: float = 30.0
    retry_challenger_on_champion: bool = True
    segment_max_bytes: int = 64 << 20
    segment_max_age_s: float = 60.0
    verify_routes: bool = True
    coalesce_inflight: int = Field(default=2, ge=0)
    model_repository: str | None = None
    max_body_bytes: int = Field(default=64 << 20, ge=1024)
    state_url: str | None = None
    prediction_log_url: str | None = None
    online_features: str | None = None
    max_connections: int = Field(default=4096, ge=1)
    max_admin_connections: int = Field(default=64, ge=1)
    max_url_bytes: int = Field(default=8192, ge=256)
    max_header_bytes: int = Field(default=32768, ge=1024)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
    startup_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0

    process_name: ClassVar[str] = "gateway"
    process_identity: ClassVar[str] = _IDENTITY

    _url: str | None = PrivateAttr(default=None)

    # ---- files and addresses --------------------------------------------------------------

    @property
    def files_dir(self) -> Path:
        """``state_dir``: the PID file ``gateway.pid`` and the log ``gateway.log`` are there."""
        return Path(self.state_dir)

    @property
    def ready_file(self) -> Path:
        """``<state_dir>/gateway.ready.json``: ``{pid, port, url}`` of the listening gateway."""
        return Path(self.state_dir) / _READY_FILE

    @property
    def token_file(self) -> Path:
        """``<state_dir>/admin.token`` (mode 0600): the generated admin token."""
        return Path(self.state_dir) / _TOKEN_FILE

    @property
    def shared_state_url(self) -> str | None:
        """``state_url``, else an inherited ``$LOCKGATE_STATE_DB_URL`` (None: files)."""
        return self.state_url or os.environ.get(SHARED_STATE_ENV, "").strip() or None

    @property
    def audit_file(self) -> Path:
        """The audit log the gateway appends admin changes to."""
        if self.audit_path:
            return Path(self.audit_path)
        return Path(self.state_dir) / "audit" / "audit.jsonl"

    def token(self) -> str:
        """``admin_token`` if given, else the token in ``admin.token`` (made by :meth:`start`)."""
        if self.admin_token:
            return self.admin_token.strip()
        try:
            token = self.token_file.read_text().strip()
        except OSError:
            token = ""
        if not token:
            raise GatewayError(
                f"no admin token in {self.token_file}; rule: the local gateway generates it at "
                "start; fix: start it (`lockgate serve start`) or pass admin_token="
            )
        return token

    def _ensure_token_file(self) -> None:
        """Create ``admin.token`` (0600, random) unless it holds a token; exclusive, so two
        processes starting at once agree on one token."""
        path = self.token_file
        with contextlib.suppress(OSError):
            if path.read_text().strip():
                os.chmod(path, 0o600)
                return
        # empty or unreadable: replace it; missing: the first writer wins
        atomic_write(path, secrets.token_urlsafe(32) + "\n", mode=0o600, replace=path.exists())

    @property
    def pid(self) -> int | None:
        """PID of the running gateway (started here or by another process), or None."""
        if self.started_process is not None:
            return self.started_process.pid if self.started_process.poll() is None else None
        info = self.ready_info()
        return int(info["pid"]) if info else None

    @property
    def running(self) -> bool:
        """Whether the gateway of this ``state_dir`` is alive."""
        return self.pid is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; also found from the ready file when another process
        started the gateway (Dagster runs steps in their own processes)."""
        if (
            self._url is not None
            and self.started_process is not None
            and self.started_process.poll() is None
        ):
            return self._url
        info = self.ready_info()
        if info is None:
            raise GatewayError(
                f"the gateway of {self.state_dir} is not running; rule: its address exists only "
                "after start(); fix: call start() (or use it as a context manager)"
            )
        return str(info["url"])

    @property
    def admin_url(self) -> str:
        """``http://127.0.0.1:<admin port>`` from the ready file."""
        info = self.ready_info()
        if info is None or not info.get("admin_url"):
            raise GatewayError(
                f"the gateway of {self.state_dir} is not running; rule: its admin address exists "
                "only after start(); fix: call start() (or use it as a context manager)"
            )
        return str(info["admin_url"])

    def ready_info(self) -> dict[str, Any] | None:
        """The ready file's ``{pid, port, url, admin_port, admin_url}`` while that PID is a live
        gateway (None otherwise)."""
        try:
            info = json.loads(self.ready_file.read_text())
            pid = int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return info if _is_gateway(pid) else None

    # ---- process --------------------------------------------------------------------------

    def config(self) -> GatewayConfig:
        """The gateway's settings (paths resolved): what :meth:`command` passes it."""
        fields = {k: getattr(self, k) for k in _CONFIG_FIELDS}
        return GatewayConfig(
            **fields,
            state_dir=Path(self.state_dir).resolve(),
            log_dir=Path(self.log_dir).resolve(),
            upstream_url=_http_url(self.upstream_url),
            model_repository=(
                None
                if not self.model_repository
                else self.model_repository
                if "://" in self.model_repository
                else Path(self.model_repository).resolve()
            ),
            online_features=(
                Path(self.online_features).resolve() if self.online_features else None
            ),
            limits=ServerLimits(**{k: getattr(self, k) for k in SERVER_LIMIT_FIELDS}),
        )

    def command(self) -> list[str]:
        """The command line that runs the gateway."""
        cmd = [sys.executable, "-m", "lockgate.gateway.app", *self.config().to_argv()]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--ready-file", str(self.ready_file.resolve())]
        cmd += ["--admin-host", "127.0.0.1", "--admin-port", str(self.admin_port)]
        if self.shared_state_url:
            cmd += ["--audit-url-env", SHARED_STATE_ENV]
        else:
            cmd += ["--audit-log", str(self.audit_file.resolve())]
        if self.admin_token:
            cmd += ["--admin-token-env", ADMIN_TOKEN_ENV]
        else:
            cmd += ["--admin-token-file", str(self.token_file.resolve())]
        return cmd

    def _check_pid_file(self) -> None:
        pid = self.managed_process.recorded_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return
        if _is_gateway(pid):
            raise GatewayError(
                f"{self.pid_file} names PID {pid}, a gateway that is still running; rule: one "
                f"gateway per state_dir; fix: stop it (`kill {pid}`) or use another state_dir"
            )
        self.pid_file.unlink(missing_ok=True)  # left by a crash

    def start(self) -> Self:
        """Start the gateway and wait until it answers ``/v2/health/live``.

        Returns:
            ``self``.

        Raises:
            GatewayError: another gateway runs from ``state_dir``, or this one did not come up
                within ``startup_timeout_s`` (the message has the log tail).
        """
        if self.started_process is not None and self.started_process.poll() is None:
            return self
        state = Path(self.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        self._check_pid_file()
        self.ready_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env.pop(ADMIN_TOKEN_ENV, None)
        if self.shared_state_url:
            env[SHARED_STATE_ENV] = self.shared_state_url
        if self.admin_token:
            env[ADMIN_TOKEN_ENV] = self.admin_token
        else:
            self._ensure_token_file()
        if not self.shared_state_url:
            self.audit_file.parent.mkdir(parents=True, exist_ok=True)
        command = self.command()
        banner = f"==== lockgate start {time.ctime()}: {' '.join(command)}"
        process = self.managed_process.start(command, env=env, banner=banner)

        def ready() -> bool:
            info = self.ready_info()
            if info is None or int(info["pid"]) != process.pid:
                return False
            self._url = str(info["url"])
            return self.health()

        if self.managed_process.wait_ready(
            ready, timeout_s=self.startup_timeout_s, interval_s=0.02
        ):
            return self
        tail = self.log_tail(25)
        self._terminate(force=True)
        raise GatewayError(
            f"the gateway for {self.state_dir} did not come up within {self.startup_timeout_s:g} "
            f"s; rule: it binds 127.0.0.1 and recovers its prediction log before listening; fix: "
            f"read {self.log_file}; its tail:\n{tail}"
        )

    def _terminate(self, *, force: bool) -> None:
        # not started here: the PID the ready file names, signalled only while it is a gateway
        pid = self.pid if self.started_process is None else None
        if self.started_process is None and pid is None:
            return
        self.managed_process.stop(timeout_s=self.stop_timeout_s, force=force, sweep_s=None, pid=pid)
        self._url = None

    def stop(self) -> None:
        """Stop the gateway: SIGTERM (it drains, commits and rolls its log), then SIGKILL after
        ``stop_timeout_s``. Removes the PID and ready files. A no-op when not running."""
        self._terminate(force=False)
        self.pid_file.unlink(missing_ok=True)
        self.ready_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the gateway at once, simulating a crash (tests, drills); files stay."""
        self._terminate(force=True)
