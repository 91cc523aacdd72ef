"""live_performance metadata: the champion's live metric against gold in the right words."""

from __future__ import annotations

from typing import Any

import dagster as dg

from lockgate.assets.feedback import live_performance_metadata, live_vs_gold
from lockgate.monitoring.feedback import judge
from lockgate.monitoring.triggers import FeedbackPolicy


def _performance(live: float, interval: list[float] | None) -> dict[str, Any]:
    block = {
        "n": 5000,
        "positives": 37,
        "labelled": 5000,
        "predictions": 5200,
        "coverage": 0.96,
        "mean_score": 0.02,
        "metrics": {"roc_auc": live, "pr_auc": 0.31, "log_loss": 0.07, "brier": 0.01},
        "undefined": {},
        "interval": interval,
        "window_start": None,
        "window_end": None,
    }
    return {
        "model": "fraud",
        "task": "binary",
        "metric": "roc_auc",
        "as_of": None,
        "versions": {"v1": block},
        "labels": {"rows": 5000, "matched": 5000, "duplicates": 0, "unknown_trace_ids": 0},
        "predictions": {"live": 5200, "unlabelled": 200},
    }


def _document(live: float, gold: float, interval: list[float] | None) -> dict[str, Any]:
    performance = _performance(live, interval)
    level, reason, evidence = judge(performance, "v1", gold, FeedbackPolicy(max_drop=0.05))
    return {
        "champion": "v1",
        "level": level,
        "reason": reason,
        "evidence": evidence,
        "gold": {"metric": "roc_auc", "estimate": gold, "report": None},
        "performance": performance,
        "report_uri": "/tmp/report.json",
    }


def test_a_better_live_metric_reads_better_not_worse_by_a_negative_number() -> None:
    meta = live_performance_metadata(_document(0.8023, 0.7461, [0.71, 0.88]))
    text = meta["live_vs_gold"]
    assert "better by 0.0562" in text
    assert "worse" not in text
    assert "95% interval 0.7100 to 0.8800" in text
    assert "37 positives" in text
    assert meta["champion_live_roc_auc_lower"] == dg.MetadataValue.float(0.71)
    assert meta["champion_live_roc_auc_upper"] == dg.MetadataValue.float(0.88)


def test_a_worse_live_metric_reads_worse_by_a_positive_number() -> None:
    text = live_vs_gold(_document(0.70, 0.80, None)["evidence"])
    assert "worse by 0.1000" in text


def test_the_versions_table_is_narrow() -> None:
    table = live_performance_metadata(_document(0.8, 0.75, [0.7, 0.9]))["versions"].value
    header = table.splitlines()[0]
    assert header.count("|") <= 10
    assert "| v1 | champion | 5000 / 5200 | 37 |" in table
    assert "0.700 to 0.900" in table
