"""Coalescing: concurrent KServe v2 infer requests for one model sent upstream as one batch.

A python-backend or small-GPU model on Triton costs about the same per ``execute`` call whether
it gets one row or sixty-four, so under load most of a model server's time goes to the per-call
overhead. The gateway sees every request before the model server does; when it already has
``coalesce_inflight`` calls in flight to one upstream model, it queues the next requests and,
as soon as a call returns, sends everything queued as **one** request (rows concatenated, up to
the model's ``max_batch_size``), then cuts the answer back into one answer per client. Nothing
waits for a batch to fill: at light load every request goes upstream on its own, unchanged, and
the added latency is zero; under load requests wait at the gateway instead of in the model
server's queue, where they would have waited anyway.

This module holds the pure parts, unit-tested on their own: which requests may be merged (a
request whose answer the gateway can rebuild exactly; anything else goes upstream on its own),
the merged request, the split of the merged answer and the per-client answer, in the JSON or
binary form the client asked for. The queue and the calls live in
:mod:`lockgate.gateway.merge_queue`.

Only models whose rows are independent may be coalesced; Triton's own dynamic batcher makes the
same assumption for any model with ``max_batch_size > 0``, which is the rule used here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FIXED_DTYPES",
    "OutputPart",
    "Plan",
    "answer",
    "merged_request",
    "plan_of",
    "split_response",
]

#: KServe v2 datatypes of fixed item size and their little-endian numpy types (BYTES and BF16
#: are not split: a model with such an output is never coalesced).
FIXED_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}

#: How one client wants its answer: (output name, binary?) in answer order.
Plan = tuple[tuple[str, bool], ...]

_HEADER_KEYS = frozenset(("id", "inputs", "outputs", "parameters"))
_INPUT_KEYS = frozenset(("name", "shape", "datatype", "parameters", "data"))
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class OutputPart:
    """One client's rows of one output of a merged answer."""

    name: str
    datatype: str
    shape: tuple[int, ...]  # the client's shape: (its rows, *the output's row shape)
    data: bytes  # little-endian, row-major


def plan_of(header: Mapping[str, Any], outputs: Sequence[str]) -> Plan | None:
    """Which outputs, in which form, a checked infer request asks for; None if it cannot merge.

    ``header`` is the request's JSON header, already checked by the gateway (one input, FP32
    ``[n, d]``); ``outputs`` are the model's output names (all of fixed item size). A request
    merges when every option it sets is one the gateway reproduces exactly: ``id``, the
    ``binary_data_output`` parameter, an ``outputs`` list of known names with at most a
    ``binary_data`` parameter each, and an input with at most ``binary_data_size``. Anything
    else (classification, priorities, timeouts, sequence or shared-memory options, unknown
    keys) returns None and the request goes upstream on its own, as the client wrote it.
    """
    if not header.keys() <= _HEADER_KEYS or not isinstance(header.get("id", ""), str):
        return None
    binary = _flag(header.get("parameters"), "binary_data_output", False)
    if binary is None:
        return None
    spec = header["inputs"][0]
    if not spec.keys() <= _INPUT_KEYS:
        return None
    in_params = spec.get("parameters")
    if in_params is not None and (
        not isinstance(in_params, dict) or not in_params.keys() <= {"binary_data_size"}
    ):
        return None
    wanted = header.get("outputs")
    if wanted is None:
        return tuple((name, binary) for name in outputs)
    if not isinstance(wanted, list) or not wanted:
        return None
    plan: list[tuple[str, bool]] = []
    for out in wanted:
        if not isinstance(out, dict) or not out.keys() <= {"name", "parameters"}:
            return None
        name = out.get("name")
        if not isinstance(name, str) or name not in outputs or any(name == s for s, _ in plan):
            return None
        as_binary = _flag(out.get("parameters"), "binary_data", binary)
        if as_binary is None:
            return None
        plan.append((name, as_binary))
    return tuple(plan)


