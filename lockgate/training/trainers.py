"""Deterministic trainers (binary, multiclass, regression) whose models are stored in safe formats.

Two trainer specs, both frozen pydantic models that round-trip through :meth:`config` and
:func:`trainer_from_config`:

- :class:`LightGBMTrainer`: gradient-boosted trees; weights file ``model.txt`` (LightGBM's text
  model format).
- :class:`TorchTrainer`: a ReLU multilayer perceptron; weights file ``weights.safetensors``, plus a
  TorchScript export ``model.torchscript.pt`` of the whole scoring graph for Triton.

Tasks: ``fit(frame, features=..., label=..., task=...)`` with ``task`` one of :data:`TASKS`
(the pipeline spec declares it once; the trainer spec does not change with it):

- ``"binary"`` (default): labels 0/1; :meth:`TrainedModel.predict` gives ``(n,)`` P(label 1).
- ``"multiclass"``: integer or string class labels (at least 2 classes); the sorted class list
  is stored (:attr:`TrainedModel.classes`) and :meth:`TrainedModel.predict` gives ``(n, k)``
  probabilities whose columns follow it. LightGBM uses the ``multiclass`` (softmax) objective,
  torch a k-logit head with softmax and cross-entropy.
- ``"regression"``: finite numeric labels; :meth:`TrainedModel.predict` gives ``(n,)`` values in
  label units. LightGBM uses the L2 ``regression`` objective, torch a linear head trained with
  MSE on the label standardised with the training mean and standard deviation (stored in
  ``architecture.json`` and applied by the network and its TorchScript export).

:func:`check_labels` runs the same label checks without training (e.g. at snapshot time). The
task is recorded in ``preprocessing.json`` (keys ``task`` and ``classes``, written only for
non-binary models, so binary files are byte-identical to those of lockgate before tasks
existed and older files load as binary).

``fit`` returns a :class:`TrainedModel`. Its :meth:`TrainedModel.files` hold everything needed
to load it again (no pickle anywhere: JSON, LightGBM text, safetensors) and
:meth:`TrainedModel.load` rebuilds a model whose predictions equal the original's bit for bit.

Determinism: fitting the same spec on the same frame gives byte-identical files, in one process
or in two, on the same hardware and library versions:

- feature preprocessing uses order-independent statistics (median, ``math.fsum`` means) and
  writes JSON with sorted keys and Python's shortest round-trip float repr;
- LightGBM runs with ``deterministic=True``, ``force_row_wise=True``, a fixed ``num_threads``,
  ``device_type="cpu"`` and ``seed`` (from which it derives every other seed); these keys are
  reserved and cannot be overridden through ``params``;
- torch trains under ``torch.use_deterministic_algorithms(True)`` and
  ``torch.set_num_threads(num_threads)``, both restored afterwards; the weights are initialised
  and the batches shuffled with a private ``torch.Generator`` seeded from ``seed``, so the
  global RNG is neither used nor changed;
- safetensors headers carry fixed metadata only; the TorchScript archive is rewritten without
  its ``*.debug_pkl`` records, which embed absolute source paths of the installation.

torch and lightgbm are imported inside functions only, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import io
import itertools
import json
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from lockgate.errors import (
    ArtifactIntegrityError,
    DataError,
    EmptyDataError,
    SchemaError,
    SpecError,
    TrainingError,
)
from lockgate.tasks.catalog import TASKS, Task

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONFIG_CLASS_KEY",
    "CONFIG_CODE_KEY",
    "CONFIG_LIBRARIES_KEY",
    "DEFAULT_LIGHTGBM_PARAMS",
    "MAX_CLASSES",
    "MODEL_MANIFEST_FILE",
    "TASKS",
    "TRAINER_KINDS",
    "ClassLabel",
    "CustomModel",
    "CustomTrainer",
    "JsonScalar",
    "LightGBMModel",
    "LightGBMTrainer",
    "ModelOutput",
    "PreparedData",
    "Preprocessing",
    "Task",
    "TorchModel",
    "TorchTrainer",
    "TrainedModel",
    "Trainer",
    "TrainerSpec",
    "check_labels",
    "check_trainer",
    "import_object",
    "import_path",
    "model_output",
    "prepare_training",
    "source_sha256",
    "trainer_code_differences",
    "trainer_from_config",
]

JsonScalar: TypeAlias = StrictBool | StrictInt | StrictFloat | StrictStr
"""A LightGBM parameter value: bool, int, float or str (JSON scalars)."""

ClassLabel: TypeAlias = int | str
"""A multiclass label value: an integer or a string (one kind per model)."""

MAX_CLASSES = 1000
"""Most classes a multiclass label may have (more usually means a continuous label)."""

_Float32Matrix: TypeAlias = npt.NDArray[np.float32]
_Float64Array: TypeAlias = npt.NDArray[np.float64]

PREPROCESSING_FILE = "preprocessing.json"
LIGHTGBM_MODEL_FILE = "model.txt"
TORCH_WEIGHTS_FILE = "weights.safetensors"
TORCH_SCRIPT_FILE = "model.torchscript.pt"
TORCH_ARCHITECTURE_FILE = "architecture.json"
_PREPROCESSING_FORMAT = "lockgate.preprocessing/1"
_ARCHITECTURE_FORMAT = "lockgate.torch-mlp/1"
_MAX_SEED = 2**31 - 1

DEFAULT_LIGHTGBM_PARAMS: dict[str, JsonScalar] = {
    # Binary log-loss keeps probabilities calibrated at a ~2% positive rate; no is_unbalance or
    # scale_pos_weight, which would inflate them (set one in params to trade calibration for
    # recall).
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "max_depth": -1,
    # With ~2% positives a leaf of 100 rows holds ~2 positives on average: guards against
    # leaves fitted to single positives.
    "min_data_in_leaf": 100,
    "min_sum_hessian_in_leaf": 1e-3,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "min_data_per_group": 50,
    "cat_smooth": 10.0,
    "cat_l2": 10.0,
    "max_cat_to_onehot": 4,
    "verbosity": -1,
}
"""LightGBM parameters used when a :class:`LightGBMTrainer` does not override them."""

# LightGBM aliases of the keys lockgate sets or defaults (from the LightGBM 4 parameter docs).
_LGB_ALIASES: dict[str, str] = {
    **dict.fromkeys(["objective_type", "app", "application", "loss"], "objective"),
    **dict.fromkeys(["shrinkage_rate", "eta"], "learning_rate"),
    **dict.fromkeys(["num_leaf", "max_leaves", "max_leaf", "max_leaf_nodes"], "num_leaves"),
    **dict.fromkeys(
        ["min_data_per_leaf", "min_data", "min_child_samples", "min_samples_leaf"],
        "min_data_in_leaf",
    ),
    **dict.fromkeys(
        ["min_sum_hessian_per_leaf", "min_sum_hessian", "min_hessian", "min_child_weight"],
        "min_sum_hessian_in_leaf",
    ),
    **dict.fromkeys(["sub_feature", "colsample_bytree"], "feature_fraction"),
    **dict.fromkeys(["sub_row", "subsample", "bagging"], "bagging_fraction"),
    "subsample_freq": "bagging_freq",
    **dict.fromkeys(["reg_lambda", "lambda"], "lambda_l2"),
    **dict.fromkeys(["reg_alpha", "l1_regularization"], "lambda_l1"),
    "max_bins": "max_bin",
    "verbose": "verbosity",
    **dict.fromkeys(["metrics", "metric_types"], "metric"),
    **dict.fromkeys(["random_seed", "random_state"], "seed"),
    **dict.fromkeys(["num_thread", "nthread", "nthreads", "n_jobs"], "num_threads"),
    **dict.fromkeys(
        [
            "num_iteration",
            "n_iter",
            "num_tree",
            "num_trees",
            "num_round",
            "num_rounds",
            "nrounds",
            "num_boost_round",
            "n_estimators",
            "max_iter",
        ],
        "num_iterations",
    ),
    "bagging_fraction_seed": "bagging_seed",
    "data_seed": "data_random_seed",
    "device": "device_type",
    "num_classes": "num_class",
    **dict.fromkeys(
        ["cat_feature", "categorical_column", "cat_column", "categorical_features"],
        "categorical_feature",
    ),
}

# Keys lockgate sets itself, with what controls them instead.
_LGB_RESERVED: dict[str, str] = {
    "seed": "the trainer's `seed` field",
    "bagging_seed": "the trainer's `seed` field (LightGBM derives it from `seed`)",
    "feature_fraction_seed": "the trainer's `seed` field (LightGBM derives it from `seed`)",
    "data_random_seed": "the trainer's `seed` field (LightGBM derives it from `seed`)",
    "drop_seed": "the trainer's `seed` field (LightGBM derives it from `seed`)",
    "extra_seed": "the trainer's `seed` field (LightGBM derives it from `seed`)",
    "objective_seed": "the trainer's `seed` field (LightGBM derives it from `seed`)",
    "num_threads": "the trainer's `num_threads` field",
    "num_iterations": "the trainer's `num_boost_round` field",
    "deterministic": "lockgate (always true)",
    "force_row_wise": "lockgate (always true)",
    "force_col_wise": "lockgate (row-wise histograms are forced)",
    "device_type": "lockgate (CPU only, for bit-identical results)",
    "categorical_feature": "the column dtypes (object, string and category columns)",
    "num_class": "the task (fit(task='multiclass') counts the label's classes)",
}

_LGB_BINARY_OBJECTIVES = frozenset({"binary", "cross_entropy", "xentropy"})
# The task of each classification objective name LightGBM writes into model.txt; every other
# objective is a regression.
_LGB_OBJECTIVE_TASKS: dict[str, Task] = {
    "binary": "binary",
    "cross_entropy": "binary",
    "xentropy": "binary",
    "multiclass": "multiclass",
    "multiclassova": "multiclass",
}


# --------------------------------------------------------------------------------------------
# Trainer specs and the trainer protocol (helpers first: class definitions use them)
# --------------------------------------------------------------------------------------------


CONFIG_CLASS_KEY = "class"
"""Key of a trainer config naming the trainer class as ``"module:Class"``."""
CONFIG_CODE_KEY = "code_sha256"
"""Key of a trainer config mapping each of its code modules to the sha256 of its source file."""
CONFIG_LIBRARIES_KEY = "libraries"
"""Key of a trainer config mapping the libraries a trainer declares to their versions."""
_IDENTITY_KEYS = (CONFIG_CLASS_KEY, CONFIG_CODE_KEY, CONFIG_LIBRARIES_KEY)

_BUILTIN_TRAINER_PATHS: dict[str, str] = {
    "lightgbm": f"{__name__}:LightGBMTrainer",
    "torch": f"{__name__}:TorchTrainer",
}
_SHIPPED_TRAINERS: dict[str, str] = {
    "sklearn": "lockgate.training.sklearn_trainer:SklearnTrainer",
    "torch_module": "lockgate.training.torch_module_trainer:TorchModuleTrainer",
}
TRAINER_KINDS: tuple[str, ...] = tuple(sorted([*_BUILTIN_TRAINER_PATHS, *_SHIPPED_TRAINERS]))
"""The trainer kinds lockgate ships (any other kind comes with its ``class``)."""
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def import_path(obj: Any) -> str:
    """``"module:QualName"`` of a class or function, refusing what cannot be imported again.

    Args:
        obj: A class or function.

    Returns:
        The import path, e.g. ``"lockgate.training.trainers:LightGBMTrainer"``.

    Raises:
        SpecError: When ``obj`` lives in ``__main__`` or inside a function (``<locals>``).
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise SpecError(
            f"{obj!r} has no module and qualified name; rule: trainers and models are classes "
            f"importable as 'module:Class'; fix: define it as a class in a module"
        )
    if module == "__main__" or "<locals>" in qualname:
        where = "the __main__ script" if module == "__main__" else "a function body"
        raise SpecError(
            f"{qualname!r} is defined in {where} ({module}:{qualname}); rule: reproduce and "
            f"the Triton stub re-import trainers and models by 'module:Class'; fix: move it "
            f"into a module of your project (e.g. my_project/trainers.py)"
        )
    return f"{module}:{qualname}"


