"""The model protocol: :class:`TrainedModel`, :class:`CustomModel` and what a version predicts.

:class:`TrainedModel` is a fitted model stored as safe files (no pickle); its
:meth:`TrainedModel.load` rebuilds the built-in kinds (``"lightgbm"``, ``"torch"``, imported
lazily from their modules) and any :class:`CustomModel`, whose ``lockgate_model.json`` names
its class. :func:`model_output` reads a version's task and output width from its
``preprocessing.json`` without loading the model.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd

from lockgate.errors import ArtifactIntegrityError, SpecError, TrainingError
from lockgate.tasks.catalog import Task
from lockgate.training.arrays import Float32Matrix, Float64Array
from lockgate.training.import_paths import import_object, import_path
from lockgate.training.labels import ClassLabel, task_fields
from lockgate.training.model_files import (
    KIND_PATTERN,
    PREPROCESSING_FILE,
    json_bytes,
    parse_json,
    require_files,
)
from lockgate.training.preprocessing import Preprocessing

__all__ = [
    "BUILTIN_MODEL_PATHS",
    "MODEL_MANIFEST_FILE",
    "CustomModel",
    "ModelOutput",
    "TrainedModel",
    "builtin_model_class",
    "check_preprocessing_kind",
    "model_output",
]


BUILTIN_MODEL_PATHS: dict[str, str] = {
    "lightgbm": "lockgate.training.lightgbm_trainer:LightGBMModel",
    "torch": "lockgate.training.torch_trainer:TorchModel",
}
"""The model class of each built-in kind, by the module that defines it (imported on use)."""


def check_preprocessing_kind(
    preprocessing: Preprocessing,
    kind: str,
    *,
    fix: str = "load the files of one model version together",
) -> None:
    """Refuses preprocessing written for a model kind other than ``kind``.

    Raises:
        ArtifactIntegrityError: When ``preprocessing.model_kind`` is not ``kind``; ``fix`` ends
            the message.
    """
    if preprocessing.model_kind != kind:
        raise ArtifactIntegrityError(
            f"{PREPROCESSING_FILE} was written for a {preprocessing.model_kind!r} model; "
            f"rule: it must match the model kind {kind!r}; fix: {fix}"
        )


def builtin_model_class(kind: Any) -> type[TrainedModel] | None:
    """The model class of a built-in kind (``"lightgbm"``, ``"torch"``), else None."""
    path = BUILTIN_MODEL_PATHS.get(kind) if isinstance(kind, str) else None
    if path is None:
        return None
    module_name, _, name = path.partition(":")
    model_cls: type[TrainedModel] = getattr(importlib.import_module(module_name), name)
    return model_cls


class ModelOutput(NamedTuple):
    """What a model version predicts, read from its ``preprocessing.json`` (:func:`model_output`).

    Attributes:
        task: One of :data:`TASKS`.
        width: Columns per row: 1 for ``"binary"`` and ``"regression"``, k for ``"multiclass"``.
        classes: The class labels in column order (``(0, 1)`` for binary, ``()`` for
            regression).
    """

    task: Task
    width: int
    classes: tuple[ClassLabel, ...]


def model_output(preprocessing: Mapping[str, Any]) -> ModelOutput:
    """The task and output width of a model from its parsed ``preprocessing.json``.

    A pure reader for code that has the files but does not load the model (Triton config
    generation): ``model_output(json.loads(files["preprocessing.json"]))``.

    Args:
        preprocessing: The parsed content of ``preprocessing.json`` (or
            :attr:`TrainedModel.preprocessing`).

    Returns:
        The task, the width of one row of :meth:`TrainedModel.predict` and the classes.

    Raises:
        ArtifactIntegrityError: When the task or the classes are malformed.

    Example:
        >>> model_output({"task": "multiclass", "classes": ["a", "b", "c"]})
        ModelOutput(task='multiclass', width=3, classes=('a', 'b', 'c'))
        >>> model_output({}).width  # written before tasks existed: binary
        1
    """
    try:
        task, classes = task_fields(preprocessing)
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactIntegrityError(
            f"{PREPROCESSING_FILE} has a malformed task ({type(exc).__name__}: {exc}); rule: it "
            f"must be the file lockgate wrote at fit time; fix: restore it from the registry"
        ) from exc
    return ModelOutput(task, len(classes) if task == "multiclass" else 1, classes)


class TrainedModel:
    """A fitted model: preprocessing plus weights, stored as safe files.

    :meth:`predict` is the task-general prediction (:attr:`task`, :attr:`output_width`);
    :meth:`predict_proba` the probabilities of a classifier.

    Attributes:
        kind: ``"lightgbm"`` or ``"torch"``.
        weights_file: Name of the primary weights file in :meth:`files`; its sha256 is the
            model's weights hash (:attr:`weights_sha256`).
    """

    kind: ClassVar[str]
    weights_file: ClassVar[str]

    def __init__(self, *, preprocessor: Preprocessing) -> None:
        """Stores the fitted preprocessing.

        Args:
            preprocessor: The preprocessing fitted on the training frame.
        """
        self._preprocessor = preprocessor

    def __repr__(self) -> str:
        """Kind, feature count and weights hash prefix."""
        return (
            f"{type(self).__name__}(features={len(self.features)}, "
            f"weights_sha256={self.weights_sha256[:12]}...)"
        )

    @property
    def features(self) -> tuple[str, ...]:
        """The feature columns, in model order."""
        return self._preprocessor.features

    @property
    def task(self) -> Task:
        """What the model predicts: ``"binary"``, ``"multiclass"`` or ``"regression"``."""
        return self._preprocessor.task

    @property
    def classes(self) -> tuple[ClassLabel, ...]:
        """The class labels in the column order of :meth:`predict`.

        ``(0, 1)`` for a binary model (:meth:`predict` gives the probability of ``1``), the
        sorted label values for a multiclass model, ``()`` for a regression model.
        """
        return self._preprocessor.classes

    @property
    def output_width(self) -> int:
        """Columns per row of :meth:`predict`: k for multiclass, otherwise 1."""
        return self._preprocessor.output_width

    @property
    def preprocessing(self) -> dict[str, Any]:
        """A copy of the fitted preprocessing (the content of ``preprocessing.json``)."""
        return json.loads(self._preprocessor.to_bytes())

    @property
    def weights_sha256(self) -> str:
        """Hex sha256 of the weights file: the model's weights hash."""
        return hashlib.sha256(self._weights_bytes()).hexdigest()

    def preprocess(self, frame: pd.DataFrame) -> Float32Matrix:
        """Turns raw feature columns into the model's float32 input matrix.

        This is what a server feeds the weights (the TorchScript export, or LightGBM).

        Args:
            frame: Rows with at least the feature columns (other columns are ignored).

        Returns:
            A C-contiguous float32 matrix of shape ``(len(frame), input_dim)``.

        Raises:
            SchemaError: When feature columns are missing or have an unusable dtype.
            DataError: When a numeric feature holds infinite values.
        """
        return self._preprocessor.transform(frame)

    def predict(self, frame: pd.DataFrame) -> Float64Array:
        """The model's prediction for each row, by task.

        Args:
            frame: Rows with at least the feature columns.

        Returns:
            float64: ``"binary"`` shape ``(n,)``, the probability of label 1 (as
            :meth:`predict_proba`); ``"multiclass"`` shape ``(n, k)``, class probabilities
            (rows sum to 1) in the order of :attr:`classes`; ``"regression"`` shape ``(n,)``,
            predicted values in label units.

        Raises:
            SchemaError: When feature columns are missing or have an unusable dtype.
            DataError: When a numeric feature holds infinite values.
        """
        x = self.preprocess(frame)
        if x.shape[0] == 0:
            shape = (0, self.output_width) if self.task == "multiclass" else (0,)
            return np.empty(shape, dtype=np.float64)
        return self._predict_matrix(x)

    def predict_proba(self, frame: pd.DataFrame) -> Float64Array:
        """Class probabilities of a classifier for each row.

        Args:
            frame: Rows with at least the feature columns.

        Returns:
            A float64 array: shape ``(len(frame),)`` with the probability of label 1 for a
            binary model, ``(len(frame), k)`` in the order of :attr:`classes` for a multiclass
            model.

        Raises:
            SpecError: For a regression model, which predicts values, not probabilities.
            SchemaError: When feature columns are missing or have an unusable dtype.
            DataError: When a numeric feature holds infinite values.
        """
        if self.task == "regression":
            raise SpecError(
                f"predict_proba() was called on a {self.kind} model of task='regression' "
                f"(label units, no probabilities); rule: probabilities exist for "
                f"task='binary' and task='multiclass' only; fix: call predict(), and use "
                f"regression metrics (e.g. RMSE) instead of probability metrics"
            )
        return self.predict(frame)

    def files(self) -> dict[str, bytes]:
        """Every file needed to load the model again, by name (JSON, text, safetensors).

        Returns:
            A new dict of file name to bytes.
        """
        raise NotImplementedError

    def _weights_bytes(self) -> bytes:
        raise NotImplementedError

    def _predict_matrix(self, x: Float32Matrix) -> Float64Array:
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuses a subclass of a built-in model class that keeps the built-in kind.

        ``TrainedModel.load("lightgbm", files)`` rebuilds a :class:`LightGBMModel` exactly (and
        ``"torch"`` a :class:`TorchModel`): a subclass with changed behaviour under that kind
        would be silently replaced by the stock class when it is evaluated, reproduced or
        served. Give it a kind of its own and derive it from :class:`CustomModel` instead.
        """
        super().__init_subclass__(**kwargs)
        builtin = next(
            (
                base.__name__
                for base in cls.__mro__[1:]
                if f"{base.__module__}:{base.__qualname__}" in BUILTIN_MODEL_PATHS.values()
            ),
            None,
        )
        own_path = f"{cls.__module__}:{cls.__qualname__}"
        if builtin is not None and own_path not in BUILTIN_MODEL_PATHS.values():
            raise TypeError(
                f"model class {cls.__qualname__} subclasses {builtin}; rule: models of kind "
                f"'lightgbm' and 'torch' load as the built-in class exactly, so a subclass's "
                f"behaviour would be ignored when the model is evaluated, reproduced or served; "
                f"fix: derive it from CustomModel with a kind of its own (and a CustomTrainer "
                f"of that kind returning it)"
            )

    @classmethod
    def load(cls, kind: str, files: Mapping[str, bytes]) -> TrainedModel:
        """Restores a model from :meth:`files`; predictions equal the original's exactly.

        Only safe parsers are used: JSON, LightGBM's text format and safetensors. For torch the
        TorchScript file is not needed (nor executed); when given, it is kept as is.

        A model of another kind (a :class:`CustomModel`) carries ``lockgate_model.json``,
        which names its class as ``"module:Class"``: that class is imported (its module must be
        installed where the model is loaded), checked to be a :class:`CustomModel` of ``kind``,
        and rebuilds the model from the files with its own safe parsers.

        Args:
            kind: The trainer kind recorded with the model version (``"lightgbm"``,
                ``"torch"``, ``"sklearn"``, ...).
            files: File name to bytes, as returned by :meth:`files`. Unknown names are ignored.

        Returns:
            The restored model.

        Raises:
            SpecError: For an invalid kind, or a model class that cannot be imported.
            ArtifactIntegrityError: When a required file is missing or cannot be parsed.
        """
        model_cls = builtin_model_class(kind)
        if model_cls is not None:
            return model_cls._from_files(files)
        if (
            not isinstance(kind, str)
            or not KIND_PATTERN.match(kind)
            or not isinstance(files, Mapping)
            or MODEL_MANIFEST_FILE not in files
        ):
            raise SpecError(
                f"model kind {kind!r} is unknown; rule: kind must be one of {sorted(BUILTIN_MODEL_PATHS)}, "
                f"or a custom kind whose files carry {MODEL_MANIFEST_FILE} (CustomModel writes "
                f"it); fix: pass the kind recorded with the model version, and all its files"
            )
        manifest = _model_manifest(files, kind=kind)
        custom = import_object(manifest["model"], what="model class")
        if not (isinstance(custom, type) and issubclass(custom, CustomModel)):
            raise SpecError(
                f"model class {manifest['model']!r} named in {MODEL_MANIFEST_FILE} is not a "
                f"CustomModel subclass; rule: custom models derive from CustomModel; fix: "
                f"restore the model version from the registry"
            )
        if custom.kind != kind:
            raise ArtifactIntegrityError(
                f"model class {manifest['model']!r} has kind {custom.kind!r} but the model "
                f"version was recorded with kind {kind!r}; rule: trainer and model share one "
                f"kind; fix: load the files with the kind of their lock record"
            )
        return custom._from_files(files)

    @classmethod
    def _from_files(cls, files: Mapping[str, bytes]) -> TrainedModel:
        raise NotImplementedError


MODEL_MANIFEST_FILE = "lockgate_model.json"
"""The manifest a :class:`CustomModel` adds to its files: format, kind and model class."""
_MODEL_MANIFEST_FORMAT = "lockgate.model/1"


def _model_manifest(files: Mapping[str, bytes], *, kind: str) -> dict[str, Any]:
    found = require_files(files, [MODEL_MANIFEST_FILE], kind=kind)
    manifest = parse_json(found[MODEL_MANIFEST_FILE], name=MODEL_MANIFEST_FILE)
    if (
        manifest.get("format") != _MODEL_MANIFEST_FORMAT
        or manifest.get("kind") != kind
        or not isinstance(manifest.get("model"), str)
    ):
        raise ArtifactIntegrityError(
            f"{MODEL_MANIFEST_FILE} is {manifest!r}; rule: format {_MODEL_MANIFEST_FORMAT!r}, "
            f"kind {kind!r} (the lock record's) and the model class as 'module:Class'; fix: "
            f"load the files of one model version with the kind of its lock record"
        )
    return manifest


class CustomModel(TrainedModel):
    """Base class of the model a :class:`CustomTrainer` returns (the model protocol).

    A subclass sets ``kind`` (the trainer's) and ``weights_file`` (the file whose sha256 is the
    weights hash of the triad) as class attributes, and implements:

    - :meth:`model_files`: its own files, name -> bytes, in safe formats only (JSON, text,
      safetensors, ONNX, ...; never pickle), byte-identical when the trainer runs again with
      the same seed on the same rows; they must include ``weights_file``;
    - :meth:`from_model_files` (classmethod): the model again from those files, with safe
      parsers only;
    - :meth:`predict_matrix`: the float32 ``(n, d)`` matrix of :meth:`TrainedModel.preprocess`
      -> float64 ``(n,)`` (binary: P(label 1); regression: label units) or ``(n, k)``
      (multiclass: class probabilities in the order of :attr:`TrainedModel.classes`).

    :meth:`files` adds ``preprocessing.json`` (the :class:`Preprocessing` from
    :func:`prepare_training`, which serving uses to decode the wire) and
    ``lockgate_model.json`` (format, kind, ``"module:Class"``) to :meth:`model_files`; the lock
    record stores the sha256 of each. On Triton (python backend, CPU), the generated
    ``model.py`` calls ``TrainedModel.load(kind, files)``, which imports the class named in the
    manifest and calls :meth:`from_model_files`: the module must be installed in the
    environment the stub uses (the virtualenv on ``PYTHONPATH``). Served predictions are
    :meth:`TrainedModel.predict`, exactly as in-process.
    """

    kind: ClassVar[str]
    weights_file: ClassVar[str]

    def __init__(self, *, preprocessing: Preprocessing) -> None:
        """Stores the fitted preprocessing.

        Args:
            preprocessing: From :func:`prepare_training` (or :meth:`from_model_files`).

        Raises:
            ArtifactIntegrityError: When the preprocessing was written for another kind.
        """
        check_preprocessing_kind(
            preprocessing,
            self.kind,
            fix=f"prepare the training data with kind={self.kind!r}, or load the files of one "
            f"model version together",
        )
        super().__init__(preprocessor=preprocessing)
        self._own_files: dict[str, bytes] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Checks ``kind`` and ``weights_file`` of a concrete subclass."""
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return  # an intermediate base class
        if not isinstance(kind, str) or not KIND_PATTERN.match(kind) or kind in _BUILTIN_KINDS:
            raise TypeError(
                f"model class {cls.__qualname__} has kind={kind!r}; rule: lowercase letters, "
                f"digits and '_', not a built-in kind {list(_BUILTIN_KINDS)}; fix: use the "
                f"kind of its trainer"
            )
        weights = getattr(cls, "weights_file", None)
        if not isinstance(weights, str) or weights in _RESERVED_FILES or not weights:
            raise TypeError(
                f"model class {cls.__qualname__} has weights_file={weights!r}; rule: the name "
                f"of one of its own files (not {list(_RESERVED_FILES)}); fix: set it, e.g. "
                f"weights_file = 'model.onnx'"
            )

    def model_files(self) -> dict[str, bytes]:
        """The model's own files (without ``preprocessing.json`` and the manifest).

        Returns:
            File name -> bytes, including :attr:`weights_file`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement model_files()")

    @classmethod
    def from_model_files(
        cls, files: Mapping[str, bytes], *, preprocessing: Preprocessing
    ) -> CustomModel:
        """Rebuilds the model from :meth:`model_files` (safe parsers only).

        Args:
            files: Every file of the model version (its own ones among them).
            preprocessing: The parsed ``preprocessing.json``.

        Returns:
            The model.
        """
        raise NotImplementedError(f"{cls.__name__} does not implement from_model_files()")

    def predict_matrix(self, x: Float32Matrix) -> Float64Array:
        """Scores the preprocessed matrix (see the class docstring for shapes).

        Args:
            x: float32 ``(n, d)`` from :meth:`TrainedModel.preprocess`, ``n >= 1``.

        Returns:
            float64 ``(n,)`` or ``(n, k)`` by task.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_matrix()")

    def files(self) -> dict[str, bytes]:
        """:meth:`model_files`, ``preprocessing.json`` and ``lockgate_model.json``.

        Returns:
            A new dict of file name to bytes.

        Raises:
            TrainingError: When :meth:`model_files` is not a dict of bytes holding
                :attr:`weights_file`, or uses a reserved name.
        """
        own = self._files_once()
        manifest = {
            "format": _MODEL_MANIFEST_FORMAT,
            "kind": self.kind,
            "model": import_path(type(self)),
        }
        return {
            **own,
            PREPROCESSING_FILE: self._preprocessor.to_bytes(),
            MODEL_MANIFEST_FILE: json_bytes(manifest),
        }

    def _files_once(self) -> dict[str, bytes]:
        if self._own_files is None:
            own = self.model_files()
            name = type(self).__qualname__
            if not isinstance(own, Mapping) or not all(
                isinstance(k, str) and isinstance(v, bytes) for k, v in own.items()
            ):
                raise TrainingError(
                    f"{name}.model_files() returned {type(own).__name__}; rule: a dict of file "
                    f"name to bytes; fix: return e.g. {{'model.onnx': onnx_bytes}}"
                )
            clash = sorted(set(own) & set(_RESERVED_FILES))
            if clash or self.weights_file not in own:
                raise TrainingError(
                    f"{name}.model_files() returned {sorted(own)}; rule: it holds "
                    f"weights_file {self.weights_file!r} and none of {list(_RESERVED_FILES)} "
                    f"(lockgate adds those); fix: return the model's own files only"
                )
            self._own_files = dict(own)
        return dict(self._own_files)

    def _weights_bytes(self) -> bytes:
        return self._files_once()[self.weights_file]

    def _predict_matrix(self, x: Float32Matrix) -> Float64Array:
        out = np.asarray(self.predict_matrix(x), dtype=np.float64)
        n = x.shape[0]
        expected = (n, self.output_width) if self.task == "multiclass" else (n,)
        if out.shape != expected:
            raise TrainingError(
                f"{type(self).__qualname__}.predict_matrix returned shape {list(out.shape)} for "
                f"{n} rows of a {self.task} model; rule: {list(expected)} (binary and "
                f"regression (n,), multiclass (n, k)); fix: reshape the output"
            )
        return out

    @classmethod
    def _from_files(cls, files: Mapping[str, bytes]) -> CustomModel:
        found = require_files(files, [PREPROCESSING_FILE, cls.weights_file], kind=cls.kind)
        _model_manifest(files, kind=cls.kind)
        preprocessing = Preprocessing.from_bytes(found[PREPROCESSING_FILE])
        model = cls.from_model_files(
            {name: bytes(data) for name, data in files.items()}, preprocessing=preprocessing
        )
        if not isinstance(model, cls):
            raise ArtifactIntegrityError(
                f"{cls.__qualname__}.from_model_files returned a {type(model).__name__}; rule: "
                f"it returns an instance of its class; fix: return cls(...)"
            )
        return model


_BUILTIN_KINDS = ("lightgbm", "torch")
_RESERVED_FILES = (PREPROCESSING_FILE, MODEL_MANIFEST_FILE, "model.py", "wire.json", "config.pbtxt")
