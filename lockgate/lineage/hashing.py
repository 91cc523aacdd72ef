"""Content hashes: files, bytes, JSON documents and data frames in a canonical encoding.

The frame hash is what makes a feature snapshot content-addressed: it depends only on the
values in the frame, never on how they were written (Parquet version, compression, row-group
size, pandas index, column order or row order).

Canonical encoding of a frame, as hashed by :func:`frame_sha256`:

1. columns in sorted name order; rows sorted by the given key columns (stable), otherwise by all
   columns;
2. each column cast to one canonical Arrow type: ``bool`` -> uint8, any integer -> int64, any
   float -> float64 (``-0.0`` folded into ``0.0``, every NaN treated as missing), strings and
   categoricals -> utf-8 large_string, timestamps -> int64 microseconds since the epoch in UTC;
3. per column: the name, the canonical type tag, the row count, the validity bitmap (one bit per
   row, ``numpy.packbits`` order) and the value bytes (fixed width little-endian, or for strings the
   int64 offsets followed by the utf-8 data, with missing values as empty strings).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import SchemaError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "canonical_frame",
    "canonical_json",
    "frame_sha256",
    "parquet_sha256",
    "sha256_bytes",
    "sha256_file",
    "sha256_json",
    "table_sha256",
]

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys, no whitespace and no NaN: the same object always gives the same bytes."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_json(obj: Any) -> str:
    """Hex sha256 of :func:`canonical_json` of ``obj``."""
    return sha256_bytes(canonical_json(obj))


def canonical_frame(frame: pd.DataFrame, *, sort_by: Sequence[str] | None = None) -> pd.DataFrame:
    """Return ``frame`` with sorted columns, rows sorted by ``sort_by`` and a fresh RangeIndex.

    Raises:
        SchemaError: a ``sort_by`` column is missing or column names are not unique strings.
    """
    names = list(frame.columns)
    if len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise SchemaError(
            f"frame columns {names!r} must be unique strings to be hashed; rename the duplicates"
        )
    keys = list(sort_by) if sort_by else sorted(names)
    missing = [k for k in keys if k not in frame.columns]
    if missing:
        raise SchemaError(
            f"cannot sort the frame by {missing!r}: no such column (columns: {sorted(names)!r})"
        )
    ordered = frame[sorted(names)]
    ordered = ordered.sort_values(keys, kind="mergesort", na_position="last")
    return ordered.reset_index(drop=True)


def _canonical_column(column: pa.ChunkedArray) -> tuple[str, pa.Array]:
    import pyarrow as pa
    import pyarrow.compute as pc

    array = column.combine_chunks()
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_boolean(kind):
        return "bool", pc.cast(array, pa.uint8())
    if pa.types.is_integer(kind):
        return "int64", pc.cast(array, pa.int64())
    if pa.types.is_floating(kind):
        floats = pc.cast(array, pa.float64())
        floats = pc.if_else(pc.is_nan(floats), pa.scalar(None, pa.float64()), floats)
        return "float64", floats
    if pa.types.is_timestamp(kind):
        tz = kind.tz
        as_us = pc.cast(array, pa.timestamp("us", tz=tz))
        # Arrow stores tz-aware timestamps as UTC already; naive ones are taken as UTC.
        return "timestamp[us,UTC]", pc.cast(as_us.view(pa.int64()), pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string", pc.cast(array, pa.large_string())
    if pa.types.is_null(kind):
        return "null", array
    raise SchemaError(
        f"column type {kind} cannot be hashed canonically; convert it to a number, string, "
        "bool or timestamp before snapshotting"
    )


def frame_sha256(frame: pd.DataFrame, *, sort_by: Sequence[str] | None = None) -> str:
    """Hex sha256 of the canonical encoding of ``frame`` (see the module docstring).

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
        >>> frame_sha256(a) == frame_sha256(a[["y", "x"]].iloc[::-1])
        True
    """
    import pyarrow as pa

    canonical = canonical_frame(frame, sort_by=sort_by)
    return table_sha256(pa.Table.from_pandas(canonical, preserve_index=False))


def table_sha256(table: pa.Table) -> str:
    """:func:`frame_sha256` of an Arrow table whose rows are in canonical order already.

    The table of a canonical frame (``pa.Table.from_pandas(canonical_frame(frame, ...))``),
    or a stored snapshot read back from Parquet, hashes to the frame's hash without a pandas
    copy and without sorting: columns are taken in sorted name order, rows as they are. A
    table whose rows are not in canonical order gives another hash (use
    :func:`frame_sha256`).

    Example:
        >>> import pandas as pd, pyarrow as pa
        >>> a = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
        >>> table_sha256(pa.Table.from_pandas(a[["y", "x"]])) == frame_sha256(a)
        True
    """
    digest = _frame_digest(table.num_rows)
    for name in sorted(table.column_names):
        _update_column(digest, name, table.column(name))
    return digest.hexdigest()


def parquet_sha256(source: Any) -> str:
    """:func:`table_sha256` of a Parquet file in canonical row order, a piece at a time.

    Only one row group of one column is decoded at once (one whole column when a row group
    other than the last holds a number of rows that is not a multiple of 8: the validity bits
    are hashed packed), so checking a stored snapshot costs the memory of one row group's
    column, not of the frame.

    Args:
        source: A path, file object or ``pyarrow.BufferReader`` of the Parquet data.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    meta = parquet.metadata
    digest = _frame_digest(meta.num_rows)
    groups = range(meta.num_row_groups)
    by_group = len(groups) > 1 and all(meta.row_group(g).num_rows % 8 == 0 for g in groups[:-1])
    for name in sorted(parquet.schema_arrow.names):
        if by_group:

            def pieces(name: str = name) -> Iterator[Any]:
                for g in groups:
                    yield _canonical_column(parquet.read_row_group(g, columns=[name]).column(0))

            _update_pieces(digest, name, pieces)
        else:
            _update_column(digest, name, parquet.read(columns=[name]).column(0))
    return digest.hexdigest()


