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

from lockgate._util.dataio import read_parquet_dir, read_parquet_file
from lockgate._util.legacy_modules import install as _install_legacy_modules
from lockgate._util.services import LocalPostgres, LocalRedis, LocalS3
from lockgate.assets.feedback import compute_live_performance
from lockgate.audit.log import AuditLog
from lockgate.daemon import DagsterDaemon
from lockgate.dagster_instance import open_instance, write_instance_yaml
from lockgate.definitions import build_definitions
from lockgate.deploy.launcher import k8s_definitions
from lockgate.deploy.render import load_settings as load_k8s_settings
from lockgate.deploy.settings import K8sSettings, PipelineDeployment, PodResources
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
from lockgate.evaluation.gate import Condition, EdgeCase, Gate, GoldSet, SliceSpec
from lockgate.features.materialize import materialize_incremental
from lockgate.features.store import FeastStore
from lockgate.gateway.process import GatewayServer
from lockgate.lineage.registry import ArtifactRegistry, LocalArtifactRegistry
from lockgate.monitoring.feedback import labels_for, write_feedback
from lockgate.monitoring.skew import SkewPolicy
from lockgate.monitoring.triggers import DriftPolicy, FeatureChangePolicy, FeedbackPolicy
from lockgate.serving.canary import CanaryPolicy
from lockgate.serving.triton_server import LocalTritonServer
from lockgate.spec import (
    ColumnRule,
    DataValidation,
    LabelSource,
    ModelPipeline,
    OnlineFeatures,
    Split,
    TritonTarget,
)
from lockgate.traffic import TrafficGenerator, TrafficReport, drive_canary
from lockgate.training import (
    CustomModel,
    CustomTrainer,
    LightGBMTrainer,
    SklearnTrainer,
    TorchModuleTrainer,
    TorchTrainer,
    Trainer,
    prepare_training,
)

__version__ = "0.1.0"

# lock records and model repositories written before the subpackages name the old module paths
_install_legacy_modules()

__all__ = [
    "AliasConflictError",
    "ArtifactError",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "ArtifactRegistry",
    "AuditLog",
    "CanaryPolicy",
    "ColumnRule",
    "Condition",
    "CorruptDataError",
    "CustomModel",
    "CustomTrainer",
    "DagsterDaemon",
    "DataError",
    "DataValidation",
    "DriftPolicy",
    "EdgeCase",
    "EmptyDataError",
    "Environment",
    "FeastStore",
    "FeatureChangePolicy",
    "FeatureStoreError",
    "FeedbackPolicy",
    "Gate",
    "GateFailedError",
    "GatewayServer",
    "GoldSet",
    "ImmutableArtifactError",
    "K8sSettings",
    "LabelSource",
    "LightGBMTrainer",
    "LocalArtifactRegistry",
    "LocalPostgres",
    "LocalRedis",
    "LocalS3",
    "LocalTritonServer",
    "LockgateError",
    "ModelPipeline",
    "OnlineFeatures",
    "PipelineDeployment",
    "PodResources",
    "ReproductionError",
    "SchemaError",
    "SkewPolicy",
    "SklearnTrainer",
    "SliceSpec",
    "SpecError",
    "Split",
    "TorchModuleTrainer",
    "TorchTrainer",
    "TrafficGenerator",
    "TrafficReport",
    "Trainer",
    "TrainingError",
    "TritonTarget",
    "ValidationFailedError",
    "__version__",
    "build_definitions",
    "compute_live_performance",
    "drive_canary",
    "k8s_definitions",
    "labels_for",
    "load_k8s_settings",
    "materialize_incremental",
    "open_instance",
    "prepare_training",
    "read_parquet_dir",
    "read_parquet_file",
    "write_feedback",
    "write_instance_yaml",
]
