"""Reading folders of Parquet files with errors that say what is wrong and how to fix it.

A *Parquet folder* is a directory holding one ``*.parquet`` file per partition (lockgate's
example data writes one file per day, named ``YYYY-MM-DD.parquet``). Files are read in sorted
name order, so a folder of daily files comes back in day order. Names starting with ``.`` or
``_`` are skipped (the usual convention for temporary and marker files).

Note: Feast's DuckDB offline store reads a folder *recursively* and does not skip those names,
so keep Feast source folders flat and free of stray ``.parquet`` files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lockgate.errors import CorruptDataError, EmptyDataError, SchemaError

__all__ = [
    "check_same_schema",
    "list_parquet_files",
    "parquet_dir_files",
    "read_parquet_dir",
    "read_parquet_file",
]


def list_parquet_files(path: str | Path) -> list[Path]:
    """Lists the Parquet files of a folder in sorted name order.

    Args:
        path: The folder.

    Returns:
        The ``*.parquet`` files directly inside ``path`` (not recursive), sorted by name, without
        names starting with ``.`` or ``_``. Empty when the folder does not exist.
    """
    folder = Path(path)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.parquet") if p.is_file() and not p.name.startswith((".", "_"))
    )


def read_parquet_file(path: str | Path, *, columns: Sequence[str] | None = None) -> pa.Table:
    """Reads one Parquet file into an Arrow table, checking that the columns exist.

    Args:
        path: The Parquet file.
        columns: Columns to read, in this order; all columns when None.

    Returns:
        The file's rows as a ``pyarrow.Table`` without schema metadata.

    Raises:
        CorruptDataError: The file is not readable Parquet (corrupt, truncated, not Parquet).
        SchemaError: Some requested columns are not in the file.
    """
    file = Path(path)
    try:
        schema = pq.read_schema(file)
    except (OSError, pa.ArrowException) as exc:
        raise _corrupt(file, exc) from exc
    if columns is not None:
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise SchemaError(
                f"Parquet file {file} lacks column(s) {missing}: every requested column must "
                f"exist (the file has {schema.names}). Fix: rewrite the file with those "
                f"columns or request only existing ones."
            )
    try:
        table = pq.read_table(file, columns=list(columns) if columns is not None else None)
    except (OSError, pa.ArrowException) as exc:
        raise _corrupt(file, exc) from exc
    return table.replace_schema_metadata(None)


def read_parquet_dir(path: str | Path, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Reads all Parquet files of a folder, in sorted name order, into one DataFrame.

    Args:
        path: The folder (see the module docstring for which files count).
        columns: Columns to read, in this order; all columns when None.

    Returns:
        The rows of all files, file by file, with a fresh ``RangeIndex``. Timestamp columns keep
        their Parquet unit and time zone (e.g. ``datetime64[us, UTC]``).

    Raises:
        EmptyDataError: The folder does not exist or holds no Parquet file.
        CorruptDataError: A file is not readable Parquet; the message names it.
        SchemaError: A requested column is missing, or the files' schemas disagree.
    """
    files = parquet_dir_files(path)
    tables = [read_parquet_file(f, columns=columns) for f in files]
    first = tables[0].schema
    for file, table in zip(files[1:], tables[1:], strict=True):
        check_same_schema(file, table.schema, files[0], first)
    return pa.concat_tables(tables).to_pandas()


def parquet_dir_files(path: str | Path) -> list[Path]:
    """The Parquet files of a folder (:func:`list_parquet_files`), at least one.

    Raises:
        EmptyDataError: The folder does not exist or holds no Parquet file.
    """
    folder = Path(path)
    files = list_parquet_files(folder)
    if not files:
        what = "does not exist" if not folder.exists() else "holds no *.parquet file"
        raise EmptyDataError(
            f"Parquet folder {folder} {what}: at least one Parquet file is required. Fix: "
            f"check the path, or write the data there first."
        )
    return files


def check_same_schema(file: Path, schema: pa.Schema, first_file: Path, first: pa.Schema) -> None:
    """Raises SchemaError unless ``file``'s schema equals the folder's first file's."""
    if not schema.equals(first):
        raise SchemaError(
            f"Parquet file {file} has schema {_schema_text(schema)} but {first_file} "
            f"has {_schema_text(first)}: all files of a folder must share one schema. "
            f"Fix: rewrite {file.name} with the folder's schema."
        )


def _corrupt(file: Path, exc: BaseException) -> CorruptDataError:
    return CorruptDataError(
        f"Parquet file {file} cannot be read ({type(exc).__name__}: {exc}): every file in a "
        f"Parquet folder must be complete, valid Parquet. Fix: delete or regenerate {file.name} "
        f"(a truncated file usually comes from an interrupted write)."
    )


def _schema_text(schema: pa.Schema) -> str:
    return "{" + ", ".join(f"{f.name}: {f.type}" for f in schema) + "}"
