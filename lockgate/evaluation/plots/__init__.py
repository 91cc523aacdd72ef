"""PNG plots: a champion-vs-challenger evaluation (binary: ROC, precision-recall, calibration;
multiclass: per-class recall and the confusion matrix; regression: predicted vs actual and
residuals; every task: slice deltas) and drift (reference vs current histograms).
:func:`report_plots` picks the plots of an evaluation report of any task.

Every function returns the bytes of a 640 x 480 PNG (6.4 x 4.8 inches at 100 dpi). Rendering
uses matplotlib's object-oriented API on the Agg canvas directly (``Figure`` plus
``FigureCanvasAgg``), as matplotlib recommends for servers: no pyplot, no backend switch and no
global figure registry, so nothing leaks into the caller's matplotlib state and no display is
needed. Each figure is drawn under matplotlib's default style (restored afterwards), so the
output does not depend on the caller's rcParams and is byte-identical for the same input and
matplotlib version (the PNG carries no software or date metadata). matplotlib is imported inside
the functions, so importing this module stays cheap.

By role: :mod:`~.rendering` (the canvas and colours), :mod:`~.inputs` (checked inputs),
:mod:`~.curves` (binary curves), :mod:`~.inline` (inline SVG charts for Dagster),
:mod:`~.slices`, :mod:`~.multiclass`, :mod:`~.regression`, :mod:`~.report` (every plot of a
report) and :mod:`~.drift`; this package re-exports their public names.

Example:
    >>> png = roc_plot([0, 1, 0, 1], {"champion": [0.2, 0.7, 0.4, 0.6]})
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

from lockgate.evaluation.plots.curves import (
    calibration_extent,
    calibration_plot,
    calibration_points,
    pr_plot,
    pr_points,
    roc_plot,
    roc_points,
)
from lockgate.evaluation.plots.drift import drift_histogram_plot
from lockgate.evaluation.plots.inline import INLINE_COLORS, INLINE_MARKDOWN_LIMIT, inline_chart
from lockgate.evaluation.plots.multiclass import class_recall_plot, confusion_matrix_plot
from lockgate.evaluation.plots.regression import residual_plot
from lockgate.evaluation.plots.report import report_plots
from lockgate.evaluation.plots.slices import slice_delta_plot

__all__ = [
    "INLINE_COLORS",
    "INLINE_MARKDOWN_LIMIT",
    "calibration_extent",
    "calibration_plot",
    "calibration_points",
    "class_recall_plot",
    "confusion_matrix_plot",
    "drift_histogram_plot",
    "inline_chart",
    "pr_plot",
    "pr_points",
    "report_plots",
    "residual_plot",
    "roc_plot",
    "roc_points",
    "slice_delta_plot",
]
