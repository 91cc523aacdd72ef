"""The wire format: one version-independent request matrix per pipeline.

Every served model version fits its own preprocessing (categorical vocabulary, median
imputation, standardisation; ``preprocessing.json``), and versions may use different feature
subsets. In a canary the gateway routes each request to the champion or the challenger, so a
client cannot know whose preprocessing to apply. Clients therefore send **raw** feature values
in one fixed layout per pipeline, and each served version decodes and preprocesses them itself
(inside Triton, with :meth:`lockgate.training.TrainedModel.predict_proba`, the single source of
truth for preprocessing).

The wire schema
    The ordered list of the pipeline's feature-service features with a kind each::

        {"format": "lockgate.serving.wire/1",
         "columns": [{"name": "amount", "kind": "numeric"},
                     {"name": "device_type", "kind": "categorical"}, ...]}

    It comes from the manifest of the stored snapshot a version was trained on
    (:meth:`WireSchema.from_manifest`: ``"features"`` gives the order, ``"schema"`` the pandas
    dtype of each column; object, string and category dtypes are categorical, bool and numeric
    dtypes numeric). All versions of a pipeline trained on the same feature service share it; a
    version trained with ``exclude_features`` ignores the columns it does not use.
    :func:`wire_schema_for_version` reads it from the registry. Every served model folder
    carries it as ``wire.json``.

The request tensor ``INPUT__0``: FP32 ``[n, F]``, ``F = schema.width``
    * numeric column: the raw value as float32; NaN means missing (the model imputes it).
    * categorical column: ``code24(str(value))`` as float32, where
      ``code24(s) = int.from_bytes(sha256(s.encode("utf-8")).digest()[:3], "big")``; every code
      is an integer below ``2**24``, so float32 holds it exactly. NaN means missing. The string
      of a value is what pandas' ``astype("string")`` writes (as the model's preprocessing
      does), i.e. ``str(value)`` for ``str`` values.

    :func:`encode` builds it from a DataFrame (clients, the gateway's tests, the demo's traffic
    generator, infra validation).

Decoding (the model side, :class:`WireDecoder`, :func:`decode`)
    Numeric columns are taken as they are (float64 of the float32). A categorical code is
    mapped back to its string through the version's **own** vocabulary (``preprocessing.json``);
    a code not in it, and NaN, become missing, which the model's preprocessing already maps to
    its unknown code. The decoded DataFrame goes to ``TrainedModel.predict_proba``. A vocabulary
    holding two strings with the same code24 cannot be decoded and is refused when the decoder
    is built (i.e. when the model loads). Non-finite numeric values other than NaN, and
    categorical values that are not integers in ``[0, 2**24)``, are refused per request.

Exactness and limits
    * LightGBM: ``predict_proba(decode(encode(frame)))`` equals ``predict_proba(frame)``
      bit for bit: its preprocessing casts numeric values to float32 anyway.
    * Torch standardises ``(x - mean) / scale`` in float64 before the float32 cast; the wire
      carries ``float32(x)``, so results are bit-identical only for float32-representable raw
      values (e.g. integers below ``2**24``, dyadic fractions) and otherwise differ by float32
      rounding (~1e-7 relative in the standardised input).
    * An unseen category whose code24 equals that of a vocabulary string decodes as that
      string: with a vocabulary of ``V`` strings the chance per unseen value is ``V / 2**24``
      (6e-5 for ``V = 1000``). Numeric values beyond float32's range are refused by
      :func:`encode`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from lockgate.errors import DataError, SchemaError

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry

__all__ = [
    "CODE_LIMIT",
    "KINDS",
    "WIRE_FILE",
    "WIRE_FORMAT",
    "WireColumn",
    "WireDecoder",
    "WireSchema",
    "code24",
    "decode",
    "encode",
    "wire_schema_for_version",
]

WIRE_FORMAT = "lockgate.serving.wire/1"
"""Format tag of a serialised :class:`WireSchema`."""
WIRE_FILE = "wire.json"
"""File name of the wire schema in a served model folder."""
CODE_LIMIT = 1 << 24
"""Every :func:`code24` is below this (float32 represents all integers up to it exactly)."""
KINDS = ("categorical", "numeric")
"""Column kinds of the wire schema."""

WireKind = Literal["categorical", "numeric"]
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def code24(value: str) -> int:
    """The 24-bit wire code of a categorical string.

    Args:
        value: The category as a string.

    Returns:
        ``int.from_bytes(sha256(value.encode("utf-8")).digest()[:3], "big")``, in
        ``[0, 2**24)``.

    Raises:
        SchemaError: When ``value`` is not a ``str``.

    Example:
        >>> code24("web")
        4939351
        >>> 0 <= code24("") < 2**24
        True
    """
    if not isinstance(value, str):
        raise SchemaError(
            f"code24 got {value!r} of type {type(value).__name__}; rule: categorical wire codes "
            "are computed from strings; fix: pass str(value)"
        )
    return int.from_bytes(hashlib.sha256(value.encode("utf-8")).digest()[:3], "big")


@dataclass(frozen=True)
class WireColumn:
    """One column of the wire schema.

    Attributes:
        name: The feature name.
        kind: ``"numeric"`` or ``"categorical"``.
    """

    name: str
    kind: WireKind


@dataclass(frozen=True)
class WireSchema:
    """The ordered feature columns of a pipeline's wire format, each with its kind.

    Attributes:
        columns: The columns, in wire order (non-empty, unique names).

    Example:
        >>> schema = WireSchema.from_manifest(
        ...     {"features": ["amount", "channel"], "schema": {"amount": "float64",
        ...      "channel": "object", "y": "int64"}})
        >>> schema.names, schema.width
        (('amount', 'channel'), 2)
        >>> WireSchema.from_json(schema.to_json()) == schema
        True
    """

    columns: tuple[WireColumn, ...]

    def __post_init__(self) -> None:
        """Checks the columns."""
        columns = self.columns
        if not isinstance(columns, tuple) or not columns:
            raise SchemaError(
                f"wire schema columns {columns!r} are invalid; rule: a non-empty tuple of "
                "WireColumn; fix: build the schema with WireSchema.from_manifest"
            )
        seen: set[str] = set()
        for column in columns:
            if not isinstance(column, WireColumn):
                raise SchemaError(
                    f"wire schema column {column!r} is a {type(column).__name__}; rule: "
                    "WireColumn(name, kind); fix: build the schema with WireSchema.from_manifest"
                )
            if not isinstance(column.name, str) or not column.name:
                raise SchemaError(
                    f"wire column name {column.name!r} is invalid; rule: a non-empty string; "
                    "fix: use the feature names of the feature service"
                )
            if column.kind not in KINDS:
                raise SchemaError(
                    f"wire column {column.name!r} has kind {column.kind!r}; rule: one of "
                    f"{list(KINDS)}; fix: correct the wire schema"
                )
            if column.name in seen:
                raise SchemaError(
                    f"wire column {column.name!r} occurs twice; rule: column names are unique; "
                    "fix: list each feature once"
                )
            seen.add(column.name)

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in wire order."""
        return tuple(c.name for c in self.columns)

    @property
    def width(self) -> int:
        """``F``: the number of columns of ``INPUT__0``."""
        return len(self.columns)

    def kind(self, name: str) -> WireKind:
        """The kind of column ``name``.

        Args:
            name: A column name.

        Returns:
            ``"numeric"`` or ``"categorical"``.

        Raises:
            SchemaError: When the schema has no such column.
        """
        for column in self.columns:
            if column.name == name:
                return column.kind
        raise SchemaError(
            f"the wire schema has no column {name!r} (it has {list(self.names)}); rule: a "
            "model uses only features of its pipeline's feature service; fix: serve it with the "
            "schema of the snapshot it was trained on"
        )

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> WireSchema:
        """Builds a schema from ``(name, kind)`` pairs.

        Args:
            pairs: Names and kinds, in wire order.

        Returns:
            The schema.

        Raises:
            SchemaError: For an invalid column.
        """
        return cls(tuple(WireColumn(str(name), cast(WireKind, kind)) for name, kind in pairs))

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> WireSchema:
        """The wire schema of a stored snapshot.

        Args:
            manifest: A snapshot manifest (``registry.snapshot_manifest(frame_sha)``) with
                ``"features"`` (ordered feature names of the feature service) and
                ``"schema"`` (column -> pandas dtype string).

        Returns:
            One column per feature, in the manifest's order.

        Raises:
            SchemaError: When the manifest lacks the keys, a feature has no dtype, or a dtype
                is neither numeric nor categorical.
        """
        try:
            features = list(manifest["features"])
            dtypes = dict(manifest["schema"])
        except (KeyError, TypeError) as exc:
            raise SchemaError(
                f"snapshot manifest has no readable 'features' and 'schema' ({exc!r}); rule: "
                "the wire schema comes from a snapshot manifest written by take_snapshot; fix: "
                "pass registry.snapshot_manifest(frame_sha)"
            ) from exc
        missing = [name for name in features if name not in dtypes]
        if missing:
            raise SchemaError(
                f"snapshot manifest lists features {missing} without a dtype in 'schema'; rule: "
                "every feature has a dtype; fix: materialize the snapshot again"
            )
        return cls.of((name, _kind_of_dtype(name, str(dtypes[name]))) for name in features)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, features: Sequence[str]) -> WireSchema:
        """The wire schema of ``features`` with the dtypes ``frame`` has (tests, examples).

        Args:
            frame: A frame holding the feature columns.
            features: The feature names, in wire order.

        Returns:
            The schema.

        Raises:
            SchemaError: For a missing column or an unusable dtype.
        """
        missing = [name for name in features if name not in frame.columns]
        if missing:
            raise SchemaError(
                f"frame lacks feature columns {missing}; rule: every wire feature is a column; "
                "fix: pass the frame the features come from"
            )
        return cls.from_manifest(
            {"features": list(features), "schema": {n: str(frame[n].dtype) for n in features}}
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form (``format`` and ``columns``)."""
        return {
            "format": WIRE_FORMAT,
            "columns": [{"name": c.name, "kind": c.kind} for c in self.columns],
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes (sorted keys, no whitespace, trailing newline): ``wire.json``."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return text.encode("utf-8") + b"\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WireSchema:
        """Inverse of :meth:`to_dict`.

        Args:
            data: ``{"format": "lockgate.serving.wire/1", "columns": [{"name", "kind"}, ...]}``.

        Returns:
            The schema.

        Raises:
            SchemaError: For another format or malformed columns.
        """
        try:
            if data["format"] != WIRE_FORMAT:
                raise ValueError(f"format {data['format']!r} is not {WIRE_FORMAT!r}")
            pairs = [(c["name"], c["kind"]) for c in data["columns"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(
                f"wire schema is malformed ({type(exc).__name__}: {exc}); rule: "
                f'{{"format": "{WIRE_FORMAT}", "columns": [{{"name", "kind"}}, ...]}}; fix: '
                "write it with WireSchema.to_json"
            ) from exc
        return cls.of(pairs)

    @classmethod
    def from_json(cls, data: str | bytes) -> WireSchema:
        """Inverse of :meth:`to_json`.

        Args:
            data: The JSON text.

        Returns:
            The schema.

        Raises:
            SchemaError: When the text is not a wire schema.
        """
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise SchemaError(
                f"wire schema is not JSON ({exc}); rule: {WIRE_FILE} as WireSchema.to_json "
                "writes it; fix: rewrite the model folder with lockgate"
            ) from exc
        if not isinstance(parsed, dict):
            raise SchemaError(f"wire schema JSON is a {type(parsed).__name__}, not an object")
        return cls.from_dict(parsed)


def _kind_of_dtype(name: str, dtype: str) -> WireKind:
    """Numeric or categorical, as the trainers' preprocessing classifies a column dtype."""
    if dtype in ("object", "category", "str") or dtype.startswith("string"):
        return "categorical"
    try:
        parsed = pd.api.types.pandas_dtype(dtype)
    except TypeError:
        parsed = None
    if parsed is not None and (
        pd.api.types.is_bool_dtype(parsed)
        or (pd.api.types.is_numeric_dtype(parsed) and not pd.api.types.is_complex_dtype(parsed))
    ):
        return "numeric"
    if parsed is not None and pd.api.types.is_string_dtype(parsed):
        return "categorical"
    raise SchemaError(
        f"feature {name!r} has dtype {dtype!r}; rule: wire features are numeric/bool "
        "(numeric) or object/string/category (categorical); fix: cast the column in the feature "
        "view"
    )


# --------------------------------------------------------------------------------------------
# encoding (client side)
# --------------------------------------------------------------------------------------------


def encode(frame: pd.DataFrame, schema: WireSchema) -> npt.NDArray[np.float32]:
    """Encodes raw feature rows as the wire matrix ``INPUT__0``.

    Args:
        frame: Rows with at least the schema's columns (others are ignored). Numeric columns:
            numeric, bool, or object/string holding numbers; NaN/None is missing.
        schema: The pipeline's wire schema.

    Returns:
        A C-contiguous float32 matrix ``(len(frame), schema.width)``.

    Raises:
        SchemaError: When ``frame`` is not a DataFrame, lacks columns, has duplicate columns or
            a numeric column that is not numeric.
        DataError: When a numeric value is infinite or beyond float32's range.

    Example:
        >>> schema = WireSchema.of([("amount", "numeric"), ("channel", "categorical")])
        >>> x = encode(pd.DataFrame({"amount": [1.5, None], "channel": ["web", None]}), schema)
        >>> x.dtype, x.shape, int(x[0, 1]) == code24("web"), bool(np.isnan(x[1]).all())
        (dtype('float32'), (2, 2), True, True)
    """
    if not isinstance(schema, WireSchema):
        raise SchemaError(
            f"schema is a {type(schema).__name__}; rule: a WireSchema; fix: use "
            "wire_schema_for_version(registry, pipeline, version) or WireSchema.from_json"
        )
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"frame is a {type(frame).__name__}; rule: the wire encodes pandas DataFrames; fix: "
            "wrap the rows in pd.DataFrame"
        )
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise SchemaError(
            f"frame lacks wire columns {missing} (it has {list(frame.columns)[:20]}); rule: "
            f"every column of the wire schema {list(schema.names)} is sent (NaN/None when "
            "unknown); fix: add the columns"
        )
    out = np.empty((len(frame), schema.width), dtype=np.float32)
    for j, column in enumerate(schema.columns):
        series = frame[column.name]
        if isinstance(series, pd.DataFrame):
            raise SchemaError(
                f"column {column.name!r} occurs {series.shape[1]} times in the frame; rule: "
                "column names are unique; fix: drop or rename the duplicates"
            )
        if column.kind == "numeric":
            out[:, j] = _encode_numeric(series, column.name)
        else:
            out[:, j] = _encode_categorical(series)
    return out


