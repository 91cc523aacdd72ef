"""The prediction log's records: one CRC-checked binary frame per answered request.

:func:`encode_record` writes a record (a fixed header, the strings, the FP32 input and output
rows, and for a request that sent entity keys those keys after a flag) as a frame ``magic,
length, crc32``; :func:`read_segment` reads a WAL segment back into an
Arrow table with :func:`prediction_log_schema` (stopping at the first torn frame, and reading
the JSON records of earlier gateways too).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rapidjson

from lockgate.gateway.errors import PredictionLogError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "encode_record",
    "prediction_log_schema",
    "read_segment",
]


_WAL_MAGIC = b"LGW2"  # binary record header; see encode_record
_WAL_MAGIC_V1 = b"LGW1"  # JSON record header of earlier gateways: still read, never written


_FRAME = struct.Struct("<4sII")  # magic, payload length, crc32(payload)
_META_LEN = struct.Struct("<I")  # version 1: length of the JSON header
# ts (us), latency (ms), status, flags, byte lengths of trace/model/version/routed_by/request
# id/error, input rows and width, output rows and width, shadow diffs
_REC = struct.Struct("<qdiBHHHHIIIIIII")
_REC_DTYPE = np.dtype(
    [
        ("ts", "<i8"),
        ("lat", "<f8"),
        ("st", "<i4"),
        ("flags", "u1"),
        *[(f, "<u2") for f in ("lt", "lm", "lv", "lrb")],
        *[(f, "<u4") for f in ("lrid", "lerr", "ir", "iw", "or", "ow", "nd")],
    ]
)
assert _REC_DTYPE.itemsize == _REC.size
_F_SHADOW, _F_RID, _F_ERR, _F_IN, _F_OUT, _F_DIFF = 1, 2, 4, 8, 16, 32
# entity keys (JSON) follow the arrays, then their byte length as a little-endian u4 (the
# fixed header has no field for it; records without the flag are laid out as before)
_F_ENT = 64


def prediction_log_schema() -> pa.Schema:
    """The Arrow schema of the prediction log (Parquet files and decoded WAL records).

    Columns: ``trace_id``; ``request_id`` (the client's KServe ``id``, nullable); ``ts``
    (timestamp[us, UTC], when the answer was ready); ``model`` (public name); ``version``
    (lockgate version); ``routed_by`` (canary, shadow, bluegreen, single, pinned, retry);
    ``shadow`` (True for mirrored challenger calls); ``status`` (HTTP status sent or, for
    shadow records, received); ``error`` (nullable); ``latency_ms`` (receive to upstream answer);
    ``inputs`` (list of FP32 rows, null when the body was unreadable); ``outputs`` (list of
    OUTPUT__0 rows, null on errors); ``shadow_abs_diff`` (per row, max absolute difference to the
    champion's output; shadow records only); ``entity_keys`` (JSON ``{join key: [value per
    row]}`` of a request that sent entity keys and had its features looked up in Feast's online
    store, :mod:`lockgate.gateway.online_features`; null otherwise).
    """
    import pyarrow as pa

    rows = pa.list_(pa.list_(pa.float32()))
    return pa.schema(
        [
            ("trace_id", pa.string()),
            ("request_id", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("model", pa.string()),
            ("version", pa.string()),
            ("routed_by", pa.string()),
            ("shadow", pa.bool_()),
            ("status", pa.int32()),
            ("error", pa.string()),
            ("latency_ms", pa.float64()),
            ("inputs", rows),
            ("outputs", rows),
            ("shadow_abs_diff", pa.list_(pa.float32())),
            ("entity_keys", pa.string()),
        ]
    )


def _rows(a: np.ndarray) -> np.ndarray:
    """The array as little-endian FP32 [rows, values per row] (a scalar is one row of one)."""
    if a.ndim != 2:
        a = a.reshape(1, 1) if a.ndim == 0 else a.reshape(a.shape[0], math.prod(a.shape[1:]))
    return a.astype("<f4", copy=False)


def encode_record(
    meta: Mapping[str, Any], inputs: np.ndarray | None, outputs: np.ndarray | None
) -> bytes:
    """One WAL frame: a fixed binary header (``_REC``), the strings, then the FP32 arrays.

    ``meta`` keys: ``t`` trace id, ``ts`` microseconds since the epoch, ``m`` model, ``v``
    version, ``rb`` routed by, ``st`` status, ``lat`` latency in ms; optional ``rid`` request id,
    ``err`` error text, ``sh`` shadow flag, ``diff`` per-row shadow differences, ``ek`` the
    entity keys as JSON.
    """
    flags = _F_SHADOW if meta.get("sh") else 0
    t = meta["t"].encode()
    m = meta["m"].encode()
    v = meta["v"].encode()
    rb = meta["rb"].encode()
    rid = meta.get("rid")
    err = meta.get("err")
    ridb = b"" if rid is None else rid.encode()
    errb = b"" if err is None else err.encode()
    parts = [b"", t, m, v, rb, ridb, errb]
    if rid is not None:
        flags |= _F_RID
    if err is not None:
        flags |= _F_ERR
    in_rows = in_width = out_rows = out_width = n_diff = 0
    if inputs is not None:
        x = _rows(inputs)
        flags |= _F_IN
        in_rows, in_width = x.shape
        parts.append(x.tobytes())
    if outputs is not None:
        y = _rows(outputs)
        flags |= _F_OUT
        out_rows, out_width = y.shape
        parts.append(y.tobytes())
    diff = meta.get("diff")
    if diff is not None:
        d = np.asarray(diff, dtype="<f4").reshape(-1)
        flags |= _F_DIFF
        n_diff = d.size
        parts.append(d.tobytes())
    ek = meta.get("ek")
    if ek is not None:
        ekb = ek.encode()
        flags |= _F_ENT
        parts += [ekb, _META_LEN.pack(len(ekb))]
    parts[0] = _REC.pack(
        meta["ts"],
        meta["lat"],
        meta["st"],
        flags,
        len(t),
        len(m),
        len(v),
        len(rb),
        len(ridb),
        len(errb),
        in_rows,
        in_width,
        out_rows,
        out_width,
        n_diff,
    )
    payload = b"".join(parts)
    return _FRAME.pack(_WAL_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _frames(data: bytes, magic: bytes, min_len: int) -> tuple[list[int], list[int], int]:
    """Payload bounds of the intact frames at the start of ``data``, and where they stop."""
    starts: list[int] = []
    ends: list[int] = []
    view = memoryview(data)
    unpack, crc32, head = _FRAME.unpack_from, zlib.crc32, _FRAME.size
    off, size = 0, len(data)
    while off + head <= size:
        mg, length, crc = unpack(data, off)
        end = off + head + length
        if mg != magic or length < min_len or end > size or crc32(view[off + head : end]) != crc:
            break
        starts.append(off + head)
        ends.append(end)
        off = end
    return starts, ends, off


def _upgrade_v1(data: bytes) -> tuple[bytes, list[int], list[int], int]:
    """Re-encode a segment of version-1 records (JSON header) left by an older gateway."""
    starts, ends, stop = _frames(data, _WAL_MAGIC_V1, 4)
    frames: list[bytes] = []
    new_starts: list[int] = []
    new_ends: list[int] = []
    size = 0
    for s, e in zip(starts, ends, strict=True):
        try:
            (mlen,) = _META_LEN.unpack_from(data, s)
            meta = rapidjson.loads(data[s + 4 : s + 4 + mlen])
            off = s + 4 + mlen
            arrays: list[np.ndarray | None] = []
            for key in ("ish", "osh"):
                shape = meta.get(key)
                if shape is None:
                    arrays.append(None)
                    continue
                n = math.prod(shape)
                arrays.append(np.frombuffer(data, "<f4", count=n, offset=off).reshape(shape))
                off += 4 * n
            if off != e:
                raise ValueError("record length does not match its shapes")
            frame = encode_record(meta, arrays[0], arrays[1])
            frames.append(frame)
            new_starts.append(size + _FRAME.size)
            size += len(frame)
            new_ends.append(size)
        except (ValueError, KeyError, TypeError, struct.error):
            stop = s - _FRAME.size
            break
    return b"".join(frames), new_starts, new_ends, stop


def read_segment(path: Path) -> tuple[pa.Table, bool]:
    """Decode a WAL segment into a prediction-log table; stop at the first torn or corrupt frame.

    Columnar: one pass over the frames checks each CRC and slices the fields; the columns are
    built from those slices without decoding record by record.

    Returns:
        The table, and whether nothing but zero bytes follows the last record.
    """
    data = path.read_bytes()
    if data[:4] == _WAL_MAGIC_V1:
        body, starts, ends, stop = _upgrade_v1(data)
    else:
        body = data
        starts, ends, stop = _frames(data, _WAL_MAGIC, _REC.size)
    table, kept = _decode_frames(body, starts, ends)
    # a record that does not add up to its own header ends the segment like a torn frame
    clean = kept == len(starts) and (stop >= len(data) or not data[stop:].strip(b"\0"))
    return table, clean


def _decode_frames(data: bytes, starts: list[int], ends: list[int]) -> tuple[pa.Table, int]:
    """Prediction-log table of the records in ``data`` at the given payload bounds.

    Returns:
        The table and how many records it holds: a record whose header does not add up to its
        frame's length ends it.
    """
    import pyarrow as pa

    n = len(starts)
    head_len = _REC.size
    head = np.frombuffer(b"".join([data[s : s + head_len] for s in starts]), _REC_DTYPE)
    has_ent = head["flags"] & _F_ENT != 0
    sizes = np.empty((n, 10), dtype=np.int64)
    for j, name in enumerate(("lt", "lm", "lv", "lrb", "lrid", "lerr")):
        sizes[:, j] = head[name]
    sizes[:, 6] = 4 * head["ir"].astype(np.int64) * head["iw"]
    sizes[:, 7] = 4 * head["or"].astype(np.int64) * head["ow"]
    sizes[:, 8] = 4 * head["nd"].astype(np.int64)
    sizes[:, 9] = 0
    for i in np.flatnonzero(has_ent).tolist():  # the keys' length ends the frame
        at = ends[i] - _META_LEN.size
        sizes[i, 9] = _META_LEN.unpack_from(data, at)[0] if at >= starts[i] + head_len else -1
    pos = np.empty((n, 10), dtype=np.int64)
    pos[:, 0] = np.asarray(starts, dtype=np.int64) + head_len
    np.cumsum(sizes[:, :-1], axis=1, out=pos[:, 1:])
    pos[:, 1:] += pos[:, :1]
    stop = pos[:, 9] + sizes[:, 9] + _META_LEN.size * has_ent
    bad = np.flatnonzero((stop != np.asarray(ends, dtype=np.int64)) | (sizes[:, 9] < 0))
    if bad.size:
        n = int(bad[0])
        head, sizes, pos, has_ent = head[:n], sizes[:n], pos[:n], has_ent[:n]

    def field(j: int) -> bytes:
        return b"".join(
            [data[a : a + b] for a, b in zip(pos[:, j].tolist(), sizes[:, j].tolist(), strict=True)]
        )

    flags = head["flags"]
    columns = [
        _string_column(field(0), sizes[:, 0], None),
        _string_column(field(4), sizes[:, 4], flags & _F_RID != 0),
        pa.array(head["ts"], pa.timestamp("us", tz="UTC")),
        _string_column(field(1), sizes[:, 1], None),
        _string_column(field(2), sizes[:, 2], None),
        _string_column(field(3), sizes[:, 3], None),
        pa.array(flags & _F_SHADOW != 0, pa.bool_()),
        pa.array(head["st"], pa.int32()),
        _string_column(field(5), sizes[:, 5], flags & _F_ERR != 0),
        pa.array(head["lat"], pa.float64()),
        _rows_column(field(6), head["ir"], head["iw"], flags & _F_IN != 0),
        _rows_column(field(7), head["or"], head["ow"], flags & _F_OUT != 0),
        _list_column(field(8), head["nd"], flags & _F_DIFF != 0),
        _string_column(field(9), sizes[:, 9], has_ent),
    ]
    return pa.Table.from_arrays(columns, schema=prediction_log_schema()), n


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    if out[-1] > np.iinfo(np.int32).max:
        raise PredictionLogError(
            f"a WAL segment holds {int(out[-1])} values in one column, over Arrow's 2**31 - 1; "
            "lower segment_max_bytes"
        )
    return out.astype(np.int32)


def _validity(valid: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    import pyarrow as pa

    if valid is None or valid.all():
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), int(valid.size - valid.sum())


def _string_column(data: bytes, lengths: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    import pyarrow as pa

    bitmap, nulls = _validity(valid)
    arr = pa.StringArray.from_buffers(
        len(lengths), pa.py_buffer(_offsets(lengths)), pa.py_buffer(data), bitmap, nulls
    )
    arr.validate(full=True)  # UTF-8 and offsets: a bug here must not write a bad Parquet file
    return arr


def _list_column(data: bytes, counts: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """list<float32> with ``counts[i]`` values per record (null where not ``valid``)."""
    import pyarrow as pa

    values = pa.array(np.frombuffer(data, "<f4"), pa.float32())
    mask = None if valid is None or valid.all() else pa.array(~valid)
    return pa.ListArray.from_arrays(pa.array(_offsets(counts)), values, mask=mask)


def _rows_column(data: bytes, rows: np.ndarray, width: np.ndarray, valid: np.ndarray) -> pa.Array:
    """list<list<float32>>: ``rows[i]`` rows of ``width[i]`` values per record."""
    import pyarrow as pa

    inner = _list_column(data, np.repeat(width, rows), None)
    return pa.ListArray.from_arrays(
        pa.array(_offsets(rows)), inner, mask=None if valid.all() else pa.array(~valid)
    )