def import_object(path: str, *, what: str = "object") -> Any:
    """Imports ``"module:QualName"`` (e.g. ``"sklearn.linear_model:LogisticRegression"``).

    Args:
        path: The import path.
        what: What the object is, for messages (``"trainer class"``, ...).

    Returns:
        The object.

    Raises:
        SpecError: When the path is malformed, the module cannot be imported or lacks the name.
    """
    if not isinstance(path, str) or not re.fullmatch(
        r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", path
    ):
        raise SpecError(
            f"{what} {path!r} is not an import path; rule: 'package.module:Name'; fix: write "
            f"e.g. 'my_project.trainers:MyTrainer'"
        )
    module_name, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise SpecError(
            f"{what} {path!r} cannot be imported: module {module_name!r} fails with "
            f"{type(exc).__name__}: {exc}; rule: the module must be importable where the model "
            f"is trained, reproduced and served (the Triton stub uses the virtualenv's "
            f"site-packages); fix: install the package that provides {module_name!r} (e.g. "
            f"`pip install -e .` in your project) or correct the path"
        ) from exc
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise SpecError(
                f"{what} {path!r} cannot be imported: module {module_name!r} has no "
                f"{qualname!r}; rule: 'module:Name' names an attribute of the module; fix: "
                f"correct the name (the module defines "
                f"{sorted(n for n in dir(obj) if not n.startswith('_'))[:12]})"
            )
        obj = getattr(obj, part)
    return obj


def source_sha256(module_name: str) -> str:
    """Hex sha256 of the source file of a module: the identity of a trainer's code.

    Args:
        module_name: An importable module name.

    Returns:
        The sha256 of the bytes of its ``.py`` file.

    Raises:
        SpecError: When the module cannot be imported or has no source file.
    """
    try:
        module = importlib.import_module(module_name)
        path = inspect.getsourcefile(module)
    except Exception as exc:
        raise SpecError(
            f"module {module_name!r} of a trainer cannot be imported ({type(exc).__name__}: "
            f"{exc}); rule: trainer code is importable; fix: install it"
        ) from exc
    if path is None:
        raise SpecError(
            f"module {module_name!r} has no Python source file; rule: the lock record stores "
            f"the sha256 of each trainer module's source; fix: define the trainer in a .py module"
        )
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _library_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def _check_trainer_class(cls: type[Trainer]) -> None:
    """Checks a Trainer subclass's ``kind`` and field names at class definition."""
    field = cls.model_fields.get("kind")
    if field is None:
        return  # an abstract base such as CustomTrainer: instances need a kind (check_trainer)
    kind = field.default
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise TypeError(
            f"trainer class {cls.__qualname__} has kind={kind!r}; rule: a trainer declares "
            f"`kind: Literal['my_kind'] = 'my_kind'` (lowercase letters, digits, '_'); fix: "
            f"add that field"
        )
    path = f"{cls.__module__}:{cls.__qualname__}"
    if path in (f"{__name__}:LightGBMTrainer", f"{__name__}:TorchTrainer"):
        return
    owner_path = _BUILTIN_TRAINER_PATHS.get(kind) or _SHIPPED_TRAINERS.get(kind)
    if owner_path is not None and path != owner_path:
        owner = import_object(owner_path, what="trainer class")
        if not issubclass(cls, owner):
            raise TypeError(
                f"trainer class {cls.__qualname__} uses kind {kind!r} of lockgate's "
                f"{owner_path}; rule: a kind names one family of models (only that class and "
                f"its subclasses use it); fix: give it a kind of its own"
            )
    reserved = [name for name in cls.model_fields if name in _IDENTITY_KEYS]
    if reserved:
        raise TypeError(
            f"trainer class {cls.__qualname__} has field(s) {reserved}; rule: "
            f"{list(_IDENTITY_KEYS)} are written by Trainer.config(); fix: rename them"
        )


def _checked_fit(fit: Any) -> Any:
    """Wraps a trainer's ``fit`` so that its model is checked against the protocol."""

    @functools.wraps(fit)
    def checked(self: Trainer, *args: Any, **kwargs: Any) -> TrainedModel:
        model = fit(self, *args, **kwargs)
        _check_fitted(self, model)
        return model

    checked._lockgate_checked = True  # type: ignore[attr-defined]
    return checked


def _check_fitted(trainer: Trainer, model: Any) -> None:
    name = type(trainer).__qualname__
    if not isinstance(model, TrainedModel):
        raise TrainingError(
            f"{name}.fit returned a {type(model).__name__}; rule: fit returns a TrainedModel "
            f"(a CustomModel for a custom trainer); fix: return one"
        )
    if model.kind != trainer.kind:
        raise TrainingError(
            f"{name}.fit returned a {type(model).__qualname__} of kind {model.kind!r} but the "
            f"trainer's kind is {trainer.kind!r}; rule: the lock record stores the trainer's "
            f"kind and TrainedModel.load(kind, files) rebuilds the model from it; fix: give "
            f"trainer and model the same kind"
        )
    builtin = _MODELS.get(model.kind)
    if builtin is not None:
        if type(model) is not builtin:
            raise TrainingError(
                f"{name}.fit returned a {type(model).__qualname__}; rule: models of kind "
                f"{model.kind!r} load as {builtin.__name__} exactly, so a subclass would be "
                f"evaluated and served as the stock class; fix: return a {builtin.__name__}, or "
                f"a CustomModel with a kind of its own"
            )
    elif not isinstance(model, CustomModel):
        raise TrainingError(
            f"{name}.fit returned a {type(model).__qualname__}, not a CustomModel; rule: "
            f"models of custom kinds subclass CustomModel (it writes the manifest that "
            f"TrainedModel.load needs); fix: derive the model class from CustomModel"
        )
    else:
        import_path(type(model))


