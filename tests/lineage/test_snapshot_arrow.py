"""The snapshot built from one Arrow table has the hash and the bytes of the pandas path.

``take_snapshot`` now joins with the ASOF join (:mod:`lockgate.features.asof_join`) and hashes
and writes one Arrow table of the canonical frame (:func:`table_sha256`), and
``load_snapshot_frame`` checks a stored snapshot's hash on the Arrow table it read. A snapshot's
hash names it and is in every lock record, so each is compared here with the code it replaced:
Feast's own retrieval, ``frame_sha256`` of the canonical frame, ``snapshot_parquet_bytes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lockgate.assets.weights import _training_columns
from lockgate.errors import ArtifactIntegrityError, SchemaError
from lockgate.features.store import (
    FeastStore,
    _get_service,
    _prepare_entity_df,
    _service_join_keys,
)
from lockgate.lineage.hashing import canonical_frame, frame_sha256, parquet_sha256, table_sha256
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.steps import (
    load_snapshot_frame,
    load_training_frame,
    normalise_dtypes,
    read_labels,
    snapshot_parquet_bytes,
    take_snapshot,
    train_version,
    verify_snapshot,
)
from pipelines.feature_repo import FRAUD_DEFINITIONS
from pipelines.fraud import fraud_lgbm
from pipelines.fraud_data import FraudDataConfig, generate_fraud_data
from tests.trainer_plugins import BiasTrainer


def _mixed(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    floats = rng.normal(size=rows)
    floats[rng.random(rows) < 0.2] = np.nan
    floats[:3] = [-0.0, 0.0, np.nan]
    return pd.DataFrame(
        {
            "t": pd.to_datetime(rng.integers(0, 50, rows), unit="h", utc=True).astype(
                "datetime64[us, UTC]"
            ),
            "id": [f"row-{i}" for i in range(rows)],
            "x": floats,
            "n": rng.integers(-5, 5, rows),
            "b": rng.random(rows) < 0.5,
            "s": rng.choice(np.array(["a", "bb", None], dtype=object), rows),
            "none": [None] * rows,
        }
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_table_hash_of_the_canonical_frame_is_the_frame_hash(seed: int) -> None:
    frame = _mixed(1500, seed)
    sort_by = ["t", "id"]
    canonical = canonical_frame(frame, sort_by=sort_by)
    table = pa.Table.from_pandas(canonical, preserve_index=False)
    assert table_sha256(table) == frame_sha256(frame, sort_by=sort_by)
    # columns in any order, the table read back from the stored bytes: the same hash
    assert table_sha256(table.select(list(reversed(table.column_names)))) == table_sha256(table)
    stored = pa.ipc.open_stream(_ipc(table)).read_all()
    assert table_sha256(stored) == table_sha256(table)
    # the stored snapshot's Parquet bytes, hashed one column at a time
    parquet = snapshot_parquet_bytes(canonical)
    assert parquet_sha256(pa.BufferReader(parquet)) == frame_sha256(frame, sort_by=sort_by)
    # rows out of canonical order: another hash (so the stored order matters, see below)
    assert table_sha256(table.take(np.arange(len(table))[::-1])) != table_sha256(table)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_a_snapshot_stored_out_of_order_is_still_verified_by_its_sorted_frame(
    tmp_path: Path,
) -> None:
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    frame = _mixed(800, 4)
    sort_by = ["t", "id"]
    sha = frame_sha256(frame, sort_by=sort_by)
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)  # not canonical
    registry.put_snapshot(sha, snapshot_parquet_bytes(shuffled), {"sort_by": sort_by})
    loaded = load_snapshot_frame(registry, sha)  # the Arrow check misses, the sorted one holds
    assert len(loaded) == 800
    other = frame.assign(x=frame["x"] + 1.0)
    bad = frame_sha256(frame.iloc[:-1], sort_by=sort_by)
    registry.put_snapshot(bad, snapshot_parquet_bytes(other), {"sort_by": sort_by})
    with pytest.raises(ArtifactIntegrityError, match="altered"):
        load_snapshot_frame(registry, bad)


# ---- the whole snapshot step against the code it replaced, on a real Feast store ----


def _fraud_snapshot(
    tmp_path: Path, *, seed: int
) -> tuple[FeastStore, LocalArtifactRegistry, dict[str, Any]]:
    """A small fraud world on an applied Feast store and ``fraud_lgbm``'s snapshot of it."""
    data = tmp_path / "data"
    generate_fraud_data(
        data,
        days=8,
        config=FraudDataConfig(seed=seed, n_customers=300, n_merchants=40, tx_per_day=400),
    )
    feast = FeastStore(
        repo_dir=str(tmp_path / "feast"), data_dir=str(data), definitions=FRAUD_DEFINITIONS
    )
    feast.apply()
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    ref = take_snapshot(fraud_lgbm, feast, registry)
    return feast, registry, dict(ref)


