"""What a model predicts on the gold rows, in the task's shape, and the labels as metrics want them.

:func:`predict` scores a frame with ``model.predict`` (binary models without it: ``predict_proba``)
and checks the shape: ``(n,)`` P(label 1) for binary, ``(n, k)`` probabilities in the compared
class order for multiclass (a model with the same classes in another order has its columns
reordered), ``(n,)`` values for regression. :func:`encode_labels` maps multiclass labels to class
indices and :func:`metric_labels` reads a frame's label column as the metrics want it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import DataError, SchemaError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["encode_labels", "json_label", "metric_labels", "model_classes", "predict"]


def json_label(value: Any) -> Any:
    """A class label as a JSON scalar (numpy scalars unwrapped, other objects as text)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | int | float | bool) else str(value)


def encode_labels(labels: Any, classes: Sequence[Any]) -> np.ndarray:
    """Each label's class index: its position in ``classes`` (a multiclass model's order).

    Args:
        labels: The label column (any iterable of hashable labels).
        classes: The model's class labels, in the column order of its predictions.

    Returns:
        int64 class indices, one per label.

    Raises:
        DataError: Naming the labels that are not among ``classes``.

    Example:
        >>> encode_labels(["cat", "dog", "cat"], ("cat", "dog")).tolist()
        [0, 1, 0]
    """
    index = {c: i for i, c in enumerate(classes)}
    for c in classes:  # JSON-decoded classes (report["classes"]) must match numpy labels too
        index.setdefault(json_label(c), index[c])
    values = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    codes = [index.get(v, -1) for v in values]
    unknown = sorted({repr(v) for v, c in zip(values, codes, strict=True) if c < 0})
    if unknown:
        raise DataError(
            f"the label column holds {sum(c < 0 for c in codes)} value(s) that are not among the "
            f"model's classes {list(classes)} (e.g. {', '.join(unknown[:5])}); rule: a multiclass "
            f"model scores only the classes it was trained on; fix: retrain on a snapshot that "
            f"has these classes, or drop or relabel those rows"
        )
    return np.asarray(codes, dtype=np.int64)


def model_classes(model: Any, *, name: str) -> tuple[Any, ...]:
    """A multiclass model's class labels (``model.classes``), at least two, in column order."""
    classes = tuple(getattr(model, "classes", None) or ())
    if len(classes) < 2:
        raise DataError(
            f"the {name} model has classes {classes!r}; rule: a multiclass model lists its k >= 2 "
            f"class labels in the column order of predict(); fix: evaluate a model trained with "
            f"task='multiclass'"
        )
    return classes


def predict(
    model: Any,
    frame: pd.DataFrame,
    *,
    task: str = "binary",
    classes: Sequence[Any] | None = None,
    name: str = "model",
    check_finite: bool = True,
) -> np.ndarray:
    """A model's predictions on ``frame`` in the task's shape, checked.

    Args:
        model: Has ``predict(frame)`` (binary models without it: ``predict_proba``) and, for
            multiclass, ``classes``.
        frame: The rows to score.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        classes: Multiclass: the column order wanted (default: the model's own). A model whose
            classes are the same labels in another order has its columns reordered.
        name: The model's role in messages (``challenger``, ``champion``).
        check_finite: Whether non-finite predictions raise (edge cases report them instead).

    Returns:
        float64 ``(n,)`` (binary, regression) or ``(n, k)`` (multiclass).

    Raises:
        DataError: On a missing ``predict``, a wrong shape, other classes, or (with
            ``check_finite``) non-finite predictions.
    """
    fn = getattr(model, "predict", None)
    if fn is None and task == "binary":
        fn = getattr(model, "predict_proba", None)
    if fn is None:
        raise DataError(
            f"the {name} model ({type(model).__name__}) has no predict(frame); rule: evaluated "
            f"models predict by task (binary P(label 1), multiclass probabilities, regression "
            f"values); fix: load it with lockgate.lineage.steps.load_trained_model"
        )
    out = np.asarray(fn(frame), dtype=np.float64)
    n = len(frame)
    if task == "multiclass":
        own = model_classes(model, name=name)
        wanted = tuple(classes) if classes is not None else own
        if out.ndim != 2 or out.shape != (n, len(own)):
            raise DataError(
                f"the {name} model predicted shape {out.shape} for {n} rows; rule: a multiclass "
                f"model predicts ({n}, {len(own)}) probabilities, one column per class {list(own)}"
                f"; fix: check that the model was trained with task='multiclass'"
            )
        if own != wanted:
            if sorted(map(repr, own)) != sorted(map(repr, wanted)):
                raise DataError(
                    f"the {name} model predicts classes {list(own)} but the report compares "
                    f"classes {list(wanted)}; rule: champion and challenger must share one set of "
                    f"classes; fix: promote the challenger by hand (lockgate promote) after "
                    f"reviewing it, since the class sets differ"
                )
            out = out[:, [own.index(c) for c in wanted]]
    else:
        if out.ndim == 2 and out.shape[1] == 1:
            out = out.reshape(-1)
        if out.shape != (n,):
            raise DataError(
                f"the {name} model predicted shape {out.shape} for {n} rows; rule: a {task} model "
                f"predicts one value per row, shape ({n},); fix: check the model's task"
            )
    if check_finite and not np.all(np.isfinite(out)):
        raise DataError(
            f"the {name} produced non-finite scores on the gold set; the model is broken: "
            "retrain it"
        )
    return out


def metric_labels(
    frame: pd.DataFrame, label: str, *, task: str, classes: Sequence[Any] | None
) -> Any:
    """The label column as metrics want it: 0/1, class indices or float targets."""
    if label not in frame.columns:
        raise SchemaError(
            f"label column {label!r} is not in the gold set (columns: {sorted(frame.columns)}); "
            "fix the pipeline's label or the feature service"
        )
    values = frame[label]
    if task == "multiclass":
        assert classes is not None
        return encode_labels(values.to_numpy(), classes)
    if task == "regression":
        return values.to_numpy().astype(np.float64)
    return values.to_numpy().astype(np.int64)
