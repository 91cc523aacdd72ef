"""The task catalog: which metrics each task reports, which way each is better, the primary.

Tasks (:data:`TASKS`) and what a model predicts for each are described in
:mod:`lockgate.tasks.metrics`, which holds the metric functions; this module says which of them each
task reports (:func:`task_metric_names`), which way each is better (:func:`metric_direction`),
which one a gate compares by default (:func:`default_primary`) and computes them by name
(:func:`metric_value`, :func:`task_metrics`).
"""

from __future__ import annotations

from typing import Any, Literal

from lockgate.errors import SpecError
from lockgate.tasks.metrics import (
    brier,
    log_loss,
    macro_f1,
    mae,
    min_class_recall,
    multiclass_log_loss,
    pr_auc,
    r2,
    recall_at_fpr,
    rmse,
    roc_auc,
    roc_auc_ovr,
    top1_accuracy,
)

__all__ = [
    "TASKS",
    "Task",
    "check_task",
    "check_task_metric",
    "default_primary",
    "higher_is_better",
    "metric_direction",
    "metric_value",
    "task_metric_names",
    "task_metrics",
]

Task = Literal["binary", "multiclass", "regression"]
TASKS: tuple[Task, ...] = ("binary", "multiclass", "regression")
"""The supported tasks, in the order the catalog lists them."""

_CATALOG: dict[str, dict[str, bool]] = {
    "binary": {
        "roc_auc": True,
        "pr_auc": True,
        "log_loss": False,
        "brier": False,
        "recall_at_fpr": True,
    },
    "multiclass": {
        "log_loss": False,
        "top1_accuracy": True,
        "macro_f1": True,
        "min_class_recall": True,
        "roc_auc_ovr": True,
    },
    "regression": {"rmse": False, "mae": False, "r2": True},
}
_PRIMARY: dict[str, str] = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}


# --------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------


def check_task(task: Any) -> Task:
    """Returns ``task`` when it is one of :data:`TASKS`.

    Raises:
        SpecError: Naming the value and the tasks allowed.

    Example:
        >>> check_task("regression")
        'regression'
    """
    if not isinstance(task, str) or task not in TASKS:
        raise SpecError(
            f"task={task!r} is unknown; rule: the task must be one of {list(TASKS)}; fix: pass "
            f"e.g. task='binary'"
        )
    return task


def task_metric_names(task: str) -> tuple[str, ...]:
    """The metrics a task reports, in report order.

    Example:
        >>> task_metric_names("regression")
        ('rmse', 'mae', 'r2')
    """
    return tuple(_CATALOG[check_task(task)])


def default_primary(task: str) -> str:
    """The metric a gate compares by default: roc_auc, log_loss or rmse.

    Example:
        >>> default_primary("multiclass")
        'log_loss'
    """
    return _PRIMARY[check_task(task)]


def check_task_metric(task: str, metric: Any) -> str:
    """Returns ``metric`` when ``task`` reports it.

    Raises:
        SpecError: Naming the task's metrics.

    Example:
        >>> check_task_metric("regression", "mae")
        'mae'
    """
    names = _CATALOG[check_task(task)]
    if not isinstance(metric, str) or metric not in names:
        raise SpecError(
            f"metric={metric!r} is unknown for task {task!r}; rule: a {task} metric must be one "
            f"of {list(names)}; fix: pass e.g. metric={_PRIMARY[task]!r}"
        )
    return metric


def higher_is_better(task: str, metric: str) -> bool:
    """Whether a higher value of ``metric`` is better (the same in every task that lists it).

    Raises:
        SpecError: When the task is unknown or does not report the metric.

    Example:
        >>> higher_is_better("regression", "r2"), higher_is_better("multiclass", "log_loss")
        (True, False)
    """
    return _CATALOG[task][check_task_metric(task, metric)]


def metric_direction(task: str, metric: str) -> Literal["higher", "lower"]:
    """``"higher"`` or ``"lower"``: which way ``metric`` is better for ``task``.

    Raises:
        SpecError: When the task is unknown or does not report the metric.

    Example:
        >>> metric_direction("regression", "rmse")
        'lower'
    """
    return "higher" if higher_is_better(task, metric) else "lower"


def metric_value(task: str, metric: str, y: Any, pred: Any, *, max_fpr: float = 0.01) -> float:
    """One catalog metric of one task (see the module docstring for the input shapes).

    Raises:
        SpecError: When the task does not report the metric.
        EmptyDataError: When there are no rows.
        DataError: On invalid input or where the metric is undefined.

    Example:
        >>> metric_value("regression", "mae", [1.0, 2.0], [1.5, 2.5])
        0.5
    """
    check_task_metric(task, metric)
    if task == "binary":
        if metric == "recall_at_fpr":
            return recall_at_fpr(y, pred, max_fpr=max_fpr)
        binary: dict[str, Any] = {
            "roc_auc": roc_auc,
            "pr_auc": pr_auc,
            "log_loss": log_loss,
            "brier": brier,
        }
        return float(binary[metric](y, pred))
    fns: dict[str, Any] = {
        "log_loss": multiclass_log_loss,
        "top1_accuracy": top1_accuracy,
        "macro_f1": macro_f1,
        "min_class_recall": min_class_recall,
        "roc_auc_ovr": roc_auc_ovr,
        "rmse": rmse,
        "mae": mae,
        "r2": r2,
    }
    return float(fns[metric](y, pred))


def task_metrics(task: str, y: Any, pred: Any, *, max_fpr: float = 0.01) -> dict[str, float]:
    """Every catalog metric of ``task`` for one set of predictions, in catalog order.

    Args:
        task: One of :data:`TASKS`.
        y: Labels (binary: 0/1; multiclass: class indices) or regression targets.
        pred: Binary: P(label 1), ``(n,)``; multiclass: probabilities ``(n, k)``; regression:
            predictions ``(n,)``.
        max_fpr: The false-positive-rate bound of the binary ``recall_at_fpr``.

    Returns:
        Metric name to value, the keys of :func:`task_metric_names`.

    Raises:
        SpecError: On an unknown task.
        EmptyDataError: When there are no rows.
        DataError: On invalid input or where a metric is undefined.

    Example:
        >>> task_metrics("regression", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["rmse"] ** 2
        0.3333333333333333
    """
    return {m: metric_value(task, m, y, pred, max_fpr=max_fpr) for m in task_metric_names(task)}
