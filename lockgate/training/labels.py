"""Label checks and encoding per task (binary, multiclass, regression), and the task of a model.

:func:`check_labels` runs the checks ``fit`` runs, without training (e.g. when a snapshot is
taken); :func:`encode_labels` turns a checked label column into the float64 ``y`` the
trainers fit: 0/1 (binary), the index of each row's class in the sorted class list
(multiclass), or the label value (regression). :func:`task_fields` reads the task and the
classes a ``preprocessing.json`` records.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from lockgate.errors import EmptyDataError, SchemaError, SpecError, TrainingError
from lockgate.tasks.catalog import TASKS, Task
from lockgate.training.arrays import Float64Array

__all__ = [
    "MAX_CLASSES",
    "ClassLabel",
    "check_labels",
    "check_task",
    "encode_labels",
    "task_fields",
]

ClassLabel: TypeAlias = int | str
"""A multiclass label value: an integer or a string (one kind per model)."""

MAX_CLASSES = 1000
"""Most classes a multiclass label may have (more usually means a continuous label)."""


def check_task(task: Any) -> None:
    if not isinstance(task, str) or task not in TASKS:
        raise SpecError(
            f"task={task!r} is unknown; rule: one of {list(TASKS)}; fix: declare the pipeline's "
            f"task as one of them ('binary' is the default)"
        )


def check_labels(series: pd.Series, *, task: Task, label: str) -> None:
    """Checks that a label column fits ``task``, with the errors ``fit`` would raise.

    Pure and cheap (no training): call it when a snapshot is taken to fail early. The rules:

    - ``"binary"``: every value is 0 or 1 (bool, int or float), both occur, none missing;
    - ``"multiclass"``: integer values (integral floats count) or strings, one kind per
      column, no missing values, from 2 to :data:`MAX_CLASSES` classes;
    - ``"regression"``: finite numbers (no missing or infinite values, not bool), not all
      equal.

    Args:
        series: The label column.
        task: One of :data:`TASKS`.
        label: The column's name, for the messages.

    Raises:
        SpecError: For an unknown task.
        SchemaError: When ``series`` is not a pandas Series.
        EmptyDataError: When it has no rows.
        TrainingError: When its values do not fit the task; the message names the task, the
            offending values, the rule and the fix (and the task that would fit, when one
            clearly does).

    Example:
        >>> check_labels(pd.Series([0, 1, 2]), task="binary", label="y")
        Traceback (most recent call last):
        ...
        lockgate.errors.TrainingError: label column 'y' holds values other than 0 and 1 ...
    """
    check_task(task)
    if not isinstance(series, pd.Series):
        raise SchemaError(
            f"labels of {label!r} are a {type(series).__name__}; rule: check_labels takes a "
            f"pandas Series; fix: pass frame[{label!r}]"
        )
    encode_labels(series, task=task, label=label)


def encode_labels(
    series: pd.Series, *, task: Task, label: str
) -> tuple[Float64Array, tuple[ClassLabel, ...]]:
    """``(y, classes)`` for the task, or TrainingError (see :func:`check_labels`)."""
    if len(series) == 0:
        raise EmptyDataError(
            f"label column {label!r} has no rows for task={task!r}; rule: a model needs "
            f"labelled rows; fix: check the snapshot's time range and filters"
        )
    if task == "multiclass":
        return _multiclass_labels(series, label=label)
    if task == "regression":
        return _regression_labels(series, label=label), ()
    return _binary_labels(series, label=label), (0, 1)


def _value_counts(series: pd.Series) -> tuple[pd.Series, str]:
    """The value counts (missing included) and their first ten as text for messages."""
    counts = series.value_counts(dropna=False)
    summary = ", ".join(f"{key!r}: {int(count)}" for key, count in list(counts.items())[:10])
    if len(counts) > 10:
        summary += f", ... ({len(counts)} distinct values)"
    return counts, summary


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _is_integral(value: Any) -> bool:
    """An int, or a finite float with no fractional part (not bool)."""
    if not _is_number(value):
        return False
    if isinstance(value, int | np.integer):
        return True
    return math.isfinite(float(value)) and float(value).is_integer()


def _task_hint(keys: Sequence[Any], *, label: str) -> str:
    """``"; or, if ..., declare task=..."`` when the present values clearly suit another task."""
    present = [k for k in keys if not (pd.api.types.is_scalar(k) and pd.isna(k))]
    if not present or all(_is_binary_value(k) for k in present):
        return ""
    if all(_is_number(k) for k in present):
        if all(_is_integral(k) for k in present):
            return (
                f"; or, if {label!r} has {len(present)} classes, declare task='multiclass' "
                f"(or task='regression' if it is a count or amount)"
            )
        return f"; or, if {label!r} is a continuous quantity, declare task='regression'"
    if all(isinstance(k, str) for k in present):
        return f"; or, if {label!r} names {len(present)} classes, declare task='multiclass'"
    return ""


def _is_binary_value(value: Any) -> bool:
    if not isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        return False
    return bool(value == 0 or value == 1)


def _binary_labels(series: pd.Series, *, label: str) -> Float64Array:
    """The label column as float64 0/1, or TrainingError with the value counts."""
    counts, summary = _value_counts(series)
    if not all(_is_binary_value(key) for key in counts.index):
        raise TrainingError(
            f"label column {label!r} holds values other than 0 and 1 for task='binary' (value "
            f"counts: {{{summary}}}); rule: binary labels are 0 or 1 with no missing values; "
            f"fix: encode the positive class as 1, the negative as 0 and drop unlabelled rows"
            f"{_task_hint(list(counts.index), label=label)}"
        )
    y = series.to_numpy(dtype=np.float64)
    positives = int(y.sum())
    negatives = int(y.shape[0] - positives)
    if positives == 0 or negatives == 0:
        raise TrainingError(
            f"label column {label!r} has a single class (0: {negatives}, 1: {positives}) for "
            f"task='binary'; rule: both classes must occur to fit a classifier; fix: widen the "
            f"snapshot's time range or check the label join"
        )
    return np.ascontiguousarray(y)


def _multiclass_labels(
    series: pd.Series, *, label: str
) -> tuple[Float64Array, tuple[ClassLabel, ...]]:
    """Class indices into the sorted class list (float64), and that list."""
    counts, summary = _value_counts(series)
    missing = int(series.isna().sum())
    if missing:
        raise TrainingError(
            f"label column {label!r} has {missing} missing value(s) for task='multiclass' "
            f"(value counts: {{{summary}}}); rule: every training row has a class; fix: drop "
            f"unlabelled rows (or give them a class of their own)"
        )
    if pd.api.types.is_bool_dtype(series.dtype):
        raise TrainingError(
            f"label column {label!r} is bool for task='multiclass' (value counts: {{{summary}}}); "
            f"rule: multiclass labels are integers or strings; fix: declare task='binary' for "
            f"a yes/no label"
        )
    keys: list[Any] = [key for key, count in counts.items() if count > 0]  # no unused categories
    normalized: list[ClassLabel] = []
    bad: list[Any] = []
    for key in keys:
        if isinstance(key, str):
            normalized.append(key)
        elif _is_integral(key):
            normalized.append(int(key))
        else:
            bad.append(key)
    if bad:
        fractional = any(_is_number(k) and math.isfinite(float(k)) for k in bad)
        fix = (
            "declare task='regression' for a continuous label, or map the values to classes"
            if fractional
            else "map them to integer or string class names"
        )
        raise TrainingError(
            f"label column {label!r} holds {bad[:5]!r}{' ...' if len(bad) > 5 else ''} for "
            f"task='multiclass' (value counts: {{{summary}}}); rule: multiclass labels are "
            f"integers (integral floats count) or strings; fix: {fix}"
        )
    kinds = {type(value) for value in normalized}
    if len(kinds) > 1:
        raise TrainingError(
            f"label column {label!r} mixes integer and string classes for task='multiclass' "
            f"(value counts: {{{summary}}}); rule: the classes of one label are all integers or "
            f"all strings, so that they sort; fix: cast the column to str (or to int)"
        )
    classes: tuple[ClassLabel, ...] = tuple(sorted(set(normalized)))
    if len(classes) < 2:
        raise TrainingError(
            f"label column {label!r} has a single class {classes[0]!r} ({len(series)} rows) for "
            f"task='multiclass'; rule: at least 2 classes must occur to fit a classifier; fix: "
            f"widen the snapshot's time range or check the label join"
        )
    if len(classes) > MAX_CLASSES:
        raise TrainingError(
            f"label column {label!r} has {len(classes)} distinct values for task='multiclass' "
            f"(value counts: {{{summary}}}); rule: at most {MAX_CLASSES} classes; fix: declare "
            f"task='regression' if the label is a quantity, or group rare classes"
        )
    position = {value: i for i, value in enumerate(classes)}
    key_codes = np.asarray([position[value] for value in normalized], dtype=np.float64)
    values = pd.Index(series.to_numpy(dtype=object), dtype=object)
    rows = pd.Index(keys, dtype=object).get_indexer(values)
    if (rows < 0).any():  # pragma: no cover - value_counts lists every value
        raise TrainingError(f"label column {label!r} could not be encoded for task='multiclass'")
    return np.ascontiguousarray(key_codes[rows]), classes


def _regression_labels(series: pd.Series, *, label: str) -> Float64Array:
    """The label column as finite float64, or TrainingError."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise TrainingError(
            f"label column {label!r} is bool for task='regression'; rule: regression labels "
            f"are finite numbers; fix: declare task='binary' for a yes/no label"
        )
    numeric = (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    )
    if numeric:
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        converted = pd.to_numeric(series, errors="coerce")
        not_numbers = series[converted.isna() & series.notna()]
        if len(not_numbers) or isinstance(dtype, pd.CategoricalDtype):
            sample = list(dict.fromkeys(not_numbers.tolist()))[:5] or list(series.head(5))
            raise TrainingError(
                f"label column {label!r} (dtype {dtype}) holds non-numeric values {sample!r} "
                f"for task='regression'; rule: regression labels are finite numbers; fix: "
                f"cast the column to a numeric dtype, or declare task='multiclass' if the "
                f"values name classes"
            )
        values = np.asarray(converted.to_numpy(dtype=np.float64, na_value=np.nan))
    finite = np.isfinite(values)
    if not finite.all():
        missing = int(np.isnan(values).sum())
        infinite = int(np.isinf(values).sum())
        first = [int(i) for i in np.flatnonzero(~finite)[:5]]
        raise TrainingError(
            f"label column {label!r} holds {missing} missing and {infinite} infinite value(s) "
            f"for task='regression' (first at positions {first}); rule: regression labels are "
            f"finite numbers; fix: drop unlabelled rows and replace infinities upstream"
        )
    if values.size and bool((values == values[0]).all()):
        raise TrainingError(
            f"label column {label!r} has the single value {float(values[0])!r} in all "
            f"{values.size} rows for task='regression'; rule: a regression label must vary to "
            f"be learnt; fix: widen the snapshot's time range or check the label join"
        )
    return np.ascontiguousarray(values, dtype=np.float64)


def task_fields(spec: Mapping[str, Any]) -> tuple[Task, tuple[ClassLabel, ...]]:
    """``(task, classes)`` of a ``preprocessing.json`` content; ValueError when malformed."""
    task = spec.get("task", "binary")
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {list(TASKS)}")
    if task != "multiclass":
        if "classes" in spec:
            raise ValueError(f"classes are recorded for task {task!r}")
        return task, ((0, 1) if task == "binary" else ())
    classes = spec["classes"]
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES:
        raise ValueError(f"classes {classes!r} are not a list of 2 to {MAX_CLASSES} labels")
    if not (
        all(isinstance(c, str) for c in classes)
        or all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
    ):
        raise ValueError(f"classes {classes[:5]!r} are not all integers or all strings")
    if any(a >= b for a, b in itertools.pairwise(classes)):
        raise ValueError(f"classes {classes[:5]!r} are not sorted and distinct")
    return "multiclass", tuple(classes)
