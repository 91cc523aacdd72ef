"""Chosen rows of a stored snapshot, read a row group at a time, and the gold mask from Arrow.

What :func:`lockgate.lineage.steps.load_snapshot_frame` and the gold-set and training steps use
to keep memory at a slice of the snapshot: the rows a boolean mask keeps are filtered out of
each row group as it is decoded (never the whole table in memory), the gold mask is computed
from the key column's Arrow values (:func:`~lockgate.evaluation.report.gold_mask_arrow`),
without a Python string per key. Each gives the values the whole-table read gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lockgate.evaluation.gate import GoldSet
    from lockgate.lineage.registry import ArtifactRegistry

__all__ = [
    "filter_row_groups",
    "load_holdout_frame",
    "parquet_gold_mask",
    "read_frame",
    "time_split_rows",
]


def filter_row_groups(
    parquet: pq.ParquetFile, mask: pa.BooleanArray, columns: list[str] | None
) -> pa.Table:
    """The rows of ``parquet`` that ``mask`` keeps (``Table.filter`` semantics: a null drops
    the row), ``columns`` only, read one row group at a time.

    The same table as ``pq.read_table(source, columns=columns).filter(mask)``, in chunks: a row
    group none of whose rows is kept is not decoded, and only one decoded row group is held at
    a time besides the kept rows.
    """
    meta = parquet.metadata
    pieces: list[pa.Table] = []
    start = 0
    for group in range(meta.num_row_groups):
        n = meta.row_group(group).num_rows
        part = mask.slice(start, n)
        start += n
        kept = part.true_count
        if kept == 0:
            continue
        piece = parquet.read_row_group(group, columns=columns)
        pieces.append(piece if kept == n else piece.filter(part))
        del piece
    if pieces:
        import pyarrow as pa

        return pa.concat_tables(pieces)
    if meta.num_row_groups:
        return parquet.read_row_group(0, columns=columns).slice(0, 0)
    return parquet.read(columns=columns)


def parquet_gold_mask(parquet: pq.ParquetFile, gold: GoldSet, *, rows: int | None = None) -> Any:
    """The gold mask (:func:`~lockgate.evaluation.report.gold_mask`) of the first ``rows``
    rows of ``parquet`` (all of them by default), from its key column.

    A string key is read and hashed a row group at a time; another key type is read whole
    and takes ``gold_mask``'s pandas path (its pandas dtype can depend on the whole column).
    The key column must be in the file.
    """
    import pyarrow as pa

    from lockgate.evaluation.report import gold_mask_arrow

    meta = parquet.metadata
    total = meta.num_rows if rows is None else min(rows, meta.num_rows)
    names = parquet.schema_arrow.names
    if gold.key not in names:  # gold_mask's SchemaError, naming the columns
        import pandas as pd

        from lockgate.evaluation.report import gold_mask

        gold_mask(pd.DataFrame(columns=names), gold)
    field = parquet.schema_arrow.field(gold.key)
    if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
        column = parquet.read(columns=[gold.key]).column(0).slice(0, total)
        return gold_mask_arrow(column, gold)
    parts = [np.zeros(0, dtype=bool)]
    start = 0
    for group in range(meta.num_row_groups):
        if start >= total:
            break
        column = parquet.read_row_group(group, columns=[gold.key]).column(0)
        column = column.slice(0, total - start)
        parts.append(gold_mask_arrow(column, gold))
        start += len(column)
        del column
    return np.concatenate(parts)


def read_frame(
    artifacts: ArtifactRegistry,
    frame_sha: str,
    columns: Sequence[str] | None,
    rows: Any,
    verify_content: bool,
) -> tuple[pd.DataFrame, bool]:
    """The frame of :func:`~lockgate.lineage.steps.load_snapshot_frame` and, with
    ``verify_content``, whether the stored table hashes to ``frame_sha`` as it is.

    The table is this function's own, so each column's Arrow buffers are released as it is
    converted (``self_destruct``). Arrow and OS errors propagate (the caller names the
    snapshot).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lockgate.errors import SchemaError
    from lockgate.lineage.hashing import table_sha256

    data = artifacts.read_snapshot_bytes(frame_sha)
    wanted = list(columns) if columns is not None else None
    if rows is None:
        table = pq.read_table(pa.BufferReader(data), columns=wanted)
    else:  # a row group at a time: never the whole table, only the rows kept
        parquet = pq.ParquetFile(pa.BufferReader(data))
        mask = pa.array(rows, type=pa.bool_())
        if len(mask) != parquet.metadata.num_rows:
            raise SchemaError(
                f"rows= has {len(mask)} entries, snapshot {frame_sha[:12]} "
                f"{parquet.metadata.num_rows} rows; fix: pass one boolean per stored row"
            )
        table = filter_row_groups(parquet, mask, wanted)
        del parquet, mask
    del data
    # a snapshot is stored in canonical order: its table hashes as it is, before pandas
    verified = verify_content and table_sha256(table) == frame_sha
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    return frame, verified


def time_split_rows(
    artifacts: ArtifactRegistry,
    frame_sha: str,
    *,
    timestamp_column: str,
    holdout_fraction: float,
) -> tuple[int, int] | None:
    """``(first held-out row, row count)`` of stored snapshot ``frame_sha`` under
    :func:`~lockgate.lineage.steps.split_frame`'s rule, reading its time column only; None when
    the snapshot is not sorted by time (none that lockgate stores): no prefix/suffix cut then.

    Sorted by time, the training rows are the prefix before the first held-out row
    (:func:`~lockgate.lineage.steps.load_training_frame`) and the held-out rows the suffix from
    it (:func:`load_holdout_frame`).
    """
    from lockgate.lineage.steps import load_snapshot_frame, split_frame

    times = load_snapshot_frame(
        artifacts, frame_sha, verify_content=False, columns=[timestamp_column]
    )
    if not times[timestamp_column].is_monotonic_increasing:
        return None
    train, _ = split_frame(
        times, timestamp_column=timestamp_column, holdout_fraction=holdout_fraction
    )
    return len(train), len(times)


def load_holdout_frame(
    artifacts: ArtifactRegistry,
    frame_sha: str,
    *,
    columns: Sequence[str],
    timestamp_column: str,
    holdout_fraction: float,
) -> tuple[pd.DataFrame, bool]:
    """The held-out rows of snapshot ``frame_sha`` (``columns`` only) and whether the rows were
    selected (``evaluate_version(..., rows_selected=...)``).

    The counterpart of :func:`~lockgate.lineage.steps.load_training_frame` for evaluation: the
    time column gives the split, and only the rows after it become a pandas frame. A snapshot
    not sorted by time is read whole (``columns`` and the time column) and the flag is False.
    Reads without the content check (the file hash is checked).
    """
    import numpy as np

    from lockgate.lineage.steps import load_snapshot_frame

    split = time_split_rows(
        artifacts, frame_sha, timestamp_column=timestamp_column, holdout_fraction=holdout_fraction
    )
    if split is None:
        every = list(dict.fromkeys([*columns, timestamp_column]))
        return load_snapshot_frame(artifacts, frame_sha, verify_content=False, columns=every), False
    cut, count = split
    mask = np.zeros(count, dtype=bool)
    mask[cut:] = True  # sorted by time: the held-out part is a suffix
    frame = load_snapshot_frame(
        artifacts, frame_sha, verify_content=False, columns=list(columns), rows=mask
    )
    return frame, True
