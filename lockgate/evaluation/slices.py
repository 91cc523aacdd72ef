"""Per-slice metrics: a metric per value of each slice column, and numeric columns into buckets.

:func:`slice_metrics` reports a metric on the rows of every value of each slice column (sorted
values, categories in order with empty ones too, missing values last), with the reason where it
is undefined (too few rows, a single class, no positives, a constant target);
:func:`bucketize` turns a numeric column into ordered, labelled buckets to slice on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, EmptyDataError, SchemaError, SpecError
from lockgate.evaluation.metric_checks import (
    BOTH_CLASSES_METRICS,
    PROBABILITY_METRICS,
    binary_metric,
    check_metric,
)
from lockgate.evaluation.results import SliceResult
from lockgate.tasks import catalog as _tasks
from lockgate.tasks.inputs import as_labels, as_scores, validate_multiclass, validate_regression

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["bucketize", "slice_metrics"]

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]
_BoolArray = npt.NDArray[np.bool_]


def _slice_value(value: Any) -> str | int | float | bool | None:
    """A slice value as a JSON-able scalar (``None`` for missing)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _slice_groups(series: pd.Series) -> tuple[npt.NDArray[np.intp], list[Any]]:
    """Integer codes (-1: missing) and the values they stand for, in a stable order."""
    import pandas as pd

    if isinstance(series.dtype, pd.CategoricalDtype):
        # Every category is reported, empty ones too (e.g. a bucket nobody fell into).
        return np.asarray(series.cat.codes, dtype=np.intp), list(series.cat.categories)
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:  # values that cannot be ordered (mixed types)
        codes, uniques = pd.factorize(series, sort=False)
    return np.asarray(codes, dtype=np.intp), list(uniques)


def _slice_metric(
    y: _IntArray, p: _FloatArray, *, metric: str, min_rows: int, max_fpr: float
) -> tuple[float | None, str | None]:
    rows = int(y.shape[0])
    positives = int(y.sum())
    negatives = rows - positives
    if rows < min_rows:
        return None, f"too few rows: {rows} < min_rows={min_rows}"
    if metric in BOTH_CLASSES_METRICS and (positives == 0 or negatives == 0):
        return None, (
            f"single class: {positives} positive(s) and {negatives} negative(s); {metric} needs "
            f"both labels"
        )
    if metric == "pr_auc" and positives == 0:
        return None, "no positives: pr_auc needs at least one row with label 1"
    return binary_metric(metric, y, p, max_fpr=max_fpr), None


def _task_slice_metric(
    task: str, metric: str, y: npt.NDArray[Any], p: _FloatArray, *, min_rows: int
) -> tuple[float | None, str | None]:
    rows = int(y.shape[0])
    if rows < min_rows:
        return None, f"too few rows: {rows} < min_rows={min_rows}"
    if metric == "roc_auc_ovr" and np.unique(y).shape[0] < 2:
        return None, "single class: roc_auc_ovr needs at least two classes"
    if metric == "r2" and float(np.min(y)) == float(np.max(y)):
        return None, "constant target: r2 needs a target that varies"
    return _tasks.metric_value(task, metric, y, p), None


