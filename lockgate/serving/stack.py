"""The serving stack: the Triton model server and the gateway in front of it, as one object
(plain classes; :mod:`lockgate.resources.serving` wraps them as Dagster resources).

Locally both run as child processes on 127.0.0.1 that outlive the Dagster run that started them
(so the canary sensor and later runs attach to them through their PID/state files);
:meth:`ServingStack.ensure` (re)starts whichever is down and points the gateway at Triton's
current address. Their ports are stable: configured, or chosen once and kept in
``ports.json``, so a restarted Triton or gateway answers where clients were told to call. What
was served is restored by :func:`lockgate.sensors.canary.restore_serving` (``lockgate serve
start``, every controller tick); :meth:`ServingStack.probe` says what actually answers. In
production both are services (:class:`RemoteServingStack`).

Local layout under ``root``::

    repo/         Triton model repository (one folder per model version, written atomically)
    ports.json    the ports kept across restarts (Triton http, grpc, metrics; gateway, its admin)
    triton/       tritonserver PID, state, log and model-control secret (0600)
    gateway/      gateway routes.json, PID, ready file, log and admin.token (0600)
    audit/        gateway.jsonl: the gateway's audit log of admin changes (hash-chained)
    predictions/  the gateway's prediction log (WAL + Parquet)
    canary/       canary controller state per pipeline (PostgreSQL instead when ``state_url``)
    sandbox/      repositories and servers of infra validation (temporary)
"""

from __future__ import annotations

import json
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from lockgate._util.fs import atomic_write
from lockgate._util.process import stop_process_group
from lockgate.errors import LockgateError
from lockgate.gateway.process import Gateway, GatewayServer, RemoteGateway
from lockgate.serving.triton_binary import free_port, port_is_free
from lockgate.serving.triton_server import LocalTritonServer, RemoteTritonServer, TritonServer

if TYPE_CHECKING:
    from lockgate.serving.canary_state import CanaryStateRecord, CanaryStateStore

__all__ = ["LocalServingStack", "RemoteServingStack", "ServingStack"]


