"""DriftAccumulator: streamed drift equals frame_drift on the concatenated batches."""

from __future__ import annotations

import math
import tracemalloc
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lockgate.errors import DataError, EmptyDataError, SchemaError, SpecError
from lockgate.monitoring import drift_stream as drift
from lockgate.monitoring.drift import DriftAccumulator, FeatureDrift, feature_drift, frame_drift

EXACT = (
    "feature",
    "kind",
    "psi",
    "jsd",
    "ks",
    "ks_pvalue",
    "chi2_pvalue",
    "missing_ref",
    "missing_cur",
    "missing_drift",
    "n_ref",
    "n_cur",
    "n_bins",
    "severity",
)


def _stream(
    reference: pd.DataFrame, current: pd.DataFrame, rng: np.random.Generator, parts: int, **kw: Any
) -> DriftAccumulator:
    acc = DriftAccumulator(reference, **kw)
    cuts = np.sort(rng.choice(np.arange(1, len(current)), size=parts - 1, replace=False))
    for rows in np.split(np.arange(len(current)), cuts):
        acc.update(current.iloc[rows])
    return acc


def _assert_equal(acc: DriftAccumulator, got: list[FeatureDrift], want: list[FeatureDrift]) -> None:
    assert [g.feature for g in got] == [w.feature for w in want]
    for g, w in zip(got, want, strict=True):
        for field in EXACT:
            assert getattr(g, field) == getattr(w, field), (g.feature, field)
        if w.kind == "numeric":
            assert g.wasserstein is not None
            assert w.wasserstein is not None
            bound = acc.wasserstein_error_bound(g.feature)
            slack = 1e-12 * max(w.wasserstein, 1e-300) + 1e-15
            assert abs(w.wasserstein - g.wasserstein) <= bound + slack, g.feature


def _numeric_frames(n_ref: int, n_cur: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "cont": rng.normal(size=n_ref),
            "ties": np.round(rng.normal(size=n_ref), 1),
            "ints": rng.integers(0, 6, size=n_ref),
            "dup": np.repeat(rng.normal(size=n_ref // 4 + 1), 4)[:n_ref],
            "holes": rng.normal(size=n_ref),
        }
    )
    ref.loc[rng.random(n_ref) < 0.1, "holes"] = np.nan
    cur = pd.DataFrame(
        {
            "cont": rng.normal(0.3, 1.2, size=n_cur),
            "ties": np.round(rng.normal(0.2, size=n_cur), 1),
            "ints": rng.integers(-1, 8, size=n_cur),  # values the reference never saw
            # half the current values repeat reference values exactly
            "dup": np.where(
                rng.random(n_cur) < 0.5,
                rng.choice(ref["dup"].to_numpy(), size=n_cur),
                rng.normal(size=n_cur),
            ),
            "holes": rng.normal(-0.1, size=n_cur),
        }
    )
    cur.loc[rng.random(n_cur) < 0.25, "holes"] = np.nan
    return ref, cur


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "parts"),
    [
        (300, 700, 1),
        (300, 700, 7),  # lattice-snapped KS (n <= 10000)
        (4000, 9000, 13),
        (20_000, 30_000, 5),  # no lattice snapping
        (12_000, 3000, 40),  # one side above 10000
    ],
)
def test_numeric_stream_equals_frame_drift(n_ref: int, n_cur: int, parts: int) -> None:
    ref, cur = _numeric_frames(n_ref, n_cur, seed=n_ref + parts)
    acc = _stream(ref, cur, np.random.default_rng(parts), parts)
    assert acc.n_current == n_cur
    _assert_equal(acc, acc.result(), frame_drift(ref, cur))


@pytest.mark.parametrize("method", ["asymp", "limit"])
def test_options_pass_through(method: Any) -> None:
    ref, cur = _numeric_frames(2000, 2500, seed=3)
    th = drift.DriftThresholds(psi_warn=0.01, psi_critical=0.02)
    kw: dict[str, Any] = {"bins": 7, "eps": 1e-3, "thresholds": th, "ks_pvalue_method": method}
    acc = _stream(ref, cur, np.random.default_rng(0), 4, features=["ties", "cont"], **kw)
    want = frame_drift(ref, cur, features=["ties", "cont"], **kw)
    _assert_equal(acc, acc.result(), want)
    assert [r.n_bins for r in acc.result()] == [w.n_bins for w in want]


