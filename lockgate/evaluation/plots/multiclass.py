"""Multiclass plots: recall per class for each model, and one model's confusion matrix.

:func:`class_recall_plot` groups one bar per model by class (arg-max predictions);
:func:`confusion_matrix_plot` shows the row-normalised confusion matrix, each cell's share of
the true class and its count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.evaluation.plots.inputs import checked_probabilities
from lockgate.evaluation.plots.rendering import render
from lockgate.tasks import metrics as _metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["class_recall_plot", "confusion_matrix_plot"]


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
    y_idx, models = checked_probabilities(y, probabilities, classes)
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

    return render(draw)


def confusion_matrix_plot(
    y: Any, p: Any, *, classes: Sequence[Any], title: str = "Confusion matrix"
) -> bytes:
    """Row-normalised confusion matrix of one model (true class rows, predicted columns).

    Each cell shows the share of the true class's rows predicted as the column's class (the
    diagonal is the per-class recall) and its count.

    Arguments, result and errors as :func:`class_recall_plot`, with ``p`` the one model's
    ``(n, k)`` probabilities in ``classes`` order instead of a mapping of models (so no model
    name to refuse).

    Example:
        >>> png = confusion_matrix_plot([0, 1], [[.7, .3], [.6, .4]], classes=["no", "yes"])
        >>> png.startswith(b"\\x89PNG")
        True
    """
    y_idx, models = checked_probabilities(y, {"model": p}, classes)
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

    return render(draw)
