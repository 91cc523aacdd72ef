"""Where a rollout stands and what a tick concluded: :class:`CanaryState` (JSON round-trip),
:class:`CanaryStateRecord` (its persisted JSON form) and :class:`Decision`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lockgate.serving.canary_policy import Action, CanaryError, Mode, Phase, Status
from lockgate.serving.canary_stats import COUNTERS, check_count, sketch_counts

__all__ = ["CanaryState", "CanaryStateRecord", "Decision"]


class CanaryStateRecord(TypedDict):
    """The persisted canary state: :meth:`CanaryState.to_dict`'s JSON form, as
    ``ServingStack.canary_state`` reads it back (see :class:`CanaryState` for each field)."""

    pipeline: str
    champion: str
    challenger: str
    mode: Mode
    phase: Phase
    status: Status
    step_index: int
    weight: float
    shadow_fraction: float
    started_at: float
    step_started_at: float
    baseline: dict[str, Any]
    history: list[dict[str, Any]]
    rollback_reason: str | None


class CanaryState(BaseModel):
    """Where a rollout stands; JSON round-trips through :meth:`to_dict` / :meth:`from_dict`.

    Attributes:
        pipeline: the pipeline rolled out.
        champion: the version serving before the rollout.
        challenger: the version rolled out.
        mode: the policy mode the rollout started with.
        phase: ``"canary"`` at a live step, ``"shadow"`` or ``"bluegreen"`` in a mirror window.
        status: ``"running"``, ``"promoted"`` or ``"rolled_back"``.
        step_index: index into ``CanaryPolicy.steps`` (0 in a mirror window).
        weight: share of live traffic (0..1) the challenger answers.
        shadow_fraction: share of live requests the gateway mirrors to the challenger (0 outside
            mirror windows).
        started_at: epoch seconds of :func:`start`.
        step_started_at: epoch seconds at which the current step (or window) began.
        baseline: the challenger's counters when the step began (``requests``, ``errors``,
            ``schema_violations``, ``shadow_requests``, ``prediction_histogram``) and the
            gateway window start they belong to (``since``).
        history: transitions, oldest first: ``{at, action, from_weight, to_weight, reason,
            metrics}``.
        rollback_reason: why it was rolled back, else None.

    Example:
        >>> s = start(CanaryPolicy(), pipeline="fraud", champion="v1", challenger="v2", now=0.0)
        >>> CanaryState.from_dict(s.to_dict()) == s
        True
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    pipeline: str = Field(min_length=1)
    champion: str = Field(min_length=1)
    challenger: str = Field(min_length=1)
    mode: Mode
    phase: Phase
    status: Status = "running"
    step_index: int = Field(ge=0)
    weight: float = Field(ge=0, le=1)
    shadow_fraction: float = Field(default=0.0, ge=0, le=1)
    started_at: float
    step_started_at: float
    baseline: dict[str, Any] = Field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()
    rollback_reason: str | None = None

    @field_validator("baseline")
    @classmethod
    def _known_counters(cls, value: dict[str, Any]) -> dict[str, Any]:
        known = [*COUNTERS, "prediction_histogram", "prediction_sketch", "since"]
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ValueError(f"baseline keys {unknown} are unknown; use {known}")
        since = value.get("since")
        if since is not None and (
            isinstance(since, bool)
            or not isinstance(since, int | float)
            or not math.isfinite(since)
        ):
            raise ValueError(f"baseline since {since!r} must be finite epoch seconds or None")
        for name in COUNTERS:
            if name in value:
                check_count(f"baseline {name}", value[name])
        for v in value.get("prediction_histogram", []):
            check_count("baseline prediction_histogram bin", v)
        sketch_counts(value.get("prediction_sketch") or {})
        return value

    @property
    def running(self) -> bool:
        """True until the rollout is promoted or rolled back."""
        return self.status == "running"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (tuples as lists)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryState:
        """Inverse of :meth:`to_dict`.

        Raises:
            CanaryError: the data is not a valid state (names the field and the rule).
        """
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise CanaryError(
                f"canary state is invalid: {exc}; restore it from the audit log or start() a "
                "new rollout"
            ) from None


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` concluded.

    Attributes:
        action: ``"hold"``, ``"advance"``, ``"rollback"`` or ``"promote"``.
        state: the next state (equal to the input's on a plain hold, except for a baseline reset).
        reason: one sentence naming the metrics, values and thresholds behind the action, e.g.
            ``"challenger p99 84.1 ms > max_p99_ms 50.0 at step 5%"``; further breaches follow
            as ``"; also ..."``.
        breaches: ``{metric, actual, threshold}`` per broken limit (empty unless rollback).
        metrics: snapshot of what was measured at this tick (JSON-able).
    """

    action: Action
    state: CanaryState
    reason: str
    breaches: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, e.g. an audit-log payload."""
        return {
            "action": self.action,
            "reason": self.reason,
            "breaches": [dict(b) for b in self.breaches],
            "metrics": dict(self.metrics),
            "state": self.state.to_dict(),
        }
