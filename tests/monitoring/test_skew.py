"""The pure core of the training/serving skew report: served vs historical frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from lockgate.errors import DataError
from lockgate.monitoring.skew import SkewPolicy, compare_served
from lockgate.serving.wire import code24

KINDS = {"amount": "numeric", "age": "numeric", "device": "categorical"}
POLICY = SkewPolicy(min_rows=10)


def frames(n: int = 200, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    device = rng.choice(["web", "ios", "android"], size=n)
    offline = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 40.0, size=n).astype(np.float32).astype(np.float64),
            "age": rng.integers(18, 90, size=n).astype(np.float64),
            "device": [float(code24(d)) for d in device],
        }
    )
    return offline.copy(), offline


def by_feature(report: dict[str, object]) -> dict[str, dict[str, object]]:
    return {f["feature"]: f for f in report["features"]}  # type: ignore[attr-defined, index]


def test_identical_vectors_are_ok_with_zero_skew() -> None:
    served, offline = frames()
    report = compare_served(served, offline, KINDS, POLICY)
    assert report["level"] == "ok"
    assert report["rows"] == 200
    assert report["reason"].startswith("served values match point-in-time historical values on 3")
    for f in report["features"]:
        assert f["differ"] == 0
        assert f["differ_share"] == 0.0
        assert f["missing_online"] == f["missing_offline"] == 0
        assert f["jsd"] == pytest.approx(0.0, abs=1e-9)
        assert f["severity"] == "ok"
    assert by_feature(report)["amount"]["mean_abs_diff"] == 0.0
    assert by_feature(report)["device"]["mean_abs_diff"] is None  # codes have no distance


def test_stale_values_on_one_feature_are_critical_and_named() -> None:
    served, offline = frames()
    served.loc[:19, "age"] -= 1.0  # 10 % of the rows served a value one year old
    report = compare_served(served, offline, KINDS, POLICY)
    assert report["level"] == "critical"
    assert report["critical_features"] == ["age"]
    age = by_feature(report)["age"]
    assert age["differ"] == 20
    assert age["differ_share"] == pytest.approx(0.10)
    assert age["mean_abs_diff"] == pytest.approx(20 / 200)
    assert report["features"][0]["feature"] == "age"  # worst first
    assert report["reason"].startswith("critical skew on age (10.0% of rows differ")
    assert by_feature(report)["amount"]["severity"] == "ok"


def test_a_small_share_is_a_warning_and_tolerance_absorbs_rounding() -> None:
    served, offline = frames()
    served.loc[:3, "amount"] += 5.0  # 2 % of rows: between 1 % and 5 %
    served.loc[10:, "age"] += 1e-9  # below abs_tolerance: equal
    report = compare_served(served, offline, KINDS, POLICY)
    assert report["level"] == "warning"
    assert report["warning_features"] == ["amount"]
    assert by_feature(report)["age"]["differ"] == 0
    strict = compare_served(
        served, offline, KINDS, SkewPolicy(min_rows=10, abs_tolerance=0.0, rel_tolerance=0.0)
    )
    assert by_feature(strict)["age"]["differ"] == 190


def test_missing_online_and_offline_are_counted_apart_and_differ() -> None:
    served, offline = frames()
    served.loc[:29, "device"] = np.nan  # the online store lacked these entities
    offline.loc[50:54, "amount"] = np.nan  # training would have seen nothing (TTL)
    report = compare_served(served, offline, KINDS, POLICY)
    device, amount = by_feature(report)["device"], by_feature(report)["amount"]
    assert (device["missing_online"], device["missing_offline"], device["differ"]) == (30, 0, 30)
    assert (amount["missing_online"], amount["missing_offline"], amount["differ"]) == (0, 5, 5)
    assert "device (15.0% of rows differ, 30 missing online" in report["reason"]
    assert report["critical_features"] == ["device"]
    assert amount["severity"] == "warning"  # 2.5 %


def test_both_missing_is_no_difference() -> None:
    served, offline = frames()
    served.loc[:49, "amount"] = np.nan
    offline.loc[:49, "amount"] = np.nan
    assert by_feature(compare_served(served, offline, KINDS, POLICY))["amount"]["differ"] == 0


def test_a_shifted_distribution_is_caught_by_the_distance_alone() -> None:
    served, offline = frames()
    # every value off by less than the share levels would catch if only a few rows differed:
    # here the per-row tolerance is wide, so only the distribution distance can tell
    served["amount"] = offline["amount"] * 1.8
    loose = SkewPolicy(min_rows=10, rel_tolerance=1.0)
    amount = by_feature(compare_served(served, offline, KINDS, loose))["amount"]
    assert amount["differ"] == 0
    assert amount["jsd"] > 0.2
    assert amount["severity"] == "critical"


def test_too_few_rows_are_insufficient_and_judge_nothing() -> None:
    served, offline = frames(n=5)
    served["age"] += 3
    report = compare_served(served, offline, KINDS, SkewPolicy(min_rows=20))
    assert report["level"] == "insufficient"
    assert report["features"] == []
    assert "5 served entity-key rows, fewer than min_rows=20" in report["reason"]


def test_frames_that_do_not_line_up_are_refused_naming_the_fix() -> None:
    served, offline = frames()
    with pytest.raises(DataError, match="served has 199 rows but offline 200"):
        compare_served(served.iloc[1:], offline, KINDS, POLICY)
    with pytest.raises(DataError, match=r"feature\(s\) \['device'\] are not in both frames"):
        compare_served(served.drop(columns="device"), offline, KINDS, POLICY)


def test_policy_levels_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="must be \\(warning, critical\\)"):
        SkewPolicy(differ_share=(0.2, 0.1))
    with pytest.raises(ValidationError, match="extra"):
        SkewPolicy(tolerance=1.0)  # type: ignore[call-arg]