def _encode_numeric(series: pd.Series, name: str) -> npt.NDArray[np.float64]:
    dtype = series.dtype
    try:
        if isinstance(dtype, pd.CategoricalDtype):
            raise TypeError("category")
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            values = pd.to_numeric(series, errors="raise").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        else:
            raise TypeError(str(dtype))
    except (TypeError, ValueError) as exc:
        raise SchemaError(
            f"wire column {name!r} has dtype {dtype} that cannot be read as numeric ({exc}); "
            "rule: numeric wire columns carry numbers (NaN for missing); fix: cast the column to "
            "a numeric dtype"
        ) from exc
    bad = ~np.isnan(values) & ~(np.abs(values) <= _FLOAT32_MAX)
    if bad.any():
        first = float(values[np.argmax(bad)])
        raise DataError(
            f"wire column {name!r} holds {int(bad.sum())} value(s) that are infinite or beyond "
            f"float32's range (first: {first!r}); rule: numeric wire values are finite float32 or "
            "NaN for missing; fix: replace them with NaN or clip them upstream"
        )
    return values


def _encode_categorical(series: pd.Series) -> npt.NDArray[np.float32]:
    strings = series.astype("string")
    codes, uniques = pd.factorize(strings, use_na_sentinel=True)
    table = np.array([code24(str(u)) for u in uniques] + [0], dtype=np.float32)
    values = table[codes]
    values[codes < 0] = np.nan
    return values


