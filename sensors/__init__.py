"""Sensor factories: canary progression (feature-store mutation, drift and label feedback next)."""

from __future__ import annotations

from lockgate.sensors.canary import TickOutcome, make_canary_sensor, run_canary_tick

__all__ = ["TickOutcome", "make_canary_sensor", "run_canary_tick"]
