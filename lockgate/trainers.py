"""Deterministic binary-classification trainers whose models are stored in safe formats.

Two trainer specs, both frozen pydantic models that round-trip through :meth:`config` and
:func:`trainer_from_config`:

- :class:`LightGBMTrainer`: gradient-boosted trees; weights file ``model.txt`` (LightGBM's text
  model format).
- :class:`TorchTrainer`: a ReLU multilayer perceptron; weights file ``weights.safetensors``, plus a
  TorchScript export ``model.torchscript.pt`` of the whole scoring graph for Triton.

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

import hashlib
import io
import json
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
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

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_LIGHTGBM_PARAMS",
    "TRAINER_KINDS",
    "JsonScalar",
    "LightGBMModel",
    "LightGBMTrainer",
    "TorchModel",
    "TorchTrainer",
    "TrainedModel",
    "Trainer",
    "TrainerSpec",
    "trainer_from_config",
]

JsonScalar: TypeAlias = StrictBool | StrictInt | StrictFloat | StrictStr
"""A LightGBM parameter value: bool, int, float or str (JSON scalars)."""

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
}

_LGB_BINARY_OBJECTIVES = frozenset({"binary", "cross_entropy", "xentropy"})


# --------------------------------------------------------------------------------------------
# Trainer specs
# --------------------------------------------------------------------------------------------


class _TrainerBase(BaseModel):
    """Shared behaviour of the trainer specs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def config(self) -> dict[str, Any]:
        """The complete spec as a JSON-able dict; :func:`trainer_from_config` rebuilds it.

        Returns:
            Every field, ``kind`` included, with tuples as lists.
        """
        return self.model_dump(mode="json")


class LightGBMTrainer(_TrainerBase):
    """Gradient-boosted trees with LightGBM, bit-identical under ``seed``.

    ``params`` are merged over :data:`DEFAULT_LIGHTGBM_PARAMS` (aliases are renamed to
    LightGBM's canonical names), so :meth:`config` always lists the complete parameter set.
    Seeds, threads, the number of rounds, determinism flags, the device and categorical
    columns are set by lockgate and may not appear in ``params``.

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
                f"rule: one of {sorted(_LGB_BINARY_OBJECTIVES)}; fix: use 'binary'"
            )
        return merged

    def fit(self, frame: pd.DataFrame, *, features: Sequence[str], label: str) -> LightGBMModel:
        """Fits a booster on ``frame``.

        Args:
            frame: Training rows.
            features: Feature columns, in the order the model uses them. Numeric and bool
                columns are median-imputed; object, string and category columns become
                LightGBM categorical features (sorted vocabulary, one unknown code).
            label: Label column with values 0 and 1 (both must occur).

        Returns:
            The trained model.

        Raises:
            SpecError: On an invalid feature list.
            SchemaError: When columns are missing or have an unusable dtype.
            EmptyDataError: When ``frame`` has no rows.
            DataError: When a numeric feature holds infinite values.
            TrainingError: On labels other than 0/1, a single class, or a LightGBM failure.
        """
        import lightgbm as lgb

        preprocessor, x, y = _prepare(frame, features=features, label=label, model_kind="lightgbm")
        params: dict[str, Any] = {
            **self.params,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "device_type": "cpu",
        }
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
                f"LightGBM failed to train on {len(frame)} rows: {exc}; rule: the params must "
                f"be valid LightGBM parameters; fix: check params {sorted(self.params)}"
            ) from exc
        model_text = booster.model_to_string().encode("utf-8")
        return LightGBMModel(model_text=model_text, preprocessor=preprocessor)


class TorchTrainer(_TrainerBase):
    """A ReLU multilayer perceptron trained with AdamW on binary cross-entropy.

    Numeric features are median-imputed and standardised; categorical features are one-hot
    encoded with an extra bucket for unseen or missing values.

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
            probabilities).
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

    def fit(self, frame: pd.DataFrame, *, features: Sequence[str], label: str) -> TorchModel:
        """Trains the network on ``frame``.

        Args:
            frame: Training rows.
            features: Feature columns, in the order the model uses them.
            label: Label column with values 0 and 1 (both must occur).

        Returns:
            The trained model.

        Raises:
            SpecError: On an invalid feature list.
            SchemaError: When columns are missing or have an unusable dtype.
            EmptyDataError: When ``frame`` has no rows.
            DataError: When a numeric feature holds infinite values.
            TrainingError: On labels other than 0/1, a single class, or a non-finite loss.
        """
        import torch

        preprocessor, x, y = _prepare(frame, features=features, label=label, model_kind="torch")
        architecture = _architecture(preprocessor.input_dim, self.hidden_sizes)
        n = x.shape[0]
        steps_per_epoch = math.ceil(n / self.batch_size)
        with _deterministic_torch(num_threads=self.num_threads):
            generator = torch.Generator(device="cpu")
            generator.manual_seed(self.seed)
            net = _build_network(architecture, generator=generator)
            logits_net = net[:-1]  # the same layers without the final sigmoid
            x_all = torch.from_numpy(x)
            y_all = torch.from_numpy(y.astype(np.float32))
            pos_weight = None if self.pos_weight is None else torch.tensor([self.pos_weight])
            loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
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
                    logits = logits_net(x_all[rows]).squeeze(1)
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


