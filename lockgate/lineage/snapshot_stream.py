"""The training snapshot written in bounded memory: DuckDB joins and sorts, Arrow writes.

:func:`lockgate.lineage.steps.take_snapshot` has two ways to build the same snapshot. The
in-memory one reads the labels into pandas, joins the features, normalises the dtypes, sorts
the frame and writes one Arrow table: it holds the frame two or three times over (about 0.8 KB
per row of the example). This module's way, used when the labels are Parquet files and every
feature view is a Parquet ``FileSource`` of Feast's DuckDB offline store, never holds the frame:

1. **join and sort in DuckDB** (the engine of Feast's offline store and of
   :mod:`lockgate.features.asof_join`): the label files, with a row key that orders rows as the
   pandas frame of ``read_labels`` (file index, then row number in the file); one
   ``ASOF LEFT JOIN`` per feature view (the view's source read as Feast reads it, deduplicated,
   with its TTL); ``ORDER BY`` the sort keys (nulls last), then the row key, which is what the
   stable pandas sort gives; ``COPY`` to a work file. DuckDB runs under a memory limit and
   spills to the work folder beyond it;
2. **rewrite in the snapshot's types with Arrow**, one row group (``1 << 20`` rows) at a time:
   the types pandas' round trip gives (an integer column with a missing value becomes float64,
   without one it stays int64; NaN becomes null; strings are ``string``; the event time is
   ``timestamp[us, UTC]``), the ``pandas`` schema metadata ``from_pandas`` writes, the writer
   settings of the in-memory path. The file is byte-identical to the in-memory path's;
3. **hash** with :func:`lockgate.lineage.hashing.parquet_sha256`, one row group of one column at
   a time.

Whatever this path does not reproduce exactly raises :class:`StreamUnsupported` before anything
is stored, and the caller uses the in-memory path: labels from a Dagster asset, a label column
whose type pandas would change in a way not listed above (bool with nulls, naive or nanosecond
times, lists), a feature whose Feast type is not Int*, Float* or String, an all-missing string
column, a missing label time, a view that is not a Parquet file source.

Settings (environment variables, read when a snapshot is taken):

- ``LOCKGATE_SNAPSHOT_STREAM``: ``0`` turns this path off (the in-memory path always);
- ``LOCKGATE_SNAPSHOT_MEMORY_LIMIT``: DuckDB's ``memory_limit`` for the join and sort
  (default ``1GB``: at 12M rows the step peaks at 2.0 GB in 350 s; ``512MB`` gives 1.5 GB in
  about three times that, ``2GB`` is faster still; the in-memory path: 9.8 GB, 216 s);
- ``LOCKGATE_SNAPSHOT_THREADS``: DuckDB's threads for it (default 2; each adds memory);
- the work folder is made under ``TMPDIR`` and removed after: the sorted copy and DuckDB's spill
  files, which grow as the memory limit shrinks (about 0.9 KB a row at ``512MB``: 11 GB at 12M
  rows). Point ``TMPDIR`` at a local disk with that much free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.errors import ArtifactError

if TYPE_CHECKING:
    import pyarrow as pa

    from lockgate.features.store import FeastStore
    from lockgate.spec import ModelPipeline

__all__ = [
    "ROW_GROUP",
    "StreamUnsupported",
    "StreamedSnapshot",
    "pandas_metadata",
    "stream_enabled",
    "stream_snapshot",
]

ROW_GROUP = 1 << 20  # the in-memory path's row_group_size
_ROW = "__lockgate_row__"
_LABELS = "__lockgate_stream_labels__"


class StreamUnsupported(Exception):  # noqa: N818 - a signal to the caller, not an error
    """This snapshot is one the streamed path does not reproduce; the reason is the message."""


@dataclass(frozen=True)
class StreamedSnapshot:
    """What :func:`stream_snapshot` wrote: the file, its frame hash, rows and pandas dtypes."""

    path: Path
    frame_sha256: str
    rows: int
    schema: dict[str, str]
    time_range: list[str]
    label_rate: float | None


def stream_enabled() -> bool:
    """False when ``LOCKGATE_SNAPSHOT_STREAM`` is ``0`` (or ``false``/``no``/``off``)."""
    value = os.environ.get("LOCKGATE_SNAPSHOT_STREAM", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def _settings() -> tuple[str, int]:
    limit = os.environ.get("LOCKGATE_SNAPSHOT_MEMORY_LIMIT", "1GB").strip()
    threads = os.environ.get("LOCKGATE_SNAPSHOT_THREADS", "2").strip()
    if not threads.isdigit() or int(threads) < 1:
        raise ArtifactError(
            f"LOCKGATE_SNAPSHOT_THREADS is {threads!r}; rule: a whole number of at least 1; "
            "fix: set it to e.g. 2, or unset it"
        )
    if not limit or any(c in limit for c in "'\";\\"):
        raise ArtifactError(
            f"LOCKGATE_SNAPSHOT_MEMORY_LIMIT is {limit!r}; rule: a DuckDB memory size such as "
            "512MB or 4GB; fix: set it so, or unset it"
        )
    return limit, int(threads)


# ---- the pandas metadata and dtypes of from_pandas, from the Arrow types


def _pandas_column(field: pa.Field) -> dict[str, Any]:
    """One ``columns`` entry of the ``pandas`` metadata, as ``from_pandas`` writes it."""
    import pyarrow as pa

    kind = field.type
    meta: dict[str, Any] | None = None
    if pa.types.is_integer(kind):
        pandas_type = numpy_type = str(kind)
    elif pa.types.is_floating(kind):
        pandas_type = numpy_type = {"halffloat": "float16", "float": "float32"}.get(
            str(kind), "float64"
        )
    elif pa.types.is_boolean(kind):
        pandas_type = numpy_type = "bool"
    elif pa.types.is_string(kind):
        pandas_type, numpy_type = "unicode", "object"
    elif pa.types.is_timestamp(kind):
        numpy_type = f"datetime64[{kind.unit}]"
        pandas_type = "datetime"
        if kind.tz is not None:
            pandas_type, meta = "datetimetz", {"timezone": kind.tz}
    else:
        raise StreamUnsupported(f"column {field.name!r} has type {kind}")
    return {
        "name": field.name,
        "field_name": field.name,
        "pandas_type": pandas_type,
        "numpy_type": numpy_type,
        "metadata": meta,
    }


def pandas_metadata(schema: pa.Schema) -> bytes:
    """The ``pandas`` schema metadata ``pa.Table.from_pandas(frame, preserve_index=False)``
    writes for a frame of numpy dtypes (object strings) whose Arrow schema is ``schema``."""
    from importlib.metadata import version

    import pyarrow as pa

    doc = {
        "index_columns": [],
        "column_indexes": [],
        "columns": [_pandas_column(f) for f in schema],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": version("pandas"),
    }
    return json.dumps(doc).encode("utf8")


# ---- the query


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_list(items: Sequence[str]) -> str:
    return "[" + ", ".join("'" + s.replace("'", "''") + "'" for s in items) + "]"


def _label_target(field: pa.Field, nulls: int, *, timestamp: bool) -> pa.DataType:
    """The Arrow type of a label-file column after ``read_labels``' pandas round trip."""
    import pyarrow as pa

    kind = field.type
    if timestamp:  # _prepare_entity_df's _utc_us
        if not pa.types.is_timestamp(kind) or kind.tz is None or kind.unit == "ns" or nulls:
            raise StreamUnsupported(f"label time {field.name!r} is {kind} with {nulls} missing")
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_integer(kind):
        return pa.float64() if nulls else kind
    if pa.types.is_floating(kind) or pa.types.is_string(kind):
        return kind
    if pa.types.is_large_string(kind):
        return pa.string()
    if pa.types.is_boolean(kind) and not nulls:
        return kind
    raise StreamUnsupported(f"label column {field.name!r} is {kind} with {nulls} missing")


