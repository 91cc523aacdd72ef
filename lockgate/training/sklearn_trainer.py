"""scikit-learn estimators through ONNX: :class:`SklearnTrainer` and :class:`SklearnModel`.

Any scikit-learn classifier (binary, multiclass) or regressor (regression) that ``skl2onnx``
converts is trained on lockgate's preprocessing (:func:`lockgate.training.prepare.prepare_training`)
and stored as ONNX (``model.onnx``, protobuf; no pickle). The fitted estimator is converted
once, at fit time, and thrown away: every prediction, in-process (evaluation, the gate,
infra validation) and on Triton, comes from that ONNX graph scored by ``onnxruntime`` on CPU
with one thread, so in-process and served predictions are the same computation.

Determinism: ``random_state`` is the trainer's ``seed`` (when the estimator has one), ``n_jobs``
is 1 and every native thread pool is limited to one thread while fitting (``threadpoolctl``);
``skl2onnx`` writes the same bytes for the same fitted estimator (checked in two processes with
HistGradientBoosting and LogisticRegression). The lock record's trainer config records the
versions of scikit-learn, skl2onnx, onnx and onnxruntime (``libraries``).

Installation: ``pip install 'lockgate[sklearn]'`` (scikit-learn, skl2onnx, onnx, onnxruntime;
the ``dev`` extra includes them). The packages are imported inside functions only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, JsonValue, field_validator, model_validator

from lockgate.errors import ArtifactIntegrityError, SpecError, TrainingError
from lockgate.tasks.catalog import Task
from lockgate.training.import_paths import import_object
from lockgate.training.model_protocol import CustomModel
from lockgate.training.prepare import prepare_training
from lockgate.training.preprocessing import Preprocessing
from lockgate.training.trainer_protocol import CustomTrainer

__all__ = ["ONNX_MODEL_FILE", "SklearnModel", "SklearnTrainer"]

ONNX_MODEL_FILE = "model.onnx"
"""The ONNX graph of a scikit-learn model (its weights file)."""
_OPSET = {"": 17, "ai.onnx.ml": 3}
_RESERVED = {
    "random_state": "the trainer's `seed` field",
    "n_jobs": "lockgate (1, for bit-identical results)",
}
_INSTALL_FIX = "pip install 'lockgate[sklearn]' (scikit-learn, skl2onnx, onnx, onnxruntime)"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SpecError(
            f"{module} cannot be imported ({exc}); rule: SklearnTrainer needs scikit-learn, "
            f"skl2onnx, onnx and onnxruntime; fix: {_INSTALL_FIX}"
        ) from exc


class SklearnTrainer(CustomTrainer):
    """A scikit-learn estimator, trained deterministically and stored and served as ONNX.

    Example:
        >>> trainer = SklearnTrainer(
        ...     estimator="sklearn.ensemble:HistGradientBoostingClassifier",
        ...     params={"max_iter": 100, "learning_rate": 0.1},
        ...     seed=7,
        ... )
        >>> model = trainer.fit(frame, features=["amount", "channel"], label="y")  # doctest: +SKIP

    Attributes:
        kind: Always ``"sklearn"``.
        estimator: The estimator class as ``"module:Class"`` (a classifier for
            ``"binary"``/``"multiclass"``, a regressor for ``"regression"``).
        params: Constructor parameters (JSON values); ``random_state`` and ``n_jobs`` are set
            by lockgate.
        seed: ``random_state`` of the estimator, when it has one.
        one_hot: Categorical features as one-hot blocks (else one code column each).
        standardize: Numeric features standardised with the training mean and scale.
    """

    __lockgate_path__ = "lockgate.training:SklearnTrainer"  # recorded path (import_paths)

    kind: Literal["sklearn"] = "sklearn"
    estimator: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    one_hot: bool = True
    standardize: bool = True
    libraries: ClassVar[tuple[str, ...]] = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime")

    @field_validator("params")
    @classmethod
    def _no_reserved(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for key, item in value.items():
            if key in _RESERVED:
                raise ValueError(
                    f"params[{key!r}] is set by {_RESERVED[key]}; rule: lockgate controls it "
                    f"to keep training bit-identical; fix: remove {key!r} from params"
                )
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(
                    f"params[{key!r}]={item!r} is not finite; rule: finite JSON values; fix: "
                    f"give a finite value"
                )
        return value

    @model_validator(mode="after")
    def _estimator_exists(self) -> SklearnTrainer:
        """Imports the estimator at spec time and checks that ``params`` are its parameters."""
        cls = self.estimator_class()
        known = set(cls._get_param_names())
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ValueError(
                f"params {unknown} are not parameters of {self.estimator}; rule: params are "
                f"constructor arguments of the estimator; fix: use some of {sorted(known)}"
            )
        return self

    def estimator_class(self) -> Any:
        """The estimator class, imported from :attr:`estimator`.

        Returns:
            The class.

        Raises:
            SpecError: When it cannot be imported or is not a scikit-learn estimator.
        """
        _require("sklearn")
        cls = import_object(self.estimator, what="scikit-learn estimator")
        if not (isinstance(cls, type) and hasattr(cls, "fit") and hasattr(cls, "get_params")):
            raise SpecError(
                f"estimator {self.estimator!r} is a {type(cls).__name__} without fit/get_params; "
                f"rule: a scikit-learn estimator class; fix: e.g. "
                f"'sklearn.ensemble:HistGradientBoostingClassifier'"
            )
        return cls

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        label: str,
        task: Task = "binary",
    ) -> SklearnModel:
        """Fits the estimator and converts it to ONNX (arguments: :meth:`Trainer.fit`).

        ``task`` ``"binary"`` or ``"multiclass"`` takes a classifier, ``"regression"`` a
        regressor.

        Returns:
            The model, scored through its ONNX graph.

        Raises:
            SpecError: When the estimator does not fit the task or the packages are missing.
            TrainingError: When fitting or the ONNX conversion fails.
        """
        sklearn_base = _require("sklearn.base")
        skl2onnx = _require("skl2onnx")
        threadpoolctl = _require("threadpoolctl")
        cls = self.estimator_class()
        params: dict[str, Any] = dict(self.params)
        accepted = set(cls._get_param_names())
        if "random_state" in accepted:
            params["random_state"] = self.seed
        if "n_jobs" in accepted:
            params["n_jobs"] = 1
        estimator = cls(**params)
        classifier = bool(sklearn_base.is_classifier(estimator))
        if classifier != (task != "regression"):
            want = "a regressor" if task == "regression" else "a classifier"
            example = (
                "HistGradientBoostingRegressor"
                if task == "regression"
                else "HistGradientBoostingClassifier"
            )
            raise SpecError(
                f"estimator {self.estimator!r} is {'a classifier' if classifier else 'a regressor'}"
                f" but the pipeline's task is {task!r}; rule: task={task!r} needs {want}; fix: "
                f"pick {want} (e.g. sklearn.ensemble:{example}) or declare the task that fits "
                f"the estimator"
            )
        data = prepare_training(
            frame,
            features=features,
            label=label,
            task=task,
            kind=self.kind,
            one_hot=self.one_hot,
            standardize=self.standardize,
        )
        y = data.y if task == "regression" else data.y.astype(np.int64)
        try:
            with threadpoolctl.threadpool_limits(limits=1):
                estimator.fit(data.x, y)
        except Exception as exc:
            raise TrainingError(
                f"{self.estimator} failed to fit {data.x.shape[0]} rows for task={task!r}: "
                f"{type(exc).__name__}: {exc}; rule: the params must be valid for the "
                f"estimator and the data; fix: check params {sorted(self.params)}"
            ) from exc
        options = {id(estimator): {"zipmap": False}} if classifier else None
        try:
            graph = skl2onnx.to_onnx(
                estimator, data.x[:1], options=options, target_opset=dict(_OPSET)
            )
        except Exception as exc:
            raise TrainingError(
                f"skl2onnx cannot convert {self.estimator} ({type(exc).__name__}: {exc}); rule: "
                f"scikit-learn models are stored and served as ONNX; fix: pick an estimator "
                f"skl2onnx supports (its documentation lists the converters)"
            ) from exc
        onnx_bytes = graph.SerializeToString()
        return SklearnModel(onnx_model=onnx_bytes, preprocessing=data.preprocessing)


class SklearnModel(CustomModel):
    """A scikit-learn model as an ONNX graph, scored with onnxruntime on CPU (one thread).

    ``predict`` runs the graph on :meth:`preprocess`'s float32 matrix: classifiers give their
    ``probabilities`` output (binary: the column of class 1), regressors their single output.
    """

    # the manifest's model path since lockgate wrote it first (it enters the version id)
    __lockgate_path__ = "lockgate.trainers_sklearn:SklearnModel"

    kind: ClassVar[str] = "sklearn"
    weights_file: ClassVar[str] = ONNX_MODEL_FILE

    def __init__(self, *, onnx_model: bytes, preprocessing: Preprocessing) -> None:
        """Parses the ONNX graph with onnxruntime and checks its inputs and outputs.

        Args:
            onnx_model: Content of ``model.onnx``.
            preprocessing: The preprocessing fitted with it.

        Raises:
            ArtifactIntegrityError: When the bytes are not an ONNX graph for this
                preprocessing and task.
        """
        super().__init__(preprocessing=preprocessing)
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                bytes(onnx_model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ArtifactIntegrityError(
                f"{ONNX_MODEL_FILE} ({len(onnx_model)} bytes) is not a loadable ONNX graph "
                f"({type(exc).__name__}: {exc}); rule: it is the graph skl2onnx wrote at fit "
                f"time; fix: restore it from the registry"
            ) from exc
        inputs = session.get_inputs()
        outputs = [o.name for o in session.get_outputs()]
        width = inputs[0].shape[-1] if inputs and inputs[0].shape else None
        wanted = "probabilities" if self.task != "regression" else outputs[0] if outputs else ""
        if len(inputs) != 1 or width != preprocessing.input_dim or wanted not in outputs:
            raise ArtifactIntegrityError(
                f"{ONNX_MODEL_FILE} has inputs {[i.name for i in inputs]} of width {width} and "
                f"outputs {outputs}; rule: one float input of width {preprocessing.input_dim} "
                f"(preprocessing.json) and, for task {self.task!r}, the output {wanted!r}; fix: "
                f"load the files of one model version together"
            )
        self._onnx = bytes(onnx_model)
        self._session = session
        self._input = inputs[0].name
        self._output = wanted

    def model_files(self) -> dict[str, bytes]:
        """``model.onnx``.

        Returns:
            A new dict of file name to bytes.
        """
        return {ONNX_MODEL_FILE: self._onnx}

    @classmethod
    def from_model_files(
        cls, files: Mapping[str, bytes], *, preprocessing: Preprocessing
    ) -> SklearnModel:
        """Rebuilds the model from ``model.onnx`` (see :meth:`CustomModel.from_model_files`)."""
        return cls(onnx_model=bytes(files[ONNX_MODEL_FILE]), preprocessing=preprocessing)

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        """Runs the ONNX graph.

        Args:
            x: float32 ``(n, d)``.

        Returns:
            float64 ``(n,)`` (binary: P(label 1); regression: the value) or ``(n, k)``.
        """
        (out,) = self._session.run([self._output], {self._input: np.ascontiguousarray(x)})
        result = np.asarray(out, dtype=np.float64)
        if self.task == "binary":
            return result[:, 1]
        if self.task == "regression":
            return result.reshape(-1)
        return result
