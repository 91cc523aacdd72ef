from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from lockgate.features.validation import check_names, run_suite, run_suite_by_column
from lockgate.spec import ColumnRule, DataValidation

SUITE = DataValidation(
    min_rows=5,
    label_rate=(0.1, 0.6),
    columns={
        "amount": ColumnRule(dtype="float", min=0.0, max=100.0, max_null_fraction=0.2),
        "country": ColumnRule(dtype="string", allowed=("DE", "FR")),
        "hour": ColumnRule(dtype="int", min=0, max=23),
    },
)


def _good() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0],
            "country": ["DE", "FR", "DE", "DE", "FR", "FR"],
            "hour": np.array([0, 5, 23, 12, 1, 2], dtype="int64"),
            "y": [0, 1, 0, 0, 1, 0],
        }
    )


def _outcomes(frame: pd.DataFrame) -> dict:
    return {o.name: o for o in run_suite(frame, SUITE, label="y")}


def test_names_are_known_before_data() -> None:
    assert check_names(SUITE) == [
        "row_count",
        "label_rate",
        "column_amount",
        "column_country",
        "column_hour",
    ]


def test_good_data_passes_every_check() -> None:
    outcomes = _outcomes(_good())
    assert list(outcomes) == check_names(SUITE)
    assert all(o.passed for o in outcomes.values()), {n: o.failures for n, o in outcomes.items()}


def test_nan_flood_fails_with_observed_share() -> None:
    frame = _good().assign(amount=[np.nan] * 5 + [1.0])
    outcome = _outcomes(frame)["column_amount"]
    assert not outcome.passed
    meta = outcome.metadata()
    assert meta["metric"] == "expect_column_values_to_not_be_null"
    assert meta["actual"]["unexpected_count"] == 5
    assert meta["threshold"] == "null fraction <= 0.2"
    assert "max_null_fraction" in meta["fix"]


def test_wrong_dtype_is_named() -> None:
    frame = _good().assign(hour=["0", "5", "23", "12", "1", "2"])
    outcome = _outcomes(frame)["column_hour"]
    assert not outcome.passed
    assert outcome.failures[0]["expectation"] == "expect_column_values_to_be_in_type_list"
    assert outcome.failures[0]["threshold"] == "dtype int"


def test_range_set_rows_and_label_rate() -> None:
    frame = _good()
    frame.loc[0, "amount"] = 1000.0
    frame.loc[1, "country"] = "XX"
    outcomes = _outcomes(frame)
    assert outcomes["column_amount"].failures[0]["expectation"] == (
        "expect_column_values_to_be_between"
    )
    assert outcomes["column_country"].failures[0]["observed"]["partial_unexpected_list"] == ["XX"]
    tiny = _outcomes(_good().head(3))
    assert tiny["row_count"].metadata()["actual"] == 3
    no_fraud = _outcomes(_good().assign(y=0))
    assert no_fraud["label_rate"].metadata()["actual"] == pytest.approx(0.0)
    assert not no_fraud["label_rate"].passed


def test_missing_column_fails_instead_of_passing_silently() -> None:
    outcome = _outcomes(_good().drop(columns=["country"]))["column_country"]
    assert not outcome.passed
    assert outcome.failures[0]["expectation"] == "expect_column_to_exist"
    assert "'country' missing" in outcome.failures[0]["observed"]


def test_an_open_ended_range_reads_as_a_bound_not_a_python_none() -> None:
    suite = DataValidation(columns={"amount": ColumnRule(dtype="float", min=0.0)})
    frame = pd.DataFrame({"amount": [1.0, -3.0, 2.0], "y": [0, 1, 0]})
    (outcome,) = [o for o in run_suite(frame, suite, label="y") if o.name == "column_amount"]
    assert not outcome.passed
    (failure,) = outcome.failures
    assert failure["threshold"] == "values >= 0"
    assert "None" not in str(outcome.metadata())


def _variants() -> list[pd.DataFrame]:
    bad = _good()
    bad.loc[0, "amount"] = 1000.0
    bad.loc[1, "country"] = "XX"
    return [
        _good(),
        _good().assign(amount=[np.nan] * 5 + [1.0]),
        _good().assign(hour=["0", "5", "23", "12", "1", "2"]),
        bad,
        _good().head(3),
        _good().assign(y=0),
        _good().drop(columns=["country"]),
        _good().drop(columns=["y"]),
    ]


def _reader(frame: pd.DataFrame, reads: list[list[str]]) -> Callable[[list[str]], pd.DataFrame]:
    def read(columns: list[str]) -> pd.DataFrame:
        reads.append(columns)
        return frame[columns]

    return read


@pytest.mark.parametrize("case", range(8))
def test_one_column_at_a_time_gives_the_whole_frames_outcomes(case: int) -> None:
    # the data-quality step validates a large snapshot one column at a time (run_suite_by_column)
    frame = _variants()[case]
    reads: list[list[str]] = []
    read = _reader(frame, reads)

    by_column = run_suite_by_column(read, list(frame.columns), SUITE, label="y")
    assert by_column == run_suite(frame, SUITE, label="y")
    assert all(len(columns) == 1 for columns in reads)
    assert len(reads) == len({c[0] for c in reads})  # each column read once


def test_the_label_rule_and_the_label_rate_share_one_read() -> None:
    suite = SUITE.model_copy(
        update={"columns": {**SUITE.columns, "y": ColumnRule(dtype="int", allowed=(0, 1))}}
    )
    frame = _good()
    reads: list[list[str]] = []
    read = _reader(frame, reads)

    outcomes = run_suite_by_column(read, list(frame.columns), suite, label="y")
    assert outcomes == run_suite(frame, suite, label="y")
    assert sorted(reads) == [["amount"], ["country"], ["hour"], ["y"]]
    only_rows = DataValidation(min_rows=10)
    (row_count,) = run_suite_by_column(read, list(frame.columns), only_rows, label="y")
    assert not row_count.passed  # 6 rows < 10, counted on one column
    assert row_count.observed["expect_table_row_count_to_be_between"] == 6
