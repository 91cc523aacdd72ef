"""The task catalog (binary, multiclass, regression) and its metrics in vectorised numpy.

- :mod:`~lockgate.tasks.catalog`: which metrics each task reports, which way each is better.
- :mod:`~lockgate.tasks.metrics`: the metrics themselves.
- :mod:`~lockgate.tasks.inputs`: the checked inputs of every metric (labels, scores, class
  probabilities, targets).

This package exports the catalog, which the other subpackages use; the metric functions are
reached through :mod:`lockgate.tasks.metrics`.
"""

from __future__ import annotations

from lockgate.tasks.catalog import (
    TASKS,
    Task,
    check_task,
    check_task_metric,
    default_primary,
    higher_is_better,
    metric_direction,
    metric_value,
    task_metric_names,
    task_metrics,
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
