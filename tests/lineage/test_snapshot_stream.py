"""The streamed snapshot (lockgate/lineage/snapshot_stream.py) is the in-memory snapshot, byte
for byte, on a real Feast store; where it cannot be, the in-memory path takes over.

Every model version's lock names its snapshot's hash, and a rebuilt snapshot must be found
again by that hash: so each case builds the snapshot both ways and compares the hash, the
stored bytes and the manifest.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lockgate.errors import ArtifactError, CorruptDataError, EmptyDataError, SchemaError
from lockgate.features.store import FeastStore
from lockgate.lineage import snapshot_stream
from lockgate.lineage.hashing import parquet_sha256, table_sha256
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.snapshot_stream import StreamUnsupported, pandas_metadata
from lockgate.lineage.steps import read_labels, take_snapshot
from lockgate.spec import LabelSource
from pipelines.feature_repo import FRAUD_DEFINITIONS
from pipelines.fraud import fraud_lgbm
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data

# ---- pieces without Feast ----


def _mixed_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    floats = rng.normal(size=rows)
    floats[rng.random(rows) < 0.2] = np.nan
    return pa.table(
        {
            "x": floats,
            "s": pa.array(rng.choice(np.array(["a", "bb", None, "ccc"], dtype=object), rows)),
            "b": rng.random(rows) < 0.5,
            "i": pa.array([None if k % 7 == 0 else k for k in range(rows)], pa.int64()),
            "none": pa.nulls(rows),
            "t": pa.array(pd.date_range("2024-01-01", periods=rows, freq="min", tz="UTC")),
        }
    )


@pytest.mark.parametrize("row_group", [8, 16, 13, 1000, 1 << 20])
def test_the_file_hash_read_by_row_group_is_the_table_hash(row_group: int) -> None:
    # row groups of a multiple of 8 rows are hashed one at a time; others as whole columns
    table = _mixed_table(1003)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group)
    assert parquet_sha256(pa.BufferReader(buffer.getvalue())) == table_sha256(table)
    changed = table.set_column(0, "x", pa.array(np.nan_to_num(table.column("x").to_numpy()) + 1))
    assert table_sha256(changed) != table_sha256(table)


def test_the_pandas_metadata_is_what_from_pandas_writes() -> None:
    frame = pd.DataFrame(
        {
            "i8": np.arange(5, dtype="int8"),
            "i32": np.arange(5, dtype="int32"),
            "u16": np.arange(5, dtype="uint16"),
            "i64": np.arange(5, dtype="int64"),
            "f32": np.array([1, np.nan, 2, 3, 4], dtype="float32"),
            "f64": np.linspace(0, 1, 5),
            "b": [True, False, True, True, False],
            "s": ["a", None, "b", "c", "d"],
            "t_naive": pd.date_range("2024-01-01", periods=5, freq="h").astype("datetime64[us]"),
            "t_ms_tz": pd.date_range("2024-01-01", periods=5, freq="h", tz="Europe/Paris").astype(
                "datetime64[ms, Europe/Paris]"
            ),
            "t_ns_utc": pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC"),
        }
    )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    plain = pa.schema([pa.field(f.name, f.type) for f in table.schema])
    assert json.loads(pandas_metadata(plain)) == json.loads(table.schema.metadata[b"pandas"])
    assert pandas_metadata(plain) == table.schema.metadata[b"pandas"]
    with pytest.raises(StreamUnsupported, match="list"):
        pandas_metadata(pa.schema([pa.field("l", pa.list_(pa.int64()))]))


def test_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_SNAPSHOT_THREADS", "0")
    with pytest.raises(ArtifactError, match="LOCKGATE_SNAPSHOT_THREADS is '0'"):
        snapshot_stream._settings()
    monkeypatch.setenv("LOCKGATE_SNAPSHOT_THREADS", "3")
    monkeypatch.setenv("LOCKGATE_SNAPSHOT_MEMORY_LIMIT", "1GB'; DROP")
    with pytest.raises(ArtifactError, match="a DuckDB memory size"):
        snapshot_stream._settings()
    monkeypatch.setenv("LOCKGATE_SNAPSHOT_MEMORY_LIMIT", "1GB")
    assert snapshot_stream._settings() == ("1GB", 3)
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv("LOCKGATE_SNAPSHOT_STREAM", off)
        assert not snapshot_stream.stream_enabled()
    monkeypatch.delenv("LOCKGATE_SNAPSHOT_STREAM")
    assert snapshot_stream.stream_enabled()


# ---- both ways on a real Feast store ----


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fraud world's data folder (copied per test where a test edits it)."""
    data = tmp_path_factory.mktemp("stream") / "data"
    generate_fraud_data(
        data,
        days=8,
        config=FraudDataConfig(seed=21, n_customers=300, n_merchants=40, tx_per_day=400),
    )
    return data


