"""Coalescing under load: the per-model queue and the merged upstream calls.

Once ``inflight_limit`` calls are in flight to one upstream model, further requests for it wait
in :class:`MergeQueue` and go upstream as one merged call (rows concatenated up to the model's
``max_batch_size``, :func:`lockgate.gateway.coalesce.merged_request`) as soon as a call returns;
each request gets its own rows back (:func:`merged_answer`). A merged call the model refuses is
retried request by request, so one bad row fails only its own request; a model whose merged
answers cannot be split is never merged again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

import numpy as np

from lockgate.gateway.coalesce import OutputPart, answer, merged_request, split_response
from lockgate.gateway.kserve import INPUT_NAME, OUTPUT_NAME, ModelInfo, response_header
from lockgate.gateway.models import ModelDirectory
from lockgate.gateway.stats import Stats
from lockgate.gateway.upstream import UpstreamResponse

__all__ = ["Forward", "MergeQueue", "merged_answer"]

logger = logging.getLogger("lockgate.gateway")

Forward = Callable[
    [str, str, bytes, Mapping[str, str]],
    Awaitable[tuple[UpstreamResponse | None, tuple[str, int, str] | None]],
]
"""Sends one infer call upstream: (model, version, body, headers) to (response, None) or
(None, (error kind, status, message))."""

# What a request waiting to be merged is told: its rows of a merged answer, an error, "slot" (go
# upstream on your own, in a call slot held for you) or "alone" (the merged call was refused:
# go on your own, outside the slots, so that one bad row fails only its own request).
_MergeResult = dict[str, OutputPart] | tuple[str, int, str] | Literal["slot", "alone"]


class _Batcher:
    """Coalescing state of one upstream model: calls in flight and requests waiting."""

    __slots__ = ("inflight", "queue")

    def __init__(self) -> None:
        self.inflight = 0
        self.queue: collections.deque[tuple[np.ndarray, asyncio.Future[_MergeResult]]] = (
            collections.deque()
        )


class MergeQueue:
    """The coalescing state of every upstream model of one gateway.

    Args:
        forward: sends one infer call upstream (the gateway's, with its error accounting).
        stats: where merged calls are counted.
        models: the gateway's model directory (told when a model must not be merged again).
        inflight_limit: calls in flight per model before requests wait to be merged.
    """

    def __init__(
        self, forward: Forward, *, stats: Stats, models: ModelDirectory, inflight_limit: int
    ) -> None:
        self._forward = forward
        self.stats = stats
        self.models = models
        self.inflight_limit = inflight_limit
        self._batchers: dict[str, _Batcher] = {}
        self._merged_tasks: set[asyncio.Task[None]] = set()

    async def call(
        self,
        name: str,
        version: str,
        info: ModelInfo,
        inputs: np.ndarray,
        body: bytes,
        headers: Mapping[str, str],
    ) -> tuple[UpstreamResponse | None, dict[str, OutputPart] | None, tuple[str, int, str] | None]:
        """Forward on its own while few calls are in flight; else wait and go in a merged one.

        Returns (response, None, None) when sent on its own, (None, parts, None) with this
        request's rows of a merged answer, or (None, None, error).
        """
        upstream = f"{name}-{version}"
        batcher = self._batchers.get(upstream)
        if batcher is None:
            batcher = self._batchers[upstream] = _Batcher()
        got: _MergeResult
        if batcher.inflight < self.inflight_limit and not batcher.queue:
            batcher.inflight += 1
            got = "slot"
        else:
            fut: asyncio.Future[_MergeResult] = asyncio.get_running_loop().create_future()
            batcher.queue.append((inputs, fut))
            self._dispatch(batcher, name, version, info)
            try:
                got = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and fut.result() == "slot":
                    self._release(batcher, name, version, info)  # the slot held for it is unused
                raise
        if got == "slot" or got == "alone":  # the original request, on its own
            try:
                resp, err = await self._forward(name, version, body, headers)
            finally:
                if got == "slot":
                    self._release(batcher, name, version, info)
            return resp, None, err
        if isinstance(got, tuple):
            return None, None, got
        return None, got, None

    def _release(self, batcher: _Batcher, name: str, version: str, info: ModelInfo) -> None:
        """A call slot is free again: send what waits."""
        batcher.inflight -= 1
        self._dispatch(batcher, name, version, info)

    def _dispatch(self, batcher: _Batcher, name: str, version: str, info: ModelInfo) -> None:
        """Send what waits as merged calls while fewer than ``coalesce_inflight`` are out."""
        queue = batcher.queue
        while queue and batcher.inflight < self.inflight_limit:
            items = []
            rows = 0
            while queue and rows + queue[0][0].shape[0] <= info.max_batch:
                item = queue.popleft()
                if not item[1].done():  # its client went away meanwhile
                    items.append(item)
                    rows += item[0].shape[0]
            if not items:
                continue
            batcher.inflight += 1
            if len(items) == 1:  # a call of one: cheaper as the request it is
                items[0][1].set_result("slot")
                continue
            task = asyncio.get_running_loop().create_task(
                self._run_merged(batcher, name, version, info, items)
            )
            self._merged_tasks.add(task)
            task.add_done_callback(self._merged_tasks.discard)

    async def _run_merged(
        self,
        batcher: _Batcher,
        name: str,
        version: str,
        info: ModelInfo,
        items: list[tuple[np.ndarray, asyncio.Future[_MergeResult]]],
    ) -> None:
        results: list[_MergeResult]
        try:
            arrays = [x for x, _ in items]
            body, hlen = merged_request(INPUT_NAME, arrays)
            headers = {
                "Content-Type": "application/json",
                "Inference-Header-Content-Length": str(hlen),
            }
            resp, err = await self._forward(name, version, body, headers)
            if resp is not None:
                self.stats.get(name, version, False).merged(len(items))
                try:
                    head, off, _ = response_header(resp)
                    results = list(
                        split_response(head, resp.body, off, [x.shape[0] for x in arrays])
                    )
                except (ValueError, TypeError, AttributeError) as exc:
                    # rows that do not come back one for one: this model is not merged again
                    logger.warning(
                        "upstream model %s-%s answered a merged call of %d rows in a form that "
                        "cannot be split (%s); its requests now go upstream one by one",
                        name,
                        version,
                        sum(x.shape[0] for x in arrays),
                        exc,
                    )
                    upstream = f"{name}-{version}"
                    self.models.stop_merging(upstream, info)
                    results = ["alone"] * len(items)
            elif err is not None and err[0] in ("upstream_4xx", "upstream_5xx"):
                # the model refused the batch: one request may be to blame, so each goes alone
                results = ["alone"] * len(items)
            else:  # timeout or unreachable: the same for every request of the batch
                assert err is not None
                results = [err] * len(items)
        except BaseException as exc:  # a bug or cancellation: nobody may wait forever
            results = [("internal", 500, f"internal gateway error: {type(exc).__name__}")] * len(
                items
            )
            if not isinstance(exc, Exception):
                raise
            logger.exception("merged upstream call to %s-%s failed", name, version)
        finally:
            for (_, fut), result in zip(items, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
            self._release(batcher, name, version, info)


def merged_answer(
    plan: tuple[tuple[str, bool], ...],
    parts: dict[str, OutputPart],
    name: str,
    version: str,
    request_id: str | None,
    trace: str,
) -> tuple[bytes, int | None, np.ndarray | None]:
    """One request's answer rebuilt from its rows of a merged call, and the rows to log."""
    body, hlen = answer(
        plan,
        parts,
        model_name=name,
        model_version=version,
        request_id=request_id,
        parameters={"lockgate_trace_id": trace},
    )
    out = parts.get(OUTPUT_NAME)
    logged = None
    if out is not None and out.datatype == "FP32":
        logged = np.frombuffer(out.data, dtype="<f4").reshape(out.shape[0], -1)
    return body, hlen, logged