class Trainer(BaseModel):
    """Base of every trainer spec: the protocol a trainer satisfies (see "Trainer protocol").

    A trainer is a frozen pydantic model with a ``kind`` (a ``Literal`` default: lowercase
    letters, digits and ``_``), a ``seed`` and :meth:`fit`. :meth:`config` is what the lock
    record stores and :func:`trainer_from_config` rebuilds it from. Built-in trainers
    (:class:`LightGBMTrainer`, :class:`TorchTrainer`) keep the config they always had; any other
    class (a :class:`CustomTrainer`, or a subclass of a built-in one) adds its identity:
    ``class`` (``"module:Class"``) and ``code_sha256`` (the sha256 of the source file of each
    module its code lives in), so ``reproduce`` re-imports the same class and names the module
    whose code changed (:func:`trainer_code_differences`).

    Every ``fit`` of a subclass is checked on return: it must give a :class:`TrainedModel` of the
    trainer's own ``kind`` that :meth:`TrainedModel.load` rebuilds as the same class, so what is
    trained is what is evaluated, reproduced and served.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    if TYPE_CHECKING:
        kind: str
        seed: int

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Checks the subclass's kind and wraps its ``fit`` with the return-value check."""
        super().__pydantic_init_subclass__(**kwargs)
        _check_trainer_class(cls)
        fit = cls.__dict__.get("fit")
        if fit is not None and not getattr(fit, "_lockgate_checked", False):
            type.__setattr__(cls, "fit", _checked_fit(fit))

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        label: str,
        task: Task = "binary",
    ) -> TrainedModel:
        """Fits a model on ``frame`` (every trainer implements it).

        Args:
            frame: Training rows.
            features: Feature columns, in the order the model uses them.
            label: Label column (see :func:`check_labels` for each task's rules).
            task: One of :data:`TASKS`.

        Returns:
            The trained model, of this trainer's ``kind``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement fit()")

    def code_modules(self) -> tuple[str, ...]:
        """The modules whose source is this trainer's code (their sha256 go into :meth:`config`).

        Returns:
            The module of the trainer's class; trainers that import more user code (e.g. a
            network class named in a field) add those modules.
        """
        return (type(self).__module__,)

    def config(self) -> dict[str, Any]:
        """The complete spec as a JSON-able dict; :func:`trainer_from_config` rebuilds it.

        Returns:
            Every field, ``kind`` included, with tuples as lists; for a class other than the
            built-in :class:`LightGBMTrainer` and :class:`TorchTrainer` also ``class``
            (``"module:Class"``), ``code_sha256`` (module name -> sha256 of its source file)
            and, when the class lists them in ``libraries``, ``libraries`` (distribution name ->
            installed version).
        """
        cfg = self.model_dump(mode="json")
        if type(self) in _BUILTIN_TRAINERS:
            return cfg
        cfg[CONFIG_CLASS_KEY] = import_path(type(self))
        cfg[CONFIG_CODE_KEY] = {name: source_sha256(name) for name in self.code_modules()}
        libraries = getattr(type(self), "libraries", ())
        if libraries:
            cfg[CONFIG_LIBRARIES_KEY] = {name: _library_version(name) for name in libraries}
        return cfg


class LightGBMTrainer(Trainer):
    """Gradient-boosted trees with LightGBM, bit-identical under ``seed``.

    ``params`` are merged over :data:`DEFAULT_LIGHTGBM_PARAMS` (aliases are renamed to
    LightGBM's canonical names), so :meth:`config` always lists the complete parameter set.
    Seeds, threads, the number of rounds, determinism flags, the device, categorical columns
    and ``num_class`` are set by lockgate and may not appear in ``params``.

    ``params['objective']`` (a binary objective) applies to ``task="binary"``; the other tasks
    replace it with theirs: ``multiclass`` (softmax, ``num_class`` = the number of classes) and
    ``regression`` (L2). The other parameters apply to every task.

    Example:
        >>> trainer = LightGBMTrainer(num_boost_round=50)
        >>> model = trainer.fit(frame, features=["amount", "channel"], label="y")  # doctest: +SKIP
        >>> model.task, model.predict(frame).shape  # doctest: +SKIP
        ('binary', (1000,))

    Attributes:
        kind: Always ``"lightgbm"``.
        params: LightGBM parameters (JSON scalars) over the defaults.
        num_boost_round: Number of boosting rounds.
        seed: Seed of every random choice (bagging, feature fraction, bin sampling).
        num_threads: OpenMP threads used while training.
    """

    kind: Literal["lightgbm"] = "lightgbm"
    params: dict[str, JsonScalar] = Field(default_factory=lambda: dict(DEFAULT_LIGHTGBM_PARAMS))
    num_boost_round: int = Field(default=200, ge=1, le=100_000)
    seed: int = Field(default=0, ge=0, le=_MAX_SEED)
    num_threads: int = Field(default=1, ge=1, le=1024)

    @field_validator("params")
    @classmethod
    def _merge_params(cls, value: dict[str, JsonScalar]) -> dict[str, JsonScalar]:
        """Renames aliases, rejects reserved keys and merges over the defaults."""
        canonical: dict[str, JsonScalar] = {}
        for key, item in value.items():
            name = _LGB_ALIASES.get(key, key)
            if name in _LGB_RESERVED:
                raise ValueError(
                    f"params[{key!r}] is set by {_LGB_RESERVED[name]}; rule: lockgate controls "
                    f"it to keep training bit-identical; fix: remove {key!r} from params"
                )
            if name in canonical:
                raise ValueError(
                    f"params sets {name!r} twice (through an alias: {key!r}); rule: each "
                    f"LightGBM parameter once; fix: keep one of the two keys"
                )
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(
                    f"params[{key!r}]={item!r} is not finite; rule: parameters are finite JSON "
                    f"numbers; fix: give a finite value"
                )
            canonical[name] = item
        merged = {**DEFAULT_LIGHTGBM_PARAMS, **canonical}
        objective = merged["objective"]
        if objective not in _LGB_BINARY_OBJECTIVES:
            raise ValueError(
                f"params['objective']={objective!r} is not a binary-probability objective; "
                f"rule: params['objective'] is one of {sorted(_LGB_BINARY_OBJECTIVES)} (the "
                f"objective of task='binary'; the task picks the others); fix: use 'binary', or "
                f"remove it and declare task='multiclass' or task='regression' on the pipeline"
            )
        return merged

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        label: str,
        task: Task = "binary",
    ) -> LightGBMModel:
        """Fits a booster on ``frame``.

        Args:
            frame: Training rows.
            features: Feature columns, in the order the model uses them. Numeric and bool
                columns are median-imputed; object, string and category columns become
                LightGBM categorical features (sorted vocabulary, one unknown code).
            label: Label column: values 0 and 1 for ``"binary"`` (both must occur), integer or
                string classes for ``"multiclass"``, finite numbers for ``"regression"``
                (see :func:`check_labels`).
            task: One of :data:`TASKS`.

        Returns:
            The trained model.

        Raises:
            SpecError: On an invalid feature list or an unknown task.
            SchemaError: When columns are missing or have an unusable dtype.
            EmptyDataError: When ``frame`` has no rows.
            DataError: When a numeric feature holds infinite values.
            TrainingError: On labels that do not fit the task, or a LightGBM failure.
        """
        import lightgbm as lgb

        preprocessor, x, y = _prepare(
            frame, features=features, label=label, model_kind="lightgbm", task=task
        )
        params: dict[str, Any] = {
            **self.params,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "device_type": "cpu",
        }
        if task == "multiclass":
            params["objective"] = "multiclass"
            params["num_class"] = len(preprocessor.classes)
        elif task == "regression":
            params["objective"] = "regression"
        try:
            dataset = lgb.Dataset(
                x,
                label=y,
                feature_name=_lightgbm_feature_names(preprocessor.features),
                categorical_feature=preprocessor.categorical_indices,
                params=params,
                free_raw_data=True,
            )
            booster = lgb.train(params, dataset, num_boost_round=self.num_boost_round)
        except lgb.basic.LightGBMError as exc:
            raise TrainingError(
                f"LightGBM failed to train on {len(frame)} rows for task={task!r}: {exc}; rule: "
                f"the params must be valid LightGBM parameters for the task; fix: check params "
                f"{sorted(self.params)}"
            ) from exc
        model_text = booster.model_to_string().encode("utf-8")
        return LightGBMModel(model_text=model_text, preprocessor=preprocessor)


class TorchTrainer(Trainer):
    """A ReLU multilayer perceptron trained with AdamW, with a head per task.

    Numeric features are median-imputed and standardised; categorical features are one-hot
    encoded with an extra bucket for unseen or missing values. Heads: ``"binary"`` one logit,
    sigmoid, binary cross-entropy; ``"multiclass"`` k logits, softmax, cross-entropy;
    ``"regression"`` one linear output trained with MSE on the standardised label, scaled
    back to label units by the network.

    Example:
        >>> trainer = TorchTrainer(hidden_sizes=(32,), epochs=5)
        >>> model = trainer.fit(frame, features=["x"], label="y", task="regression")  # doctest: +SKIP
        >>> model.predict(frame).shape  # doctest: +SKIP
        (1000,)

    Attributes:
        kind: Always ``"torch"``.
        hidden_sizes: Widths of the hidden layers (empty: logistic regression).
        epochs: Passes over the training rows.
        batch_size: Rows per optimiser step.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW (decoupled) weight decay.
        seed: Seed of the weight initialisation and of the batch shuffling.
        num_threads: torch intra-op threads while training (restored afterwards).
        pos_weight: Weight of the positive class in the loss; None means 1 (calibrated
            probabilities). ``task="binary"`` only.
    """

    kind: Literal["torch"] = "torch"
    hidden_sizes: tuple[Annotated[int, Field(ge=1, le=65_536)], ...] = (64, 32)
    epochs: int = Field(default=10, ge=1, le=100_000)
    batch_size: int = Field(default=512, ge=1, le=10_000_000)
    learning_rate: float = Field(default=1e-3, gt=0.0, allow_inf_nan=False)
    weight_decay: float = Field(default=1e-5, ge=0.0, allow_inf_nan=False)
    seed: int = Field(default=0, ge=0, le=_MAX_SEED)
    num_threads: int = Field(default=1, ge=1, le=1024)
    pos_weight: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)

    def fit(
        self,
        frame: pd.DataFrame,
        *,
        features: Sequence[str],
        label: str,
        task: Task = "binary",
    ) -> TorchModel:
        """Trains the network on ``frame``.

        Args:
            frame: Training rows.
            features: Feature columns, in the order the model uses them.
            label: Label column: values 0 and 1 for ``"binary"`` (both must occur), integer or
                string classes for ``"multiclass"``, finite numbers for ``"regression"``
                (see :func:`check_labels`).
            task: One of :data:`TASKS`.

        Returns:
            The trained model.

        Raises:
            SpecError: On an invalid feature list, an unknown task, or ``pos_weight`` with a
                task other than ``"binary"``.
            SchemaError: When columns are missing or have an unusable dtype.
            EmptyDataError: When ``frame`` has no rows.
            DataError: When a numeric feature holds infinite values.
            TrainingError: On labels that do not fit the task, or a non-finite loss.
        """
        import torch

        _check_task(task)
        if self.pos_weight is not None and task != "binary":
            raise SpecError(
                f"TorchTrainer.pos_weight={self.pos_weight!r} with task={task!r}; rule: "
                f"pos_weight weighs the positive class of a binary label only; fix: remove "
                f"pos_weight from the trainer spec or declare task='binary'"
            )
        preprocessor, x, y = _prepare(
            frame, features=features, label=label, model_kind="torch", task=task
        )
        target = _target_standardization(y) if task == "regression" else None
        architecture = _architecture(
            preprocessor.input_dim,
            self.hidden_sizes,
            task=task,
            output_dim=preprocessor.output_width,
            target=target,
        )
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / self.batch_size)
        with _deterministic_torch(num_threads=self.num_threads):
            generator = torch.Generator(device="cpu")
            generator.manual_seed(self.seed)
            net = _build_network(architecture, generator=generator)
            x_all = torch.from_numpy(x)
            loss_fn: torch.nn.Module
            if task == "binary":
                logits_net = net[:-1]  # the same layers without the final sigmoid
                y_all = torch.from_numpy(y.astype(np.float32))
                pos_weight = None if self.pos_weight is None else torch.tensor([self.pos_weight])
                loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
            elif task == "multiclass":
                logits_net = net[:-1]  # the same layers without the final softmax
                y_all = torch.from_numpy(y.astype(np.int64))
                loss_fn = torch.nn.CrossEntropyLoss()
            else:
                assert target is not None
                logits_net = net  # no output activation: the standardised label
                standardised = (y - target["mean"]) / target["scale"]
                y_all = torch.from_numpy(standardised.astype(np.float32))
                loss_fn = torch.nn.MSELoss()
            optimizer = torch.optim.AdamW(
                net.parameters(),
                lr=self.learning_rate,
                weight_decay=self.weight_decay,
                foreach=False,
            )
            net.train()
            for epoch in range(self.epochs):
                order = torch.randperm(n, generator=generator)
                for step in range(steps_per_epoch):
                    rows = order[step * self.batch_size : (step + 1) * self.batch_size]
                    logits = logits_net(x_all[rows])
                    if task != "multiclass":
                        logits = logits.squeeze(1)
                    loss = loss_fn(logits, y_all[rows])
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise TrainingError(
                            f"torch training diverged: the loss is {value} at epoch "
                            f"{epoch + 1}/{self.epochs}, step {step + 1}/{steps_per_epoch} with "
                            f"learning_rate={self.learning_rate!r}; rule: the training loss "
                            f"must stay finite; fix: lower learning_rate (e.g. "
                            f"{self.learning_rate / 10:g}) or check the features for extreme "
                            f"values"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    try:
                        loss.backward()
                        optimizer.step()
                    except RuntimeError as exc:  # e.g. an update overflowing float32
                        raise TrainingError(
                            f"torch training failed at epoch {epoch + 1}/{self.epochs}, step "
                            f"{step + 1}/{steps_per_epoch} with learning_rate="
                            f"{self.learning_rate!r}: {exc}; rule: optimiser steps must stay "
                            f"representable in float32; fix: lower learning_rate"
                        ) from exc
            net.eval()
            for name, tensor in net.state_dict().items():
                if not bool(torch.isfinite(tensor).all()):
                    raise TrainingError(
                        f"torch training produced non-finite weights in {name!r} after "
                        f"{self.epochs} epochs with learning_rate={self.learning_rate!r}; rule: "
                        f"weights must be finite; fix: lower learning_rate"
                    )
        weights = _safetensors_bytes(net)
        return TorchModel(weights=weights, architecture=architecture, preprocessor=preprocessor)


_BUILTIN_TRAINERS: dict[type[Trainer], str] = {LightGBMTrainer: "lightgbm", TorchTrainer: "torch"}
_TRAINERS: dict[str, type[Trainer]] = {"lightgbm": LightGBMTrainer, "torch": TorchTrainer}


class CustomTrainer(Trainer):
    """Base class of a trainer outside the two built-in ones ("bring your own trainer").

    Subclass it in an importable module of your project (not ``__main__``, not inside a
    function: ``reproduce`` and the Triton stub re-import it by ``"module:Class"``), give it
    ``kind: Literal["my_kind"] = "my_kind"`` (lowercase letters, digits and ``_``; not a kind
    lockgate ships), fields with defaults for every setting (a ``seed`` field is inherited), and
    a ``fit`` that returns a :class:`CustomModel` of the same ``kind``. Optionally list the
    distributions whose versions matter in ``libraries`` (a ``ClassVar``): :meth:`config`
    records them and :func:`trainer_code_differences` reports changes.

    Example:
        >>> class MeanTrainer(CustomTrainer):  # doctest: +SKIP
        ...     kind: Literal["mean"] = "mean"
        ...
        ...     def fit(self, frame, *, features, label, task="binary"):
        ...         data = prepare_training(frame, features=features, label=label,
        ...                                 task=task, kind=self.kind)
        ...         return MeanModel(mean=float(data.y.mean()), preprocessing=data.preprocessing)

    Attributes:
        seed: Seed of every random choice of the trainer.
        libraries: Distribution names recorded with their versions in :meth:`config`.
    """

    seed: int = Field(default=0, ge=0, le=_MAX_SEED)
    libraries: ClassVar[tuple[str, ...]] = ()


TrainerSpec = Annotated[
    Trainer,
    PlainValidator(lambda value: check_trainer(value)),
    PlainSerializer(lambda trainer: trainer.config(), return_type=dict),
]
"""A trainer field in a pydantic model: any :class:`Trainer` (or its config dict), checked by
:func:`check_trainer`; it serializes as :meth:`Trainer.config`."""


def check_trainer(value: Any) -> Trainer:
    """Accepts a trainer for a pipeline spec, or refuses it with the rule and the fix.

    A built-in trainer passes as is. Any other :class:`Trainer` subclass (a
    :class:`CustomTrainer`, or a subclass of :class:`LightGBMTrainer` / :class:`TorchTrainer`)
    must be importable by ``"module:Class"`` and round-trip through :meth:`Trainer.config` and
    :func:`trainer_from_config` to an equal trainer of the same class: that is what ``reproduce``
    and the model's lock record rely on. A config dict is rebuilt with
    :func:`trainer_from_config`.

    Args:
        value: A trainer, or a trainer config dict.

    Returns:
        The trainer.

    Raises:
        SpecError: When the value is not a trainer, its class cannot be re-imported, or its
            config does not rebuild it.
    """
    if isinstance(value, Mapping):
        return trainer_from_config(value)
    if not isinstance(value, Trainer):
        raise SpecError(
            f"trainer {value!r} is a {type(value).__name__}; rule: a Trainer (LightGBMTrainer, "
            f"TorchTrainer, SklearnTrainer, TorchModuleTrainer or a CustomTrainer subclass) or "
            f"its config dict; fix: pass e.g. LightGBMTrainer(seed=7)"
        )
    if type(value) in _BUILTIN_TRAINERS:
        return value
    if "kind" not in type(value).model_fields:
        raise SpecError(
            f"trainer {type(value).__qualname__} has no kind; rule: a trainer declares "
            f"`kind: Literal['my_kind'] = 'my_kind'`; fix: add that field"
        )
    path = import_path(type(value))
    rebuilt = trainer_from_config(value.config())
    if type(rebuilt) is not type(value) or rebuilt != value:
        raise SpecError(
            f"trainer {path} does not rebuild from its config (rebuilt: "
            f"{type(rebuilt).__qualname__} {rebuilt!r}); rule: reproduce rebuilds the trainer "
            f"from the config in the lock record, so every setting must be a field; fix: turn "
            f"attributes set outside the fields into pydantic fields"
        )
    return value


def trainer_from_config(cfg: Mapping[str, Any]) -> Trainer:
    """Rebuilds a trainer from :meth:`Trainer.config` (e.g. the ``trainer`` of a lock record).

    Resolution: a ``class`` key (``"module:Class"``) is imported; otherwise ``kind`` names a
    trainer lockgate ships (:data:`TRAINER_KINDS`). The identity keys (``class``,
    ``code_sha256``, ``libraries``) are not fields; a changed ``code_sha256`` does not stop the
    rebuild (:func:`trainer_code_differences` reports it).

    Args:
        cfg: A config dict with a ``kind`` key.

    Returns:
        The trainer spec, equal to the one that produced ``cfg``.

    Raises:
        SpecError: For an unknown kind, an import path that cannot be imported or names no
            trainer of that kind, or invalid fields.
    """
    if not isinstance(cfg, Mapping):
        raise SpecError(
            f"trainer config is a {type(cfg).__name__}; rule: it must be a mapping with a "
            f"'kind' key; fix: pass the dict returned by trainer.config()"
        )
    kind = cfg.get("kind")
    path = cfg.get(CONFIG_CLASS_KEY)
    trainer_cls: Any
    if path is not None:
        trainer_cls = import_object(path, what="trainer class")
        if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, Trainer)):
            raise SpecError(
                f"trainer class {path!r} is a {type(trainer_cls).__name__}, not a Trainer "
                f"subclass; rule: 'class' names a lockgate Trainer (e.g. a CustomTrainer "
                f"subclass); fix: point it at your trainer class"
            )
        declared = trainer_cls.model_fields["kind"].default
        if declared != kind:
            raise SpecError(
                f"trainer class {path!r} has kind {declared!r} but the config says {kind!r}; "
                f"rule: the config's kind is the class's; fix: correct 'kind' or 'class'"
            )
    elif isinstance(kind, str) and kind in _TRAINERS:
        trainer_cls = _TRAINERS[kind]
    elif isinstance(kind, str) and kind in _SHIPPED_TRAINERS:
        trainer_cls = import_object(_SHIPPED_TRAINERS[kind], what="trainer class")
    else:
        raise SpecError(
            f"trainer kind {kind!r} is unknown; rule: kind must be one of "
            f"{list(TRAINER_KINDS)}, or the config names its trainer class with "
            f"'{CONFIG_CLASS_KEY}': 'module:Class'; fix: set 'kind' to one of them or add "
            f"'{CONFIG_CLASS_KEY}'"
        )
    fields = {key: value for key, value in cfg.items() if key not in _IDENTITY_KEYS}
    try:
        return cast(Trainer, trainer_cls.model_validate(fields))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SpecError(
            f"trainer config of kind {kind!r} is invalid: {problems}; rule: fields must match "
            f"{trainer_cls.__name__}; fix: correct or remove those fields"
        ) from exc


def trainer_code_differences(cfg: Mapping[str, Any]) -> list[str]:
    """What differs between a locked trainer config's code identity and the code now (pure read).

    Args:
        cfg: The ``trainer`` of a lock record.

    Returns:
        One line per trainer module whose source sha256 changed (or that cannot be imported
        now) and per declared library whose version changed; empty for built-in trainers.
    """
    diffs: list[str] = []
    code = cfg.get(CONFIG_CODE_KEY) if isinstance(cfg, Mapping) else None
    for module_name, locked in sorted((code or {}).items()):
        try:
            now = source_sha256(module_name)
        except SpecError as exc:
            diffs.append(f"trainer code module {module_name!r} cannot be read now: {exc}")
            continue
        if now != locked:
            diffs.append(
                f"trainer code module {module_name!r} sha256 {str(locked)[:12]} locked, "
                f"{now[:12]} now (its source file changed)"
            )
    libraries = cfg.get(CONFIG_LIBRARIES_KEY) if isinstance(cfg, Mapping) else None
    for name, locked in sorted((libraries or {}).items()):
        now_version = _library_version(name)
        if now_version != locked:
            diffs.append(f"trainer library {name} {locked} locked, {now_version} now")
    return diffs


# --------------------------------------------------------------------------------------------
# Trained models
# --------------------------------------------------------------------------------------------


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
        task, classes = _task_fields(preprocessing)
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

    def preprocess(self, frame: pd.DataFrame) -> _Float32Matrix:
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

    def predict(self, frame: pd.DataFrame) -> _Float64Array:
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

    def predict_proba(self, frame: pd.DataFrame) -> _Float64Array:
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

    def _predict_matrix(self, x: _Float32Matrix) -> _Float64Array:
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
                if base.__module__ == __name__ and base.__name__ in _BUILTIN_MODEL_NAMES
            ),
            None,
        )
        if builtin is not None and cls.__module__ != __name__:
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
        model_cls = _MODELS.get(kind) if isinstance(kind, str) else None
        if model_cls is not None:
            return model_cls._from_files(files)
        if (
            not isinstance(kind, str)
            or not _KIND.match(kind)
            or not isinstance(files, Mapping)
            or MODEL_MANIFEST_FILE not in files
        ):
            raise SpecError(
                f"model kind {kind!r} is unknown; rule: kind must be one of {sorted(_MODELS)}, "
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


_BUILTIN_MODEL_NAMES = ("LightGBMModel", "TorchModel")
MODEL_MANIFEST_FILE = "lockgate_model.json"
"""The manifest a :class:`CustomModel` adds to its files: format, kind and model class."""
_MODEL_MANIFEST_FORMAT = "lockgate.model/1"


def _model_manifest(files: Mapping[str, bytes], *, kind: str) -> dict[str, Any]:
    found = _require_files(files, [MODEL_MANIFEST_FILE], kind=kind)
    manifest = _parse_json(found[MODEL_MANIFEST_FILE], name=MODEL_MANIFEST_FILE)
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
        if preprocessing.model_kind != self.kind:
            raise ArtifactIntegrityError(
                f"{PREPROCESSING_FILE} was written for a {preprocessing.model_kind!r} model; "
                f"rule: it must match the model kind {self.kind!r}; fix: prepare the training "
                f"data with kind={self.kind!r}, or load the files of one model version together"
            )
        super().__init__(preprocessor=preprocessing)
        self._own_files: dict[str, bytes] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Checks ``kind`` and ``weights_file`` of a concrete subclass."""
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind is None:
            return  # an intermediate base class
        if not isinstance(kind, str) or not _KIND.match(kind) or kind in _BUILTIN_KINDS:
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

    def predict_matrix(self, x: _Float32Matrix) -> _Float64Array:
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
            MODEL_MANIFEST_FILE: _json_bytes(manifest),
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

    def _predict_matrix(self, x: _Float32Matrix) -> _Float64Array:
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
        found = _require_files(files, [PREPROCESSING_FILE, cls.weights_file], kind=cls.kind)
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


class LightGBMModel(TrainedModel):
    """A LightGBM booster with its preprocessing."""

    kind: ClassVar[str] = "lightgbm"
    weights_file: ClassVar[str] = LIGHTGBM_MODEL_FILE

    def __init__(self, *, model_text: bytes, preprocessor: Preprocessing) -> None:
        """Parses the booster from LightGBM's text format.

        Args:
            model_text: Content of ``model.txt``.
            preprocessor: The preprocessing fitted with it.

        Raises:
            ArtifactIntegrityError: When the text is not a LightGBM model for these features.
        """
        import lightgbm as lgb

        super().__init__(preprocessor=preprocessor)
        if preprocessor.model_kind != self.kind:
            raise ArtifactIntegrityError(
                f"{PREPROCESSING_FILE} was written for a {preprocessor.model_kind!r} model; "
                f"rule: it must match the model kind {self.kind!r}; fix: load the files of one "
                f"model version together"
            )
        try:
            booster = lgb.Booster(model_str=model_text.decode("utf-8"))
        except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
            raise ArtifactIntegrityError(
                f"{LIGHTGBM_MODEL_FILE} ({len(model_text)} bytes) is not a readable LightGBM "
                f"model: {exc}; rule: it must be LightGBM's text format; fix: restore the file "
                f"from the registry"
            ) from exc
        if booster.num_feature() != preprocessor.input_dim:
            raise ArtifactIntegrityError(
                f"{LIGHTGBM_MODEL_FILE} expects {booster.num_feature()} features but "
                f"{PREPROCESSING_FILE} produces {preprocessor.input_dim}; rule: both files come "
                f"from one fit; fix: load the files of one model version together"
            )
        objective = _lightgbm_objective(model_text)
        per_iteration = booster.num_model_per_iteration()
        if (
            _LGB_OBJECTIVE_TASKS.get(objective, "regression") != preprocessor.task
            or per_iteration != preprocessor.output_width
        ):
            raise ArtifactIntegrityError(
                f"{LIGHTGBM_MODEL_FILE} has objective {objective!r} with {per_iteration} "
                f"tree(s) per iteration but {PREPROCESSING_FILE} declares task="
                f"{preprocessor.task!r} with {preprocessor.output_width} output(s); rule: both "
                f"files come from one fit; fix: load the files of one model version together"
            )
        self._model_text = model_text
        self._booster = booster

    def _weights_bytes(self) -> bytes:
        return self._model_text

    def _predict_matrix(self, x: _Float32Matrix) -> _Float64Array:
        out = np.asarray(self._booster.predict(x), dtype=np.float64)
        if self.task == "multiclass":
            return out.reshape(-1, self.output_width)
        return out.reshape(-1)

    def files(self) -> dict[str, bytes]:
        """``model.txt`` (LightGBM text model) and ``preprocessing.json``.

        Returns:
            A new dict of file name to bytes.
        """
        return {
            LIGHTGBM_MODEL_FILE: self._model_text,
            PREPROCESSING_FILE: self._preprocessor.to_bytes(),
        }

    @classmethod
    def _from_files(cls, files: Mapping[str, bytes]) -> LightGBMModel:
        found = _require_files(files, [LIGHTGBM_MODEL_FILE, PREPROCESSING_FILE], kind=cls.kind)
        preprocessor = Preprocessing.from_bytes(found[PREPROCESSING_FILE])
        return cls(model_text=found[LIGHTGBM_MODEL_FILE], preprocessor=preprocessor)


class TorchModel(TrainedModel):
    """A torch multilayer perceptron with its preprocessing.

    The network maps the float32 matrix of :meth:`preprocess` to float32 ``(n, width)``: the
    probability of label 1 (binary), the class probabilities (multiclass) or the predicted
    value in label units (regression); :meth:`predict` returns it as float64, flattened
    unless multiclass.
    """

    kind: ClassVar[str] = "torch"
    weights_file: ClassVar[str] = TORCH_WEIGHTS_FILE

    def __init__(
        self,
        *,
        weights: bytes,
        architecture: Mapping[str, Any],
        preprocessor: Preprocessing,
        torchscript: bytes | None = None,
    ) -> None:
        """Builds the network and loads its weights with safetensors.

        Args:
            weights: Content of ``weights.safetensors``.
            architecture: Content of ``architecture.json``, parsed.
            preprocessor: The preprocessing fitted with it.
            torchscript: Content of ``model.torchscript.pt`` when known; generated on demand
                otherwise.

        Raises:
            ArtifactIntegrityError: When the files do not describe one consistent network.
        """
        import torch
        from safetensors.torch import load as load_safetensors

        super().__init__(preprocessor=preprocessor)
        if preprocessor.model_kind != self.kind:
            raise ArtifactIntegrityError(
                f"{PREPROCESSING_FILE} was written for a {preprocessor.model_kind!r} model; "
                f"rule: it must match the model kind {self.kind!r}; fix: load the files of one "
                f"model version together"
            )
        arch = _check_architecture(
            architecture,
            input_dim=preprocessor.input_dim,
            task=preprocessor.task,
            output_dim=preprocessor.output_width,
        )
        try:
            state = load_safetensors(weights)
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise ArtifactIntegrityError(
                f"{TORCH_WEIGHTS_FILE} ({len(weights)} bytes) is not a readable safetensors "
                f"file: {exc}; rule: weights are stored as safetensors; fix: restore the file "
                f"from the registry"
            ) from exc
        net = _build_network(arch, generator=None)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactIntegrityError(
                f"{TORCH_WEIGHTS_FILE} does not fit {TORCH_ARCHITECTURE_FILE} "
                f"(hidden_sizes={arch['hidden_sizes']}): {exc}; rule: both files come from one "
                f"fit; fix: load the files of one model version together"
            ) from exc
        for name, tensor in state.items():
            if tensor.dtype != torch.float32 or not bool(torch.isfinite(tensor).all()):
                raise ArtifactIntegrityError(
                    f"{TORCH_WEIGHTS_FILE} tensor {name!r} is {tensor.dtype} or non-finite; "
                    f"rule: weights are finite float32; fix: restore the file from the registry"
                )
        net.eval()
        net.requires_grad_(False)
        self._net = net
        self._weights = bytes(weights)
        self._architecture = arch
        self._torchscript = torchscript

    def _weights_bytes(self) -> bytes:
        return self._weights

    def _predict_matrix(self, x: _Float32Matrix) -> _Float64Array:
        import torch

        with torch.inference_mode():
            out = self._net(torch.from_numpy(x))
            target = self._architecture.get("target")
            if target is not None:  # regression: back to label units, as the TorchScript does
                out = out * float(target["scale"]) + float(target["mean"])
        if self.task == "multiclass":
            return out.numpy().astype(np.float64)
        return out.numpy().astype(np.float64).reshape(-1)

    @property
    def architecture(self) -> dict[str, Any]:
        """A copy of the network description (the content of ``architecture.json``)."""
        return json.loads(_json_bytes(self._architecture))

    def torchscript(self) -> bytes:
        """The TorchScript export of the scoring graph (float32 ``(n, d)`` -> ``(n, width)``).

        Generated on first use with ``torch.jit.script`` (deprecated in torch 2.13, its
        warnings are silenced here) and stripped of debug records, so the bytes depend on the
        weights and the torch version only.

        Returns:
            Content of ``model.torchscript.pt``.

        Raises:
            TrainingError: When this torch build cannot export TorchScript.
        """
        if self._torchscript is None:
            self._torchscript = _torchscript_bytes(self._net, self._architecture)
        return self._torchscript

    def files(self) -> dict[str, bytes]:
        """``weights.safetensors``, ``model.torchscript.pt``, ``preprocessing.json`` and
        ``architecture.json``.

        Returns:
            A new dict of file name to bytes.
        """
        return {
            TORCH_WEIGHTS_FILE: self._weights,
            TORCH_SCRIPT_FILE: self.torchscript(),
            PREPROCESSING_FILE: self._preprocessor.to_bytes(),
            TORCH_ARCHITECTURE_FILE: _json_bytes(self._architecture),
        }

    @classmethod
    def _from_files(cls, files: Mapping[str, bytes]) -> TorchModel:
        found = _require_files(
            files, [TORCH_WEIGHTS_FILE, PREPROCESSING_FILE, TORCH_ARCHITECTURE_FILE], kind=cls.kind
        )
        preprocessor = Preprocessing.from_bytes(found[PREPROCESSING_FILE])
        architecture = _parse_json(found[TORCH_ARCHITECTURE_FILE], name=TORCH_ARCHITECTURE_FILE)
        torchscript = files.get(TORCH_SCRIPT_FILE)
        return cls(
            weights=found[TORCH_WEIGHTS_FILE],
            architecture=architecture,
            preprocessor=preprocessor,
            torchscript=None if torchscript is None else bytes(torchscript),
        )


_MODELS: dict[str, type[TrainedModel]] = {
    "lightgbm": LightGBMModel,
    "torch": TorchModel,
}


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


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
        self.task, self.classes = _task_fields(spec)
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

    def transform(self, frame: pd.DataFrame) -> _Float32Matrix:
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
            series = _single_column(frame, name)
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
        return _json_bytes(self._spec)

    @classmethod
    def from_bytes(cls, data: bytes) -> Preprocessing:
        """Parses and checks ``preprocessing.json``."""
        spec = _parse_json(data, name=PREPROCESSING_FILE)
        try:
            if spec["format"] != _PREPROCESSING_FORMAT:
                raise ValueError(f"format {spec['format']!r} is not {_PREPROCESSING_FORMAT!r}")
            kind = spec["model_kind"]
            if not isinstance(kind, str) or not _KIND.match(kind):
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


def _numeric_values(series: pd.Series, *, name: str, expected: str) -> _Float64Array:
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


def _single_column(frame: pd.DataFrame, name: str) -> pd.Series:
    column = frame[name]
    if isinstance(column, pd.DataFrame):
        raise SchemaError(
            f"column {name!r} occurs {column.shape[1]} times in the frame; rule: column names "
            f"are unique; fix: drop or rename the duplicates"
        )
    return column


# --------------------------------------------------------------------------------------------
# Shared fit helpers
# --------------------------------------------------------------------------------------------


def _prepare(
    frame: pd.DataFrame,
    *,
    features: Sequence[str],
    label: str,
    model_kind: str,
    task: Task = "binary",
    one_hot: bool | None = None,
    standardize: bool | None = None,
) -> tuple[Preprocessing, _Float32Matrix, _Float64Array]:
    """Validates the inputs, fits the preprocessing and builds ``(x, y)``.

    ``y`` is float64: 0/1 (binary), the index of each row's class in the sorted class list
    (multiclass) or the label value (regression).
    """
    _check_task(task)
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
        _single_column(frame, name)
    if len(frame) == 0:
        raise EmptyDataError(
            f"the training frame has 0 rows (columns {list(frame.columns)[:20]}); rule: a "
            f"model needs training rows; fix: check the snapshot's time range and filters"
        )
    y, classes = _encode_labels(frame[label], task=task, label=label)
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
    x: _Float32Matrix
    y: _Float64Array


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
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise SpecError(
            f"kind={kind!r} is not a model kind; rule: lowercase letters, digits and '_'; fix: "
            f"pass the trainer's kind (kind=self.kind)"
        )
    preprocessing, x, y = _prepare(
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


def _check_task(task: Any) -> None:
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
    _check_task(task)
    if not isinstance(series, pd.Series):
        raise SchemaError(
            f"labels of {label!r} are a {type(series).__name__}; rule: check_labels takes a "
            f"pandas Series; fix: pass frame[{label!r}]"
        )
    _encode_labels(series, task=task, label=label)


def _encode_labels(
    series: pd.Series, *, task: Task, label: str
) -> tuple[_Float64Array, tuple[ClassLabel, ...]]:
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


def _binary_labels(series: pd.Series, *, label: str) -> _Float64Array:
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
) -> tuple[_Float64Array, tuple[ClassLabel, ...]]:
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


def _regression_labels(series: pd.Series, *, label: str) -> _Float64Array:
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


def _task_fields(spec: Mapping[str, Any]) -> tuple[Task, tuple[ClassLabel, ...]]:
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


def _lightgbm_objective(model_text: bytes) -> str:
    """The objective name on the ``objective=`` line of a LightGBM text model (or ``""``)."""
    match = re.search(rb"^objective=(\S*)", model_text, flags=re.MULTILINE)
    return match.group(1).decode("ascii", "replace") if match else ""


def _lightgbm_feature_names(features: Sequence[str]) -> list[str]:
    """Feature names LightGBM accepts (no JSON special characters or spaces), unique."""
    names: list[str] = []
    seen: set[str] = set()
    for i, feature in enumerate(features):
        name = re.sub(r"[^0-9A-Za-z_.\-]", "_", feature) or f"f{i}"
        if name in seen:
            name = f"{name}__{i}"
        seen.add(name)
        names.append(name)
    return names


# --------------------------------------------------------------------------------------------
# torch helpers
# --------------------------------------------------------------------------------------------


@contextmanager
def _deterministic_torch(*, num_threads: int) -> Iterator[None]:
    """Deterministic algorithms and a fixed thread count, both restored on exit.

    These are process-wide torch settings: other threads using torch meanwhile see them too.
    """
    import torch

    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic, warn_only=previous_warn_only)
        torch.set_num_threads(previous_threads)


