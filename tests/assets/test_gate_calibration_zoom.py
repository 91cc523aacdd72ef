"""The inline calibration chart zooms to its bins, even when a few predictions are near 1."""

from __future__ import annotations

import re

import numpy as np

from lockgate.assets.gate import evaluation_views


def test_a_few_confident_predictions_do_not_unzoom_the_calibration_chart() -> None:
    rng = np.random.default_rng(3)
    y = (rng.uniform(size=5000) < 0.02).astype(int)  # a 2 % base rate
    p = np.clip(0.01 + 0.08 * y + rng.normal(0, 0.01, 5000), 0, 1)
    p[:10] = 0.99  # a handful of certain frauds: the top bin's mean stays low
    report = {
        "task": "binary",
        "challenger": {"version": "v2", "metrics": {"roc_auc": {"estimate": 0.9}}},
        "champion": None,
        "slices": [],
        "edge_cases": [],
    }
    views = evaluation_views(report, y, {"challenger": p}, {})
    text = views["plot_calibration"].value
    extent = float(re.search(r"both axes 0 to ([0-9.e-]+)", text).group(1))  # type: ignore[union-attr]
    assert extent < 0.5  # zoomed to where the bins are, not 0 to 1
    assert extent >= 0.01
