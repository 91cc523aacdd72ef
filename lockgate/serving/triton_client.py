"""Triton's HTTP API as lockgate uses it: the client side of every Triton server.

:class:`TritonServer` speaks Triton's HTTP API through ``tritonclient.http`` (explicit model
control: ``load`` / ``unload`` / ``is_ready`` / ``loaded`` / ``infer`` / ``health``), sending
the model-control secret with lockgate's own control calls; :class:`RemoteTritonServer` is a
server run elsewhere (production), whose secret comes from ``$LOCKGATE_TRITON_CONTROL_SECRET``.
The local process (:class:`~lockgate.serving.triton_server.LocalTritonServer`) builds on it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, PrivateAttr

from lockgate.serving.model_repository import ServingError

if TYPE_CHECKING:
    from lockgate.serving.object_repository import ObjectModelRepository


__all__ = ["CONTROL_HEADER", "CONTROL_SECRET_ENV", "RemoteTritonServer", "TritonServer"]

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