@pytest.mark.integration
def test_take_snapshot_stores_the_hash_and_bytes_of_the_old_path(tmp_path: Path) -> None:
    feast, registry, ref = _fraud_snapshot(tmp_path, seed=8)
    spec = fraud_lgbm

    # the path before this change: Feast's retrieval, pandas all the way
    labels = read_labels(spec, feast.data_path)
    store = feast.store()
    service = _get_service(store, spec.feature_service, feast)
    entity = _prepare_entity_df(labels, _service_join_keys(store, service), spec.feature_service)
    joined = feast._feast_historical(store, service, entity, labels, spec.feature_service)
    features = [r.split(":", 1)[-1] for r in feast.feature_refs(spec.feature_service)]
    keep = [*spec.labels.entity_columns, spec.labels.timestamp_column, spec.label, *features]
    sort_by = [spec.labels.timestamp_column, *spec.labels.entity_columns]
    old = canonical_frame(normalise_dtypes(joined[keep]), sort_by=sort_by)
    assert ref["frame_sha256"] == frame_sha256(old, sort_by=sort_by)
    assert registry.read_snapshot_bytes(ref["frame_sha256"]) == snapshot_parquet_bytes(old)
    assert ref["rows"] == len(labels)
    assert old[features].notna().to_numpy().mean() > 0.8
    pd.testing.assert_frame_equal(load_snapshot_frame(registry, ref["frame_sha256"]), old)


# ---- the weights step reads a verified column subset (lockgate's own trainers) ----


def test_verify_snapshot_checks_both_hashes_one_column_at_a_time(tmp_path: Path) -> None:
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    frame = _mixed(900, 5)
    sort_by = ["t", "id"]
    sha = frame_sha256(frame, sort_by=sort_by)
    registry.put_snapshot(
        sha, snapshot_parquet_bytes(canonical_frame(frame, sort_by=sort_by)), {"sort_by": sort_by}
    )
    verify_snapshot(registry, sha)  # stored in canonical order: checked column by column
    shuffled = frame.sample(frac=1.0, random_state=2).iloc[:-2].reset_index(drop=True)
    sha_shuffled = frame_sha256(shuffled, sort_by=sort_by)  # another frame, stored unsorted
    registry.put_snapshot(sha_shuffled, snapshot_parquet_bytes(shuffled), {"sort_by": sort_by})
    verify_snapshot(registry, sha_shuffled)  # out of order: the full check holds
    other = frame.assign(x=frame["x"] * 2.0)
    bad = frame_sha256(frame.iloc[:-1], sort_by=sort_by)
    registry.put_snapshot(
        bad, snapshot_parquet_bytes(canonical_frame(other, sort_by=sort_by)), {"sort_by": sort_by}
    )
    with pytest.raises(ArtifactIntegrityError, match="altered"):
        verify_snapshot(registry, bad)


