"""Tests of lockgate.monitoring.drift against scipy and hand-checked values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial import distance as spd

from lockgate.errors import DataError, EmptyDataError, SchemaError, SpecError
from lockgate.monitoring import drift


@pytest.mark.parametrize("seed", range(30))
def test_ks_and_wasserstein_match_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = (int(v) for v in rng.integers(1, 400, 2))
    ref = rng.integers(0, 8, n1).astype(float)
    cur = rng.integers(0, 10, n2).astype(float) * 0.5
    result = drift.feature_drift(ref, cur)
    assert result.ks == sps.ks_2samp(ref, cur).statistic
    assert result.ks_pvalue == sps.ks_2samp(ref, cur, method="asymp").pvalue
    expected = sps.wasserstein_distance(ref, cur)
    assert result.wasserstein == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_ks_matches_scipy_on_large_continuous_samples() -> None:
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(size=20_000), rng.normal(0.03, size=15_000)
    result = drift.feature_drift(ref, cur)
    assert result.ks == sps.ks_2samp(ref, cur).statistic
    assert result.wasserstein == pytest.approx(sps.wasserstein_distance(ref, cur), rel=1e-9)
    limit = drift.feature_drift(ref, cur, ks_pvalue_method="limit")
    assert limit.ks_pvalue == pytest.approx(result.ks_pvalue, rel=0.05)


def test_jsd_matches_scipy_on_the_same_bins() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=5000), rng.normal(0.4, 1.3, size=4000)
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
    full = np.concatenate(([-np.inf], edges, [np.inf]))
    p = np.histogram(ref, bins=full)[0] / ref.size
    q = np.histogram(cur, bins=full)[0] / cur.size
    result = drift.feature_drift(ref, cur)
    assert result.n_bins == 10
    assert result.jsd == pytest.approx(spd.jensenshannon(p, q), rel=1e-12)
    e, a = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    assert result.psi == pytest.approx(float(np.sum((a - e) * np.log(a / e))), rel=1e-12)


def test_psi_hand_checked() -> None:
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    cur = np.array([1.0, 1.0, 1.0, 4.0])
    # bins=2: inner edge = median 2.5 -> ref 1/2, 1/2; cur 3/4, 1/4
    result = drift.feature_drift(ref, cur, bins=2)
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert result.psi == pytest.approx(expected, rel=1e-12)
    # an empty current bin counts as eps, no renormalisation
    empty = drift.feature_drift(ref, np.array([1.0, 1.5]), bins=2, eps=1e-4)
    expected = (1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert empty.psi == pytest.approx(expected, rel=1e-12)


def test_psi_near_zero_for_identical_and_large_for_shifted() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=50_000)
    same = drift.feature_drift(ref, ref.copy())
    assert same.psi == pytest.approx(0.0, abs=1e-12)
    assert same.ks == 0.0
    assert same.wasserstein == 0.0
    assert same.severity == "ok"
    shifted = drift.feature_drift(ref, rng.normal(1.0, size=50_000))
    assert shifted.psi > 0.5
    assert shifted.severity == "critical"


def test_categorical_with_unseen_categories() -> None:
    ref = pd.Series(["a"] * 50 + ["b"] * 50 + [None] * 10)
    cur = pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 20)
    result = drift.feature_drift(ref, cur, kind="categorical")
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.4, 0.4, 0.2])
    e, a = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    assert result.psi == pytest.approx(float(np.sum((a - e) * np.log(a / e))), rel=1e-12)
    assert result.jsd == pytest.approx(spd.jensenshannon(p, q), rel=1e-12)
    table = np.array([[50, 50, 0], [40, 40, 20]])
    assert result.chi2_pvalue == pytest.approx(sps.chi2_contingency(table).pvalue)
    assert result.ks is None
    assert result.wasserstein is None
    assert result.missing_ref == pytest.approx(10 / 110)
    assert result.missing_cur == 0.0
    assert result.n_bins == 3
    assert result.severity == "critical"


def test_missing_ratios_and_to_dict() -> None:
    ref = np.array([1.0, np.nan, 3.0, 4.0])
    cur = np.array([np.nan, np.nan, 3.0, 4.0, 5.0])
    result = drift.feature_drift(ref, cur, feature="x")
    assert result.missing_ref == pytest.approx(0.25)
    assert result.missing_cur == pytest.approx(0.4)
    assert result.missing_drift == pytest.approx(0.15)
    assert result.n_ref == 3
    assert result.n_cur == 3
    d = result.to_dict()
    assert d["feature"] == "x"
    assert d["chi2_pvalue"] is None
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in d.values())


def test_severity_thresholds() -> None:
    assert drift.severity(0.05, warn=0.1, critical=0.2) == "ok"
    assert drift.severity(0.1, warn=0.1, critical=0.2) == "warn"
    assert drift.severity(0.2, warn=0.1, critical=0.2) == "critical"
    assert drift.severity(float("nan"), warn=0.1, critical=0.2) == "ok"
    assert drift.severity(None, warn=0.1, critical=0.2) == "ok"
    th = drift.DriftThresholds()
    assert (th.psi_warn, th.psi_critical, th.ks_warn, th.ks_critical) == (0.1, 0.2, 0.05, 0.1)
    assert (th.jsd_warn, th.jsd_critical) == (0.1, 0.2)
    with pytest.raises(SpecError, match="psi_warn"):
        drift.DriftThresholds(psi_warn=0.3)


def test_errors() -> None:
    with pytest.raises(EmptyDataError, match="empty"):
        drift.feature_drift(np.array([]), np.array([1.0]))
    with pytest.raises(EmptyDataError, match="missing"):
        drift.feature_drift(np.array([1.0]), np.array([np.nan, np.nan]))
    with pytest.raises(EmptyDataError):
        drift.feature_drift([], ["a"], kind="categorical")
    with pytest.raises(DataError, match="infinite"):
        drift.feature_drift(np.array([1.0, np.inf]), np.array([1.0]))
    with pytest.raises(SpecError, match="bins"):
        drift.feature_drift([1.0], [1.0], bins=1)
    with pytest.raises(SpecError, match="kind"):
        drift.feature_drift([1.0], [1.0], kind="text")  # type: ignore[arg-type]


def test_frame_drift_kinds_and_schema() -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["u", "v"], 500)})
    cur = pd.DataFrame({"x": rng.normal(2.0, size=400), "c": rng.choice(["u", "v"], 400)})
    results = drift.frame_drift(ref, cur)
    assert [(r.feature, r.kind) for r in results] == [("x", "numeric"), ("c", "categorical")]
    assert results[0].severity == "critical"
    assert results[0].ks == sps.ks_2samp(ref["x"], cur["x"]).statistic
    serial = drift.frame_drift(ref, cur, workers=1)
    assert [r.to_dict() for r in serial] == [r.to_dict() for r in results]
    with pytest.raises(SchemaError, match="missing from the current"):
        drift.frame_drift(ref, cur.drop(columns="c"))
    with pytest.raises(SchemaError, match="numeric in the reference"):
        drift.frame_drift(ref, cur.assign(x=cur["x"].astype(str)))


# ---- prediction drift per task -------------------------------------------------------------


def test_prediction_values_follow_the_task() -> None:
    probs = np.asarray([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [np.nan, 0.5, 0.5]])
    assert drift.prediction_values("multiclass", probs, (0, 1, 2)).tolist() == ["1", "0", None]
    assert drift.prediction_values("regression", [[12.5], [-3.0]]).tolist() == [12.5, -3.0]
    assert drift.prediction_values("binary", np.asarray([0.2, 0.9])).tolist() == [0.2, 0.9]
    assert drift.prediction_kind("multiclass") == "categorical"
    assert drift.prediction_kind("regression") == "numeric"
    with pytest.raises(DataError, match="one probability per class"):
        drift.prediction_values("multiclass", probs, ("a", "b"))
    with pytest.raises(DataError, match="one value per row"):
        drift.prediction_values("regression", probs)
    with pytest.raises(SpecError, match="task 'ranking' is unknown"):
        drift.prediction_kind("ranking")


def test_multiclass_prediction_drift_is_categorical_over_the_predicted_class() -> None:
    rng = np.random.default_rng(4)
    classes = ("a", "b", "c")
    reference = drift.prediction_values("multiclass", rng.dirichlet([1, 1, 1], 3000), classes)
    same = drift.prediction_values("multiclass", rng.dirichlet([1, 1, 1], 1000), classes)
    skewed = drift.prediction_values("multiclass", rng.dirichlet([6, 1, 1], 1000), classes)
    acc = drift.DriftAccumulator(
        pd.DataFrame({"prediction": reference}), kinds={"prediction": "categorical"}
    )
    acc.update({"prediction": same})
    calm = acc.result()[0]
    assert calm.kind == "categorical"
    assert calm.psi < 0.02
    acc = drift.DriftAccumulator(
        pd.DataFrame({"prediction": reference}), kinds={"prediction": "categorical"}
    )
    acc.update({"prediction": skewed})
    moved = acc.result()[0]
    assert moved.psi > 0.25
    assert moved.severity == "critical"


def test_regression_prediction_drift_bins_on_the_reference_predictions() -> None:
    rng = np.random.default_rng(5)
    reference = drift.prediction_values("regression", rng.normal(800.0, 50.0, (4000, 1)))
    shifted = drift.prediction_values("regression", rng.normal(900.0, 50.0, (1000, 1)))
    result = drift.feature_drift(reference, shifted, feature="prediction")
    assert result.kind == "numeric"
    assert result.severity == "critical"
    assert result.wasserstein == pytest.approx(100.0, rel=0.15)
