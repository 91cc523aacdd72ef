"""Triton Inference Server clients: a local process for development, tests and the validation
sandbox, or a remote server in production (plain classes; :mod:`lockgate.resources.triton`
wraps them as Dagster resources).

:class:`TritonServer` speaks Triton's HTTP API through ``tritonclient.http`` (explicit model
control: ``load`` / ``unload`` / ``is_ready`` / ``loaded`` / ``infer`` / ``health``).
:class:`LocalTritonServer` also runs the ``tritonserver`` binary shipped in the
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

import contextlib
import functools
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

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

if TYPE_CHECKING:
    from lockgate.serving.object_repository import ObjectModelRepository

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
CONTROL_HEADER = "lockgate-model-control"
"""The header whose secret Triton's restricted model-repository API requires."""
CONTROL_SECRET_ENV = "LOCKGATE_TRITON_CONTROL_SECRET"
"""Where a remote Triton's model-control secret comes from (set it from a secret)."""


class _ModelIO:
    __slots__ = ("input_name", "max_batch_size", "n_features", "output_name")

    def __init__(
        self, input_name: str, output_name: str, n_features: int, max_batch_size: int
    ) -> None:
        self.input_name = input_name
        self.output_name = output_name
        self.n_features = n_features
        self.max_batch_size = max_batch_size