def slice_metrics(
    frame: pd.DataFrame,
    *,
    y_col: str,
    p_col: str | Sequence[str],
    slice_cols: str | Sequence[str],
    metric: str,
    min_rows: int,
    max_fpr: float = 0.01,
    task: str = "binary",
) -> list[SliceResult]:
    """A metric per value of each slice column, ``None`` with a reason where it is undefined.

    Slices of a column are reported in sorted value order (category order for categorical
    columns, whose empty categories are reported too, with 0 rows), missing values last as
    value ``None``. A slice's metric is undefined when it has fewer than ``min_rows`` rows, or a
    single class (``roc_auc``, ``recall_at_fpr``, multiclass ``roc_auc_ovr``), or no positives
    (``pr_auc``), or a constant target (``r2``).

    Args:
        frame: One row per scored example.
        y_col: The label column (binary 0/1, multiclass class indices, regression targets).
        p_col: The predicted-probability column (binary), the prediction column (regression),
            or for multiclass the k probability columns in class order.
        slice_cols: One column name or several; use :func:`bucketize` for numeric columns.
        metric: One of the task's metrics (:func:`lockgate.tasks.catalog.task_metric_names`).
        min_rows: The fewest rows a slice needs for its metric to be reported (>= 1).
        max_fpr: The false-positive-rate bound of ``recall_at_fpr``.
        task: ``"binary"`` (default), ``"multiclass"`` or ``"regression"``.

    Returns:
        One :class:`SliceResult` per (column, value), columns in the order given.

    Raises:
        SpecError: On an unknown metric, no slice columns or an invalid ``min_rows``.
        SchemaError: When a named column is missing.
        EmptyDataError: When the frame has no rows.
        DataError: On invalid labels or probabilities.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"y": [0, 1, 0, 1, 0, 0], "p": [.2, .7, .4, .6, .1, .3],
        ...                    "country": ["FR", "FR", "FR", "FR", "DE", "DE"]})
        >>> [(s.value, s.metric_value, s.reason is None) for s in slice_metrics(
        ...     df, y_col="y", p_col="p", slice_cols="country", metric="roc_auc", min_rows=2)]
        [('DE', None, False), ('FR', 1.0, True)]
    """
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"frame is a {type(frame).__name__}; rule: slice_metrics needs a pandas DataFrame; "
            f"fix: pass pd.DataFrame(...) with the label, probability and slice columns"
        )
    check_metric(metric, task)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int | np.integer) or min_rows < 1:
        raise SpecError(
            f"min_rows={min_rows!r} is invalid; rule: the minimum slice size must be an integer "
            f">= 1; fix: pass e.g. min_rows=100"
        )
    columns = [slice_cols] if isinstance(slice_cols, str) else list(slice_cols)
    if not columns:
        raise SpecError(
            "slice_cols is empty; rule: at least one slice column is needed; fix: pass e.g. "
            "slice_cols=['country']"
        )
    p_cols = [p_col] if isinstance(p_col, str) else list(p_col)
    if (task == "multiclass") == isinstance(p_col, str):
        raise SpecError(
            f"p_col={p_col!r} does not fit task {task!r}; rule: multiclass slices need the list "
            f"of k probability columns in class order, the other tasks one column; fix: pass "
            f"p_col=['p_0', 'p_1', ...] for multiclass, p_col='p' otherwise"
        )
    missing = [c for c in (y_col, *p_cols, *columns) if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"column(s) {missing} are not in the frame (columns: {list(frame.columns)[:20]}); "
            f"rule: the label, probability and slice columns must exist; fix: check the names "
            f"or add the columns (bucketize numeric ones)"
        )
    if len(frame) == 0:
        raise EmptyDataError(
            "frame has no rows; rule: slice metrics need at least one row; fix: evaluate on a "
            "non-empty split"
        )
    y: npt.NDArray[Any]
    p: _FloatArray
    if task == "binary":
        y = as_labels(frame[y_col].to_numpy(), name=y_col)
        p = as_scores(
            frame[p_cols[0]].to_numpy(),
            name=p_cols[0],
            n=int(y.shape[0]),
            unit_interval=metric in PROBABILITY_METRICS,
        )
    elif task == "multiclass":
        y, p = validate_multiclass(
            frame[y_col].to_numpy(), frame[p_cols].to_numpy(dtype=np.float64)
        )
    else:
        y, p = validate_regression(frame[y_col].to_numpy(), frame[p_cols[0]].to_numpy())
    results: list[SliceResult] = []
    for column in columns:
        codes, uniques = _slice_groups(frame[column])
        order = np.argsort(codes, kind="stable")
        sizes = np.bincount(codes + 1, minlength=len(uniques) + 1)  # slot 0: missing
        groups = np.split(order, np.cumsum(sizes)[:-1])
        keyed = [(uniques[k], groups[k + 1]) for k in range(len(uniques))]
        if sizes[0]:
            keyed.append((None, groups[0]))
        for value, rows in keyed:
            if task == "binary":
                value_metric, reason = _slice_metric(
                    np.asarray(y[rows], dtype=np.int64),
                    p[rows],
                    metric=metric,
                    min_rows=int(min_rows),
                    max_fpr=max_fpr,
                )
            else:
                value_metric, reason = _task_slice_metric(
                    task, metric, y[rows], p[rows], min_rows=int(min_rows)
                )
            results.append(
                SliceResult(
                    column=str(column),
                    value=_slice_value(value),
                    rows=int(rows.shape[0]),
                    positives=int(y[rows].sum()) if task == "binary" else None,
                    metric=metric,
                    metric_value=value_metric,
                    reason=reason,
                )
            )
    return results