def test_wasserstein_exact_when_no_crossing() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"x": rng.normal(size=3000)})
    cur = pd.DataFrame({"x": rng.normal(10.0, size=4000)})  # entirely above the reference
    acc = _stream(ref, cur, rng, 6)
    want = frame_drift(ref, cur)[0].wasserstein
    got = acc.result()[0].wasserstein
    assert acc.wasserstein_error_bound("x") == 0.0
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(("shift", "n_ref"), [(-10.0, 3000), (10.0, 3000), (-10.0, 20_000)])
def test_disjoint_samples(shift: float, n_ref: int) -> None:
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"x": rng.normal(size=n_ref)})
    cur = pd.DataFrame({"x": rng.normal(shift, size=4000)})
    acc = _stream(ref, cur, rng, 5)
    got, want = acc.result(), frame_drift(ref, cur)
    assert got[0].ks == 1.0
    _assert_equal(acc, got, want)


def test_wasserstein_bound_covers_coarse_gaps() -> None:
    # Reference on a coarse lattice, current in between: F_cur crosses F_ref inside gaps.
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({"x": rng.integers(0, 4, size=200).astype(float)})
    cur = pd.DataFrame({"x": rng.uniform(-0.5, 3.5, size=300)})
    acc = _stream(ref, cur, rng, 3)
    want = frame_drift(ref, cur)[0].wasserstein
    got = acc.result()[0].wasserstein
    bound = acc.wasserstein_error_bound("x")
    assert want is not None
    assert got is not None
    assert bound > 0.0
    assert abs(got - want) <= bound + 1e-12


def test_wasserstein_error_small_for_continuous_data() -> None:
    ref, cur = _numeric_frames(50_000, 50_000, seed=9)
    acc = _stream(ref, cur, np.random.default_rng(1), 3, features=["cont"])
    want = frame_drift(ref, cur, features=["cont"])[0].wasserstein
    got = acc.result()[0].wasserstein
    assert want is not None
    assert got is not None
    assert abs(got - want) / want < 1e-4


def test_categorical_stream_equals_frame_drift() -> None:
    rng = np.random.default_rng(7)
    n_ref, n_cur = 3000, 5000
    ref = pd.DataFrame(
        {
            "city": rng.choice(["ams", "ber", "cph", "dub"], size=n_ref).astype(object),
            "flag": rng.random(n_ref) < 0.3,
            "tier": pd.Categorical(rng.choice(["a", "b"], size=n_ref)),
        }
    )
    ref.loc[rng.random(n_ref) < 0.05, "city"] = None
    cur = pd.DataFrame(
        {
            # "oslo" and "rom" never occur in the reference; "dub" vanishes
            "city": rng.choice(["ams", "ber", "cph", "oslo", "rom"], size=n_cur).astype(object),
            "flag": rng.random(n_cur) < 0.6,
            "tier": pd.Categorical(rng.choice(["a", "b"], size=n_cur, p=[0.8, 0.2])),
        }
    )
    cur.loc[rng.random(n_cur) < 0.15, "city"] = None
    acc = _stream(ref, cur, rng, 9)
    got, want = acc.result(), frame_drift(ref, cur)
    for g, w in zip(got, want, strict=True):
        assert g.kind == w.kind == "categorical"
        for field in EXACT:
            value, expected = getattr(g, field), getattr(w, field)
            if isinstance(expected, float):
                assert value == pytest.approx(expected, rel=1e-12, abs=1e-15), (g.feature, field)
            else:
                assert value == expected, (g.feature, field)
    city = acc.histogram("city")
    assert set(city["categories"]) == {"ams", "ber", "cph", "dub", "oslo", "rom"}


def test_mixed_frame_and_mapping_batches() -> None:
    ref, cur = _numeric_frames(1500, 2000, seed=11)
    ref["cat"] = np.where(ref["ints"] > 2, "hi", "lo")
    cur["cat"] = np.where(cur["ints"] > 3, "hi", "lo")
    acc = DriftAccumulator(ref)
    acc.update(cur.iloc[:700])
    acc.update({c: cur[c].to_numpy()[700:1500] for c in cur.columns})
    acc.update({c: cur[c].tolist()[1500:] for c in cur.columns})  # plain lists, None-free
    acc.update(cur.iloc[:0])  # an empty batch changes nothing
    assert acc.n_current == 2000
    _assert_equal(acc, acc.result(), frame_drift(ref, cur))


def test_nullable_and_object_numeric_columns() -> None:
    rng = np.random.default_rng(12)
    ref = pd.DataFrame({"n": pd.array(rng.integers(0, 9, size=800), dtype="Int64")})
    ref.loc[::10, "n"] = pd.NA
    values = rng.integers(0, 12, size=900).astype(object)
    values[::7] = None
    cur = pd.DataFrame({"n": pd.array(values.tolist(), dtype="Int64")})
    acc = DriftAccumulator(ref)
    acc.update({"n": values[:400]})  # object array with None as missing
    acc.update(cur.iloc[400:])
    _assert_equal(acc, acc.result(), frame_drift(ref, cur))


