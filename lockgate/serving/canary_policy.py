"""The canary's policy: how a challenger is rolled out (steps, holds, modes) and when it is
rolled back (latency, error, schema, prediction and shadow limits), plus its vocabulary: the
modes, phases, statuses and actions, and :class:`CanaryError`.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lockgate._util.durations import parse_duration
from lockgate.errors import LockgateError

__all__ = ["ACTIONS", "Action", "CanaryError", "CanaryPolicy", "Mode", "Phase", "Status"]

Mode = Literal["canary", "shadow", "bluegreen"]
Phase = Literal["canary", "shadow", "bluegreen"]
Status = Literal["running", "promoted", "rolled_back"]
Action = Literal["hold", "advance", "rollback", "promote"]

ACTIONS: tuple[Action, ...] = ("hold", "advance", "rollback", "promote")
"""Every :attr:`Decision.action`."""


class CanaryError(LockgateError, ValueError):
    """The canary controller got inconsistent input (finished state, bad stats, ...)."""


class CanaryPolicy(BaseModel):
    """How a challenger is rolled out and when it is rolled back.

    Attributes:
        steps: live traffic percentages of the canary, strictly increasing, ending at 100.
        hold_seconds: time spent at each step (and in a mirror window) before it may advance;
            a number of seconds or a string such as ``"6h"``, ``"30s"``, ``"10m"``, ``"1h30m"``.
        min_requests: requests the challenger must have received at a step before it advances.
        max_p99_ms: challenger p99 latency limit.
        max_error_rate: challenger error-rate limit (errors / requests received, live and shadow).
        max_schema_violation_rate: challenger schema-violation-rate limit.
        max_p99_ratio: limit on challenger p99 / champion p99; None waives it.
        max_error_rate_delta: limit on challenger error rate minus champion error rate; None
            waives it.
        max_prediction_psi: limit on the PSI between the champion's and the challenger's
            prediction distributions (see :func:`prediction_psi`: probabilities, predicted
            classes or regression values by task); None waives it.
        prediction_psi_confidence: how sure the PSI check must be that a PSI over
            ``max_prediction_psi`` is a real change, not the noise of small samples: it rolls
            back only when the PSI is also above this quantile of the PSI that two samples of
            the same sizes from one distribution show (:func:`psi_noise`); until then the check
            holds the step and waits for more requests. With 20 requests at a 1 % step, an
            unchanged model shows a PSI over 0.5 about a quarter of the time; with 500, almost
            never. None judges the PSI alone.
        mode: ``"canary"``, ``"shadow"`` or ``"bluegreen"`` (see the module docstring).
        shadow_fraction: share of live requests mirrored to the challenger in a mirror window.
        max_shadow_mean_abs_diff: limit on the mean absolute difference between the
            challenger's and the champion's predictions on mirrored requests (the largest
            difference of a row's values for a multiclass model); in the label's units for a
            regression model, so set it to that scale; None waives it.
        interval_seconds: the canary sensor's minimum interval between ticks (the Dagster
            daemon evaluates sensors at most every 5 s or so).

    Example:
        >>> CanaryPolicy(steps=(10, 50, 100), hold_seconds="30m").hold_seconds
        1800.0
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    steps: tuple[float, ...] = (1.0, 5.0, 25.0, 100.0)
    hold_seconds: float = Field(default=6 * 3600.0, ge=0)
    min_requests: int = Field(default=200, ge=1)
    max_p99_ms: float = Field(default=50.0, gt=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    max_schema_violation_rate: float = Field(default=0.001, ge=0, le=1)
    max_p99_ratio: float | None = Field(default=1.5, gt=0)
    max_error_rate_delta: float | None = Field(default=0.005, ge=0, le=1)
    max_prediction_psi: float | None = Field(default=0.2, ge=0)
    prediction_psi_confidence: float | None = Field(default=0.99, gt=0, lt=1)
    mode: Mode = "canary"
    shadow_fraction: float = Field(default=1.0, gt=0, le=1)
    max_shadow_mean_abs_diff: float | None = Field(default=0.1, ge=0)
    interval_seconds: int = Field(default=30, ge=1)

    @field_validator("hold_seconds", mode="before")
    @classmethod
    def _duration_string(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("steps")
    @classmethod
    def _increasing_to_100(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value:
            raise ValueError(
                "steps () is empty; give traffic percentages ending at 100, e.g. (1, 5, 25, 100)"
            )
        bad = [s for s in value if not 0 < s <= 100]
        if bad:
            raise ValueError(
                f"steps {list(value)} hold {bad}: each step is a traffic percentage in (0, 100]"
            )
        for before, after in itertools.pairwise(value):
            if after <= before:
                raise ValueError(
                    f"steps {list(value)} are not strictly increasing ({after:g} follows "
                    f"{before:g}); sort them and drop repeats"
                )
        if value[-1] != 100:
            raise ValueError(
                f"steps {list(value)} end at {value[-1]:g}%, not 100%; append 100 so that the "
                "last step sends all traffic to the challenger before promotion"
            )
        return value
