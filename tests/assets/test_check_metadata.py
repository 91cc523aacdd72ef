"""Gate check metadata: one schema per rule in passing and failing runs, typed for Dagster."""

from __future__ import annotations

import math
from typing import Any

import dagster as dg
import numpy as np
import pytest

from lockgate.assets.gate import run_verdict_tags, typed_metadata
from lockgate.evaluation.check_metadata import check_description, gate_check_values
from lockgate.evaluation.gate import GATE_RULES, EdgeCase, Gate, GoldSet, SliceSpec, evaluate_gate

GATE = Gate(
    gold=GoldSet(key="id"),
    absolute={"roc_auc": 0.7, "log_loss": 0.5},
    min_delta={"roc_auc": 0.0, "pr_auc": 0.0},
    require_significance=True,
    slices=(SliceSpec(column="device"),),
    max_slice_drop=0.05,
    edge_cases=(EdgeCase(name="new_accounts"), EdgeCase(name="night")),
    min_gold_rows=100,
    min_gold_positives=10,
)


def _interval(estimate: float, width: float = 0.02) -> dict[str, float]:
    return {"estimate": estimate, "lower": estimate - width, "upper": estimate + width}


def _case(name: str, passed: bool) -> dict[str, Any]:
    return {
        "name": name,
        "expect": "finite",
        "passed": passed,
        "actual": 1.0 if passed else 0.5,
        "threshold": 1.0,
        "message": "all predictions finite" if passed else "half the predictions are NaN",
    }


def report(*, better: bool) -> dict[str, Any]:
    """A binary report where the challenger beats the champion everywhere, or loses on pr_auc,
    one slice and one edge case (roc_auc stays better: the failing metric is not the primary)."""
    mine = {"roc_auc": 0.86, "pr_auc": 0.52 if better else 0.41, "log_loss": 0.08, "brier": 0.02}
    theirs = {"roc_auc": 0.84, "pr_auc": 0.50, "log_loss": 0.09, "brier": 0.021}
    comparison = {
        m: {
            "delta": mine[m] - theirs[m],
            "lower": mine[m] - theirs[m] - 0.01,
            "upper": mine[m] - theirs[m] + 0.01,
            "p_value": 0.01,
            "method": "paired_bootstrap",
        }
        for m in mine
    }
    return {
        "pipeline": "fraud",
        "task": "binary",
        "gold": {"rows": 5000 if better else 90, "positives": 80},
        "challenger": {"version": "v2", "metrics": {m: _interval(v) for m, v in mine.items()}},
        "champion": {"version": "v1", "metrics": {m: _interval(v) for m, v in theirs.items()}},
        "comparison": comparison,
        "slices": [
            {"slice": "device", "value": "ios", "rows": 900, "challenger": 0.85, "champion": 0.84},
            {
                "slice": "device",
                "value": "android",
                "rows": 800,
                "challenger": 0.83 if better else 0.70,
                "champion": 0.82,
            },
        ],
        "edge_cases": [_case("new_accounts", True), _case("night", better)],
    }


def values(*, better: bool) -> dict[str, dict[str, Any]]:
    data = report(better=better)
    return {v.rule: gate_check_values(v, data, GATE) for v in evaluate_gate(data, GATE)}


def test_every_rule_keeps_its_keys_and_types_when_it_fails() -> None:
    passing, failing = values(better=True), values(better=False)
    assert [r for r in GATE_RULES if failing[r]["passed_text"] == "failed"] == [
        "gate_sample_size",
        "gate_vs_champion",
        "gate_slices",
        "gate_edge_cases",
    ]
    for rule in GATE_RULES:
        assert passing[rule].keys() == failing[rule].keys(), rule
        for key, value in passing[rule].items():
            assert type(value) is type(failing[rule][key]), (rule, key)
        # one metric per check: the primary, never the metric that happened to fail
        assert passing[rule]["metric"] == failing[rule]["metric"], rule


def test_the_vs_champion_check_reports_the_primary_metric_and_every_judged_change() -> None:
    failing = values(better=False)["gate_vs_champion"]
    assert failing["metric"] == "roc_auc"
    assert failing["actual"] == pytest.approx(0.02)  # roc_auc: better
    assert failing["threshold"] == 0.0
    assert failing["change_pr_auc"] == pytest.approx(-0.09)  # what failed, under its own key
    assert failing["change_roc_auc_lower"] == pytest.approx(0.01)
    assert failing["change_roc_auc_upper"] == pytest.approx(0.03)
    assert failing["champion_roc_auc"] == 0.84


def test_numbers_are_floats_and_intervals_are_two_numbers() -> None:
    for rule, found in values(better=False).items():
        assert isinstance(found["actual"], float), rule
        assert isinstance(found["threshold"], float), rule
    absolute = values(better=True)["gate_absolute"]
    assert absolute["roc_auc_lower"] == pytest.approx(0.84)
    assert absolute["roc_auc_upper"] == pytest.approx(0.88)
    assert absolute["log_loss_bound"] == 0.5
    significance = values(better=True)["gate_significance"]
    assert significance["improvement_lower"] < significance["improvement_upper"]
    assert significance["actual"] == significance["improvement_lower"]


