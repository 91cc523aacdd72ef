"""Evaluation: challenger vs champion on the gold set, and the gate that judges it.

- :mod:`~lockgate.evaluation.gate`: the gate policy (:class:`~lockgate.Gate`) and its verdicts.
- :mod:`~lockgate.evaluation.report`: the evaluation report the gate reads, built from
  :mod:`~lockgate.evaluation.predictions` (scoring) and :mod:`~lockgate.evaluation.edge_cases`.
- :mod:`~lockgate.evaluation.stats`: the statistics' public face, by role in
  :mod:`~lockgate.evaluation.bootstrap` (over :mod:`~lockgate.evaluation.resampling`),
  :mod:`~lockgate.evaluation.delong`, :mod:`~lockgate.evaluation.reliability`,
  :mod:`~lockgate.evaluation.slices`, :mod:`~lockgate.evaluation.results` and
  :mod:`~lockgate.evaluation.metric_checks`.
- The report rendered: :mod:`~lockgate.evaluation.model_card` (markdown),
  :mod:`~lockgate.evaluation.check_metadata` (Dagster check metadata) and
  :mod:`~lockgate.evaluation.comparison_table` (side by side).
- :mod:`~lockgate.evaluation.plots`: PNG plots of an evaluation and of a drift report.

This package exports the names the other subpackages use.
"""

from __future__ import annotations

from lockgate.evaluation.check_metadata import check_description, gate_check_values
from lockgate.evaluation.comparison_table import comparison_rows
from lockgate.evaluation.gate import (
    GATE_RULES,
    Condition,
    EdgeCase,
    Gate,
    GoldSet,
    RuleVerdict,
    SliceSpec,
    evaluate_gate,
)
from lockgate.evaluation.model_card import model_card
from lockgate.evaluation.report import build_report, encode_labels, gold_mask, predict

__all__ = [
    "GATE_RULES",
    "Condition",
    "EdgeCase",
    "Gate",
    "GoldSet",
    "RuleVerdict",
    "SliceSpec",
    "build_report",
    "check_description",
    "comparison_rows",
    "encode_labels",
    "evaluate_gate",
    "gate_check_values",
    "gold_mask",
    "model_card",
    "predict",
]
