"""Where a rollout stands and what a tick concluded: :class:`CanaryState` (JSON round-trip),
:class:`CanaryStateRecord` (its persisted JSON form), :class:`Decision`, and
:class:`CanaryStateStore`, where the records persist between ticks.

The store keeps one record per pipeline in a :class:`~lockgate.state.swap.SwapStore`: files
(``<state dir>/<pipeline>.json``, the embedded default) or PostgreSQL (production, shared by
every controller). :meth:`CanaryStateStore.swap` replaces a record only if it is still the one
the caller read, so of two controllers that tick at once from the same state, exactly one
records its transition; the other sees ``False`` and leaves the rollout alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lockgate.serving.canary_policy import Action, CanaryError, Mode, Phase, Status
from lockgate.serving.canary_stats import COUNTERS, check_count, sketch_counts
from lockgate.state.swap import SwapStore

__all__ = ["CanaryState", "CanaryStateRecord", "CanaryStateStore", "Decision"]


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


def _record_bytes(state: Mapping[str, Any]) -> bytes:
    return (json.dumps(dict(state), sort_keys=True, indent=1)).encode("utf-8")


class CanaryStateStore:
    """The persisted canary state of each pipeline, changed by compare-and-swap.

    Args:
        store: where the records live; key ``<pipeline>.json``, value the record's JSON
            (sorted keys, indented: the file the embedded default has always written).
        where: how to name the store in messages (a folder, a redacted URL).
    """

    def __init__(self, store: SwapStore, *, where: str) -> None:
        self._store = store
        self._where = where

    def __repr__(self) -> str:
        return f"CanaryStateStore({self._where!r})"

    @property
    def where(self) -> str:
        """Where the records live, for messages."""
        return self._where

    @staticmethod
    def _key(pipeline: str) -> str:
        if not pipeline or "/" in pipeline or pipeline.startswith("."):
            raise CanaryError(
                f"pipeline name {pipeline!r} cannot name a canary state record; rule: a plain "
                "name without '/' or a leading '.'; fix: use the pipeline spec's name"
            )
        return f"{pipeline}.json"

    def _read(self, pipeline: str) -> tuple[bytes | None, CanaryStateRecord | None]:
        raw = self._store.get(self._key(pipeline))
        if raw is None:
            return None, None
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise CanaryError(
                f"the canary state of {pipeline} in {self._where} is not JSON ({exc}); rule: "
                "only the controller writes it; fix: restore it from the audit log's last "
                "canary entry or start() a new rollout"
            ) from None
        state: CanaryStateRecord = record
        return raw, state

    def get(self, pipeline: str) -> CanaryStateRecord | None:
        """The record of ``pipeline`` (None: no rollout was ever started)."""
        return self._read(pipeline)[1]

    def swap(
        self, pipeline: str, expected: Mapping[str, Any] | None, state: Mapping[str, Any]
    ) -> bool:
        """Store ``state`` only if the record is still ``expected`` (None: no record yet).

        Returns:
            True when ``state`` was stored; False when another writer changed the record since
            the caller read it (then nothing changed).
        """
        raw, current = self._read(pipeline)
        if (None if current is None else dict(current)) != (
            None if expected is None else dict(expected)
        ):
            return False
        return self._store.swap(self._key(pipeline), raw, _record_bytes(state))

    def save(self, pipeline: str, state: Mapping[str, Any]) -> None:
        """Store ``state`` whatever the record holds (an operator's reset, a new rollout)."""
        key = self._key(pipeline)
        data = _record_bytes(state)
        for _ in range(50):
            if self._store.swap(key, self._store.get(key), data):
                return
        raise CanaryError(
            f"the canary state of {pipeline} in {self._where} kept changing under 50 attempts; "
            "rule: one controller ticks a pipeline at a time; fix: check that no other "
            "controller loops on it, then retry"
        )

    def pipelines(self) -> list[str]:
        """Pipelines that have a record, sorted."""
        return sorted(
            key.removesuffix(".json")
            for key in self._store.keys("")
            if key.endswith(".json") and "/" not in key
        )