_OUTPUT_ACTIVATIONS: dict[str, str] = {
    "binary": "sigmoid",
    "multiclass": "softmax",
    "regression": "affine",
}


def _architecture(
    input_dim: int,
    hidden_sizes: Sequence[int],
    *,
    task: Task = "binary",
    output_dim: int = 1,
    target: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The ``architecture.json`` content for an MLP with the head of ``task``.

    A binary architecture has exactly the keys it had before tasks existed (its bytes, and so
    the lock records of binary models, are unchanged); the other tasks add ``task`` and, for
    regression, ``target`` (``mean`` and ``scale`` of the training label: the network's output
    is ``linear * scale + mean``).
    """
    sizes = [input_dim, *hidden_sizes, output_dim]
    layers = [
        {
            "weight": f"{2 * i}.weight",
            "bias": f"{2 * i}.bias",
            "in_features": sizes[i],
            "out_features": sizes[i + 1],
        }
        for i in range(len(sizes) - 1)
    ]
    meaning = {
        "binary": "probability of label 1",
        "multiclass": f"probability of each class, in the order of {PREPROCESSING_FILE}'s classes",
        "regression": "predicted label value (linear output * target.scale + target.mean)",
    }[task]
    architecture: dict[str, Any] = {
        "format": _ARCHITECTURE_FORMAT,
        "input_dim": input_dim,
        "hidden_sizes": list(hidden_sizes),
        "activation": "relu",
        "output_activation": _OUTPUT_ACTIVATIONS[task],
        "dtype": "float32",
        "layers": layers,
        "torchscript": {
            "file": TORCH_SCRIPT_FILE,
            "input": {"name": "INPUT__0", "dtype": "float32", "shape": [-1, input_dim]},
            "output": {"name": "OUTPUT__0", "dtype": "float32", "shape": [-1, output_dim]},
            "output_meaning": meaning,
        },
    }
    if task != "binary":
        architecture["task"] = task
    if task == "regression":
        if target is None:
            raise ValueError("a regression architecture needs the target mean and scale")
        architecture["target"] = {"mean": float(target["mean"]), "scale": float(target["scale"])}
    return architecture


def _target_standardization(y: _Float64Array) -> dict[str, float]:
    """Mean and standard deviation of a regression label (order-independent sums)."""
    values = y.tolist()
    mean = math.fsum(values) / len(values)
    scale = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    if not (math.isfinite(scale) and scale > 0.0):
        scale = 1.0
    return {"mean": float(mean), "scale": float(scale)}


def _check_architecture(
    architecture: Mapping[str, Any], *, input_dim: int, task: Task, output_dim: int
) -> dict[str, Any]:
    try:
        if architecture["format"] != _ARCHITECTURE_FORMAT:
            raise ValueError(f"format {architecture['format']!r} is not {_ARCHITECTURE_FORMAT!r}")
        hidden = architecture["hidden_sizes"]
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ValueError(f"hidden_sizes {hidden!r} are not positive ints")
        if architecture["input_dim"] != input_dim:
            raise ValueError(
                f"input_dim {architecture['input_dim']!r} differs from the {input_dim} columns "
                f"of {PREPROCESSING_FILE}"
            )
        if architecture.get("task", "binary") != task:
            raise ValueError(
                f"task {architecture.get('task', 'binary')!r} differs from task {task!r} of "
                f"{PREPROCESSING_FILE}"
            )
        target = None
        if task == "regression":
            target = architecture["target"]
            for key in ("mean", "scale"):
                value = target[key]
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"target {key} {value!r} is not a number")
                if not math.isfinite(value) or (key == "scale" and value <= 0):
                    raise ValueError(f"target {key} {value!r} is not finite (and > 0 for scale)")
        expected = _architecture(input_dim, hidden, task=task, output_dim=output_dim, target=target)
        if dict(architecture) != expected:
            raise ValueError("its fields differ from those of an MLP with these sizes")
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactIntegrityError(
            f"{TORCH_ARCHITECTURE_FILE} is malformed ({type(exc).__name__}: {exc}); rule: it must "
            f"be the file lockgate wrote at fit time; fix: restore it from the registry"
        ) from exc
    return expected


def _build_network(
    architecture: Mapping[str, Any], *, generator: torch.Generator | None
) -> torch.nn.Sequential:
    """``Linear -> ReLU -> ... -> Linear -> Sigmoid`` in float32 (binary).

    Multiclass ends in ``Softmax(dim=1)`` instead of the sigmoid, regression in the last
    ``Linear`` (its output is scaled back to label units by the caller and the TorchScript).

    With a generator the weights are initialised like ``torch.nn.Linear`` does by default
    (Kaiming-uniform), drawing from that generator only; the global RNG is left untouched.
    """
    import torch

    modules: list[torch.nn.Module] = []
    layers = architecture["layers"]
    with torch.random.fork_rng(devices=[]):  # Linear's own init draws from the global RNG
        for i, layer in enumerate(layers):
            linear = torch.nn.Linear(layer["in_features"], layer["out_features"])
            modules.append(linear)
            if i < len(layers) - 1:
                modules.append(torch.nn.ReLU())
    activation = architecture["output_activation"]
    if activation == "sigmoid":
        modules.append(torch.nn.Sigmoid())
    elif activation == "softmax":
        modules.append(torch.nn.Softmax(dim=1))
    net = torch.nn.Sequential(*modules)
    if generator is not None:
        with torch.no_grad():
            for module in net:
                if isinstance(module, torch.nn.Linear):
                    torch.nn.init.kaiming_uniform_(
                        module.weight, a=math.sqrt(5), generator=generator
                    )
                    bound = 1.0 / math.sqrt(module.in_features)
                    torch.nn.init.uniform_(module.bias, -bound, bound, generator=generator)
    return net


def _safetensors_bytes(net: torch.nn.Module) -> bytes:
    """The network's state dict as safetensors bytes with fixed metadata."""
    from safetensors.torch import save as save_safetensors

    state = {name: t.detach().contiguous() for name, t in net.state_dict().items()}
    return bytes(save_safetensors(state, metadata={"format": "pt"}))


_SCORER_CLASS: Any = None
_TASK_SCORER_CLASSES: dict[str, Any] = {}


def _scorer_class() -> Any:
    """The TorchScript scoring module class of binary models, created once per process.

    Its TorchScript type (``__torch__.lockgate.trainers._Scorer``) is the same for every model:
    the layers are held in tensor lists, not as submodules whose types vary with their shapes.
    ``torch.jit.script`` therefore reuses one compiled type and never mangles its name
    (``___torch_mangle_N``), which for ``nn.Sequential``/``nn.Linear`` depends on what else the
    process compiled before and would make the bytes differ between processes.
    """
    global _SCORER_CLASS
    if _SCORER_CLASS is not None:
        return _SCORER_CLASS
    import torch

    class _Scorer(torch.nn.Module):
        """Float32 ``(n, d)`` -> probability ``(n, 1)``; the same ops as the eager network."""

        def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
            super().__init__()
            self.weights = weights
            self.biases = biases

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            n = len(self.weights)
            for i in range(n):
                h = torch.nn.functional.linear(h, self.weights[i], self.biases[i])
                if i < n - 1:
                    h = torch.relu(h)
            return torch.sigmoid(h)

    _Scorer.__qualname__ = "_Scorer"
    _SCORER_CLASS = _Scorer
    return _SCORER_CLASS


def _task_scorer_class(task: str) -> Any:
    """The TorchScript scoring module class of multiclass or regression models.

    Separate classes (``_SoftmaxScorer``, ``_AffineScorer``), created once per process like
    :func:`_scorer_class`, so the binary ``_Scorer`` and its archives stay exactly as they were.
    """
    if task in _TASK_SCORER_CLASSES:
        return _TASK_SCORER_CLASSES[task]
    import torch

    class _SoftmaxScorer(torch.nn.Module):
        """Float32 ``(n, d)`` -> class probabilities ``(n, k)``; the eager network's ops."""

        def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
            super().__init__()
            self.weights = weights
            self.biases = biases

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            n = len(self.weights)
            for i in range(n):
                h = torch.nn.functional.linear(h, self.weights[i], self.biases[i])
                if i < n - 1:
                    h = torch.relu(h)
            return torch.softmax(h, dim=1)

    class _AffineScorer(torch.nn.Module):
        """Float32 ``(n, d)`` -> value in label units ``(n, 1)``: ``linear * scale + mean``."""

        def __init__(
            self,
            weights: list[torch.Tensor],
            biases: list[torch.Tensor],
            scale: float,
            mean: float,
        ) -> None:
            super().__init__()
            self.weights = weights
            self.biases = biases
            self.scale = scale
            self.mean = mean

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x
            n = len(self.weights)
            for i in range(n):
                h = torch.nn.functional.linear(h, self.weights[i], self.biases[i])
                if i < n - 1:
                    h = torch.relu(h)
            return h * self.scale + self.mean

    _SoftmaxScorer.__qualname__ = "_SoftmaxScorer"
    _AffineScorer.__qualname__ = "_AffineScorer"
    _TASK_SCORER_CLASSES["multiclass"] = _SoftmaxScorer
    _TASK_SCORER_CLASSES["regression"] = _AffineScorer
    return _TASK_SCORER_CLASSES[task]


def _torchscript_bytes(net: torch.nn.Sequential, architecture: Mapping[str, Any]) -> bytes:
    """TorchScript archive of ``net``'s scoring graph, without debug records.

    The debug records (``*.debug_pkl``) hold absolute source paths of the installation; the
    archive is rewritten without them, so its bytes depend on the weights and the torch
    version only.
    """
    import torch

    linears = [module for module in net if isinstance(module, torch.nn.Linear)]
    weights = [layer.weight.detach().clone() for layer in linears]
    biases = [layer.bias.detach().clone() for layer in linears]
    task = architecture.get("task", "binary")
    if task == "binary":
        scorer = _scorer_class()(weights, biases)
    elif task == "multiclass":
        scorer = _task_scorer_class(task)(weights, biases)
    else:
        target = architecture["target"]
        scorer = _task_scorer_class(task)(
            weights, biases, float(target["scale"]), float(target["mean"])
        )
    scorer.eval()
    try:
        with warnings.catch_warnings():
            # torch.jit.script/save are deprecated in favour of torch.export (torch 2.13 warns);
            # Triton's PyTorch backend still loads TorchScript.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.script(scorer)
            buffer = io.BytesIO()
            torch.jit.save(scripted, buffer)
    except Exception as exc:
        raise TrainingError(
            f"TorchScript export failed with torch {torch.__version__}: {exc}; rule: torch "
            f"models ship a TorchScript file for Triton; fix: use a torch version with "
            f"torch.jit (lockgate pins 2.13.0)"
        ) from exc
    reader = torch._C.PyTorchFileReader(io.BytesIO(buffer.getvalue()))
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out)
    version = int(bytes(reader.get_record("version")).decode().strip())
    writer.set_min_version(version)
    for name in reader.get_all_records():
        # The writer adds "version" and ".data/serialization_id" (a content hash) itself.
        if name.endswith(".debug_pkl") or name in {"version", ".data/version"}:
            continue
        if name == ".data/serialization_id":
            continue
        record = bytes(reader.get_record(name))
        writer.write_record(name, record, len(record))
    writer.write_end_of_file()
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _json_bytes(value: Any) -> bytes:
    """Canonical JSON: sorted keys, shortest round-trip floats, no NaN, trailing newline."""
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
    return (text + "\n").encode("ascii")