def _feast(tmp_path: Path, data: Path) -> FeastStore:
    feast = FeastStore(
        repo_dir=str(tmp_path / "feast"), data_dir=str(data), definitions=FRAUD_DEFINITIONS
    )
    feast.apply()
    return feast


def _both(
    tmp_path: Path, feast: FeastStore, spec: Any = fraud_lgbm
) -> tuple[dict[str, Any], dict[str, Any], LocalArtifactRegistry, LocalArtifactRegistry]:
    streamed = LocalArtifactRegistry(root=str(tmp_path / "streamed"))
    in_memory = LocalArtifactRegistry(root=str(tmp_path / "in_memory"))
    a = dict(take_snapshot(spec, feast, streamed, stream=True))
    b = dict(take_snapshot(spec, feast, in_memory, stream=False))
    return a, b, streamed, in_memory


def _assert_same(
    a: dict[str, Any], b: dict[str, Any], ra: LocalArtifactRegistry, rb: LocalArtifactRegistry
) -> None:
    sha = b["frame_sha256"]
    assert a["frame_sha256"] == sha
    assert {k: v for k, v in a.items() if k != "uri"} == {k: v for k, v in b.items() if k != "uri"}
    assert ra.read_snapshot_bytes(sha) == rb.read_snapshot_bytes(sha)
    assert ra.snapshot_manifest(sha) == rb.snapshot_manifest(sha)


def _copy_data(world: Path, tmp_path: Path) -> Path:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(world, data)
    return data


@pytest.mark.integration
def test_the_streamed_snapshot_is_the_in_memory_one_byte_for_byte(
    world: Path, tmp_path: Path
) -> None:
    feast = _feast(tmp_path, world)
    a, b, ra, rb = _both(tmp_path, feast)
    _assert_same(a, b, ra, rb)
    manifest = ra.snapshot_manifest(a["frame_sha256"])
    assert manifest["schema"]["event_timestamp"] == "datetime64[us, UTC]"
    assert manifest["rows"] == a["rows"] > 1000
    # the default (stream=None) takes the streamed path, and finds the snapshot stored
    again = take_snapshot(fraud_lgbm, feast, ra)
    assert again["frame_sha256"] == a["frame_sha256"]
    assert again["created"] is False


@pytest.mark.integration
def test_tied_sort_keys_null_keys_and_several_row_groups_keep_the_in_memory_order(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _copy_data(world, tmp_path)
    files = sorted((data / "labels").glob("*.parquet"))
    # rows whose sort keys tie, within a file and across files, with other labels: only the
    # label files' row order (the stable sort of the in-memory path) decides their order
    first = pq.read_table(files[0])
    ties = first.slice(0, 40)
    flipped = ties.set_column(
        ties.schema.get_field_index("is_fraud"),
        "is_fraud",
        pa.compute.subtract(pa.scalar(1, ties.column("is_fraud").type), ties.column("is_fraud")),
    )
    pq.write_table(pa.concat_tables([first, flipped, ties]), files[0])
    last = pq.read_table(files[-1])
    pq.write_table(pa.concat_tables([last, flipped]), files[-1])
    # missing entity keys (sorted last; no feature joins to them)
    second = pq.read_table(files[1])
    hole = pa.array(np.arange(second.num_rows) % 13 == 0)
    merchants = pa.compute.if_else(hole, pa.scalar(None, pa.int64()), second.column("merchant_id"))
    index = second.schema.get_field_index("merchant_id")
    pq.write_table(second.set_column(index, "merchant_id", merchants), files[1])
    monkeypatch.setattr(snapshot_stream, "ROW_GROUP", 1 << 10)  # several row groups
    feast = _feast(tmp_path, data)
    a, b, ra, rb = _both(tmp_path, feast)
    sha = a["frame_sha256"]
    assert sha == b["frame_sha256"]
    stored = ra.read_snapshot_bytes(sha)
    parquet = pq.ParquetFile(pa.BufferReader(stored))
    assert parquet.metadata.num_row_groups > 2
    groups = [
        parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)
    ]
    assert set(groups[:-1]) == {1 << 10}
    # the same table written with that row-group size by the in-memory writer: the same bytes
    table = pq.read_table(pa.BufferReader(rb.read_snapshot_bytes(sha)))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=1 << 10)
    assert stored == buffer.getvalue()
    assert parquet_sha256(pa.BufferReader(stored)) == sha
    frame = table.to_pandas()
    assert frame["merchant_id"].isna().sum() > 0
    # the tie-break matters: the same rows in another order are another snapshot
    swapped = table.take(np.r_[np.arange(len(table))[::-1]])
    assert table_sha256(swapped.sort_by([("event_timestamp", "ascending")])) != sha


