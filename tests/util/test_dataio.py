"""Tests of lockgate._util.dataio: reading Parquet folders with helpful errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate._util.dataio import list_parquet_files, read_parquet_dir, read_parquet_file
from lockgate.errors import CorruptDataError, EmptyDataError, SchemaError


def _write(path: Path, ids: list[int], *, extra: bool = False) -> None:
    data: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.int64()),
        "ts": pa.array([1_700_000_000_000_000 + i for i in ids], pa.timestamp("us", tz="UTC")),
    }
    if extra:
        data["x"] = pa.array([float(i) for i in ids], pa.float64())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(data), path)


def test_reads_files_in_sorted_order_and_keeps_microsecond_utc(tmp_path: Path) -> None:
    _write(tmp_path / "2024-01-02.parquet", [3, 4])
    _write(tmp_path / "2024-01-01.parquet", [1, 2])
    _write(tmp_path / ".hidden.parquet", [99])
    _write(tmp_path / "_marker.parquet", [98])
    (tmp_path / "notes.txt").write_text("not parquet")

    frame = read_parquet_dir(tmp_path)

    assert frame["id"].tolist() == [1, 2, 3, 4]
    assert list(frame.index) == [0, 1, 2, 3]
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert [p.name for p in list_parquet_files(tmp_path)] == [
        "2024-01-01.parquet",
        "2024-01-02.parquet",
    ]


def test_reads_selected_columns_in_order(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", [1], extra=True)
    frame = read_parquet_dir(tmp_path, columns=["x", "id"])
    assert list(frame.columns) == ["x", "id"]


def test_truncated_file_raises_corrupt_data_error_naming_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "2024-01-01.parquet", [1, 2])
    _write(tmp_path / "2024-01-02.parquet", [3, 4])
    bad = tmp_path / "2024-01-02.parquet"
    bad.write_bytes(bad.read_bytes()[:-40])

    with pytest.raises(CorruptDataError) as info:
        read_parquet_dir(tmp_path)

    message = str(info.value)
    assert "2024-01-02.parquet" in message
    assert "Fix:" in message


def test_garbage_file_raises_corrupt_data_error(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"definitely not parquet")
    with pytest.raises(CorruptDataError, match=r"x\.parquet"):
        read_parquet_dir(tmp_path)


def test_empty_folder_raises_empty_data_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no parquet here")
    with pytest.raises(EmptyDataError, match="holds no"):
        read_parquet_dir(tmp_path)


def test_missing_folder_raises_empty_data_error(tmp_path: Path) -> None:
    with pytest.raises(EmptyDataError, match="does not exist"):
        read_parquet_dir(tmp_path / "nope")


def test_missing_column_raises_schema_error_naming_it(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", [1])
    with pytest.raises(SchemaError) as info:
        read_parquet_dir(tmp_path, columns=["id", "amount"])
    assert "'amount'" in str(info.value)
    assert "a.parquet" in str(info.value)


def test_disagreeing_schemas_raise_schema_error(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", [1])
    _write(tmp_path / "b.parquet", [2], extra=True)
    with pytest.raises(SchemaError, match=r"b\.parquet"):
        read_parquet_dir(tmp_path)


def test_read_parquet_file_matches_pandas(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", [5, 6], extra=True)
    table = read_parquet_file(tmp_path / "a.parquet")
    assert table.schema.metadata is None
    pd.testing.assert_frame_equal(table.to_pandas(), pd.read_parquet(tmp_path / "a.parquet"))
