"""Monitoring: what closes the loop after a model is served.

- :mod:`~lockgate.monitoring.drift`: the drift engine (PSI, KS, Jensen-Shannon), pure numpy; one
  feature's measures in :mod:`~lockgate.monitoring.drift_measures`, streaming in
  :mod:`~lockgate.monitoring.drift_stream`.
- :mod:`~lockgate.monitoring.drift_report`: live traffic vs the champion's training data.
- :mod:`~lockgate.monitoring.feedback`: delayed labels joined to the prediction log (the label
  files: :mod:`~lockgate.monitoring.feedback_store`; live metrics:
  :mod:`~lockgate.monitoring.feedback_performance`).
- :mod:`~lockgate.monitoring.mutations`: fingerprints of a feature service and their changes.
- :mod:`~lockgate.monitoring.skew`: training/serving skew, the online vectors served vs
  point-in-time historical retrieval.
- :mod:`~lockgate.monitoring.triggers`: the retrain policies and their pure state machine.
"""

from lockgate.monitoring.drift import DriftAccumulator, DriftThresholds, FeatureDrift, frame_drift
from lockgate.monitoring.drift_report import compute_drift_report
from lockgate.monitoring.feedback import judge, labels_for, live_performance, write_feedback
from lockgate.monitoring.skew import SkewPolicy, compare_served, compute_skew_report
from lockgate.monitoring.triggers import (
    DriftPolicy,
    FeatureChangePolicy,
    FeedbackPolicy,
    TriggerDecision,
    TriggerState,
)

__all__ = [
    "DriftAccumulator",
    "DriftPolicy",
    "DriftThresholds",
    "FeatureChangePolicy",
    "FeatureDrift",
    "FeedbackPolicy",
    "SkewPolicy",
    "TriggerDecision",
    "TriggerState",
    "compare_served",
    "compute_drift_report",
    "compute_skew_report",
    "frame_drift",
    "judge",
    "labels_for",
    "live_performance",
    "write_feedback",
]
