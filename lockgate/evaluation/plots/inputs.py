"""The inputs of the plots, checked: labels or targets and every named model's predictions.

Each plot takes a mapping of model name (the legend) to predictions; these checks refuse an
empty mapping or an empty name and read the values through :mod:`lockgate.tasks.inputs`, so a
plot raises the same errors as the metrics it draws.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, SpecError
from lockgate.tasks.inputs import as_labels, as_scores, as_targets, validate_multiclass

__all__ = ["checked_probabilities", "checked_scores", "checked_targets", "checked_values"]

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


def _require_models(models: Any, what: str, holding: str, example: str) -> None:
    """Raises DataError unless ``models`` is a non-empty mapping of model name to values."""
    if not isinstance(models, Mapping) or not models:
        raise DataError(
            f"{what} is {models!r}; rule: plots need a non-empty mapping of model name to "
            f"{holding}; fix: pass e.g. {example}"
        )


def _require_name(name: Any, what: str, why: str) -> None:
    """Raises SpecError unless the model name is a non-empty string (``why`` says what it labels)."""
    if not isinstance(name, str) or not name:
        raise SpecError(
            f"model name {name!r} is invalid; rule: every model needs a non-empty string "
            f"name{why}; fix: key the {what} by e.g. 'champion'"
        )


def checked_scores(
    y: Any, scores: Mapping[str, Any], *, unit_interval: bool
) -> tuple[_IntArray, dict[str, _FloatArray]]:
    """Validates the labels and every model's scores."""
    _require_models(
        scores,
        "scores",
        "predicted probabilities",
        "{'champion': p_champion, 'challenger': p_challenger}",
    )
    y_int = as_labels(y)
    return y_int, checked_values(
        scores, "scores", n=int(y_int.shape[0]), unit_interval=unit_interval
    )


def checked_values(
    values: Mapping[str, Any], what: str, *, n: int, unit_interval: bool
) -> dict[str, _FloatArray]:
    """Each model's values checked: a non-empty string name and ``n`` (finite) numbers."""
    out: dict[str, _FloatArray] = {}
    for name, v in values.items():
        _require_name(name, what, " (it labels the curve)")
        out[name] = as_scores(v, name=f"{what}[{name!r}]", n=n, unit_interval=unit_interval)
    return out


def checked_targets(
    y: Any, predictions: Mapping[str, Any]
) -> tuple[_FloatArray, dict[str, _FloatArray]]:
    """Validates regression targets and every model's predictions."""
    _require_models(predictions, "predictions", "predictions", "{'challenger': pred}")
    y_float = as_targets(y)
    return y_float, checked_values(
        predictions, "predictions", n=int(y_float.shape[0]), unit_interval=False
    )


def checked_probabilities(
    y: Any, probabilities: Mapping[str, Any], classes: Sequence[Any]
) -> tuple[_IntArray, dict[str, _FloatArray]]:
    """Validates class indices and every model's ``(n, k)`` probabilities in ``classes`` order."""
    _require_models(
        probabilities, "probabilities", "(n, k) class probabilities", "{'challenger': p}"
    )
    out: dict[str, _FloatArray] = {}
    y_idx: _IntArray | None = None
    for name, p in probabilities.items():
        _require_name(name, "probabilities", "")
        y_idx, out[name] = validate_multiclass(y, p)
        if out[name].shape[1] != len(classes):
            raise DataError(
                f"probabilities[{name!r}] has {out[name].shape[1]} columns but classes has "
                f"{len(classes)} labels; rule: one column per class, in classes order; fix: pass "
                f"the model's classes"
            )
    assert y_idx is not None
    return y_idx, out
