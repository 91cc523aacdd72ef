"""The gateway's prediction statistics per output width, and the value sketch behind them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lockgate.gateway import prediction_sketch as ps
from lockgate.gateway.stats import _Series, _version_snapshot, _Window


def _observe(series: _Series, outputs: np.ndarray) -> None:
    series.observe(latency_s=0.001, error=None, violation=False, predictions=outputs)


@pytest.mark.parametrize("rows_per_call", [1, 50])  # the few-rows path and the numpy path
def test_binary_outputs_keep_ten_bins_over_unit_interval(rows_per_call: int) -> None:
    series = _Series()
    values = np.linspace(0.0, 1.0, 100, dtype=np.float32).reshape(-1, 1)
    for i in range(0, 100, rows_per_call):
        _observe(series, values[i : i + rows_per_call])
    snap = _version_snapshot(series.window, _Window(), "champion")
    assert snap["prediction_kind"] == "probability"
    assert snap["prediction_histogram"] == [10] * 10
    assert snap["prediction_out_of_range"] == 0
    assert snap["mean_prediction"] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("rows_per_call", [1, 50])
def test_multiclass_outputs_count_the_predicted_class(rows_per_call: int) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1.0, 1.0, 1.0], 200).astype(np.float32)
    probs[:3] = [2.0, -1.0, 0.0]  # broken rows: out of range, not counted
    series = _Series()
    for i in range(0, 200, rows_per_call):
        _observe(series, probs[i : i + rows_per_call])
    snap = _version_snapshot(series.window, _Window(), "challenger")
    good = probs[3:]
    assert snap["prediction_kind"] == "class"
    assert snap["prediction_histogram"] == np.bincount(good.argmax(axis=1), minlength=3).tolist()
    assert snap["prediction_out_of_range"] == 3
    assert snap["mean_prediction"] == pytest.approx(float(good.max(axis=1).mean()), rel=1e-5)
    assert snap["live"]["prediction"]["histogram"]["edges"] is None
    assert snap["prediction_sketch"] == {}


def test_multiclass_live_and_shadow_windows_add_up_with_an_empty_one() -> None:
    live, shadow = _Series(), _Series()
    _observe(live, np.asarray([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32))
    snap = _version_snapshot(live.window, shadow.window, "champion")  # shadow saw nothing
    assert snap["prediction_histogram"] == [1, 0, 1]
    _observe(shadow, np.asarray([[0.1, 0.8, 0.1]], np.float32))
    assert _version_snapshot(live.window, shadow.window, "x")["prediction_histogram"] == [1, 1, 1]


@pytest.mark.parametrize("rows_per_call", [1, 40])
def test_regression_outputs_fill_the_sketch_whatever_their_scale(rows_per_call: int) -> None:
    values = np.asarray(np.linspace(-500.0, 2500.0, 80), np.float32).reshape(-1, 1)
    series = _Series()
    for i in range(0, 80, rows_per_call):
        _observe(series, values[i : i + rows_per_call])
    snap = _version_snapshot(series.window, _Window(), "champion")
    sketch = {int(k): c for k, c in snap["prediction_sketch"].items()}
    assert sketch == ps.sketch(values[:, 0].astype(np.float64))
    assert sum(sketch.values()) == 80
    assert snap["prediction_out_of_range"] == 80 - int(((values >= 0) & (values <= 1)).sum())
    assert snap["mean_prediction"] == pytest.approx(1000.0, rel=1e-5)


def test_sketch_keys_bound_their_values_within_one_percent() -> None:
    for v in (-1234.5, -0.3, 0.0, 1e-6, 0.7, 3.0, 98765.4):
        k = ps.key(v)
        lower, upper = ps.key_bounds(k)
        assert lower <= v < upper
        if abs(v) > 0.01:
            assert (upper - lower) / abs(v) < 0.011
    arr = np.asarray([-2.0, 0.5, 10.0, 1e5])
    assert ps.keys(arr).tolist() == [ps.key(float(v)) for v in arr]
    assert ps.sketch([1.0, math.nan, math.inf]) == {ps.key(1.0): 1}


def test_sketch_subtract_detects_a_reset_and_rebin_uses_reference_deciles() -> None:
    before = {1: 2, 5: 3}
    assert ps.subtract({1: 4, 5: 3, 7: 1}, before) == {1: 2, 7: 1}
    assert ps.subtract({1: 1}, before) is None  # a bin fell: the window was reset
    reference = ps.sketch(np.random.default_rng(1).normal(100.0, 10.0, 5000))
    edges = ps.quantile_keys(reference, bins=10)
    counts = ps.rebin(reference, edges)
    assert len(counts) == 10
    # deciles at the sketch's 1 % resolution: about 500 each (a bin of 2.5 % mass is indivisible)
    assert all(300 < c < 700 for c in counts), counts