class TritonServer(BaseModel, ABC):
    """A Triton server in explicit model-control mode, reached over HTTP.

    Attributes:
        repo_dir: Local path of the model repository the server reads (``None`` when it is not
            reachable from here; :func:`lockgate.serving.model_repository.load_version` then refuses to load,
            since it cannot verify the folder), or its object-store URL ``s3://bucket/prefix``
            (:mod:`lockgate.serving.object_repository`: written, verified and loaded through
            :meth:`object_repository`).
        repo_endpoint_url: For an ``s3://`` repository: the S3 endpoint of an S3-compatible
            server (``http://host:8333``); None: ``$AWS_ENDPOINT_URL``, else AWS.
        repo_key: For an ``s3://`` repository: the access key id; None: the AWS SDK's chain.
        repo_secret: For an ``s3://`` repository: the secret access key; None: the SDK's chain.
        repo_region: For an ``s3://`` repository: the region; None: the SDK's chain.
        timeout_s: Network timeout of each HTTP call, in seconds.
        control_header: The header Triton's restricted model-repository API checks.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    repo_dir: str | None = None
    repo_endpoint_url: str | None = None
    repo_key: str | None = None
    repo_secret: str | None = None
    repo_region: str | None = None
    timeout_s: float = 60.0
    control_header: str = CONTROL_HEADER

    _clients: list[Any] = PrivateAttr(default_factory=list)
    _local: threading.local = PrivateAttr(default_factory=threading.local)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _io: dict[str, _ModelIO] = PrivateAttr(default_factory=dict)

    @property
    @abstractmethod
    def url(self) -> str:
        """``host:port`` of the HTTP endpoint (as ``tritonclient.http`` expects it)."""

    @property
    def http_port(self) -> int:
        """Port of the HTTP endpoint."""
        port = urlsplit(f"//{self.url}").port
        if port is None:
            raise ServingError(f"Triton url {self.url!r} has no port; give it as host:port")
        return port

    @property
    def ssl(self) -> bool:
        """Whether the HTTP endpoint uses TLS."""
        return False

    def object_repository(self) -> ObjectModelRepository | None:
        """The object-store repository ``repo_dir`` names (``s3://...``), or None for a folder."""
        from lockgate.serving.object_repository import ObjectModelRepository, is_object_url

        if not is_object_url(self.repo_dir):
            return None
        return ObjectModelRepository(
            url=str(self.repo_dir),
            endpoint_url=self.repo_endpoint_url,
            key=self.repo_key,
            secret=self.repo_secret,
            region=self.repo_region,
        )

    # ---- client ------------------------------------------------------------------------------

    def _client(self) -> Any:
        """A ``tritonclient.http.InferenceServerClient`` for this thread (reused)."""
        client = getattr(self._local, "client", None)
        if client is None or getattr(self._local, "url", None) != self.url:
            import tritonclient.http as httpclient

            client = httpclient.InferenceServerClient(
                url=self.url,
                ssl=self.ssl,
                connection_timeout=self.timeout_s,
                network_timeout=self.timeout_s,
            )
            self._local.client = client
            self._local.url = self.url
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Closes every HTTP connection this object opened (Triton's shutdown waits for them)."""
        with self._lock:
            clients, self._clients[:] = list(self._clients), []
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
        self._local = threading.local()
        self._io.clear()

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return fn()
        except InferenceServerException as exc:
            if "restricted" in str(exc.message()):
                raise ServingError(
                    f"Triton at {self.url} refused to {what}: its model-repository API is "
                    f"restricted ({exc.message()}); rule: only lockgate, holding the "
                    f"model-control secret, loads and lists models; fix: give this client the "
                    f"secret (control_secret=, or ${CONTROL_SECRET_ENV} from the secret the "
                    "server was started with)"
                ) from exc
            raise ServingError(
                f"Triton at {self.url} refused to {what}: {exc.message()}; fix: {self._hint()}"
            ) from exc
        except (OSError, ConnectionError) as exc:
            raise ServingError(
                f"Triton at {self.url} is unreachable while trying to {what} ({exc}); rule: the "
                f"server must be running; fix: {self._hint()}"
            ) from exc

    def _hint(self) -> str:
        return "read the server log and the model's config.pbtxt"

    def _control_secret(self) -> str | None:
        return os.environ.get(CONTROL_SECRET_ENV, "").strip() or None

    def control_headers(self) -> dict[str, str]:
        """The header that opens Triton's restricted model-repository API (load, unload, index);
        empty when no secret is configured (an unrestricted server)."""
        secret = self._control_secret()
        return {self.control_header: secret} if secret else {}

    # ---- API ---------------------------------------------------------------------------------

    def health(self) -> bool:
        """Whether the server is live and ready (False when it cannot be reached)."""
        try:
            client = self._client()
            return bool(client.is_server_live() and client.is_server_ready())
        except Exception:
            return False

    def load(self, model_name: str, *, verify: Callable[[], None] | None = None) -> None:
        """Loads (or reloads) a model from the repository and waits until it is ready.

        Args:
            model_name: Triton model name (``<pipeline>-<version>``).
            verify: Called first; whatever it raises stops the load before Triton sees the
                model (:func:`lockgate.serving.model_repository.load_version` passes the folder verification).

        Raises:
            ServingError: When Triton cannot load the model (its message is included).
        """
        if verify is not None:
            verify()
        self._io.pop(model_name, None)
        client = self._client()
        headers = self.control_headers()
        self._call(
            f"load model {model_name!r}", lambda: client.load_model(model_name, headers=headers)
        )
        if not self.is_ready(model_name):
            raise ServingError(
                f"Triton at {self.url} loaded {model_name!r} but it is not ready; fix: "
                f"{self._hint()}"
            )

    def unload(
        self,
        model_name: str,
        *,
        wait: bool = True,
        timeout_s: float = 60.0,
        dependents: Sequence[str] = (),
    ) -> None:
        """Unloads a model and its dependents; with ``wait``, until Triton reports them gone.

        Triton is asked to unload the model's dependents too (``unload_dependents``): the
        composing models of an ensemble (a GPU version is an ensemble of a ``-wire`` python step
        and a FIL or libtorch ``-model``) go with it. Unload is asynchronous.

        Args:
            model_name: Triton model name.
            wait: Poll the repository index until the model (and ``dependents``) are no longer
                ready, loading or unloading.
            timeout_s: Longest wait, in seconds.
            dependents: Names of composing models to wait for as well (e.g.
                ``model_folders(name, target="gpu")`` minus the ensemble itself).

        Raises:
            ServingError: When Triton refuses, or a model is still there after ``timeout_s``.
        """
        self._io.pop(model_name, None)
        client = self._client()
        self._call(
            f"unload model {model_name!r}",
            lambda: client.unload_model(
                model_name, unload_dependents=True, headers=self.control_headers()
            ),
        )
        if not wait:
            return
        names = {model_name, *dependents}
        deadline = time.monotonic() + timeout_s
        while True:
            busy = {
                str(m.get("name")): str(m.get("state"))
                for m in self._index()
                if m.get("name") in names
                and str(m.get("state")) in {"READY", "UNLOADING", "LOADING"}
            }
            if not busy:
                return
            if time.monotonic() > deadline:
                raise ServingError(
                    f"{busy} still loaded {timeout_s:g} s after unloading {model_name!r} on "
                    f"{self.url}; rule: unload finishes once in-flight requests end; fix: stop "
                    "the traffic to it or restart the server"
                )
            time.sleep(0.02)

    def _index(self) -> list[dict[str, Any]]:
        client = self._client()
        headers = self.control_headers()
        index = self._call(
            "list its repository", lambda: client.get_model_repository_index(headers=headers)
        )
        return list(index or [])

    def is_ready(self, model_name: str) -> bool:
        """Whether ``model_name`` is loaded and ready to infer.

        Args:
            model_name: Triton model name.

        Returns:
            True when ready; False when not loaded, unloading, failed, or the server is down.
        """
        try:
            return bool(self._client().is_model_ready(model_name))
        except Exception:
            return False

    def loaded(self) -> list[str]:
        """Names of the models that are ready, sorted."""
        return sorted({str(m["name"]) for m in self._index() if m.get("state") == "READY"})

    def _model_io(self, model_name: str) -> _ModelIO:
        cached = self._io.get(model_name)
        if cached is not None:
            return cached
        client = self._client()
        config = self._call(
            f"describe model {model_name!r}", lambda: client.get_model_config(model_name)
        )
        try:
            (inp,) = config["input"]
            (out,) = config["output"]
            io = _ModelIO(
                str(inp["name"]),
                str(out["name"]),
                int(inp["dims"][-1]),
                int(config.get("max_batch_size", 0)),
            )
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise ServingError(
                f"{model_name!r} on {self.url} does not have one input and one output "
                f"({exc}); rule: lockgate models take INPUT__0 [d] and return OUTPUT__0 [W]; "
                "fix: write the model folder with lockgate.serving.model_repository.write_model_version"
            ) from exc
        self._io[model_name] = io
        return io

    def probe(self, model_name: str) -> float:
        """Runs one real inference (a wire row of missing values) and checks the answer.

        What ``lockgate serve status`` asks of every routed version: ``/v2/health`` and model
        readiness say a model is loaded, not that it answers.

        Args:
            model_name: Triton model name.

        Returns:
            The round trip in milliseconds.

        Raises:
            ServingError: When the server is unreachable, the model is not loaded, or it
                answers with an error or with non-finite values.
        """
        io = self._model_io(model_name)
        row = np.full((1, io.n_features), np.nan, dtype=np.float32)
        started = time.perf_counter()
        out = self.infer(model_name, row)
        elapsed = (time.perf_counter() - started) * 1000.0
        if out.size == 0 or not np.isfinite(out).all():
            raise ServingError(
                f"{model_name!r} on {self.url} answered {out.tolist()} for one row of missing "
                "values; rule: finite outputs for every row (missing values included); fix: "
                f"{self._hint()}"
            )
        return elapsed

    def infer(self, model_name: str, matrix: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Scores a preprocessed float32 matrix; returns the model's outputs per row.

        Tensor names and the batch limit are read from the model's configuration (once per
        model), so the FIL backend's fixed ``input__0`` works too; a matrix larger than
        ``max_batch_size`` is sent in several requests.

        Args:
            model_name: Triton model name.
            matrix: ``(n, d)`` real numbers (cast to float32), e.g.
                ``TrainedModel.preprocess(frame)``.

        Returns:
            Float32 array of shape ``(n,)`` for a model of one output value per row (binary:
            P(label 1); regression: the value), ``(n, k)`` for a multiclass model (class
            probabilities in the model's ``classes`` order).

        Raises:
            ServingError: For a matrix of the wrong shape or with infinite values, or when
                Triton answers with an error (the model's message is included).
        """
        from tritonclient import http as httpclient

        x = np.ascontiguousarray(np.asarray(matrix, dtype=np.float32))
        io = self._model_io(model_name)
        width = 0
        if x.ndim != 2 or x.shape[1] != io.n_features or np.isinf(x).any():
            raise ServingError(
                f"matrix for {model_name!r} has shape {x.shape} (infinite values: "
                f"{int(np.isinf(x).sum())}); rule: an (n, {io.n_features}) wire matrix, NaN for "
                "missing, no inf; fix: send lockgate.serving.wire.encode(frame, schema)"
            )
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        client = self._client()
        step = io.max_batch_size if io.max_batch_size > 0 else x.shape[0]
        parts: list[npt.NDArray[np.float32]] = []
        for start in range(0, x.shape[0], step):
            chunk = x[start : start + step]
            tensor = httpclient.InferInput(io.input_name, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk, binary_data=True)
            wanted = httpclient.InferRequestedOutput(io.output_name, binary_data=True)
            request = functools.partial(client.infer, model_name, inputs=[tensor], outputs=[wanted])
            result = self._call(f"infer with {model_name!r}", request)
            out = result.as_numpy(io.output_name)
            n = chunk.shape[0]
            if out is None or out.size == 0 or out.size % n or (parts and out.size // n != width):
                raise ServingError(
                    f"{model_name!r} returned {None if out is None else out.shape} for "
                    f"{n} rows; rule: the same number of values (the output width: 1, or k "
                    "class probabilities) for every row; fix: check the model's config.pbtxt "
                    "and model.py"
                )
            width = out.size // n
            parts.append(np.asarray(out, dtype=np.float32).reshape(n, width))
        merged = np.concatenate(parts)
        return merged.reshape(-1) if merged.shape[1] == 1 else merged


class RemoteTritonServer(TritonServer):
    """A Triton server run elsewhere (Kubernetes, the NGC image); no process management.

    Attributes:
        server_url: ``host:port``, ``http://host:port`` or ``https://host:port`` of its HTTP
            endpoint.
        control_secret: the secret of its restricted model-repository API (Triton started
            with ``--http-restricted-api=model-repository:lockgate-model-control=<secret>``);
            None: ``$LOCKGATE_TRITON_CONTROL_SECRET``, else no header is sent.
    """

    server_url: str
    control_secret: str | None = None

    def _control_secret(self) -> str | None:
        return (self.control_secret or "").strip() or super()._control_secret()

    @property
    def url(self) -> str:
        """``host:port`` of the HTTP endpoint."""
        parts = urlsplit(self.server_url if "//" in self.server_url else f"//{self.server_url}")
        if not parts.hostname or parts.port is None:
            raise ServingError(
                f"server_url {self.server_url!r} is not host:port; rule: give the HTTP "
                "endpoint with its port; fix: e.g. 'triton.serving.svc:8000'"
            )
        return f"{parts.hostname}:{parts.port}"

    @property
    def ssl(self) -> bool:
        """Whether ``server_url`` starts with ``https://``."""
        return self.server_url.startswith("https://")


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
