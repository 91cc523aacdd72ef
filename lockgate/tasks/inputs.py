"""The inputs of every metric, checked and converted: labels, scores, class probabilities, targets.

Binary labels are 0/1 (:func:`as_labels`) and scores one finite float per row
(:func:`as_scores`); multiclass labels are class indices (:func:`as_class_indices`) and
probabilities an ``(n, k)`` matrix whose rows sum to 1 (:func:`as_probability_matrix`); regression
targets and predictions are finite floats (:func:`as_targets`). Each check raises
:class:`~lockgate.errors.EmptyDataError` on no rows and :class:`~lockgate.errors.DataError` naming
the value, the rule and the fix; :mod:`lockgate.tasks.metrics` and the evaluation statistics and
plots all read their inputs through them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, EmptyDataError

__all__ = [
    "ROW_SUM_TOLERANCE",
    "as_class_indices",
    "as_labels",
    "as_probability_matrix",
    "as_scores",
    "as_targets",
    "validate_binary",
    "validate_multiclass",
    "validate_regression",
]

ROW_SUM_TOLERANCE = 1e-5
"""How far a row of class probabilities may sum from 1 (float32 softmax rounding)."""

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


def _as_1d(values: Any, *, name: str) -> npt.NDArray[Any]:
    try:
        arr = np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise DataError(
            f"{name} could not be read as an array ({exc}); rule: metrics and statistics need a 1-D array "
            f"of numbers; fix: pass a numpy array, list or pandas Series"
        ) from exc
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(
            f"{name} has shape {arr.shape}; rule: metrics and statistics need a 1-D array (one value per "
            f"row); fix: pass the probability of label 1 only, e.g. p[:, 1]"
        )
    return arr


def _require_rows(arr: npt.NDArray[Any], *, name: str, who: str = "metrics") -> None:
    """Refuses an array without rows (``who`` names what needs them, in the message)."""
    if arr.shape[0] == 0:
        raise EmptyDataError(
            f"{name} is empty; rule: {who} need at least one row; fix: evaluate on a "
            f"non-empty split"
        )


def as_labels(y: Any, *, name: str = "y") -> _IntArray:
    """Binary labels as int64 0/1, one per row (booleans accepted, NaN refused)."""
    arr = _as_1d(y, name=name)
    _require_rows(arr, name=name, who="metrics and statistics")
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    return _integer_values(
        arr,
        name=name,
        not_numeric="rule: labels must be 0 or 1; fix: encode the positive class as 1 and the "
        "negative class as 0",
        invalid=lambda as_float: ~((as_float == 0.0) | (as_float == 1.0)),
        invalid_values="other than 0 and 1",
        invalid_rule="rule: labels must be 0 or 1 (NaN is not allowed); fix: drop unlabelled rows "
        "and encode the positive class as 1",
    )


def _integer_values(
    arr: npt.NDArray[Any],
    *,
    name: str,
    not_numeric: str,
    invalid: Callable[[_FloatArray], npt.NDArray[np.bool_]],
    invalid_values: str,
    invalid_rule: str,
) -> _IntArray:
    """``arr`` as int64, refused when not numeric or when ``invalid`` marks any of its values.

    The errors read ``"{name} has dtype ... that is not numeric; {not_numeric}"`` and
    ``"{name} holds N value(s) {invalid_values} (e.g. [...]); {invalid_rule}"``.
    """
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} has dtype {arr.dtype} that is not numeric; {not_numeric}") from exc
    bad = invalid(as_float)
    if bad.any():
        examples = np.unique(arr[bad])[:5].tolist()
        raise DataError(
            f"{name} holds {int(bad.sum())} value(s) {invalid_values} (e.g. {examples}); "
            f"{invalid_rule}"
        )
    return as_float.astype(np.int64)


def as_scores(p: Any, *, name: str, n: int, unit_interval: bool) -> _FloatArray:
    """``n`` finite float64 scores; with ``unit_interval``, probabilities in ``[0, 1]``."""
    arr = _as_1d(p, name=name)
    if arr.shape[0] != n:
        raise DataError(
            f"{name} has {arr.shape[0]} values but y has {n}; rule: labels and scores must have "
            f"the same length; fix: score exactly the rows you evaluate"
        )
    try:
        as_float = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{name} has dtype {arr.dtype} that is not numeric; rule: scores must be finite "
            f"floats; fix: pass the model's predicted probabilities"
        ) from exc
    finite = np.isfinite(as_float)
    if not finite.all():
        raise DataError(
            f"{name} holds {int((~finite).sum())} non-finite value(s) (NaN or inf); rule: scores "
            f"must be finite; fix: check the model for diverged weights or non-finite inputs"
        )
    if unit_interval and ((as_float < 0.0) | (as_float > 1.0)).any():
        raise DataError(
            f"{name} holds values outside [0, 1] (min {as_float.min()!r}, max "
            f"{as_float.max()!r}); rule: this metric needs probabilities; fix: apply the "
            f"sigmoid to raw scores"
        )
    return as_float


def validate_binary(
    y: Any, p: Any, *, unit_interval: bool = False
) -> tuple[_IntArray, _FloatArray]:
    """Checks and converts labels and probabilities.

    Args:
        y: True labels, values in {0, 1}.
        p: Predicted probabilities of label 1 (scores for the ranking metrics).
        unit_interval: Whether ``p`` must lie in ``[0, 1]``.

    Returns:
        ``(y, p)`` as int64 and float64 arrays.

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On a length mismatch, labels outside {0, 1} or non-finite probabilities.
    """
    y_arr = _as_1d(y, name="y")
    p_arr = _as_1d(p, name="p")
    if y_arr.shape[0] != p_arr.shape[0]:
        raise DataError(
            f"y has {y_arr.shape[0]} values but p has {p_arr.shape[0]}; rule: labels and "
            f"probabilities must have the same length; fix: score exactly the rows you evaluate"
        )
    if y_arr.shape[0] == 0:
        raise EmptyDataError(
            "y and p are empty; rule: metrics need at least one row; fix: evaluate on a "
            "non-empty split"
        )
    y_int = as_labels(y_arr, name="y")
    return y_int, as_scores(p_arr, name="p", n=len(y_int), unit_interval=unit_interval)


def as_probability_matrix(p: Any, *, name: str, n: int | None = None) -> _FloatArray:
    """Class probabilities ``(n, k)``, ``k >= 2``, finite, in ``[0, 1]``, rows summing to 1."""
    try:
        arr = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{name} could not be read as a float matrix ({exc}); rule: multiclass metrics need "
            f"an (n, k) array of class probabilities; fix: pass the model's predict() output"
        ) from exc
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DataError(
            f"{name} has shape {arr.shape}; rule: multiclass metrics need an (n, k) matrix of "
            f"class probabilities with k >= 2 columns in the model's classes order; fix: pass "
            f"predict() of a multiclass model (for two classes use the binary task)"
        )
    if n is not None and arr.shape[0] != n:
        raise DataError(
            f"{name} has {arr.shape[0]} rows but y has {n}; rule: labels and probabilities must "
            f"have the same length; fix: score exactly the rows you evaluate"
        )
    _require_rows(arr, name=name)
    finite = np.isfinite(arr)
    if not finite.all():
        raise DataError(
            f"{name} holds {int((~finite).sum())} non-finite value(s) (NaN or inf); rule: "
            f"probabilities must be finite; fix: check the model for diverged weights"
        )
    if ((arr < 0.0) | (arr > 1.0)).any():
        raise DataError(
            f"{name} holds values outside [0, 1] (min {arr.min()!r}, max {arr.max()!r}); rule: "
            f"multiclass metrics need probabilities; fix: apply the softmax to raw scores"
        )
    off = np.abs(arr.sum(axis=1) - 1.0)
    if (off > ROW_SUM_TOLERANCE).any():
        row = int(np.argmax(off))
        raise DataError(
            f"{name} row {row} sums to {arr[row].sum()!r}; rule: every row of class "
            f"probabilities must sum to 1 (within {ROW_SUM_TOLERANCE}); fix: apply the softmax "
            f"to raw scores, or normalise each row"
        )
    return arr


def as_class_indices(y: Any, *, k: int, name: str = "y") -> _IntArray:
    """Multiclass labels as int64 class indices ``0..k-1``."""
    arr = _as_1d(y, name=name)
    _require_rows(arr, name=name)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.int64)

    def invalid(as_float: _FloatArray) -> npt.NDArray[np.bool_]:
        bad = ~(np.isfinite(as_float) & (as_float == np.round(as_float)))
        return bad | (as_float < 0) | (as_float >= k)

    return _integer_values(
        arr,
        name=name,
        not_numeric=f"rule: multiclass labels are class indices 0..{k - 1}; fix: map each label "
        f"to its position in the model's classes (lockgate.evaluation.report.encode_labels)",
        invalid=invalid,
        invalid_values=f"that are not class indices 0..{k - 1}",
        invalid_rule="rule: multiclass labels are positions in the model's classes; fix: map "
        "each label to its class index (lockgate.evaluation.report.encode_labels)",
    )


def validate_multiclass(y: Any, p: Any) -> tuple[_IntArray, _FloatArray]:
    """Class indices ``(n,)`` and probabilities ``(n, k)``, checked; see the module docstring."""
    probs = as_probability_matrix(p, name="p")
    y_idx = as_class_indices(y, k=int(probs.shape[1]))
    if y_idx.shape[0] != probs.shape[0]:
        raise DataError(
            f"y has {y_idx.shape[0]} values but p has {probs.shape[0]} rows; rule: labels and "
            f"probabilities must have the same length; fix: score exactly the rows you evaluate"
        )
    return y_idx, probs


def as_targets(y: Any) -> _FloatArray:
    """Regression targets as a non-empty, finite float64 array."""
    y_arr = _as_1d(y, name="y")
    _require_rows(y_arr, name="y")
    return as_scores(y_arr, name="y", n=int(y_arr.shape[0]), unit_interval=False)


def validate_regression(y: Any, pred: Any) -> tuple[_FloatArray, _FloatArray]:
    """Targets and predictions as float64 arrays of equal, non-zero length, all finite."""
    y_float = as_targets(y)
    pred_float = as_scores(pred, name="pred", n=int(y_float.shape[0]), unit_interval=False)
    return y_float, pred_float
