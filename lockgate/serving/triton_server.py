"""Triton Inference Server: a local process for development, tests and the validation sandbox,
or a remote server in production (plain classes; :mod:`lockgate.resources.triton` wraps them as
Dagster resources).

:class:`TritonServer` (:mod:`lockgate.serving.triton_client`, re-exported here) speaks Triton's
HTTP API through ``tritonclient.http`` (explicit model control: ``load`` / ``unload`` /
``is_ready`` / ``loaded`` / ``infer`` / ``health``). :class:`LocalTritonServer` also runs the ``tritonserver`` binary shipped in the
``nvidia-pytriton`` wheel (python backend only); :class:`RemoteTritonServer` manages no process.

Model control is lockgate's alone: :class:`LocalTritonServer` runs Triton with its
model-repository API (load, unload, repository index) restricted, over HTTP
(``--http-restricted-api=model-repository:<header>=<secret>``) and gRPC
(``--grpc-restricted-protocol=...``), to requests that carry the header
``lockgate-model-control`` with a random secret kept in ``<work_dir>/model-control.secret``
(mode 0600); lockgate's own calls send it (:meth:`TritonServer.control_headers`), any other
client's load or unload is refused (inference, health and metadata stay open). A remote Triton
started the same way gets the secret from ``$LOCKGATE_TRITON_CONTROL_SECRET``.

Loads are verified: :meth:`TritonServer.load` runs the ``verify`` callable it is given before
Triton sees the model, and :func:`lockgate.serving.model_repository.load_version` passes
:func:`lockgate.serving.model_repository.verify_model_folder` (the folder re-hashed against the lock record).

What the local binary needs is set up by :mod:`lockgate.serving.triton_binary`.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import Field, PrivateAttr

from lockgate._util.fs import atomic_write
from lockgate._util.process import ManagedServer
from lockgate.serving.model_repository import ServingError
from lockgate.serving.triton_binary import (
    check_fixed_ports,
    check_shared_libpython,
    free_port,
    is_tritonserver,
    port_is_free,
    python_backends,
    reap_stubs,
    server_command,
    server_environment,
    wheel_tritonserver,
)
from lockgate.serving.triton_client import (
    CONTROL_HEADER,
    CONTROL_SECRET_ENV,
    RemoteTritonServer,
    TritonServer,
)

__all__ = [
    "CONTROL_HEADER",
    "CONTROL_SECRET_ENV",
    "LocalTritonServer",
    "RemoteTritonServer",
    "TritonServer",
    "port_is_free",
    "wheel_tritonserver",
]

_STATE_FILE = "tritonserver.json"
_CONTROL_FILE = "model-control.secret"


class LocalTritonServer(TritonServer, ManagedServer):
    """The wheel's ``tritonserver`` as a child process, bound to 127.0.0.1 on free ports.

    Explicit model control, ``--strict-readiness=false`` (one failed load does not make the
    whole server unready), ``--disable-auto-complete-config`` (configs are used as written).
    In ``work_dir``: ``tritonserver.pid`` (the PID), ``tritonserver.json`` (PID and ports),
    ``tritonserver.log`` (stdout and stderr, appended) and ``backends/`` (the private backends
    folder). The process leads its own process group, so :meth:`stop` and :meth:`kill` also end
    the python-backend stub processes it started.

    Attach: Dagster hands assets a fresh copy of a resource, so an object that did not start
    the server finds it through ``tritonserver.json`` (when that PID is a live tritonserver)
    and talks to it; :meth:`start` on such an object attaches instead of starting a second
    server. :meth:`stop` and :meth:`kill` act only on a process this object started.

    Attributes:
        repo_dir: The model repository: a folder (created when missing), or an object-store URL
            ``s3://bucket/prefix`` that Triton reads itself, with the ``repo_*`` credentials in
            its environment (see :class:`TritonServer`).
        work_dir: Folder for the PID, state and log files and the private backends folder.
        exit_timeout_s: ``--exit-timeout-secs``: how long shutdown waits for in-flight work.
        startup_timeout_s: How long :meth:`start` waits for the server to become ready.
        log_verbose: ``--log-verbose`` level.
        fixed_http_port: HTTP port on 127.0.0.1 (0: a free port chosen at each start).
        fixed_grpc_port: gRPC port on 127.0.0.1 (0: a free port chosen at each start).
        fixed_metrics_port: metrics port on 127.0.0.1 (0: a free port chosen at each start).
            A fixed port must be free: :meth:`start` refuses, naming it, when it is not.

    Crash leftovers: a server killed alone (SIGKILL, the OOM killer) leaves its python-backend
    stubs running in its process group, each holding a model in memory. :meth:`start` reaps the
    stubs of the server its stale PID file names before starting (``reaped_stubs`` says how
    many); :meth:`reap_orphaned_stubs` does it on demand.
    """

    repo_dir: str
    work_dir: str
    exit_timeout_s: int = 5
    startup_timeout_s: float = 60.0
    log_verbose: int = 0
    fixed_http_port: int = Field(default=0, ge=0, le=65535)
    fixed_grpc_port: int = Field(default=0, ge=0, le=65535)
    fixed_metrics_port: int = Field(default=0, ge=0, le=65535)

    process_name: ClassVar[str] = "tritonserver"
    process_identity: ClassVar[str] = "tritonserver"
    process_identity_argv0_only: ClassVar[bool] = True

    _ports: tuple[int, int, int] | None = PrivateAttr(default=None)
    _reaped: int = PrivateAttr(default=0)

    # ---- addresses -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``127.0.0.1:<http port>``; only while started (or attached)."""
        return f"127.0.0.1:{self._started_ports()[0]}"

    @property
    def grpc_port(self) -> int:
        """Port of the gRPC endpoint (127.0.0.1)."""
        return self._started_ports()[1]

    @property
    def metrics_port(self) -> int:
        """Port of the Prometheus metrics endpoint (127.0.0.1)."""
        return self._started_ports()[2]

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def running(self) -> bool:
        """Whether a server process started by this object is alive."""
        return self.managed_process.running

    @property
    def attached(self) -> bool:
        """Whether this object talks to a live server it did not start (see the class doc)."""
        return not self.running and self._live_state() is not None

    @property
    def pid(self) -> int | None:
        """PID of the server this object started or attached to, or None."""
        if self.managed_process.pid is not None:
            return self.managed_process.pid
        state = self._live_state()
        return int(state["pid"]) if state is not None else None

    @property
    def files_dir(self) -> Path:
        """``work_dir``: the PID file ``tritonserver.pid`` and the log ``tritonserver.log``
        (appended to by every start) are there."""
        return Path(self.work_dir)

    @property
    def state_file(self) -> Path:
        """``<work_dir>/tritonserver.json``: PID, ports and repository of the running server."""
        return Path(self.work_dir) / _STATE_FILE

    def _live_state(self) -> dict[str, Any] | None:
        """The state file's content when it names a live tritonserver (the PID file's)."""
        try:
            state = json.loads(self.state_file.read_text())
            pid = int(self.pid_file.read_text().strip())
            ports = (int(state["http_port"]), int(state["grpc_port"]), int(state["metrics_port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if state.get("pid") != pid or not is_tritonserver(pid):
            return None
        return dict(state, ports=ports)

    def _started_ports(self) -> tuple[int, int, int]:
        if self._ports is not None and self.running:
            return self._ports
        state = self._live_state()
        if state is not None:
            ports: tuple[int, int, int] = state["ports"]
            return ports
        raise ServingError(
            f"the local Triton server for {self.repo_dir} is not running (no live server in "
            f"{self.state_file}); rule: addresses exist only after start(); fix: call start() "
            "(or use it as a context manager)"
        )

    def _hint(self) -> str:
        return f"read {self.log_file}; its tail: {self.log_tail(12)!r}"

    @property
    def control_file(self) -> Path:
        """``<work_dir>/model-control.secret`` (mode 0600): the model-control secret."""
        return Path(self.work_dir) / _CONTROL_FILE

    def _control_secret(self) -> str | None:
        try:
            return self.control_file.read_text().strip() or None
        except OSError:
            return None

    def _ensure_control_secret(self) -> str:
        """The kept secret, made (random, 0600) when missing."""
        secret = self._control_secret()
        if secret is not None:
            return secret
        atomic_write(self.control_file, secrets.token_urlsafe(32) + "\n", durable=False, mode=0o600)
        secret = self._control_secret()
        assert secret is not None
        return secret

    # ---- process -------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """The environment the server runs with (``LD_LIBRARY_PATH``, ``PYTHONPATH`` set; for
        an ``s3://`` repository the configured AWS credentials)."""
        env = server_environment()
        repository = self.object_repository()
        if repository is not None:
            env.update(repository.environment())
        return env

    def _repository_location(self) -> str:
        """What ``--model-repository`` gets, and the state file records."""
        repository = self.object_repository()
        if repository is not None:
            return repository.triton_repository()
        return str(Path(self.repo_dir).resolve())

    def _backends(self) -> Path:
        """``<work_dir>/backends/python`` = the wheel's python backend + this Python's stub."""
        return python_backends(Path(self.work_dir))

    def _check_pid_file(self) -> None:
        pid = self.managed_process.recorded_pid()
        if pid is None:
            self._remove_state_files()
            return
        if is_tritonserver(pid):
            raise ServingError(
                f"{self.pid_file} names PID {pid}, a tritonserver that is still running, but "
                f"{self.state_file} does not describe it; rule: one server per work_dir; fix: "
                f"stop that server (`kill {pid}`) or use another work_dir"
            )
        self._reaped += reap_stubs(pid)
        self._remove_state_files()  # left by a crash

    @property
    def reaped_stubs(self) -> int:
        """Orphaned python-backend stubs this object has killed (see the class doc)."""
        return self._reaped

    def reap_orphaned_stubs(self) -> int:
        """Kills the python-backend stubs a crashed server of this ``work_dir`` left behind.

        Only when the PID file names a process that is no longer a tritonserver; only processes
        of its process group whose command line is the python-backend stub.

        Returns:
            How many stubs were killed.
        """
        pid = self.managed_process.recorded_pid()
        if pid is None:
            return 0
        if is_tritonserver(pid):
            return 0
        reaped = reap_stubs(pid)
        self._reaped += reaped
        return reaped

    def start(self) -> Self:
        """Starts the server and waits until it is live and ready.

        Returns:
            ``self``.

        Raises:
            ServingError: When another server runs from ``work_dir``, the wheel is missing, or
                the server does not become ready within ``startup_timeout_s`` (with the log
                tail).
        """
        if self.running:
            return self
        work = Path(self.work_dir)
        work.mkdir(parents=True, exist_ok=True)
        repository = self.object_repository()
        if repository is None:
            Path(self.repo_dir).mkdir(parents=True, exist_ok=True)
        else:
            repository.ensure()
        state = self._live_state()
        if state is not None:
            if state.get("repo_dir", "") != self._repository_location():
                raise ServingError(
                    f"tritonserver PID {state['pid']} already runs from {self.work_dir} with the "
                    f"repository {state.get('repo_dir')!r}, not {self.repo_dir!r}; rule: one "
                    "server per work_dir; fix: use another work_dir, or the same repo_dir"
                )
            return self  # attached: the server was started elsewhere
        self._check_pid_file()
        check_shared_libpython()
        backends = self._backends()
        binary = wheel_tritonserver()["binary"]
        control = f"model-repository:{self.control_header}={self._ensure_control_secret()}"
        fixed = (self.fixed_http_port, self.fixed_grpc_port, self.fixed_metrics_port)
        check_fixed_ports(fixed)
        for _attempt in range(3):
            ports = (fixed[0] or free_port(), fixed[1] or free_port(), fixed[2] or free_port())
            if len(set(ports)) < 3:
                continue
            command = server_command(
                binary,
                repo_dir=self._repository_location(),
                backends=backends.resolve(),
                control=control,
                ports=ports,
                exit_timeout_s=self.exit_timeout_s,
                log_verbose=self.log_verbose,
            )
            shown = " ".join(command).replace(
                control, f"model-repository:{self.control_header}=***"
            )
            process = self.managed_process.start(
                command,
                env=self.environment(),
                cwd=work,
                banner=f"==== lockgate start {time.ctime()}: {shown}",
                record_pid=False,  # after the state file: a PID file names a described server
            )
            self._ports = ports
            pid = process.pid
            state = {
                "pid": pid,
                "http_port": ports[0],
                "grpc_port": ports[1],
                "metrics_port": ports[2],
                "repo_dir": self._repository_location(),
                "started_at": time.time(),
            }
            atomic_write(self.state_file, json.dumps(state, sort_keys=True) + "\n", durable=False)
            self.managed_process.write_pid_file()
            if self._wait_ready():
                return self
            in_use = "address already in use" in self.log_tail(200).lower()
            self._terminate(force=True)
            self._remove_state_files()
            if not in_use or all(fixed):
                break
        raise ServingError(
            f"tritonserver for {self.repo_dir} did not become ready within "
            f"{self.startup_timeout_s:g} s; rule: the server starts on free 127.0.0.1 ports "
            f"with the wheel's python backend; fix: read {self.log_file}; its tail:\n"
            f"{self.log_tail(25)}"
        )

    def _wait_ready(self) -> bool:
        assert self._ports is not None
        url = f"http://127.0.0.1:{self._ports[0]}/v2/health/ready"

        def ready() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1.0) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        return self.managed_process.wait_ready(
            ready, timeout_s=self.startup_timeout_s, interval_s=0.05
        )

    def _terminate(self, *, force: bool) -> None:
        if self.started_process is None:
            return
        self.close()
        # SIGTERM to tritonserver alone (it ends its stubs), then the group: stubs left over
        self.managed_process.stop(timeout_s=self.exit_timeout_s + 15, force=force, sweep_s=10.0)
        self._ports = None

    def _remove_state_files(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.state_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stops the server: SIGTERM, wait (``exit_timeout_s`` + 15 s), then SIGKILL.

        Also ends stub processes left in its process group and removes the PID and state files.
        Only closes connections when this object did not start the server (attached).
        """
        if self.started_process is None:
            self.close()
            return
        self._terminate(force=False)
        self._remove_state_files()

    def kill(self) -> None:
        """SIGKILLs the server and its stubs at once, simulating a crash (tests, drills).

        The PID and state files stay behind, as after a real crash; :meth:`start` replaces
        them. Only a server this object started is killed.
        """
        self._terminate(force=True)