Trainer: TypeAlias = LightGBMTrainer | TorchTrainer
"""Any trainer spec."""

TrainerSpec = Annotated[Trainer, Field(discriminator="kind")]
"""A trainer spec field in a pydantic model, told apart by ``kind``."""

_TRAINERS: dict[str, type[LightGBMTrainer] | type[TorchTrainer]] = {
    "lightgbm": LightGBMTrainer,
    "torch": TorchTrainer,
}
TRAINER_KINDS: tuple[str, ...] = tuple(sorted(_TRAINERS))
"""The known trainer kinds."""


def trainer_from_config(cfg: Mapping[str, Any]) -> Trainer:
    """Rebuilds a trainer spec from :meth:`LightGBMTrainer.config` / :meth:`TorchTrainer.config`.

    Args:
        cfg: A config dict with a ``kind`` key.

    Returns:
        The trainer spec, equal to the one that produced ``cfg``.

    Raises:
        SpecError: For an unknown kind or invalid fields.
    """
    if not isinstance(cfg, Mapping):
        raise SpecError(
            f"trainer config is a {type(cfg).__name__}; rule: it must be a mapping with a "
            f"'kind' key; fix: pass the dict returned by trainer.config()"
        )
    kind = cfg.get("kind")
    trainer_cls = _TRAINERS.get(kind) if isinstance(kind, str) else None
    if trainer_cls is None:
        raise SpecError(
            f"trainer kind {kind!r} is unknown; rule: kind must be one of "
            f"{list(TRAINER_KINDS)}; fix: set 'kind' to one of them"
        )
    try:
        return trainer_cls.model_validate(dict(cfg))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<root>'}: {error['msg']}"
            for error in exc.errors()
        )
        raise SpecError(
            f"trainer config of kind {kind!r} is invalid: {problems}; rule: fields must match "
            f"{trainer_cls.__name__}; fix: correct or remove those fields"
        ) from exc


# --------------------------------------------------------------------------------------------
# Trained models
# --------------------------------------------------------------------------------------------


class TrainedModel:
    """A fitted model: preprocessing plus weights, stored as safe files.

    Attributes:
        kind: ``"lightgbm"`` or ``"torch"``.
        weights_file: Name of the primary weights file in :meth:`files`; its sha256 is the
            model's weights hash (:attr:`weights_sha256`).
    """

    kind: ClassVar[str]
    weights_file: ClassVar[str]

    def __init__(self, *, preprocessor: _Preprocessor) -> None:
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

    def predict_proba(self, frame: pd.DataFrame) -> _Float64Array:
        """Probability of label 1 for each row.

        Args:
            frame: Rows with at least the feature columns.

        Returns:
            A float64 array of shape ``(len(frame),)``.

        Raises:
            SchemaError: When feature columns are missing or have an unusable dtype.
            DataError: When a numeric feature holds infinite values.
        """
        x = self.preprocess(frame)
        if x.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return self._predict_matrix(x)

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

    @classmethod
    def load(cls, kind: str, files: Mapping[str, bytes]) -> TrainedModel:
        """Restores a model from :meth:`files`; predictions equal the original's exactly.

        Only safe parsers are used: JSON, LightGBM's text format and safetensors. For torch the
        TorchScript file is not needed (nor executed); when given, it is kept as is.

        Args:
            kind: ``"lightgbm"`` or ``"torch"``.
            files: File name to bytes, as returned by :meth:`files`. Unknown names are ignored.

        Returns:
            The restored model.

        Raises:
            SpecError: For an unknown kind.
            ArtifactIntegrityError: When a required file is missing or cannot be parsed.
        """
        model_cls = _MODELS.get(kind) if isinstance(kind, str) else None
        if model_cls is None:
            raise SpecError(
                f"model kind {kind!r} is unknown; rule: kind must be one of "
                f"{sorted(_MODELS)}; fix: pass the kind recorded with the model version"
            )
        return model_cls._from_files(files)

    @classmethod
    def _from_files(cls, files: Mapping[str, bytes]) -> TrainedModel:
        raise NotImplementedError


