"""The gate's checks as Dagster shows them: one fixed metadata schema per rule, and a description.

:func:`gate_check_values` gives one gate rule's check the same keys with the same types in every
run, passing or failing, so Dagster can plot them across executions; :func:`check_description`
puts the decision and the rule's numbers on the check's first line. Both are pure: the Dagster
layer attaches them to the asset checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lockgate.evaluation.gate import METRIC_HIGHER_IS_BETTER, Gate, RuleVerdict
from lockgate.evaluation.model_card import format_value

__all__ = ["check_description", "gate_check_values"]


def _improvement_interval(metric: str, comparison: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(improvement, lower, upper)`` of a paired comparison in the metric's good direction."""
    delta, lower, upper = comparison.get("delta"), comparison.get("lower"), comparison.get("upper")
    if METRIC_HIGHER_IS_BETTER[metric]:
        return delta, lower, upper
    flip = [None if v is None else -float(v) for v in (delta, upper, lower)]
    return flip[0], flip[1], flip[2]


def _put(values: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``key`` to a float (a finite number) and leaves it out otherwise."""
    if value is None or isinstance(value, bool):
        return
    number = float(value)
    if math.isfinite(number):
        values[key] = number


def gate_check_values(
    verdict: RuleVerdict, report: Mapping[str, Any], gate: Gate
) -> dict[str, float | int | str]:
    """The metadata of one gate check with one fixed schema per rule, passing or failing (pure).

    Dagster plots a check's numeric metadata across its executions, so each rule reports the
    same keys with the same types in every run: ``metric`` (text, fixed for the rule and the
    gate: never the metric that happened to fail), ``actual`` and ``threshold`` (floats, stored
    exactly), ``passed_text`` (``"passed"`` or ``"failed"``) and ``summary`` (the numbers
    rounded, for reading). Intervals are two floats (``*_lower``, ``*_upper``). A number the rule
    cannot have in this run (no champion yet, a rule the policy switches off, a metric undefined
    on the rows) is left out rather than sent as null or text.

    Per rule:

    - ``gate_sample_size``: ``actual``/``threshold`` are the gold positives (binary), the rows of
      the smallest class (multiclass) or the gold rows (regression) and their minimum;
      ``gold_rows``, ``min_gold_rows``.
    - ``gate_absolute``: the primary metric (or the first bounded one) and its bound; every
      bounded metric as ``<m>``, ``<m>_lower``, ``<m>_upper`` and ``<m>_bound``.
    - ``gate_vs_champion``: the primary metric's change in its good direction (positive: the
      challenger is better) and ``min_delta``; ``change_<m>`` and ``min_change_<m>`` per judged
      metric; ``change_<primary>_lower``/``_upper`` (the paired interval),
      ``challenger_<primary>``, ``champion_<primary>``.
    - ``gate_significance``: the lower end of the improvement's interval and 0;
      ``improvement``, ``improvement_lower``, ``improvement_upper``, ``p_value``.
    - ``gate_slices``: the largest drop of ``slice_metric`` on a slice and ``max_slice_drop``;
      ``worst_slice`` (text), ``failed_slices`` (int).
    - ``gate_edge_cases``: the number of failed cases and 0; ``edge_cases`` (int),
      ``failed_cases`` (text).

    Args:
        verdict: The rule's verdict (:func:`lockgate.evaluation.gate.evaluate_gate`).
        report: The evaluation report the verdict judged.
        gate: The pipeline's gate (resolved here for the report's task).

    Returns:
        Plain values: floats, ints and text only.

    Example:
        >>> from lockgate.evaluation.gate import GoldSet, evaluate_gate
        >>> gate = Gate(gold=GoldSet(key="id"), min_gold_rows=10, min_gold_positives=2)
        >>> report = {"pipeline": "p", "task": "binary",
        ...     "gold": {"rows": 100, "positives": 1},
        ...     "challenger": {"version": "v2", "metrics": {"roc_auc": {
        ...         "estimate": 0.81234, "lower": 0.7, "upper": 0.9}}},
        ...     "champion": None, "comparison": {}, "slices": [], "edge_cases": []}
        >>> size = gate_check_values(evaluate_gate(report, gate)[0], report, gate)
        >>> size["metric"], size["actual"], size["threshold"], size["passed_text"]
        ('gold_positives', 1.0, 2.0, 'failed')
    """
    task = report.get("task", "binary")
    gate = gate.for_task(task)
    rule = verdict.rule
    primary = gate.primary
    mine = report["challenger"]["metrics"]
    champion = report.get("champion")
    values: dict[str, Any] = {}
    summary: str
    if rule == "gate_sample_size":
        rows = int(report["gold"]["rows"])
        values["gold_rows"], values["min_gold_rows"] = rows, gate.min_gold_rows
        if task == "binary":
            name, actual, bound = (
                "gold_positives",
                report["gold"]["positives"],
                gate.min_gold_positives,
            )
        elif task == "multiclass":
            counts = report["gold"]["class_counts"]
            name, actual = "smallest_class_rows", min(counts.values())
            bound = gate.min_gold_rows_per_class
        else:
            name, actual, bound = "gold_rows", rows, gate.min_gold_rows
        values["metric"] = name
        _put(values, "actual", actual)
        _put(values, "threshold", bound)
        summary = f"{name} {actual} (min {bound}), gold rows {rows} (min {gate.min_gold_rows})"
    elif rule == "gate_absolute":
        bounded = sorted(gate.absolute)
        name = primary if primary in gate.absolute or not bounded else bounded[0]
        values["metric"] = name
        _put(values, "actual", (mine.get(name) or {}).get("estimate"))
        if name in gate.absolute:
            kind, limit = Gate.bound(name, gate.absolute[name])
            values["bound"] = kind
            _put(values, "threshold", limit)
        parts = []
        for metric in bounded:
            block = mine.get(metric) or {}
            kind, limit = Gate.bound(metric, gate.absolute[metric])
            _put(values, metric, block.get("estimate"))
            _put(values, f"{metric}_lower", block.get("lower"))
            _put(values, f"{metric}_upper", block.get("upper"))
            _put(values, f"{metric}_bound", limit)
            parts.append(f"{metric} {format_value(block.get('estimate'))} ({kind} {limit:g})")
        summary = ", ".join(parts) or "no absolute bound declared"
    elif rule == "gate_vs_champion":
        values["metric"] = primary
        judged = sorted(set(gate.min_delta) | set(gate.min_relative_delta))
        if primary in gate.min_delta:
            _put(values, "threshold", gate.min_delta[primary])
        parts = []
        if champion is not None:
            theirs = champion["metrics"]
            for metric in sorted({primary, *judged}):
                comparison = report["comparison"].get(metric) or {}
                gain, low, high = _improvement_interval(metric, comparison)
                if gain is None:
                    a, b = mine[metric]["estimate"], theirs[metric]["estimate"]
                    gain = a - b if METRIC_HIGHER_IS_BETTER[metric] else b - a
                _put(values, f"change_{metric}", gain)
                if metric in gate.min_delta:
                    _put(values, f"min_change_{metric}", gate.min_delta[metric])
                if metric in gate.min_relative_delta:
                    _put(values, f"min_relative_change_{metric}", gate.min_relative_delta[metric])
                if metric == primary:
                    _put(values, "actual", gain)
                    _put(values, f"change_{metric}_lower", low)
                    _put(values, f"change_{metric}_upper", high)
                    _put(values, f"challenger_{metric}", mine[metric]["estimate"])
                    _put(values, f"champion_{metric}", theirs[metric]["estimate"])
                if metric in judged:
                    parts.append(
                        f"{metric} change {float(gain):+.4f} (min {gate.min_delta.get(metric, 0.0):g})"
                    )
            summary = f"vs champion {champion['version']}: " + (
                ", ".join(parts) or "no metric judged"
            )
        else:
            summary = f"no champion yet (bootstrap={gate.bootstrap})"
    elif rule == "gate_significance":
        values["metric"] = f"{primary}_improvement_lower"
        comparison = (report.get("comparison") or {}).get(primary)
        if gate.require_significance and champion is not None and comparison:
            gain, low, high = _improvement_interval(primary, comparison)
            _put(values, "actual", low)
            _put(values, "threshold", 0.0)
            _put(values, "improvement", gain)
            _put(values, "improvement_lower", low)
            _put(values, "improvement_upper", high)
            _put(values, "p_value", comparison.get("p_value"))
            summary = (
                f"{primary} improvement {format_value(gain)}, {100 * (1 - gate.alpha):.0f}% interval "
                f"{format_value(low)} to {format_value(high)} (must exclude 0), p={format_value(comparison.get('p_value'))}"
            )
        elif not gate.require_significance:
            summary = "significance not required by the policy"
        else:
            summary = f"no champion yet (bootstrap={gate.bootstrap})"
    elif rule == "gate_slices":
        metric = gate.slice_metric
        values["metric"] = f"{metric}_largest_slice_drop"
        worst: tuple[float, str] | None = None
        failed = 0
        if champion is not None and gate.max_slice_drop is not None:
            for item in report.get("slices") or []:
                a, b = item.get("challenger"), item.get("champion")
                if a is None or b is None:
                    continue
                drop = (b - a) if METRIC_HIGHER_IS_BETTER[metric] else (a - b)
                failed += drop > gate.max_slice_drop
                if worst is None or drop > worst[0]:
                    worst = (drop, f"{item['slice']}={item['value']}")
        if gate.max_slice_drop is not None and gate.slices:
            _put(values, "threshold", gate.max_slice_drop)
        values["failed_slices"] = failed
        values["worst_slice"] = worst[1] if worst else "none"
        if worst is not None:
            _put(values, "actual", worst[0])
            summary = (
                f"largest {metric} drop {worst[0]:+.4f} on {worst[1]} "
                f"(max {gate.max_slice_drop:g}), {failed} slices over"
            )
        elif not gate.slices or gate.max_slice_drop is None:
            summary = "no slice rule declared"
        else:
            summary = "no slice comparable with a champion"
    elif rule == "gate_edge_cases":
        cases = report.get("edge_cases") or []
        failed_names = [c["name"] for c in cases if not c["passed"]]
        values["metric"] = "edge_cases_failed"
        values["actual"] = float(len(failed_names))
        values["threshold"] = 0.0
        values["edge_cases"] = len(cases)
        values["failed_cases"] = ", ".join(failed_names) or "none"
        summary = f"{len(failed_names)} of {len(cases)} edge cases failed" + (
            f": {', '.join(failed_names)}" if failed_names else ""
        )
    else:  # a rule this function does not know: the verdict's own words
        values["metric"] = str(verdict.metric)
        summary = verdict.message
    values["passed_text"] = "passed" if verdict.passed else "failed"
    values["summary"] = summary
    return values


def check_description(verdict: RuleVerdict) -> str:
    """A gate check's description: the decision and the rule's numbers on the first line.

    Example:
        >>> v = RuleVerdict("gate_vs_champion", False, "roc_auc", -0.05, "change >= 0.0",
        ...                 "roc_auc: challenger 0.7800 vs champion 0.8300, change -0.0500")
        >>> check_description(v)
        'BLOCKED by gate_vs_champion: roc_auc: challenger 0.7800 vs champion 0.8300, change -0.0500'
    """
    head = f"BLOCKED by {verdict.rule}" if not verdict.passed else f"passed {verdict.rule}"
    return f"{head}: {verdict.message}"
