"""Challenger and champion side by side: metrics with their intervals, features and trainer params.

:func:`comparison_rows` gives one row per metric (each model's estimate and interval, the paired
change with its interval and p-value), per feature only one of the models uses, and per trainer
parameter (those that differ first), for the UI's comparison table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["comparison_rows"]


def _interval_text(block: Mapping[str, Any] | None) -> str:
    if not block or block.get("estimate") is None:
        return "-"
    text = f"{float(block['estimate']):.4f}"
    if block.get("lower") is not None and block.get("upper") is not None:
        text += f" ({float(block['lower']):.4f} to {float(block['upper']):.4f})"
    return text


def _flat_params(trainer: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in trainer.items():
        if isinstance(value, Mapping):
            out.update(_flat_params(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def comparison_rows(
    report: Mapping[str, Any],
    challenger_lock: Mapping[str, Any],
    champion_lock: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Challenger and champion side by side: metrics with their intervals, features, params.

    One row per metric (``estimate (lower to upper)`` for each model, the paired change with its
    interval), per feature only one of them uses, and per trainer parameter (differing first).
    Without a champion the champion column reads ``-``.

    Example:
        >>> report = {"challenger": {"metrics": {"roc_auc": {"estimate": 0.8, "lower": 0.7,
        ...   "upper": 0.9}}}, "champion": None, "comparison": {}}
        >>> lock = {"version": "v2", "features": ["a"], "trainer": {"seed": 1}}
        >>> [(r["aspect"], r["name"], r["challenger"]) for r in comparison_rows(report, lock, None)]
        [('metric', 'roc_auc', '0.8000 (0.7000 to 0.9000)'), ('features', 'count', '1'), ('param', 'seed', '1')]
    """
    rows: list[dict[str, Any]] = []
    mine = (report.get("challenger") or {}).get("metrics", {})
    theirs = (report.get("champion") or {}).get("metrics", {})
    comparison = report.get("comparison") or {}
    for metric in sorted(set(mine) | set(theirs)):
        comp = comparison.get(metric) or {}
        change = "-"
        if comp.get("delta") is not None:
            change = f"{float(comp['delta']):+.4f}"
            if comp.get("lower") is not None and comp.get("upper") is not None:
                change += f" ({float(comp['lower']):+.4f} to {float(comp['upper']):+.4f})"
            if comp.get("p_value") is not None:
                change += f", p={float(comp['p_value']):.3g}"
        rows.append(
            {
                "aspect": "metric",
                "name": metric,
                "challenger": _interval_text(mine.get(metric)),
                "champion": _interval_text(theirs.get(metric)) if theirs else "-",
                "change": change,
            }
        )
    features = list(challenger_lock.get("features") or [])
    other = list(champion_lock.get("features") or []) if champion_lock else None
    rows.append(
        {
            "aspect": "features",
            "name": "count",
            "challenger": str(len(features)),
            "champion": "-" if other is None else str(len(other)),
            "change": "-" if other is None else f"{len(features) - len(other):+d}",
        }
    )
    if other is not None:
        for name in [f for f in other if f not in features]:
            rows.append({"aspect": "features", "name": name, "challenger": "absent",
                         "champion": "used", "change": "dropped"})  # fmt: skip
        for name in [f for f in features if f not in other]:
            rows.append({"aspect": "features", "name": name, "challenger": "used",
                         "champion": "absent", "change": "added"})  # fmt: skip
    params = _flat_params(challenger_lock.get("trainer") or {})
    before = _flat_params(champion_lock.get("trainer") or {}) if champion_lock else {}
    names = sorted(set(params) | set(before))
    differ = [n for n in names if champion_lock and params.get(n) != before.get(n)]
    for name in differ + [n for n in names if n not in differ]:
        rows.append(
            {
                "aspect": "param",
                "name": name,
                "challenger": _fmt_param(params.get(name)),
                "champion": _fmt_param(before.get(name)) if champion_lock else "-",
                "change": "differs" if name in differ else "",
            }
        )
    return rows


def _fmt_param(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
