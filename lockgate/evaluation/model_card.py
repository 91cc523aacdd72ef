"""The model card: an evaluation report, its lock record and the gate's verdicts as markdown.

Lineage (commit, data snapshot, weights, trainer, features, gold set), every metric of the task
with its 95% bootstrap interval against the champion, a per-class table (multiclass) or a
residual table (regression), the slices, the edge cases and each gate rule's verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lockgate.evaluation.gate import RuleVerdict

__all__ = ["format_value", "model_card"]


def format_value(value: Any) -> str:
    """A float to 4 decimals, anything else as ``str``: a number in a card or a summary."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _gold_line(report: Mapping[str, Any]) -> str:
    gold = report["gold"]
    line = f"- gold set: `{gold['sha256'][:16]}`, {gold['rows']} rows"
    task = report.get("task", "binary")
    if task == "binary":
        return line + f", {gold['positives']} positives"
    if task == "multiclass":
        counts = ", ".join(f"{c}: {n}" for c, n in gold["class_counts"].items())
        return line + f" ({counts})"
    return (
        line
        + f", target mean {format_value(gold['target']['mean'])} (std {format_value(gold['target']['std'])})"
    )


def _task_sections(report: Mapping[str, Any]) -> list[str]:
    """Per-class recall (multiclass) or residuals (regression) for the model card."""
    task = report.get("task", "binary")
    challenger, champion = report["challenger"], report.get("champion")
    lines: list[str] = []
    if task == "multiclass":
        lines += [
            "",
            "## Per class",
            "",
            "| class | rows | recall | precision | f1 | champion recall |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        theirs = champion["per_class"] if champion else [None] * len(challenger["per_class"])
        for mine, other in zip(challenger["per_class"], theirs, strict=True):
            lines.append(
                f"| {mine['class']} | {mine['rows']} | {format_value(mine['recall'])} | "
                f"{format_value(mine['precision'])} | {format_value(mine['f1'])} | "
                f"{format_value(other['recall']) if other else 'none'} |"
            )
    elif task == "regression":
        lines += [
            "",
            "## Residuals (actual - predicted)",
            "",
            "| model | mean | std | p05 | p50 | p95 | 90% abs |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for role, block in (("challenger", challenger), ("champion", champion)):
            if block is None:
                continue
            r = block["residuals"]
            q = r["quantiles"]
            lines.append(
                f"| {role} {block['version']} | {format_value(r['mean'])} | {format_value(r['std'])} | "
                f"{format_value(q['p05'])} | {format_value(q['p50'])} | {format_value(q['p95'])} | {format_value(r['abs_p90'])} |"
            )
    return lines


def model_card(
    report: Mapping[str, Any], lock: Mapping[str, Any], verdicts: Sequence[RuleVerdict]
) -> str:
    """A markdown model card: lineage, gold-set metrics vs champion, slices, edge cases, gate.

    Renders every task: the metrics table lists the report's metrics; multiclass cards add a
    per-class table, regression cards a residual table.
    """
    challenger, champion = report["challenger"], report.get("champion")
    lines = [
        f"# Model card: {report['pipeline']} {challenger['version']}",
        "",
        "## Lineage",
        f"- task: `{report.get('task', 'binary')}`",
        f"- code commit: `{lock['triad']['code_commit']}` (dirty: {lock['code']['dirty']})",
        f"- data snapshot: `{lock['triad']['data_snapshot_sha256']}`",
        f"- weights: `{lock['triad']['weights_sha256']}` ({lock['artifact']['weights_file']})",
        f"- trainer: `{lock['trainer']['kind']}` seed {lock['trainer']['seed']}",
        f"- features ({len(lock['features'])}): {', '.join(lock['features'])}",
        _gold_line(report),
        "",
        "## Metrics on the gold set (95% bootstrap intervals)",
        "",
        "| metric | challenger | champion | change |",
        "| --- | --- | --- | --- |",
    ]
    for metric, mine in challenger["metrics"].items():
        row = f"| {metric} | {format_value(mine['estimate'])} [{format_value(mine['lower'])}, {format_value(mine['upper'])}]"
        if champion:
            theirs = champion["metrics"][metric]
            comp = report["comparison"][metric]
            row += f" | {format_value(theirs['estimate'])} | {comp['delta']:+.4f} (p={comp['p_value']:.3g}) |"
        else:
            row += " | none | |"
        lines.append(row)
    lines += _task_sections(report)
    lines += ["", "## Slices", "", "| slice | rows | challenger | champion | delta |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for s in report["slices"]:
        lines.append(
            f"| {s['slice']}={s['value']} | {s['rows']} | {format_value(s['challenger'])} | "
            f"{format_value(s['champion'])} | {format_value(s['delta'])} |"
        )
    lines += ["", "## Edge cases", ""]
    for case in report["edge_cases"]:
        lines.append(
            f"- {'PASS' if case['passed'] else 'FAIL'} `{case['name']}`: {case['message']}"
        )
    lines += ["", "## Gate", ""]
    for verdict in verdicts:
        lines.append(
            f"- {'PASS' if verdict.passed else 'FAIL'} `{verdict.rule}`: {verdict.message}"
        )
    return "\n".join(lines) + "\n"