def _feature_target(name: str, feast_type: str, nulls: int) -> pa.DataType:
    """The Arrow type of a feature after ``feature_series`` and ``normalise_dtypes``."""
    import pyarrow as pa

    if feast_type.startswith("Int"):
        return pa.float64() if nulls else pa.int64()
    if feast_type.startswith("Float"):
        return pa.float64()
    if feast_type.startswith("String"):
        return pa.string()
    raise StreamUnsupported(f"feature {name!r} has Feast type {feast_type}")


def _select(name: str, kind: pa.DataType) -> str:
    """The SQL expression of column ``name`` as ``kind`` (floats without NaN: pandas' null)."""
    import pyarrow as pa

    col = _q(name)
    if pa.types.is_floating(kind):
        sql_type = "FLOAT" if kind == pa.float32() else "DOUBLE"
        return f"CASE WHEN isnan({col}::{sql_type}) THEN NULL ELSE {col}::{sql_type} END AS {col}"
    return f"{col} AS {col}"


def stream_snapshot(
    spec: ModelPipeline,
    feast: FeastStore,
    files: Sequence[Path],
    label_schema: pa.Schema,
    label_nulls: dict[str, int],
    work_dir: Path,
    *,
    batch_rows: int = 1 << 16,
) -> StreamedSnapshot:
    """Writes ``spec``'s snapshot to ``work_dir/snapshot.parquet`` (module docstring).

    Args:
        spec: The pipeline; its labels are ``files``.
        feast: The pipeline's Feast store.
        files: The label files in ``read_labels``' order, already checked (columns, schema).
        label_schema: Their Arrow schema.
        label_nulls: Missing values per label column, over all files.
        work_dir: An empty folder for the sorted copy, DuckDB's spill files and the result.
        batch_rows: Rows per batch of the rewrite.

    Raises:
        StreamUnsupported: The in-memory path must build this snapshot (nothing was stored).
        ArtifactError: The work folder could not be written (a full disk, say); the message
            names the folder.
    """
    import ibis
    import pyarrow as pa

    from lockgate.features.asof_join import _EXPIRE, _TS, _feature_table, asof_plan
    from lockgate.features.query_engine import offline_query
    from lockgate.features.store import _get_service, _service_join_keys

    ts = spec.labels.timestamp_column
    if ts != "event_timestamp":  # Feast's entity frame needs that name: the in-memory path
        raise StreamUnsupported(f"label time column {ts!r} is not event_timestamp")
    entity_cols = list(spec.labels.entity_columns)
    label_cols = list(dict.fromkeys([*entity_cols, ts, spec.label]))
    store = feast.store()
    service = _get_service(store, spec.feature_service, feast)
    plan = asof_plan(store, service)
    if isinstance(plan, str):
        raise StreamUnsupported(plan)
    missing_keys = [k for k in _service_join_keys(store, service) if k not in label_cols]
    if missing_keys:  # the in-memory path raises Feast's error naming them
        raise StreamUnsupported(f"join keys {missing_keys} are not label columns")
    feast_types = {
        f.name: str(f.dtype) for p in service.feature_view_projections for f in p.features
    }
    features = [f.name for p in service.feature_view_projections for f in p.features]
    planned = [name for view_spec, _ in plan.views for name in view_spec.features]
    if sorted(planned) != sorted(features) or set(features) & set(label_cols):
        raise StreamUnsupported(f"the join gives {planned}, the service names {features}")
    targets = {
        c: _label_target(label_schema.field(c), label_nulls.get(c, 0), timestamp=c == ts)
        for c in label_cols
    }
    targets.update({f: _feature_target(f, feast_types[f], 0) for f in features})
    repo_path = str(store.config.repo_path or feast.repo_path)
    names = [str(Path(f).resolve()) for f in files]
    sorted_file = work_dir / "sorted.parquet"
    memory_limit, threads = _settings()

    with offline_query(), feast.in_repo():
        con = ibis.get_backend().con
        saved = {
            key: con.sql(f"SELECT current_setting('{key}')").fetchall()[0][0]
            for key in (
                "memory_limit",
                "threads",
                "preserve_insertion_order",
                "TimeZone",
                "temp_directory",
            )
        }
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET threads = {threads}")
            con.execute(f"SET temp_directory = '{_sql_path(work_dir / 'spill')}'")
            con.execute("SET preserve_insertion_order = true")  # COPY keeps the ORDER BY
            cols = ", ".join(_q(c) for c in label_cols)
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {_LABELS} AS SELECT {cols}, "
                f"(CAST(list_position({_sql_list(names)}, filename) AS BIGINT) << 40) "
                f"+ file_row_number AS {_ROW} "
                f"FROM read_parquet({_sql_list(names)}, filename = true, file_row_number = true, "
                f"union_by_name = true)"
            )
            joins, selects = [], [f"l.{_q(c)}" for c in [*label_cols, _ROW]]
            for i, (view_spec, view) in enumerate(plan.views):
                sql = ibis.to_sql(_feature_table(view, view_spec, repo_path), dialect="duckdb")
                on = [
                    f"l.{_q(ent)} = f{i}.{_q(col)}" for col, ent in view_spec.join_key_map.items()
                ]
                on.append(f"l.{_q(ts)} >= f{i}.{_q(_TS)}")
                joins.append(f"ASOF LEFT JOIN ({sql}) AS f{i} ON {' AND '.join(on)}")
                for feature in view_spec.features:
                    value = f"f{i}.{_q(feature)}"
                    if view_spec.has_ttl:  # Feast's predicate, as asof_join's
                        value = f"CASE WHEN f{i}.{_q(_EXPIRE)} >= l.{_q(ts)} THEN {value} END"
                    selects.append(f"{value} AS {_q(feature)}")
            joined = f"SELECT {', '.join(selects)} FROM {_LABELS} AS l {' '.join(joins)}"
            order = ", ".join(f"{_q(c)} ASC NULLS LAST" for c in [ts, *entity_cols])
            columns = ", ".join(_select(n, targets[n]) for n in sorted(targets))
            con.execute(
                f"COPY (SELECT {columns} FROM ({joined}) ORDER BY {order}, {_q(_ROW)} ASC) "
                f"TO '{_sql_path(sorted_file)}' (FORMAT parquet)"
            )
        except Exception as exc:
            _raise_if_disk(exc, work_dir)
            _raise_if_memory(exc, memory_limit, threads)
            raise
        finally:
            try:
                con.execute(f"DROP VIEW IF EXISTS {_LABELS}")
                for key, value in saved.items():
                    con.execute(f"SET {key} = '{value}'")
            except Exception:  # the engine is closed right after anyway
                pass
    nulls = _null_counts(sorted_file, [*targets])
    rows = _rows(sorted_file)
    for name, target in targets.items():
        if pa.types.is_string(target) and nulls[name] == rows:  # from_pandas: type null
            raise StreamUnsupported(f"string column {name!r} holds no value")
    # whether an Int feature is int64 or float64 is known only now (label columns were known)
    targets.update({f: _feature_target(f, feast_types[f], nulls[f]) for f in features})
    schema = _schema(targets)
    out = work_dir / "snapshot.parquet"
    try:
        written = _rewrite(sorted_file, schema, out, batch_rows)
    except OSError as exc:
        _raise_if_disk(exc, work_dir)
        raise
    sorted_file.unlink()
    return _describe(out, written, timestamp_column=ts, label=spec.label)


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _raise_if_disk(exc: BaseException, work_dir: Path) -> None:
    """An ArtifactError naming the folder when ``exc`` is a failed write (a full disk)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) or "IO Error" in text or "No space" in text:
        raise ArtifactError(
            f"writing the snapshot's work files under {work_dir} failed ({text}); rule: the "
            "snapshot is joined and sorted on disk beyond DuckDB's memory limit, up to about "
            "1 KB a row there; fix: free space, point TMPDIR at a larger disk, or raise "
            "LOCKGATE_SNAPSHOT_MEMORY_LIMIT"
        ) from exc


def _raise_if_memory(exc: BaseException, memory_limit: str, threads: int) -> None:
    """An ArtifactError naming the settings when DuckDB ran out of its memory limit."""
    text = f"{type(exc).__name__}: {exc}"
    if "Out of Memory" in text or "OutOfMemory" in text:
        raise ArtifactError(
            f"the snapshot's join and sort ran out of DuckDB's memory limit ({text}); rule: "
            f"DuckDB spills to disk beyond LOCKGATE_SNAPSHOT_MEMORY_LIMIT={memory_limit!r}, but "
            f"each of its {threads} thread(s) needs some memory of its own; fix: raise "
            "LOCKGATE_SNAPSHOT_MEMORY_LIMIT (e.g. 1GB) or lower LOCKGATE_SNAPSHOT_THREADS"
        ) from exc


def _schema(targets: dict[str, pa.DataType]) -> pa.Schema:
    """Columns in name order (the canonical frame's), with ``from_pandas``' metadata."""
    import pyarrow as pa

    schema = pa.schema([pa.field(n, targets[n]) for n in sorted(targets)])
    return schema.with_metadata({b"pandas": pandas_metadata(schema)})


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(str(path)).metadata.num_rows)


def _null_counts(path: Path, columns: Sequence[str]) -> dict[str, int]:
    """Missing values per column of a Parquet file: its statistics, else a scan per row group."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(str(path))
    meta = parquet.metadata
    index = {name: i for i, name in enumerate(parquet.schema_arrow.names)}
    out = {}
    for name in columns:
        total = 0
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(index[name]).statistics
            if stats is not None and stats.has_null_count:
                total += stats.null_count
            else:
                total += parquet.read_row_group(g, columns=[name]).column(0).null_count
        out[name] = total
    return out


def _rewrite(source: Path, schema: pa.Schema, out: Path, batch_rows: int) -> int:
    """Rows of ``source`` into ``out`` in ``schema``, in row groups of exactly ``ROW_GROUP``."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(str(source))
    rows = 0
    with pq.ParquetWriter(str(out), schema, compression="zstd") as writer:
        batches = parquet.iter_batches(batch_size=batch_rows, columns=schema.names)
        for group in _row_groups(batches, schema):
            writer.write_table(group.replace_schema_metadata(schema.metadata), ROW_GROUP)
            rows += group.num_rows
            del group
    return rows


def _row_groups(batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> Iterator[pa.Table]:
    """Tables of exactly ``ROW_GROUP`` rows (the last one shorter), each column one contiguous
    array in ``schema``'s type (what ``write_table`` of one table writes as one row group).
    Pending rows are held column by column, each column's chunks dropped once combined."""
    import pyarrow as pa

    plain = pa.schema([pa.field(f.name, f.type) for f in schema])
    pending: dict[str, list[pa.Array]] = {n: [] for n in plain.names}
    held = yielded = 0
    for batch in batches:
        for name in plain.names:
            pending[name].append(batch.column(name))
        held += batch.num_rows
        del batch
        while held >= ROW_GROUP:
            yield _take(pending, plain, ROW_GROUP)
            held -= ROW_GROUP
            yielded += 1
    if held or not yielded:
        yield _take(pending, plain, held)


def _take(pending: dict[str, list[pa.Array]], plain: pa.Schema, rows: int) -> pa.Table:
    """The first ``rows`` pending rows as one table; the rest stays pending."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for field in plain:
        chunks = pending[field.name]
        whole = pa.chunked_array(chunks, type=chunks[0].type if chunks else field.type)
        head, rest = whole.slice(0, rows), whole.slice(rows)
        pending[field.name] = [c for c in rest.chunks if len(c)]
        del whole, rest
        array = head.combine_chunks() if head.num_chunks != 1 else head.chunk(0)
        del head
        if array.type != field.type:
            array = pc.cast(array, field.type)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=plain)


def _describe(path: Path, rows: int, *, timestamp_column: str, label: str) -> StreamedSnapshot:
    """The frame hash and the manifest fields of the written snapshot, as the in-memory path
    computes them from its frame (dtypes as pandas reads them back, ``str`` of the time bounds,
    the label rate of ``_label_rate``)."""
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from lockgate.lineage.hashing import parquet_sha256
    from lockgate.lineage.steps import _label_rate

    parquet = pq.ParquetFile(str(path))
    dtypes = parquet.schema_arrow.empty_table().to_pandas().dtypes
    low: Any = None
    high: Any = None
    for g in range(parquet.metadata.num_row_groups):
        bounds = pc.min_max(parquet.read_row_group(g, columns=[timestamp_column]).column(0))
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        low = lo if low is None or (lo is not None and lo < low) else low
        high = hi if high is None or (hi is not None and hi > high) else high
    labels = parquet.read(columns=[label]).column(0).to_pandas()
    return StreamedSnapshot(
        path=path,
        frame_sha256=parquet_sha256(str(path)),
        rows=rows,
        schema={str(c): str(t) for c, t in dtypes.items()},
        time_range=[str(pd.Timestamp(low)), str(pd.Timestamp(high))],
        label_rate=_label_rate(labels),
    )
