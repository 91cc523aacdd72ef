"""The edge-case suite: named subsets of the gold rows, perturbed, and what the challenger must do on them.

An :class:`~lockgate.evaluation.gate.EdgeCase` selects gold rows (``where``), then overwrites
(``set``) or scales (``scale``) columns (:func:`apply_edge_case`); :func:`run_edge_cases` scores
the challenger on each case's rows and checks its expectation: finite (valid) predictions, a
minimum metric, a minimum mean score against the gold mean, or no more than a margin worse than
the champion. Each result is JSON-able and says the value, the rule and the verdict in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import SchemaError, SpecError
from lockgate.evaluation.gate import METRIC_HIGHER_IS_BETTER, EdgeCase
from lockgate.evaluation.predictions import metric_labels, model_classes, predict
from lockgate.tasks import catalog as _tasks
from lockgate.tasks.inputs import ROW_SUM_TOLERANCE

if TYPE_CHECKING:
    import pandas as pd

    from lockgate.training import TrainedModel

__all__ = ["apply_edge_case", "run_edge_cases"]


def apply_edge_case(gold: pd.DataFrame, case: EdgeCase) -> pd.DataFrame:
    """The rows of one edge case: gold rows matching ``where``, then ``set`` and ``scale``."""
    import pandas as pd

    mask = pd.Series(True, index=gold.index)
    for cond in case.where:
        if cond.column not in gold.columns:
            raise SchemaError(
                f"edge case {case.name!r} filters on {cond.column!r}, which the gold set lacks; "
                "fix the edge case or add the column to the feature service"
            )
        col, value = gold[cond.column], cond.value
        if cond.op == "isnull":
            mask &= col.isna()
        elif cond.op == "notnull":
            mask &= col.notna()
        elif cond.op in ("in", "not in"):
            values = list(value) if isinstance(value, tuple) else [value]
            hit = col.isin(values)
            mask &= hit if cond.op == "in" else ~hit
        else:
            ops = {
                "<": col.lt,
                "<=": col.le,
                ">": col.gt,
                ">=": col.ge,
                "==": col.eq,
                "!=": col.ne,
            }
            mask &= ops[cond.op](value)  # type: ignore[arg-type]
    rows = gold[mask].copy()
    for column, new in case.set.items():
        if column not in rows.columns:
            raise SchemaError(f"edge case {case.name!r} sets unknown column {column!r}")
        if new is None:
            rows[column] = np.nan if rows[column].dtype.kind in "fiub" else None
        else:
            rows[column] = new
    for column, factor in case.scale.items():
        if column not in rows.columns:
            raise SchemaError(f"edge case {case.name!r} scales unknown column {column!r}")
        rows[column] = rows[column].astype("float64") * factor
    return rows


def _metric_on(metric: str, y: np.ndarray, p: np.ndarray, *, task: str = "binary") -> float | None:
    """The metric on some rows, ``None`` where it is undefined there (no rows, one class, ...)."""
    if len(y) == 0:
        return None
    if task == "binary":
        if metric in ("roc_auc", "recall_at_fpr") and len(set(y.tolist())) < 2:
            return None
        if metric == "pr_auc" and not y.any():
            return None
    elif (metric == "roc_auc_ovr" and len(set(y.tolist())) < 2) or (
        metric == "r2" and float(np.min(y)) == float(np.max(y))
    ):
        return None
    return _tasks.metric_value(task, metric, y, p)


def _valid_predictions(scores: np.ndarray, task: str) -> tuple[bool, str]:
    """Whether predictions are valid for the task, and the rule in words."""
    finite = bool(np.all(np.isfinite(scores)))
    if task == "regression":
        return finite, "all predictions finite"
    in_unit = finite and bool(np.all((scores >= 0) & (scores <= 1)))
    if task == "binary":
        return in_unit, "all predictions finite in [0, 1]"
    sums = bool(in_unit and np.all(np.abs(scores.sum(axis=1) - 1.0) <= ROW_SUM_TOLERANCE))
    return sums, "all predictions finite in [0, 1], each row summing to 1"


def _case_message(case: EdgeCase, actual: Any, threshold: str, *, passed: bool) -> str:
    """An edge case's outcome in words: the value rounded, the rule, the verdict."""
    if isinstance(actual, bool):
        shown = "valid predictions" if actual else "invalid predictions"
    elif actual is None:
        shown = f"{case.metric} undefined on these rows"
    elif case.expect == "not_worse_than_champion":
        shown = f"{case.metric} change vs champion {float(actual):+.4f}"
    elif case.expect == "min_mean_score_ratio":
        shown = f"mean score {float(actual):.3f} x gold mean"
    else:
        shown = f"{case.metric} {float(actual):.4f}"
    return (
        f"{case.description or case.name}: {shown} ({'meets' if passed else 'breaks'} {threshold})"
    )


