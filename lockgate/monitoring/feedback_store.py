"""The feedback folder: the label files' schema, writing a validated frame atomically as a new
Parquet file, listing the files, their watermark, and reading them back as one frame.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate._util.fs import atomic_write
from lockgate.errors import CorruptDataError, DataError, EmptyDataError, SchemaError, SpecError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


__all__ = [
    "FEEDBACK_COLUMNS",
    "aware_utc",
    "check_task",
    "feedback_files",
    "feedback_schema",
    "feedback_watermark",
    "read_feedback",
    "write_feedback",
]

FEEDBACK_COLUMNS = ("trace_id", "label", "label_timestamp")
_OPTIONAL = ("row",)
_TASKS = ("binary", "multiclass", "regression")


def _label_type(task: str) -> pa.DataType:
    import pyarrow as pa

    check_task(task)
    return {"binary": pa.int8(), "regression": pa.float64(), "multiclass": pa.string()}[task]


def check_task(task: str) -> str:
    if task not in _TASKS:
        raise SpecError(
            f"task={task!r} is unknown; rule: one of {list(_TASKS)}; fix: pass the pipeline's "
            "ModelPipeline.task"
        )
    return task


def feedback_schema(*, with_row: bool = False, task: str = "binary") -> pa.Schema:
    """The Arrow schema of a feedback file (``row`` only when a request had several rows).

    The label's type follows the task: int8 0/1 (binary), float64 (regression), string (the
    class label as ``str(label)``, multiclass).
    """
    import pyarrow as pa

    fields = [
        ("trace_id", pa.string()),
        ("label", _label_type(task)),
        ("label_timestamp", pa.timestamp("us", tz="UTC")),
    ]
    if with_row:
        fields.append(("row", pa.int32()))
    return pa.schema(fields)


# ---------------------------------------------------------------------------------------------
# writing


def _refuse_values(column: pd.Series, bad: np.ndarray, what: str, rule_and_fix: str) -> None:
    """Raises DataError naming how many values of ``column`` are ``bad``, with examples."""
    if bad.any():
        examples = column[bad].head(3).tolist()
        raise DataError(
            f"{column.name} holds {int(bad.sum())} value(s) {what} (e.g. {examples!r}); "
            f"{rule_and_fix}"
        )


def _validated(frame: Any, task: str = "binary") -> pd.DataFrame:
    """The frame checked and normalised (UTC microsecond timestamps, labels of the task's type:
    int8 0/1, float64, or the class label as a string)."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"feedback must be a pandas DataFrame, got {type(frame).__name__}; build one with "
            f"columns {list(FEEDBACK_COLUMNS)} (e.g. with lockgate.monitoring.feedback.labels_for)"
        )
    missing = [c for c in FEEDBACK_COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in (*FEEDBACK_COLUMNS, *_OPTIONAL)]
    if missing or extra:
        raise SchemaError(
            f"feedback columns {list(frame.columns)}: missing {missing}, unexpected {extra}; "
            f"rule: a feedback frame has exactly {list(FEEDBACK_COLUMNS)} (plus optional "
            "'row' for batched requests); fix: rename or drop the columns"
        )
    if frame.empty:
        raise EmptyDataError(
            "the feedback frame has no rows; rule: a feedback file holds at least one label; "
            "fix: write only when labels arrived"
        )
    trace = frame["trace_id"]
    bad_trace = ~trace.map(lambda t: isinstance(t, str) and t != "").to_numpy(bool)
    _refuse_values(
        trace,
        bad_trace,
        "that are not non-empty strings",
        "rule: every label names the trace id the gateway returned; fix: drop labels without a "
        "trace id",
    )
    label = frame["label"]
    labels: np.ndarray
    if task == "regression":
        values = pd.to_numeric(label, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(values) | label.map(lambda v: isinstance(v, bool)).to_numpy(bool)
        _refuse_values(
            label,
            bad,
            "that are not finite numbers",
            "rule: a regression label is a finite number (no missing values); fix: drop "
            "unlabelled rows",
        )
        labels = values
    elif task == "multiclass":
        bad = label.isna().to_numpy(bool)
        if bad.any():
            raise DataError(
                f"label holds {int(bad.sum())} missing value(s); rule: a multiclass label is one "
                "of the model's classes; fix: drop unlabelled rows"
            )
        labels = label.map(str).to_numpy(object)
    elif label.dtype == bool:
        labels = label.to_numpy(np.int8)
    else:
        values = pd.to_numeric(label, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isin(values, (0.0, 1.0))
        _refuse_values(
            label,
            bad,
            "other than 0 and 1",
            "rule: labels are 0 or 1 (no missing values); fix: encode the positive class as 1, drop "
            "unlabelled rows",
        )
        labels = values.astype(np.int8)
    stamps = frame["label_timestamp"]
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        raise SchemaError(
            f"label_timestamp has dtype {stamps.dtype}; rule: label timestamps must be "
            "timezone-aware datetimes; fix: pd.to_datetime(..., utc=True) or "
            ".dt.tz_localize('UTC')"
        )
    if stamps.isna().any():
        raise DataError(
            f"label_timestamp holds {int(stamps.isna().sum())} missing value(s); rule: every "
            "label says when it became known; fix: fill in the time or drop the rows"
        )
    out = pd.DataFrame(
        {
            "trace_id": trace.astype(object).to_numpy(),
            "label": labels,
            "label_timestamp": stamps.dt.tz_convert("UTC")
            .astype("datetime64[us, UTC]")
            .reset_index(drop=True),
        }
    )
    if "row" in frame.columns:
        rows = pd.to_numeric(frame["row"], errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~(np.isfinite(rows) & (rows >= 0) & (rows == np.floor(rows)) & (rows < 2**31))
        if bad.any():
            raise DataError(
                f"row holds {int(bad.sum())} value(s) that are not row indices (e.g. "
                f"{frame['row'][bad].head(3).tolist()!r}); rule: row is the 0-based position of "
                "the labelled row in its request; fix: drop the column for one-row requests"
            )
        out["row"] = rows.astype(np.int32)
    return out


def write_feedback(
    folder: str | os.PathLike[str], frame: pd.DataFrame, *, task: str = "binary"
) -> Path:
    """Validate a frame of labels and add it to ``folder`` as a new Parquet file, atomically.

    The file is written under a hidden temp name, fsynced, renamed to
    ``labels-<UTC time>-<id>.parquet`` and the folder fsynced: readers see the whole file or
    nothing. Bad input raises before anything is written.

    Args:
        folder: the feedback folder (created if missing).
        frame: columns ``trace_id`` (str), ``label``, ``label_timestamp`` (tz-aware) and
            optionally ``row`` (position in a batched request). The label follows ``task``:
            0/1 (binary), a finite number (regression), a class label (multiclass, stored as
            ``str(label)``).
        task: the pipeline's task (one folder holds the labels of one pipeline).

    Returns:
        The path of the new file.

    Raises:
        SchemaError: a column is missing, unexpected, or timestamps are naive.
        EmptyDataError: the frame has no rows.
        DataError: a trace id, label, timestamp or row is invalid.

    Example:
        >>> # write_feedback(data_dir / "feedback", labels_for(report.trace_rows, y, label_ts))
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_task(task)
    clean = _validated(frame, task)
    table = pa.Table.from_pandas(
        clean,
        schema=feedback_schema(with_row="row" in clean.columns, task=task),
        preserve_index=False,
    )
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"labels-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    atomic_write(root / name, sink.getvalue().to_pybytes())
    return root / name


# ---------------------------------------------------------------------------------------------
# reading


def feedback_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The label files of ``folder`` (``*.parquet``, hidden temp files excluded), by name."""
    root = Path(folder)
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir() if p.suffix == ".parquet" and not p.name.startswith(".")
    )


def feedback_watermark(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A cheap fingerprint of the feedback folder: names, sizes and mtimes of its files.

    It changes when a file is added, removed or rewritten; nothing is read. Sensors compare it
    with the one in their cursor to tell whether new labels arrived.

    Returns:
        ``{"files": n, "bytes": total size, "digest": sha256 of the listing}``.
    """
    from lockgate.lineage.hashing import sha256_json

    listing = []
    for path in feedback_files(folder):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed meanwhile
            continue
        listing.append([path.name, st.st_size, st.st_mtime_ns])
    return {
        "files": len(listing),
        "bytes": sum(entry[1] for entry in listing),
        "digest": sha256_json(listing),
    }


def aware_utc(moment: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(moment, dt.datetime):
        raise SpecError(f"{name}={moment!r} must be a datetime, e.g. datetime.now(UTC)")
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _read_file(path: Path, task: str = "binary") -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CorruptDataError(
            f"feedback file {path} cannot be read ({exc}); rule: the feedback folder holds "
            "Parquet files written by lockgate.monitoring.feedback.write_feedback; fix: move the file out "
            "of the folder and write its labels again"
        ) from exc
    missing = [c for c in FEEDBACK_COLUMNS if c not in table.column_names]
    types_ok = not missing and (
        pa.types.is_string(table.schema.field("trace_id").type)
        or pa.types.is_large_string(table.schema.field("trace_id").type)
    )
    ts_type = None if missing else table.schema.field("label_timestamp").type
    label_type = None if missing else table.schema.field("label").type
    label_ok = label_type is not None and (
        pa.types.is_integer(label_type)
        or (task == "regression" and pa.types.is_floating(label_type))
        or (
            task == "multiclass"
            and (pa.types.is_string(label_type) or pa.types.is_large_string(label_type))
        )
    )
    ts_ok = ts_type is not None and pa.types.is_timestamp(ts_type) and ts_type.tz is not None
    if not types_ok or not ts_ok or not label_ok:
        wanted = {"binary": "integer 0/1", "regression": "number", "multiclass": "string"}[task]
        raise SchemaError(
            f"feedback file {path} has schema {table.schema.to_string(show_schema_metadata=False)!r}"
            f"; rule: trace_id string, label {wanted} ({task}), label_timestamp tz-aware timestamp "
            "(missing: " + str(missing) + "); fix: move the file out of the folder and write its "
            "labels with lockgate.monitoring.feedback.write_feedback"
        )
    columns = {
        "trace_id": table.column("trace_id").cast(pa.string()),
        "label": table.column("label").cast(_label_type(task)),
        "label_timestamp": table.column("label_timestamp").cast(pa.timestamp("us", tz="UTC")),
        "row": (
            table.column("row").cast(pa.int32())
            if "row" in table.column_names
            else pa.array(np.zeros(table.num_rows, np.int32))
        ),
    }
    return pa.table(columns)


def read_feedback(
    folder: str | os.PathLike[str], *, as_of: dt.datetime | None = None, task: str = "binary"
) -> pd.DataFrame:
    """Every label of the folder (known at ``as_of``), duplicates kept, in file order.

    Args:
        folder: the feedback folder.
        as_of: only labels with ``label_timestamp <= as_of`` (naive means UTC).
        task: the pipeline's task: the label's type (see :func:`feedback_schema`).

    Returns:
        Columns ``trace_id``, ``label`` (int8, float64 or str by task), ``label_timestamp``
        (UTC), ``row`` (int32).

    Raises:
        CorruptDataError: a file cannot be read.
        SchemaError: a file does not have the feedback columns.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    check_task(task)
    tables = [_read_file(path, task) for path in feedback_files(folder)]
    schema = feedback_schema(with_row=True, task=task)
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    if as_of is not None:
        limit = pa.scalar(aware_utc(as_of, "as_of"), pa.timestamp("us", tz="UTC"))
        table = table.filter(pc.less_equal(table.column("label_timestamp"), limit))
    frame = table.to_pandas()
    if task == "binary":
        frame["label"] = frame["label"].astype(np.int8)
    elif task == "regression":
        frame["label"] = frame["label"].astype(np.float64)
    else:
        frame["label"] = frame["label"].astype(object)
    return frame
