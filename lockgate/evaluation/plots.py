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

Example:
    >>> png = roc_plot([0, 1, 0, 1], {"champion": [0.2, 0.7, 0.4, 0.6]})
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from lockgate.errors import DataError, EmptyDataError, SpecError
from lockgate.evaluation import stats as _stats
from lockgate.tasks import catalog as _tasks
from lockgate.tasks import metrics as _metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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

_FIGSIZE = (6.4, 4.8)
_DPI = 100
_BETTER = "#2e7d32"
_WORSE = "#c62828"
_NEUTRAL = "#757575"

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]


def _render(draw: Callable[[Figure], None]) -> bytes:
    """Draws on a fresh 640 x 480 figure under the default style and returns the PNG bytes."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=_FIGSIZE, dpi=_DPI)
        FigureCanvasAgg(fig)
        try:
            draw(fig)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
        finally:
            fig.clear()
    return buffer.getvalue()


def _models(
    y: Any, scores: Mapping[str, Any], *, unit_interval: bool
) -> tuple[_IntArray, dict[str, _FloatArray]]:
    """Validates the labels and every model's scores."""
    if not isinstance(scores, Mapping) or not scores:
        raise DataError(
            f"scores is {scores!r}; rule: plots need a non-empty mapping of model name to "
            f"predicted probabilities; fix: pass e.g. {{'champion': p_champion, 'challenger': "
            f"p_challenger}}"
        )
    y_int = _stats._as_labels(y)
    return y_int, _named(scores, "scores", n=int(y_int.shape[0]), unit_interval=unit_interval)


def _named(
    values: Mapping[str, Any], what: str, *, n: int, unit_interval: bool
) -> dict[str, _FloatArray]:
    """Each model's values checked: a non-empty string name and ``n`` (finite) numbers."""
    out: dict[str, _FloatArray] = {}
    for name, v in values.items():
        if not isinstance(name, str) or not name:
            raise SpecError(
                f"model name {name!r} is invalid; rule: every model needs a non-empty string "
                f"name (it labels the curve); fix: key the {what} by e.g. 'champion'"
            )
        out[name] = _stats._as_scores(v, name=f"{what}[{name!r}]", n=n, unit_interval=unit_interval)
    return out


def _curve(y: _IntArray, p: _FloatArray) -> tuple[_IntArray, _IntArray]:
    """Cumulative true and false positives at each distinct threshold, highest score first."""
    order = np.argsort(-p, kind="mergesort")
    p_sorted = p[order]
    ends = np.concatenate([np.flatnonzero(np.diff(p_sorted) != 0.0), [p_sorted.shape[0] - 1]])
    tps = np.cumsum(y[order], dtype=np.int64)[ends]
    fps = (ends + 1).astype(np.int64) - tps
    return tps, fps


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
    y_int, models = _models(y, scores, unit_interval=False)
    _stats._require_defined(y_int, metric="roc_auc")
    positives = int(y_int.sum())
    negatives = int(y_int.shape[0]) - positives

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], linestyle="--", color=_NEUTRAL, linewidth=1, label="chance")
        for name, p in models.items():
            tps, fps = _curve(y_int, p)
            fpr = np.concatenate([[0.0], fps / negatives])
            tpr = np.concatenate([[0.0], tps / positives])
            auc = _metrics.roc_auc(y_int, p)
            ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUC {auc:.3f})")
        ax.set(
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            xlabel="False positive rate",
            ylabel="True positive rate (recall)",
            title=f"{title} (n={y_int.shape[0]:,}, positives={positives:,})",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=9)

    return _render(draw)


