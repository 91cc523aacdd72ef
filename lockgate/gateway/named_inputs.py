"""Named-feature infer requests: the serving contract clients use.

Clients call a pipeline's public model at the gateway with its **features by name**, one KServe
v2 input per feature, and the gateway encodes them into the wire matrix (:mod:`lockgate.serving.wire`)
with the wire schema of the version it routes the request to; the model server sees the same
``INPUT__0`` as before. The wire format stays internal. This module holds the pure parts,
unit-tested on their own: the contract of one served version (:class:`FeatureContract`), the
decoding of a request's inputs into the wire matrix, the request the gateway forwards, and the
inputs model metadata lists. The gateway (:mod:`lockgate.gateway.models`) finds the schema of a version
in the Triton model repository it was written to (``<repo>/<pipeline>-<version>/1/wire.json``,
on the GPU target ``<repo>/<pipeline>-<version>-wire/1/wire.json``) and caches it per version.

The contract, per feature of the version's wire schema
    * one input named after the feature, every feature exactly once, no other input;
    * numeric feature: datatype ``FP32`` (listed in metadata; the wire carries float32), or
      ``FP64``, ``FP16``, ``INT8``..``INT64``, ``UINT8``..``UINT64``, ``BOOL``; JSON numbers
      (or booleans) whatever the numeric datatype, ``null`` or ``NaN`` for missing;
    * categorical feature: datatype ``BYTES``, UTF-8 strings of at most
      :data:`MAX_VALUE_BYTES` bytes, JSON ``null`` for missing; a number is refused (send
      ``"3"``, the string the training data held);
    * shape ``[n]`` or ``[n, 1]``, the same ``n`` for every feature, ``1 <= n <=``
      :data:`MAX_ROWS`;
    * JSON ``data`` (flat or nested) or binary data (``parameters.binary_data_size``, the
      KServe binary tensor extension ``tritonclient`` uses by default; ``BYTES`` elements are a
      4-byte little-endian length and the bytes). Binary ``BYTES`` has no null: a value the
      model never saw is scored like a missing one, but the prediction log then records the
      string's code, not "missing"; send such rows as JSON to record them as missing.

The matrix is exactly what :func:`lockgate.serving.wire.encode` builds from a DataFrame holding the same
values (numbers as float32, strings as ``code24``, missing as NaN), so the prediction log, drift
and feedback see the same rows whichever form a client used. A request that sends the single
input ``INPUT__0`` is the wire matrix itself and is not decoded here.

Work per request is bounded: at most one pass over the inputs (an unknown or repeated name ends
it), :data:`MAX_ROWS` rows, :data:`MAX_VALUE_BYTES` per string, memory proportional to the body
until every feature has arrived.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from lockgate.errors import DataError, SchemaError
from lockgate.gateway.coalesce import FIXED_DTYPES
from lockgate.serving.triton_config import INPUT_NAME, TRITON_VERSION
from lockgate.serving.wire import CODE_LIMIT, WIRE_FILE, WireSchema, code24

__all__ = [
    "CATEGORICAL_DATATYPES",
    "MAX_ROWS",
    "MAX_VALUE_BYTES",
    "NUMERIC_DATATYPES",
    "FeatureContract",
    "FeatureInputError",
    "input_rows",
    "is_wire_request",
    "wire_request",
]

MAX_ROWS = 65_536
"""Most rows one named-feature request may carry."""
MAX_VALUE_BYTES = 1024
"""Longest categorical value, in UTF-8 bytes."""
NUMERIC_DATATYPES = frozenset(FIXED_DTYPES)
"""KServe datatypes a numeric feature may be sent as (``BOOL``, integers, ``FP16/32/64``)."""
CATEGORICAL_DATATYPES = frozenset({"BYTES"})
"""KServe datatypes a categorical feature may be sent as."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NAN = float("nan")
_INF = float("inf")
_SMALL = 64  # rows up to which JSON values are checked in Python rather than through numpy
_LENGTH = struct.Struct("<I")
_MAX_SCHEMA_BYTES = 1 << 20
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class FeatureInputError(DataError):
    """A named-feature request breaks the serving contract (the gateway answers 400).

    The client's fault, whichever version it was routed to: it never counts as an error or a
    schema violation of that version.
    """


@functools.lru_cache(maxsize=8192)
def _code_of_str(value: str) -> float:
    return float(code24(value))


