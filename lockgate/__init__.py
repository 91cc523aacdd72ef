"""lockgate: MLOps pipeline-as-code on Dagster.

One :class:`ModelPipeline` spec per model yields Dagster assets for the Feast feature snapshot,
the trained weights and the evaluation report, each model version locked to its triad (code
commit, data snapshot hash, weights hash).

Example:
    >>> from lockgate import LabelSource, LightGBMTrainer, ModelPipeline
    >>> fraud = ModelPipeline(
    ...     name="fraud",
    ...     feature_service="fraud_v1",
    ...     label="is_fraud",
    ...     labels=LabelSource(entity_columns=("transaction_id",)),
    ...     trainer=LightGBMTrainer(seed=7),
    ... )
    >>> fraud.train_job_name
    'fraud_train'
"""

from __future__ import annotations

from lockgate.canary import CanaryPolicy
from lockgate.definitions import build_definitions
from lockgate.environment import Environment
from lockgate.errors import (
    AliasConflictError,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    CorruptDataError,
    DataError,
    EmptyDataError,
    FeatureStoreError,
    GateFailedError,
    ImmutableArtifactError,
    LockgateError,
    ReproductionError,
    SchemaError,
    SpecError,
    TrainingError,
    ValidationFailedError,
)
from lockgate.gate import Condition, EdgeCase, Gate, GoldSet, SliceSpec
from lockgate.spec import (
    ColumnRule,
    DataValidation,
    LabelSource,
    ModelPipeline,
    Split,
    TritonTarget,
)
from lockgate.trainers import (
    CustomModel,
    CustomTrainer,
    LightGBMTrainer,
    TorchTrainer,
    Trainer,
    prepare_training,
)
from lockgate.trainers_sklearn import SklearnTrainer
from lockgate.trainers_torch_module import TorchModuleTrainer
from lockgate.triggers import DriftPolicy, FeatureChangePolicy, FeedbackPolicy

__version__ = "0.1.0"

__all__ = [
    "AliasConflictError",
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "CanaryPolicy",
    "ColumnRule",
    "Condition",
    "CorruptDataError",
    "CustomModel",
    "CustomTrainer",
    "DataError",
    "DataValidation",
    "DriftPolicy",
    "EdgeCase",
    "EmptyDataError",
    "Environment",
    "FeatureChangePolicy",
    "FeatureStoreError",
    "FeedbackPolicy",
    "Gate",
    "GateFailedError",
    "GoldSet",
    "ImmutableArtifactError",
    "LabelSource",
    "LightGBMTrainer",
    "LockgateError",
    "ModelPipeline",
    "ReproductionError",
    "SchemaError",
    "SklearnTrainer",
    "SliceSpec",
    "SpecError",
    "Split",
    "TorchModuleTrainer",
    "TorchTrainer",
    "Trainer",
    "TrainingError",
    "TritonTarget",
    "ValidationFailedError",
    "__version__",
    "build_definitions",
    "prepare_training",
]