def run_edge_cases(
    cases: Sequence[EdgeCase],
    gold: pd.DataFrame,
    *,
    label: str,
    challenger: TrainedModel,
    champion: TrainedModel | None,
    gold_mean_score: float,
    task: str = "binary",
    classes: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Run each edge case; one JSON-able result per case with passed/actual/threshold.

    Args:
        cases: The edge cases (their metrics resolved for the task, see ``Gate.for_task``).
        gold: The gold rows.
        label: The label column.
        challenger: The model judged.
        champion: The model compared with (``not_worse_than_champion``), or None.
        gold_mean_score: The challenger's mean prediction on all gold rows
            (``min_mean_score_ratio``; binary and regression).
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        classes: Multiclass: the class order of the predictions (default: the challenger's).
    """
    if task == "multiclass" and classes is None:
        classes = model_classes(challenger, name="challenger")
    results = []
    for case in cases:
        rows = apply_edge_case(gold, case)
        base: dict[str, Any] = {"name": case.name, "expect": case.expect, "rows": len(rows)}
        if len(rows) < case.min_rows:
            results.append(
                base
                | {
                    "passed": False,
                    "actual": len(rows),
                    "threshold": f"rows >= {case.min_rows}",
                    "message": f"only {len(rows)} gold rows match; widen the case or the gold set",
                }
            )
            continue
        scores = predict(
            challenger, rows, task=task, classes=classes, name="challenger", check_finite=False
        )
        y = metric_labels(rows, label, task=task, classes=classes)
        valid, rule = _valid_predictions(scores, task)
        if case.expect == "finite" or not valid:
            actual: Any = valid
            passed, threshold = valid, rule
        elif case.expect == "min_metric":
            actual = _metric_on(case.metric, y, scores, task=task)
            threshold = f"{case.metric} >= {case.threshold}"
            passed = actual is not None and actual >= case.threshold
        elif case.expect == "min_mean_score_ratio":
            if task == "multiclass":
                raise SpecError(
                    f"edge case {case.name!r} expects min_mean_score_ratio on a multiclass model; "
                    "rule: a mean score exists for binary and regression models only; fix: use "
                    "expect='min_metric'"
                )
            actual = float(scores.mean() / gold_mean_score) if gold_mean_score > 0 else math.inf
            threshold = f"mean score >= {case.threshold} x gold mean"
            passed = actual >= case.threshold
        else:  # not_worse_than_champion
            mine = _metric_on(case.metric, y, scores, task=task)
            theirs = None
            if champion is not None:
                champion_scores = predict(
                    champion, rows, task=task, classes=classes, name="champion", check_finite=False
                )
                if _valid_predictions(champion_scores, task)[0]:
                    theirs = _metric_on(case.metric, y, champion_scores, task=task)
            threshold = f"{case.metric} no more than {case.threshold} worse than champion"
            if theirs is None or mine is None:
                actual, passed = mine, mine is not None
            else:
                gain = mine - theirs if METRIC_HIGHER_IS_BETTER[case.metric] else theirs - mine
                actual, passed = gain, gain >= -case.threshold
        results.append(
            base
            | {
                "passed": bool(passed),
                "actual": actual,
                "threshold": threshold,
                "message": _case_message(case, actual, threshold, passed=bool(passed)),
            }
        )
    return results
