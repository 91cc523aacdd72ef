"""The steps of a model's life as plain functions: snapshot, train, evaluate.

Dagster assets call these; so does ``lockgate reproduce``, which is why training takes everything
it needs from a lock record and a stored snapshot, never from the current spec.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.errors import (
    ArtifactIntegrityError,
    CorruptDataError,
    EmptyDataError,
    SchemaError,
    ValidationFailedError,
)
from lockgate.lineage.hashing import canonical_frame, frame_sha256, sha256_bytes, table_sha256
from lockgate.lineage.lock import build_lock_record, environment_versions
from lockgate.lineage.project import code_version, lockgate_code
from lockgate.training import Task, TrainedModel, check_labels, trainer_from_config

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from lockgate.features.store import FeastStore
    from lockgate.lineage.registry import ArtifactRegistry
    from lockgate.spec import ModelPipeline

__all__ = [
    "ModelBuild",
    "SnapshotBuild",
    "evaluate_version",
    "load_snapshot_frame",
    "load_trained_model",
    "load_training_frame",
    "normalise_dtypes",
    "release_memory",
    "snapshot_parquet_bytes",
    "split_frame",
    "take_snapshot",
    "train_version",
    "verify_snapshot",
]

Progress = Callable[[str], None]


class SnapshotBuild(dict[str, Any]):
    """Reference to a stored snapshot (JSON-able): frame_sha256, rows, features, ..."""


class ModelBuild(dict[str, Any]):
    """Reference to a stored model version (JSON-able): pipeline, version, weights_sha256, ..."""


def release_memory() -> None:
    """Hands freed heap back to the system: Arrow's unused pool memory and glibc's free pages.

    A step that built and dropped large frames keeps their memory in the allocators, and
    every later step of the same process starts from that size: call this when a step's
    frames are gone. Harmless (and a no-op for glibc) where glibc is not the C library.
    """
    import ctypes
    import ctypes.util

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)


def snapshot_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of a canonical frame, written with fixed settings."""
    import pyarrow as pa

    return _parquet_bytes(pa.Table.from_pandas(frame, preserve_index=False))


def _parquet_bytes(table: pa.Table) -> bytes:
    """Parquet bytes of the Arrow table of a canonical frame (:func:`snapshot_parquet_bytes`)."""
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=1 << 20)
    return buffer.getvalue()