def _flag(params: object, key: str, default: bool) -> bool | None:
    """``params[key]`` of a parameters object that may set only that boolean; None if it sets
    anything else (or is not an object)."""
    if params is None:
        return default
    if not isinstance(params, dict) or not params.keys() <= {key}:
        return None
    flag = params.get(key, default)
    return flag if isinstance(flag, bool) else None


def merged_request(input_name: str, parts: Sequence[np.ndarray]) -> tuple[bytes, int]:
    """One infer request for the rows of all ``parts`` (FP32 ``[n_i, d]``, the same ``d``).

    Returns:
        (body, JSON header length): binary input, every output asked for in binary form.
    """
    data = np.concatenate(parts) if len(parts) > 1 else parts[0]
    raw = np.ascontiguousarray(data, dtype="<f4").tobytes()
    head = _dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(data.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + raw, len(head)


def split_response(
    header: Mapping[str, Any], body: bytes, offset: int, rows: Sequence[int]
) -> list[dict[str, OutputPart]]:
    """Cut a merged answer into one ``{output name: part}`` per client, in ``rows`` order.

    Args:
        header: the answer's JSON header.
        body: the whole answer body; binary outputs start at ``offset``.
        offset: length of the JSON header (where binary data begins).
        rows: the number of rows each client sent, in the order they were merged.

    Raises:
        ValueError: the answer does not fit the merged request (an output not in binary form,
            of a datatype without fixed item size, or whose first dimension is not the total
            number of rows).
    """
    total = sum(rows)
    parts: list[dict[str, OutputPart]] = [{} for _ in rows]
    off = offset
    for out in header.get("outputs") or ():
        name = out.get("name")
        datatype = out.get("datatype")
        shape = out.get("shape")
        size = (out.get("parameters") or {}).get("binary_data_size")
        dtype = FIXED_DTYPES.get(datatype)
        if dtype is None:
            raise ValueError(f"output {name!r} has datatype {datatype!r}, not one of fixed size")
        if not isinstance(size, int) or not isinstance(shape, list) or not shape:
            raise ValueError(f"output {name!r} is not in binary form with a shape")
        if shape[0] != total:
            raise ValueError(f"output {name!r} has shape {shape} for a batch of {total} rows")
        tail = tuple(int(s) for s in shape[1:])
        row_bytes = dtype.itemsize * math.prod(tail)
        if size != row_bytes * total or off + size > len(body):
            raise ValueError(
                f"output {name!r} has binary_data_size={size}; shape {shape} {datatype} "
                f"needs {row_bytes * total} bytes"
            )
        at = off
        for i, n in enumerate(rows):
            parts[i][name] = OutputPart(name, datatype, (n, *tail), body[at : at + n * row_bytes])
            at += n * row_bytes
        off += size
    return parts


def answer(
    plan: Plan,
    parts: Mapping[str, OutputPart],
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    parameters: Mapping[str, Any],
) -> tuple[bytes, int | None]:
    """The answer to one client: what the model server would have sent it, alone.

    Returns:
        (body, JSON header length if any output is binary, else None).

    Raises:
        ValueError: an output the plan names is missing from the merged answer.
    """
    outs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in plan:
        part = parts.get(name)
        if part is None:
            raise ValueError(f"the model's answer has no output {name!r}")
        out: dict[str, Any] = {"name": name, "datatype": part.datatype, "shape": list(part.shape)}
        if binary:
            out["parameters"] = {"binary_data_size": len(part.data)}
            blobs.append(part.data)
        else:
            out["data"] = np.frombuffer(part.data, dtype=FIXED_DTYPES[part.datatype]).tolist()
        outs.append(out)
    header: dict[str, Any] = {}
    if request_id is not None:
        header["id"] = request_id
    header["model_name"] = model_name
    header["model_version"] = model_version
    header["parameters"] = dict(parameters)
    header["outputs"] = outs
    head = _dumps(header).encode()
    if not blobs:
        return head, None
    return b"".join((head, *blobs)), len(head)