def _frame_digest(rows: int) -> Any:
    digest = hashlib.sha256(b"lockgate-frame-v1\0")
    digest.update(np.int64(rows).tobytes())
    return digest


def _update_column(digest: Any, name: str, column: pa.ChunkedArray) -> None:
    """Adds one column's canonical encoding (module docstring, point 3) to ``digest``."""
    canonical = _canonical_column(column)
    _update_pieces(digest, name, lambda: iter([canonical]))


def _update_pieces(digest: Any, name: str, pieces: Callable[[], Iterator[Any]]) -> None:
    """:func:`_update_column` of the column whose consecutive pieces ``pieces()`` yields, each
    as :func:`_canonical_column` gives it.

    Each call of ``pieces`` yields the same pieces again (the encoding takes three passes:
    validity, then values or offsets, then string bytes); every piece but the last holds a
    multiple of 8 rows, so the packed validity bits of the pieces are those of the column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    tag = "null"
    for i, (tag, array) in enumerate(pieces()):
        if i == 0:
            digest.update(name.encode("utf-8") + b"\0" + tag.encode("ascii") + b"\0")
        valid = np.asarray(pc.is_valid(array).to_numpy(zero_copy_only=False), dtype=bool)
        digest.update(np.packbits(valid).tobytes())
        del valid, array
    if tag == "null":
        return
    if tag == "string":
        base = 0
        for i, (_, array) in enumerate(pieces()):
            filled = pc.fill_null(array, "")
            offsets = np.frombuffer(filled.buffers()[1], dtype="<i8")
            offsets = offsets[filled.offset : filled.offset + len(filled) + 1]
            rel = offsets - offsets[0] + base
            digest.update((rel if i == 0 else rel[1:]).astype("<i8").tobytes())
            base = int(rel[-1])
        for _, array in pieces():
            filled = pc.fill_null(array, "")
            offsets = np.frombuffer(filled.buffers()[1], dtype="<i8")
            start = int(offsets[filled.offset])
            end = int(offsets[filled.offset + len(filled)])
            digest.update(memoryview(filled.buffers()[2])[start:end])
        return
    for _, array in pieces():
        values = pc.fill_null(array, pa.scalar(0, array.type)).to_numpy(zero_copy_only=False)
        if tag == "float64":
            values = values + 0.0  # folds -0.0 into 0.0
        digest.update(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes())
