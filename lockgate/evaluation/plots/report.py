"""Every plot of an evaluation report, chosen by its task.

:func:`report_plots` draws the binary curves, the multiclass recall and confusion plots or the
regression residuals, and the slice plot when the report has slices, as file name to PNG bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lockgate.evaluation.plots.curves import calibration_plot, pr_plot, roc_plot
from lockgate.evaluation.plots.multiclass import class_recall_plot, confusion_matrix_plot
from lockgate.evaluation.plots.regression import residual_plot
from lockgate.evaluation.plots.slices import slice_delta_plot
from lockgate.evaluation.predictions import encode_labels
from lockgate.tasks import catalog as _tasks

__all__ = ["report_plots"]


def report_plots(report: Mapping[str, Any], y: Any, scores: Mapping[str, Any]) -> dict[str, bytes]:
    """Every plot of an evaluation report, by task: file name to PNG bytes.

    - binary: ``roc.png``, ``pr.png``, ``calibration.png`` (as before tasks existed);
    - multiclass: ``class_recall.png`` (both models), ``confusion_matrix.png`` (challenger);
    - regression: ``residuals.png``;
    - every task with slices: ``slices.png`` (the slice metric's challenger - champion delta).

    Curves are labelled ``"challenger <version>"`` and ``"champion <version>"``.

    Args:
        report: The report of :func:`lockgate.evaluation.report.build_report` (reads ``task``,
            ``classes``, the versions, ``slices`` and ``policy.slice_metric``).
        y: The gold set's label column, as in the gold frame (multiclass labels are mapped to
            class indices through ``report["classes"]``).
        scores: The predictions ``build_report`` returned (``challenger``, ``champion``).

    Returns:
        File name to PNG bytes, in a fixed order.

    Raises:
        DataError: On invalid input.

    Example:
        >>> report = {"task": "regression", "challenger": {"version": "v2"}, "champion": None,
        ...           "slices": [], "policy": {"slice_metric": "rmse"}}
        >>> list(report_plots(report, [1.0, 2.0], {"challenger": [1.5, 2.5]}))
        ['residuals.png']
    """
    task = _tasks.check_task(report.get("task", "binary"))
    named = {f"challenger {report['challenger']['version']}": scores["challenger"]}
    if report.get("champion"):
        named[f"champion {report['champion']['version']}"] = scores["champion"]
    images: dict[str, bytes] = {}
    if task == "binary":
        images["roc.png"] = roc_plot(y, named)
        images["pr.png"] = pr_plot(y, named)
        images["calibration.png"] = calibration_plot(y, named)
    elif task == "multiclass":
        classes = report["classes"]
        y_idx = encode_labels(np.asarray(y), classes)
        images["class_recall.png"] = class_recall_plot(y_idx, named, classes=classes)
        images["confusion_matrix.png"] = confusion_matrix_plot(
            y_idx,
            scores["challenger"],
            classes=classes,
            title=f"Confusion matrix, challenger {report['challenger']['version']}",
        )
    else:
        images["residuals.png"] = residual_plot(y, named)
    if report.get("slices"):
        images["slices.png"] = slice_delta_plot(
            [
                (f"{s['slice']}={s['value']}", s["champion"], s["challenger"])
                for s in report["slices"]
            ],
            metric=report["policy"]["slice_metric"],
            task=task,
        )
    return images