@functools.lru_cache(maxsize=8192)
def _code_of_bytes(value: bytes) -> float:
    value.decode("utf-8")  # refuses invalid UTF-8 (a UnicodeDecodeError is not cached)
    return float(int.from_bytes(hashlib.sha256(value).digest()[:3], "big"))


def _object_reader(url: str) -> Any:
    """``read(key) -> bytes`` (at most 1 MiB + 1) under the repository URL ``url``; raises
    FileNotFoundError for a missing object. The filesystem is opened once per URL."""
    from lockgate._util.objectstore import ObjectStoreLocation

    # keyed by what the SDK's chain reads too: the same URL on another server is another place
    key = (url, *(os.environ.get(f"AWS_{n}") for n in ("ENDPOINT_URL", "ACCESS_KEY_ID")))
    location = _OBJECT_REPOSITORIES.get(key)
    if location is None:
        location = _OBJECT_REPOSITORIES.setdefault(key, ObjectStoreLocation(url=url))
    fs, root = location.filesystem()

    def read(key: str) -> bytes:
        with fs.open(f"{root.rstrip('/')}/{key}", "rb") as handle:
            return bytes(handle.read(_MAX_SCHEMA_BYTES + 1))

    return read


_OBJECT_REPOSITORIES: dict[tuple[str | None, ...], Any] = {}
"""Object-store repositories by URL, endpoint and key (their filesystems are opened once)."""