# --------------------------------------------------------------------------------------------
# decoding (model side)
# --------------------------------------------------------------------------------------------


class WireDecoder:
    """Decodes wire matrices of one schema for one model version (build once, use per batch).

    Attributes:
        schema: The wire schema.
    """

    def __init__(self, schema: WireSchema, vocabularies: Mapping[str, Sequence[str]]) -> None:
        """Precomputes the code tables of the vocabularies.

        Args:
            schema: The pipeline's wire schema.
            vocabularies: Categorical column -> the model's vocabulary (its known strings).
                Categorical columns without a vocabulary are left out of the decoded frame
                (the model does not use them).

        Raises:
            SchemaError: When a vocabulary names a column that is not categorical in the
                schema, holds a non-string, or holds two strings with the same code24.
        """
        if not isinstance(schema, WireSchema):
            raise SchemaError(
                f"schema is a {type(schema).__name__}; rule: a WireSchema; fix: use "
                "WireSchema.from_json or wire_schema_for_version"
            )
        self.schema = schema
        self._tables: dict[str, tuple[npt.NDArray[np.int64], npt.NDArray[np.object_]]] = {}
        for name, vocabulary in vocabularies.items():
            if schema.kind(name) != "categorical":
                raise SchemaError(
                    f"a vocabulary was given for {name!r}, which the wire schema declares "
                    "numeric; rule: vocabularies belong to categorical columns; fix: train and "
                    "serve the version on the same feature service"
                )
            self._tables[name] = _code_table(name, vocabulary)
        self._columns = [
            (j, column.name, column.kind)
            for j, column in enumerate(schema.columns)
            if column.kind == "numeric" or column.name in self._tables
        ]

    @classmethod
    def for_model(cls, schema: WireSchema, preprocessing: Mapping[str, Any]) -> WireDecoder:
        """The decoder for a model version, from its ``preprocessing.json`` content.

        Args:
            schema: The pipeline's wire schema.
            preprocessing: ``TrainedModel.preprocessing`` (``features``: ``name``, ``type``,
                ``vocabulary``).

        Returns:
            A decoder with the model's vocabularies.

        Raises:
            SchemaError: When a model feature is not in the schema, its kind differs from the
                schema's, or a vocabulary has a code24 collision.
        """
        try:
            features = [(str(f["name"]), str(f["type"]), f) for f in preprocessing["features"]]
        except (KeyError, TypeError) as exc:
            raise SchemaError(
                f"preprocessing has no readable 'features' ({exc!r}); rule: the content of the "
                "model's preprocessing.json; fix: pass TrainedModel.preprocessing"
            ) from exc
        vocabularies: dict[str, Sequence[str]] = {}
        for name, kind, spec in features:
            wire_kind = schema.kind(name)
            if wire_kind != kind:
                raise SchemaError(
                    f"model feature {name!r} is {kind} but the wire schema declares it "
                    f"{wire_kind}; rule: a version is served with the wire schema of the "
                    "snapshot it was trained on; fix: retrain it on the current feature service "
                    "or serve it with its own snapshot's schema"
                )
            if kind == "categorical":
                vocabularies[name] = list(spec["vocabulary"])
        return cls(schema, vocabularies)

    def check(self, matrix: Any) -> npt.NDArray[np.float32]:
        """Checks one wire matrix without decoding it.

        Args:
            matrix: The ``INPUT__0`` array.

        Returns:
            The matrix as a float32 array.

        Raises:
            SchemaError: For a wrong shape or a non-float dtype.
            DataError: For infinite numeric values or categorical values that are not codes.
        """
        x = self._as_matrix(matrix)
        for j, name, kind in self._columns:
            if kind == "numeric":
                if np.isinf(x[:, j]).any():
                    raise DataError(
                        f"wire column {name!r} (index {j}) holds infinite values; rule: numeric "
                        "wire values are finite or NaN for missing; fix: send NaN for unknown "
                        "values"
                    )
            else:
                _codes(x[:, j], name=name, index=j)
        return x

    def decode(self, matrix: Any) -> pd.DataFrame:
        """Decodes a wire matrix into raw feature columns for ``TrainedModel.predict_proba``.

        Args:
            matrix: The ``INPUT__0`` array, ``(n, schema.width)``, float32 (or float64).

        Returns:
            A DataFrame with the numeric columns (float64, NaN for missing) and the
            categorical columns that have a vocabulary (object: a vocabulary string, or None
            for missing and unknown codes), in wire order.

        Raises:
            SchemaError: For a wrong shape or a non-float dtype.
            DataError: For infinite numeric values or categorical values that are not codes.
        """
        x = self.check(matrix)
        data: dict[str, Any] = {}
        for j, name, kind in self._columns:
            if kind == "numeric":
                data[name] = x[:, j].astype(np.float64)
                continue
            codes, present = _codes(x[:, j], name=name, index=j)
            known, strings = self._tables[name]
            out = np.full(len(codes), None, dtype=object)
            if known.size:
                at = np.minimum(np.searchsorted(known, codes), known.size - 1)
                hit = present & (known[at] == codes)
                out[hit] = strings[at[hit]]
            data[name] = out
        return pd.DataFrame(data, index=pd.RangeIndex(x.shape[0]))

    def _as_matrix(self, matrix: Any) -> npt.NDArray[np.float32]:
        x = np.asarray(matrix)
        if x.ndim != 2 or x.shape[1] != self.schema.width:
            raise SchemaError(
                f"wire matrix has shape {list(x.shape)}; rule: [n, {self.schema.width}] float32, "
                f"one column per wire feature {list(self.schema.names)[:8]}...; fix: build it "
                "with lockgate.serving.wire.encode(frame, schema)"
            )
        if not np.issubdtype(x.dtype, np.floating):
            raise SchemaError(
                f"wire matrix has dtype {x.dtype}; rule: float32 (NaN marks missing values); "
                "fix: build it with lockgate.serving.wire.encode(frame, schema)"
            )
        return np.asarray(x, dtype=np.float32)


