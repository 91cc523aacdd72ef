"""The slice plot: challenger minus champion per slice, as horizontal bars.

Green where the challenger is better by the metric's direction, red where it is worse, a grey
cross where either model's metric is undefined on the slice; both values and the signed delta
are written beside each bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import DataError, EmptyDataError
from lockgate.evaluation.metric_checks import check_metric
from lockgate.evaluation.plots.rendering import BETTER, NEUTRAL, WORSE, render
from lockgate.tasks import catalog as _tasks

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["slice_delta_plot"]


def _finite_or_none(value: Any, *, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise DataError(
            f"{what} is {value!r}; rule: a slice metric must be a number or None (undefined); "
            f"fix: pass SliceResult.metric_value"
        )
    number = float(value)
    return number if math.isfinite(number) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def slice_delta_plot(
    slices: Sequence[tuple[str, float | None, float | None]],
    *,
    metric: str,
    title: str | None = None,
    task: str = "binary",
) -> bytes:
    """Challenger minus champion per slice, as horizontal bars; undefined slices are marked.

    A bar is green where the challenger is better (by the metric's direction,
    :data:`lockgate.evaluation.stats.HIGHER_IS_BETTER`), red where it is worse; both values and the signed
    delta are listed right of the axes. A slice where either model's metric is ``None`` (or not
    finite) gets a grey cross at 0 and the word "undefined". Slices are drawn top-down in the
    order given.

    Args:
        slices: ``(label, champion_value, challenger_value)`` per slice, e.g. from two
            :func:`lockgate.evaluation.stats.slice_metrics` calls.
        metric: The metric's name (sets the direction and the axis label).
        title: The figure title (default: ``"<metric> by slice: challenger - champion"``).
        task: The task whose catalog holds ``metric`` (:func:`lockgate.tasks.catalog.task_metric_names`).

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        SpecError: On an unknown metric.
        EmptyDataError: When there are no slices.
        DataError: On a malformed slice tuple.

    Example:
        >>> png = slice_delta_plot([("country=FR", 0.81, 0.84), ("country=DE", None, 0.7)],
        ...                        metric="roc_auc")
        >>> png.startswith(b"\\x89PNG")
        True
    """
    check_metric(metric, task)
    rows = list(slices)
    if not rows:
        raise EmptyDataError(
            "slices is empty; rule: a slice plot needs at least one slice; fix: pass "
            "(label, champion_value, challenger_value) tuples, e.g. from slice_metrics"
        )
    labels: list[str] = []
    champions: list[float | None] = []
    challengers: list[float | None] = []
    for i, item in enumerate(rows):
        if not isinstance(item, tuple | list) or len(item) != 3:
            raise DataError(
                f"slices[{i}] is {item!r}; rule: each slice is a (label, champion_value, "
                f"challenger_value) tuple; fix: build the tuples from two slice_metrics results"
            )
        labels.append(str(item[0]))
        champions.append(_finite_or_none(item[1], what=f"slices[{i}] champion value"))
        challengers.append(_finite_or_none(item[2], what=f"slices[{i}] challenger value"))
    higher_is_better = _tasks.higher_is_better(task, metric)
    sign = 1.0 if higher_is_better else -1.0

    def draw(fig: Figure) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        ax = fig.add_subplot()
        positions = np.arange(len(labels))
        deltas = [
            None if a is None or b is None else b - a
            for a, b in zip(champions, challengers, strict=True)
        ]
        finite = [abs(d) for d in deltas if d is not None]
        span = max(finite) if finite and max(finite) > 0 else 1e-3
        fontsize = max(5.0, min(9.0, 180.0 / len(labels)))
        for pos, delta, a, b in zip(positions, deltas, champions, challengers, strict=True):
            if delta is None:
                ax.plot([0.0], [pos], marker="x", color=NEUTRAL, markersize=7)
                ax.annotate(
                    "undefined",
                    (0.0, pos),
                    xytext=(6, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=fontsize,
                    color=NEUTRAL,
                    style="italic",
                )
                summary = f"{_fmt(a)} \u2192 {_fmt(b)}"
            else:
                gain = sign * delta
                color = BETTER if gain > 0 else WORSE if gain < 0 else NEUTRAL
                ax.barh(pos, delta, color=color, height=0.6)
                summary = f"{_fmt(a)} \u2192 {_fmt(b)} ({delta:+.4f})"
            ax.annotate(
                summary,
                (1.0, pos),
                xycoords=("axes fraction", "data"),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=fontsize,
                annotation_clip=False,
            )
        ax.annotate(
            "champion \u2192 challenger (\u0394)",
            (1.0, 1.0),
            xycoords="axes fraction",
            xytext=(6, 4),
            textcoords="offset points",
            va="bottom",
            fontsize=fontsize,
            annotation_clip=False,
        )
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(positions, labels, fontsize=fontsize)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first slice on top
        ax.set_xlim(-1.15 * span, 1.15 * span)
        direction = "higher" if higher_is_better else "lower"
        ax.set_xlabel(f"\u0394 {metric} (challenger \u2212 champion; {direction} is better)")
        ax.set_title(title or f"{metric} by slice: challenger \u2212 champion", pad=14)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(
            handles=[
                Patch(color=BETTER, label="challenger better"),
                Patch(color=WORSE, label="challenger worse"),
                Line2D([], [], marker="x", color=NEUTRAL, linestyle="", label="undefined"),
            ],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=3,
            fontsize=8,
            frameon=False,
        )

    return render(draw)
