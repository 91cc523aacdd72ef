"""The gate's pure rules on hand-built reports."""

from __future__ import annotations

import copy

import pydantic
import pytest

from lockgate.gate import GATE_RULES, EdgeCase, Gate, GoldSet, SliceSpec, evaluate_gate

GOLD = GoldSet(key="transaction_id")


def _interval(estimate: float) -> dict:
    return {"estimate": estimate, "lower": estimate - 0.01, "upper": estimate + 0.01}


def _report(*, champion: bool = True, challenger_auc: float = 0.85, champion_auc: float = 0.83):
    metrics = lambda auc: {  # noqa: E731
        "roc_auc": _interval(auc),
        "pr_auc": _interval(auc - 0.4),
        "log_loss": _interval(0.06),
        "brier": _interval(0.01),
        "recall_at_fpr": _interval(0.5),
    }
    report = {
        "pipeline": "fraud",
        "gold": {"rows": 5000, "positives": 80},
        "challenger": {"version": "new", "metrics": metrics(challenger_auc)},
        "champion": {"version": "old", "metrics": metrics(champion_auc)} if champion else None,
        "comparison": {
            "roc_auc": {
                "delta": challenger_auc - champion_auc,
                "lower": challenger_auc - champion_auc - 0.01,
                "upper": challenger_auc - champion_auc + 0.01,
                "p_value": 0.01,
                "method": "paired_bootstrap",
            }
        },
        "slices": [
            {"slice": "device", "value": "ios", "rows": 900, "challenger": 0.8, "champion": 0.81},
            {"slice": "device", "value": "web", "rows": 900, "challenger": 0.7, "champion": 0.9},
            {"slice": "device", "value": "pos", "rows": 10, "challenger": None, "champion": 0.9},
        ],
        "edge_cases": [
            {
                "name": "extreme",
                "expect": "finite",
                "passed": True,
                "actual": True,
                "threshold": "finite",
                "message": "ok",
            },
        ],
    }
    return report


def _verdicts(report: dict, **gate) -> dict:
    policy = Gate(gold=GOLD, slices=(SliceSpec(column="device"),), **gate)
    return {v.rule: v for v in evaluate_gate(report, policy)}


def test_every_rule_has_a_verdict_and_a_better_challenger_passes() -> None:
    verdicts = _verdicts(_report(), max_slice_drop=0.5)
    assert tuple(verdicts) == GATE_RULES
    assert all(v.passed for v in verdicts.values()), verdicts


def test_absolute_bounds_respect_metric_direction() -> None:
    report = _report()
    report["challenger"]["metrics"]["log_loss"] = _interval(0.3)
    verdict = _verdicts(report, absolute={"roc_auc": 0.8, "log_loss": 0.1})["gate_absolute"]
    assert not verdict.passed
    assert (verdict.metric, verdict.actual, verdict.threshold) == ("log_loss", 0.3, "max 0.1")


def test_change_thresholds_absolute_and_relative() -> None:
    worse = _report(challenger_auc=0.80, champion_auc=0.85)
    verdict = _verdicts(worse, min_delta={"roc_auc": -0.01})["gate_vs_champion"]
    assert not verdict.passed
    assert verdict.actual == pytest.approx(-0.05)
    assert "challenger 0.8000 vs champion 0.8500" in verdict.message
    relative = _verdicts(worse, min_delta={}, min_relative_delta={"roc_auc": -0.1})
    assert relative["gate_vs_champion"].passed  # a 5.9 % drop is within a 10 % allowance


def test_significance_needs_an_interval_above_zero() -> None:
    report = _report(challenger_auc=0.851, champion_auc=0.85)
    verdict = _verdicts(report, require_significance=True)["gate_significance"]
    assert not verdict.passed
    assert "not significant" in verdict.message
    assert _verdicts(_report(challenger_auc=0.9), require_significance=True)[
        "gate_significance"
    ].passed


def test_slice_drop_names_the_slice_and_skips_undefined_ones() -> None:
    verdict = _verdicts(_report(), max_slice_drop=0.05)["gate_slices"]
    assert not verdict.passed
    assert verdict.metric == "roc_auc[device=web]"
    assert verdict.actual == pytest.approx(0.2)
    assert len(verdict.failures) == 1  # pos is undefined for the challenger: reported, not judged


def test_bootstrap_rule_without_a_champion() -> None:
    report = _report(champion=False)
    assert all(v.passed for v in _verdicts(report, bootstrap="absolute").values())
    blocked = _verdicts(report, bootstrap="block")
    assert not blocked["gate_vs_champion"].passed
    assert "lockgate promote fraud new" in blocked["gate_vs_champion"].message


def test_sample_size_and_edge_cases() -> None:
    report = _report()
    report["gold"]["positives"] = 3
    report["edge_cases"][0].update(passed=False, actual=False, message="NaN scores")
    verdicts = _verdicts(report, max_slice_drop=None)
    assert not verdicts["gate_sample_size"].passed
    assert verdicts["gate_sample_size"].actual == [5000, 3]
    assert not verdicts["gate_edge_cases"].passed
    assert verdicts["gate_edge_cases"].metric == "edge_case[extreme] finite"


def test_policy_is_validated() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown"):
        Gate(gold=GOLD, primary="accuracy")
    with pytest.raises(pydantic.ValidationError, match="unknown"):
        Gate(gold=GOLD, min_delta={"f1": 0.0})
    with pytest.raises(pydantic.ValidationError, match="labels"):
        SliceSpec(column="amount", edges=(1.0, 2.0), labels=("a", "b"))
    with pytest.raises(pydantic.ValidationError, match="increasing"):
        SliceSpec(column="amount", edges=(2.0, 1.0))
    with pytest.raises(pydantic.ValidationError, match="unknown"):
        EdgeCase(name="x", metric="f1")


def test_report_is_not_mutated() -> None:
    report = _report()
    before = copy.deepcopy(report)
    _verdicts(report)
    assert report == before
