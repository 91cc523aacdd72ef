"""Feature preprocessing fitted on the training frame and stored as ``preprocessing.json``.

Order-independent statistics (median, ``math.fsum`` means) and canonical JSON, so that fitting
twice on the same rows writes the same bytes. Serving decodes the wire with it and every
model turns raw columns into its float32 input matrix with :meth:`Preprocessing.transform`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lockgate.errors import ArtifactIntegrityError, DataError, SchemaError
from lockgate.tasks.catalog import Task
from lockgate.training.arrays import Float32Matrix, Float64Array
from lockgate.training.labels import ClassLabel, task_fields
from lockgate.training.model_files import (
    KIND_PATTERN,
    PREPROCESSING_FILE,
    json_bytes,
    parse_json,
)

__all__ = ["Preprocessing", "single_column"]

_PREPROCESSING_FORMAT = "lockgate.preprocessing/1"


class Preprocessing:
    """Feature preprocessing fitted on a training frame and stored as ``preprocessing.json``.

    Every model uses one (custom models get it from :func:`prepare_training`): serving decodes
    the wire format with its vocabularies, and :meth:`TrainedModel.preprocess` turns raw
    columns into the model's float32 matrix with :meth:`transform`.

    Numeric (and bool) columns: NaN -> training median (0.0 when the column is all NaN); for
    torch also ``(x - mean) / scale``. Categorical (object, string, category) columns: values
    as strings, sorted vocabulary, unseen or missing -> ``unknown_code = len(vocabulary)``;
    LightGBM gets the code as one categorical column, torch a one-hot block of
    ``len(vocabulary) + 1`` columns (the last one for unknown). Custom kinds choose the
    encoding (``one_hot``) and the standardisation (``standardize``) at fit time.

    Attributes:
        model_kind: The kind of the model it was fitted for.
        features: The feature columns, in model order.
        input_dim: Columns of the matrix :meth:`transform` builds.
        task: The model's task; ``classes`` and ``output_width`` follow it.

    It also records the model's task: ``task`` (absent for binary) and, for multiclass, the
    sorted ``classes``.
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._spec = dict(spec)
        self.task: Task
        self.classes: tuple[ClassLabel, ...]
        self.task, self.classes = task_fields(spec)
        self.output_width: int = len(self.classes) if self.task == "multiclass" else 1
        self.model_kind: str = spec["model_kind"]
        self.one_hot: bool = spec["categorical_encoding"] == "one_hot"
        self.standardize: bool = bool(spec["standardize"])
        self.columns: list[dict[str, Any]] = list(spec["features"])
        self.features: tuple[str, ...] = tuple(c["name"] for c in self.columns)
        self._vocab_index = {
            c["name"]: pd.Index(c["vocabulary"], dtype=object)
            for c in self.columns
            if c["type"] == "categorical"
        }
        widths = [
            len(c["vocabulary"]) + 1 if c["type"] == "categorical" and self.one_hot else 1
            for c in self.columns
        ]
        self.input_dim: int = int(sum(widths))
        self.categorical_indices: list[int] = (
            []
            if self.one_hot
            else [i for i, c in enumerate(self.columns) if c["type"] == "categorical"]
        )

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        model_kind: str,
        task: Task = "binary",
        classes: Sequence[ClassLabel] = (),
        one_hot: bool | None = None,
        standardize: bool | None = None,
    ) -> Preprocessing:
        """Learns imputation values, scales and vocabularies from ``frame``.

        ``one_hot`` and ``standardize`` default to the built-in kinds' choices (both true for
        ``"torch"``, both false otherwise).
        """
        if one_hot is None:
            one_hot = model_kind == "torch"
        if standardize is None:
            standardize = model_kind == "torch"
        columns: list[dict[str, Any]] = []
        output_columns: list[str] = []
        for name in features:
            series = frame[name]
            if _is_categorical(series):
                strings = _as_strings(series)
                present = strings[~pd.isna(strings)]
                vocabulary = sorted({str(v) for v in present})
                columns.append(
                    {
                        "name": name,
                        "type": "categorical",
                        "dtype": str(series.dtype),
                        "vocabulary": vocabulary,
                        "unknown_code": len(vocabulary),
                        "missing_count": int(len(strings) - len(present)),
                    }
                )
                if one_hot:
                    output_columns += [f"{name}={v}" for v in vocabulary] + [f"{name}=<unknown>"]
                else:
                    output_columns.append(name)
                continue
            values = _numeric_values(series, name=name, expected="numeric")
            missing = np.isnan(values)
            present_values = values[~missing]
            all_missing = present_values.size == 0
            fill = 0.0 if all_missing else float(np.median(present_values))
            column: dict[str, Any] = {
                "name": name,
                "type": "numeric",
                "dtype": str(series.dtype),
                "fill_value": fill,
                "all_missing": bool(all_missing),
                "missing_count": int(missing.sum()),
            }
            if standardize:
                filled = np.where(missing, fill, values)
                mean = math.fsum(filled.tolist()) / filled.size
                variance = math.fsum(np.square(filled - mean).tolist()) / filled.size
                scale = math.sqrt(variance)
                if not (math.isfinite(scale) and scale > 0.0 and math.isfinite(mean)):
                    scale = 1.0
                    mean = mean if math.isfinite(mean) else 0.0
                column["mean"] = float(mean)
                column["scale"] = float(scale)
            columns.append(column)
            output_columns.append(name)
        spec = {
            "format": _PREPROCESSING_FORMAT,
            "model_kind": model_kind,
            "standardize": standardize,
            "categorical_encoding": "one_hot" if one_hot else "codes",
            "features": columns,
            "output_columns": output_columns,
            "input_dim": len(output_columns),
            "dtype": "float32",
        }
        if task != "binary":  # binary files keep the bytes they had before tasks existed
            spec["task"] = task
        if task == "multiclass":
            spec["classes"] = list(classes)
        return cls(spec)

    def transform(self, frame: pd.DataFrame) -> Float32Matrix:
        """Builds the float32 model input for ``frame``."""
        if not isinstance(frame, pd.DataFrame):
            raise SchemaError(
                f"frame is a {type(frame).__name__}; rule: models score pandas DataFrames; "
                f"fix: wrap the rows in pd.DataFrame"
            )
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise SchemaError(
                f"feature column(s) {missing} are missing from the frame (it has "
                f"{len(frame.columns)} columns); rule: every feature the model was trained on "
                f"must be present; fix: add the columns or select the right feature view"
            )
        n = len(frame)
        out = np.zeros((n, self.input_dim), dtype=np.float32)
        offset = 0
        rows = np.arange(n)
        for column in self.columns:
            name = column["name"]
            series = single_column(frame, name)
            if column["type"] == "categorical":
                codes = self._codes(series, name=name, unknown=column["unknown_code"])
                if self.one_hot:
                    out[rows, offset + codes] = 1.0
                    offset += column["unknown_code"] + 1
                else:
                    out[:, offset] = codes
                    offset += 1
                continue
            values = _numeric_values(series, name=name, expected="numeric")
            values = np.where(np.isnan(values), column["fill_value"], values)
            if self.standardize:
                values = (values - column["mean"]) / column["scale"]
            out[:, offset] = values
            offset += 1
        return out

    def _codes(self, series: pd.Series, *, name: str, unknown: int) -> npt.NDArray[np.int64]:
        strings = _as_strings(series)
        codes = np.asarray(self._vocab_index[name].get_indexer(strings), dtype=np.int64)
        codes[codes < 0] = unknown
        return codes

    def to_bytes(self) -> bytes:
        """The preprocessing as canonical JSON bytes."""
        return json_bytes(self._spec)

    @classmethod
    def from_bytes(cls, data: bytes) -> Preprocessing:
        """Parses and checks ``preprocessing.json``."""
        spec = parse_json(data, name=PREPROCESSING_FILE)
        try:
            if spec["format"] != _PREPROCESSING_FORMAT:
                raise ValueError(f"format {spec['format']!r} is not {_PREPROCESSING_FORMAT!r}")
            kind = spec["model_kind"]
            if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
                raise ValueError(f"model_kind {kind!r} is not a model kind")
            if spec["categorical_encoding"] not in ("one_hot", "codes"):
                raise ValueError(
                    f"categorical_encoding {spec['categorical_encoding']!r} is unknown"
                )
            for column in spec["features"]:
                if not isinstance(column["name"], str):
                    raise ValueError(f"feature name {column['name']!r} is not a string")
                if column["type"] == "categorical":
                    vocabulary = column["vocabulary"]
                    if not all(isinstance(v, str) for v in vocabulary):
                        raise ValueError(f"vocabulary of {column['name']!r} holds non-strings")
                    if column["unknown_code"] != len(vocabulary):
                        raise ValueError(f"unknown_code of {column['name']!r} is inconsistent")
                elif column["type"] == "numeric":
                    keys = (
                        ["fill_value", "mean", "scale"] if spec["standardize"] else ["fill_value"]
                    )
                    for key in keys:
                        if not isinstance(column[key], int | float) or not math.isfinite(
                            column[key]
                        ):
                            raise ValueError(f"{key} of {column['name']!r} is not finite")
                else:
                    raise ValueError(f"feature type {column['type']!r} is unknown")
            preprocessor = cls(spec)
            if preprocessor.input_dim != spec["input_dim"]:
                raise ValueError(
                    f"input_dim {spec['input_dim']} does not match the features "
                    f"({preprocessor.input_dim})"
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactIntegrityError(
                f"{PREPROCESSING_FILE} is malformed ({type(exc).__name__}: {exc}); rule: it "
                f"must be the file lockgate wrote at fit time; fix: restore it from the registry"
            ) from exc
        return preprocessor


def _is_categorical(series: pd.Series) -> bool:
    """Whether a training column is categorical (object, string, category) or numeric."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        return False
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        return True
    raise SchemaError(
        f"feature column {series.name!r} has dtype {dtype}; rule: features are numeric, bool, "
        f"object, string or category columns; fix: convert it (e.g. datetimes to epoch seconds "
        f"or to calendar features) before training"
    )


def _as_strings(series: pd.Series) -> npt.NDArray[np.object_]:
    """Values as str with None for missing, as an object array."""
    values = np.asarray(series.astype("string").astype(object).to_numpy(), dtype=np.object_)
    values[pd.isna(values)] = None
    return values


def _numeric_values(series: pd.Series, *, name: str, expected: str) -> Float64Array:
    """A numeric or bool column as float64 with NaN for missing; rejects infinities."""
    dtype = series.dtype
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            raise TypeError("categorical")
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            converted = pd.to_numeric(series, errors="raise")
            values = np.asarray(converted.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            raise TypeError(str(dtype))
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"feature column {name!r} has dtype {dtype} that cannot be read as {expected} "
            f"({exc}); rule: the column was {expected} when the model was trained; fix: cast it "
            f"to a numeric dtype"
        ) from exc
    infinite = np.isinf(values)
    if infinite.any():
        raise DataError(
            f"feature column {name!r} holds {int(infinite.sum())} infinite value(s); rule: "
            f"numeric features are finite or NaN (NaN is imputed with the training median); fix: "
            f"replace infinities with NaN or clip them upstream"
        )
    return np.ascontiguousarray(values, dtype=np.float64)


def single_column(frame: pd.DataFrame, name: str) -> pd.Series:
    column = frame[name]
    if isinstance(column, pd.DataFrame):
        raise SchemaError(
            f"column {name!r} occurs {column.shape[1]} times in the frame; rule: column names "
            f"are unique; fix: drop or rename the duplicates"
        )
    return column