def normalise_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Plain numpy dtypes for Feast's nullable ones.

    Nullable integers and booleans become int64 / bool when they hold no missing value and
    float64 (NaN for missing) when they do; nullable strings become object. Trainers, the
    data-quality suite and the snapshot's Parquet schema then see one representation.
    """
    import pandas as pd

    out = {}
    for name, column in frame.items():
        dtype = column.dtype
        if isinstance(dtype, pd.StringDtype):
            out[name] = column.astype(object).where(column.notna(), None)
        elif pd.api.types.is_extension_array_dtype(dtype) and (
            pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
        ):
            if column.isna().any():
                out[name] = column.astype("float64")
            else:
                out[name] = column.astype("int64" if pd.api.types.is_integer_dtype(dtype) else bool)
        else:
            out[name] = column
    return pd.DataFrame(out, index=frame.index)


def read_labels(spec: ModelPipeline, data_dir: Path) -> pd.DataFrame:
    """The pipeline's labelled entity rows: a Parquet file, or every Parquet file of a folder.

    Raises:
        EmptyDataError: the labels are missing or hold no rows.
        SchemaError: a needed column is missing.
        CorruptDataError: a file is not readable Parquet.
    """
    from lockgate._util.dataio import read_parquet_dir, read_parquet_file

    columns = _label_columns(spec)
    path = spec.labels_path(data_dir)
    if path.is_file():
        frame = read_parquet_file(path, columns=columns).to_pandas()
    elif path.is_dir():
        frame = read_parquet_dir(path, columns=columns)
    else:
        raise _labels_missing(spec, path)
    if frame.empty:
        raise _labels_empty(spec, path)
    return frame


def check_label_files(
    spec: ModelPipeline, data_dir: Path
) -> tuple[list[Path], pa.Schema, dict[str, int], pd.Series]:
    """The checks of :func:`read_labels`, one file at a time, without building the frame.

    Returns:
        The label files in ``read_labels``' order, their Arrow schema (label columns only),
        the missing values per column over all files, and the label column as a Series
        (as ``read_labels(...)[spec.label]``).

    Raises:
        The errors of :func:`read_labels`, for the same files.
    """
    import pandas as pd
    import pyarrow as pa

    from lockgate._util.dataio import check_same_schema, parquet_dir_files, read_parquet_file

    columns = _label_columns(spec)
    path = spec.labels_path(data_dir)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = parquet_dir_files(path)
    else:
        raise _labels_missing(spec, path)
    schema: pa.Schema | None = None
    nulls = dict.fromkeys(columns, 0)
    label_chunks: list[pa.ChunkedArray] = []
    for file in files:
        table = read_parquet_file(file, columns=columns)
        if schema is None:
            schema = table.schema
        else:
            check_same_schema(file, table.schema, files[0], schema)
        for name in columns:
            nulls[name] += table.column(name).null_count
        label_chunks.append(table.column(spec.label))
        del table
    assert schema is not None  # parquet_dir_files returns at least one file
    label_values = pa.chunked_array(
        [c for chunk in label_chunks for c in chunk.chunks], type=schema.field(spec.label).type
    ).to_pandas()
    if label_values.empty:
        raise _labels_empty(spec, path)
    return files, schema, nulls, pd.Series(label_values, name=spec.label)


def _label_columns(spec: ModelPipeline) -> list[str]:
    source = spec.labels
    return [*source.entity_columns, source.timestamp_column, spec.label]


def _labels_missing(spec: ModelPipeline, path: Path) -> EmptyDataError:
    source = spec.labels
    where = "labels.path" if source.path is not None else "labels.dataset"
    return EmptyDataError(
        f"the labels of pipeline {spec.name!r} are missing: {where} resolves to {str(path)!r}, "
        "which does not exist; a model needs labelled entity rows (entity columns "
        f"{list(source.entity_columns)}, {source.timestamp_column!r}, {spec.label!r}). Fix: "
        "write a Parquet file or folder there, or point the LabelSource at yours"
    )


def _labels_empty(spec: ModelPipeline, path: Path) -> EmptyDataError:
    return EmptyDataError(
        f"the labels of pipeline {spec.name!r} at {str(path)!r} have no rows; a model needs "
        "labelled entity rows. Fix: load labelled data there first"
    )


def labels_from_frame(spec: ModelPipeline, frame: Any) -> pd.DataFrame:
    """The entity/label rows of a frame the user's label asset returned, checked.

    Raises:
        SchemaError: it is not a DataFrame, or a needed column is missing.
        EmptyDataError: it has no rows.
    """
    import pandas as pd

    source = spec.labels
    columns = [*source.entity_columns, source.timestamp_column, spec.label]
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"label asset {source.asset!r} of pipeline {spec.name!r} gave a "
            f"{type(frame).__name__}: it must return a pandas DataFrame with columns {columns}. "
            "Fix: return the entity/label frame from the asset"
        )
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"label asset {source.asset!r} of pipeline {spec.name!r} lacks column(s) {missing}: "
            f"its frame must have {columns} (it has {list(frame.columns)}). Fix: add them in "
            "the asset, or correct LabelSource.entity_columns / timestamp_column / the label"
        )
    if frame.empty:
        raise EmptyDataError(
            f"label asset {source.asset!r} of pipeline {spec.name!r} returned no rows; a model "
            "needs labelled entity rows. Fix: check the asset's query or filter"
        )
    return frame[columns].reset_index(drop=True)


def take_snapshot(
    spec: ModelPipeline,
    feast: FeastStore,
    artifacts: ArtifactRegistry,
    *,
    labels: pd.DataFrame | None = None,
    stream: bool | None = None,
) -> SnapshotBuild:
    """Build the point-in-time training frame, store it content-addressed, return its reference.

    ``labels`` is the frame of the user's label asset (``LabelSource.asset``); without it the
    labels are read from their Parquet files. Nothing is written unless the whole frame was
    built: a bad label file, an unknown feature service or a missing column raises before the
    registry is touched.

    Two ways give the same snapshot, byte for byte: with labels from files and a DuckDB
    offline store of Parquet sources, DuckDB joins and sorts on disk and Arrow writes the file a
    row group at a time (:mod:`lockgate.lineage.snapshot_stream`: memory does not grow with the
    rows); otherwise the frame is built in memory. ``stream=None`` picks the first where it
    applies (``LOCKGATE_SNAPSHOT_STREAM=0`` turns it off), ``False`` forces the second,
    ``True`` raises ``StreamUnsupported`` where the first does not apply (for tests).

    The dtypes of the stored frame are the manifest's ``schema``
    (``artifacts.snapshot_manifest(ref["frame_sha256"])``).
    """
    from lockgate.features.store import source_fingerprint
    from lockgate.lineage import snapshot_stream

    data_dir = feast.data_path
    if spec.labels.asset is not None:
        if labels is None:
            raise SchemaError(
                f"pipeline {spec.name!r} takes its labels from asset {spec.labels.asset!r}, "
                "but no frame was given. Fix: materialize the feature snapshot through Dagster "
                "(the asset is its input)"
            )
        labels = labels_from_frame(spec, labels)
        labels_source: dict[str, Any] = {
            "asset": spec.labels.asset,
            "rows": len(labels),
            "sha256": frame_sha256(
                canonical_frame(labels, sort_by=list(labels.columns)),
                sort_by=list(labels.columns),
            ),
        }
        if stream:
            raise snapshot_stream.StreamUnsupported("labels from a Dagster asset")
    elif stream is True or (stream is None and snapshot_stream.stream_enabled()):
        files, schema, nulls, label_values = check_label_files(spec, data_dir)
        # a label that does not fit the declared task fails here, before the (slow) join
        check_labels(label_values, task=spec.task, label=spec.label)
        del label_values
        labels_source = source_fingerprint(spec.labels_path(data_dir))
        refs, features = _snapshot_features(spec, feast)
        try:
            return _streamed_snapshot(
                spec, feast, artifacts, files, schema, nulls, refs, features, labels_source
            )
        except snapshot_stream.StreamUnsupported:
            if stream:
                raise
        labels = read_labels(spec, data_dir)
    else:
        labels = read_labels(spec, data_dir)
        labels_source = source_fingerprint(spec.labels_path(data_dir))
    # a label that does not fit the declared task fails here, before the (slow) Feast join
    check_labels(labels[spec.label], task=spec.task, label=spec.label)
    refs, features = _snapshot_features(spec, feast)
    frame = feast.historical_features(feature_service=spec.feature_service, entity_df=labels)
    del labels  # the join's output holds the entity rows: one copy of them is enough
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"Feast returned no column for features {missing} of service "
            f"{spec.feature_service!r}; re-apply the feature repo or fix the feature view"
        )
    if frame.empty:
        raise EmptyDataError(
            f"the point-in-time join for {spec.feature_service!r} returned no rows; check that "
            "the label rows' entity keys exist in the feature sources"
        )
    keep = [*spec.labels.entity_columns, spec.labels.timestamp_column, spec.label, *features]
    frame = frame[keep]  # rebound first: the join's frame is freed before the next copy
    frame = normalise_dtypes(frame)
    sort_by = _sort_by(spec)
    canonical = canonical_frame(frame, sort_by=sort_by)
    del frame  # the unsorted copy; from here on only the canonical frame is held
    # one Arrow table of the canonical frame gives both the hash and the stored bytes:
    # frame_sha256(canonical) and snapshot_parquet_bytes(canonical), without their copies
    import pyarrow as pa

    table = pa.Table.from_pandas(canonical, preserve_index=False)
    frame_sha = table_sha256(table)
    data = _parquet_bytes(table)
    del table
    ts = canonical[spec.labels.timestamp_column]
    manifest = _snapshot_manifest(
        spec,
        feast,
        refs,
        features,
        rows=len(canonical),
        schema={str(c): str(t) for c, t in canonical.dtypes.items()},
        time_range=[str(ts.min()), str(ts.max())],
        label_rate=_label_rate(canonical[spec.label]),
        labels_source=labels_source,
    )
    rows = len(canonical)
    del canonical, ts
    created = artifacts.put_snapshot(frame_sha, data, manifest)
    del data
    return _snapshot_ref(spec, artifacts, frame_sha, rows, features, created)


def _sort_by(spec: ModelPipeline) -> list[str]:
    return [spec.labels.timestamp_column, *spec.labels.entity_columns]


def _snapshot_features(spec: ModelPipeline, feast: FeastStore) -> tuple[list[str], list[str]]:
    """The service's feature refs and feature names, ``exclude_features`` checked against them.

    The snapshot holds every feature of the service; ``exclude_features`` only narrows the model.
    """
    refs = list(feast.feature_refs(spec.feature_service))
    feature_names = [ref.split(":", 1)[-1] for ref in refs]
    unknown_excluded = sorted(set(spec.exclude_features) - set(feature_names))
    if unknown_excluded:
        raise SchemaError(
            f"exclude_features names {unknown_excluded} which feature service "
            f"{spec.feature_service!r} does not provide ({feature_names}); fix the spec"
        )
    return refs, feature_names


def _snapshot_manifest(
    spec: ModelPipeline,
    feast: FeastStore,
    refs: Sequence[str],
    features: Sequence[str],
    *,
    rows: int,
    schema: dict[str, str],
    time_range: list[str],
    label_rate: float | None,
    labels_source: dict[str, Any],
) -> dict[str, Any]:
    return {
        "pipeline": spec.name,
        "rows": rows,
        "schema": schema,
        "sort_by": _sort_by(spec),
        "feature_service": spec.feature_service,
        "feature_refs": list(refs),
        "features": list(features),
        "label": spec.label,
        "task": spec.task,
        "entity_columns": list(spec.labels.entity_columns),
        "timestamp_column": spec.labels.timestamp_column,
        "time_range": time_range,
        "label_rate": label_rate,
        "feast": feast.fingerprints(spec.feature_service),
        "labels_source": labels_source,  # metadata only
    }


def _snapshot_ref(
    spec: ModelPipeline,
    artifacts: ArtifactRegistry,
    frame_sha: str,
    rows: int,
    features: Sequence[str],
    created: bool,
) -> SnapshotBuild:
    stored = artifacts.snapshot_manifest(frame_sha)
    return SnapshotBuild(
        frame_sha256=frame_sha,
        file_sha256=stored["file_sha256"],
        rows=rows,
        features=list(features),
        label=spec.label,
        timestamp_column=spec.labels.timestamp_column,
        entity_columns=list(spec.labels.entity_columns),
        feature_service=spec.feature_service,
        created=created,
        uri=artifacts.uri(artifacts.snapshot_key(frame_sha)),
    )


def _streamed_snapshot(
    spec: ModelPipeline,
    feast: FeastStore,
    artifacts: ArtifactRegistry,
    files: list[Path],
    schema: pa.Schema,
    nulls: dict[str, int],
    refs: list[str],
    features: list[str],
    labels_source: dict[str, Any],
) -> SnapshotBuild:
    """:func:`take_snapshot` by :func:`lockgate.lineage.snapshot_stream.stream_snapshot`."""
    import tempfile

    from lockgate.lineage.snapshot_stream import StreamUnsupported, stream_snapshot

    with tempfile.TemporaryDirectory(prefix="lockgate-snapshot-") as work:
        built = stream_snapshot(spec, feast, files, schema, nulls, Path(work))
        if list(built.schema) != sorted([*_label_columns(spec), *features]):
            raise StreamUnsupported(
                f"the streamed columns {list(built.schema)} are not the frame's"
            )
        manifest = _snapshot_manifest(
            spec,
            feast,
            refs,
            features,
            rows=built.rows,
            schema=built.schema,
            time_range=built.time_range,
            label_rate=built.label_rate,
            labels_source=labels_source,
        )
        created = artifacts.put_snapshot_file(built.frame_sha256, built.path, manifest)
    return _snapshot_ref(spec, artifacts, built.frame_sha256, built.rows, features, created)


def _label_rate(labels: pd.Series) -> float | None:
    import pandas as pd

    numeric = pd.to_numeric(labels, errors="coerce")
    return float(numeric.mean()) if numeric.notna().any() else None


def load_snapshot_frame(
    artifacts: ArtifactRegistry,
    frame_sha: str,
    *,
    verify_content: bool = True,
    columns: Sequence[str] | None = None,
    rows: Any = None,
) -> pd.DataFrame:
    """Read a stored snapshot, checking the file hash and (by default) the frame hash.

    ``columns`` reads only those columns (in that order); ``rows`` (a boolean mask, one entry
    per stored row) keeps only those rows, filtered out of each row group as it is decoded
    (never the whole table), with a fresh RangeIndex. The frame hash covers every row and
    column, so either needs ``verify_content=False`` (the file hash is still checked;
    :func:`verify_snapshot` checks the frame hash column by column). The Arrow table is
    released column by column while the frame is built, so the peak is about one frame, not
    two (:mod:`lockgate.lineage.snapshot_rows`).
    """
    import pyarrow as pa

    if (columns is not None or rows is not None) and verify_content:
        what = f"columns={list(columns)}" if columns is not None else "rows=..."
        raise SchemaError(
            f"load_snapshot_frame({what}) cannot verify the content of snapshot "
            f"{frame_sha[:12]}: its hash covers every row and column. Fix: pass "
            "verify_content=False (the file hash is still checked) or read all of it"
        )
    from lockgate.lineage.snapshot_rows import read_frame

    try:  # the rows kept are read a row group at a time
        frame, verified = read_frame(artifacts, frame_sha, columns, rows, verify_content)
    except (pa.ArrowException, OSError) as exc:
        raise CorruptDataError(
            f"snapshot {frame_sha[:12]} cannot be read as Parquet ({exc}); restore it or "
            "materialize the snapshot again"
        ) from exc
    if verify_content and not verified:  # not in canonical order: hash the sorted frame
        manifest = artifacts.snapshot_manifest(frame_sha)
        actual = frame_sha256(frame, sort_by=manifest["sort_by"])
        if actual != frame_sha:
            raise ArtifactIntegrityError(
                f"snapshot {frame_sha[:12]} holds a frame whose content hash is {actual[:12]}; "
                "the snapshot was altered: materialize it again from the source data"
            )
    return frame


def verify_snapshot(artifacts: ArtifactRegistry, frame_sha: str) -> None:
    """Check stored snapshot ``frame_sha`` (file hash and frame hash) one column at a time.

    What :func:`load_snapshot_frame` checks by default, at the memory of the largest column
    instead of the whole frame: call it before ``load_snapshot_frame(..., columns=[...],
    verify_content=False)`` to read a subset of a verified snapshot. Raises
    :class:`~lockgate.errors.ArtifactIntegrityError` when either hash differs.
    """
    import pyarrow as pa

    from lockgate.lineage.hashing import parquet_sha256

    data = artifacts.read_snapshot_bytes(frame_sha)  # checks the file hash
    try:
        in_order = parquet_sha256(pa.BufferReader(data)) == frame_sha
    except (pa.ArrowException, OSError) as exc:
        raise CorruptDataError(
            f"snapshot {frame_sha[:12]} cannot be read as Parquet ({exc}); restore it or "
            "materialize the snapshot again"
        ) from exc
    del data
    if not in_order:  # rows not in canonical order (or altered): the full check decides
        load_snapshot_frame(artifacts, frame_sha)


def split_frame(
    frame: pd.DataFrame, *, timestamp_column: str, holdout_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-based split: rows at or after the (1 - holdout_fraction) time quantile are held out.

    Rows sharing the boundary timestamp all go to the held-out part, so no timestamp is on both
    sides. When ``frame`` is sorted by time already (a stored snapshot is), both parts are views
    of its rows, not copies: read them, do not modify them.
    """
    import pandas as pd

    if frame.empty:
        raise EmptyDataError("cannot split an empty frame; the snapshot has no rows")
    if frame[timestamp_column].is_monotonic_increasing:  # no missing time, sorted already
        ordered = frame  # as a stored snapshot is: no copy
    else:
        ordered = frame.sort_values(timestamp_column, kind="mergesort")
    times = ordered[timestamp_column]
    cut = int(len(ordered) * (1.0 - holdout_fraction))
    cut = min(max(cut, 1), len(ordered) - 1) if len(ordered) > 1 else 1
    boundary = times.iloc[min(cut, len(ordered) - 1)]
    if times.hasnans:  # a missing time is on neither side
        train, holdout = ordered[times < boundary], ordered[times >= boundary]
    else:  # sorted: the rows before the boundary are a prefix
        first_holdout = int(times.searchsorted(boundary, side="left"))
        train, holdout = ordered.iloc[:first_holdout], ordered.iloc[first_holdout:]
    if train.empty or holdout.empty:
        raise EmptyDataError(
            f"the time split at {boundary} leaves {len(train)} training and {len(holdout)} "
            "held-out rows; snapshot more days of data or change split.holdout_fraction"
        )
    # fresh indexes set in place: positional slices stay views of ``frame``, not copies
    train.index = pd.RangeIndex(len(train))
    holdout.index = pd.RangeIndex(len(holdout))
    return train, holdout


