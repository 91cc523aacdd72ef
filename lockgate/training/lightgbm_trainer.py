"""Gradient-boosted trees with LightGBM: :class:`LightGBMTrainer` and :class:`LightGBMModel`.

Weights file ``model.txt`` (LightGBM's text model format). Determinism: LightGBM runs with
``deterministic=True``, ``force_row_wise=True``, a fixed ``num_threads``,
``device_type="cpu"`` and ``seed`` (from which it derives every other seed); these keys are
reserved and cannot be overridden through ``params``. lightgbm is imported inside functions
only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
import pandas as pd
from pydantic import (
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from lockgate.errors import ArtifactIntegrityError, TrainingError
from lockgate.tasks.catalog import Task
from lockgate.training.arrays import Float32Matrix, Float64Array
from lockgate.training.model_files import LIGHTGBM_MODEL_FILE, PREPROCESSING_FILE, require_files
from lockgate.training.model_protocol import TrainedModel, check_preprocessing_kind
from lockgate.training.prepare import prepare_fit
from lockgate.training.preprocessing import Preprocessing
from lockgate.training.trainer_protocol import MAX_SEED, Trainer

__all__ = ["DEFAULT_LIGHTGBM_PARAMS", "JsonScalar", "LightGBMModel", "LightGBMTrainer"]


JsonScalar: TypeAlias = StrictBool | StrictInt | StrictFloat | StrictStr
"""A LightGBM parameter value: bool, int, float or str (JSON scalars)."""


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

    __lockgate_path__ = "lockgate.training:LightGBMTrainer"  # recorded path (import_paths)

    kind: Literal["lightgbm"] = "lightgbm"
    params: dict[str, JsonScalar] = Field(default_factory=lambda: dict(DEFAULT_LIGHTGBM_PARAMS))
    num_boost_round: int = Field(default=200, ge=1, le=100_000)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
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
        """Fits a booster on ``frame`` (arguments and result: :meth:`Trainer.fit`).

        Numeric and bool feature columns are median-imputed; object, string and category columns
        become LightGBM categorical features (sorted vocabulary, one unknown code).

        Raises:
            SpecError: On an invalid feature list or an unknown task.
            SchemaError: When columns are missing or have an unusable dtype.
            EmptyDataError: When ``frame`` has no rows.
            DataError: When a numeric feature holds infinite values.
            TrainingError: On labels that do not fit the task, or a LightGBM failure.
        """
        import lightgbm as lgb

        preprocessor, x, y = prepare_fit(
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
            ).construct()  # binned now: the float32 matrix can go before the boosting starts
            del x, y
            booster = lgb.train(params, dataset, num_boost_round=self.num_boost_round)
        except lgb.basic.LightGBMError as exc:
            raise TrainingError(
                f"LightGBM failed to train on {len(frame)} rows for task={task!r}: {exc}; rule: "
                f"the params must be valid LightGBM parameters for the task; fix: check params "
                f"{sorted(self.params)}"
            ) from exc
        model_text = booster.model_to_string().encode("utf-8")
        return LightGBMModel(model_text=model_text, preprocessor=preprocessor)


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
        check_preprocessing_kind(preprocessor, self.kind)
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

    def _predict_matrix(self, x: Float32Matrix) -> Float64Array:
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
        found = require_files(files, [LIGHTGBM_MODEL_FILE, PREPROCESSING_FILE], kind=cls.kind)
        preprocessor = Preprocessing.from_bytes(found[PREPROCESSING_FILE])
        return cls(model_text=found[LIGHTGBM_MODEL_FILE], preprocessor=preprocessor)


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