def _format_edge(value: float) -> str:
    return f"{value:g}"


def bucketize(
    values: Any, *, edges: Sequence[float], labels: Sequence[str] | None = None
) -> pd.Series:
    """Numeric values into ordered, labelled buckets (amount buckets, age bands) for slicing.

    ``k`` strictly increasing edges make ``k + 1`` buckets, left-closed and right-open:
    ``(-inf, e0)``, ``[e0, e1)``, ..., ``[e_last, inf)``; every finite or infinite value lands in
    one of them and NaN stays missing. The default labels are ``"<e0"``, ``"[e0, e1)"``, ...,
    ``">=e_last"``.

    Args:
        values: Numbers (array, list or Series; a Series keeps its index and name).
        edges: Strictly increasing finite bucket edges, at least one.
        labels: ``len(edges) + 1`` distinct bucket names, in order.

    Returns:
        An ordered categorical Series whose categories are the labels (empty buckets included).

    Raises:
        SpecError: On invalid edges or labels.
        DataError: When the values are not numeric.

    Example:
        >>> bucketize([5, 10, 250, 40], edges=[10, 100], labels=["small", "mid", "large"]).tolist()
        ['small', 'mid', 'large', 'mid']
    """
    import pandas as pd

    try:
        e = np.asarray(edges, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"edges={edges!r} are not numbers; rule: bucket edges must be finite numbers; fix: "
            f"pass e.g. edges=[10, 100, 1000]"
        ) from exc
    if e.ndim != 1 or e.shape[0] == 0 or not np.isfinite(e).all() or (np.diff(e) <= 0).any():
        raise SpecError(
            f"edges={edges!r} are invalid; rule: at least one finite edge, strictly increasing; "
            f"fix: sort the edges and drop duplicates, e.g. edges=[10, 100, 1000]"
        )
    if labels is None:
        names = [f"<{_format_edge(e[0])}"]
        names += [f"[{_format_edge(lo)}, {_format_edge(hi)})" for lo, hi in itertools.pairwise(e)]
        names.append(f">={_format_edge(e[-1])}")
    else:
        names = list(labels)
        if (
            len(names) != e.shape[0] + 1
            or len(set(names)) != len(names)
            or not all(isinstance(x, str) for x in names)
        ):
            raise SpecError(
                f"labels={names!r} are invalid for {e.shape[0]} edge(s); rule: one distinct "
                f"string label per bucket, len(edges) + 1 = {e.shape[0] + 1} in all; fix: add or "
                f"remove labels (or pass labels=None for the default names)"
            )
    index = values.index if isinstance(values, pd.Series) else None
    name = values.name if isinstance(values, pd.Series) else None
    try:
        if isinstance(values, pd.Series):
            v = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            v = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"values could not be read as numbers ({exc}); rule: bucketize needs numeric values; "
            f"fix: convert the column to float first (or slice on it directly if categorical)"
        ) from exc
    codes = np.searchsorted(e, v, side="right")
    codes[np.isnan(v)] = -1
    categorical = pd.Categorical.from_codes(codes, categories=pd.Index(names), ordered=True)
    return pd.Series(categorical, index=index, name=name)
