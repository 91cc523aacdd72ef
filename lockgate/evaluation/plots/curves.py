"""Binary evaluation curves: ROC, precision-recall and the reliability diagram, as PNGs and as points.

:func:`roc_plot`, :func:`pr_plot` and :func:`calibration_plot` draw one curve per model on the
same rows (AUC, average precision or expected calibration error in the legend);
:func:`roc_points`, :func:`pr_points` and :func:`calibration_points` give the same curves as
point lists for the inline charts, and :func:`calibration_extent` zooms a reliability diagram to
where the data are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from lockgate.evaluation.metric_checks import require_defined
from lockgate.evaluation.plots.inputs import checked_scores
from lockgate.evaluation.plots.rendering import NEUTRAL, render
from lockgate.evaluation.reliability import calibration
from lockgate.tasks import metrics as _metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "calibration_extent",
    "calibration_plot",
    "calibration_points",
    "pr_plot",
    "pr_points",
    "roc_plot",
    "roc_points",
]

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


def _curve(y: _IntArray, p: _FloatArray) -> tuple[_IntArray, _IntArray]:
    """Cumulative true and false positives at each distinct threshold, highest score first."""
    order = np.argsort(-p, kind="mergesort")
    p_sorted = p[order]
    ends = np.concatenate([np.flatnonzero(np.diff(p_sorted) != 0.0), [p_sorted.shape[0] - 1]])
    tps = np.cumsum(y[order], dtype=np.int64)[ends]
    fps = (ends + 1).astype(np.int64) - tps
    return tps, fps


def _finish_unit_axes(
    ax: Axes,
    title: str,
    y: _IntArray,
    *,
    axes: tuple[str, str],
    legend_loc: Literal["lower right", "upper right"],
) -> None:
    """Labels a curve on the unit square (1 % margin; x and y labels ``axes``) with the rows and
    positives of ``y`` in the title, a grid and the legend."""
    ax.set(
        xlim=(-0.01, 1.01),
        ylim=(-0.01, 1.01),
        xlabel=axes[0],
        ylabel=axes[1],
        title=f"{title} (n={y.shape[0]:,}, positives={int(y.sum()):,})",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=9)


def roc_plot(y: Any, scores: Mapping[str, Any], *, title: str = "ROC curve") -> bytes:
    """ROC curves of one or more models on the same rows, AUC in the legend.

    Args:
        y: True labels in {0, 1}; both classes must occur.
        scores: Model name to scores or probabilities of label 1, in legend order.
        title: The figure title.

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or a single class.
        SpecError: On an empty model name.

    Example:
        >>> png = roc_plot([0, 1, 0, 1], {"a": [0.1, 0.9, 0.4, 0.3], "b": [0.2, 0.8, 0.3, 0.4]})
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_int, models = checked_scores(y, scores, unit_interval=False)
    require_defined(y_int, metric="roc_auc")
    positives = int(y_int.sum())
    negatives = int(y_int.shape[0]) - positives

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], linestyle="--", color=NEUTRAL, linewidth=1, label="chance")
        for name, p in models.items():
            tps, fps = _curve(y_int, p)
            fpr = np.concatenate([[0.0], fps / negatives])
            tpr = np.concatenate([[0.0], tps / positives])
            auc = _metrics.roc_auc(y_int, p)
            ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUC {auc:.3f})")
        labels = ("False positive rate", "True positive rate (recall)")
        _finish_unit_axes(ax, title, y_int, axes=labels, legend_loc="lower right")

    return render(draw)