def pr_plot(y: Any, scores: Mapping[str, Any], *, title: str = "Precision-recall curve") -> bytes:
    """Precision-recall curves (step-wise, as average precision integrates them), AP in the legend.

    Args:
        y: True labels in {0, 1}; at least one positive.
        scores: Model name to scores or probabilities of label 1, in legend order.
        title: The figure title.

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input or no positives.
        SpecError: On an empty model name.

    Example:
        >>> png = pr_plot([0, 1, 0, 1], {"a": [0.1, 0.9, 0.4, 0.3]})
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_int, models = _models(y, scores, unit_interval=False)
    _stats._require_defined(y_int, metric="pr_auc")
    positives = int(y_int.sum())
    prevalence = positives / int(y_int.shape[0])

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.axhline(
            prevalence,
            linestyle="--",
            color=_NEUTRAL,
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
        ax.set(
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            xlabel="Recall (true positive rate)",
            ylabel="Precision",
            title=f"{title} (n={y_int.shape[0]:,}, positives={positives:,})",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=9)

    return _render(draw)


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
    y_int, models = _models(y, scores, unit_interval=True)
    curves = {
        name: _stats.calibration(y_int, p, bins=bins, strategy=strategy)
        for name, p in models.items()
    }

    extent = calibration_extent(curves, models)

    def draw(fig: Figure) -> None:
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        top.plot(
            [0, extent], [0, extent], linestyle="--", color=_NEUTRAL, linewidth=1, label="perfect"
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

    return _render(draw)


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


# ---------------------------------------------------------------------------------------------
# inline charts: tiny SVG line charts short enough for Dagster's UI to render in place

INLINE_MARKDOWN_LIMIT = 1000
"""Dagster's UI renders a markdown metadata value in place only below this many characters
(``MetadataEntry.tsx``: ``mdStr.length < 1000``); a longer one becomes a "[Show Markdown]"
link to a modal. Its markdown sanitizer allows ``data:`` image sources."""

INLINE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")
"""Line colors of :func:`inline_chart` in series order: blue, orange, green, red."""
_COLOR_NAMES = ("blue", "orange", "green", "red")


def _thin(points: Sequence[tuple[float, float]], keep: int) -> list[tuple[float, float]]:
    """At most ``keep`` points of a curve, evenly spaced by index, first and last kept."""
    if len(points) <= keep:
        return list(points)
    idx = np.unique(np.linspace(0, len(points) - 1, keep).round().astype(int))
    return [points[i] for i in idx]


def inline_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_max: float = 1.0,
    y_max: float = 1.0,
    diagonal: bool = False,
    points: int = 32,
    limit: int = INLINE_MARKDOWN_LIMIT,
    note: str = "",
) -> str:
    """A small line chart as markdown that Dagster's UI shows in place, with a legend line.

    Each series is a polyline in an SVG ``data:`` URI (coordinates scaled to a 100 x 60 box and
    rounded: a glance, not a measurement; the PNG beside it in the artifact store is the
    precise plot). Series are thinned until the markdown is shorter than ``limit``.

    Args:
        series: Legend text to ``(x, y)`` points, in color order (:data:`INLINE_COLORS`,
            at most four).
        title: The image's alt text.
        x_max: The x value at the right edge (data beyond it are clipped).
        y_max: The y value at the top edge.
        diagonal: Draw the dashed ``y = x`` line (ROC chance, perfect calibration).
        points: Most points per series before thinning for the limit.
        limit: Length the markdown must stay under.
        note: Text after the legend, e.g. the axes' range.

    Returns:
        ``![title](data:image/svg+xml,...)`` and a line naming each color.

    Raises:
        SpecError: No series, more than four, or no way to fit under ``limit``.

    Example:
        >>> md = inline_chart({"model": [(0, 0), (0.2, 0.7), (1, 1)]}, title="ROC", diagonal=True)
        >>> md.startswith("![ROC](data:image/svg+xml,") and len(md) < 1000
        True
    """
    from urllib.parse import quote

    if not series or len(series) > len(INLINE_COLORS):
        raise SpecError(
            f"inline_chart got {len(series)} series; rule: 1 to {len(INLINE_COLORS)} lines fit "
            "a glance; fix: pass fewer models"
        )
    legend = " · ".join(f"{_COLOR_NAMES[i]}: {name}" for i, name in enumerate(series))
    if note:
        legend += f" ({note})"
    keep = points
    while keep >= 2:
        body = []
        if diagonal:
            end_x, end_y = 100 * min(1.0, y_max / x_max), 60 - 60 * min(1.0, x_max / y_max)
            body.append(
                f"<path d='M0,60L{end_x:.0f},{end_y:.0f}' stroke='%23999' stroke-dasharray='2'/>"
            )
        for i, values in enumerate(series.values()):
            coords = []
            for x, y in _thin(list(values), keep):
                cx = 100 * min(max(float(x) / x_max, 0.0), 1.0)
                cy = 60 - 60 * min(max(float(y) / y_max, 0.0), 1.0)
                coords.append(f"{cx:.0f},{cy:.0f}")
            body.append(
                f"<polyline points='{','.join(coords)}' fill='none' "
                f"stroke='{INLINE_COLORS[i].replace('#', '%23')}'/>"
            )
        svg = (
            "<svg xmlns='http://www.w3.org/2000/svg' viewBox='-1 -1 102 62' width='240' "
            "height='144'><rect x='-1' y='-1' width='102' height='62' fill='%23fff' "
            "stroke='%23ccc'/>" + "".join(body) + "</svg>"
        )
        uri = "data:image/svg+xml," + quote(svg, safe="/:=',.%-")
        markdown = f"![{title}]({uri})\n\n{legend}"
        if len(markdown) < limit:
            return markdown
        keep = keep * 2 // 3
    raise SpecError(
        f"inline chart {title!r} does not fit {limit} characters even with 2 points per line; "
        "fix: shorten the legend"
    )


def roc_points(y: Any, p: Any) -> list[tuple[float, float]]:
    """The ROC curve's ``(false positive rate, true positive rate)`` points, from (0, 0)."""
    y_int, models = _models(y, {"m": p}, unit_interval=False)
    _stats._require_defined(y_int, metric="roc_auc")
    tps, fps = _curve(y_int, models["m"])
    positives, negatives = int(y_int.sum()), int(y_int.shape[0] - y_int.sum())
    return [(0.0, 0.0)] + [
        (float(f) / negatives, float(t) / positives) for t, f in zip(tps, fps, strict=True)
    ]


