"""The memory-saving paths of the train job give what the plain in-memory ones gave.

``split_frame`` returns views of a time-sorted frame instead of sorted copies, the data-quality
check reads only the columns its suite needs, ``load_snapshot_frame`` reads column subsets and
releases the Arrow table while converting, and LightGBM bins its Dataset before boosting so the
float32 matrix can be freed. Each is compared here with the computation it replaced.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from lockgate.errors import EmptyDataError, SchemaError
from lockgate.features.validation import run_suite, suite_columns
from lockgate.lineage.hashing import canonical_frame, frame_sha256
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.lineage.steps import load_snapshot_frame, snapshot_parquet_bytes, split_frame
from lockgate.spec import ColumnRule, DataValidation
from lockgate.training import LightGBMTrainer
from lockgate.training.lightgbm_trainer import _lightgbm_feature_names
from lockgate.training.model_files import LIGHTGBM_MODEL_FILE
from lockgate.training.prepare import prepare_fit


def _reference_split(
    frame: pd.DataFrame, *, timestamp_column: str, holdout_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The split as it was written before: a sorted copy, two masks, two fresh copies."""
    ordered = frame.sort_values(timestamp_column, kind="mergesort").reset_index(drop=True)
    cut = int(len(ordered) * (1.0 - holdout_fraction))
    cut = min(max(cut, 1), len(ordered) - 1) if len(ordered) > 1 else 1
    boundary = ordered[timestamp_column].iloc[min(cut, len(ordered) - 1)]
    train = ordered[ordered[timestamp_column] < boundary]
    holdout = ordered[ordered[timestamp_column] >= boundary]
    if train.empty or holdout.empty:
        raise EmptyDataError("empty side")
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # few distinct times: many rows share the boundary timestamp
    ts = pd.to_datetime(rng.integers(0, 40, rows), unit="h", utc=True).astype("datetime64[us, UTC]")
    return pd.DataFrame(
        {
            "event_timestamp": ts,
            "transaction_id": [f"tx-{i:06d}" for i in range(rows)],
            "amount": rng.lognormal(3.0, 1.0, rows),
            "device_type": rng.choice(["ios_app", "web_browser", "pos_terminal"], rows),
            "hour_of_day": rng.integers(0, 24, rows),
            "is_fraud": (rng.random(rows) < 0.1).astype("int64"),
        }
    )


@pytest.mark.parametrize("holdout_fraction", [0.2, 0.5, 0.9])
def test_split_of_a_sorted_frame_equals_the_sorted_copy_split(holdout_fraction: float) -> None:
    frame = canonical_frame(_frame(3000), sort_by=["event_timestamp", "transaction_id"])
    expected = _reference_split(
        frame, timestamp_column="event_timestamp", holdout_fraction=holdout_fraction
    )
    actual = split_frame(
        frame, timestamp_column="event_timestamp", holdout_fraction=holdout_fraction
    )
    for got, want in zip(actual, expected, strict=True):
        pdt.assert_frame_equal(got, want)
    # no timestamp on both sides, every row on one side
    assert actual[0]["event_timestamp"].max() < actual[1]["event_timestamp"].min()
    assert len(actual[0]) + len(actual[1]) == len(frame)


def test_split_of_an_unsorted_frame_or_with_missing_times_is_unchanged() -> None:
    unsorted = _frame(2000, seed=1)
    with_nat = unsorted.copy()
    with_nat.loc[[3, 500, 1999], "event_timestamp"] = pd.NaT
    for frame in (unsorted, with_nat):
        expected = _reference_split(frame, timestamp_column="event_timestamp", holdout_fraction=0.3)
        actual = split_frame(frame, timestamp_column="event_timestamp", holdout_fraction=0.3)
        for got, want in zip(actual, expected, strict=True):
            pdt.assert_frame_equal(got, want)
    one_time = _frame(10).assign(event_timestamp=pd.Timestamp("2024-01-01", tz="UTC"))
    with pytest.raises(EmptyDataError, match="leaves 0 training"):
        split_frame(one_time, timestamp_column="event_timestamp", holdout_fraction=0.2)


def _stored(tmp_path, frame: pd.DataFrame) -> tuple[LocalArtifactRegistry, str]:
    registry = LocalArtifactRegistry(root=str(tmp_path / "artifacts"))
    sort_by = ["event_timestamp", "transaction_id"]
    canonical = canonical_frame(frame, sort_by=sort_by)
    sha = frame_sha256(canonical, sort_by=sort_by)
    manifest = {
        "sort_by": sort_by,
        "schema": {c: str(t) for c, t in canonical.dtypes.items()},
    }
    registry.put_snapshot(sha, snapshot_parquet_bytes(canonical), manifest)
    return registry, sha


def test_column_subset_reads_the_same_values_and_refuses_a_content_check(tmp_path) -> None:
    registry, sha = _stored(tmp_path, _frame(1500))
    whole = load_snapshot_frame(registry, sha)  # content checked: the hash still matches
    subset = load_snapshot_frame(
        registry, sha, verify_content=False, columns=["is_fraud", "amount"]
    )
    assert list(subset.columns) == ["is_fraud", "amount"]
    pdt.assert_frame_equal(subset, whole[["is_fraud", "amount"]])
    with pytest.raises(SchemaError, match="verify_content=False"):
        load_snapshot_frame(registry, sha, columns=["amount"])


SUITE = DataValidation(
    min_rows=100,
    label_rate=(0.01, 0.5),
    columns={
        "amount": ColumnRule(dtype="float", min=0.0, max=50.0),  # fails: lognormal tail
        "device_type": ColumnRule(dtype="string", allowed=("ios_app", "web_browser")),  # fails
        "hour_of_day": ColumnRule(dtype="int", min=0, max=23),
    },
)


def test_the_suite_on_its_columns_only_gives_the_outcomes_of_the_whole_frame() -> None:
    frame = _frame(2000)
    columns = suite_columns(SUITE, label="is_fraud")
    assert columns == {"amount", "device_type", "hour_of_day", "is_fraud"}
    whole = run_suite(frame, SUITE, label="is_fraud")
    narrow = run_suite(frame[[c for c in frame.columns if c in columns]], SUITE, label="is_fraud")
    assert narrow == whole
    assert {o.name for o in whole if not o.passed} == {"column_amount", "column_device_type"}
    no_rate = DataValidation(min_rows=1, columns={"amount": ColumnRule(min=0.0)})
    assert suite_columns(no_rate, label="is_fraud") == {"amount"}


def test_lightgbm_binned_before_boosting_gives_the_lazily_built_booster() -> None:
    import lightgbm as lgb

    frame = _frame(3000, seed=2)
    features = ["amount", "device_type", "hour_of_day"]
    trainer = LightGBMTrainer(seed=3, num_boost_round=20)
    model = trainer.fit(frame, features=features, label="is_fraud")

    preprocessor, x, y = prepare_fit(
        frame, features=features, label="is_fraud", model_kind="lightgbm"
    )
    params = {
        **trainer.params,
        "seed": trainer.seed,
        "num_threads": trainer.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "device_type": "cpu",
    }
    lazy = lgb.Dataset(
        x,
        label=y,
        feature_name=_lightgbm_feature_names(preprocessor.features),
        categorical_feature=preprocessor.categorical_indices,
        params=params,
        free_raw_data=True,
    )
    booster = lgb.train(params, lazy, num_boost_round=20)
    assert model.files()[LIGHTGBM_MODEL_FILE] == booster.model_to_string().encode("utf-8")