class LightGBMModel(TrainedModel):
    """A LightGBM booster with its preprocessing."""

    kind: ClassVar[str] = "lightgbm"
    weights_file: ClassVar[str] = LIGHTGBM_MODEL_FILE

    def __init__(self, *, model_text: bytes, preprocessor: _Preprocessor) -> None:
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
        self._model_text = model_text
        self._booster = booster

    def _weights_bytes(self) -> bytes:
        return self._model_text

    def _predict_matrix(self, x: _Float32Matrix) -> _Float64Array:
        return np.asarray(self._booster.predict(x), dtype=np.float64).reshape(-1)

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
        preprocessor = _Preprocessor.from_bytes(found[PREPROCESSING_FILE])
        return cls(model_text=found[LIGHTGBM_MODEL_FILE], preprocessor=preprocessor)


class TorchModel(TrainedModel):
    """A torch multilayer perceptron with its preprocessing.

    The network maps the float32 matrix of :meth:`preprocess` to the probability of label 1,
    shape ``(n, 1)``; :meth:`predict_proba` returns it flattened as float64.
    """

    kind: ClassVar[str] = "torch"
    weights_file: ClassVar[str] = TORCH_WEIGHTS_FILE

    def __init__(
        self,
        *,
        weights: bytes,
        architecture: Mapping[str, Any],
        preprocessor: _Preprocessor,
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
        arch = _check_architecture(architecture, input_dim=preprocessor.input_dim)
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
        return out.numpy().astype(np.float64).reshape(-1)

    @property
    def architecture(self) -> dict[str, Any]:
        """A copy of the network description (the content of ``architecture.json``)."""
        return json.loads(_json_bytes(self._architecture))

    def torchscript(self) -> bytes:
        """The TorchScript export of the scoring graph (float32 ``(n, d)`` -> ``(n, 1)``).

        Generated on first use with ``torch.jit.script`` (deprecated in torch 2.13, its
        warnings are silenced here) and stripped of debug records, so the bytes depend on the
        weights and the torch version only.

        Returns:
            Content of ``model.torchscript.pt``.

        Raises:
            TrainingError: When this torch build cannot export TorchScript.
        """
        if self._torchscript is None:
            self._torchscript = _torchscript_bytes(self._net)
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
        preprocessor = _Preprocessor.from_bytes(found[PREPROCESSING_FILE])
        architecture = _parse_json(found[TORCH_ARCHITECTURE_FILE], name=TORCH_ARCHITECTURE_FILE)
        torchscript = files.get(TORCH_SCRIPT_FILE)
        return cls(
            weights=found[TORCH_WEIGHTS_FILE],
            architecture=architecture,
            preprocessor=preprocessor,
            torchscript=None if torchscript is None else bytes(torchscript),
        )


_MODELS: dict[str, type[LightGBMModel] | type[TorchModel]] = {
    "lightgbm": LightGBMModel,
    "torch": TorchModel,
}


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


class _Preprocessor:
    """Feature preprocessing fitted on a training frame and stored as JSON.

    Numeric (and bool) columns: NaN -> training median (0.0 when the column is all NaN); for
    torch also ``(x - mean) / scale``. Categorical (object, string, category) columns: values
    as strings, sorted vocabulary, unseen or missing -> ``unknown_code = len(vocabulary)``;
    LightGBM gets the code as one categorical column, torch a one-hot block of
    ``len(vocabulary) + 1`` columns (the last one for unknown).
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self._spec = dict(spec)
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
    def fit(cls, frame: pd.DataFrame, *, features: Sequence[str], model_kind: str) -> _Preprocessor:
        """Learns imputation values, scales and vocabularies from ``frame``."""
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
                if model_kind == "torch":
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
            "categorical_encoding": "one_hot" if model_kind == "torch" else "codes",
            "features": columns,
            "output_columns": output_columns,
            "input_dim": len(output_columns),
            "dtype": "float32",
        }
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
    def from_bytes(cls, data: bytes) -> _Preprocessor:
        """Parses and checks ``preprocessing.json``."""
        spec = _parse_json(data, name=PREPROCESSING_FILE)
        try:
            if spec["format"] != _PREPROCESSING_FORMAT:
                raise ValueError(f"format {spec['format']!r} is not {_PREPROCESSING_FORMAT!r}")
            if spec["model_kind"] not in _MODELS:
                raise ValueError(f"model_kind {spec['model_kind']!r} is unknown")
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
    frame: pd.DataFrame, *, features: Sequence[str], label: str, model_kind: str
) -> tuple[_Preprocessor, _Float32Matrix, _Float64Array]:
    """Validates the inputs, fits the preprocessing and builds ``(x, y)``."""
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
    y = _labels(frame[label], label=label)
    preprocessor = _Preprocessor.fit(frame, features=feature_list, model_kind=model_kind)
    x = preprocessor.transform(frame)
    return preprocessor, x, y


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


def _is_binary_value(value: Any) -> bool:
    if not isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating):
        return False
    return bool(value == 0 or value == 1)


def _labels(series: pd.Series, *, label: str) -> _Float64Array:
    """The label column as float64 0/1, or TrainingError with the value counts."""
    counts = series.value_counts(dropna=False)
    summary = ", ".join(f"{key!r}: {int(count)}" for key, count in list(counts.items())[:10])
    if len(counts) > 10:
        summary += f", ... ({len(counts)} distinct values)"
    if not all(_is_binary_value(key) for key in counts.index):
        raise TrainingError(
            f"label column {label!r} holds values other than 0 and 1 (value counts: {{{summary}}}); "
            f"rule: binary labels are 0 or 1 with no missing values; fix: encode the positive "
            f"class as 1, the negative as 0 and drop unlabelled rows"
        )
    y = series.to_numpy(dtype=np.float64)
    positives = int(y.sum())
    negatives = int(y.shape[0] - positives)
    if positives == 0 or negatives == 0:
        raise TrainingError(
            f"label column {label!r} has a single class (0: {negatives}, 1: {positives}); rule: "
            f"both classes must occur to fit a classifier; fix: widen the snapshot's time range "
            f"or check the label join"
        )
    return np.ascontiguousarray(y)


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


def _architecture(input_dim: int, hidden_sizes: Sequence[int]) -> dict[str, Any]:
    """The ``architecture.json`` content for an MLP."""
    sizes = [input_dim, *hidden_sizes, 1]
    layers = [
        {
            "weight": f"{2 * i}.weight",
            "bias": f"{2 * i}.bias",
            "in_features": sizes[i],
            "out_features": sizes[i + 1],
        }
        for i in range(len(sizes) - 1)
    ]
    return {
        "format": _ARCHITECTURE_FORMAT,
        "input_dim": input_dim,
        "hidden_sizes": list(hidden_sizes),
        "activation": "relu",
        "output_activation": "sigmoid",
        "dtype": "float32",
        "layers": layers,
        "torchscript": {
            "file": TORCH_SCRIPT_FILE,
            "input": {"name": "INPUT__0", "dtype": "float32", "shape": [-1, input_dim]},
            "output": {"name": "OUTPUT__0", "dtype": "float32", "shape": [-1, 1]},
            "output_meaning": "probability of label 1",
        },
    }


def _check_architecture(architecture: Mapping[str, Any], *, input_dim: int) -> dict[str, Any]:
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
        expected = _architecture(input_dim, hidden)
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
    """``Linear -> ReLU -> ... -> Linear -> Sigmoid`` in float32.

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
    modules.append(torch.nn.Sigmoid())
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


def _scorer_class() -> Any:
    """The TorchScript scoring module class, created once per process.

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


def _torchscript_bytes(net: torch.nn.Sequential) -> bytes:
    """TorchScript archive of ``net``'s scoring graph, without debug records.

    The debug records (``*.debug_pkl``) hold absolute source paths of the installation; the
    archive is rewritten without them, so its bytes depend on the weights and the torch
    version only.
    """
    import torch

    linears = [module for module in net if isinstance(module, torch.nn.Linear)]
    scorer = _scorer_class()(
        [layer.weight.detach().clone() for layer in linears],
        [layer.bias.detach().clone() for layer in linears],
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
