"""The KServe v2 codec of the gateway: requests in, answers out, JSON and binary tensors.

:func:`parse_request` reads a client's infer body (JSON, or the binary tensor extension with
``Inference-Header-Content-Length``), checks it against the routed version's
:class:`ModelInfo` (the ``INPUT__0`` width, or the named-feature contract) and returns the rows
to forward and log; :func:`rewrite_response` gives an upstream answer the public model name, the
lockgate version and the trace id, and returns the output rows; the rest builds error bodies and
messages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import rapidjson

from lockgate.gateway.errors import ViolationError
from lockgate.gateway.named_inputs import FeatureContract, FeatureInputError, is_wire_request
from lockgate.gateway.upstream import UpstreamResponse

__all__ = [
    "DIGITS_RE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ModelInfo",
    "bad_name",
    "dumps_compact",
    "error_body",
    "no_route",
    "parse_request",
    "response_header",
    "rewrite_response",
    "upstream_error_text",
]

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"


DIGITS_RE = re.compile(r"[0-9]{1,10}\Z")


_JSON_CT = (b"content-type", b"application/json")
dumps_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# about twice as fast as the standard library on the hot path (python-rapidjson, a dependency)
_fast_loads: Callable[[bytes], Any] = rapidjson.loads
_fast_dumps: Callable[[Any], str] = rapidjson.dumps


@dataclass(frozen=True, slots=True)
class ModelInfo:
    width: int  # d of INPUT__0 ([n, d]); -1 if the upstream accepts any width
    max_batch: int = 0  # rows one merged request may carry; 0: never coalesce
    outputs: tuple[str, ...] = ()  # the model's outputs (all of fixed item size if max_batch)
    contract: FeatureContract | None = None  # named features (its wire.json), if known
    no_contract: str = ""  # why there is none (said to clients that send named features)


def parse_request(
    body: bytes, ihcl: str | None, info: ModelInfo, name: str, version: str
) -> tuple[str | None, np.ndarray, dict[str, Any], bool]:
    """Check one KServe v2 infer request against the contract.

    Returns:
        (id, FP32 wire rows, header, named): ``named`` when the rows were encoded from named
        features (a :class:`FeatureInputError` if they break that contract), else the request
        is the wire tensor ``INPUT__0`` (a :class:`ViolationError` if it breaks that one).
    """
    width = info.width
    hlen = len(body) if ihcl is None else _header_length(ihcl, len(body))
    try:
        header = _fast_loads(body[:hlen] if hlen < len(body) else body)
    except (ValueError, TypeError) as exc:
        where = (
            "request body"
            if ihcl is None
            else f"JSON header (the first {hlen} bytes, per Inference-Header-Content-Length)"
        )
        raise ViolationError(
            f"{where} is not valid JSON ({exc}); rule: a KServe v2 request is a JSON object "
            "with 'inputs'; fix: send valid JSON"
            + ("" if ihcl is None else " and the header's exact byte length")
        ) from None
    if not isinstance(header, dict):
        raise ViolationError("request body must be a JSON object with 'inputs'")
    rid = header.get("id")
    request_id = rid if isinstance(rid, str) else None
    inputs = header.get("inputs")
    if info.contract is not None and not is_wire_request(inputs):
        rows = info.contract.encode(inputs, body, hlen, model=f"{name} version {version}")
        return request_id, rows, header, True
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ViolationError(
            f"request must have exactly one input {INPUT_NAME!r} (got "
            f"{len(inputs) if isinstance(inputs, list) else 'no'} inputs); named features "
            f"need the version's wire schema, which is unknown: {info.no_contract}"
        )
    spec = inputs[0]
    if spec.get("name") != INPUT_NAME:
        raise ViolationError(
            f"input name {spec.get('name')!r} is not {INPUT_NAME!r}; rename it (named features "
            f"need the version's wire schema, which is unknown: {info.no_contract})"
        )
    if spec.get("datatype") != "FP32":
        raise ViolationError(
            f"input {INPUT_NAME} has datatype {spec.get('datatype')!r}; send FP32 (float32)"
        )
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        or shape[0] < 1
        or shape[1] < 1
    ):
        raise ViolationError(
            f"input {INPUT_NAME} has shape {shape!r}; send [batch, d] with batch >= 1"
        )
    n, d = shape
    if width >= 0 and d != width:
        raise ViolationError(
            f"input {INPUT_NAME} has {d} features per row; this model takes {width}"
        )
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise ViolationError("input 'parameters' must be a JSON object")
    if "shared_memory_region" in params:
        raise ViolationError(
            "shared-memory inputs cannot pass the gateway; send the data in the body"
        )
    size = params.get("binary_data_size")
    if size is not None:
        if size != n * d * 4 or hlen + size > len(body):
            raise ViolationError(
                f"binary_data_size={size!r} must be {n * d * 4} bytes for shape {shape} FP32 and "
                f"fit the body ({len(body) - hlen} bytes after the JSON header)"
            )
        arr = np.frombuffer(body, dtype="<f4", count=n * d, offset=hlen).reshape(n, d)
    else:
        data = spec.get("data")
        if not isinstance(data, list):
            raise ViolationError(f"input {INPUT_NAME} has no 'data' list and no binary_data_size")
        try:
            raw = np.asarray(data)
        except ValueError:
            raise ViolationError(
                f"input {INPUT_NAME} data is ragged; send {n}x{d} numbers"
            ) from None
        if raw.dtype.kind not in "iuf":
            raise ViolationError(_not_numbers(data))
        if raw.size != n * d:
            raise ViolationError(
                f"input {INPUT_NAME} has {raw.size} values for shape {shape}; send {n * d}"
            )
        with np.errstate(over="ignore"):
            arr = raw.astype(np.float32).reshape(n, d)
    infinite = np.isinf(arr)  # NaN is allowed: it is how the wire format says "missing"
    if infinite.any():
        bad = int(infinite.sum())
        raise ViolationError(
            f"input {INPUT_NAME} has {bad} infinite value(s) (inf or beyond FP32 range); rule: "
            "values are finite, NaN marks a missing value; fix: clip or drop them"
        )
    if info.contract is not None:  # categorical columns must hold codes (else a model error)
        try:
            info.contract.check_wire(arr, model=f"{name} version {version}")
        except FeatureInputError as exc:
            raise ViolationError(str(exc)) from None
    return request_id, arr, header, False


def _not_numbers(data: list[Any]) -> str:
    """Why JSON ``data`` of the wire tensor is not all numbers, and how to send a missing value."""

    def flat(values: list[Any]) -> Iterator[Any]:  # a stack, not recursion: any nesting depth
        stack = [iter(values)]
        while stack:
            for v in stack[-1]:
                if isinstance(v, list):
                    stack.append(iter(v))
                    break
                yield v
            else:
                stack.pop()

    at, bad = next(
        (
            (i, v)
            for i, v in enumerate(flat(data))
            if isinstance(v, bool) or not isinstance(v, int | float)
        ),
        (0, None),
    )
    what = "null" if bad is None else f"{type(bad).__name__} {str(bad)[:40]!r}"
    return (
        f"input {INPUT_NAME} data holds a JSON {what} at flat position {at}; rule: "
        f"{INPUT_NAME} data is numbers only (no null, strings or booleans); fix: send a missing "
        "value as NaN, which JSON cannot carry, so send the tensor as binary data "
        "(tritonclient's default, binary_data=True) with NaN in it, or send the features by "
        "name, where JSON null means missing (GET /v2/models/<name> lists them)"
    )


def _header_length(ihcl: str, body_len: int) -> int:
    """The ``Inference-Header-Content-Length`` as a number of bytes, checked strictly.

    Plain decimal digits only: Python's ``int`` would also take ``"24_5"``, ``" 24"`` or
    ``"+24"``, which the model server refuses (the gateway forwards the length it checked).
    """
    if not DIGITS_RE.match(ihcl) or not 0 < int(ihcl) <= body_len:
        raise ViolationError(
            f"header Inference-Header-Content-Length={ihcl[:40]!r} is invalid; rule: the byte "
            f"length of the request's JSON header, plain decimal digits between 1 and the body's "
            f"{body_len} bytes; fix: send len(json_header) (tritonclient sets it for you), or "
            "drop the header for an all-JSON body"
        )
    return int(ihcl)


def response_header(resp: UpstreamResponse) -> tuple[dict[str, Any], int, bool]:
    """An upstream answer's JSON header, its length, and whether binary data follows it."""
    ihcl = resp.headers.get("inference-header-content-length")
    if ihcl is None:
        return _fast_loads(resp.body), len(resp.body), False
    hlen = int(ihcl)
    return _fast_loads(resp.body[:hlen]), hlen, True


