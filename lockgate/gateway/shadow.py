"""Shadow traffic: answered champion requests mirrored to the challenger, off the answer's path.

:class:`ShadowMirror` sends a copy of a request the champion answered to the route's challenger
in a task of its own (at most ``max_inflight`` at once; more are dropped and counted in
``lockgate_gateway_shadow_dropped_total``), compares the two outputs row by row (the shadow's
absolute difference), counts the challenger's figures under ``shadow=true`` and logs a shadow
record. The client's answer never waits for it nor changes with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from lockgate.gateway.errors import ReplyError, UpstreamError
from lockgate.gateway.kserve import rewrite_response
from lockgate.gateway.merge_queue import Forward
from lockgate.gateway.models import ModelDirectory
from lockgate.gateway.predlog.records import encode_record
from lockgate.gateway.predlog.wal import PredictionLog
from lockgate.gateway.stats import Stats

__all__ = ["ShadowMirror"]


class ShadowMirror:
    """Mirrors answered requests to the challenger (see the module docstring).

    Args:
        forward: sends one infer call upstream (the gateway's).
        stats: where shadow figures and drops are counted.
        models: the gateway's model directory.
        log: the prediction log the shadow records go to.
        max_inflight: concurrent shadow calls at most.
    """

    def __init__(
        self,
        forward: Forward,
        *,
        stats: Stats,
        models: ModelDirectory,
        log: PredictionLog,
        max_inflight: int,
    ) -> None:
        self._forward = forward
        self.stats = stats
        self.models = models
        self.log = log
        self.max_inflight = max_inflight
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        name: str,
        challenger: str,
        trace: str,
        request_id: str | None,
        body: bytes,
        headers: Mapping[str, str],
        inputs: np.ndarray | None,
        champion_out: np.ndarray | None,
        width: int,
    ) -> None:
        """Mirror one answered request to the challenger (dropped and counted when too many
        are in flight)."""
        if len(self._tasks) >= self.max_inflight:
            self.stats.shadow_dropped[name] = self.stats.shadow_dropped.get(name, 0) + 1
            return
        task = asyncio.create_task(
            self._run(name, challenger, trace, request_id, body, headers, inputs, champion_out)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        name: str,
        version: str,
        trace: str,
        request_id: str | None,
        body: bytes,
        headers: Mapping[str, str],
        inputs: np.ndarray | None,
        champion_out: np.ndarray | None,
    ) -> None:
        t0 = time.perf_counter()
        series = self.stats.get(name, version, True)
        status = 200
        err_text: str | None = None
        outputs: np.ndarray | None = None
        diffs: np.ndarray | None = None
        try:
            info = await self.models.get(f"{name}-{version}")
            if inputs is not None and info.width not in (-1, inputs.shape[1]):
                series.observe(latency_s=0.0, error=None, violation=True, predictions=None)
                status, err_text = (
                    400,
                    (
                        f"shadow version {version!r} expects width {info.width}, request has "
                        f"{inputs.shape[1]}"
                    ),
                )
            else:
                resp, err = await self._forward(name, version, body, headers)
                if err is not None:
                    series.observe(latency_s=0.0, error=err[0], violation=False, predictions=None)
                    status, err_text = err[1], err[2]
                else:
                    assert resp is not None
                    _, _, outputs = rewrite_response(resp, name, version, trace)
                    if (
                        outputs is not None
                        and champion_out is not None
                        and outputs.shape == champion_out.shape
                    ):
                        diffs = np.abs(outputs - champion_out).reshape(outputs.shape[0], -1)
                        diffs = diffs.max(axis=1)
                    series.observe(
                        latency_s=time.perf_counter() - t0,
                        error=None,
                        violation=False,
                        predictions=outputs,
                        diffs=diffs,
                    )
        except (ReplyError, UpstreamError, ValueError, KeyError, TypeError) as exc:
            series.observe(latency_s=0.0, error="shadow", violation=False, predictions=None)
            status = getattr(exc, "status", 502)
            err_text = str(exc)
        meta: dict[str, Any] = {
            "t": trace,
            "ts": time.time_ns() // 1000,
            "m": name,
            "v": version,
            "rb": "shadow",
            "sh": True,
            "st": status,
            "lat": (time.perf_counter() - t0) * 1000.0,
        }
        if err_text is not None:
            meta["err"] = err_text[:2000]
        if request_id is not None:
            meta["rid"] = request_id
        if diffs is not None:
            meta["diff"] = diffs
        self.log.append_nowait(encode_record(meta, inputs, outputs))

    async def drain(self) -> None:
        """Wait for in-flight shadow requests (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self, timeout_s: float = 5.0) -> None:
        """Give in-flight shadow calls ``timeout_s`` to finish, then cancel the rest."""
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout_s)
            for t in pending:
                t.cancel()