def _parse_json(data: bytes, *, name: str) -> dict[str, Any]:
    try:
        value = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactIntegrityError(
            f"{name} ({len(data)} bytes) is not valid JSON: {exc}; rule: lockgate writes it as "
            f"UTF-8 JSON; fix: restore it from the registry"
        ) from exc
    if not isinstance(value, dict):
        raise ArtifactIntegrityError(
            f"{name} holds a JSON {type(value).__name__}, not an object; rule: it must be the "
            f"file lockgate wrote; fix: restore it from the registry"
        )
    return value


def _require_files(
    files: Mapping[str, bytes], names: Sequence[str], *, kind: str
) -> dict[str, bytes]:
    if not isinstance(files, Mapping):
        raise ArtifactIntegrityError(
            f"files is a {type(files).__name__}; rule: a mapping of file name to bytes; fix: "
            f"pass the dict returned by model.files()"
        )
    missing = [name for name in names if name not in files]
    if missing:
        raise ArtifactIntegrityError(
            f"a {kind} model needs files {list(names)} but {missing} are missing (given: "
            f"{sorted(files)}); rule: load needs every file model.files() returned; fix: pass "
            f"all files of the model version"
        )
    found: dict[str, bytes] = {}
    for name in names:
        data = files[name]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ArtifactIntegrityError(
                f"file {name!r} is a {type(data).__name__}, not bytes; rule: files are raw "
                f"bytes; fix: read them in binary mode"
            )
        found[name] = bytes(data)
    return found
