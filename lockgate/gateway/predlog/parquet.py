"""The prediction log in Parquet: closed WAL segments rolled into parts, and reading it back.

:func:`roll_segment` converts one closed segment into
``log_dir/<model>/date=YYYY-MM-DD/part-<seq>.parquet`` (temp name, fsync, rename; the segment is
deleted only once its parts are durable, a torn one kept as ``.torn``);
:func:`read_prediction_log` and :func:`iter_prediction_log` read the Parquet parts and the WAL
segments not yet rolled (streamed by row group, :data:`LOG_ROW_GROUP_ROWS`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from lockgate._util.fs import atomic_write, fsync_path
from lockgate.gateway.errors import PredictionLogError
from lockgate.gateway.predlog.records import prediction_log_schema, read_segment
from lockgate.gateway.routing import NAME_RE

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from lockgate.gateway.predlog.export import PredictionLogExport

__all__ = [
    "LOG_ROW_GROUP_ROWS",
    "iter_prediction_log",
    "list_segments",
    "read_prediction_log",
    "roll_segment",
    "segment_seq",
]

logger = logging.getLogger("lockgate.gateway")

LOG_ROW_GROUP_ROWS = 16_384
"""Rows per Parquet row group of the prediction log: readers decode one group at a time, so this
bounds the memory of streaming the log (:func:`iter_prediction_log`)."""


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


_SEGMENT_RE = re.compile(r"^wal-(\d{20})\.log$")
_PART_RE = re.compile(r"^part-(\d{20})\.parquet$")


def segment_seq(path: Path) -> int:
    m = _SEGMENT_RE.match(path.name)
    return int(m.group(1)) if m else -1


def list_segments(wal_dir: Path) -> list[Path]:
    if not wal_dir.is_dir():
        return []
    return sorted(p for p in wal_dir.iterdir() if _SEGMENT_RE.match(p.name))


def _by_model_day(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    """Split a log table into (model, UTC day, rows) parts, sorted, rows in log order."""
    import pyarrow as pa

    if table.num_rows == 0:
        return []
    days = table.column("ts").cast(pa.int64()).to_numpy() // 86_400_000_000
    first = int(days.min())
    span = int(days.max()) - first + 1
    models = table.column("model").combine_chunks().dictionary_encode()
    names = models.dictionary.to_pylist()
    keys = models.indices.to_numpy().astype(np.int64) * span + (days - first)
    uniq, inverse = np.unique(keys, return_inverse=True)
    parts = []
    for g, key in enumerate(uniq.tolist()):
        day = (_EPOCH + dt.timedelta(days=first + key % span)).strftime("%Y-%m-%d")
        rows = table if len(uniq) == 1 else table.take(np.flatnonzero(inverse == g))
        parts.append((names[key // span], day, rows))
    return sorted(parts, key=lambda p: (p[0], p[1]))


def roll_segment(path: Path, log_dir: Path) -> int:
    """Convert one closed WAL segment to Parquet parts, then delete it.

    A part is written to a hidden temp name, fsynced, renamed, and its folder fsynced; the segment
    is deleted only after every part is durable. Re-running after a crash rewrites the same part
    names (idempotent). A segment with bytes after its last valid record is kept as ``.torn``.

    Returns:
        The number of records converted.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    seq = segment_seq(path)
    table, clean = read_segment(path)
    for model, day, rows in _by_model_day(table):
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink, compression="zstd", row_group_size=LOG_ROW_GROUP_ROWS)
        # a failed write (e.g. a full disk) leaves no temp file: the segment is retried later
        part = log_dir / model / f"date={day}" / f"part-{seq:020d}.parquet"
        atomic_write(part, sink.getvalue().to_pybytes())
    if not clean:
        torn = path.with_name(path.name + ".torn")
        os.replace(path, torn)
        logger.warning(
            "WAL segment %s has unreadable bytes after %d records; kept as %s",
            path,
            table.num_rows,
            torn,
        )
    else:
        path.unlink()
    fsync_path(path.parent)
    return table.num_rows


def _exported(log_dir: str | os.PathLike[str] | PredictionLogExport) -> PredictionLogExport | None:
    """The exported log ``log_dir`` names (an export, or an object-store URL), or None."""
    from lockgate.gateway.predlog.export import PredictionLogExport

    if isinstance(log_dir, PredictionLogExport):
        return log_dir
    if isinstance(log_dir, str) and "://" in log_dir:
        return PredictionLogExport(url=log_dir)
    return None


