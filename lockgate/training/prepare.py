"""The training rows checked and turned into ``(preprocessing, x, y)`` before a fit.

:func:`prepare_fit` is what the built-in trainers run first; :func:`prepare_training` is the
same for a custom trainer (see "Trainer protocol"): the same checks, the same preprocessing,
so serving decodes the wire for every model alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import pandas as pd

from lockgate.errors import EmptyDataError, SchemaError, SpecError
from lockgate.tasks.catalog import Task
from lockgate.training.arrays import Float32Matrix, Float64Array
from lockgate.training.labels import check_task, encode_labels
from lockgate.training.model_files import KIND_PATTERN
from lockgate.training.preprocessing import Preprocessing, single_column

__all__ = ["PreparedData", "prepare_fit", "prepare_training"]


def prepare_fit(
    frame: pd.DataFrame,
    *,
    features: Sequence[str],
    label: str,
    model_kind: str,
    task: Task = "binary",
    one_hot: bool | None = None,
    standardize: bool | None = None,
) -> tuple[Preprocessing, Float32Matrix, Float64Array]:
    """Validates the inputs, fits the preprocessing and builds ``(x, y)``.

    ``y`` is float64: 0/1 (binary), the index of each row's class in the sorted class list
    (multiclass) or the label value (regression).
    """
    check_task(task)
    feature_list = _check_feature_list(features, label=label)
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"frame is a {type(frame).__name__}; rule: trainers fit pandas DataFrames; fix: "
            f"wrap the rows in pd.DataFrame"
        )
    missing = [name for name in [*feature_list, label] if name not in frame.columns]
    if missing:
        raise SchemaError(
            f"column(s) {missing} are missing from the training frame (it has "
            f"{list(frame.columns)[:20]}); rule: every feature and the label must be present; "
            f"fix: select the right feature service or correct the feature list"
        )
    for name in [*feature_list, label]:
        single_column(frame, name)
    if len(frame) == 0:
        raise EmptyDataError(
            f"the training frame has 0 rows (columns {list(frame.columns)[:20]}); rule: a "
            f"model needs training rows; fix: check the snapshot's time range and filters"
        )
    y, classes = encode_labels(frame[label], task=task, label=label)
    preprocessor = Preprocessing.fit(
        frame,
        features=feature_list,
        model_kind=model_kind,
        task=task,
        classes=classes,
        one_hot=one_hot,
        standardize=standardize,
    )
    x = preprocessor.transform(frame)
    return preprocessor, x, y


class PreparedData(NamedTuple):
    """What :func:`prepare_training` gives a custom trainer.

    Attributes:
        preprocessing: The fitted :class:`Preprocessing` (pass it to the model).
        x: float32 ``(n, d)`` model input, C-contiguous.
        y: float64 ``(n,)``: 0/1 (binary), the index of each row's class in
            ``preprocessing.classes`` (multiclass), or the label value (regression).
    """

    preprocessing: Preprocessing
    x: Float32Matrix
    y: Float64Array


def prepare_training(
    frame: pd.DataFrame,
    *,
    features: Sequence[str],
    label: str,
    task: Task = "binary",
    kind: str,
    one_hot: bool = False,
    standardize: bool = False,
) -> PreparedData:
    """Checks the training rows, fits the preprocessing and builds ``(x, y)`` for a custom trainer.

    The same checks and preprocessing as the built-in trainers (labels per task as
    :func:`check_labels`; numeric columns median-imputed; categorical columns as codes or
    one-hot blocks with an unknown bucket), so serving decodes the wire for the model.

    Args:
        frame: Training rows.
        features: Feature columns, in model order.
        label: Label column.
        task: One of :data:`TASKS`.
        kind: The trainer's (and model's) kind, recorded in ``preprocessing.json``.
        one_hot: One-hot blocks for categorical columns (else one code column each).
        standardize: Standardise numeric columns with the training mean and scale.

    Returns:
        The fitted preprocessing, ``x`` and ``y``.

    Raises:
        SpecError: On an invalid feature list, task or kind.
        SchemaError: When columns are missing or have an unusable dtype.
        EmptyDataError: When ``frame`` has no rows.
        DataError: When a numeric feature holds infinite values.
        TrainingError: On labels that do not fit the task.
    """
    if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
        raise SpecError(
            f"kind={kind!r} is not a model kind; rule: lowercase letters, digits and '_'; fix: "
            f"pass the trainer's kind (kind=self.kind)"
        )
    preprocessing, x, y = prepare_fit(
        frame,
        features=features,
        label=label,
        model_kind=kind,
        task=task,
        one_hot=bool(one_hot),
        standardize=bool(standardize),
    )
    return PreparedData(preprocessing, x, y)


def _check_feature_list(features: Sequence[str], *, label: str) -> list[str]:
    if isinstance(features, str) or not isinstance(features, Sequence):
        raise SpecError(
            f"features={features!r} is not a sequence of column names; rule: pass a list of "
            f"strings; fix: e.g. features=[{features!r}]"
        )
    feature_list = list(features)
    if not feature_list:
        raise SpecError(
            "features is empty; rule: a model needs at least one feature; fix: list them"
        )
    bad = [f for f in feature_list if not isinstance(f, str)]
    if bad:
        raise SpecError(
            f"features {bad} are not strings; rule: features are column names; fix: pass names"
        )
    duplicates = sorted({f for f in feature_list if feature_list.count(f) > 1})
    if duplicates:
        raise SpecError(
            f"features {duplicates} are listed more than once; rule: each feature once; fix: "
            f"remove the duplicates"
        )
    if not isinstance(label, str):
        raise SpecError(f"label={label!r} is not a column name; rule: a string; fix: pass one")
    if label in feature_list:
        raise SpecError(
            f"the label {label!r} is also a feature; rule: the label must not be an input; fix: "
            f"remove it from features"
        )
    return feature_list