def test_non_string_column_names_and_pd_na() -> None:
    ref = pd.DataFrame({0: [1.0, 2.0, 3.0, 4.0], 1: [0.5, 0.5, 1.5, 2.5]})
    cur = pd.DataFrame({0: [1.5, np.nan, 2.5], 1: [0.5, 3.0, 1.0]})
    acc = DriftAccumulator(ref)
    acc.update({0: np.array([1.5, pd.NA], dtype=object), 1: [0.5, 3.0]})
    acc.update(cur.iloc[2:])
    got = acc.result()
    assert [r.feature for r in got] == ["0", "1"]
    _assert_equal(acc, got, frame_drift(ref, cur))


def test_kinds_override_inference() -> None:
    rng = np.random.default_rng(13)
    ref = pd.DataFrame({"code": rng.integers(0, 5, size=1000)})
    cur = pd.DataFrame({"code": rng.integers(0, 7, size=1200)})
    acc = _stream(ref, cur, rng, 4, kinds={"code": "categorical"})
    got = acc.result()[0]
    want = feature_drift(ref["code"], cur["code"], feature="code", kind="categorical")
    assert got.kind == "categorical"
    assert got.chi2_pvalue == pytest.approx(want.chi2_pvalue, rel=1e-12)
    assert got.psi == pytest.approx(want.psi, rel=1e-12)
    assert got.n_bins == 7


def test_counts_widen_before_int32_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift, "_INT32_MAX", 1000)
    ref, cur = _numeric_frames(700, 2500, seed=14)
    acc = _stream(ref, cur, np.random.default_rng(2), 5, features=["cont", "ties"])
    _assert_equal(acc, acc.result(), frame_drift(ref, cur, features=["cont", "ties"]))


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_result_scans_in_chunks(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    ref, cur = _numeric_frames(900, 1500, seed=17)
    monkeypatch.setattr(drift, "_SCAN_CHUNK", chunk)
    acc = _stream(ref, cur, np.random.default_rng(3), 3)
    _assert_equal(acc, acc.result(), frame_drift(ref, cur))


def test_memory_does_not_grow_with_rows_streamed() -> None:
    rng = np.random.default_rng(15)
    ref = pd.DataFrame({c: rng.normal(size=20_000) for c in "abc"})
    batch = {c: rng.normal(size=10_000) for c in "abc"}
    acc = DriftAccumulator(ref, workers=1)
    acc.update(batch)
    tracemalloc.start()
    try:
        acc.update(batch)
        after_one = tracemalloc.get_traced_memory()[0]
        for _ in range(30):
            acc.update(batch)
        after_many = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert acc.n_current == 320_000
    assert after_many - after_one < 64_000  # 300k more rows kept nothing


def test_histogram_shapes() -> None:
    ref, cur = _numeric_frames(2000, 3000, seed=16)
    ref["cat"] = np.where(ref["ints"] > 2, "hi", "lo")
    cur["cat"] = np.where(cur["ints"] > 5, "top", "lo")
    acc = DriftAccumulator(ref, bins=8)
    before = acc.histogram("cont")
    assert before["n_cur"] == 0
    assert before["current"] == [0.0] * 8
    acc.update(cur)
    hist = acc.histogram("cont")
    assert hist["kind"] == "numeric"
    assert len(hist["edges"]) == len(hist["reference"]) + 1 == len(hist["current"]) + 1 == 9
    assert np.all(np.diff(hist["edges"]) > 0)
    assert hist["edges"][0] == min(ref["cont"].min(), cur["cont"].min())
    assert hist["edges"][-1] == max(ref["cont"].max(), cur["cont"].max())
    assert math.fsum(hist["reference"]) == pytest.approx(1.0)
    assert math.fsum(hist["current"]) == pytest.approx(1.0)
    counts, _ = np.histogram(cur["cont"], bins=hist["edges"])
    np.testing.assert_allclose(hist["current"], counts / len(cur))
    ints = acc.histogram("ints")  # 6 distinct reference values: fewer bins after de-dup
    assert len(ints["reference"]) == acc.result()[2].n_bins < 8
    cat = acc.histogram("cat")
    assert cat["kind"] == "categorical"
    assert cat["categories"] == ["hi", "lo", "top"]
    assert cat["reference"][2] == 0.0
    assert cat["current"][0] == 0.0
    assert math.fsum(cat["current"]) == pytest.approx(1.0)
    assert cat["n_cur"] == 3000


def test_result_before_any_rows() -> None:
    acc = DriftAccumulator(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    with pytest.raises(EmptyDataError, match="call update"):
        acc.result()
    acc.update({"x": np.array([], dtype=float)})
    with pytest.raises(EmptyDataError, match="call update"):
        acc.result()


def test_feature_all_missing_in_current() -> None:
    acc = DriftAccumulator(pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0]}))
    acc.update({"x": [np.nan, np.nan], "y": [1.0, 3.0]})
    with pytest.raises(EmptyDataError, match=r"'x'.*all 2 values are missing"):
        acc.result()