def rewrite_response(
    resp: UpstreamResponse, name: str, version: str, trace: str
) -> tuple[bytes, int | None, np.ndarray | None]:
    """Present the public name, add the trace id; return (body, header length, outputs)."""
    header, hlen, binary = response_header(resp)
    body = resp.body
    outputs: np.ndarray | None = None
    off = hlen
    for out in header.get("outputs") or ():
        params = out.get("parameters") or {}
        size = params.get("binary_data_size")
        if out.get("name") == OUTPUT_NAME and out.get("datatype") == "FP32":
            shape = out.get("shape") or [0]
            n = math.prod(shape)
            if size is not None:
                arr = np.frombuffer(body, dtype="<f4", count=n, offset=off)
            else:
                arr = np.asarray(out.get("data"), dtype=np.float32).reshape(-1)
            outputs = (
                arr.reshape(shape[0], -1) if len(shape) >= 1 and shape[0] else arr.reshape(-1, 1)
            )
        if size is not None:
            off += int(size)
    header["model_name"] = name
    header["model_version"] = version
    params = header.get("parameters")
    if not isinstance(params, dict):
        params = {}
    params["lockgate_trace_id"] = trace
    header["parameters"] = params
    new_header = _fast_dumps(header).encode()
    if binary:
        return new_header + body[hlen:], len(new_header), outputs
    return new_header, None, outputs


def upstream_error_text(resp: UpstreamResponse) -> str:
    try:
        err = json.loads(resp.body).get("error")
        if isinstance(err, str):
            return err
    except (ValueError, AttributeError):
        pass
    text = resp.body[:500].decode("utf-8", "replace")
    return f"upstream HTTP {resp.status}: {text}" if text else f"upstream HTTP {resp.status}"


def bad_name(name: str) -> str:
    return (
        f"model name {name[:80]!r} is invalid; use 1-128 characters from letters, digits, '_' "
        "and '.', starting with a letter or digit (the pipeline name, e.g. 'fraud_lgbm')"
    )


def no_route(name: str) -> str:
    return (
        f"model {name!r} has no route; set one with PUT /admin/routes/{name} "
        '(e.g. {"mode": "single", "champion": "<version>"})'
    )


def error_body(message: str) -> bytes:
    return dumps_compact({"error": message}).encode()
