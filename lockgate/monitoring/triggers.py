"""Retrain triggers: the policies of the loop-closing sensors and their pure state machine.

Three sensors per pipeline can ask for a retrain (:mod:`lockgate.sensors`):

* **feature changes** (:class:`FeatureChangePolicy`): a feature view or service definition
  changed in the Feast registry, source files were added or grew, a materialization ran. Every
  mutation is a retrain: there is no cooldown, the run key (the mutation fingerprint) dedupes.
* **data drift** (:class:`DriftPolicy`): the gateway's prediction log against the champion's
  training snapshot, per feature and for the predictions themselves.
* **label feedback** (:class:`FeedbackPolicy`): delayed labels joined to logged predictions by
  trace id give the live performance of each version; a drop is concept drift.

Drift and feedback are noisy signals, so they go through :func:`step`, a small state machine
with **hysteresis** and a **cooldown** (a flapping metric cannot start a storm of retrains):

* a window at ``critical`` adds one to the streak; ``consecutive`` critical windows in a row
  open an *episode*;
* inside an episode a ``warn`` window keeps the episode open (the hysteresis: leaving needs the
  metric back below the warn level, not just below critical); an ``ok`` window closes it;
  outside an episode a ``warn`` window resets the streak;
* a retrain fires when an episode opens, and again while it stays open each time
  ``cooldown_seconds`` have passed since the last one (the drift survived a retrain that was
  gated, say); never twice within the cooldown.

Nothing here reads a clock or talks to Dagster: ``now`` is passed in, the state is a plain
JSON-able dict kept in the sensor's cursor.

Example:
    >>> state = TriggerState()
    >>> state, fire = step(state, "critical", now=0.0, consecutive=2, cooldown_seconds=60)
    >>> fire.fire, fire.reason
    (False, 'critical 1 of 2 windows in a row')
    >>> state, fire = step(state, "critical", now=10.0, consecutive=2, cooldown_seconds=60)
    >>> fire.fire
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lockgate._util.durations import parse_duration
from lockgate.errors import SpecError

__all__ = [
    "DriftPolicy",
    "FeatureChangePolicy",
    "FeedbackPolicy",
    "TriggerDecision",
    "TriggerState",
    "step",
]

Level = Literal["ok", "warn", "critical"]
_LEVELS = ("ok", "warn", "critical")


class _Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("cooldown_seconds", "lookback_seconds", mode="before", check_fields=False)
    @classmethod
    def _duration_string(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


def _pair(name: str, value: tuple[float, float]) -> tuple[float, float]:
    warn, critical = value
    if not 0.0 <= warn <= critical:
        raise ValueError(
            f"{name}={tuple(value)} must be (warn, critical) with 0 <= warn <= critical; "
            f"e.g. {name}=(0.1, 0.2)"
        )
    return value


class FeatureChangePolicy(_Policy):
    """When feature-store mutations retrain the model (``<name>_on_feature_change`` sensor).

    Attributes:
        definitions: retrain when a feature view or the feature service definition changes.
        source_data: retrain when source files of the service's views (or the label dataset)
            are added, removed, grow or are rewritten.
        materializations: retrain when a view's materialization interval moves.
        interval_seconds: the sensor's minimum interval between ticks.
    """

    definitions: bool = True
    source_data: bool = True
    materializations: bool = False
    interval_seconds: int = Field(default=60, ge=1)


class _WindowPolicy(_Policy):
    """What drift and feedback share: judged windows feed a hysteresis/cooldown trigger."""

    consecutive: int = Field(default=2, ge=1)
    cooldown_seconds: float = Field(default=6 * 3600.0, ge=0)
    interval_seconds: int = Field(default=300, ge=1)

    def step(
        self, state: TriggerState, level: Level, *, now: float
    ) -> tuple[TriggerState, TriggerDecision]:
        """:func:`step` with this policy's ``consecutive`` and ``cooldown_seconds``."""
        return step(
            state,
            level,
            now=now,
            consecutive=self.consecutive,
            cooldown_seconds=self.cooldown_seconds,
        )


