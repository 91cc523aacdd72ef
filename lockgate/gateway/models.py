"""What the gateway knows of each upstream model: its input width, outputs and feature contract.

:class:`ModelDirectory` reads an upstream model's KServe metadata (``INPUT__0`` FP32 ``[n, d]``,
its outputs), its ``max_batch_size`` (whether requests for it may be merged) and, with a Triton
model repository, its named-feature contract (``wire.json``, :mod:`lockgate.gateway.named_inputs`)
once, shares one lookup among concurrent requests, and caches the answer as a
:class:`~lockgate.gateway.kserve.ModelInfo` until the model's route changes or the upstream
answers 404 for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lockgate.gateway.coalesce import FIXED_DTYPES
from lockgate.gateway.errors import ReplyError, UpstreamError
from lockgate.gateway.kserve import INPUT_NAME, ModelInfo, upstream_error_text
from lockgate.gateway.named_inputs import FeatureContract
from lockgate.gateway.upstream import Upstream

__all__ = ["ModelDirectory", "same_contract"]

logger = logging.getLogger("lockgate.gateway")


class ModelDirectory:
    """Upstream models' :class:`ModelInfo`, fetched once per model and cached.

    Args:
        upstream: returns the upstream client (raises while the gateway is not started).
        timeout_s: the gateway's upstream timeout (metadata calls take at most 10 s of it).
        model_repository: the Triton model repository with each version's ``wire.json``.
        merge: whether requests may be merged at all (reads ``max_batch_size`` only then).
    """

    def __init__(
        self,
        upstream: Callable[[], Upstream],
        *,
        timeout_s: float,
        model_repository: Path | str | None,
        merge: bool,
    ) -> None:
        self._upstream = upstream
        self.timeout_s = timeout_s
        self.model_repository = model_repository
        self.merge = merge
        self._info: dict[str, ModelInfo] = {}
        self._info_pending: dict[str, asyncio.Future[ModelInfo]] = {}

    def forget(self, upstream_name: str) -> None:
        """Drop the cached contract of one upstream model (read again on next use)."""
        self._info.pop(upstream_name, None)

    async def get(self, upstream_name: str) -> ModelInfo:
        """The contract of one upstream model: fetched once, cached until its route changes."""
        info = self._info.get(upstream_name)
        if info is not None:
            return info
        pending = self._info_pending.get(upstream_name)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[ModelInfo] = asyncio.get_running_loop().create_future()
        self._info_pending[upstream_name] = fut
        try:
            info = await self._fetch_info(upstream_name)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._info_pending.pop(upstream_name, None)
        fut.set_result(info)
        self._info[upstream_name] = info
        return info

    async def _fetch_info(self, upstream_name: str) -> ModelInfo:
        resp = await self._upstream().request(
            "GET", f"/v2/models/{upstream_name}", timeout_s=min(self.timeout_s, 10)
        )
        if resp.status == 404 or (resp.status == 400 and b"unknown model" in resp.body):
            raise ReplyError(
                404,
                f"upstream model {upstream_name!r} is not served ({upstream_error_text(resp)}); "
                "load that version on the model server or fix the route",
            )
        if resp.status != 200:
            raise UpstreamError(
                f"upstream metadata of {upstream_name!r} failed with HTTP {resp.status}: "
                f"{upstream_error_text(resp)}",
                status=502,
            )
        try:
            meta = json.loads(resp.body)
            spec = next(i for i in meta["inputs"] if i["name"] == INPUT_NAME)
            shape = spec["shape"]
            dtype = spec["datatype"]
        except (ValueError, KeyError, TypeError, StopIteration):
            raise UpstreamError(
                f"upstream model {upstream_name!r} has no input {INPUT_NAME!r} in its metadata; "
                f"served models must take {INPUT_NAME} FP32 [batch, d]",
                status=502,
            ) from None
        if dtype != "FP32":
            raise UpstreamError(
                f"upstream model {upstream_name!r} declares {INPUT_NAME} as {dtype}, not FP32; "
                "re-export the model with an FP32 input",
                status=502,
            )
        width = int(shape[-1]) if shape else -1
        outputs = meta.get("outputs")
        names = tuple(
            o["name"]
            for o in outputs or ()
            if isinstance(o, dict) and isinstance(o.get("name"), str)
        )
        fixed = bool(names) and all(
            isinstance(o, dict) and o.get("datatype") in FIXED_DTYPES for o in outputs
        )
        max_batch = 0
        if fixed and self.merge:
            max_batch = await self._max_batch(upstream_name)
        contract, no_contract = await self._contract(upstream_name, width)
        return ModelInfo(
            width=width,
            max_batch=max_batch,
            outputs=names,
            contract=contract,
            no_contract=no_contract,
        )

    async def _contract(self, upstream_name: str, width: int) -> tuple[FeatureContract | None, str]:
        """The version's named-feature contract from its ``wire.json``, or why there is none."""
        repo = self.model_repository
        if repo is None:
            return None, (
                "the gateway was started without --model-repository, so it knows no wire schema "
                f"for {upstream_name}"
            )
        try:  # a thread: the repository may be on a network file system
            contract = await asyncio.to_thread(FeatureContract.load, repo, upstream_name)
        except (OSError, ValueError) as exc:  # SchemaError is a ValueError
            logger.warning("no named-feature contract for %s: %s", upstream_name, exc)
            return None, f"the wire schema of {upstream_name} is unreadable ({exc})"
        if contract is None:
            return None, f"{repo} has no {upstream_name}/1/wire.json"
        if width not in (-1, contract.width):
            logger.warning(
                "wire.json of %s has %d features but the model takes %d; named features refused",
                upstream_name,
                contract.width,
                width,
            )
            return None, (
                f"the wire schema of {upstream_name} has {contract.width} features but the "
                f"model takes {width}"
            )
        return contract, ""

    async def _max_batch(self, upstream_name: str) -> int:
        """The model's ``max_batch_size`` from its config (0 if unknown: never coalesce)."""
        try:
            resp = await self._upstream().request(
                "GET",
                f"/v2/models/{upstream_name}/config",
                timeout_s=min(self.timeout_s, 10),
            )
            value = json.loads(resp.body).get("max_batch_size") if resp.status == 200 else 0
        except (UpstreamError, ValueError, AttributeError):
            return 0
        return value if isinstance(value, int) and value > 0 else 0

    async def get_or_none(self, upstream_name: str) -> ModelInfo | None:
        """The contract of one upstream model, or None when it cannot be had."""
        try:
            return await self.get(upstream_name)
        except (ReplyError, UpstreamError):
            return None

    def stop_merging(self, upstream_name: str, info: ModelInfo) -> None:
        """Never merge requests for this model again (its merged answers could not be split)."""
        if self._info.get(upstream_name) is info:
            self._info[upstream_name] = replace(info, max_batch=0)


def same_contract(a: ModelInfo, b: ModelInfo) -> bool:
    """Whether two versions encode named features alike (the same wire schema)."""
    return a.contract is not None and b.contract is not None and a.contract == b.contract