def _code_table(
    name: str, vocabulary: Sequence[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.object_]]:
    """Sorted codes and their strings; refuses non-strings and code24 collisions."""
    if isinstance(vocabulary, str | bytes):
        raise SchemaError(
            f"vocabulary of {name!r} is a single {type(vocabulary).__name__}; rule: a sequence "
            "of strings; fix: pass the model's vocabulary list"
        )
    by_code: dict[int, str] = {}
    for value in vocabulary:
        code = code24(value)
        other = by_code.get(code)
        if other is not None and other != value:
            raise SchemaError(
                f"vocabulary of {name!r} holds {other!r} and {value!r}, which share the wire "
                f"code24 {code}; rule: the strings of one vocabulary have distinct code24 "
                "codes, or the wire cannot tell them apart; fix: map one of the two values to "
                "another string upstream (feature view) and retrain"
            )
        by_code[code] = value
    codes = np.array(sorted(by_code), dtype=np.int64)
    strings = np.array([by_code[int(c)] for c in codes], dtype=object)
    return codes, strings


def _codes(
    column: npt.NDArray[np.float32], *, name: str, index: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Integer codes (0 where missing) and the present mask; refuses non-codes."""
    present = ~np.isnan(column)
    values = column[present]
    bad = ~((values >= 0) & (values < CODE_LIMIT) & (values == np.floor(values)))
    if bad.any():
        first = float(values[np.argmax(bad)])
        raise DataError(
            f"wire column {name!r} (index {index}) is categorical but holds {int(bad.sum())} "
            f"value(s) that are no code24 (first: {first!r}); rule: integers in [0, 2**24) or "
            "NaN for missing; fix: encode the strings with lockgate.serving.wire.encode, not the "
            "model's own category codes"
        )
    codes = np.zeros(column.shape[0], dtype=np.int64)
    codes[present] = values.astype(np.int64)
    return codes, present


def decode(
    matrix: Any, schema: WireSchema, *, vocabularies: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """Decodes a wire matrix (one-off; build a :class:`WireDecoder` to decode many).

    Args:
        matrix: The ``INPUT__0`` array, ``(n, schema.width)``.
        schema: The pipeline's wire schema.
        vocabularies: Categorical column -> the model's vocabulary.

    Returns:
        The raw feature columns (see :meth:`WireDecoder.decode`).

    Raises:
        SchemaError: For a wrong shape or dtype, a vocabulary on a numeric column, or a code24
            collision in a vocabulary.
        DataError: For infinite numeric values or categorical values that are not codes.

    Example:
        >>> schema = WireSchema.of([("amount", "numeric"), ("channel", "categorical")])
        >>> frame = pd.DataFrame({"amount": [1.5, None], "channel": ["web", "new"]})
        >>> decode(encode(frame, schema), schema, vocabularies={"channel": ["pos", "web"]})
           amount channel
        0     1.5     web
        1     NaN    None
    """
    return WireDecoder(schema, vocabularies).decode(matrix)


def wire_schema_for_version(registry: ArtifactRegistry, pipeline: str, version: str) -> WireSchema:
    """The wire schema a model version is served with: its snapshot's features and kinds.

    Args:
        registry: The artifact registry holding the version and its snapshot.
        pipeline: Pipeline name.
        version: Model version id.

    Returns:
        ``WireSchema.from_manifest`` of the snapshot named by the version's lock record
        (``triad.data_snapshot_sha256``).

    Raises:
        ArtifactError: When the lock record or the snapshot manifest is missing or invalid.
        SchemaError: When the manifest yields no valid schema, or lacks a feature the version
            was trained on.
    """
    record = registry.lock_record(pipeline, version)
    frame_sha = str(record["triad"]["data_snapshot_sha256"])
    schema = WireSchema.from_manifest(registry.snapshot_manifest(frame_sha))
    used = [str(name) for name in record.get("features", [])]
    missing = [name for name in used if name not in schema.names]
    if missing:
        raise SchemaError(
            f"{pipeline}/{version} was trained on features {missing} that its snapshot "
            f"{frame_sha[:12]} does not list ({list(schema.names)}); rule: a version's features "
            "come from its snapshot's feature service; fix: restore the snapshot manifest from "
            "the registry"
        )
    return schema