class DriftPolicy(_WindowPolicy):
    """Data-drift analysis and its retrain trigger (``drift_report`` asset, ``<name>_on_drift``).

    The current window is the most recent ``window_rows`` live predictions of the gateway's log
    (shadow calls and errors excluded) no older than ``window_seconds``; the reference is the
    champion's training snapshot. Thresholds are ``(warn, critical)``: a metric at or above a
    level reaches it (defaults from the seed articles: PSI 0.1 / 0.2, KS 0.05 / 0.1, JSD 0.1 / 0.2).

    Attributes:
        psi: population stability index levels.
        ks: Kolmogorov-Smirnov statistic levels (numeric features).
        jsd: Jensen-Shannon distance levels.
        prediction_psi: levels of the PSI of the served scores vs the champion's scores on the
            reference; None: prediction drift is reported but never raises the severity.
        features: features to watch; empty: every feature of the wire schema.
        bins: reference-quantile bins for PSI and JSD.
        window_rows: most recent live predictions analysed (only they are held in memory);
            None: every live prediction of the last ``window_seconds``, streamed into running
            counts (bounded memory, however large the log).
        window_seconds: oldest prediction analysed, in seconds before now (None: no limit).
        min_rows: fewer predictions in the window: the report says so and nothing triggers.
        min_critical_features: critical features needed for the window to count as critical.
        consecutive: critical windows in a row before a retrain (see :func:`step`).
        cooldown_seconds: least time between two drift retrains (number or ``"6h"``).
        interval_seconds: the sensor's minimum interval between ticks.
    """

    psi: tuple[float, float] = (0.1, 0.2)
    ks: tuple[float, float] = (0.05, 0.1)
    jsd: tuple[float, float] = (0.1, 0.2)
    prediction_psi: tuple[float, float] | None = (0.1, 0.2)
    features: tuple[str, ...] = ()
    bins: int = Field(default=10, ge=2, le=1000)
    window_rows: int | None = Field(default=50_000, ge=10)
    window_seconds: float | None = Field(default=7 * 86400.0, gt=0)
    min_rows: int = Field(default=1000, ge=10)
    min_critical_features: int = Field(default=1, ge=1)

    @field_validator("psi", "ks", "jsd", "prediction_psi")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None, info: Any) -> tuple[float, float] | None:
        return None if value is None else _pair(info.field_name, value)

    @model_validator(mode="after")
    def _window_holds_min_rows(self) -> DriftPolicy:
        if self.window_rows is not None and self.min_rows > self.window_rows:
            raise ValueError(
                f"min_rows={self.min_rows} is above window_rows={self.window_rows}: no window "
                "could ever be analysed; lower min_rows or raise window_rows"
            )
        return self

    def thresholds(self) -> Any:
        """The engine's :class:`lockgate.monitoring.drift.DriftThresholds` for these levels."""
        from lockgate.monitoring.drift import DriftThresholds

        return DriftThresholds(
            psi_warn=self.psi[0],
            psi_critical=self.psi[1],
            ks_warn=self.ks[0],
            ks_critical=self.ks[1],
            jsd_warn=self.jsd[0],
            jsd_critical=self.jsd[1],
        )


class FeedbackPolicy(_WindowPolicy):
    """Delayed labels -> live performance per version -> concept-drift trigger.

    Labels arrive as Parquet files under ``<data_dir>/<dataset>/`` with columns ``trace_id``
    (returned by the gateway with each answer), ``label`` (0/1; a number for regression, the
    class label for multiclass) and ``label_timestamp``.
    They are joined to the prediction log by trace id (``live_performance`` asset,
    ``<name>_on_label_feedback`` sensor).

    Attributes:
        dataset: folder of the label files under the Feast data directory.
        metric: live metric judged, one of the task's (:func:`lockgate.monitoring.feedback.live_metrics`):
            binary ``roc_auc``, ``pr_auc``, ``log_loss`` or ``brier``; multiclass
            ``log_loss``, ``top1_accuracy``, ``macro_f1``, ``min_class_recall`` or
            ``roc_auc_ovr``; regression ``rmse``, ``mae`` or ``r2``. Left unset, a multiclass
            or regression pipeline judges its gate's primary metric (``log_loss``, ``rmse`` by
            default); binary keeps ``roc_auc``.
        window: most recent labelled predictions per version in the rolling window.
        min_labels: labelled predictions (and at least one of each class) needed to judge.
        lookback_seconds: only predictions this recent are joined (bounds each tick's scan of
            the log; make it longer than the longest label delay).
        max_drop: critical when the champion's live metric is worse than its gold-set estimate
            by more than this; warn at half of it.
        min_value: critical when the live metric is worse than this (None: not used).
        consecutive: critical windows in a row before a retrain.
        cooldown_seconds: least time between two feedback retrains.
        interval_seconds: the sensor's minimum interval between ticks.
    """

    dataset: str = "feedback"
    metric: Literal[
        "roc_auc", "pr_auc", "log_loss", "brier",  # binary (and log_loss multiclass)
        "top1_accuracy", "macro_f1", "min_class_recall", "roc_auc_ovr",  # multiclass
        "rmse", "mae", "r2",  # regression
    ] = "roc_auc"  # fmt: skip
    window: int = Field(default=5000, ge=10)
    min_labels: int = Field(default=500, ge=10)
    lookback_seconds: float = Field(default=30 * 86400.0, gt=0)
    max_drop: float = Field(default=0.05, ge=0)
    min_value: float | None = None

    @model_validator(mode="after")
    def _window_holds_min_labels(self) -> FeedbackPolicy:
        if self.min_labels > self.window:
            raise ValueError(
                f"min_labels={self.min_labels} is above window={self.window}: the window could "
                "never be judged; lower min_labels or raise window"
            )
        return self


