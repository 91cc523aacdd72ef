"""Inline charts: tiny SVG line charts short enough for Dagster's UI to render in place.

:func:`inline_chart` draws up to four curves as polylines in an SVG ``data:`` URI inside
markdown, thinned until the markdown stays under :data:`INLINE_MARKDOWN_LIMIT` characters: a
glance in the asset's metadata, beside the precise PNG in the artifact store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lockgate.errors import SpecError

__all__ = ["INLINE_COLORS", "INLINE_MARKDOWN_LIMIT", "inline_chart"]

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
