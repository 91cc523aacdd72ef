"""Sensor factories: canary progression, data drift, label feedback (feature-store mutations next)."""

from __future__ import annotations

from lockgate.sensors.canary import TickOutcome, make_canary_sensor, run_canary_tick
from lockgate.sensors.drift import DriftTick, make_drift_sensor, run_drift_tick
from lockgate.sensors.feedback import FeedbackTick, make_feedback_sensor, run_feedback_tick

__all__ = [
    "DriftTick",
    "FeedbackTick",
    "TickOutcome",
    "make_canary_sensor",
    "make_drift_sensor",
    "make_feedback_sensor",
    "run_canary_tick",
    "run_drift_tick",
    "run_feedback_tick",
]