@pytest.mark.integration
def test_what_the_stream_cannot_reproduce_goes_the_in_memory_way(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _copy_data(world, tmp_path)
    feast = _feast(tmp_path, data)
    files = sorted((data / "labels").glob("*.parquet"))
    calls: list[str] = []
    real = snapshot_stream.stream_snapshot

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append("stream")
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot_stream, "stream_snapshot", spy)
    spec = fraud_lgbm.model_copy(
        update={"labels": fraud_lgbm.labels.model_copy(update={"timestamp_column": "ts"})}
    )
    for file in files:
        t = pq.read_table(file)
        t = t.append_column("ts", t.column("event_timestamp"))
        pq.write_table(t, file)
    with pytest.raises(StreamUnsupported, match="not event_timestamp"):
        take_snapshot(spec, feast, LocalArtifactRegistry(root=str(tmp_path / "a")), stream=True)
    assert calls == ["stream"]
    # LOCKGATE_SNAPSHOT_STREAM=0: never streamed
    calls.clear()
    monkeypatch.setenv("LOCKGATE_SNAPSHOT_STREAM", "0")
    ref = take_snapshot(fraud_lgbm, feast, LocalArtifactRegistry(root=str(tmp_path / "b")))
    assert calls == []
    monkeypatch.delenv("LOCKGATE_SNAPSHOT_STREAM")
    # the default falls back where the stream cannot go, and stores the same snapshot
    monkeypatch.setattr(
        snapshot_stream,
        "stream_snapshot",
        lambda *a, **k: (_ for _ in ()).throw(StreamUnsupported("for the test")),
    )
    fallback = take_snapshot(fraud_lgbm, feast, LocalArtifactRegistry(root=str(tmp_path / "c")))
    assert fallback["frame_sha256"] == ref["frame_sha256"]


@pytest.mark.integration
def test_labels_from_an_asset_are_never_streamed(world: Path, tmp_path: Path) -> None:
    feast = _feast(tmp_path, world)
    spec = fraud_lgbm.model_copy(
        update={
            "labels": LabelSource(
                asset="my_labels", entity_columns=list(fraud_lgbm.labels.entity_columns)
            )
        }
    )
    labels = read_labels(fraud_lgbm, feast.data_path)
    registry = LocalArtifactRegistry(root=str(tmp_path / "a"))
    with pytest.raises(StreamUnsupported, match="asset"):
        take_snapshot(spec, feast, registry, stream=True, labels=labels)
    from_asset = take_snapshot(spec, feast, registry, labels=labels)  # in memory
    from_files = take_snapshot(fraud_lgbm, feast, LocalArtifactRegistry(root=str(tmp_path / "b")))
    assert from_asset["frame_sha256"] == from_files["frame_sha256"]


@pytest.mark.integration
def test_bad_label_files_fail_as_they_do_in_memory_and_store_nothing(
    world: Path, tmp_path: Path
) -> None:
    data = _copy_data(world, tmp_path)
    feast = _feast(tmp_path, data)
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    files = sorted((data / "labels").glob("*.parquet"))
    good = files[2].read_bytes()
    files[2].write_bytes(good[: len(good) // 2])  # a truncated write
    for stream in (True, False):
        with pytest.raises(CorruptDataError, match=files[2].name):
            take_snapshot(fraud_lgbm, feast, registry, stream=stream)
    files[2].write_bytes(good)
    other = pq.read_table(files[3])
    index = other.schema.get_field_index("customer_id")
    pq.write_table(
        other.set_column(index, "customer_id", other.column("customer_id").cast(pa.int32())),
        files[3],
    )
    for stream in (True, False):
        with pytest.raises(SchemaError, match=files[3].name):
            take_snapshot(fraud_lgbm, feast, registry, stream=stream)
    for file in files:
        file.unlink()
    for stream in (True, False):
        with pytest.raises(EmptyDataError, match=r"no \*\.parquet file"):
            take_snapshot(fraud_lgbm, feast, registry, stream=stream)
    assert registry.list_prefix("snapshots") == []


@pytest.mark.integration
def test_a_full_work_disk_is_named_and_stores_nothing(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feast = _feast(tmp_path, world)
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))

    def full(*_args: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot_stream, "_rewrite", full)
    with pytest.raises(ArtifactError, match="TMPDIR") as caught:
        take_snapshot(fraud_lgbm, feast, registry, stream=True)
    assert "No space left" in str(caught.value)
    assert registry.list_prefix("snapshots") == []


@pytest.mark.integration
def test_a_memory_limit_too_small_for_duckdb_names_the_setting(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feast = _feast(tmp_path, world)
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    monkeypatch.setenv("LOCKGATE_SNAPSHOT_MEMORY_LIMIT", "1MB")
    with pytest.raises(ArtifactError, match="raise LOCKGATE_SNAPSHOT_MEMORY_LIMIT"):
        take_snapshot(fraud_lgbm, feast, registry, stream=True)
    assert registry.list_prefix("snapshots") == []
    monkeypatch.setenv("LOCKGATE_SNAPSHOT_MEMORY_LIMIT", "256MB")  # the engine was reset
    assert take_snapshot(fraud_lgbm, feast, registry, stream=True)["rows"] > 1000