@dataclass(frozen=True)
class TriggerState:
    """What a trigger remembers between windows (kept in the sensor cursor).

    Attributes:
        streak: critical windows in a row so far.
        in_episode: an episode is open (``consecutive`` critical windows were seen and no ok
            window since).
        last_fired: when a retrain was last requested (unix seconds), or None.
        fired: retrains requested so far.
        last_level: level of the last window.
    """

    streak: int = 0
    in_episode: bool = False
    last_fired: float | None = None
    fired: int = 0
    last_level: Level = "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TriggerState:
        """Reads :meth:`to_dict` output; None or ``{}`` is the initial state."""
        if not data:
            return cls()
        level = data.get("last_level", "ok")
        last = data.get("last_fired")
        if level not in _LEVELS or (last is not None and not math.isfinite(float(last))):
            raise SpecError(
                f"trigger state {data!r} is malformed (last_level must be one of {_LEVELS}, "
                "last_fired a number or null); reset the sensor cursor to start over"
            )
        return cls(
            streak=int(data.get("streak", 0)),
            in_episode=bool(data.get("in_episode", False)),
            last_fired=None if last is None else float(last),
            fired=int(data.get("fired", 0)),
            last_level=level,
        )


@dataclass(frozen=True)
class TriggerDecision:
    """Whether this window requests a retrain, and why (said in the sensor's skip reason)."""

    fire: bool
    reason: str


def step(
    state: TriggerState,
    level: Level,
    *,
    now: float,
    consecutive: int,
    cooldown_seconds: float,
) -> tuple[TriggerState, TriggerDecision]:
    """Feeds one analysed window's level into the trigger (rules in the module docstring).

    Args:
        state: the state after the previous window.
        level: this window's level.
        now: unix seconds of this window.
        consecutive: critical windows in a row that open an episode (>= 1).
        cooldown_seconds: least time between two retrains (>= 0).

    Returns:
        The next state and the decision.

    Raises:
        SpecError: ``level`` is unknown, or ``consecutive`` / ``cooldown_seconds`` invalid.
    """
    if level not in _LEVELS:
        raise SpecError(f"level {level!r} is not one of {_LEVELS}; pass the window's severity")
    if consecutive < 1 or not cooldown_seconds >= 0:
        raise SpecError(
            f"consecutive={consecutive}, cooldown_seconds={cooldown_seconds}: need "
            "consecutive >= 1 and cooldown_seconds >= 0"
        )
    if level == "ok":
        closing = " (episode closed)" if state.in_episode else ""
        new = replace(state, streak=0, in_episode=False, last_level="ok")
        return new, TriggerDecision(False, f"below the warn level{closing}")
    if level == "warn":
        if state.in_episode:
            new = replace(state, last_level="warn")
            return new, TriggerDecision(
                False, "warn inside an open episode: it stays open until a window is ok"
            )
        new = replace(state, streak=0, last_level="warn")
        return new, TriggerDecision(False, "warn: recorded, no retrain")
    streak = state.streak + 1
    opens = not state.in_episode and streak >= consecutive
    if not state.in_episode and not opens:
        new = replace(state, streak=streak, last_level="critical")
        return new, TriggerDecision(False, f"critical {streak} of {consecutive} windows in a row")
    since = None if state.last_fired is None else now - state.last_fired
    if since is not None and since < cooldown_seconds:
        new = replace(state, streak=streak, in_episode=True, last_level="critical")
        wait = cooldown_seconds - since
        return new, TriggerDecision(
            False,
            f"critical, but the last retrain was requested {since:.0f} s ago: cooldown "
            f"{cooldown_seconds:.0f} s, {wait:.0f} s left",
        )
    new = TriggerState(
        streak=streak,
        in_episode=True,
        last_fired=now,
        fired=state.fired + 1,
        last_level="critical",
    )
    why = (
        f"critical {streak} windows in a row"
        if opens
        else f"still critical {since:.0f} s after the last retrain (cooldown passed)"
    )
    return new, TriggerDecision(True, why)