def load_training_frame(
    artifacts: ArtifactRegistry,
    frame_sha: str,
    *,
    columns: Sequence[str],
    timestamp_column: str,
    holdout_fraction: float,
    gold: Mapping[str, Any] | None = None,
) -> tuple[pd.DataFrame, bool]:
    """The training rows of snapshot ``frame_sha``, read as ``columns`` only, and whether the
    rows were selected (``train_version(..., rows_selected=...)``).

    The snapshot is verified column by column (:func:`verify_snapshot`); its time column and
    gold key are read first and give the rows :func:`train_version` would train on (those
    before the time split, minus the gold rows); only those rows of ``columns`` become a
    pandas frame: neither the whole snapshot nor the held-out and gold rows are ever in memory
    as a frame. A snapshot not sorted by time (none that lockgate stores) is read whole, with
    the time and gold key columns, and the flag is False: ``train_version`` splits it.
    """
    verify_snapshot(artifacts, frame_sha)
    release_memory()  # each phase's Arrow buffers go back before the next one's pandas frames
    gold_key = gold["key"] if gold is not None else None
    head = list(dict.fromkeys([timestamp_column, *([gold_key] if gold_key else [])]))
    from lockgate.lineage.snapshot_rows import time_split_rows

    # the time column alone gives the split; the gold key is hashed from its Arrow values below
    split = time_split_rows(
        artifacts, frame_sha, timestamp_column=timestamp_column, holdout_fraction=holdout_fraction
    )
    if split is None:
        every = list(dict.fromkeys([*columns, *head]))
        return load_snapshot_frame(artifacts, frame_sha, verify_content=False, columns=every), False
    import numpy as np

    cut, count = split
    mask = np.zeros(count, dtype=bool)
    mask[:cut] = True  # sorted by time: the training part is a prefix
    if gold is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from lockgate.evaluation.gate import GoldSet
        from lockgate.lineage.snapshot_rows import parquet_gold_mask

        # gold_mask of the training rows' keys (the first ``cut`` rows), a row group at a time
        parquet = pq.ParquetFile(pa.BufferReader(artifacts.read_snapshot_bytes(frame_sha)))
        mask[:cut] &= ~parquet_gold_mask(parquet, GoldSet(**gold), rows=cut)
        del parquet
        release_memory()
    rows = load_snapshot_frame(
        artifacts, frame_sha, verify_content=False, columns=list(columns), rows=mask
    )
    return rows, True