def iter_prediction_log(
    log_dir: str | os.PathLike[str] | PredictionLogExport,
    model: str | None = None,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    columns: Sequence[str] | None = None,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Stream the prediction log as Arrow record batches, in log order, with bounded memory.

    Parquet parts come first (in segment order), then the records still in WAL segments, so
    batches arrive in the order requests were logged (by segment; ``ts`` within a segment
    follows commit order). Memory holds one Parquet row group batch or one WAL segment (at most
    the gateway's ``segment_max_bytes``) at a time, so a log larger than RAM streams fine.

    Safe while a gateway is running: the WAL segments are listed first and Parquet parts of
    those segments are skipped; a segment rolled to Parquet meanwhile is read from its parts
    instead, so nothing is lost or counted twice; a torn final record (being written) is
    ignored.

    The log exported to object storage (:class:`~lockgate.gateway.predlog.export.PredictionLogExport`,
    or its ``s3://`` URL with credentials from the AWS variables) reads the same way: its parts
    by day, then gateway replica, then segment (no WAL: only rolled, exported parts).

    Args:
        log_dir: the gateway's log folder, or the exported log.
        model: only this public model (default: all).
        since: only records with ``ts >= since`` (tz-aware, or naive meaning UTC).
        until: only records with ``ts < until``.
        columns: only these columns of :func:`prediction_log_schema` (default: all).
        batch_rows: most rows per batch read from Parquet.

    Yields:
        Non-empty record batches with the requested columns.

    Raises:
        PredictionLogError: ``columns`` names an unknown column or ``batch_rows < 1``.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = prediction_log_schema()
    names = list(schema.names) if columns is None else list(columns)
    unknown = [c for c in names if c not in schema.names]
    if unknown or batch_rows < 1:
        raise PredictionLogError(
            f"columns {unknown} are not prediction-log columns ({schema.names})"
            if unknown
            else f"batch_rows={batch_rows}: must be at least 1"
        )
    lo = None if since is None else _utc_micros(since)
    hi = None if until is None else _utc_micros(until)
    first_day = None if since is None else _utc_day(since)
    read_cols = names if "ts" in names or (lo is None and hi is None) else [*names, "ts"]
    exported = _exported(log_dir)
    if exported is not None:
        for handle in exported.open_parts(model, first_day=first_day):
            with pq.ParquetFile(handle) as file:
                for batch in file.iter_batches(batch_size=batch_rows, columns=read_cols):
                    out = _trim(batch, names, lo, hi)
                    if out is not None:
                        yield out
        return
    root = Path(cast("str | os.PathLike[str]", log_dir))  # an export was answered above
    wal = list_segments(root / "_wal")
    wal_seqs = {segment_seq(seg) for seg in wal}

    def parts(seq: int | None) -> list[tuple[int, str, Path]]:
        if model is not None:
            models = [model]
        elif root.is_dir():
            models = sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name))
        else:
            models = []
        found = []
        for m in models:
            for part in (root / m).glob("date=*/part-*.parquet"):
                match = _PART_RE.match(part.name)
                day = part.parent.name.removeprefix("date=")
                if match is None or (first_day is not None and day < first_day):
                    continue
                part_seq = int(match.group(1))
                if (seq is None and part_seq not in wal_seqs) or part_seq == seq:
                    found.append((part_seq, day, part))
        return sorted(found)

    def trimmed(batch: pa.RecordBatch) -> pa.RecordBatch | None:
        return _trim(batch, names, lo, hi)

    def from_parts(found: list[tuple[int, str, Path]]) -> Iterator[pa.RecordBatch]:
        for _, _, part in found:
            with pq.ParquetFile(part) as file:
                for batch in file.iter_batches(batch_size=batch_rows, columns=read_cols):
                    out = trimmed(batch)
                    if out is not None:
                        yield out

    yield from from_parts(parts(None))
    for seg in wal:
        try:
            table, _ = read_segment(seg)
        except FileNotFoundError:  # rolled meanwhile: its Parquet parts are durable
            yield from from_parts(parts(segment_seq(seg)))
            continue
        if model is not None:
            table = table.filter(pc.equal(table.column("model"), model))
        for batch in table.to_batches(max_chunksize=batch_rows):
            out = trimmed(batch)
            if out is not None:
                yield out


def _trim(
    batch: pa.RecordBatch, names: list[str], lo: int | None, hi: int | None
) -> pa.RecordBatch | None:
    """``batch`` limited to ``lo <= ts < hi`` (micros) and ``names``; None when empty."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if lo is not None or hi is not None:
        ts = pc.cast(batch.column("ts"), pa.int64())
        keep = None
        if lo is not None:
            keep = pc.greater_equal(ts, lo)
        if hi is not None:
            upper = pc.less(ts, hi)
            keep = upper if keep is None else pc.and_(keep, upper)
        batch = batch.filter(keep)
    if batch.num_rows == 0:
        return None
    absent = [n for n in names if n not in batch.schema.names]
    if absent:  # parts written before a column existed (entity_keys): its values are nulls
        from lockgate.gateway.predlog.records import prediction_log_schema

        schema = prediction_log_schema()
        for name in absent:
            field = schema.field(name)
            batch = batch.append_column(field, pa.nulls(batch.num_rows, field.type))
    return batch.select(names)


def _utc_micros(moment: dt.datetime) -> int:
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return int(aware.timestamp() * 1_000_000)


def _utc_day(moment: dt.datetime) -> str:
    aware = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return aware.astimezone(dt.UTC).strftime("%Y-%m-%d")


def read_prediction_log(
    log_dir: str | os.PathLike[str] | PredictionLogExport, model: str | None = None
) -> pd.DataFrame:
    """Read the whole prediction log into memory (see :func:`iter_prediction_log` to stream).

    Args:
        log_dir: the gateway's log folder, or the exported log (an export or its URL).
        model: only this public model (default: all).

    Returns:
        One row per logged request, sorted by ``ts``, with the columns of
        :func:`prediction_log_schema`. ``inputs``/``outputs`` cells hold arrays of rows; stack
        them with ``np.vstack([np.stack(c) for c in df.inputs])``.
    """
    import pyarrow as pa

    schema = prediction_log_schema()
    batches = list(iter_prediction_log(log_dir, model))
    table = pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
    df = table.to_pandas()
    return df.sort_values("ts", kind="stable").reset_index(drop=True)