def pr_plot(y: Any, scores: Mapping[str, Any], *, title: str = "Precision-recall curve") -> bytes:
    """Precision-recall curves (step-wise, as average precision integrates them), AP in the legend.

    Arguments, result and errors as :func:`roc_plot`, except that ``y`` needs at least one
    positive rather than both classes (DataError when it has none).

    Example:
        >>> png = pr_plot([0, 1, 0, 1], {"a": [0.1, 0.9, 0.4, 0.3]})
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_int, models = checked_scores(y, scores, unit_interval=False)
    require_defined(y_int, metric="pr_auc")
    positives = int(y_int.sum())
    prevalence = positives / int(y_int.shape[0])

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.axhline(
            prevalence,
            linestyle="--",
            color=NEUTRAL,
            linewidth=1,
            label=f"prevalence ({prevalence:.3g})",
        )
        for name, p in models.items():
            tps, fps = _curve(y_int, p)
            precision = tps / (tps + fps)
            recall = tps / positives
            ap = _metrics.pr_auc(y_int, p)
            ax.plot(
                np.concatenate([[0.0], recall]),
                np.concatenate([[precision[0]], precision]),
                drawstyle="steps-pre",
                linewidth=1.5,
                label=f"{name} (AP {ap:.3f})",
            )
        labels = ("Recall (true positive rate)", "Precision")
        _finish_unit_axes(ax, title, y_int, axes=labels, legend_loc="upper right")

    return render(draw)


def calibration_plot(
    y: Any,
    scores: Mapping[str, Any],
    *,
    bins: int = 10,
    strategy: Literal["quantile", "uniform"] = "quantile",
    title: str = "Calibration",
) -> bytes:
    """Reliability diagram (above) and histogram of the predictions (below, log scale).

    The bins are those of :func:`lockgate.evaluation.stats.calibration` (sklearn's conventions); each
    point is a non-empty bin's mean prediction against its observed positive rate, and the
    legend gives each model's expected calibration error.

    Args:
        y: True labels in {0, 1}.
        scores: Model name to predicted probabilities of label 1 in ``[0, 1]``.
        bins: Number of calibration bins, at least 1.
        strategy: ``"quantile"`` (equal-count bins) or ``"uniform"`` (equal-width bins).
        title: The figure title.

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input (probabilities outside [0, 1] included).
        SpecError: On an invalid ``bins``, ``strategy`` or model name.

    Example:
        >>> png = calibration_plot([0, 1, 0, 1], {"a": [0.1, 0.9, 0.4, 0.3]}, bins=2)
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_int, models = checked_scores(y, scores, unit_interval=True)
    curves = {
        name: calibration(y_int, p, bins=bins, strategy=strategy) for name, p in models.items()
    }

    extent = calibration_extent(curves, models)

    def draw(fig: Figure) -> None:
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot(
            [0, extent], [0, extent], linestyle="--", color=NEUTRAL, linewidth=1, label="perfect"
        )
        hist_edges = np.linspace(0.0, extent, 41)
        for name, cal in curves.items():
            (line,) = top.plot(
                cal.mean_predicted,
                cal.observed_rate,
                marker="o",
                markersize=4,
                linewidth=1.5,
                label=f"{name} (ECE {cal.ece:.3f})",
            )
            bottom.hist(
                np.minimum(models[name], extent),  # the rare scores above: in the last bin
                bins=hist_edges,
                histtype="step",
                log=True,
                color=line.get_color(),
                linewidth=1.2,
            )
        pad = extent * 0.01
        top.set(
            xlim=(-pad, extent + pad),
            ylim=(-pad, extent + pad),
            ylabel="Observed positive rate",
            title=f"{title} ({strategy} bins={bins}, n={y_int.shape[0]:,})"
            + (f", zoomed to [0, {extent:.2g}]" if extent < 1.0 else ""),
        )
        top.grid(alpha=0.3)
        top.legend(loc="upper left", fontsize=9)
        bottom.set(xlabel="Mean predicted probability", ylabel="Rows")
        bottom.grid(alpha=0.3)

    return render(draw)


def calibration_extent(curves: Mapping[str, Any], models: Mapping[str, _FloatArray]) -> float:
    """The upper end of a calibration plot's axes: where the data are, not always 1.

    At a 2 % base rate every bin's mean prediction and observed rate lie in [0, 0.13]; on a
    0-1 axis they are one clump in a corner. The extent is the largest bin coordinate or
    99.9th percentile of the predictions, with 10 % headroom, at least 0.01 and at most 1 (both
    axes share it, so the diagonal stays the perfect-calibration line).

    Example:
        >>> from lockgate.evaluation.stats import calibration
        >>> y, p = np.array([0] * 9 + [1]), np.linspace(0.01, 0.1, 10)  # a 10 % base rate
        >>> round(calibration_extent({"m": calibration(y, p, bins=1)}, {"m": p}), 3)
        0.11
    """
    top = 0.0
    for cal in curves.values():
        top = max(top, *cal.mean_predicted, *cal.observed_rate)
    for p in models.values():
        if p.size:
            top = max(top, float(np.quantile(p, 0.999)))
    return float(min(1.0, max(0.01, top * 1.1)))


def roc_points(y: Any, p: Any) -> list[tuple[float, float]]:
    """The ROC curve's ``(false positive rate, true positive rate)`` points, from (0, 0)."""
    y_int, models = checked_scores(y, {"m": p}, unit_interval=False)
    require_defined(y_int, metric="roc_auc")
    tps, fps = _curve(y_int, models["m"])
    positives, negatives = int(y_int.sum()), int(y_int.shape[0] - y_int.sum())
    return [(0.0, 0.0)] + [
        (float(f) / negatives, float(t) / positives) for t, f in zip(tps, fps, strict=True)
    ]


def pr_points(y: Any, p: Any) -> list[tuple[float, float]]:
    """The precision-recall curve's ``(recall, precision)`` points, highest threshold first."""
    y_int, models = checked_scores(y, {"m": p}, unit_interval=False)
    require_defined(y_int, metric="roc_auc")
    tps, fps = _curve(y_int, models["m"])
    positives = int(y_int.sum())
    return [(float(t) / positives, float(t) / float(t + f)) for t, f in zip(tps, fps, strict=True)]


def calibration_points(
    y: Any, p: Any, *, bins: int = 10
) -> tuple[list[tuple[float, float]], float]:
    """A reliability curve's ``(mean predicted, observed rate)`` per quantile bin, and the
    extent of its axes (:func:`calibration_extent`)."""
    y_int, models = checked_scores(y, {"m": p}, unit_interval=True)
    cal = calibration(y_int, models["m"], bins=bins, strategy="quantile")
    points = list(zip(map(float, cal.mean_predicted), map(float, cal.observed_rate), strict=True))
    return points, calibration_extent({"m": cal}, models)
