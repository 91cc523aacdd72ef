"""Sensor factories: canary progression, feature-store mutations, data drift, label feedback."""

from __future__ import annotations

from lockgate.sensors.canary import TickOutcome, make_canary_sensor, run_canary_tick
from lockgate.sensors.drift import DriftTick, make_drift_sensor, run_drift_tick
from lockgate.sensors.feature_store import (
    FeatureChangeTick,
    make_feature_change_sensor,
    run_feature_change_tick,
)
from lockgate.sensors.feedback import FeedbackTick, make_feedback_sensor, run_feedback_tick

__all__ = [
    "DriftTick",
    "FeatureChangeTick",
    "FeedbackTick",
    "TickOutcome",
    "make_canary_sensor",
    "make_drift_sensor",
    "make_feature_change_sensor",
    "make_feedback_sensor",
    "run_canary_tick",
    "run_drift_tick",
    "run_feature_change_tick",
    "run_feedback_tick",
]
