"""The serving stack: the Triton model server and the gateway in front of it, as one resource.

Locally both run as child processes on 127.0.0.1 that outlive the Dagster run that started them
(so the canary sensor and later runs attach to them through their PID/state files);
:meth:`ServingStack.ensure` (re)starts whichever is down and points the gateway at Triton's
current address. In production both are services (:class:`RemoteServingStack`).

Local layout under ``root``::

    repo/         Triton model repository (one folder per model version, written atomically)
    triton/       tritonserver PID, state and log
    gateway/      gateway routes.json, PID, ready file and log
    predictions/  the gateway's prediction log (WAL + Parquet)
    canary/       canary controller state per pipeline
    sandbox/      repositories and servers of infra validation (temporary)
"""

from __future__ import annotations

import json
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import dagster as dg

from lockgate.resources._process import stop_process_group
from lockgate.resources.gateway import Gateway, GatewayServer, RemoteGateway
from lockgate.resources.triton import LocalTritonServer, RemoteTritonServer, TritonServer

__all__ = ["LocalServingStack", "RemoteServingStack", "ServingStack"]


class ServingStack(dg.ConfigurableResource, ABC):
    """Triton + gateway + the state the canary controller keeps between ticks."""

    @abstractmethod
    def triton(self) -> TritonServer:
        """The model server that serves live traffic."""

    @abstractmethod
    def gateway(self) -> Gateway:
        """The gateway every client talks to."""

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
    def prediction_log_dir(self) -> Path:
        """The gateway's prediction log."""

    @abstractmethod
    def sandbox(self) -> LocalTritonServer:
        """A fresh, unstarted tritonserver with its own empty repository, for infra validation."""

    def canary_state(self, pipeline: str) -> dict[str, Any] | None:
        """The persisted canary state of ``pipeline`` (None: never started)."""
        path = self.state_dir / f"{pipeline}.json"
        if not path.exists():
            return None
        state: dict[str, Any] = json.loads(path.read_text())
        return state

    def save_canary_state(self, pipeline: str, state: dict[str, Any]) -> None:
        """Persist the canary state atomically (a daemon restart resumes from it)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.state_dir)
        with os.fdopen(handle, "w") as out:
            json.dump(state, out, sort_keys=True, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.state_dir / f"{pipeline}.json")


class LocalServingStack(ServingStack):
    """Both servers as local child processes under ``root`` (the embedded default)."""

    root: str
    durability: str = "fsync"

    @property
    def repo_dir(self) -> Path:
        return Path(self.root) / "repo"

    @property
    def state_dir(self) -> Path:
        return Path(self.root) / "canary"

    @property
    def prediction_log_dir(self) -> Path:
        return Path(self.root) / "predictions"

    def triton(self) -> LocalTritonServer:
        self.repo_dir.mkdir(parents=True, exist_ok=True)
        return LocalTritonServer(
            repo_dir=str(self.repo_dir), work_dir=str(Path(self.root) / "triton")
        )

    def _gateway(self, upstream: str) -> GatewayServer:
        return GatewayServer(
            state_dir=str(Path(self.root) / "gateway"),
            log_dir=str(self.prediction_log_dir),
            upstream_url=upstream,
            durability=self.durability,
            model_repository=str(self.repo_dir),  # each version's wire.json: named features
        )

    def gateway(self) -> GatewayServer:
        return self._gateway(self._upstream_file_url() or "127.0.0.1:1")

    def _upstream_file(self) -> Path:
        return Path(self.root) / "gateway" / "upstream.json"

    def _upstream_file_url(self) -> str | None:
        try:
            return str(json.loads(self._upstream_file().read_text())["url"])
        except (OSError, ValueError, KeyError):
            return None

    def ensure(self) -> dict[str, Any]:
        started: dict[str, Any] = {"triton": False, "gateway": False}
        triton = self.triton()
        if not (triton.pid and triton.health()):  # started here, or by another process
            triton.start()
            started["triton"] = True
        upstream = triton.url
        gateway = self._gateway(upstream)
        if gateway.running and self._upstream_file_url() != upstream and gateway.pid:
            stop_process_group(gateway.pid)  # pointed at a Triton that is gone: restart it
        if not (gateway.running and gateway.health()):
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
        """Stop the gateway, then Triton (``lockgate serve stop``)."""
        for server in (self.gateway(), self.triton()):
            if server.pid:
                stop_process_group(server.pid)


class RemoteServingStack(ServingStack):
    """Services run elsewhere (Kubernetes): nothing to start, state on a shared volume."""

    triton_url: str
    gateway_url: str
    model_repository: str
    canary_state_dir: str
    predictions_dir: str

    @property
    def repo_dir(self) -> Path:
        return Path(self.model_repository)

    @property
    def state_dir(self) -> Path:
        return Path(self.canary_state_dir)

    @property
    def prediction_log_dir(self) -> Path:
        return Path(self.predictions_dir)

    def triton(self) -> RemoteTritonServer:
        return RemoteTritonServer(server_url=self.triton_url, repo_dir=self.model_repository)

    def gateway(self) -> RemoteGateway:
        return RemoteGateway(gateway_url=self.gateway_url)

    def ensure(self) -> dict[str, Any]:
        return {"triton": False, "gateway": False}

    def sandbox(self) -> LocalTritonServer:
        work = Path(tempfile.mkdtemp(prefix="lockgate-sandbox-"))
        (work / "repo").mkdir()
        return LocalTritonServer(repo_dir=str(work / "repo"), work_dir=str(work / "server"))