def test_batch_feature_errors() -> None:
    acc = DriftAccumulator(pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]}))
    with pytest.raises(SchemaError, match=r"features \['c'\] are missing"):
        acc.update({"x": [1.0]})
    with pytest.raises(SchemaError, match=r"columns \['z'\] are not followed"):
        acc.update({"x": [1.0], "c": ["a"], "z": [0]})
    with pytest.raises(SchemaError, match=r"features \['x'\] are missing"):
        acc.update(pd.DataFrame({"c": ["a"], "z": [0]}))
    with pytest.raises(SchemaError, match=r"'x'.*numeric.*cast it"):
        acc.update({"x": np.array(["1.5", "2"]), "c": ["a", "b"]})
    with pytest.raises(SchemaError, match=r"'x'.*numeric but holds mixed values"):
        acc.update({"x": np.array(["a", 2.0], dtype=object), "c": ["a", "b"]})
    with pytest.raises(SchemaError, match=r"'x'.*numeric.*dtype bool"):
        acc.update(pd.DataFrame({"x": [True], "c": ["a"]}))
    with pytest.raises(SchemaError, match="'c' has 1 values"):
        acc.update({"x": [1.0, 2.0], "c": ["a"]})
    with pytest.raises(SchemaError, match="must be 1-D"):
        acc.update({"x": np.ones((2, 2)), "c": ["a", "b"]})
    with pytest.raises(SchemaError, match="must be 1-D"):
        acc.update({"x": [1.0, 2.0], "c": np.array([["a"], ["b"]])})
    assert acc.n_current == 0


def test_infinite_value_rejects_whole_batch() -> None:
    ref = pd.DataFrame({"a": [0.0, 1.0, 2.0], "b": [0.0, 1.0, 2.0]})
    acc = DriftAccumulator(ref)
    acc.update({"a": [0.5, 1.5], "b": [0.5, 1.5]})
    with pytest.raises(DataError, match=r"'b'.*infinite"):
        acc.update({"a": [0.5, 9.0], "b": [0.5, -np.inf]})
    assert acc.n_current == 2  # the rejected batch counted nothing, not even for 'a'
    want = frame_drift(ref, pd.DataFrame({"a": [0.5, 1.5], "b": [0.5, 1.5]}))
    assert [r.psi for r in acc.result()] == [w.psi for w in want]


def test_reference_and_spec_errors() -> None:
    ref = pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    with pytest.raises(SchemaError, match="'y' is missing from the reference"):
        DriftAccumulator(ref, features=["x", "y"])
    with pytest.raises(SpecError, match="kinds names"):
        DriftAccumulator(ref, features=["x"], kinds={"c": "categorical"})
    with pytest.raises(SpecError, match="kinds\\['x'\\]='ordinal'"):
        DriftAccumulator(ref, kinds={"x": "ordinal"})  # type: ignore[dict-item]
    with pytest.raises(SpecError, match="bins=1"):
        DriftAccumulator(ref, bins=1)
    with pytest.raises(SpecError, match="ks_pvalue_method='exact'"):
        DriftAccumulator(ref, ks_pvalue_method="exact")  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="repeat"):
        DriftAccumulator(ref, features=["x", "x"])
    with pytest.raises(SchemaError, match=r"'c'.*numeric.*dtype"):
        DriftAccumulator(ref, kinds={"c": "numeric"})
    with pytest.raises(DataError, match="infinite"):
        DriftAccumulator(pd.DataFrame({"x": [1.0, np.inf]}))
    with pytest.raises(EmptyDataError, match="all 2 values are missing"):
        DriftAccumulator(pd.DataFrame({"x": [np.nan, np.nan]}))
    acc = DriftAccumulator(ref)
    with pytest.raises(SchemaError, match="'nope' is not followed"):
        acc.histogram("nope")
    with pytest.raises(SchemaError, match="'c' is categorical"):
        acc.wasserstein_error_bound("c")
    assert acc.features == ["x", "c"]


def test_exported() -> None:
    assert "DriftAccumulator" in drift.__all__
    assert drift.__all__ == sorted(drift.__all__)


def test_result_of_a_subset_skips_a_feature_missing_in_every_current_row() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    acc = DriftAccumulator(ref)
    cur_a = rng.normal(size=300)
    acc.update({"a": cur_a, "b": np.full(300, np.nan)})
    assert acc.histogram("b")["n_cur"] == 0
    with pytest.raises(EmptyDataError, match="'b'"):
        acc.result()
    (only,) = acc.result(["a"])
    assert only.feature == "a"
    assert only.ks == frame_drift(ref[["a"]], pd.DataFrame({"a": cur_a}))[0].ks
    with pytest.raises(SchemaError, match="'c'"):
        acc.result(["c"])