@dataclass(frozen=True)
class FeatureContract:
    """The named-feature contract of one served version: its wire schema.

    Attributes:
        schema: The wire schema the version is served with (its ``wire.json``).

    Example:
        >>> contract = FeatureContract(WireSchema.of([("amount", "numeric"),
        ...                                           ("plan", "categorical")]))
        >>> head = {"inputs": [
        ...     {"name": "plan", "datatype": "BYTES", "shape": [2], "data": ["pro", None]},
        ...     {"name": "amount", "datatype": "FP64", "shape": [2, 1], "data": [[1.5], [None]]}]}
        >>> x = contract.encode(head["inputs"], b"", 0, model="churn version v1")
        >>> x.shape, float(x[0, 0]), int(x[0, 1]) == code24("pro"), bool(np.isnan(x[1]).all())
        ((2, 2), 1.5, True, True)
    """

    schema: WireSchema
    _index: dict[str, tuple[int, bool]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Indexes the features by name."""
        if not isinstance(self.schema, WireSchema):
            raise SchemaError(
                f"schema is a {type(self.schema).__name__}; rule: a WireSchema; fix: use "
                "WireSchema.from_json(wire.json)"
            )
        index = {c.name: (j, c.kind == "categorical") for j, c in enumerate(self.schema.columns)}
        object.__setattr__(self, "_index", index)

    @classmethod
    def load(cls, model_repository: str | Path, model_name: str) -> FeatureContract | None:
        """The contract of a served Triton model from the model repository it was written to.

        Args:
            model_repository: The Triton model repository: a folder, or the object-store URL
                it was written to (``s3://bucket/prefix``, credentials and endpoint from the
                ``AWS_*`` variables, as Triton reads it).
            model_name: The served model name (``<pipeline>-<version>``).

        Returns:
            The contract from ``<model_name>/1/wire.json`` (CPU target) or
            ``<model_name>-wire/1/wire.json`` (GPU ensemble), or None when neither exists.

        Raises:
            SchemaError: When the file is larger than 1 MiB or not a wire schema.
            OSError: The object store is unreachable or refuses the credentials.
        """
        read = _object_reader(str(model_repository)) if "://" in str(model_repository) else None
        base = str(model_repository).rstrip("/") if read else Path(model_repository)
        for folder in (model_name, f"{model_name}-wire"):
            path = f"{base}/{folder}/{TRITON_VERSION}/{WIRE_FILE}"
            try:
                if read is not None:
                    data = read(f"{folder}/{TRITON_VERSION}/{WIRE_FILE}")
                else:
                    with open(path, "rb") as handle:
                        data = handle.read(_MAX_SCHEMA_BYTES + 1)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if len(data) > _MAX_SCHEMA_BYTES:
                raise SchemaError(
                    f"{path} is larger than {_MAX_SCHEMA_BYTES} bytes; rule: a wire schema as "
                    "lockgate writes it; fix: write the model folder again with lockgate"
                )
            try:
                return cls(WireSchema.from_json(data))
            except SchemaError as exc:
                raise SchemaError(f"{path}: {exc}") from None
        return None

    @property
    def width(self) -> int:
        """``F``: the number of features (columns of the wire matrix)."""
        return self.schema.width

    def metadata_inputs(self) -> list[dict[str, Any]]:
        """The inputs model metadata lists: one per feature, in wire order.

        Returns:
            ``{"name", "datatype": "FP32" | "BYTES", "shape": [-1]}`` per feature.
        """
        return [
            {
                "name": c.name,
                "datatype": "BYTES" if c.kind == "categorical" else "FP32",
                "shape": [-1],
            }
            for c in self.schema.columns
        ]

    def metadata_note(self) -> str:
        """The note model metadata carries about the inputs it lists."""
        return (
            "inputs are the model's features by name, one KServe v2 input each: numeric as FP32 "
            "(also FP64, FP16, INT8-64, UINT8-64, BOOL), categorical as BYTES (UTF-8), shape [n] "
            "or [n, 1], JSON or binary data, JSON null (or NaN) for a missing value; the gateway "
            f"encodes them into the internal wire tensor {INPUT_NAME} FP32 [n, {self.width}], "
            "which is still accepted alone"
        )

    def encode(self, inputs: object, body: bytes, offset: int, *, model: str) -> np.ndarray:
        """Decodes a request's named inputs into the wire matrix.

        Args:
            inputs: The request header's ``inputs``.
            body: The whole request body (binary tensor data follows the JSON header).
            offset: Where binary data begins (the JSON header's length).
            model: How messages name the model, e.g. ``"churn version v1"``.

        Returns:
            A C-contiguous float32 matrix ``(n, F)`` in wire order, as
            :func:`lockgate.serving.wire.encode` builds it.

        Raises:
            FeatureInputError: For an unknown, repeated or missing feature, a wrong datatype
                or shape, mismatched row counts, a value of the wrong kind (a number for a
                categorical feature, a string for a numeric one), a value beyond float32's
                range, a string too long or not UTF-8, or binary data that does not fit.
        """
        if type(inputs) is not list or not inputs:
            raise FeatureInputError(
                f"the request to {model} has no inputs; rule: one input per feature "
                f"({self._listing()}); fix: send every feature as a named input"
            )
        index = self._index
        columns: list[Any] = [None] * self.width
        seen = 0
        rows = 0
        first = ""
        off = offset
        small = True  # every column a list of Python numbers: one conversion at the end
        for spec in inputs:
            name = spec.get("name") if type(spec) is dict else None
            if not isinstance(name, str) or (found := index.get(name)) is None:
                raise FeatureInputError(self._unknown(spec, model))
            j, categorical = found
            if columns[j] is not None:
                raise FeatureInputError(
                    f"feature {name!r} is sent twice to {model}; rule: one input per feature; "
                    "fix: send each feature once, all rows in one tensor"
                )
            datatype = spec.get("datatype")
            if (datatype != "BYTES") if categorical else (datatype not in NUMERIC_DATATYPES):
                raise _wrong_datatype(name, datatype, categorical, model)
            shape = spec.get("shape")
            if type(shape) is list and len(shape) == 1 and type(shape[0]) is int:
                n = shape[0]
            else:
                n = input_rows(name, shape, model)
            if not 0 < n <= MAX_ROWS:
                n = input_rows(name, shape, model)
            if not rows:
                rows, first = n, name
            elif n != rows:
                raise FeatureInputError(
                    f"feature {name!r} has {n} rows but {first!r} has {rows}; rule: every feature "
                    "of a request has the same number of rows; fix: send one value per row for "
                    "each feature (null for a missing value)"
                )
            params = spec.get("parameters")
            size = None
            if params is not None:
                if type(params) is not dict:
                    raise FeatureInputError(
                        f"feature {name!r} has parameters {str(params)[:80]!r}; rule: a JSON "
                        "object; fix: send an object or leave it out"
                    )
                if "shared_memory_region" in params:
                    raise FeatureInputError(
                        f"feature {name!r} uses shared memory; rule: shared-memory inputs cannot "
                        "pass the gateway; fix: send the data in the request body"
                    )
                size = params.get("binary_data_size")
            column: np.ndarray | list[float]
            if size is not None:
                if type(size) is not int or size < 0 or off + size > len(body):
                    raise FeatureInputError(
                        f"feature {name!r} has binary_data_size={size!r}; rule: a byte count "
                        f"that fits the body ({len(body) - off} bytes left after the previous "
                        "inputs); fix: send the tensor's bytes after the JSON header, inputs in "
                        "order"
                    )
                if categorical:
                    column = _binary_strings(name, body, off, size, n)
                else:
                    column = _binary_numbers(name, cast(str, datatype), body, off, size, n)
                    if n <= _SMALL:
                        column = column.tolist()
                off += size
            else:
                data = spec.get("data")
                if type(data) is not list:
                    raise FeatureInputError(
                        f"feature {name!r} has no 'data' list and no binary_data_size; rule: "
                        "values in JSON 'data' or as binary tensor data; fix: send "
                        f'"data": [...] with {n} value(s)'
                    )
                flat = _flatten(name, data, n)
                column = _json_strings(name, flat) if categorical else _json_numbers(name, flat)
            if type(column) is not list:
                small = False
            columns[j] = column
            seen += 1
        if seen < self.width:
            missing = [
                c for c, got in zip(self.schema.columns, columns, strict=True) if got is None
            ]
            listed = ", ".join(f"{c.name!r} ({_kind_text(c.kind)})" for c in missing[:12])
            more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
            raise FeatureInputError(
                f"the request to {model} lacks feature(s) {listed}{more}; rule: every feature of "
                "the model is sent, one input each; fix: add them (null values mark missing "
                "ones)"
            )
        if small:  # column-major Python floats: one conversion
            values = np.array(columns, dtype=np.float64).reshape(self.width, rows).T
        else:
            values = np.empty((rows, self.width), dtype=np.float64)
            for j, column in enumerate(columns):
                values[:, j] = column
        beyond = np.abs(values) > _FLOAT32_MAX  # NaN (missing) compares False
        if beyond.any():
            j = int(np.argmax(beyond.any(axis=0)))
            bad = beyond[:, j]
            raise _beyond(self.schema.columns[j].name, int(bad.sum()), int(np.argmax(bad)))
        return np.ascontiguousarray(values, dtype=np.float32)

    def check_wire(self, rows: np.ndarray, *, model: str) -> None:
        """Refuses a wire matrix (a request's own ``INPUT__0``) whose categorical columns hold
        values that are no wire code.

        Args:
            rows: The FP32 ``[n, width]`` matrix.
            model: ``"<pipeline> version <v>"``, for the message.

        Raises:
            FeatureInputError: A categorical column holds a value that is not NaN and not an
                integer in ``[0, 2**24)``.
        """
        columns = [j for j, c in enumerate(self.schema.columns) if c.kind == "categorical"]
        if not columns or rows.ndim != 2 or rows.shape[1] != self.width:
            return
        x = rows[:, columns]
        with np.errstate(invalid="ignore"):
            ok = np.isnan(x) | ((x >= 0) & (x < CODE_LIMIT) & (x == np.floor(x)))
        if ok.all():
            return
        r, c = (int(v) for v in np.argwhere(~ok)[0])
        j = columns[c]
        raise FeatureInputError(
            f"{INPUT_NAME} column {j} ({self.schema.columns[j].name!r}) of {model} is "
            f"categorical, but row {r} holds {float(x[r, c])!r} ({int((~ok).sum())} such "
            "value(s)); rule: a categorical wire value is code24 of the string (an integer in "
            "[0, 2**24)) or NaN for missing; fix: send the features by name (the category as a "
            "BYTES string, null for missing) or build the matrix with lockgate.serving.wire.encode"
        )

    def _listing(self) -> str:
        names = [f"{c.name} ({_kind_text(c.kind)})" for c in self.schema.columns[:12]]
        more = f", ... {self.width - 12} more" if self.width > 12 else ""
        return ", ".join(names) + more

    def _unknown(self, spec: object, model: str) -> str:
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str):
            return (
                f"an input of the request to {model} is {str(spec)[:80]!r}; rule: every input is "
                'an object with a "name" (a feature), "datatype", "shape" and "data"; fix: send '
                "one such object per feature"
            )
        if name == INPUT_NAME:
            return (
                f"input {INPUT_NAME!r} came with other inputs; rule: send either the wire tensor "
                f"{INPUT_NAME} alone or the named features; fix: send the features by name only"
            )
        close = difflib.get_close_matches(name, list(self._index), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"input {name[:80]!r} is not a feature of {model}; {hint}rule: inputs are the "
            f"model's features ({self._listing()}); fix: rename or drop the input "
            f"(GET /v2/models/<name> lists them)"
        )


def _kind_text(kind: str) -> str:
    return "BYTES" if kind == "categorical" else "numeric"


def _wrong_datatype(
    name: str, datatype: object, categorical: bool, model: str
) -> FeatureInputError:
    if categorical and datatype in NUMERIC_DATATYPES:
        return FeatureInputError(
            f"feature {name!r} of {model} is categorical but was sent as {datatype}; rule: "
            "categorical values are strings, datatype BYTES; fix: send them as strings, "
            'e.g. "3" for 3, with datatype BYTES'
        )
    expected = "BYTES" if categorical else "FP32 (or FP64, INT32, INT64, BOOL, ...)"
    return FeatureInputError(
        f"feature {name!r} of {model} has datatype {str(datatype)[:40]!r}; rule: a "
        f"{'categorical' if categorical else 'numeric'} feature is sent as {expected}; fix: "
        f"set datatype {'BYTES' if categorical else 'FP32'}"
        + ("" if categorical else " and send numbers (null for missing)")
    )


def input_rows(name: str, shape: object, model: str, *, kind: str = "feature") -> int:
    """The row count of one input's ``shape``: ``[n]`` or ``[n, 1]``, ``1 <= n <= MAX_ROWS``.

    Args:
        kind: what the input is in the message: ``"feature"``, or ``"entity key"`` for the
            online-feature requests (:mod:`lockgate.gateway.online_features`).

    Raises:
        FeatureInputError: another shape, naming the input, the rule and the fix.
    """
    if (
        isinstance(shape, list)
        and len(shape) in (1, 2)
        and all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        and (len(shape) == 1 or shape[1] == 1)
        and 1 <= shape[0] <= MAX_ROWS
    ):
        return int(shape[0])
    per = "value" if kind == "feature" else "key"
    raise FeatureInputError(
        f"{kind} {name!r} of {model} has shape {str(shape)[:40]}; rule: [n] or [n, 1] with "
        f"1 <= n <= {MAX_ROWS}, one {per} per row; fix: send one tensor per {kind} with its "
        f"{per}s for all rows (split larger batches)"
    )


def _flatten(name: str, data: list[Any], n: int) -> list[Any]:
    """JSON data of shape [n] or [n, 1] (flat or nested) as a flat list of n values."""
    flat = data
    if data and isinstance(data[0], list):
        if not all(isinstance(row, list) and len(row) == 1 for row in data):
            raise FeatureInputError(
                f"feature {name!r} has nested data that is not one value per row; rule: "
                f"[v1, v2, ...] or [[v1], [v2], ...]; fix: send {n} value(s), one per row"
            )
        flat = [row[0] for row in data]
    if len(flat) != n:
        raise FeatureInputError(
            f"feature {name!r} has {len(flat)} value(s) for {n} row(s); rule: one value per row "
            "as its shape says; fix: send as many values as rows (null for a missing one)"
        )
    return flat


def _json_numbers(name: str, flat: list[Any]) -> np.ndarray | list[float]:
    """JSON numbers (booleans too), null for missing; the range is checked on the matrix."""
    if len(flat) <= _SMALL:  # the usual few rows: Python floats beat numpy conversions
        values: list[float] = []
        for i, v in enumerate(flat):
            if v is None:
                values.append(_NAN)
                continue
            kind = type(v)
            if kind is not float and kind is not int and kind is not bool:
                raise _not_a_number(name, i, v)
            try:
                values.append(float(v))
            except OverflowError:  # an integer beyond float64
                values.append(_INF)
        return values
    try:
        arr = np.asarray(flat)
    except (ValueError, TypeError):
        arr = np.asarray(flat, dtype=object)
    if arr.ndim == 1 and arr.dtype.kind in "biuf":
        return arr
    array = np.empty(len(flat), dtype=np.float64)  # null, huge integers or other kinds
    for i, v in enumerate(flat):
        if v is None:
            array[i] = np.nan
        elif isinstance(v, int | float):
            try:
                array[i] = float(v)
            except OverflowError:
                array[i] = np.inf
        else:
            raise _not_a_number(name, i, v)
    return array


def _not_a_number(name: str, row: int, value: object) -> FeatureInputError:
    return FeatureInputError(
        f"numeric feature {name!r} got {str(value)[:40]!r} ({type(value).__name__}) in row "
        f"{row}; rule: numeric features carry JSON numbers, null for missing; fix: send the "
        "number itself, not a string"
    )


def _beyond(name: str, count: int, row: int) -> FeatureInputError:
    return FeatureInputError(
        f"numeric feature {name!r} holds {count} value(s) that are infinite or beyond float32's "
        f"range (first in row {row}); rule: finite values within +-3.4e38, null or NaN for "
        "missing; fix: send null for unknown values or clip them"
    )


def _json_strings(name: str, flat: list[Any]) -> list[float]:
    codes: list[float] = []
    code = _code_of_str
    for i, v in enumerate(flat):
        if type(v) is str:
            if len(v) > MAX_VALUE_BYTES // 4 and len(v.encode("utf-8")) > MAX_VALUE_BYTES:
                raise _too_long(name, i)
            codes.append(code(v))
        elif v is None:
            codes.append(_NAN)
        else:
            raise FeatureInputError(
                f"categorical feature {name!r} got {str(v)[:40]} ({type(v).__name__}) in row {i}; "
                "rule: categorical values are strings, null for missing; fix: send the string "
                f'the training data held, e.g. "{str(v)[:40]}"'
            )
    return codes


def _too_long(name: str, row: int) -> FeatureInputError:
    return FeatureInputError(
        f"categorical feature {name!r} has a value longer than {MAX_VALUE_BYTES} bytes in row "
        f"{row}; rule: category strings of at most {MAX_VALUE_BYTES} UTF-8 bytes; fix: map long "
        "values to a shorter key upstream"
    )


def _binary_numbers(
    name: str, datatype: str, body: bytes, off: int, size: int, n: int
) -> np.ndarray:
    """The tensor as it came (no copy); the range is checked on the matrix."""
    dtype = FIXED_DTYPES[datatype]
    if size != n * dtype.itemsize:
        raise FeatureInputError(
            f"feature {name!r} has binary_data_size={size}; rule: {n} row(s) of {datatype} take "
            f"{n * dtype.itemsize} bytes; fix: send the tensor's raw little-endian bytes"
        )
    return np.frombuffer(body, dtype=dtype, count=n, offset=off)


def _binary_strings(name: str, body: bytes, off: int, size: int, n: int) -> list[float]:
    codes: list[float] = []
    end = off + size
    at = off
    code = _code_of_bytes
    for i in range(n):
        if at + 4 > end:
            raise _short(name, size, n, i)
        (length,) = _LENGTH.unpack_from(body, at)
        at += 4
        if length > MAX_VALUE_BYTES:
            raise _too_long(name, i)
        if at + length > end:
            raise _short(name, size, n, i)
        try:
            codes.append(code(body[at : at + length]))
        except UnicodeDecodeError:
            raise FeatureInputError(
                f"categorical feature {name!r} has a value that is not UTF-8 in row {i}; rule: "
                "BYTES values are UTF-8 strings; fix: encode the strings as UTF-8"
            ) from None
        at += length
    if at != end:
        raise FeatureInputError(
            f"feature {name!r} has binary_data_size={size} but its {n} string(s) take "
            f"{at - off} bytes; rule: exactly n elements of a 4-byte little-endian length and "
            "the bytes; fix: send as many strings as the shape says"
        )
    return codes


def _short(name: str, size: int, n: int, row: int) -> FeatureInputError:
    return FeatureInputError(
        f"feature {name!r} has binary_data_size={size}, which ends inside row {row} of {n}; "
        "rule: BYTES elements are a 4-byte little-endian length and that many bytes; fix: send "
        "one element per row"
    )


def is_wire_request(inputs: object) -> bool:
    """Whether a request's ``inputs`` are the wire tensor itself (one input ``INPUT__0``)."""
    return (
        isinstance(inputs, list)
        and len(inputs) == 1
        and isinstance(inputs[0], dict)
        and inputs[0].get("name") == INPUT_NAME
    )


def wire_request(
    header: Mapping[str, Any], matrix: np.ndarray
) -> tuple[bytes, int, dict[str, Any]]:
    """The request the gateway forwards for a named-feature request: its wire matrix.

    Args:
        header: The client's JSON header (``id``, ``outputs`` and ``parameters`` are kept, so
            the answer has the form the client asked for).
        matrix: The encoded rows, float32 ``(n, F)``.

    Returns:
        ``(body, JSON header length, header)``: ``INPUT__0`` FP32 ``[n, F]`` as binary data.
    """
    raw = np.ascontiguousarray(matrix, dtype="<f4").tobytes()
    head: dict[str, Any] = {k: v for k, v in header.items() if k != "inputs"}
    head["inputs"] = [
        {
            "name": INPUT_NAME,
            "datatype": "FP32",
            "shape": list(matrix.shape),
            "parameters": {"binary_data_size": len(raw)},
        }
    ]
    encoded = _dumps(head).encode()
    return encoded + raw, len(encoded), head