class ServingStack(BaseModel, ABC):
    """Triton + gateway + the state the canary controller keeps between ticks.

    Attributes:
        state_url: The PostgreSQL state database that holds the canary state (production:
            ``$LOCKGATE_STATE_DB_URL``, shared by every controller); None keeps it in files
            under :attr:`state_dir`.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    state_url: str | None = None

    @abstractmethod
    def triton(self) -> TritonServer:
        """The model server that serves live traffic."""

    @abstractmethod
    def gateway(self, *, actor: str | None = None) -> Gateway:
        """The gateway every client talks to, as the admin client of ``actor`` (who acts in
        the audit log; None: ``user@host (program)``)."""

    @abstractmethod
    def ensure(self) -> dict[str, Any]:
        """Make sure both are up; returns what was (re)started."""

    @property
    @abstractmethod
    def repo_dir(self) -> Path:
        """The live model repository."""

    @property
    @abstractmethod
    def state_dir(self) -> Path:
        """Where canary state files live."""

    @property
    @abstractmethod
    def prediction_log_dir(self) -> Path | str:
        """The gateway's prediction log: its folder, or the object-store URL (``s3://...``)
        several replicas export their rolled parts to."""

    @abstractmethod
    def sandbox(self) -> LocalTritonServer:
        """A fresh, unstarted tritonserver with its own empty repository, for infra validation."""

    def probe(self) -> list[dict[str, Any]]:
        """Whether every version a gateway route names answers, through both hops.

        For each route and each of its versions: Triton runs one real inference
        (:meth:`TritonServer.probe`: a wire row of missing values, straight to Triton, so it
        never reaches the gateway's statistics or prediction log) and the gateway reaches the
        version upstream (:meth:`Gateway.model_ready`, pinned to the version).

        Returns:
            ``[{"pipeline", "role" ("champion" | "challenger"), "version", "answering",
            "ms", "problem"}]``, sorted by pipeline.
        """
        from lockgate.serving.triton_config import triton_model_name

        gateway, triton = self.gateway(), self.triton()
        try:
            routes = gateway.routes()
        except LockgateError:
            return []
        found: list[dict[str, Any]] = []
        for pipeline, route in sorted(routes.items()):
            for role in ("champion", "challenger"):
                version = route.get(role)
                if not version:
                    continue
                row: dict[str, Any] = {
                    "pipeline": pipeline,
                    "role": role,
                    "version": str(version),
                    "answering": False,
                    "ms": None,
                    "problem": None,
                }
                try:
                    row["ms"] = round(triton.probe(triton_model_name(pipeline, str(version))), 3)
                except LockgateError as exc:
                    row["problem"] = str(exc)
                else:
                    if gateway.model_ready(pipeline, str(version)):
                        row["answering"] = True
                    else:
                        row["problem"] = (
                            f"Triton answers, but the gateway at {gateway.url} does not reach "
                            f"{pipeline}-{version} upstream; fix: `lockgate serve start`"
                        )
                found.append(row)
        return found

    def canary_store(self) -> CanaryStateStore:
        """Where the canary state of every pipeline persists: PostgreSQL when ``state_url`` is
        set, else one file per pipeline in :attr:`state_dir`."""
        from lockgate.serving.canary_state import CanaryStateStore
        from lockgate.state.files import FileSwapStore
        from lockgate.state.postgres import PostgresSwapStore

        if self.state_url:
            shared = PostgresSwapStore(url=self.state_url, namespace="canary")
            return CanaryStateStore(shared, where=shared.uri(""))
        return CanaryStateStore(FileSwapStore(root=str(self.state_dir)), where=str(self.state_dir))

    def canary_state(self, pipeline: str) -> CanaryStateRecord | None:
        """The persisted canary state of ``pipeline`` (None: never started)."""
        return self.canary_store().get(pipeline)

    def save_canary_state(
        self,
        pipeline: str,
        state: Mapping[str, Any],
        *,
        expected: Mapping[str, Any] | EllipsisType | None = ...,
    ) -> bool:
        """Persist the canary state atomically (a daemon restart resumes from it).

        Args:
            expected: The record the caller read (None: there was none). When given, the state
                is stored only if the record is still that one: of two controllers that tick
                at once, exactly one records its transition. Omitted: stored unconditionally.

        Returns:
            True when stored; False when ``expected`` was given and the record had changed.
        """
        store = self.canary_store()
        if isinstance(expected, EllipsisType):
            store.save(pipeline, state)
            return True
        return store.swap(pipeline, expected, state)

    @contextmanager
    def canary_lease(self, pipeline: str) -> Iterator[bool]:
        """Try to hold the right to tick ``pipeline``'s canary for the ``with`` block; yield
        whether it is held (never waits).

        One controller at a time drives a rollout: a second one that ticks meanwhile gets False
        and leaves it alone. PostgreSQL's advisory lock when ``state_url`` is set, else a file
        lock in :attr:`state_dir`; either ends with its holder, even one that crashed. A holder
        whose database connection died loses the lease mid-tick, so the transition itself is
        still claimed with ``save_canary_state(..., expected=...)``.
        """
        if self.state_url:
            from lockgate.state.postgres import advisory_lease

            with advisory_lease(self.state_url, f"lockgate-canary:{pipeline}") as held:
                yield held
        else:
            from lockgate.state.files import file_lease

            with file_lease(self.state_dir / f".{pipeline}.tick.lock") as held:
                yield held

    def canary_pipelines(self) -> list[str]:
        """The pipelines that have a persisted canary state, sorted."""
        return self.canary_store().pipelines()


def _port_or_free(port: int, taken: dict[str, int]) -> int:
    """``port`` unless it is 0 or among ``taken``'s ports; else a free port not among them."""
    while not port or port in taken.values():
        port = free_port()
    return port


class LocalServingStack(ServingStack):
    """Both servers as local child processes under ``root`` (the embedded default).

    Attributes:
        root: folder of everything (see the module doc).
        durability: the gateway's prediction-log durability (``fsync`` or ``flush``).
        triton_http_port: Triton's HTTP port on 127.0.0.1; 0: chosen once, kept in
            ``ports.json``.
        triton_grpc_port: Triton's gRPC port (0: chosen once, kept).
        triton_metrics_port: Triton's metrics port (0: chosen once, kept).
        gateway_port: the gateway's port (0: chosen once, kept).
        gateway_admin_port: the gateway's admin port on 127.0.0.1 (0: chosen once, kept).
        audit_path: the audit log the gateway appends admin changes to; None:
            ``<root>/audit/gateway.jsonl`` (its witness signed with ``$LOCKGATE_SIGNING_KEY``,
            else the key two folders above the log, :class:`lockgate.audit.log.AuditLog`'s rule:
            ``<root>/keys/signing.key``; ``<home>/audit/gateway.jsonl`` uses the home's key).

    The gateway's admin token is generated at its first start into ``<root>/gateway/admin.token``
    (mode 0600); every lockgate client of this stack (the canary controller, ``lockgate serve``,
    the sensors) reads it from there through :meth:`gateway`.
    """

    root: str
    durability: str = "fsync"
    triton_http_port: int = Field(default=0, ge=0, le=65535)
    triton_grpc_port: int = Field(default=0, ge=0, le=65535)
    triton_metrics_port: int = Field(default=0, ge=0, le=65535)
    gateway_port: int = Field(default=0, ge=0, le=65535)
    gateway_admin_port: int = Field(default=0, ge=0, le=65535)
    audit_path: str | None = None

    @property
    def repo_dir(self) -> Path:
        return Path(self.root) / "repo"

    @property
    def state_dir(self) -> Path:
        return Path(self.root) / "canary"

    @property
    def prediction_log_dir(self) -> Path:
        return Path(self.root) / "predictions"

    @property
    def ports_file(self) -> Path:
        """``<root>/ports.json``: the ports chosen once and kept across restarts."""
        return Path(self.root) / "ports.json"

    def ports(self) -> dict[str, int]:
        """``triton_http``, ``triton_grpc``, ``triton_metrics``, ``gateway`` and ``gateway_admin``
        ports.

        Configured ports win; the others are read from ``ports.json``, chosen (free ports) and
        written there the first time. The file is created exclusively, so two processes
        starting the stack at once agree on the same ports.
        """
        configured = self._configured_ports()
        kept = self._kept_ports()
        if kept is not None and "gateway_admin" not in kept:  # kept before the admin listener
            port = _port_or_free(self.gateway_admin_port, kept)
            kept = self._write_ports({**kept, "gateway_admin": port}, replace=True)
        if kept is None:
            chosen: dict[str, int] = {}
            for key, port in configured.items():
                chosen[key] = _port_or_free(port, chosen)
            kept = self._write_ports(chosen)
        return {k: v or kept[k] for k, v in configured.items()}

    def _configured_ports(self) -> dict[str, int]:
        return {
            "triton_http": self.triton_http_port,
            "triton_grpc": self.triton_grpc_port,
            "triton_metrics": self.triton_metrics_port,
            "gateway": self.gateway_port,
            "gateway_admin": self.gateway_admin_port,
        }

    def _kept_ports(self) -> dict[str, int] | None:
        try:
            raw = json.loads(self.ports_file.read_text())
            kept = {
                k: int(raw[k]) for k in ("triton_http", "triton_grpc", "triton_metrics", "gateway")
            }
            if "gateway_admin" in raw:
                kept["gateway_admin"] = int(raw["gateway_admin"])
            return kept
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_ports(self, ports: dict[str, int], *, replace: bool = False) -> dict[str, int]:
        text = json.dumps(ports, sort_keys=True) + "\n"
        # not replace: exclusive, the first writer wins
        if atomic_write(self.ports_file, text, durable=False, mode=0o600, replace=replace):
            return ports
        return self._kept_ports() or ports

    def _repick_busy_ports(self, *keys: str) -> None:
        """Kept (not configured) ports among ``keys`` that something else took meanwhile are
        chosen again, so a start does not fail on a port lockgate picked by itself."""
        kept = self._kept_ports()
        if kept is None:
            return
        configured = self._configured_ports()
        busy = [k for k in keys if not configured[k] and not port_is_free(kept[k])]
        if busy:
            for key in busy:
                kept[key] = free_port()
            self._write_ports(kept, replace=True)

    def triton(self) -> LocalTritonServer:
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        ports = self.ports()
        return LocalTritonServer(
            repo_dir=str(self.repo_dir),
            work_dir=str(Path(self.root) / "triton"),
            fixed_http_port=ports["triton_http"],
            fixed_grpc_port=ports["triton_grpc"],
            fixed_metrics_port=ports["triton_metrics"],
        )

    def _gateway(self, upstream: str, actor: str | None = None) -> GatewayServer:
        return GatewayServer(
            actor=actor,
            state_dir=str(Path(self.root) / "gateway"),
            log_dir=str(self.prediction_log_dir),
            upstream_url=upstream,
            durability=self.durability,
            model_repository=str(self.repo_dir),  # each version's wire.json: named features
            port=self.ports()["gateway"],
            admin_port=self.ports()["gateway_admin"],
            audit_path=self.audit_path or str(Path(self.root) / "audit" / "gateway.jsonl"),
        )

    def gateway(self, *, actor: str | None = None) -> GatewayServer:
        return self._gateway(self._upstream_file_url() or "127.0.0.1:1", actor)

    def _upstream_file(self) -> Path:
        return Path(self.root) / "gateway" / "upstream.json"

    def _upstream_file_url(self) -> str | None:
        try:
            return str(json.loads(self._upstream_file().read_text())["url"])
        except (OSError, ValueError, KeyError):
            return None

    def ensure(self) -> dict[str, Any]:
        started: dict[str, Any] = {"triton": False, "gateway": False, "reaped_stubs": 0}
        triton = self.triton()
        if not (triton.pid and triton.health()):  # started here, or by another process
            reaped = 0
            if triton.pid is None:  # crashed or stopped: its stubs go first, then its ports
                reaped = triton.reap_orphaned_stubs()
                self._repick_busy_ports("triton_http", "triton_grpc", "triton_metrics")
                triton = self.triton()
            triton.start()
            started["triton"] = True
            started["reaped_stubs"] = reaped + triton.reaped_stubs
        upstream = triton.url
        gateway = self._gateway(upstream)
        stale = self._upstream_file_url() != upstream  # pointed at a Triton that is gone
        stale = stale or not (gateway.ready_info() or {}).get("admin_url")  # no admin listener
        if gateway.running and stale and gateway.pid:
            stop_process_group(gateway.pid)  # restart it
        if not (gateway.running and gateway.health()):
            if not gateway.running:
                self._repick_busy_ports("gateway", "gateway_admin")
                gateway = self._gateway(upstream)
            gateway.start()
            started["gateway"] = True
            self._upstream_file().write_text(json.dumps({"url": upstream}))
        started["triton_url"], started["gateway_url"] = upstream, gateway.url
        return started

    def sandbox(self) -> LocalTritonServer:
        base = Path(self.root) / "sandbox"
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="sandbox-", dir=base))
        (work / "repo").mkdir()
        return LocalTritonServer(repo_dir=str(work / "repo"), work_dir=str(work / "server"))

    def stop(self) -> None:
        """Stop the gateway, then Triton (``lockgate serve stop``); reap the stubs a crashed
        Triton left behind. The ports stay kept for the next start."""
        for server in (self.gateway(), self.triton()):
            if server.pid:
                stop_process_group(server.pid)
        self.triton().reap_orphaned_stubs()


