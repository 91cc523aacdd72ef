"""The regression plot: predicted against actual, and residuals against predicted, per model.

Above 5,000 rows a fixed, seeded sample of rows is drawn (the same for every model), so the PNG
stays small and deterministic; the RMSE in the legend is on all rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.evaluation.plots.inputs import checked_targets
from lockgate.evaluation.plots.rendering import NEUTRAL, render
from lockgate.tasks import metrics as _metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["residual_plot"]

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
    y_float, models = checked_targets(y, predictions)
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
        left.plot([low, high], [low, high], linestyle="--", color=NEUTRAL, linewidth=1)
        right.axhline(0.0, linestyle="--", color=NEUTRAL, linewidth=1)
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

    return render(draw)
