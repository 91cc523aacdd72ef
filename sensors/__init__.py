"""Sensor factories (feature-store mutation, drift, canary, label feedback) live here."""