@pytest.mark.integration
def test_lockgates_trainers_train_the_same_weights_from_the_training_rows_alone(
    tmp_path: Path,
) -> None:
    # the weights step reads the features and label of the training rows only
    # (load_training_frame); the full frame, split by train_version, must give the same model
    _, registry, ref = _fraud_snapshot(tmp_path, seed=9)
    spec = fraud_lgbm
    sha = ref["frame_sha256"]
    manifest = registry.snapshot_manifest(sha)
    features = [f for f in ref["features"] if f not in spec.exclude_features]
    ts = spec.labels.timestamp_column
    columns = _training_columns(spec, features, ts, manifest)
    assert columns is not None
    assert set(columns) == {*features, spec.label}  # no entity ids, no time, no gold key
    assert spec.gate is not None
    gold = spec.gate.gold.model_dump()
    args: dict[str, Any] = {
        "pipeline": spec.name,
        "snapshot": {"frame_sha256": sha},
        "trainer_config": spec.trainer.config(),
        "features": features,
        "label": spec.label,
        "timestamp_column": ts,
        "holdout_fraction": spec.split.holdout_fraction,
        "gold": gold,
        "task": spec.task,
    }
    full, full_files, _ = train_version(frame=load_snapshot_frame(registry, sha), **args)
    rows, selected = load_training_frame(
        registry,
        sha,
        columns=columns,
        timestamp_column=ts,
        holdout_fraction=spec.split.holdout_fraction,
        gold=gold,
    )
    assert selected
    assert list(rows.columns) == columns
    assert len(rows) == full["split"]["train_rows"] < manifest["rows"]
    part, part_files, _ = train_version(frame=rows, rows_selected=True, **args)
    assert part["triad"]["weights_sha256"] == full["triad"]["weights_sha256"]
    assert part_files == full_files
    assert part["split"] == full["split"]
    # a team's own trainer may read any column: it gets the whole snapshot
    custom = spec.model_copy(update={"trainer": BiasTrainer()})
    assert _training_columns(custom, features, ts, manifest) is None
    # a column the snapshot lacks: the full read (whose error names it)
    assert _training_columns(spec, [*features, "not_stored"], ts, manifest) is None
    assert _training_columns(spec, features, "no_time", manifest) is None


def test_training_rows_of_an_unsorted_snapshot_are_left_to_train_version(
    tmp_path: Path,
) -> None:
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    frame = _mixed(600, 7).dropna(subset=["x"]).reset_index(drop=True)
    sort_by = ["t", "id"]
    sha = frame_sha256(frame, sort_by=sort_by)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    registry.put_snapshot(sha, snapshot_parquet_bytes(shuffled), {"sort_by": sort_by})
    rows, selected = load_training_frame(
        registry, sha, columns=["x"], timestamp_column="t", holdout_fraction=0.2
    )
    assert not selected  # every row, with the time column, for train_version's own split
    assert len(rows) == len(frame)
    assert set(rows.columns) == {"x", "t"}


def test_rows_keeps_the_masked_rows_as_the_pandas_path_does(tmp_path: Path) -> None:
    # the gold set reads its key column, then only the gold rows (lockgate/assets/gate.py)
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    sort_by = ["t", "id"]
    canonical = canonical_frame(_mixed(1200, 6), sort_by=sort_by)
    sha = frame_sha256(canonical, sort_by=sort_by)
    registry.put_snapshot(sha, snapshot_parquet_bytes(canonical), {"sort_by": sort_by})
    mask = (canonical["n"] > 0).to_numpy()
    picked = load_snapshot_frame(registry, sha, verify_content=False, rows=mask)
    old = canonical_frame(load_snapshot_frame(registry, sha)[mask], sort_by=sort_by)
    pd.testing.assert_frame_equal(canonical_frame(picked, sort_by=sort_by), old)
    assert frame_sha256(picked, sort_by=sort_by) == frame_sha256(old, sort_by=sort_by)
    with pytest.raises(SchemaError, match="one boolean per stored row"):
        load_snapshot_frame(registry, sha, verify_content=False, rows=mask[:-1])
    with pytest.raises(SchemaError, match="verify_content=False"):
        load_snapshot_frame(registry, sha, rows=mask)
