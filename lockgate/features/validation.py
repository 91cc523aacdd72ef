"""The data-quality suite: a spec's :class:`~lockgate.spec.DataValidation` run with Great Expectations.

The suite is grouped into named checks so the Dagster UI lists one blocking check per concern:
``row_count``, ``label_rate`` and ``column_<name>`` for every declared column. Each outcome carries
the failing expectation, the observed value, the threshold and the fix.

Great Expectations does not raise on a missing column (the expectation fails with an empty result),
so columns are checked for presence first and a missing one fails its check with a clear message.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lockgate.spec import ColumnRule, DataValidation

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CheckOutcome",
    "check_names",
    "run_suite",
    "run_suite_by_column",
    "suite_columns",
]

_TYPE_LISTS: dict[str, list[str]] = {
    "float": ["float64", "float32", "float16", "Float64", "Float32"],
    "int": [
        "int64",
        "int32",
        "int16",
        "int8",
        "uint64",
        "uint32",
        "uint16",
        "uint8",
        "Int64",
        "Int32",
    ],
    "number": [
        "float64",
        "float32",
        "Float64",
        "Float32",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "Int64",
        "Int32",
    ],
    "string": ["str", "string", "object", "StringDtype"],
    "bool": ["bool", "boolean", "bool_"],
    "datetime": ["Timestamp", "datetime64", "datetime64[ns]", "datetime64[us]", "DatetimeTZDtype"],
}
_GX_LOCK = threading.Lock()


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one named check of the suite."""

    name: str
    passed: bool
    description: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    observed: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-able metadata for the Dagster check result."""
        meta: dict[str, Any] = {"passed": self.passed, "observed": self.observed}
        if self.failures:
            first = self.failures[0]
            meta.update(
                {
                    "metric": first["expectation"],
                    "actual": first["observed"],
                    "threshold": first["threshold"],
                    "failures": self.failures,
                    "fix": first["fix"],
                }
            )
        return meta


def check_names(validation: DataValidation) -> list[str]:
    """The check names a suite produces, in order (known before any data is seen)."""
    names = ["row_count"]
    if validation.label_rate is not None:
        names.append("label_rate")
    names += [f"column_{col}" for col in sorted(validation.columns)]
    return names


def suite_columns(validation: DataValidation, *, label: str) -> set[str]:
    """The columns :func:`run_suite` reads: the declared ones, and the label for ``label_rate``.

    A frame of only these columns gives the same outcomes as the whole frame (the row count is
    the same), except that a missing column's message lists the frame's columns.
    """
    columns = set(validation.columns)
    if validation.label_rate is not None:
        columns.add(label)
    return columns


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN / inf: JSON has no such value; missing is what they mean here
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _column_expectations(column: str, rule: ColumnRule) -> list[tuple[Any, str, str]]:
    import great_expectations.expectations as gxe

    out: list[tuple[Any, str, str]] = []
    if rule.dtype is not None:
        out.append(
            (
                gxe.ExpectColumnValuesToBeInTypeList(
                    column=column, type_list=_TYPE_LISTS[rule.dtype]
                ),
                f"dtype {rule.dtype}",
                f"cast {column!r} to {rule.dtype} at the source, or fix the rule's dtype",
            )
        )
    out.append(
        (
            gxe.ExpectColumnValuesToNotBeNull(column=column, mostly=1.0 - rule.max_null_fraction)
            if rule.max_null_fraction < 1.0
            else None,
            f"null fraction <= {rule.max_null_fraction}",
            f"fill or drop the missing values of {column!r} upstream, or raise max_null_fraction",
        )
    )
    if rule.min is not None or rule.max is not None:
        out.append(
            (
                gxe.ExpectColumnValuesToBeBetween(
                    column=column, min_value=rule.min, max_value=rule.max
                ),
                _range_text(rule.min, rule.max),
                f"find the rows of {column!r} out of range at the source, or widen min/max",
            )
        )
    if rule.allowed is not None:
        out.append(
            (
                gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(rule.allowed)),
                f"values in {list(rule.allowed)}",
                f"map the new values of {column!r} or add them to 'allowed'",
            )
        )
    return [item for item in out if item[0] is not None]


def _expectation_key(expectation: Any) -> str:
    """(type, column): unique within a suite, since each column gets each type at most once."""
    if hasattr(expectation, "configuration"):  # an Expectation: use its configuration
        expectation = expectation.configuration
    return f"{expectation.type}:{expectation.kwargs.get('column')}"


def _observed(result: Mapping[str, Any]) -> Any:
    if "observed_value" in result:
        return _jsonable(result["observed_value"])
    keys = ("unexpected_count", "unexpected_percent", "element_count", "partial_unexpected_list")
    return {k: _jsonable(result[k]) for k in keys if k in result}


def run_suite(frame: pd.DataFrame, validation: DataValidation, *, label: str) -> list[CheckOutcome]:
    """Run the suite on ``frame`` and return one outcome per name in :func:`check_names`.

    Example:
        >>> import pandas as pd
        >>> from lockgate.spec import ColumnRule, DataValidation
        >>> suite = DataValidation(columns={"amount": ColumnRule(dtype="float", min=0)})
        >>> [o.passed for o in run_suite(pd.DataFrame({"amount": [1.0, -2.0], "y": [0, 1]}),
        ...                              suite, label="y")]
        [True, False]
    """
    groups, missing, _ = _plan(validation, label=label, available=list(frame.columns))
    results = _validate([(frame, list(groups))], groups)
    return _outcomes(validation, groups, missing, results, available=list(frame.columns))


def run_suite_by_column(
    read: Callable[[list[str]], pd.DataFrame],
    available: Sequence[str],
    validation: DataValidation,
    *,
    label: str,
) -> list[CheckOutcome]:
    """:func:`run_suite`'s outcomes, reading and validating one column at a time.

    Every expectation of the suite reads one column (the row count reads any), so validating
    each column's checks on a frame of that column alone gives the outcomes of the whole frame,
    while only one column is in memory: what a large snapshot needs.

    Args:
        read: Gives a frame of the named columns of the data (every row).
        available: The data's columns (for the message of a missing one).
        validation: The suite.
        label: The label column (``label_rate``).
    """
    groups, missing, columns = _plan(validation, label=label, available=list(available))
    by_column: dict[str, list[str]] = {}
    for name, column in columns.items():
        if column is not None and name not in missing:
            by_column.setdefault(column, []).append(name)
    if not by_column:  # only the row count (and missing columns): one column, or none
        by_column = {c: [] for c in list(available)[:1]} or {"": []}
    first = next(iter(by_column))
    by_column[first] = ["row_count", *by_column[first]]
    results: list[Any] = []
    for column, names in by_column.items():
        frame = read([column] if column else [])
        results += _validate([(frame, names)], groups)
        del frame
    return _outcomes(validation, groups, missing, results, available=list(available))


_Group = list[tuple[Any, str, str]]


def _plan(
    validation: DataValidation, *, label: str, available: list[str]
) -> tuple[dict[str, _Group], dict[str, str], dict[str, str | None]]:
    """The expectations of each check, the checks whose column is missing, and each check's
    column (None for the row count)."""
    import great_expectations.expectations as gxe

    groups: dict[str, _Group] = {
        "row_count": [
            (
                gxe.ExpectTableRowCountToBeBetween(min_value=validation.min_rows),
                f"rows >= {validation.min_rows}",
                "snapshot a longer window of labelled data, or lower min_rows",
            )
        ]
    }
    columns: dict[str, str | None] = {"row_count": None}
    missing: dict[str, str] = {}
    if validation.label_rate is not None:
        low, high = validation.label_rate
        columns["label_rate"] = label
        if label in available:
            groups["label_rate"] = [
                (
                    gxe.ExpectColumnMeanToBeBetween(column=label, min_value=low, max_value=high),
                    f"mean({label}) in [{low}, {high}]",
                    "check the labelling job for a broken or late batch, or update label_rate",
                )
            ]
        else:
            groups["label_rate"], missing["label_rate"] = [], label
    for column, rule in sorted(validation.columns.items()):
        name = f"column_{column}"
        columns[name] = column
        if column in available:
            groups[name] = _column_expectations(column, rule)
        else:
            groups[name], missing[name] = [], column
    return groups, missing, columns


def _validate(
    batches: list[tuple[pd.DataFrame, list[str]]], groups: dict[str, _Group]
) -> list[Any]:
    """Great Expectations' results of the ``groups`` named with each frame, on that frame."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    results: list[Any] = []
    with _GX_LOCK:  # the ephemeral context is process-global in GX; build one at a time
        ctx = gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = ctx.data_sources.add_pandas("lockgate").add_dataframe_asset("snapshot")
        definition = asset.add_batch_definition_whole_dataframe("all")
        for i, (frame, names) in enumerate(batches):
            suite = gx.ExpectationSuite(name=f"lockgate_{i}")
            for name in names:
                for expectation, _, _ in groups[name]:
                    suite.add_expectation(expectation)
            if not suite.expectations:
                continue
            batch = definition.get_batch(batch_parameters={"dataframe": frame})
            results += batch.validate(suite).results
            del batch
    return results


