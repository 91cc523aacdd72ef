"""The sandbox infra validation of a candidate version: write, verify and load it into a Triton
server, send it wire matrices over HTTP and compare its answers and latency with the model's own
``predict`` (:func:`infra_validate`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import DataError, EmptyDataError, LockgateError
from lockgate.serving.model_folder_plan import ServingError
from lockgate.serving.model_folder_verify import load_version, verify_model_folder
from lockgate.serving.model_folder_writer import write_model_version
from lockgate.serving.triton_config import INPUT_NAME, OUTPUT_NAME, triton_model_name
from lockgate.serving.wire import encode, wire_schema_for_version

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt
    import pandas as pd

    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.serving.triton_server import TritonServer

__all__ = ["infra_validate", "latency_passes"]


class _WireClient:
    """Sends wire matrices to one model over HTTP, NaN (missing values) included.

    ``TritonServer.infer`` checks for the old preprocessed interface and refuses non-finite
    values, but NaN marks a missing value on the wire: infra validation talks to the server
    through its own ``tritonclient`` connection (the server's ``url`` and ``ssl``).
    """

    def __init__(self, triton: TritonServer, model_name: str) -> None:
        import tritonclient.http as httpclient

        self.model_name = model_name
        self.url = triton.url
        self._http = httpclient
        self._client = httpclient.InferenceServerClient(
            url=triton.url,
            ssl=bool(triton.ssl),
            connection_timeout=float(triton.timeout_s),
            network_timeout=float(triton.timeout_s),
        )
        self.max_batch_size = 0

    def start(self) -> None:
        config = self._call("describe", lambda: self._client.get_model_config(self.model_name))
        self.max_batch_size = int(config.get("max_batch_size", 0))

    def _call(self, what: str, fn: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return fn()
        except InferenceServerException as exc:
            raise ServingError(
                f"Triton at {self.url} refused to {what} {self.model_name!r}: {exc.message()}; "
                "fix: read the server log and the model's config.pbtxt"
            ) from exc
        except (OSError, ConnectionError) as exc:
            raise ServingError(
                f"Triton at {self.url} is unreachable while trying to {what} "
                f"{self.model_name!r} ({exc}); rule: the server must be running; fix: restart it"
            ) from exc

    def infer(self, x: npt.NDArray[np.float32], *, step: int) -> npt.NDArray[np.float32]:
        """The model's outputs for the rows of ``x``, shape ``(n, width)``."""
        width = 0
        if self.max_batch_size > 0:
            step = min(step, self.max_batch_size)
        parts: list[npt.NDArray[np.float32]] = []
        for start in range(0, x.shape[0], step):
            chunk = np.ascontiguousarray(x[start : start + step], dtype=np.float32)
            tensor = self._http.InferInput(INPUT_NAME, list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk, binary_data=True)
            wanted = self._http.InferRequestedOutput(OUTPUT_NAME, binary_data=True)
            result = self._call(
                "infer with",
                lambda t=tensor, w=wanted: self._client.infer(
                    self.model_name, inputs=[t], outputs=[w]
                ),
            )
            out = result.as_numpy(OUTPUT_NAME)
            n = chunk.shape[0]
            if out is None or out.size == 0 or out.size % n or (parts and out.size // n != width):
                raise ServingError(
                    f"{self.model_name!r} returned {None if out is None else out.shape} for "
                    f"{n} rows; rule: the same number of values (the output width: 1, or k "
                    "class probabilities) for every row; fix: check the model's config.pbtxt "
                    "and model.py"
                )
            width = out.size // n
            parts.append(np.asarray(out, dtype=np.float32).reshape(n, width))
        return np.concatenate(parts) if parts else np.empty((0, 1), dtype=np.float32)

    def close(self) -> None:
        self._client.close()


def latency_passes(
    timed_pass: Callable[[], tuple[float, float]], p99_budget_ms: float
) -> list[tuple[float, float]]:
    """The ``(p50, p99)`` of one timed pass, and of a second when the first is over budget.

    A p99 of 200 requests is decided by two of them, so one stall of a loaded host (a
    page-out, a scheduler hiccup) can put a fast model over budget; a slow model is slow in
    every pass. The caller judges the better pass (the lower p99).
    """
    passes = [timed_pass()]
    if passes[0][1] > p99_budget_ms:
        passes.append(timed_pass())
    return passes


def infra_validate(
    *,
    triton: TritonServer,
    registry: ArtifactRegistry,
    pipeline: str,
    version: str,
    frame: pd.DataFrame,
    n_rows: int = 500,
    tolerance: float = 1e-5,
    p99_budget_ms: float = 50.0,
    requests: int = 200,
    batch_size: int = 256,
    fault: str | None = None,
) -> dict[str, Any]:
    """Serves a candidate in a sandbox Triton and checks integrity, outputs and latency.

    Steps: write the version's CPU folder into the sandbox repository (a no-op when present),
    verify it, load it; send the first ``n_rows`` rows of ``frame`` **wire-encoded**
    (:func:`lockgate.serving.wire.encode` with the version's wire schema, as clients send them) in
    batches of ``batch_size`` and compare with ``predict(frame)`` in-process, reshaped to
    ``(n, output_width)`` (``[k]`` class probabilities for a multiclass model, ``[1]``
    otherwise); time
    ``requests`` single-row requests (after a few untimed ones), and once more when their p99
    is over budget (the better pass counts: host noise passes, a slow model fails both); unload. Model problems become
    failures in the result; nothing is raised for them.

    Args:
        triton: A started server dedicated to validation (its ``repo_dir`` is the sandbox
            repository).
        registry: The artifact registry holding the version.
        pipeline: Pipeline name.
        version: Model version id.
        frame: Rows with the pipeline's wire columns (e.g. the held-out split of its snapshot).
        n_rows: Rows compared (the first ``n_rows`` of ``frame``).
        tolerance: Largest allowed ``|served - predict|``; for a regression model relative to
            ``max(1, |predict|)`` (float32 rounding grows with the value).
        p99_budget_ms: Largest allowed p99 latency of a single-row request, in ms.
        requests: Single-row requests timed.
        batch_size: Rows per request in the comparison.
        fault: Fault drill written into the sandbox folder (tests and drills only).

    Returns:
        A JSON-able dict: ``passed``, ``model``, ``pipeline``, ``version``, ``rows``,
        ``max_abs_diff``, ``p50_ms``, ``p99_ms`` (of the better timed pass), ``latency_passes``,
        ``requests`` (timed, all passes), ``load_s``, ``budget``
        (``tolerance``, ``p99_ms``) and ``failures`` (``[{"check", "message"}]``; checks:
        ``integrity``, ``load``, ``outputs``, ``inference``, ``latency``, ``unload``).

    Raises:
        ServingError: When the sandbox server is not running or has no repository.
        EmptyDataError: When ``frame`` has no rows.
        DataError: For a non-positive ``n_rows``, ``requests`` or ``batch_size``.
    """
    from lockgate.lineage.steps import load_trained_model

    for name, value in (("n_rows", n_rows), ("requests", requests), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DataError(f"{name}={value!r} is invalid; rule: an integer > 0; fix: pass e.g. 1")
    if len(frame) == 0:
        raise EmptyDataError(
            f"infra validation of {pipeline}/{version} got a frame with no rows; rule: outputs "
            "are compared on real rows; fix: pass the held-out split"
        )
    if triton.repo_dir is None or not triton.health():
        raise ServingError(
            f"sandbox Triton at {triton.url} is not healthy or has no repo_dir; rule: infra "
            "validation needs a started local server dedicated to it; fix: start a "
            "LocalTritonServer and pass it as triton="
        )
    model_name = triton_model_name(pipeline, version)
    failures: list[dict[str, str]] = []
    report: dict[str, Any] = {
        "passed": False,
        "model": model_name,
        "pipeline": pipeline,
        "version": version,
        "rows": 0,
        "max_abs_diff": None,
        "p50_ms": None,
        "p99_ms": None,
        "requests": 0,
        "load_s": None,
        "budget": {"tolerance": float(tolerance), "p99_ms": float(p99_budget_ms)},
        "failures": failures,
    }
    try:
        model = load_trained_model(registry, pipeline, version)
        schema = wire_schema_for_version(registry, pipeline, version)
        write_model_version(
            registry, triton.repo_dir, pipeline=pipeline, version=version, fault=fault
        )
        verify_model_folder(registry, triton.repo_dir, pipeline=pipeline, version=version)
    except LockgateError as exc:
        failures.append({"check": "integrity", "message": str(exc)})
        return report
    started = time.perf_counter()
    try:
        load_version(triton=triton, registry=registry, pipeline=pipeline, version=version)
    except LockgateError as exc:
        failures.append({"check": "load", "message": str(exc)})
        return report
    report["load_s"] = round(time.perf_counter() - started, 4)
    client: _WireClient | None = None
    try:
        rows = frame.iloc[:n_rows]
        x = encode(rows, schema)
        width = model.output_width
        expected = model.predict(rows).reshape(len(rows), width)
        client = _WireClient(triton, model_name)
        client.start()
        served = np.asarray(client.infer(x, step=batch_size), dtype=np.float64)
        report["rows"] = len(x)
        if served.size == expected.size:  # the client may hand the outputs back flattened
            served = served.reshape(expected.shape)
        if served.shape != expected.shape or not np.isfinite(served).all():
            failures.append(
                {
                    "check": "outputs",
                    "message": (
                        f"{model_name} returned shape {served.shape} (finite: "
                        f"{bool(np.isfinite(served).all())}) for {len(x)} rows of a "
                        f"{model.task} model; rule: {width} finite value(s) per row "
                        f"(TrainedModel.predict); fix: check the served files, config.pbtxt "
                        "and model.py"
                    ),
                }
            )
        else:
            diff = np.abs(served - expected)
            allowed = np.full(diff.shape, float(tolerance))
            if model.task == "regression":
                allowed *= np.maximum(1.0, np.abs(expected))
            worst = np.unravel_index(np.argmax(diff - allowed), diff.shape)
            bad_row, bad_col = int(worst[0]), int(worst[1])
            report["max_abs_diff"] = float(diff.max())
            if diff[bad_row, bad_col] > allowed[bad_row, bad_col]:
                column = f", column {bad_col} ({model.classes[bad_col]!r})" if width > 1 else ""
                failures.append(
                    {
                        "check": "outputs",
                        "message": (
                            f"{model_name} differs from predict by {diff[bad_row, bad_col]:.3g} "
                            f"> tolerance {allowed[bad_row, bad_col]:.3g} (row {bad_row}{column}: "
                            f"served {served[bad_row, bad_col]:.6f}, in-process "
                            f"{expected[bad_row, bad_col]:.6f}); "
                            "rule: the served model scores wire-encoded rows like the "
                            "registry's model scores the raw rows; fix: rewrite the model "
                            "folder from the registry, or check the serving runtime's versions"
                        ),
                    }
                )
        for i in range(min(5, requests)):  # untimed: connection set-up, caches
            client.infer(x[i % len(x) : i % len(x) + 1], step=1)

        def timed_pass() -> tuple[float, float]:
            latencies: list[float] = []
            for i in range(requests):
                row = x[i % len(x) : i % len(x) + 1]
                t0 = time.perf_counter()
                client.infer(row, step=1)
                latencies.append((time.perf_counter() - t0) * 1000.0)
            report["requests"] += len(latencies)
            return (
                round(float(np.percentile(latencies, 50)), 3),
                round(float(np.percentile(latencies, 99)), 3),
            )

        passes = latency_passes(timed_pass, p99_budget_ms)
        report["p50_ms"], report["p99_ms"] = min(passes, key=lambda p: p[1])
        report["latency_passes"] = [{"p50_ms": a, "p99_ms": b} for a, b in passes]
        if report["p99_ms"] > p99_budget_ms:
            failures.append(
                {
                    "check": "latency",
                    "message": (
                        f"{model_name} p99 latency {report['p99_ms']:.1f} ms over {requests} "
                        f"single-row requests exceeds the budget of {p99_budget_ms:g} ms (p50 "
                        f"{report['p50_ms']:.1f} ms; the better of {len(passes)} passes); rule: "
                        "a candidate answers within "
                        "p99_budget_ms in the sandbox; fix: make the model cheaper (fewer trees, "
                        "smaller network) or raise the budget deliberately"
                    ),
                }
            )
    except LockgateError as exc:
        failures.append({"check": "inference", "message": str(exc)})
    finally:
        if client is not None:
            client.close()
        try:
            triton.unload(model_name, wait=True)
        except LockgateError as exc:
            failures.append({"check": "unload", "message": str(exc)})
    report["passed"] = not failures
    return report
