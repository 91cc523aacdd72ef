"""Client traffic through the gateway, and a canary driven to its end (demo, drills, tests).

:class:`TrafficGenerator` sends wire-encoded rows to the gateway from a background thread with
``tritonclient`` (the stock KServe v2 client), counting answers and errors per served version.
:func:`drive_canary` ticks the canary controller until the canary is promoted or rolled back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.resources.audit import AuditTrail
    from lockgate.sensors.canary import TickOutcome
    from lockgate.serving.stack import ServingStack
    from lockgate.spec import ModelPipeline

__all__ = ["TrafficGenerator", "TrafficReport", "drive_canary"]


@dataclass
class TrafficReport:
    """What the clients saw.

    With ``keep_trace_ids``, ``trace_ids`` lists the trace id of every answered request and
    ``trace_rows`` pairs it with the rows it carried: ``(trace_id, first_row, n_rows)`` into
    the generator's matrix, what :func:`lockgate.monitoring.feedback.labels_for` turns into labels.
    """

    sent: int = 0
    answered: int = 0
    errors: int = 0
    by_version: Counter[str] = field(default_factory=Counter)
    error_messages: Counter[str] = field(default_factory=Counter)
    trace_ids: list[str] = field(default_factory=list)
    trace_rows: list[tuple[str, int, int]] = field(default_factory=list)


class TrafficGenerator:
    """Send rows of a wire matrix to ``model`` through the gateway until stopped.

    ``url`` is one gateway, or several replicas: client thread ``n`` sends to
    ``url[n % len(url)]`` (what a load balancer in front of them would spread).

    Example:
        >>> # with TrafficGenerator(gateway_url, "fraud_lgbm", matrix) as traffic: ...
    """

    def __init__(
        self,
        url: str | Sequence[str],
        model: str,
        matrix: np.ndarray,
        *,
        batch: int = 1,
        threads: int = 2,
        max_requests: int | None = None,
        keep_trace_ids: bool = False,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("TrafficGenerator needs a gateway URL; fix: pass url=")
        self.url = self.urls[0]
        self.model, self.matrix = model, np.ascontiguousarray(matrix, np.float32)
        self.batch, self.threads, self.max_requests = batch, threads, max_requests
        self.keep_trace_ids = keep_trace_ids
        self.report = TrafficReport()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    @classmethod
    def for_frame(
        cls,
        url: str | Sequence[str],
        model: str,
        frame: Any,
        *,
        artifacts: ArtifactRegistry,
        version: str | None = None,
        **options: Any,
    ) -> TrafficGenerator:
        """Send the rows of a feature ``frame`` (a DataFrame by feature name) to ``model``.

        The rows are encoded once with the wire schema of ``version`` (default: the champion),
        the format the gateway routes; ``options`` are :meth:`__init__`'s keywords.

        Raises:
            SpecError: ``model`` has no champion and no ``version`` was given.
        """
        from lockgate.errors import SpecError
        from lockgate.serving.wire import encode, wire_schema_for_version

        version = version or artifacts.alias(model, "champion")
        if version is None:
            raise SpecError(
                f"pipeline {model!r} has no champion to encode traffic for; train it first "
                "or pass version="
            )
        matrix = encode(frame, wire_schema_for_version(artifacts, model, version))
        return cls(url, model, matrix, **options)

    def _run(self, offset: int) -> None:
        import tritonclient.http as th

        url = self.urls[offset % len(self.urls)]
        client = th.InferenceServerClient(url.removeprefix("http://"), network_timeout=30.0)
        i = offset * 7919
        try:
            while not self._stop.is_set():
                with self._lock:
                    if self.max_requests is not None and self.report.sent >= self.max_requests:
                        return
                    self.report.sent += 1
                start = (i * self.batch) % max(1, len(self.matrix) - self.batch)
                rows = self.matrix[start : start + self.batch]
                i += 1
                inp = th.InferInput("INPUT__0", list(rows.shape), "FP32")
                inp.set_data_from_numpy(rows, binary_data=True)  # NaN (missing) needs binary
                try:
                    result = client.infer(self.model, [inp])
                    response = result.get_response()
                    with self._lock:
                        self.report.answered += 1
                        self.report.by_version[str(response.get("model_version"))] += 1
                        if self.keep_trace_ids:
                            trace = (response.get("parameters") or {}).get("lockgate_trace_id")
                            self.report.trace_ids.append(str(trace))
                            self.report.trace_rows.append((str(trace), start, len(rows)))
                except Exception as exc:  # counted and shown: what a client would see
                    with self._lock:
                        self.report.errors += 1
                        self.report.error_messages[str(exc)[:120]] += 1
        finally:
            client.close()

    def start(self) -> TrafficGenerator:
        """Start the client threads."""
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> TrafficReport:
        """Stop the clients and return what they saw."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        return self.report

    def wait(self, timeout_s: float = 600.0) -> TrafficReport:
        """Wait until ``max_requests`` were sent (or the timeout), then stop."""
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        return self.stop()

    def __enter__(self) -> TrafficGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def drive_canary(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    audit: AuditTrail,
    tick_s: float = 1.0,
    timeout_s: float = 300.0,
    on_tick: Callable[[TickOutcome], None] | None = None,
    actor: str = "lockgate drive_canary",
) -> list[TickOutcome]:
    """Tick the canary controller until the canary ends; returns every transition."""
    from lockgate.sensors.canary import run_canary_tick

    transitions: list[TickOutcome] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = run_canary_tick(spec, stack=stack, artifacts=artifacts, audit=audit, actor=actor)
        if on_tick is not None:
            on_tick(outcome)
        if outcome.transition:
            transitions.append(outcome)
        state: dict[str, Any] = outcome.state or {}
        if outcome.action in ("promote", "rollback") or state.get("status") in (
            "promoted",
            "rolled_back",
        ):
            return transitions
        if outcome.action == "idle":
            return transitions
        time.sleep(tick_s)
    return transitions
