"""The drift plot: a feature's reference and current shares per bin (or category), overlaid as bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lockgate.errors import DataError, EmptyDataError
from lockgate.evaluation.plots.rendering import NEUTRAL, WORSE, render

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["drift_histogram_plot"]


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
        ax.bar(x - 0.2, ref, width=0.4, color=NEUTRAL, label="reference (training snapshot)")
        ax.bar(x + 0.2, cur, width=0.4, color=WORSE, alpha=0.8, label="current (served)")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=45 if len(names) > 5 else 0, ha="right", fontsize=8)
        ax.set_ylabel("share of rows")
        ax.set_title(f"{feature}\n{subtitle}" if subtitle else feature, fontsize=10)
        ax.legend(loc="best", fontsize=8)

    return render(draw)
