from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate.errors import SchemaError
from lockgate.lineage.hashing import canonical_json, frame_sha256, sha256_bytes, sha256_file


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": np.arange(6, dtype="int64"),
            "amount": [1.5, np.nan, 3.25, -0.0, 7.0, 1e9],
            "country": ["DE", "FR", None, "DE", "US", "ñ"],
            "flag": [True, False, True, True, False, False],
            "ts": pd.to_datetime(
                [
                    "2024-01-01 00:00:00.000001",
                    "2024-01-02",
                    "2024-01-03",
                    "2024-01-04",
                    "2024-01-05",
                    "2024-01-06",
                ],
                utc=True,
                format="ISO8601",
            ),
        }
    )


def test_hash_ignores_row_and_column_order_and_index() -> None:
    frame = _frame()
    shuffled = frame.sample(frac=1.0, random_state=3)[["ts", "flag", "country", "id", "amount"]]
    shuffled.index = range(100, 106)
    assert frame_sha256(frame, sort_by=["id"]) == frame_sha256(shuffled, sort_by=["id"])


def test_hash_changes_with_one_value() -> None:
    frame = _frame()
    changed = frame.copy()
    changed.loc[2, "amount"] = 3.2500001
    assert frame_sha256(frame, sort_by=["id"]) != frame_sha256(changed, sort_by=["id"])
    renamed = frame.rename(columns={"amount": "amount2"})
    assert frame_sha256(frame, sort_by=["id"]) != frame_sha256(renamed, sort_by=["id"])


def test_hash_distinguishes_null_from_empty_and_nan_from_zero() -> None:
    a = pd.DataFrame({"s": ["", "x"], "f": [0.0, 1.0]})
    b = pd.DataFrame({"s": [None, "x"], "f": [0.0, 1.0]})
    c = pd.DataFrame({"s": ["", "x"], "f": [np.nan, 1.0]})
    assert (
        len(
            {
                frame_sha256(a, sort_by=["f"]),
                frame_sha256(b, sort_by=["f"]),
                frame_sha256(c, sort_by=["f"]),
            }
        )
        == 3
    )


def test_hash_survives_a_parquet_round_trip_and_dtype_width() -> None:
    frame = _frame()
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame), buffer, compression="snappy")
    back = pq.read_table(pa.BufferReader(buffer.getvalue())).to_pandas()
    assert frame_sha256(back, sort_by=["id"]) == frame_sha256(frame, sort_by=["id"])
    narrow = frame.astype({"id": "int32"})
    assert frame_sha256(narrow, sort_by=["id"]) == frame_sha256(frame, sort_by=["id"])
    ns = frame.assign(ts=frame["ts"].astype("datetime64[ns, UTC]"))
    assert frame_sha256(ns, sort_by=["id"]) == frame_sha256(frame, sort_by=["id"])


def test_negative_zero_is_folded() -> None:
    a = pd.DataFrame({"f": [0.0]})
    b = pd.DataFrame({"f": [-0.0]})
    assert frame_sha256(a) == frame_sha256(b)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(SchemaError, match="no such column"):
        frame_sha256(_frame(), sort_by=["nope"])
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    with pytest.raises(SchemaError, match="unique strings"):
        frame_sha256(dup)
    with pytest.raises(SchemaError, match="cannot be hashed"):
        frame_sha256(pd.DataFrame({"x": [[1, 2]]}))


def test_bytes_file_and_json_hashes(tmp_path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert sha256_file(path) == sha256_bytes(b"x" * (3 << 20))
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"é"],"b":1}'.encode()
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": float("nan")})