def _outcomes(
    validation: DataValidation,
    groups: dict[str, _Group],
    missing: dict[str, str],
    results: list[Any],
    *,
    available: list[str],
) -> list[CheckOutcome]:
    owners: list[tuple[str, str, str]] = []
    owner_by_id: dict[str, tuple[str, str, str]] = {}
    order: dict[str, int] = {}
    for name in check_names(validation):
        for expectation, threshold, fix in groups[name]:
            owners.append((name, threshold, fix))
            owner_by_id[_expectation_key(expectation)] = (name, threshold, fix)
            order[_expectation_key(expectation)] = len(order)
    failures: dict[str, list[dict[str, Any]]] = {n: [] for n in check_names(validation)}
    observed: dict[str, dict[str, Any]] = {n: {} for n in check_names(validation)}
    # report failures in suite order (dtype before nulls before ranges), whatever GX returns
    results = sorted(results, key=lambda r: order.get(_expectation_key(r.expectation_config), 0))
    for result in results:
        config = result.expectation_config
        if config is None or _expectation_key(config) not in owner_by_id:
            raise RuntimeError(f"Great Expectations returned an unexpected result: {result}")
        name, threshold, fix = owner_by_id[_expectation_key(config)]
        kind = config.type
        value = _observed(result.result)
        info = result.exception_info
        if isinstance(info, dict) and info.get("raised_exception"):  # e.g. mean of strings
            value = {"error": str(info.get("exception_message"))}
        observed[name][kind] = value
        if not result.success:
            failures[name].append(
                {"expectation": kind, "observed": value, "threshold": threshold, "fix": fix}
            )
    for name, column in missing.items():
        failures[name].append(
            {
                "expectation": "expect_column_to_exist",
                "observed": f"column {column!r} missing (columns: {sorted(available)})",
                "threshold": "column present",
                "fix": f"add {column!r} to the feature service or labels, or drop its rule",
            }
        )
    return [
        CheckOutcome(
            name=name,
            passed=not failures[name],
            description=", ".join(t for n, t, _ in owners if n == name) or "column present",
            failures=failures[name],
            observed=observed[name],
        )
        for name in check_names(validation)
    ]


def _range_text(low: float | None, high: float | None) -> str:
    """``values >= 0``, ``values <= 5``, ``values in [0, 5]``: no Python reprs for open ends."""
    if low is None:
        return f"values <= {high:g}"
    if high is None:
        return f"values >= {low:g}"
    return f"values in [{low:g}, {high:g}]"
