"""iter_prediction_log over a real PredictionLog: Parquet parts plus WAL segments."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lockgate.gateway.errors import PredictionLogError
from lockgate.gateway.predlog import (
    PredictionLog,
    iter_prediction_log,
    prediction_log_schema,
    read_prediction_log,
)
from lockgate.gateway.predlog.records import encode_record as _encode_record

WIDTH = 3
MODELS = ("fraud", "churn")
# Day 1 ends 50 us after the first records; the log spans midnight UTC.
START = int(dt.datetime(2026, 11, 20, 23, 59, 59, 999_950, tzinfo=dt.UTC).timestamp()) * 10**6
START += 999_950


@dataclass(frozen=True)
class Logged:
    trace: str
    ts: int  # microseconds since the epoch, UTC
    model: str
    inputs: np.ndarray


def _record(i: int) -> Logged:
    rows = 1 + i % 3
    inputs = (np.arange(rows * WIDTH, dtype=np.float32).reshape(rows, WIDTH) + i) / 7
    return Logged(f"t{i:04d}", START + i, MODELS[i % 2], inputs)


async def _append(log: PredictionLog, items: list[Logged]) -> None:
    futures = []
    for r in items:
        meta: dict[str, Any] = {
            "t": r.trace,
            "ts": r.ts,
            "m": r.model,
            "v": "v1",
            "rb": "single",
            "st": 200,
            "lat": 1.5,
        }
        futures.append(log.append(_encode_record(meta, r.inputs, r.inputs[:, :1] * 2)))
    await asyncio.gather(*futures)


def _run_with_log(
    log_dir: Path, fn: Callable[[PredictionLog, list[Logged]], Any], *, rolled: int = 2
) -> list[Logged]:
    """Writes 3 groups of records: ``rolled`` rotated to Parquet, the rest left in the WAL.

    Calls ``await fn(log, records)`` while the log still runs (WAL segments present).
    """
    records = [_record(i) for i in range(120)]

    async def scenario() -> None:
        log = PredictionLog(log_dir, durability="flush", segment_max_age_s=3600.0)
        await log.start()
        try:
            for g in range(3):
                await _append(log, records[g * 40 : (g + 1) * 40])
                if g < rolled:
                    await log.rotate_now()
            await fn(log, records)
        finally:
            await log.close()

    asyncio.run(scenario())
    return records


def _flat(batches: list[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(batches) if batches else pa.table({})


def _traces(batches: list[pa.RecordBatch]) -> list[str]:
    return [t for b in batches for t in b.column("trace_id").to_pylist()]


def test_layout_has_parquet_and_wal(tmp_path: Path) -> None:
    async def check(log: PredictionLog, records: list[Logged]) -> None:
        parts = sorted((tmp_path / "fraud").glob("date=*/part-*.parquet"))
        days = {p.parent.name for p in parts}
        assert days == {"date=2026-11-20", "date=2026-11-21"}
        assert list((tmp_path / "_wal").glob("wal-*.log"))
        batches = list(iter_prediction_log(tmp_path))
        assert sorted(_traces(batches)) == sorted(r.trace for r in records)
        # Parquet parts first (groups 1-2), then the WAL (group 3)
        assert set(_traces(batches)[-40:]) == {r.trace for r in records[80:]}

    _run_with_log(tmp_path, check)


def test_union_equals_records_and_read_prediction_log(tmp_path: Path) -> None:
    async def check(log: PredictionLog, records: list[Logged]) -> None:
        for model in (None, *MODELS):
            want = [r for r in records if model is None or r.model == model]
            batches = list(iter_prediction_log(tmp_path, model))
            table = _flat(batches)
            assert table.schema == prediction_log_schema()
            got = table.to_pandas().sort_values("ts").reset_index(drop=True)
            assert list(got.trace_id) == [r.trace for r in want]
            assert set(got.model) == ({model} if model else set(MODELS))
            ts = (got.ts - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
            assert list(ts) == [r.ts for r in want]
            for cell, r in zip(got.inputs, want, strict=True):
                np.testing.assert_array_equal(np.stack(cell), r.inputs)
            whole = read_prediction_log(tmp_path, model)
            assert list(whole.trace_id) == list(got.trace_id)
            assert list(whole.columns) == list(got.columns)

    _run_with_log(tmp_path, check)


@pytest.mark.parametrize("batch_rows", [1, 7, 40, 65_536])
def test_batch_sizes(tmp_path: Path, batch_rows: int) -> None:
    async def check(log: PredictionLog, records: list[Logged]) -> None:
        batches = list(iter_prediction_log(tmp_path, "churn", batch_rows=batch_rows))
        assert all(0 < b.num_rows <= batch_rows for b in batches)
        assert sum(b.num_rows for b in batches) == 60
        if batch_rows == 1:
            assert len(batches) == 60

    _run_with_log(tmp_path, check)


def _at(us: int, *, naive: bool = False) -> dt.datetime:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)
    return moment.replace(tzinfo=None) if naive else moment


def test_since_until_are_exact_to_the_microsecond(tmp_path: Path) -> None:
    async def check(log: PredictionLog, records: list[Logged]) -> None:
        # Boundaries on every record: rolled (day 1 and day 2) and WAL ones.
        for lo_i, hi_i in [(0, 120), (3, 4), (49, 51), (50, 90), (79, 81), (85, 86), (0, 1)]:
            since, until = _at(START + lo_i), _at(START + hi_i)
            got = _traces(list(iter_prediction_log(tmp_path, since=since, until=until)))
            assert sorted(got) == [r.trace for r in records[lo_i:hi_i]], (lo_i, hi_i)
        naive = _traces(list(iter_prediction_log(tmp_path, since=_at(START + 60, naive=True))))
        assert sorted(naive) == [r.trace for r in records[60:]]
        other_tz = _at(START + 60).astimezone(dt.timezone(dt.timedelta(hours=-5)))
        shifted = _traces(list(iter_prediction_log(tmp_path, since=other_tz)))
        assert sorted(shifted) == [r.trace for r in records[60:]]
        assert list(iter_prediction_log(tmp_path, since=_at(START + 500))) == []
        assert list(iter_prediction_log(tmp_path, until=_at(START))) == []

    _run_with_log(tmp_path, check)


def test_since_skips_earlier_days_but_keeps_rows(tmp_path: Path) -> None:
    async def check(log: PredictionLog, records: list[Logged]) -> None:
        midnight = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
        got = _traces(list(iter_prediction_log(tmp_path, "fraud", since=midnight)))
        want = [r.trace for r in records if r.model == "fraud" and r.ts >= START + 50]
        assert sorted(got) == want

    _run_with_log(tmp_path, check)


def test_column_selection(tmp_path: Path) -> None:
    async def check(log: PredictionLog, records: list[Logged]) -> None:
        batches = list(
            iter_prediction_log(tmp_path, columns=["inputs", "trace_id"], since=_at(START + 30))
        )
        assert batches
        for b in batches:
            assert b.schema.names == ["inputs", "trace_id"]  # no "ts" though it filtered on it
            assert b.schema.field("inputs").type == prediction_log_schema().field("inputs").type
        rows = {
            t: np.stack(cell)
            for b in batches
            for t, cell in zip(
                b.column("trace_id").to_pylist(),
                b.column("inputs").to_numpy(zero_copy_only=False),
                strict=True,
            )
        }
        assert sorted(rows) == [r.trace for r in records[30:]]
        for r in records[30:]:
            np.testing.assert_array_equal(rows[r.trace], r.inputs)

    _run_with_log(tmp_path, check)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(PredictionLogError, match=r"\['nope'\] are not prediction-log columns"):
        list(iter_prediction_log(tmp_path, columns=["ts", "nope"]))
    with pytest.raises(PredictionLogError, match="batch_rows=0"):
        list(iter_prediction_log(tmp_path, batch_rows=0))
    assert list(iter_prediction_log(tmp_path / "missing")) == []


def test_segment_rolled_while_iterating(tmp_path: Path) -> None:
    async def check(log: PredictionLog, records: list[Logged]) -> None:
        wal_before = sorted((tmp_path / "_wal").glob("wal-*.log"))
        assert wal_before
        it: Iterator[pa.RecordBatch] = iter_prediction_log(tmp_path, batch_rows=10)
        first = [next(it)]  # lists the WAL, starts on the Parquet parts
        await log.rotate_now()  # the WAL segment with group 3 becomes Parquet meanwhile
        assert not any(p.exists() for p in wal_before)
        rest = list(it)
        got = _traces(first + rest)
        assert len(got) == len(set(got)) == 120  # nothing lost, nothing twice
        assert sorted(got) == [r.trace for r in records]

    _run_with_log(tmp_path, check)


def test_after_close_everything_is_parquet(tmp_path: Path) -> None:
    records = _run_with_log(tmp_path, lambda log, recs: asyncio.sleep(0), rolled=0)
    assert not list((tmp_path / "_wal").glob("wal-*.log"))
    got = _traces(list(iter_prediction_log(tmp_path)))
    assert sorted(got) == [r.trace for r in records]
