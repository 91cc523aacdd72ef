"""Tests of lockgate.evaluation.plots: valid, deterministic 640 x 480 PNGs and no leaked matplotlib state."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from lockgate.errors import DataError, EmptyDataError, SpecError
from lockgate.evaluation.plots import calibration_plot, pr_plot, roc_plot, slice_delta_plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _data() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    n = 3000
    y = (rng.random(n) < 0.1).astype(np.int64)
    challenger = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 2.0 * y - 2.5)))
    champion = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.2 * y - 2.2)))
    return y, {"challenger": challenger, "champion": champion}


def _check_png(png: bytes) -> None:
    assert png[:8] == PNG_SIGNATURE
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (640, 480)


SLICES = [
    ("country=FR", 0.81, 0.84),
    ("country=DE", 0.79, 0.76),
    ("country=LU", None, 0.9),
    ("amount=[100, 1000)", 0.85, 0.85),
    ("amount=>=1000", float("nan"), None),
]


def _render_all() -> list[bytes]:
    y, scores = _data()
    return [
        roc_plot(y, scores),
        pr_plot(y, scores, title="PR"),
        calibration_plot(y, scores, bins=10),
        calibration_plot(y, {"challenger": scores["challenger"]}, bins=5, strategy="uniform"),
        slice_delta_plot(SLICES, metric="roc_auc"),
        slice_delta_plot(SLICES, metric="log_loss", title="log loss"),
    ]


def test_plots_leak_no_matplotlib_state() -> None:
    import matplotlib

    backend = matplotlib.get_backend()
    before = _render_all()
    matplotlib.rcParams["lines.linewidth"] = 7.0
    try:
        after = _render_all()  # rendered under the default style, whatever the caller set
        assert matplotlib.rcParams["lines.linewidth"] == 7.0
    finally:
        matplotlib.rcParams["lines.linewidth"] = matplotlib.rcParamsDefault["lines.linewidth"]
    assert after == before
    assert matplotlib.get_backend() == backend


def test_import_is_cheap_and_rendering_skips_pyplot() -> None:
    code = (
        "import sys, numpy as np, lockgate.evaluation.plots as lp;"
        "print('matplotlib' in sys.modules);"
        "lp.roc_plot([0, 1, 0, 1], {'a': [0.1, 0.9, 0.3, 0.4]});"
        "print('matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_slice_plot_with_only_undefined_slices() -> None:
    _check_png(slice_delta_plot([("a", None, None), ("b", 0.5, None)], metric="brier"))


def test_many_slices_still_fit() -> None:
    rows = [(f"merchant={i}", 0.8 + i / 1000, 0.8) for i in range(60)]
    _check_png(slice_delta_plot(rows, metric="pr_auc"))


def test_plot_input_errors() -> None:
    y, scores = _data()
    with pytest.raises(DataError, match="non-empty mapping"):
        roc_plot(y, {})
    with pytest.raises(SpecError, match="model name"):
        roc_plot(y, {"": scores["champion"]})
    with pytest.raises(DataError, match="single class"):
        roc_plot(np.zeros(10), {"a": np.linspace(0, 1, 10)})
    with pytest.raises(DataError, match="without positives"):
        pr_plot(np.zeros(10), {"a": np.linspace(0, 1, 10)})
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        calibration_plot(y, {"a": scores["champion"] * 2})
    with pytest.raises(SpecError, match="metric='auc'"):
        slice_delta_plot(SLICES, metric="auc")
    with pytest.raises(EmptyDataError):
        slice_delta_plot([], metric="roc_auc")
    with pytest.raises(DataError, match="slices\\[0\\]"):
        slice_delta_plot([("a", 0.5)], metric="roc_auc")  # type: ignore[list-item]
    with pytest.raises(DataError, match="must be a number"):
        slice_delta_plot([("a", "0.5", 0.6)], metric="roc_auc")  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def _multiclass_data() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    n, k = 900, 3
    y = rng.integers(0, k, size=n)
    out = {}
    for name, shift in (("challenger", 1.5), ("champion", 0.5)):
        z = rng.normal(size=(n, k))
        z[np.arange(n), y] += shift
        out[name] = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return y, out


def _regression_data(n: int = 800) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(2)
    y = rng.normal(size=n) * 4 + 10
    return y, {"challenger": y + rng.normal(size=n), "champion": y + 2 * rng.normal(size=n)}


def _render_tasks() -> list[bytes]:
    from lockgate.evaluation.plots import class_recall_plot, confusion_matrix_plot, residual_plot

    y_m, p_m = _multiclass_data()
    y_r, p_r = _regression_data()
    return [
        residual_plot(y_r, p_r),
        residual_plot(*_regression_data(12_000)),  # sampled scatter
        class_recall_plot(y_m, p_m, classes=["cat", "dog", "eel"]),
        confusion_matrix_plot(y_m, p_m["challenger"], classes=["cat", "dog", "eel"]),
        slice_delta_plot(SLICES, metric="rmse", task="regression"),
    ]


@pytest.mark.parametrize("render", [_render_all, _render_tasks], ids=["binary", "tasks"])
def test_plots_are_valid_deterministic_pngs(render: Callable[[], list[bytes]]) -> None:
    first = render()
    for png in first:
        _check_png(png)
    assert render() == first


def test_report_plots_pick_the_plots_of_the_task() -> None:
    from lockgate.evaluation.plots import report_plots

    slices = [{"slice": "device", "value": "ios", "challenger": 0.8, "champion": 0.7}]

    def report(task: str, metric: str, **extra: object) -> dict:
        return {
            "task": task,
            "challenger": {"version": "v2"},
            "champion": {"version": "v1"},
            "slices": slices,
            "policy": {"slice_metric": metric},
            **extra,
        }

    y, scores = _data()
    binary = report_plots(report("binary", "roc_auc"), y, scores)
    assert list(binary) == ["roc.png", "pr.png", "calibration.png", "slices.png"]
    named = {"challenger v2": scores["challenger"], "champion v1": scores["champion"]}
    assert binary["roc.png"] == roc_plot(y, named)  # exactly the plots of the binary asset
    y_m, p_m = _multiclass_data()
    labels = np.asarray(["cat", "dog", "eel"], dtype=object)[y_m]
    multiclass = report_plots(
        report("multiclass", "log_loss", classes=["cat", "dog", "eel"]), labels, p_m
    )
    assert list(multiclass) == ["class_recall.png", "confusion_matrix.png", "slices.png"]
    y_r, p_r = _regression_data()
    regression = report_plots(
        {**report("regression", "rmse"), "champion": None}, y_r, {"challenger": p_r["challenger"]}
    )
    assert list(regression) == ["residuals.png", "slices.png"]
    for png in [*multiclass.values(), *regression.values()]:
        _check_png(png)


def test_task_plot_input_errors() -> None:
    from lockgate.evaluation.plots import class_recall_plot, residual_plot

    y_m, p_m = _multiclass_data()
    with pytest.raises(DataError, match="3 columns but classes has 2"):
        class_recall_plot(y_m, p_m, classes=["a", "b"])
    with pytest.raises(DataError, match="non-empty mapping"):
        residual_plot([1.0], {})
    with pytest.raises(SpecError, match="metric='roc_auc' is unknown for task 'regression'"):
        slice_delta_plot(SLICES, metric="roc_auc", task="regression")


def test_calibration_zooms_to_the_data_at_a_low_base_rate() -> None:
    from lockgate.evaluation.plots import calibration_points

    rng = np.random.default_rng(3)
    p = rng.uniform(0.0, 0.1, 5000)  # a 2 % base rate model: every score below 0.1
    y = (rng.uniform(size=5000) < p).astype(int)
    points, extent = calibration_points(y, p)
    assert 0.1 <= extent < 0.2  # not a 0-1 axis with every point in one corner
    assert all(x <= extent and r <= extent for x, r in points)
    _check_png(calibration_plot(y, {"m": p}))


def test_inline_charts_fit_dagsters_inline_limit_and_carry_no_png() -> None:
    from urllib.parse import unquote

    from lockgate.evaluation.plots import INLINE_MARKDOWN_LIMIT, inline_chart, pr_points, roc_points

    y, scores = _data()
    roc = {f"{name} AUC": roc_points(y, p) for name, p in scores.items()}
    md = inline_chart(roc, title="ROC curve", diagonal=True)
    assert len(md) < INLINE_MARKDOWN_LIMIT
    assert md.startswith("![ROC curve](data:image/svg+xml,")
    svg = unquote(md.split("(", 1)[1].split(")", 1)[0].removeprefix("data:image/svg+xml,"))
    assert svg.count("<polyline") == 2
    assert " " not in md.split("(", 1)[1].split(")", 1)[0]  # one markdown link destination
    assert md.endswith("blue: challenger AUC · orange: champion AUC")
    assert "base64" not in md
    many = {"m": pr_points(y, scores["challenger"]) * 20}  # thinned until it fits
    assert len(inline_chart(many, title="PR", points=500)) < INLINE_MARKDOWN_LIMIT
    assert roc_points([0, 1], [0.2, 0.8])[0] == (0.0, 0.0)