def test_lower_is_better_changes_are_in_the_good_direction() -> None:
    gate = GATE.model_copy(update={"primary": "log_loss", "min_delta": {"log_loss": 0.0}})
    data = report(better=True)  # log loss 0.08 vs 0.09: better by 0.01
    verdict = next(v for v in evaluate_gate(data, gate) if v.rule == "gate_vs_champion")
    found = gate_check_values(verdict, data, gate)
    assert found["actual"] == pytest.approx(0.01)
    assert found["change_log_loss_lower"] == pytest.approx(0.0)
    assert found["change_log_loss_upper"] == pytest.approx(0.02)


def test_without_a_champion_numbers_are_left_out_not_null() -> None:
    data = report(better=True) | {"champion": None, "comparison": {}}
    for verdict in evaluate_gate(data, GATE):
        found = gate_check_values(verdict, data, GATE)
        assert all(v is not None for v in found.values()), verdict.rule
        assert all(not isinstance(v, float) or math.isfinite(v) for v in found.values())
    vs = gate_check_values(evaluate_gate(data, GATE)[2], data, GATE)
    assert "actual" not in vs
    assert vs["summary"] == "no champion yet (bootstrap=absolute)"


def test_descriptions_name_the_decision_first_and_hold_no_python_reprs() -> None:
    data = report(better=False)
    for verdict in evaluate_gate(data, GATE):
        text = check_description(verdict)
        head = "passed" if verdict.passed else "BLOCKED by"
        assert text.startswith(f"{head} {verdict.rule}: "), text
        assert "None" not in text
    summaries = [v["summary"] for v in values(better=False).values()]
    assert not any("None" in s or "[" in s for s in summaries), summaries


def test_typed_metadata_stores_floats_exactly() -> None:
    typed = typed_metadata({"actual": 0.8366408075963679, "rows": 3, "metric": "roc_auc"})
    assert isinstance(typed["actual"], dg.FloatMetadataValue)
    assert typed["actual"].value == 0.8366408075963679
    assert isinstance(typed["rows"], dg.IntMetadataValue)
    assert isinstance(typed["metric"], dg.TextMetadataValue)


def test_run_tags_name_pipeline_version_and_verdict() -> None:
    data = report(better=False)
    tags = run_verdict_tags("fraud", "v2", evaluate_gate(data, GATE))
    assert tags["lockgate/pipeline"] == "fraud"
    assert tags["lockgate/version"] == "v2"
    assert tags["lockgate/verdict"] == "blocked"
    assert tags["lockgate/failed_rules"].split(",")[0] == "gate_sample_size"
    assert tags["lockgate/reason"].startswith("gate_sample_size: gold set has 90 rows")
    good = run_verdict_tags("fraud", "v2", evaluate_gate(report(better=True), GATE))
    assert good["lockgate/verdict"] == "passed"
    assert "lockgate/reason" not in good


def test_evaluation_views_render_in_place_and_carry_no_image_bytes() -> None:
    from lockgate.assets.gate import evaluation_views
    from lockgate.evaluation.plots import INLINE_MARKDOWN_LIMIT
    from tests.evaluation.test_evaluation import _task_models, _task_report

    good, bad = _task_models("regression")
    report, scores = _task_report("regression", good, bad)
    views = evaluation_views(report, None, scores, {"residuals.png": "/a/r1-residuals.png"})
    assert isinstance(views["slices"], dg.TableMetadataValue)
    assert isinstance(views["edge_cases"], dg.TableMetadataValue)
    assert views["png_residuals"] == dg.MetadataValue.path("/a/r1-residuals.png")
    assert not any(k.startswith("plot_") for k in views)  # binary charts only

    rng = np.random.default_rng(1)
    y = (rng.uniform(size=4000) < 0.02).astype(int)  # a 2 % base rate
    mine, theirs = (
        np.clip(0.02 + 0.05 * y + rng.normal(0, 0.01, 4000), 0, 1),
        rng.uniform(0, 0.1, 4000),
    )
    binary = {
        "task": "binary",
        "challenger": {"version": "v2", "metrics": {"roc_auc": {"estimate": 0.91}}},
        "champion": {"version": "v1", "metrics": {"roc_auc": {"estimate": 0.5}}},
        "slices": [],
        "edge_cases": [],
    }
    views = evaluation_views(
        binary,
        y,
        {"challenger": mine, "champion": theirs},
        {"roc.png": "https://store/roc.png"},
    )
    for name in ("plot_roc", "plot_pr", "plot_calibration"):
        assert len(views[name].value) < INLINE_MARKDOWN_LIMIT, name
        assert "base64" not in views[name].value
    assert (
        "blue: challenger v2 AUC 0.910 · orange: champion v1 AUC 0.500" in views["plot_roc"].value
    )
    assert "both axes 0 to 0.2" in views["plot_calibration"].value  # zoomed, not 0 to 1
    assert views["png_roc"] == dg.MetadataValue.url("https://store/roc.png")