def pr_points(y: Any, p: Any) -> list[tuple[float, float]]:
    """The precision-recall curve's ``(recall, precision)`` points, highest threshold first."""
    y_int, models = _models(y, {"m": p}, unit_interval=False)
    _stats._require_defined(y_int, metric="roc_auc")
    tps, fps = _curve(y_int, models["m"])
    positives = int(y_int.sum())
    return [(float(t) / positives, float(t) / float(t + f)) for t, f in zip(tps, fps, strict=True)]


def calibration_points(
    y: Any, p: Any, *, bins: int = 10
) -> tuple[list[tuple[float, float]], float]:
    """A reliability curve's ``(mean predicted, observed rate)`` per quantile bin, and the
    extent of its axes (:func:`calibration_extent`)."""
    y_int, models = _models(y, {"m": p}, unit_interval=True)
    cal = _stats.calibration(y_int, models["m"], bins=bins, strategy="quantile")
    points = list(zip(map(float, cal.mean_predicted), map(float, cal.observed_rate), strict=True))
    return points, calibration_extent({"m": cal}, models)


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
    _stats._check_metric(metric, task)
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
                ax.plot([0.0], [pos], marker="x", color=_NEUTRAL, markersize=7)
                ax.annotate(
                    "undefined",
                    (0.0, pos),
                    xytext=(6, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=fontsize,
                    color=_NEUTRAL,
                    style="italic",
                )
                summary = f"{_fmt(a)} \u2192 {_fmt(b)}"
            else:
                gain = sign * delta
                color = _BETTER if gain > 0 else _WORSE if gain < 0 else _NEUTRAL
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
                Patch(color=_BETTER, label="challenger better"),
                Patch(color=_WORSE, label="challenger worse"),
                Line2D([], [], marker="x", color=_NEUTRAL, linestyle="", label="undefined"),
            ],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            ncol=3,
            fontsize=8,
            frameon=False,
        )

    return _render(draw)


def _targets(y: Any, predictions: Mapping[str, Any]) -> tuple[_FloatArray, dict[str, _FloatArray]]:
    """Validates regression targets and every model's predictions."""
    if not isinstance(predictions, Mapping) or not predictions:
        raise DataError(
            f"predictions is {predictions!r}; rule: plots need a non-empty mapping of model name "
            f"to predictions; fix: pass e.g. {{'challenger': pred}}"
        )
    y_float = _metrics._as_targets(y)
    return y_float, _named(predictions, "predictions", n=int(y_float.shape[0]), unit_interval=False)


_MAX_POINTS = 5000