def train_version(
    *,
    pipeline: str,
    snapshot: Mapping[str, Any],
    frame: pd.DataFrame,
    trainer_config: Mapping[str, Any],
    features: Sequence[str],
    label: str,
    timestamp_column: str,
    holdout_fraction: float,
    gold: Mapping[str, Any] | None = None,
    code_path: str | Path | None = None,
    task: Task = "binary",
    rows_selected: bool = False,
) -> tuple[dict[str, Any], dict[str, bytes], TrainedModel]:
    """Fit a model on the training part of ``frame``; return (lock record, files, model).

    ``code_path`` is the user's project (:attr:`ModelPipeline.project_dir`): its git commit is
    the code of the triad.

    The training part is the rows before the time split, minus the gold rows when ``gold``
    (a :class:`~lockgate.evaluation.gate.GoldSet` as a dict) is given. With
    ``rows_selected``, ``frame`` holds that part already (:func:`load_training_frame`) and is
    trained on as it is; the lock record is the same.
    """
    if rows_selected:
        train = frame
    else:
        train, _ = split_frame(
            frame, timestamp_column=timestamp_column, holdout_fraction=holdout_fraction
        )
    if gold is not None and not rows_selected:
        from lockgate.evaluation.gate import GoldSet
        from lockgate.evaluation.report import gold_mask

        train = train[~gold_mask(train, GoldSet(**gold))].reset_index(drop=True)
    trainer = trainer_from_config(dict(trainer_config))
    model = trainer.fit(train, features=list(features), label=label, task=task)
    files = model.files()
    lock = build_lock_record(
        pipeline=pipeline,
        code=code_version(code_path),
        project_dir=str(code_path) if code_path is not None else None,
        lockgate=lockgate_code(),
        task=task,
        snapshot=snapshot,
        trainer=trainer.config(),
        features=features,
        label=label,
        split={
            "kind": "time",
            "timestamp_column": timestamp_column,
            "holdout_fraction": holdout_fraction,
            "train_rows": len(train),
            "gold": dict(gold) if gold is not None else None,
        },
        weights_file=model.weights_file,
        files={name: sha256_bytes(data) for name, data in files.items()},
        environment=environment_versions(),
    )
    return lock, files, model


