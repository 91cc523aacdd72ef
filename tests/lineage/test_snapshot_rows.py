"""The row-group-wise snapshot reads give what the whole-table reads gave.

The gold mask from Arrow key values (``gold_mask_arrow``, ``parquet_gold_mask``), the rows a
mask keeps read a row group at a time (``filter_row_groups``, ``load_snapshot_frame(rows=)``),
the training rows of ``load_training_frame`` and the held-out rows of ``load_holdout_frame`` are each compared with the computation they replaced, on snapshots
written in many small row groups.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate.errors import SchemaError
from lockgate.evaluation.gate import GoldSet
from lockgate.evaluation.report import gold_mask, gold_mask_arrow
from lockgate.lineage.hashing import canonical_frame, frame_sha256
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.snapshot_rows import (
    filter_row_groups,
    load_holdout_frame,
    parquet_gold_mask,
)
from lockgate.lineage.steps import (
    evaluate_version,
    load_snapshot_frame,
    load_training_frame,
    split_frame,
    train_version,
)
from lockgate.training import LightGBMTrainer

GOLD = GoldSet(key="transaction_id", fraction=0.3)
SORT_BY = ["event_timestamp", "transaction_id"]


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.to_datetime(rng.integers(0, 60, rows), unit="h", utc=True).astype("datetime64[us, UTC]")
    ids = np.array([f"tx-{i:06d}-é" if i % 7 else f"tx-{i}" for i in range(rows)], dtype=object)
    ids[rng.random(rows) < 0.05] = None  # missing keys hash as "None", as astype(str) spells it
    ids[:3] = ["", "None", "ü—ß"]
    device = rng.choice(["ios_app", "web_browser", "pos_terminal"], rows).astype(object)
    device[rng.random(rows) < 0.1] = None
    return pd.DataFrame(
        {
            "event_timestamp": ts,
            "transaction_id": ids,
            "amount": rng.lognormal(3.0, 1.0, rows),
            "device_type": device,
            "hour_of_day": rng.integers(0, 24, rows),
            "is_fraud": (rng.random(rows) < 0.1).astype("int64"),
        }
    )


def _parquet_bytes(frame: pd.DataFrame, row_group_size: int) -> bytes:
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buffer, compression="zstd", row_group_size=row_group_size)
    return buffer.getvalue()


def _stored(tmp_path, frame: pd.DataFrame, row_group_size: int = 256):
    """A canonical snapshot stored in row groups of ``row_group_size`` rows."""
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    canonical = canonical_frame(frame, sort_by=SORT_BY)
    sha = frame_sha256(canonical, sort_by=SORT_BY)
    manifest = {"sort_by": SORT_BY, "schema": {c: str(t) for c, t in canonical.dtypes.items()}}
    registry.put_snapshot(sha, _parquet_bytes(canonical, row_group_size), manifest)
    data = pa.BufferReader(registry.read_snapshot_bytes(sha))
    assert pq.ParquetFile(data).metadata.num_row_groups > 1
    return registry, sha, canonical


def test_gold_mask_from_arrow_values_is_the_pandas_mask() -> None:
    frame = _frame(3000)
    expected = gold_mask(frame, GOLD)
    assert 0.2 < expected.mean() < 0.4  # the test can tell a wrong mask from a right one
    column = pa.array(frame["transaction_id"], type=pa.string())
    assert (gold_mask_arrow(column, GOLD) == expected).all()
    large = pa.chunked_array(
        [column.slice(0, 1000).cast(pa.large_string()), column.slice(1000).cast(pa.large_string())]
    )
    assert (gold_mask_arrow(large, GOLD) == expected).all()
    # a sliced array (non-zero offset) and another salt
    assert (gold_mask_arrow(column.slice(17, 500), GOLD) == expected[17:517]).all()
    other = GoldSet(key="transaction_id", fraction=0.3, salt="other")
    assert (gold_mask_arrow(column, other) == gold_mask(frame, other)).all()
    assert (gold_mask_arrow(column, other) != expected).any()


def test_gold_mask_of_a_numeric_key_takes_the_pandas_path() -> None:
    keys = pd.array([1, 2, None, 4] * 200, dtype="Int64")  # nulls: pandas sees floats
    column = pa.chunked_array([pa.array(keys[:400]), pa.array(keys[400:])])
    gold = GoldSet(key="k", fraction=0.5)
    expected = gold_mask(pd.DataFrame({"k": column.to_pandas()}), gold)
    assert (gold_mask_arrow(column, gold) == expected).all()


def test_parquet_gold_mask_reads_the_key_a_row_group_at_a_time(tmp_path) -> None:
    frame = canonical_frame(_frame(2000, seed=2), sort_by=SORT_BY)
    parquet = pq.ParquetFile(pa.BufferReader(_parquet_bytes(frame, 300)))
    expected = gold_mask(frame, GOLD)
    assert (parquet_gold_mask(parquet, GOLD) == expected).all()
    for rows in (0, 1, 299, 300, 301, 1234, 5000):
        assert (parquet_gold_mask(parquet, GOLD, rows=rows) == expected[:rows]).all()
    with pytest.raises(SchemaError, match="gold set key column 'order_id'"):
        parquet_gold_mask(parquet, GoldSet(key="order_id"))


def test_rows_of_a_mask_read_by_row_group_equal_the_filtered_table(tmp_path) -> None:
    registry, sha, canonical = _stored(tmp_path, _frame(2000, seed=3))
    data = registry.read_snapshot_bytes(sha)
    rng = np.random.default_rng(4)
    masks = {
        "random": rng.random(len(canonical)) < 0.3,
        "none": np.zeros(len(canonical), dtype=bool),
        "all": np.ones(len(canonical), dtype=bool),
        "one group": np.arange(len(canonical)) // 256 == 2,
    }
    for name, mask in masks.items():
        want = pq.read_table(pa.BufferReader(data)).filter(pa.array(mask))
        got = filter_row_groups(pq.ParquetFile(pa.BufferReader(data)), pa.array(mask), None)
        assert got.equals(want, check_metadata=True), name
        frame = load_snapshot_frame(registry, sha, verify_content=False, rows=mask)
        pdt.assert_frame_equal(frame, canonical[mask].reset_index(drop=True), check_exact=True)
    cols = ["is_fraud", "device_type"]
    subset = load_snapshot_frame(
        registry, sha, verify_content=False, columns=cols, rows=masks["random"]
    )
    pdt.assert_frame_equal(subset, canonical.loc[masks["random"], cols].reset_index(drop=True))
    with pytest.raises(SchemaError, match="one boolean per stored row"):
        load_snapshot_frame(registry, sha, verify_content=False, rows=masks["random"][:-1])


@pytest.mark.parametrize("gold", [None, GOLD])
def test_training_rows_equal_the_split_of_the_whole_frame_minus_gold(tmp_path, gold) -> None:
    registry, sha, canonical = _stored(tmp_path, _frame(2500, seed=6))
    columns = ["amount", "device_type", "is_fraud"]
    rows, selected = load_training_frame(
        registry,
        sha,
        columns=columns,
        timestamp_column="event_timestamp",
        holdout_fraction=0.25,
        gold=gold.model_dump() if gold is not None else None,
    )
    assert selected
    train, _ = split_frame(canonical, timestamp_column="event_timestamp", holdout_fraction=0.25)
    if gold is not None:
        train = train[~gold_mask(train, gold)]
    expected = train[columns].reset_index(drop=True)
    assert 500 < len(expected) < len(canonical)
    pdt.assert_frame_equal(rows, expected, check_exact=True)


def test_held_out_rows_and_their_report_equal_those_of_the_whole_frame(tmp_path) -> None:
    frame = _frame(3000, seed=7)
    frame["device_type"] = frame["device_type"].fillna("web_browser")
    registry, sha, canonical = _stored(tmp_path, frame)
    columns = ["amount", "device_type", "event_timestamp", "hour_of_day", "is_fraud"]
    rows, selected = load_holdout_frame(
        registry, sha, columns=columns, timestamp_column="event_timestamp", holdout_fraction=0.3
    )
    assert selected
    _, holdout = split_frame(canonical, timestamp_column="event_timestamp", holdout_fraction=0.3)
    assert 300 < len(holdout) < len(canonical)
    pdt.assert_frame_equal(rows, holdout[columns].reset_index(drop=True), check_exact=True)
    lock, files, _ = train_version(
        pipeline="p",
        snapshot={"frame_sha256": sha},
        frame=canonical,
        trainer_config=LightGBMTrainer(num_boost_round=5).config(),
        features=["amount", "device_type", "hour_of_day"],
        label="is_fraud",
        timestamp_column="event_timestamp",
        holdout_fraction=0.3,
    )
    registry.put_model_version("p", lock["version"], files, lock)
    whole = evaluate_version(registry, "p", lock["version"], canonical)
    assert evaluate_version(registry, "p", lock["version"], rows, rows_selected=True) == whole
    assert whole["rows"] == len(holdout)
