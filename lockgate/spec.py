"""The pipeline spec: one frozen object per model, from which all its Dagster definitions follow.

Example:
    >>> from lockgate import ModelPipeline, LightGBMTrainer, LabelSource
    >>> spec = ModelPipeline(
    ...     name="fraud",
    ...     feature_service="fraud_v1",
    ...     label="is_fraud",
    ...     labels=LabelSource(dataset="labels", entity_columns=("transaction_id",)),
    ...     trainer=LightGBMTrainer(seed=7),
    ... )
    >>> spec.asset_key("model_weights").path
    ['fraud', 'model_weights']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lockgate.deploy.settings import PipelineDeployment
from lockgate.errors import SpecError
from lockgate.evaluation.gate import Gate
from lockgate.lineage.project import caller_project_dir
from lockgate.monitoring.skew import SkewPolicy
from lockgate.monitoring.triggers import DriftPolicy, FeatureChangePolicy, FeedbackPolicy
from lockgate.serving.canary import CanaryPolicy
from lockgate.training import TrainerSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ASSET_NAMES",
    "ColumnRule",
    "DagsterView",
    "DataValidation",
    "LabelSource",
    "ModelPipeline",
    "OnlineFeatures",
    "Split",
    "TritonTarget",
    "install_dagster_view",
]

ASSET_NAMES = (
    "feature_snapshot",
    "gold_set",
    "model_weights",
    "evaluation_report",
    "champion",
    "serving",
    "rollout",
    "drift_report",
    "live_performance",
    "model_registry",
    "online_features",
    "skew_report",
)
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class DagsterView(Protocol):
    """What the Dagster layer lends a spec: its asset keys and its definitions.

    The spec is core and never imports Dagster; :mod:`lockgate.definitions` installs the view
    (:func:`install_dagster_view`) when :mod:`lockgate` is imported, so that
    :meth:`ModelPipeline.asset_key` returns a ``dg.AssetKey`` and
    :meth:`ModelPipeline.to_definitions` a ``dg.Definitions``.
    """

    def asset_key(self, path: Sequence[str]) -> Any:
        """The asset key with these path parts."""

    def asset_key_from_string(self, value: str) -> Any:
        """The asset key a user string (``"a/b"``) names."""

    def definitions(
        self,
        spec: ModelPipeline,
        *,
        environment: Any | None,
        resources: Mapping[str, Any] | None,
    ) -> Any:
        """One pipeline's definitions, with the environment's resources bound."""


_DAGSTER_VIEW: list[DagsterView] = []


def install_dagster_view(view: DagsterView) -> None:
    """Lend specs the Dagster layer's asset keys and definitions (the last view installed wins)."""
    _DAGSTER_VIEW[:] = [view]


def _dagster_view() -> DagsterView:
    if not _DAGSTER_VIEW:
        # lockgate/__init__.py imports lockgate.definitions, which installs the view: only a
        # partially imported package gets here
        raise RuntimeError(
            "lockgate's Dagster layer is not loaded, so a spec has no asset keys or definitions; "
            "fix: import lockgate (its __init__ installs the view) before asking a spec for them"
        )
    return _DAGSTER_VIEW[0]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ColumnRule(_Frozen):
    """Expectations on one column of the feature snapshot.

    Attributes:
        dtype: the kind of values the column must hold (``None``: any).
        max_null_fraction: highest share of missing values allowed (0.0: none).
        min: smallest allowed value (numeric columns), inclusive.
        max: largest allowed value (numeric columns), inclusive.
        allowed: the only values allowed (categorical columns).
    """

    dtype: Literal["float", "int", "string", "bool", "datetime", "number"] | None = None
    max_null_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    min: float | None = None
    max: float | None = None
    allowed: tuple[str | int, ...] | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}; swap them")
        return self


