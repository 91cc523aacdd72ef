"""The gate's pure rules on hand-built reports."""

from __future__ import annotations

import copy

import pydantic
import pytest

from lockgate.evaluation.gate import GATE_RULES, EdgeCase, Gate, GoldSet, SliceSpec, evaluate_gate

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


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def _task_report(task: str, *, challenger: float, champion: float) -> dict:
    """A report of ``task`` whose primary metric is ``challenger`` vs ``champion``."""
    from lockgate.tasks.catalog import default_primary, task_metric_names

    primary = default_primary(task)

    def block(version: str, value: float) -> dict:
        metrics = {m: _interval(0.5) for m in task_metric_names(task)}
        metrics[primary] = _interval(value)
        return {"version": version, "metrics": metrics}

    gold: dict = {"rows": 5000, "positives": None}
    if task == "multiclass":
        gold["class_counts"] = {"cat": 2000, "dog": 2500, "eel": 500}
    return {
        "pipeline": "p",
        "task": task,
        "gold": gold,
        "challenger": block("new", challenger),
        "champion": block("old", champion),
        "comparison": {
            primary: {
                "delta": challenger - champion,
                "lower": challenger - champion - 0.01,
                "upper": challenger - champion + 0.01,
                "p_value": 0.01,
                "method": "paired_bootstrap",
            }
        },
        "slices": [],
        "edge_cases": [],
    }


def test_a_binary_only_metric_is_refused_for_a_regression_task() -> None:
    from lockgate.errors import SpecError

    gate = Gate(gold=GOLD, absolute={"roc_auc": 0.8})
    gate.check_task("binary")
    with pytest.raises(
        SpecError,
        match=r"Gate.absolute names metric 'roc_auc', which task "
        r"'regression' does not report.*\['rmse', 'mae', 'r2'\]",
    ):
        gate.check_task("regression")
    with pytest.raises(SpecError, match="task 'regression'"):
        evaluate_gate(_task_report("regression", challenger=1.0, champion=1.1), gate)
    with pytest.raises(SpecError, match="comparison='delong' on task 'multiclass'"):
        Gate(gold=GOLD, comparison="delong").check_task("multiclass")
    with pytest.raises(SpecError, match=r"edge_cases\['e'\]\.metric names metric 'pr_auc'"):
        Gate(gold=GOLD, edge_cases=(EdgeCase(name="e", metric="pr_auc"),)).check_task("multiclass")
    with pytest.raises(SpecError, match="task='ranking' is unknown"):
        gate.check_task("ranking")


def test_metrics_of_two_tasks_are_refused_when_the_gate_is_built() -> None:
    with pytest.raises(
        pydantic.ValidationError, match=r"different tasks.*'rmse': \['regression'\]"
    ):
        Gate(gold=GOLD, primary="roc_auc", min_delta={"rmse": 0.0})
    assert Gate(gold=GOLD, min_delta={"log_loss": 0.0}).compatible_tasks() == (
        "binary",
        "multiclass",
    )


def test_unset_fields_follow_the_task() -> None:
    gate = Gate(
        gold=GOLD,
        slices=(SliceSpec(column="device"),),
        edge_cases=(EdgeCase(name="e", expect="min_metric"),),
    )
    assert gate.for_task("binary") is gate
    regression = gate.for_task("regression")
    assert (regression.primary, regression.absolute, regression.min_delta) == (
        "rmse",
        {},
        {"rmse": 0.0},
    )
    assert regression.slice_metric == "rmse"
    assert regression.edge_cases[0].metric == "rmse"
    multiclass = Gate(gold=GOLD, primary="macro_f1").for_task("multiclass")
    assert (multiclass.primary, multiclass.min_delta, multiclass.slice_metric) == (
        "macro_f1",
        {"macro_f1": 0.0},
        "macro_f1",
    )
    assert Gate(gold=GOLD).for_task("multiclass").primary == "log_loss"
    explicit = Gate(gold=GOLD, absolute={"rmse": 5.0}, min_delta={"mae": -0.1}).for_task(
        "regression"
    )
    assert (explicit.absolute, explicit.min_delta) == ({"rmse": 5.0}, {"mae": -0.1})


@pytest.mark.parametrize(
    ("task", "better", "worse"),
    [("regression", (1.0, 1.2), (1.3, 1.2)), ("multiclass", (0.40, 0.45), (0.52, 0.45))],
)
def test_vs_champion_judges_the_task_primary_metric(
    task: str, better: tuple[float, float], worse: tuple[float, float]
) -> None:
    gate = Gate(gold=GOLD, require_significance=True)
    ok = {
        v.rule: v
        for v in evaluate_gate(_task_report(task, challenger=better[0], champion=better[1]), gate)
    }
    assert all(v.passed for v in ok.values()), ok
    bad = {
        v.rule: v
        for v in evaluate_gate(_task_report(task, challenger=worse[0], champion=worse[1]), gate)
    }
    primary = "rmse" if task == "regression" else "log_loss"
    assert not bad["gate_vs_champion"].passed
    assert bad["gate_vs_champion"].metric == primary
    assert bad["gate_vs_champion"].actual == pytest.approx(-(worse[0] - worse[1]))
    assert not bad["gate_significance"].passed


def test_sample_size_per_task() -> None:
    gate = Gate(gold=GOLD, min_gold_rows=1000, min_gold_rows_per_class=600)
    multiclass = {
        v.rule: v
        for v in evaluate_gate(_task_report("multiclass", challenger=0.4, champion=0.5), gate)
    }
    verdict = multiclass["gate_sample_size"]
    assert not verdict.passed
    assert verdict.actual == [5000, 500]
    assert "'eel' has 500" in verdict.message
    regression = _task_report("regression", challenger=1.0, champion=1.1)
    regression["gold"]["rows"] = 900
    verdict = {v.rule: v for v in evaluate_gate(regression, gate)}["gate_sample_size"]
    assert not verdict.passed
    assert (verdict.actual, verdict.threshold) == (900, 1000)