class RemoteServingStack(ServingStack):
    """Services run elsewhere (Kubernetes): nothing to start, state on a shared volume.

    The gateway's admin API is its own service (``gateway_admin_url``, None:
    ``$LOCKGATE_GATEWAY_ADMIN_URL``) and needs the admin token (``gateway_admin_token``, None:
    ``$LOCKGATE_GATEWAY_ADMIN_TOKEN``; give both from a secret, e.g. ``dg.EnvVar``). Triton's
    model-control calls send ``triton_control_header`` with its secret (None:
    ``$LOCKGATE_TRITON_CONTROL_SECRET``) when Triton runs with ``--http-restricted-api``.
    """

    triton_url: str
    gateway_url: str
    model_repository: str
    gateway_admin_url: str | None = None
    gateway_admin_token: str | None = None
    canary_state_dir: str
    predictions_dir: str

    @property
    def repo_dir(self) -> Path:
        return Path(self.model_repository)

    @property
    def state_dir(self) -> Path:
        return Path(self.canary_state_dir)

    @property
    def prediction_log_dir(self) -> Path | str:
        url = self.predictions_dir.strip()
        return url.rstrip("/") if "://" in url else Path(url)

    def triton(self) -> RemoteTritonServer:
        return RemoteTritonServer(server_url=self.triton_url, repo_dir=self.model_repository)

    def gateway(self, *, actor: str | None = None) -> RemoteGateway:
        return RemoteGateway(
            actor=actor,
            gateway_url=self.gateway_url,
            gateway_admin_url=self.gateway_admin_url,
            admin_token=self.gateway_admin_token,
        )

    def ensure(self) -> dict[str, Any]:
        return {"triton": False, "gateway": False}

    def sandbox(self) -> LocalTritonServer:
        work = Path(tempfile.mkdtemp(prefix="lockgate-sandbox-"))
        (work / "repo").mkdir()
        return LocalTritonServer(repo_dir=str(work / "repo"), work_dir=str(work / "server"))