def residual_plot(
    y: Any, predictions: Mapping[str, Any], *, title: str = "Regression residuals"
) -> bytes:
    """Predicted against actual (left, with the identity line) and residuals against predicted
    (right, ``actual - predicted``, with the zero line), one colour per model, RMSE in the legend.

    Above 5,000 rows a fixed, seeded sample of 5,000 rows is drawn (the same rows for every
    model), so the PNG stays small and deterministic; the RMSE is on all rows.

    Args:
        y: Regression targets (finite floats).
        predictions: Model name to predictions, in legend order.
        title: The figure title.

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input.
        SpecError: On an empty model name.

    Example:
        >>> png = residual_plot([1.0, 2.0, 3.0], {"challenger": [1.1, 1.9, 3.2]})
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_float, models = _targets(y, predictions)
    n = int(y_float.shape[0])
    shown = (
        np.sort(np.random.default_rng(0).choice(n, size=_MAX_POINTS, replace=False))
        if n > _MAX_POINTS
        else np.arange(n)
    )

    def draw(fig: Figure) -> None:
        left, right = fig.subplots(1, 2)
        low = min(float(y_float.min()), *(float(p.min()) for p in models.values()))
        high = max(float(y_float.max()), *(float(p.max()) for p in models.values()))
        left.plot([low, high], [low, high], linestyle="--", color=_NEUTRAL, linewidth=1)
        right.axhline(0.0, linestyle="--", color=_NEUTRAL, linewidth=1)
        for name, pred in models.items():
            error = _metrics.rmse(y_float, pred)
            left.scatter(
                pred[shown], y_float[shown], s=4, alpha=0.4, label=f"{name} (RMSE {error:.4g})"
            )
            right.scatter(pred[shown], (y_float - pred)[shown], s=4, alpha=0.4)
        left.set(xlabel="Predicted", ylabel="Actual", title="Predicted vs actual")
        right.set(
            xlabel="Predicted", ylabel="Residual (actual \u2212 predicted)", title="Residuals"
        )
        for ax in (left, right):
            ax.grid(alpha=0.3)
        left.legend(loc="upper left", fontsize=8)
        fig.suptitle(f"{title} (n={n:,})", fontsize=11)

    return _render(draw)


def _class_models(
    y: Any, probabilities: Mapping[str, Any], classes: Sequence[Any]
) -> tuple[_IntArray, dict[str, _FloatArray]]:
    if not isinstance(probabilities, Mapping) or not probabilities:
        raise DataError(
            f"probabilities is {probabilities!r}; rule: plots need a non-empty mapping of model "
            f"name to (n, k) class probabilities; fix: pass e.g. {{'challenger': p}}"
        )
    out: dict[str, _FloatArray] = {}
    y_idx: _IntArray | None = None
    for name, p in probabilities.items():
        if not isinstance(name, str) or not name:
            raise SpecError(
                f"model name {name!r} is invalid; rule: every model needs a non-empty string "
                f"name; fix: key the probabilities by e.g. 'champion'"
            )
        y_idx, out[name] = _metrics._validate_multiclass(y, p)
        if out[name].shape[1] != len(classes):
            raise DataError(
                f"probabilities[{name!r}] has {out[name].shape[1]} columns but classes has "
                f"{len(classes)} labels; rule: one column per class, in classes order; fix: pass "
                f"the model's classes"
            )
    assert y_idx is not None
    return y_idx, out


def class_recall_plot(
    y: Any,
    probabilities: Mapping[str, Any],
    *,
    classes: Sequence[Any],
    title: str = "Recall per class",
) -> bytes:
    """Recall of every class (arg-max prediction), one bar per model, grouped by class.

    Args:
        y: Class indices ``0..k-1``.
        probabilities: Model name to ``(n, k)`` probabilities in ``classes`` order.
        classes: The k class labels (axis labels).
        title: The figure title.

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input.
        SpecError: On an empty model name.

    Example:
        >>> png = class_recall_plot([0, 1, 2], {"a": [[.8, .1, .1], [.1, .8, .1], [.5, .4, .1]]},
        ...                         classes=["x", "y", "z"])
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_idx, models = _class_models(y, probabilities, classes)
    counts = np.bincount(y_idx, minlength=len(classes))
    recalls = {name: _metrics.per_class_recall(y_idx, p) for name, p in models.items()}

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        x = np.arange(len(classes))
        width = 0.8 / len(recalls)
        for i, (name, values) in enumerate(recalls.items()):
            heights = [np.nan if v is None else v for v in values]
            ax.bar(
                x - 0.4 + width * (i + 0.5),
                heights,
                width=width,
                label=f"{name} (min {min((v for v in values if v is not None), default=0):.3f})",
            )
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{c}\n(n={n:,})" for c, n in zip(classes, counts, strict=True)],
            rotation=45 if len(classes) > 6 else 0,
            fontsize=8,
        )
        ax.set(ylim=(0.0, 1.05), ylabel="Recall", title=f"{title} (n={y_idx.shape[0]:,})")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)

    return _render(draw)