def require_validated(artifacts: ArtifactRegistry, frame_sha: str) -> dict[str, Any]:
    """The snapshot's passed data-quality verdict; raises if it is missing or failed."""
    verdict = artifacts.validation(frame_sha)
    if verdict is None:
        raise ValidationFailedError(
            f"snapshot {frame_sha[:12]} has no data-quality verdict; run its checks first "
            "(materialize feature_snapshot with its checks, e.g. the pipeline's train job)"
        )
    if not verdict.get("passed"):
        failed = [c["name"] for c in verdict.get("checks", []) if not c["passed"]]
        raise ValidationFailedError(
            f"snapshot {frame_sha[:12]} failed data-quality checks {failed}; training on it is "
            "refused: fix the data (see the checks in the UI) and snapshot again"
        )
    return verdict


def load_trained_model(artifacts: ArtifactRegistry, pipeline: str, version: str) -> TrainedModel:
    """Load a model version, every file verified against its lock record."""
    record = artifacts.lock_record(pipeline, version)
    files = artifacts.model_files(pipeline, version)
    return TrainedModel.load(record["trainer"]["kind"], files)


def evaluate_version(
    artifacts: ArtifactRegistry,
    pipeline: str,
    version: str,
    frame: pd.DataFrame,
    *,
    rows_selected: bool = False,
) -> dict[str, Any]:
    """Score a model version on the held-out part of its snapshot.

    With ``rows_selected``, ``frame`` holds the held-out part already
    (:func:`~lockgate.lineage.snapshot_rows.load_holdout_frame`) and is scored as it is; the
    report is the same.
    """
    from lockgate.evaluation.report import encode_labels, predict
    from lockgate.tasks.catalog import task_metrics

    record = artifacts.lock_record(pipeline, version)
    task = record.get("task", "binary")
    split = record["split"]
    if rows_selected:
        holdout = frame
    else:
        _, holdout = split_frame(
            frame,
            timestamp_column=split["timestamp_column"],
            holdout_fraction=split["holdout_fraction"],
        )
    model = load_trained_model(artifacts, pipeline, version)
    classes = model.classes if task == "multiclass" else None
    scores = predict(model, holdout, task=task, classes=classes, name=f"version {version}")
    labels = holdout[record["label"]]
    y = encode_labels(labels, classes) if classes is not None else labels.to_numpy()
    metrics = task_metrics(task, y, scores)
    ts = holdout[split["timestamp_column"]]
    return {
        "pipeline": pipeline,
        "version": version,
        "dataset": "holdout",
        "task": task,
        "snapshot_sha256": record["triad"]["data_snapshot_sha256"],
        "rows": len(holdout),
        "time_range": [str(ts.min()), str(ts.max())],
        "metrics": metrics,
    }
