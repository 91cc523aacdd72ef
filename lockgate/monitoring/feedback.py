"""Label feedback: delayed labels joined to the gateway's prediction log, live performance per version.

The gateway answers every request with a trace id (``parameters.lockgate_trace_id``) and logs
it with the served version and the output rows (:mod:`lockgate.gateway.app`). Labels arrive later
(a chargeback, a fraud analyst's verdict) as Parquet files in a feedback folder, one row per
labelled prediction::

    trace_id         string     the trace id the gateway returned
    label            int8       0 or 1
    label_timestamp  timestamp  when the label became known (tz-aware, stored as UTC)
    row              int32      optional: the row of a batched request (default 0)

* :func:`write_feedback` validates a frame and adds it as a new file, atomically.
* :func:`live_performance` streams the log and joins the labels: per model version, the most
  recent ``window`` labelled predictions give ROC AUC, PR AUC, log loss and Brier score
  (:mod:`lockgate.tasks.metrics`), label coverage, mean score and positive rate.
* :func:`judge` (pure) compares the champion's live metric with its gold-set estimate and
  says ``ok``, ``warn`` or ``critical``; :func:`lockgate.monitoring.triggers.step` turns levels into
  retrains.
* :func:`labels_for` builds the feedback frame for requests a
  :class:`~lockgate.traffic.TrafficGenerator` sent (demo, drills, tests).

Example:
    >>> import pandas as pd
    >>> frame = labels_for([("t-1", 0), ("t-2", 1)], [0, 1],
    ...                    pd.to_datetime(["2024-01-02", "2024-01-03"], utc=True))
    >>> list(frame.columns)
    ['trace_id', 'label', 'label_timestamp']
"""

from __future__ import annotations

import datetime as dt
import math
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lockgate._util.fs import fsync_path
from lockgate.errors import CorruptDataError, DataError, EmptyDataError, SchemaError, SpecError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from lockgate.monitoring.triggers import FeedbackPolicy

__all__ = [
    "FEEDBACK_COLUMNS",
    "HIGHER_IS_BETTER",
    "LIVE_METRICS",
    "feedback_files",
    "feedback_schema",
    "feedback_watermark",
    "judge",
    "labels_for",
    "live_metrics",
    "live_performance",
    "metric_interval",
    "read_feedback",
    "write_feedback",
]

FEEDBACK_COLUMNS = ("trace_id", "label", "label_timestamp")
LIVE_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False}
_OPTIONAL = ("row",)
_LOG_COLUMNS = ["trace_id", "ts", "version", "shadow", "status", "outputs"]
_SEP = "\x1f"  # joins trace id and row; the gateway's trace ids never contain it
_TASKS = ("binary", "multiclass", "regression")
_INTERVAL_RESAMPLES = 200  # bootstrap resamples of the judged metric's interval
_INTERVAL_MAX_N = 5000  # larger windows get no interval (it would be narrow, and costly)

Level = Literal["ok", "warn", "critical"]


def _label_type(task: str) -> pa.DataType:
    import pyarrow as pa

    _check_task(task)
    return {"binary": pa.int8(), "regression": pa.float64(), "multiclass": pa.string()}[task]