def confusion_matrix_plot(
    y: Any, p: Any, *, classes: Sequence[Any], title: str = "Confusion matrix"
) -> bytes:
    """Row-normalised confusion matrix of one model (true class rows, predicted columns).

    Each cell shows the share of the true class's rows predicted as the column's class (the
    diagonal is the per-class recall) and its count.

    Args:
        y: Class indices ``0..k-1``.
        p: ``(n, k)`` probabilities in ``classes`` order.
        classes: The k class labels.
        title: The figure title.

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        EmptyDataError: When there are no rows.
        DataError: On invalid input.

    Example:
        >>> png = confusion_matrix_plot([0, 1], [[.7, .3], [.6, .4]], classes=["no", "yes"])
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_idx, models = _class_models(y, {"model": p}, classes)
    counts = _metrics.confusion_matrix(y_idx, models["model"])
    rows = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(rows, 1)
    k = len(classes)
    fontsize = max(5.0, min(9.0, 60.0 / k))

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, label="share of the true class")
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        f"{shares[i, j]:.2f}\n{counts[i, j]:,}",
                        ha="center",
                        va="center",
                        fontsize=fontsize,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
        names = [str(c) for c in classes]
        ax.set_xticks(np.arange(k), names, rotation=45 if k > 6 else 0, fontsize=8)
        ax.set_yticks(np.arange(k), names, fontsize=8)
        ax.set(
            xlabel="Predicted class", ylabel="True class", title=f"{title} (n={y_idx.shape[0]:,})"
        )

    return _render(draw)


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
        from lockgate.evaluation.report import encode_labels

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


def drift_histogram_plot(
    feature: str,
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    subtitle: str = "",
) -> bytes:
    """Reference and current proportions per bin (or category), overlaid as bars.

    Args:
        feature: The feature's name (the title).
        labels: One label per bin or category, in drawing order.
        reference: Share of the reference sample in each bin (sums to at most 1).
        current: Share of the current sample in each bin.
        subtitle: A second title line, e.g. the drift metrics.

    Returns:
        The PNG bytes (640 x 480).

    Raises:
        EmptyDataError: No bins.
        DataError: The three sequences differ in length or a share is outside [0, 1].

    Example:
        >>> png = drift_histogram_plot("age", ["<30", "30-60", ">=60"], [0.3, 0.5, 0.2],
        ...                            [0.6, 0.3, 0.1], subtitle="PSI 0.31")
        >>> png.startswith(b"\\x89PNG")
        True
    """
    names = [str(x) for x in labels]
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if not names:
        raise EmptyDataError(
            f"drift_histogram_plot({feature!r}) got no bins; rule: at least one bin; fix: pass "
            "the bins of the drift report"
        )
    if not (len(names) == ref.size == cur.size):
        raise DataError(
            f"drift_histogram_plot({feature!r}): {len(names)} labels, {ref.size} reference and "
            f"{cur.size} current shares; rule: one share per label on each side; fix: pass "
            "aligned sequences"
        )
    bad = ~((ref >= 0) & (ref <= 1) & (cur >= 0) & (cur <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"drift_histogram_plot({feature!r}): bin {names[i]!r} has shares "
            f"{ref[i]!r} / {cur[i]!r}; rule: shares lie in [0, 1]; fix: pass proportions, "
            "not counts"
        )

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        x = np.arange(len(names))
        ax.bar(x - 0.2, ref, width=0.4, color=_NEUTRAL, label="reference (training snapshot)")
        ax.bar(x + 0.2, cur, width=0.4, color=_WORSE, alpha=0.8, label="current (served)")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45 if len(names) > 5 else 0, ha="right", fontsize=8)
        ax.set_ylabel("share of rows")
        ax.set_title(f"{feature}\n{subtitle}" if subtitle else feature, fontsize=10)
        ax.legend(loc="best", fontsize=8)

    return _render(draw)