class DataValidation(_Frozen):
    """The data-quality suite run on every snapshot as blocking checks (Great Expectations).

    Attributes:
        min_rows: the snapshot needs at least this many rows.
        columns: per-column rules; every named column must exist.
        label_rate: inclusive bounds on the mean of the label column.
    """

    min_rows: int = Field(default=1, ge=1)
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    label_rate: tuple[float, float] | None = None

    @field_validator("label_rate")
    @classmethod
    def _rate_bounds(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0.0 <= value[0] <= value[1] <= 1.0:
            raise ValueError(f"label_rate {value} must satisfy 0 <= low <= high <= 1")
        return value


class LabelSource(_Frozen):
    """Where the labelled entity rows come from: Parquet files, or a Dagster asset of yours.

    Attributes:
        path: a Parquet file or folder, relative to the project root
            (:attr:`ModelPipeline.project_dir`) or absolute. None: ``asset``, else ``dataset``
            under the Feast store's data folder.
        asset: the key (``"a/b"`` or ``"labels"``) of your own Dagster asset that returns the
            entity/label frame as a pandas DataFrame, so the lineage graph starts at your data.
            The feature snapshot reads it as an input, and the pipeline's train job
            materializes it first. Store it with ``io_manager_key="lockgate_frames"``
            (Parquet, no pickle) or an IO manager of your own that loads DataFrames.
        dataset: folder name under the Feast store's data folder (used when neither ``path``
            nor ``asset`` is set).
        entity_columns: join keys passed to Feast (e.g. transaction, customer, merchant ids).
        timestamp_column: event time of each row; features are joined as of this time.
    """

    path: str | None = None
    asset: str | None = None
    dataset: str = "labels"
    entity_columns: tuple[str, ...]
    timestamp_column: str = "event_timestamp"

    @model_validator(mode="after")
    def _one_source(self) -> LabelSource:
        if self.path is not None and self.asset is not None:
            raise ValueError(
                f"labels name both path {self.path!r} and asset {self.asset!r}: the labels come "
                "from one place. Fix: keep one of them"
            )
        return self

    @field_validator("entity_columns")
    @classmethod
    def _some_entities(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("entity_columns must name at least one join key")
        return value


class Split(_Frozen):
    """How the snapshot is split: the most recent ``holdout_fraction`` of rows is held out.

    A time-based split: the model is always evaluated on rows later than any it trained on.
    """

    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)


class TritonTarget(_Frozen):
    """How a model version is served by NVIDIA Triton, and how it is validated first.

    Attributes:
        device: ``"gpu"`` (production config: FIL backend for LightGBM, pytorch_libtorch for
            torch, KIND_GPU instance groups) or ``"cpu"``. The local environment always serves
            on CPU through the python backend; production uses this device.
        max_batch_size: Triton's max batch size (dynamic batching on).
        instances: model instances per device.
        validation_rows: gold rows sent to the sandbox server during infra validation.
        tolerance: largest allowed |Triton output - in-process prediction|.
        p99_budget_ms: p99 latency budget of single-row requests in the sandbox.
        validation_requests: single-row requests timed in the sandbox.
    """

    device: Literal["cpu", "gpu"] = "gpu"
    max_batch_size: int = Field(default=1024, ge=1)
    instances: int = Field(default=1, ge=1)
    validation_rows: int = Field(default=500, ge=10)
    tolerance: float = Field(default=1e-5, gt=0)
    p99_budget_ms: float = Field(default=50.0, gt=0)
    validation_requests: int = Field(default=200, ge=10)


class OnlineFeatures(_Frozen):
    """The pipeline's features served from Feast's online store (gateway ``--online-features``).

    Attributes:
        materialize: declare the ``[name, online_features]`` asset (job
            ``<name>_online_features``), which runs Feast's ``materialize_incremental`` for the
            feature service's views up to now (or a given end).
        schedule: a cron string (UTC) that runs that job (schedule
            ``<name>_online_features_schedule``, running from the start); None: no schedule.
        skew: declare the ``[name, skew_report]`` asset (job ``<name>_skew_report``): the
            vectors served for entity-key requests vs point-in-time historical retrieval, with
            a check that warns or blocks by this policy (needs serving). None: no skew report.
    """

    materialize: bool = True
    schedule: str | None = None
    skew: SkewPolicy | None = Field(default_factory=SkewPolicy)

    @model_validator(mode="after")
    def _schedule_needs_the_asset(self) -> OnlineFeatures:
        if self.schedule is not None and not self.materialize:
            raise ValueError(
                f"schedule={self.schedule!r} runs the online-store materialization, which "
                "materialize=False turns off; fix: drop schedule or set materialize=True"
            )
        return self


class ModelPipeline(_Frozen):
    """One model's pipeline: Feast feature service in, locked and evaluated model versions out.

    Attributes:
        name: lowercase identifier; prefixes every asset key, job and sensor name.
        feature_service: the Feast feature service that is the model's input contract.
        feature_repo: the Feast repository (the folder holding ``feature_store.yaml``), relative
            to ``project_dir`` or absolute. Its registry, project, offline and online stores are
            used as Feast would use them; lockgate never applies to it. None: the environment's
            ``feast`` resource.
        project_dir: the user's project root: relative paths resolve against it, and its git
            commit is the code of every model version's triad. Default: the nearest folder
            holding ``pyproject.toml``, ``setup.py``, ``setup.cfg``, ``workspace.yaml`` or
            ``.git`` above the module that built the spec.
        label: the label column of ``labels``.
        task: what the model predicts: ``"binary"`` (label 0/1, the probability of 1),
            ``"multiclass"`` (integer or string classes, one probability per class) or
            ``"regression"`` (a finite number). Everything follows it: trainers, metrics, the
            gate and the label checks; Triton configs (output ``[1]`` or ``[k]``) and infra
            validation; the gateway's prediction statistics and the canary's prediction PSI
            (probabilities, the predicted class, or regression values on the champion's
            deciles); prediction drift (numeric, or over the predicted classes); and label
            feedback (labels of the task's type, its metrics, judged in the metric's
            direction).
        labels: where the labelled entity rows come from.
        trainer: any :class:`~lockgate.training.Trainer` (built-in, shipped or your own).
        validation: data-quality suite on the snapshot (blocking checks).
        split: train / held-out split.
        exclude_features: feature names of the service that the model must not use.
        gate: champion/challenger policy on a gold set (None: no gate, no promotion).
        serving: Triton target (needs a gate); None: models are promoted without serving.
        canary: progressive delivery policy for a challenger that passed the gate and the
            infra validation (needs serving); None: the default :class:`CanaryPolicy`.
        feature_changes: which Feast mutations retrain the model (None: no such sensor).
        drift: data-drift report and retrain trigger over the gateway's prediction log (needs
            serving; None: none).
        feedback: delayed labels joined to logged predictions, live performance and the
            concept-drift trigger (needs serving; None: none).
        online_features: Feast's online store at serving time: its materialization asset and
            the training/serving skew report (None: neither).
        description: shown in the Dagster UI.
        deployment: how the pipeline runs on Kubernetes where it differs from the cluster's
            :class:`~lockgate.deploy.settings.K8sSettings` (e.g. its training step's GPUs and
            memory); None: the cluster's defaults. Only the Kubernetes builders read it.
    """

    name: str
    feature_service: str
    feature_repo: str | None = None
    project_dir: str = Field(default_factory=caller_project_dir)
    label: str
    task: Literal["binary", "multiclass", "regression"] = "binary"
    labels: LabelSource
    trainer: TrainerSpec
    validation: DataValidation = Field(default_factory=DataValidation)
    split: Split = Field(default_factory=Split)
    exclude_features: tuple[str, ...] = ()
    gate: Gate | None = None
    serving: TritonTarget | None = None
    canary: CanaryPolicy = Field(default_factory=CanaryPolicy)
    feature_changes: FeatureChangePolicy | None = Field(default_factory=FeatureChangePolicy)
    drift: DriftPolicy | None = None
    feedback: FeedbackPolicy | None = None
    online_features: OnlineFeatures | None = None
    description: str = ""
    deployment: PipelineDeployment | None = None

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"pipeline name {value!r} must be lowercase letters, digits and '_' starting "
                "with a letter (it becomes an asset key prefix), e.g. 'fraud_lgbm'"
            )
        return value

    @field_validator("project_dir")
    @classmethod
    def _absolute_project(cls, value: str) -> str:
        return str(Path(value).expanduser().resolve())

    @model_validator(mode="after")
    def _feature_repo_exists(self) -> ModelPipeline:
        if self.feature_repo is None:
            return self
        repo = self.resolve_path(self.feature_repo)
        if not (repo / "feature_store.yaml").is_file():
            raise ValueError(
                f"feature_repo {self.feature_repo!r} resolves to {str(repo)!r}, which holds no "
                "feature_store.yaml: a Feast repository is the folder with that file (relative "
                f"paths resolve against project_dir {self.project_dir!r}). Fix: point "
                "feature_repo at it, or create it with `feast init`"
            )
        return self

    @model_validator(mode="after")
    def _label_is_not_a_key(self) -> ModelPipeline:
        reserved = {*self.labels.entity_columns, self.labels.timestamp_column}
        if self.label in reserved:
            raise ValueError(
                f"label {self.label!r} is also an entity or timestamp column; pick the label column"
            )
        if self.gate is not None:
            self.gate.check_task(self.task)
            # the gate's unset fields take the task's defaults (primary metric, deltas, slices)
            object.__setattr__(self, "gate", self.gate.for_task(self.task))
        if self.feedback is not None and self.task != "binary":
            # unset: the gate's primary metric (the task's default primary without a gate)
            from lockgate.tasks.catalog import default_primary, task_metric_names

            metric: str = self.feedback.metric
            if "metric" not in self.feedback.model_fields_set:
                primary = self.gate.primary if self.gate is not None else None
                metric = primary or default_primary(self.task)
                feedback = self.feedback.model_copy(update={"metric": metric})
                object.__setattr__(self, "feedback", feedback)
            if metric not in task_metric_names(self.task):
                raise ValueError(
                    f"feedback.metric {metric!r} is not a {self.task} metric; rule: one of "
                    f"{list(task_metric_names(self.task))}; fix: pass one of them, or leave "
                    "metric unset to judge the gate's primary metric"
                )
        if self.feedback is not None and self.task == "binary":
            from lockgate.monitoring.feedback import LIVE_METRICS

            if self.feedback.metric not in LIVE_METRICS:
                raise ValueError(
                    f"feedback.metric {self.feedback.metric!r} is not a binary live metric; "
                    f"rule: one of {list(LIVE_METRICS)}; fix: pass one of them"
                )
        if self.serving is not None and self.gate is None:
            raise ValueError(
                "serving needs a gate: only a model that passed the gate may reach Triton; "
                "add gate=Gate(...) or drop serving"
            )
        needs_serving = [n for n in ("drift", "feedback") if getattr(self, n) is not None]
        if self.online_features is not None and self.online_features.skew is not None:
            needs_serving.append("online_features.skew")
        if needs_serving and self.serving is None:
            raise ValueError(
                f"{' and '.join(needs_serving)} need serving: they read the gateway's prediction "
                "log; add serving=TritonTarget(...) or drop them (OnlineFeatures(skew=None) "
                "keeps the online store's materialization without a skew report)"
            )
        if self.gate is not None and self.gate.gold.key not in self.labels.entity_columns:
            raise ValueError(
                f"gate.gold.key {self.gate.gold.key!r} must be one of the entity columns "
                f"{list(self.labels.entity_columns)} so gold rows stay fixed as data grows"
            )
        return self

    def resolve_path(self, path: str | Path) -> Path:
        """``path`` resolved against :attr:`project_dir` (absolute paths stay as they are)."""
        return (Path(self.project_dir) / Path(path).expanduser()).resolve()

    @property
    def labels_asset_key(self) -> Any:
        """The key (a ``dg.AssetKey``) of the user's label asset, when the labels come from one."""
        if self.labels.asset is None:
            return None
        return _dagster_view().asset_key_from_string(self.labels.asset)

    def labels_path(self, data_dir: str | Path) -> Path:
        """Where the labels are: ``labels.path`` (project-relative), else ``data_dir/dataset``."""
        if self.labels.path is not None:
            return self.resolve_path(self.labels.path)
        return Path(data_dir) / self.labels.dataset

    @property
    def feature_repo_path(self) -> Path | None:
        """The Feast repository folder, resolved; None when the environment's store is used."""
        return self.resolve_path(self.feature_repo) if self.feature_repo is not None else None

    def asset_key(self, asset: str) -> Any:
        """The asset key (a ``dg.AssetKey``) ``[name, asset]`` of one of this pipeline's assets."""
        needs_gate = asset in ("gold_set", "champion") and self.gate is None
        if (
            asset not in ASSET_NAMES
            or needs_gate
            or (asset in ("serving", "rollout") and self.serving is None)
            or (asset == "drift_report" and self.drift is None)
            or (asset == "live_performance" and self.feedback is None)
            or (asset == "online_features" and not self.has_online_asset("materialize"))
            or (asset == "skew_report" and not self.has_online_asset("skew"))
        ):
            raise SpecError(
                f"unknown asset {asset!r} for {self.name!r}; pipelines have "
                f"{', '.join(ASSET_NAMES)} (gold_set and champion only with a gate, serving "
                "and rollout only with serving, drift_report only with drift, live_performance "
                "only with feedback, online_features and skew_report only with "
                "online_features=OnlineFeatures(...))"
            )
        return _dagster_view().asset_key([self.name, asset])

    def has_online_asset(self, part: Literal["materialize", "skew"]) -> bool:
        """Whether ``online_features`` declares its materialization or skew-report asset."""
        online = self.online_features
        if online is None:
            return False
        return online.materialize if part == "materialize" else online.skew is not None

    @property
    def canary_sensor_name(self) -> str:
        """Name of the sensor that drives this pipeline's canary."""
        return f"{self.name}_on_canary_tick"

    @property
    def feature_change_sensor_name(self) -> str:
        """Name of the sensor that retrains on Feast mutations."""
        return f"{self.name}_on_feature_change"

    @property
    def drift_sensor_name(self) -> str:
        """Name of the sensor that retrains on critical data drift."""
        return f"{self.name}_on_drift"

    @property
    def feedback_sensor_name(self) -> str:
        """Name of the sensor that joins delayed labels and retrains on concept drift."""
        return f"{self.name}_on_label_feedback"

    @property
    def train_job_name(self) -> str:
        """Name of the job that snapshots, validates, trains and evaluates."""
        return f"{self.name}_train"

    def to_definitions(
        self,
        *,
        environment: Any | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> Any:
        """This pipeline's assets, checks and jobs (a ``dg.Definitions``), resources bound.

        ``environment`` (a :class:`lockgate.Environment`) defaults to
        :meth:`Environment.from_env`; ``resources`` replaces the environment's resources of the
        same keys; several pipelines are combined with :func:`lockgate.build_definitions`.
        """
        return _dagster_view().definitions(self, environment=environment, resources=resources)