def _check_task(task: str) -> str:
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
    if bad_trace.any():
        examples = trace[bad_trace].head(3).tolist()
        raise DataError(
            f"trace_id holds {int(bad_trace.sum())} value(s) that are not non-empty strings "
            f"(e.g. {examples!r}); rule: every label names the trace id the gateway returned; "
            "fix: drop labels without a trace id"
        )
    label = frame["label"]
    labels: np.ndarray
    if task == "regression":
        values = pd.to_numeric(label, errors="coerce").to_numpy(np.float64, na_value=np.nan)
        bad = ~np.isfinite(values) | label.map(lambda v: isinstance(v, bool)).to_numpy(bool)
        if bad.any():
            examples = label[bad].head(3).tolist()
            raise DataError(
                f"label holds {int(bad.sum())} value(s) that are not finite numbers (e.g. "
                f"{examples!r}); rule: a regression label is a finite number (no missing "
                "values); fix: drop unlabelled rows"
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
        if bad.any():
            examples = label[bad].head(3).tolist()
            raise DataError(
                f"label holds {int(bad.sum())} value(s) other than 0 and 1 (e.g. {examples!r}); "
                "rule: labels are 0 or 1 (no missing values); fix: encode fraud as 1, drop "
                "unlabelled rows"
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

    _check_task(task)
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
    tmp = root / f".{name}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, root / name)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(root)
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


def _aware(moment: dt.datetime, name: str) -> dt.datetime:
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

    _check_task(task)
    tables = [_read_file(path, task) for path in feedback_files(folder)]
    schema = feedback_schema(with_row=True, task=task)
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    if as_of is not None:
        limit = pa.scalar(_aware(as_of, "as_of"), pa.timestamp("us", tz="UTC"))
        table = table.filter(pc.less_equal(table.column("label_timestamp"), limit))
    frame = table.to_pandas()
    if task == "binary":
        frame["label"] = frame["label"].astype(np.int8)
    elif task == "regression":
        frame["label"] = frame["label"].astype(np.float64)
    else:
        frame["label"] = frame["label"].astype(object)
    return frame


# ---------------------------------------------------------------------------------------------
# live performance


def _metric(
    name: str, y: np.ndarray, p: np.ndarray, task: str = "binary"
) -> tuple[float | None, str | None]:
    """One lockgate metric, or None and why it is undefined on these rows."""
    from lockgate.tasks import catalog as tasks
    from lockgate.tasks import metrics

    if task == "binary":
        fn = {
            "roc_auc": metrics.roc_auc,
            "pr_auc": metrics.pr_auc,
            "log_loss": metrics.log_loss,
            "brier": metrics.brier,
        }[name]
        try:
            value = fn(y, p)
        except DataError as exc:  # one class only, or scores outside [0, 1]: said, not zeroed
            return None, str(exc)
        return float(value), None
    try:
        value = tasks.metric_value(task, name, y, p)
    except DataError as exc:  # one class only, a constant label, ...: said, not zeroed
        return None, str(exc)
    return float(value), None


def live_metrics(task: str) -> tuple[str, ...]:
    """The live metrics measured for a task: :data:`LIVE_METRICS` for binary, the task's
    catalog (:func:`lockgate.tasks.catalog.task_metric_names`) otherwise.

    Example:
        >>> live_metrics("regression")
        ('rmse', 'mae', 'r2')
    """
    from lockgate.tasks.catalog import task_metric_names

    return LIVE_METRICS if _check_task(task) == "binary" else task_metric_names(task)


def metric_interval(
    task: str,
    metric: str,
    y: np.ndarray,
    p: np.ndarray,
    *,
    resamples: int = _INTERVAL_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> list[float] | None:
    """A percentile-bootstrap interval of ``metric`` on the labelled rows (seeded).

    Rows are resampled with replacement; a resample on which the metric is undefined (one
    class only) is skipped. A small live window gives a wide interval: this is what tells a
    real decay from the noise of a few hundred labels.

    Returns:
        ``[low, high]``, or None when fewer than half of the resamples were defined.

    Example:
        >>> y = np.array([1.0, 2.0, 3.0, 4.0]); p = np.array([1.1, 1.9, 3.2, 3.8])
        >>> low, high = metric_interval("regression", "mae", y, p)
        >>> 0.0 <= low <= high <= 0.2
        True
    """
    n = len(y)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    values: list[float] = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        value, _why = _metric(metric, y[idx], p[idx], task)
        if value is not None and math.isfinite(value):
            values.append(value)
    if len(values) < resamples / 2:
        return None
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC).isoformat()


def _version_block(
    y: np.ndarray,
    p: np.ndarray,
    ts: np.ndarray,
    *,
    predictions: int,
    labelled: int,
    invalid_scores: int,
    window: int,
    task: str = "binary",
    metric: str | None = None,
    classes: Sequence[Any] = (),
) -> dict[str, Any]:
    from lockgate.evaluation.report import encode_labels

    n = len(y)
    block: dict[str, Any] = {
        "predictions": predictions,
        "labelled": labelled,
        "coverage": labelled / predictions if predictions else None,
        "invalid_scores": invalid_scores,
        "window": window,
        "n": n,
        "positives": int(y.sum()) if n and task == "binary" else 0,
        "positive_rate": float(y.mean()) if n and task == "binary" else None,
        "mean_score": float(p.mean()) if n and task != "multiclass" else None,
        "window_start": _iso(int(ts.min())) if n else None,
        "window_end": _iso(int(ts.max())) if n else None,
        "metrics": {},
        "undefined": {},
    }
    if task == "regression":
        block["mean_label"] = float(y.mean()) if n else None
    not_scored: str | None = None
    if task == "multiclass" and n:
        block["mean_score"] = float(p.max(axis=1).mean())  # the top-class probability
        try:  # labels arrive as strings; the model's classes may be ints
            y = encode_labels(y, [str(c) for c in classes])
        except DataError as exc:
            not_scored = str(exc)
    for name in live_metrics(task):
        value: float | None = None
        why: str | None = "no labelled predictions of this version in the window"
        if n:
            value, why = (None, not_scored) if not_scored else _metric(name, y, p, task)
        block["metrics"][name] = value
        if why is not None:
            block["undefined"][name] = why
    block["interval"] = None
    measured = metric is not None and block["metrics"].get(metric) is not None
    if measured and n and not_scored is None and n <= _INTERVAL_MAX_N:
        assert metric is not None
        block["interval"] = metric_interval(task, metric, y, p)
    return block


class _Labels:
    """The deduplicated label set and, per label, the latest live prediction it matched."""

    def __init__(self, frame: pd.DataFrame, width: int = 1) -> None:
        import pandas as pd

        self.rows_read = len(frame)
        rowed = bool((frame["row"] != 0).any()) if len(frame) else False
        keys = (
            frame["trace_id"].astype(str) + _SEP + frame["row"].astype(str)
            if rowed
            else frame["trace_id"].astype(str)
        )
        order = pd.DataFrame(
            {
                "key": keys.to_numpy(),
                "ts": frame["label_timestamp"].to_numpy(),
                "pos": np.arange(len(frame)),
            }
        ).sort_values(["ts", "pos"], kind="stable")
        last = order.drop_duplicates("key", keep="last")
        self.duplicates = len(frame) - len(last)
        self.rowed = rowed
        self.index = pd.Index(last["key"].to_numpy())
        self.y = frame["label"].to_numpy()[last["pos"].to_numpy()]
        size = len(last)
        self.best_ts = np.full(size, np.iinfo(np.int64).min, np.int64)
        self.best_score = np.full((size, width) if width > 1 else size, np.nan, np.float64)
        self.best_version = np.full(size, -1, np.int32)
        self.duplicate_predictions = 0

    def match(
        self, keys: np.ndarray, ts: np.ndarray, version: np.ndarray, score: np.ndarray
    ) -> int:
        """Record matches of one batch's rows; returns how many rows matched a label."""
        if not len(keys) or not len(self.index):
            return 0
        idx = self.index.get_indexer(keys)
        hit = idx >= 0
        if not hit.any():
            return 0
        idx, ts, version, score = idx[hit], ts[hit], version[hit], score[hit]
        order = np.lexsort((ts, idx))
        idx, ts, version, score = idx[order], ts[order], version[order], score[order]
        last = np.r_[idx[1:] != idx[:-1], True]
        self.duplicate_predictions += int((~last).sum())
        idx, ts, version, score = idx[last], ts[last], version[last], score[last]
        seen = self.best_version[idx] >= 0
        self.duplicate_predictions += int(seen.sum())
        newer = ts >= self.best_ts[idx]
        idx, ts, version, score = idx[newer], ts[newer], version[newer], score[newer]
        self.best_ts[idx] = ts
        self.best_score[idx] = score
        self.best_version[idx] = version
        return int(hit.sum())


def live_performance(
    log_dir: str | os.PathLike[str],
    feedback_dir: str | os.PathLike[str],
    model: str,
    *,
    window: int,
    min_labels: int,
    metric: str,
    as_of: dt.datetime | None = None,
    since: dt.datetime | None = None,
    task: str = "binary",
    classes: Sequence[Any] = (),
) -> dict[str, Any]:
    """Join delayed labels to the prediction log and measure each version's live performance.

    Only live answers count: shadow calls and non-200 records are skipped. The score of a
    logged output row is its last value (``OUTPUT__0 [1]``: the probability of label 1 or the
    regression value); for a multiclass model the whole row (``OUTPUT__0 [k]``, the class
    probabilities in ``classes`` order; a row of another width is an invalid score). A
    label matches the row its ``trace_id`` (and ``row``) names; when a trace id was labelled
    twice the label with the latest ``label_timestamp`` wins (on a tie, the file later by
    name: :func:`write_feedback` names files by write time); when the log holds a trace id
    twice the latest prediction wins. Per version, the most recent ``window`` labelled
    predictions (by prediction time) are measured with :mod:`lockgate.tasks.metrics`; a metric
    undefined on them (one class only) is None with the reason in ``undefined``. The metrics
    follow the task (:func:`live_metrics`), and the judged ``metric`` gets a 95 % bootstrap
    ``interval`` when the window holds at most 5,000 labelled predictions.

    The log is streamed (:func:`lockgate.gateway.app.iter_prediction_log`, six columns); memory
    holds the label set and one batch, not the log. Every call scans the log from ``since``
    (no incremental state; day partitions before it are not opened): 2 M logged predictions
    joined to 200 k labels took 6.6 s on a 2-core machine, with flat memory.

    Args:
        log_dir: the gateway's prediction log folder.
        feedback_dir: the folder of label files.
        model: the public model name (the pipeline).
        window: most recent labelled predictions measured per version.
        min_labels: labelled predictions needed to judge (reported as ``enough_labels``).
        metric: the metric judged (one of :func:`live_metrics` of the task; all are computed).
        as_of: only labels known at this time (``label_timestamp <= as_of``) and predictions
            made by then (naive means UTC); None: everything.
        since: only predictions made at or after this time (naive means UTC); None: the whole
            log. Labels of older predictions count as ``unknown_trace_ids``.
        task: the pipeline's task (the labels' type, the metrics, the output width).
        classes: the multiclass model's class labels in output column order (the champion's);
            labels are matched to them as strings.

    Returns:
        A JSON-able report: ``model``, ``as_of``, ``metric``, ``window``, ``min_labels``,
        ``labels`` (files, rows, duplicates, unique, matched, unknown_trace_ids),
        ``predictions`` (live rows, skipped shadow and error records, labelled, unlabelled,
        duplicate_trace_ids) and ``versions``: per version ``predictions``, ``labelled``,
        ``coverage``, ``n``, ``positives``, ``positive_rate``, ``mean_score`` (multiclass: of
        the top-class probability), ``mean_label`` (regression), ``window_start``/
        ``window_end``, ``metrics``, ``undefined``, ``interval`` (of ``metric``, or None),
        ``enough_labels``; and ``task``.

    Raises:
        SpecError: ``metric``, ``window`` or ``min_labels`` is invalid.
        CorruptDataError, SchemaError: a feedback file is unreadable.

    Example:
        >>> # report = live_performance(stack.prediction_log_dir, data_dir / "feedback",
        >>> #                           "fraud_lgbm", window=5000, min_labels=500, metric="roc_auc")
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from lockgate.gateway.app import iter_prediction_log

    names = live_metrics(task)
    if metric not in names:
        raise SpecError(
            f"metric={metric!r} is not a live metric of task {task!r}; rule: one of "
            f"{list(names)}; fix: pick one of them (FeedbackPolicy.metric)"
        )
    width = len(classes) if task == "multiclass" else 1
    if task == "multiclass" and width < 2:
        raise SpecError(
            f"classes={list(classes)!r} for a multiclass model; rule: the k >= 2 class labels in "
            "output column order; fix: pass the champion's TrainedModel.classes"
        )
    if window < 1 or min_labels < 1:
        raise SpecError(
            f"window={window}, min_labels={min_labels}: both must be at least 1; e.g. "
            "window=5000, min_labels=500"
        )
    until = None
    if as_of is not None:
        as_of = _aware(as_of, "as_of")
        until = as_of + dt.timedelta(microseconds=1)
    frame = read_feedback(feedback_dir, as_of=as_of, task=task)
    labels = _Labels(frame, width)
    del frame
    codes: dict[str, int] = {}
    predictions: dict[int, int] = {}
    skipped = {"shadow": 0, "error": 0}
    live_rows = 0
    start = None if since is None else _aware(since, "since")
    for batch in iter_prediction_log(
        log_dir, model, since=start, until=until, columns=_LOG_COLUMNS
    ):
        shadow = pc.fill_null(batch.column("shadow"), False)
        ok = pc.and_(pc.equal(batch.column("status"), 200), pc.is_valid(batch.column("outputs")))
        live = pc.and_(pc.invert(shadow), ok)
        failed = pc.and_(pc.invert(shadow), pc.invert(ok))
        skipped["shadow"] += pc.sum(pc.cast(shadow, pa.int64())).as_py() or 0
        skipped["error"] += pc.sum(pc.cast(failed, pa.int64())).as_py() or 0
        b = batch.filter(live)
        if b.num_rows == 0:
            continue
        outputs = b.column("outputs")
        lengths = pc.fill_null(pc.list_value_length(outputs), 0).to_numpy().astype(np.int64)
        versions = b.column("version").to_numpy(zero_copy_only=False)
        uniq, inverse = np.unique(versions.astype(str), return_inverse=True)
        code_of = np.array([codes.setdefault(str(v), len(codes)) for v in uniq], np.int32)
        record_code = code_of[inverse]
        for code, count in zip(code_of, np.bincount(inverse, weights=lengths), strict=True):
            predictions[int(code)] = predictions.get(int(code), 0) + int(count)
        total = int(lengths.sum())
        live_rows += total
        if total == 0:
            continue
        rows = pc.list_flatten(outputs)
        widths = pc.fill_null(pc.list_value_length(rows), 0).to_numpy().astype(np.int64)
        values = pc.list_flatten(rows).to_numpy(zero_copy_only=False).astype(np.float64)
        score = _scores(values, widths, width)
        parent = np.repeat(np.arange(b.num_rows), lengths)
        row_pos = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        traces = b.column("trace_id").to_numpy(zero_copy_only=False).astype(object)
        ts = pc.cast(b.column("ts"), pa.int64()).to_numpy()
        if labels.rowed:
            keys = np.array(
                [f"{traces[i]}{_SEP}{r}" for i, r in zip(parent, row_pos, strict=True)], object
            )
            sel = np.arange(total)
        else:
            sel = np.flatnonzero(row_pos == 0)
            keys = traces[parent[sel]]
        labels.match(keys, ts[parent[sel]], record_code[parent[sel]], score[sel])

    matched = labels.best_version >= 0
    versions_out: dict[str, Any] = {}
    for version, code in sorted(codes.items()):
        mine = np.flatnonzero(labels.best_version == code)
        valid = np.isfinite(labels.best_score[mine])
        finite = mine[valid.all(axis=1) if valid.ndim == 2 else valid]
        recent = finite[np.argsort(labels.best_ts[finite], kind="stable")][-window:]
        y = labels.y[recent]
        y = y.astype(np.int64 if task == "binary" else np.float64) if task != "multiclass" else y
        block = _version_block(
            y,
            labels.best_score[recent],
            labels.best_ts[recent],
            predictions=predictions.get(code, 0),
            labelled=len(mine),
            invalid_scores=len(mine) - len(finite),
            window=window,
            task=task,
            metric=metric,
            classes=classes,
        )
        block["enough_labels"] = block["n"] >= min_labels and block["undefined"].get(metric) is None
        versions_out[version] = block
    n_matched = int(matched.sum())
    return {
        "model": model,
        "task": task,
        "as_of": as_of.isoformat() if as_of is not None else None,
        "metric": metric,
        "window": window,
        "min_labels": min_labels,
        "labels": {
            "files": len(feedback_files(feedback_dir)),
            "rows": labels.rows_read,
            "duplicates": labels.duplicates,
            "unique": len(labels.index),
            "matched": n_matched,
            "unknown_trace_ids": len(labels.index) - n_matched,
        },
        "predictions": {
            "live": live_rows,
            "skipped_shadow": skipped["shadow"],
            "skipped_errors": skipped["error"],
            "labelled": n_matched,
            "unlabelled": live_rows - n_matched,
            "duplicate_trace_ids": labels.duplicate_predictions,
        },
        "versions": versions_out,
    }


def _scores(values: np.ndarray, widths: np.ndarray, width: int) -> np.ndarray:
    """Per logged output row: its last value (``width`` 1), or its ``width`` values (rows of
    another width are NaN)."""
    if width == 1:
        ends = np.cumsum(widths) - 1
        return np.where(
            widths > 0, values[np.clip(ends, 0, None)] if len(values) else np.nan, np.nan
        )
    out = np.full((len(widths), width), np.nan)
    good = widths == width
    if good.any():
        starts = np.cumsum(widths) - widths
        out[good] = values[starts[good][:, None] + np.arange(width)]
    return out


# ---------------------------------------------------------------------------------------------
# judging


def judge(
    performance: Mapping[str, Any],
    champion_version: str,
    gold_estimate: float | None,
    policy: FeedbackPolicy,
    *,
    task: str = "binary",
) -> tuple[Level, str, dict[str, Any]]:
    """The level of the champion's live performance under ``policy`` (pure).

    ``critical`` when the live metric is worse than the gold-set estimate by more than
    ``max_drop`` or worse than ``min_value``; ``warn`` when worse by more than half of
    ``max_drop``; ``ok`` otherwise, and ``ok`` with the reason when the window holds fewer
    than ``min_labels`` labelled predictions or the metric is undefined on it. "Worse" follows
    the metric's direction for the task (:func:`lockgate.tasks.catalog.metric_direction`): lower ROC
    AUC / PR AUC / accuracy / R2, higher log loss / Brier score / RMSE / MAE; ``drop`` is how
    much worse, positive when worse. When the window's block carries a bootstrap ``interval``
    (small windows, see :func:`live_performance`) the reason quotes it and the evidence holds
    it as ``live_interval``.

    Args:
        performance: a :func:`live_performance` report.
        champion_version: the version the champion alias points at.
        gold_estimate: the champion's metric on the gold set (None: only ``min_value`` judges).
        policy: the pipeline's feedback policy.
        task: the pipeline's task (the metric's direction).

    Returns:
        ``(level, reason, evidence)``; evidence is JSON-able (metric, live and gold values,
        drop, thresholds, window size and span).

    Raises:
        SpecError: the metric is not one of the task's.

    Example:
        >>> from lockgate.monitoring.triggers import FeedbackPolicy
        >>> perf = {"versions": {"v1": {"n": 800, "positives": 40, "metrics": {"roc_auc": 0.7},
        ...         "undefined": {}, "window_start": None, "window_end": None}}}
        >>> judge(perf, "v1", 0.9, FeedbackPolicy(max_drop=0.05))[0]
        'critical'
    """
    from lockgate.tasks.catalog import higher_is_better

    metric = policy.metric
    if task == "binary" and metric in HIGHER_IS_BETTER:
        higher = HIGHER_IS_BETTER[metric]
    else:
        higher = higher_is_better(_check_task(task), metric)
    block = (performance.get("versions") or {}).get(champion_version) or {}
    interval = block.get("interval")
    n = int(block.get("n") or 0)
    live = (block.get("metrics") or {}).get(metric)
    evidence: dict[str, Any] = {
        "model": performance.get("model"),
        "champion": champion_version,
        "metric": metric,
        "higher_is_better": higher,
        "live": live,
        "gold": gold_estimate,
        "drop": None,
        "max_drop": policy.max_drop,
        "warn_drop": policy.max_drop / 2,
        "min_value": policy.min_value,
        "n": n,
        "positives": int(block.get("positives") or 0),
        "min_labels": policy.min_labels,
        "window_start": block.get("window_start"),
        "window_end": block.get("window_end"),
        "as_of": performance.get("as_of"),
        "task": task,
        "live_interval": interval,
    }
    if n < policy.min_labels:
        reason = (
            f"{n} labelled live predictions of champion {champion_version} in the window, fewer "
            f"than min_labels={policy.min_labels}: not judged"
        )
        return "ok", reason, evidence
    if live is None or not math.isfinite(float(live)):
        why = (block.get("undefined") or {}).get(metric, "no value")
        return "ok", f"live {metric} of champion {champion_version} is undefined: {why}", evidence
    live = float(live)
    sign = "higher" if higher else "lower"
    quoted = f"live {metric}={live:.4f}"
    if interval:
        quoted += f" (95% interval {interval[0]:.4f} to {interval[1]:.4f})"
    if gold_estimate is not None:
        drop = (gold_estimate - live) if higher else (live - gold_estimate)
        evidence["drop"] = drop
        change = f"worse by {drop:.4f}" if drop > 0 else f"better by {-drop:.4f}"
        where = f"{quoted} vs gold {gold_estimate:.4f} ({change}, "
        if drop > policy.max_drop:
            return (
                "critical",
                where + f"more than max_drop={policy.max_drop}; {sign} is better) on {n} labels",
                evidence,
            )
    else:
        drop, where = None, f"{quoted} (no gold estimate, "
    if policy.min_value is not None and (
        live < policy.min_value if higher else live > policy.min_value
    ):
        bound = "below" if higher else "above"
        return (
            "critical",
            f"{quoted} is {bound} min_value={policy.min_value} on {n} labels",
            evidence,
        )
    if drop is not None and drop > policy.max_drop / 2:
        return (
            "warn",
            where
            + f"more than half of max_drop={policy.max_drop}; {sign} is better) on {n} labels",
            evidence,
        )
    tail = "within half of max_drop" if drop is not None else "only min_value judges"
    return "ok", where + f"{tail}) on {n} labels", evidence


# ---------------------------------------------------------------------------------------------
# labels for traffic the demo sent


def labels_for(
    trace_rows: Iterable[Sequence[Any]] | Mapping[str, int],
    labels: Sequence[Any] | np.ndarray | pd.Series,
    label_timestamps: Sequence[Any] | np.ndarray | pd.Series,
) -> pd.DataFrame:
    """The feedback frame for requests whose trace id and sent rows are known.

    Args:
        trace_rows: per answered request ``(trace_id, first_row)`` or ``(trace_id, first_row,
            n_rows)`` (what :attr:`lockgate.traffic.TrafficReport.trace_rows` records), or a
            mapping trace id -> row; rows index ``labels`` and ``label_timestamps``.
        labels: the label of every row of the matrix the traffic was sent from.
        label_timestamps: when each row's label became known (tz-aware).

    Returns:
        A frame for :func:`write_feedback`: ``trace_id``, ``label``, ``label_timestamp`` and,
        when a request carried several rows, ``row``.

    Raises:
        DataError: a row index is outside ``labels``, or the two sequences differ in length.
    """
    import pandas as pd

    y = np.asarray(labels)
    stamps = pd.Series(pd.to_datetime(label_timestamps)).reset_index(drop=True)
    if len(y) != len(stamps):
        raise DataError(
            f"labels has {len(y)} values but label_timestamps {len(stamps)}; rule: one label "
            "time per label; fix: pass the same rows of both columns"
        )
    items: Iterable[Sequence[Any]] = (
        list(trace_rows.items()) if isinstance(trace_rows, Mapping) else trace_rows
    )
    traces: list[str] = []
    starts: list[int] = []
    positions: list[int] = []
    for item in items:
        trace, start, *rest = tuple(item)
        count = int(rest[0]) if rest else 1
        for offset in range(count):
            traces.append(str(trace))
            starts.append(int(start) + offset)
            positions.append(offset)
    index = np.asarray(starts, np.int64)
    if len(index) and (index.min() < 0 or index.max() >= len(y)):
        raise DataError(
            f"row indices span {index.min()}..{index.max()} but there are {len(y)} labels; "
            "rule: trace rows index the matrix the traffic was sent from; fix: pass that "
            "matrix's labels"
        )
    frame = pd.DataFrame(
        {
            "trace_id": traces,
            "label": y[index] if len(index) else np.array([], np.int8),
            "label_timestamp": stamps.iloc[index].reset_index(drop=True),
        }
    )
    if any(positions):
        frame["row"] = np.asarray(positions, np.int32)
    return frame
