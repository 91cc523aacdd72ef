"""Tests of lockgate.evaluation.stats: bootstrap intervals, paired tests, DeLong, calibration and slices."""

from __future__ import annotations

import json
import math
import tracemalloc
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve

from lockgate.errors import DataError, EmptyDataError, SchemaError, SpecError
from lockgate.evaluation import delong, metric_checks, resampling, stats
from lockgate.evaluation.bootstrap import bootstrap_models
from lockgate.evaluation.stats import (
    HIGHER_IS_BETTER,
    bootstrap_ci,
    bucketize,
    calibration,
    delong_test,
    paired_bootstrap,
    slice_metrics,
)
from lockgate.tasks import catalog as tasks
from lockgate.tasks import metrics

METRICS = sorted(HIGHER_IS_BETTER)


def _problem(
    seed: int, n: int, *, rate: float, shift: float = 1.5, decimals: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of a logistic model, both classes guaranteed."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    y[0], y[1] = 1, 0
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + shift * y - 1.0)))
    if decimals is not None:
        p = np.round(p, decimals)
    return y, p


def _binormal(seed: int, n: int, *, rate: float, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Negatives ~ N(0, 1), positives ~ N(d, 1): the true AUC is Phi(d / sqrt(2))."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    y[0], y[1] = 1, 0
    return y, rng.normal(size=n) + d * y


def _calibrated(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """p ~ U(0, 1), y ~ Bernoulli(p): expected log loss 1/2, expected Brier 1/6."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return (rng.random(n) < p).astype(np.int64), p


# --------------------------------------------------------------------------------------------
# Direction table and replicate kernels
# --------------------------------------------------------------------------------------------


def test_direction_table() -> None:
    assert HIGHER_IS_BETTER == {
        "roc_auc": True,
        "pr_auc": True,
        "recall_at_fpr": True,
        "log_loss": False,
        "brier": False,
    }


@pytest.mark.parametrize("stratified", [True, False])
@pytest.mark.parametrize(
    ("seed", "n", "rate", "decimals"),
    [(0, 800, 0.05, 2), (1, 300, 0.5, 1), (2, 200, 0.9, 3), (3, 600, 0.3, None)],
)
def test_vectorised_replicates_equal_metrics_on_the_resampled_rows(
    seed: int, n: int, rate: float, decimals: int | None, stratified: bool
) -> None:
    y, p = _problem(seed, n, rate=rate, decimals=decimals)
    rows = np.concatenate(
        [
            np.concatenate([src[d] for src, d in parts], axis=1)
            for parts in resampling._draws(y, n_boot=25, seed=seed, stratified=stratified)
        ]
    )
    for metric in METRICS:
        reps, valid = resampling.replicates(
            metric, y, [p], n_boot=25, seed=seed, stratified=stratified, max_fpr=0.05
        )
        for r in np.flatnonzero(valid):
            expected = metric_checks.binary_metric(metric, y[rows[r]], p[rows[r]], max_fpr=0.05)
            if metric in ("roc_auc", "recall_at_fpr"):
                assert reps[0, r] == expected, (metric, r)  # exact integer arithmetic
            else:
                assert reps[0, r] == pytest.approx(expected, abs=1e-12, rel=0), (metric, r)


def test_stratified_replicates_keep_the_class_counts() -> None:
    y, _ = _problem(0, 1000, rate=0.01)
    for parts in resampling._draws(y, n_boot=30, seed=0, stratified=True):
        rows = np.concatenate([src[d] for src, d in parts], axis=1)
        assert (y[rows].sum(axis=1) == y.sum()).all()


def test_chunking_bounds_memory() -> None:
    # The worst case: balanced classes with distinct scores, so the count arrays are as wide as
    # the data. Evaluating all 50 replicates of 200k rows at once would allocate > 300 MB
    # (draws, cell keys, counts and the cumulative sums); chunks of ~2M drawn rows stay ~100 MB.
    y, p = _problem(5, 200_000, rate=0.5)
    tracemalloc.start()
    try:
        bootstrap_ci(y, p, metric="pr_auc", n_boot=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 160 * 2**20, peak


# --------------------------------------------------------------------------------------------
# bootstrap_ci
# --------------------------------------------------------------------------------------------


def test_roc_auc_interval_covers_the_true_auc() -> None:
    d = 1.0
    truth = NormalDist().cdf(d / math.sqrt(2.0))
    covered = 0
    for seed in range(30):
        y, s = _binormal(seed, 400, rate=0.3, d=d)
        iv = bootstrap_ci(y, s, metric="roc_auc", n_boot=300, seed=seed)
        assert iv.lower <= iv.estimate <= iv.upper
        assert iv.estimate == metrics.roc_auc(y, s)
        covered += iv.contains(truth)
    assert covered >= 25, covered  # nominal 95%: 28.5 of 30 expected


@pytest.mark.parametrize(("metric", "truth"), [("log_loss", 0.5), ("brier", 1.0 / 6.0)])
def test_loss_intervals_cover_the_expected_loss(metric: str, truth: float) -> None:
    covered = 0
    for seed in range(20):
        y, p = _calibrated(seed, 500)
        covered += bootstrap_ci(y, p, metric=metric, n_boot=300, seed=seed).contains(truth)
    assert covered >= 16, covered


@pytest.mark.parametrize("metric", METRICS)
def test_interval_fields_and_json(metric: str) -> None:
    y, p = _problem(7, 3000, rate=0.1)
    iv = bootstrap_ci(y, p, metric=metric, n_boot=200, alpha=0.1, seed=3)
    assert iv.metric == metric
    assert (iv.n, iv.positives, iv.n_boot, iv.n_used, iv.n_skipped) == (
        3000,
        int(y.sum()),
        200,
        200,
        0,
    )
    assert iv.stratified
    assert iv.seed == 3
    assert iv.confidence == pytest.approx(0.9)
    assert iv.lower < iv.estimate < iv.upper
    assert iv.se > 0
    assert json.loads(json.dumps(iv.to_dict(), allow_nan=False)) == iv.to_dict()


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    y, p = _problem(1, 2000, rate=0.2)
    a = bootstrap_ci(y, p, metric="pr_auc", n_boot=100, seed=11)
    b = bootstrap_ci(y, p, metric="pr_auc", n_boot=100, seed=11)
    c = bootstrap_ci(y, p, metric="pr_auc", n_boot=100, seed=12)
    assert a == b
    assert (a.lower, a.upper) != (c.lower, c.upper)


def test_rare_positives_are_always_usable_when_stratified() -> None:
    y = np.zeros(2000, dtype=np.int64)
    y[[5, 900, 1500]] = 1
    p = np.linspace(0.01, 0.99, 2000)
    iv = bootstrap_ci(y, p, metric="roc_auc", n_boot=200)
    assert (iv.n_used, iv.n_skipped) == (200, 0)


def test_row_bootstrap_skips_and_counts_single_class_replicates() -> None:
    y = np.zeros(20, dtype=np.int64)
    y[3] = 1  # about e^-1 of the row-bootstrap replicates miss the only positive
    p = np.linspace(0.0, 1.0, 20)
    iv = bootstrap_ci(y, p, metric="roc_auc", n_boot=400, stratified=False)
    assert 0.25 < iv.n_skipped / 400 < 0.5
    assert iv.n_used + iv.n_skipped == 400
    # The losses are defined on a single class: nothing is skipped.
    assert bootstrap_ci(y, p, metric="brier", n_boot=50, stratified=False).n_skipped == 0


def test_too_few_usable_replicates_raise_with_the_fix() -> None:
    # Two rows, one per class: half the row-bootstrap replicates hold a single class.
    messages = []
    for seed in range(20):
        try:
            bootstrap_ci(
                [0, 1], [0.2, 0.8], metric="roc_auc", n_boot=10, seed=seed, stratified=False
            )
        except DataError as exc:
            messages.append(str(exc))
    assert messages
    assert all("pass stratified=True" in m for m in messages)
    # The stratified bootstrap of the same data always works.
    assert bootstrap_ci([0, 1], [0.2, 0.8], metric="roc_auc", n_boot=10).n_skipped == 0


def test_bootstrap_input_errors() -> None:
    y, p = _problem(0, 100, rate=0.3)
    with pytest.raises(SpecError, match="metric='auc'"):
        bootstrap_ci(y, p, metric="auc")
    with pytest.raises(SpecError, match="n_boot"):
        bootstrap_ci(y, p, metric="roc_auc", n_boot=5)
    with pytest.raises(SpecError, match="alpha"):
        bootstrap_ci(y, p, metric="roc_auc", alpha=1.5)
    with pytest.raises(SpecError, match="seed"):
        bootstrap_ci(y, p, metric="roc_auc", seed=-1)
    with pytest.raises(SpecError, match="max_fpr"):
        bootstrap_ci(y, p, metric="recall_at_fpr", max_fpr=2.0)
    with pytest.raises(EmptyDataError):
        bootstrap_ci([], [], metric="roc_auc")
    with pytest.raises(DataError, match="same length"):
        bootstrap_ci(y, p[:-1], metric="roc_auc")
    with pytest.raises(DataError, match="single class"):
        bootstrap_ci(np.zeros(10), np.linspace(0, 1, 10), metric="roc_auc")
    with pytest.raises(DataError, match="without positives"):
        bootstrap_ci(np.zeros(10), np.linspace(0, 1, 10), metric="pr_auc")
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        bootstrap_ci(y, p * 3, metric="log_loss")
    # A ranking metric takes raw scores, and the losses are defined on a single class.
    assert bootstrap_ci(y, p * 3 - 1, metric="roc_auc", n_boot=20).n_used == 20
    assert bootstrap_ci(np.zeros(10), np.full(10, 0.1), metric="brier", n_boot=20).se < 1e-15


# --------------------------------------------------------------------------------------------
# paired_bootstrap
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_identical_models_have_zero_delta(metric: str) -> None:
    y, p = _problem(2, 1500, rate=0.1)
    c = paired_bootstrap(y, p, p.copy(), metric=metric, n_boot=100)
    assert (c.delta, c.lower, c.upper, c.se, c.p_value) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert not c.significant
    assert not c.challenger_better
    assert not c.challenger_worse


@pytest.mark.parametrize("metric", METRICS)
def test_a_clearly_better_challenger_wins(metric: str) -> None:
    rng = np.random.default_rng(4)
    n = 4000
    y = (rng.random(n) < 0.2).astype(np.int64)
    logit = 2.5 * (y - 0.5) * 2 - 1.4
    good = 1.0 / (1.0 + np.exp(-(logit + rng.normal(scale=1.0, size=n))))
    bad = 1.0 / (1.0 + np.exp(-(0.3 * logit + rng.normal(scale=2.0, size=n))))
    c = paired_bootstrap(y, good, bad, metric=metric, n_boot=300, max_fpr=0.05)
    assert c.higher_is_better is HIGHER_IS_BETTER[metric]
    assert c.delta == c.challenger - c.champion
    assert c.significant
    assert c.challenger_better
    assert not c.challenger_worse
    assert c.improvement > 0
    assert (c.delta > 0) is c.higher_is_better
    assert not c.lower <= 0.0 <= c.upper
    assert c.p_value == pytest.approx(2 / 301)  # no replicate on the other side of 0
    flipped = paired_bootstrap(y, bad, good, metric=metric, n_boot=300, max_fpr=0.05)
    assert flipped.challenger_worse
    assert flipped.delta == -c.delta
    assert json.loads(json.dumps(c.to_dict(), allow_nan=False))["challenger_better"] is True


def test_paired_replicates_are_those_of_each_model_alone() -> None:
    y, p = _problem(3, 1000, rate=0.2)
    _, q = _problem(4, 1000, rate=0.2)
    both, _ = resampling.replicates(
        "roc_auc", y, [p, q], n_boot=40, seed=9, stratified=True, max_fpr=0.01
    )
    alone, _ = resampling.replicates(
        "roc_auc", y, [q], n_boot=40, seed=9, stratified=True, max_fpr=0.01
    )
    np.testing.assert_array_equal(both[1], alone[0])


def _same_result(ours: dict[str, object], theirs: dict[str, object]) -> None:
    """Two result dicts equal; floats to the last bits of a float sum (the mean losses)."""
    assert ours.keys() == theirs.keys()
    for key, value in ours.items():
        if isinstance(value, float) and math.isfinite(value):
            assert value == pytest.approx(theirs[key], rel=1e-12, abs=1e-15), key
        else:
            assert value == theirs[key], key


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_bootstrap_models_equals_the_calls_one_by_one(task: str) -> None:
    # what an evaluation report needs from one set of replicates: each model's interval and the
    # paired comparison of every metric, the same as bootstrap_ci / paired_bootstrap alone
    if task == "binary":
        y, p = _problem(6, 900, rate=0.1, decimals=2)  # ties in the ranking metrics' cells
        _, q = _problem(7, 900, rate=0.1)
    elif task == "multiclass":
        y, p = _multiclass(3, 300, 3, shift=2.0)
        _, q = _multiclass(4, 300, 3, shift=0.5)
    else:
        y, p = _regression(3, 300, noise=1.0)
        q = y + np.random.default_rng(5).normal(size=300) * 2.0
    metrics = tasks.task_metric_names(task)
    kw = {"n_boot": 60, "seed": 4, "task": task}
    both = bootstrap_models(y, p, q, metrics=metrics, **kw)
    alone = bootstrap_models(y, p, metrics=metrics, **kw)
    assert alone.champion is None
    assert alone.paired is None
    assert both.champion is not None
    assert both.paired is not None
    assert list(both.challenger) == list(metrics)
    for metric in metrics:
        mine = bootstrap_ci(y, p, metric=metric, **kw).to_dict()
        _same_result(both.challenger[metric].to_dict(), mine)
        _same_result(alone.challenger[metric].to_dict(), mine)
        theirs = bootstrap_ci(y, q, metric=metric, **kw).to_dict()
        _same_result(both.champion[metric].to_dict(), theirs)
        paired = paired_bootstrap(y, p, q, metric=metric, **kw).to_dict()
        _same_result(both.paired[metric].to_dict(), paired)
    # the ranking metrics are integer counts: equal bit for bit
    for metric in set(metrics) & {"roc_auc", "pr_auc", "recall_at_fpr"}:
        assert both.challenger[metric] == bootstrap_ci(y, p, metric=metric, **kw)


def test_replicates_many_equal_each_metric_alone() -> None:
    # rows drawn once for every metric and model: the replicates of each metric called alone
    y, p = _problem(8, 3000, rate=0.05, decimals=3)
    _, q = _problem(9, 3000, rate=0.05)
    for stratified in (True, False):
        many = resampling.replicates_many(
            METRICS, y, [p, q], n_boot=70, seed=2, stratified=stratified, max_fpr=0.05
        )
        for metric in METRICS:
            reps, valid = resampling.replicates(
                metric, y, [p, q], n_boot=70, seed=2, stratified=stratified, max_fpr=0.05
            )
            np.testing.assert_array_equal(many[metric][1], valid)
            np.testing.assert_allclose(many[metric][0], reps, rtol=1e-12, atol=0)


def test_bootstrap_models_errors_name_the_metric_and_the_fix() -> None:
    y, p = _problem(0, 200, rate=0.3)
    with pytest.raises(SpecError):
        bootstrap_models(y, p, metrics=["roc_auc", "accuracy"])
    with pytest.raises(DataError, match="p_champion has 199 values"):
        bootstrap_models(y, p, p[:-1], metrics=["roc_auc"])
    with pytest.raises(DataError, match="this metric needs probabilities"):
        bootstrap_models(y, p * 3.0, metrics=["roc_auc", "brier"])
    assert bootstrap_models(y, p * 3.0, metrics=["roc_auc"]).challenger["roc_auc"].estimate > 0.5


def test_paired_bootstrap_input_errors() -> None:
    y, p = _problem(0, 100, rate=0.3)
    with pytest.raises(DataError, match="p_champion has 99 values"):
        paired_bootstrap(y, p, p[:-1], metric="brier")
    with pytest.raises(SpecError):
        paired_bootstrap(y, p, p, metric="accuracy")


# --------------------------------------------------------------------------------------------
# DeLong
# --------------------------------------------------------------------------------------------


def _delong_quadratic(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong et al. (1988) straight from the definition, O(m * n): (auc_a, auc_b, var)."""
    comps = []
    for s in (a, b):
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        comps.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    m, n = int(y.sum()), int((1 - y).sum())
    s10 = np.cov(np.vstack([comps[0][1], comps[1][1]]))
    s01 = np.cov(np.vstack([comps[0][2], comps[1][2]]))
    s = s10 / m + s01 / n
    return comps[0][0], comps[1][0], float(s[0, 0] + s[1, 1] - 2 * s[0, 1])


@pytest.mark.parametrize(
    ("seed", "n", "rate", "decimals"),
    [(0, 60, 0.3, None), (1, 400, 0.1, 2), (2, 1500, 0.5, 1), (3, 900, 0.03, None)],
)
def test_delong_matches_the_quadratic_reference(
    seed: int, n: int, rate: float, decimals: int | None
) -> None:
    y, a = _problem(seed, n, rate=rate, decimals=decimals)
    _, b = _problem(seed + 100, n, rate=rate, decimals=decimals)
    b = np.where(y == 1, b + 0.1, b)  # correlated, different models
    auc_a, auc_b, var = _delong_quadratic(y, a, b)
    t = delong_test(y, a, b)
    assert t.challenger == pytest.approx(auc_a, abs=1e-12)
    assert t.champion == pytest.approx(auc_b, abs=1e-12)
    assert t.challenger == metrics.roc_auc(y, a)
    assert t.se**2 == pytest.approx(var, abs=1e-10, rel=1e-10)
    assert t.z == pytest.approx((auc_a - auc_b) / math.sqrt(var), rel=1e-9)
    assert t.p_value == pytest.approx(math.erfc(abs(t.z) / math.sqrt(2)), rel=1e-12)
    half = NormalDist().inv_cdf(0.975) * t.se
    assert (t.lower, t.upper) == pytest.approx((t.delta - half, t.delta + half), abs=1e-15)


def test_delong_by_hand() -> None:
    # Positives score (0.9, 0.6, 0.5) under a and (0.8, 0.4, 0.5) under b; negatives (0.7, 0.5,
    # 0.1) and (0.3, 0.6, 0.2). Placement values V10 (share of negatives each positive beats,
    # ties 1/2) and V01 (share of positives beating each negative):
    #   a: V10 = (1, 2/3, 1/2), V01 = (1/3, 5/6, 1);  b: V10 = (1, 2/3, 2/3), V01 = (1, 1/3, 1)
    y = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([0.9, 0.6, 0.5, 0.7, 0.5, 0.1])
    b = np.array([0.8, 0.4, 0.5, 0.3, 0.6, 0.2])
    f = Fraction
    v10 = [[f(1), f(2, 3), f(1, 2)], [f(1), f(2, 3), f(2, 3)]]
    v01 = [[f(1, 3), f(5, 6), f(1)], [f(1), f(1, 3), f(1)]]

    def cov(u: list[Fraction], w: list[Fraction]) -> Fraction:
        mu, mw = sum(u) / len(u), sum(w) / len(w)
        return sum((x - mu) * (z - mw) for x, z in zip(u, w, strict=True)) / (len(u) - 1)

    s = [[cov(v10[i], v10[j]) / 3 + cov(v01[i], v01[j]) / 3 for j in range(2)] for i in range(2)]
    var = s[0][0] + s[1][1] - 2 * s[0][1]
    t = delong_test(y, a, b)
    assert t.challenger == pytest.approx(float(sum(v10[0]) / 3), abs=1e-15)  # 13/18
    assert t.champion == pytest.approx(float(sum(v10[1]) / 3), abs=1e-15)  # 7/9
    assert t.se**2 == pytest.approx(float(var), abs=1e-15)


def test_delong_auc_of_the_published_ct_example() -> None:
    # Hanley & McNeil (1982), Radiology 143:29-36, Table 1: CT ratings (1 = definitely normal
    # .. 5 = definitely abnormal) of 58 normal and 51 abnormal cases; published AUC 0.893.
    y = np.repeat([0, 1], [58, 51])
    ratings = np.concatenate(
        [
            np.repeat(np.arange(1, 6), [33, 6, 6, 11, 2]),
            np.repeat(np.arange(1, 6), [3, 2, 2, 11, 33]),
        ]
    )
    t = delong_test(y, ratings, ratings)
    assert round(t.challenger, 3) == 0.893
    assert t.delta == 0.0
    assert t.p_value == 1.0
    auc, _, var = _delong_quadratic(y, ratings, ratings)
    assert t.se == 0.0
    assert var == pytest.approx(0.0, abs=1e-15)
    # The single-AUC DeLong variance of the ratings equals the quadratic definition too.
    v10, v01 = delong._delong_components(y, ratings[None, :].astype(float))
    single = v10[0].var(ddof=1) / 51 + v01[0].var(ddof=1) / 58
    x, z = ratings[y == 1], ratings[y == 0]
    psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
    reference = psi.mean(axis=1).var(ddof=1) / 51 + psi.mean(axis=0).var(ddof=1) / 58
    assert single == pytest.approx(reference, abs=1e-15)
    assert auc == pytest.approx(t.challenger, abs=1e-15)


def test_delong_identical_and_rank_identical_scores() -> None:
    y, p = _problem(5, 500, rate=0.2, decimals=2)
    for other in (p.copy(), np.log(p + 1e-3) * 7 + 2):  # same order, so same AUC components
        t = delong_test(y, p, other)
        assert (t.delta, t.se, t.z, t.p_value, t.lower, t.upper) == (0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
        assert t.method == "delong"
        assert t.metric == "roc_auc"
        assert not t.significant


def test_delong_zero_variance_with_a_real_difference() -> None:
    y = np.array([0, 0, 1, 1])
    t = delong_test(y, [0.1, 0.2, 0.8, 0.9], [0.9, 0.8, 0.2, 0.1])  # AUC 1 against AUC 0
    assert (t.delta, t.se, t.p_value) == (1.0, 0.0, 0.0)
    assert t.z == math.inf
    assert t.to_dict()["z"] is None
    json.dumps(t.to_dict(), allow_nan=False)


def test_delong_agrees_with_the_paired_bootstrap() -> None:
    y, a = _problem(8, 3000, rate=0.15)
    _, b = _problem(9, 3000, rate=0.15, shift=1.0)
    t = delong_test(y, a, b)
    boot = paired_bootstrap(y, a, b, metric="roc_auc", n_boot=500)
    assert t.delta == boot.delta
    assert boot.se == pytest.approx(t.se, rel=0.15)


def test_delong_input_errors() -> None:
    with pytest.raises(DataError, match="at least 2 positives"):
        delong_test([0, 0, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(SpecError, match="alpha"):
        delong_test([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], alpha=0)
    with pytest.raises(DataError, match="p_b has 3 values"):
        delong_test([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3])


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize(
    ("seed", "n", "bins", "decimals"),
    [(0, 1000, 10, None), (1, 500, 5, 1), (2, 2000, 20, 2), (3, 37, 10, None), (4, 300, 7, 1)],
)
def test_calibration_matches_sklearn(
    seed: int, n: int, bins: int, decimals: int | None, strategy: str
) -> None:
    y, p = _problem(seed, n, rate=0.3, decimals=decimals)
    p[:3] = [0.0, 1.0, 0.5]  # the extremes and an inner uniform edge
    cal = calibration(y, p, bins=bins, strategy=strategy)  # type: ignore[arg-type]
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy=strategy)
    np.testing.assert_allclose(cal.observed_rate, prob_true, rtol=0, atol=1e-15)
    np.testing.assert_allclose(cal.mean_predicted, prob_pred, rtol=0, atol=1e-15)
    assert sum(b.count for b in cal.bins) == n
    assert len(cal.edges) == bins + 1
    gaps = [abs(t - q) for t, q in zip(prob_true, prob_pred, strict=True)]
    counts = np.array([b.count for b in cal.bins])
    assert cal.ece == pytest.approx(float(np.dot(counts / n, gaps)), abs=1e-15)
    assert cal.mce == pytest.approx(max(gaps), abs=1e-15)


def test_calibration_bin_edges_by_hand() -> None:
    # Uniform edges 0, .25, .5, .75, 1: a value on an inner edge goes to the bin below it.
    y = [0, 0, 1, 1, 1, 0]
    p = [0.0, 0.25, 0.26, 0.5, 1.0, 0.75]
    cal = calibration(y, p, bins=4, strategy="uniform")
    assert [(b.index, b.count, b.positives) for b in cal.bins] == [
        (0, 2, 0),
        (1, 2, 2),
        (2, 1, 0),
        (3, 1, 1),
    ]
    assert cal.bins[1].lower == 0.25
    assert cal.bins[1].upper == 0.5
    json.dumps(cal.to_dict(), allow_nan=False)


def test_calibration_quantile_ties_drop_empty_bins() -> None:
    y = np.array([0, 1] * 50)
    p = np.full(100, 0.3)
    cal = calibration(y, p, bins=10)
    assert len(cal.bins) == 1
    assert cal.bins[0].count == 100
    assert cal.ece == pytest.approx(0.2)
    assert cal.mce == pytest.approx(0.2)


def test_calibration_errors() -> None:
    with pytest.raises(SpecError, match="bins=0"):
        calibration([0, 1], [0.1, 0.9], bins=0)
    with pytest.raises(SpecError, match="strategy"):
        calibration([0, 1], [0.1, 0.9], strategy="kmeans")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        calibration([0, 1], [0.1, 1.9])


# --------------------------------------------------------------------------------------------
# Slices
# --------------------------------------------------------------------------------------------


def _slice_frame() -> pd.DataFrame:
    y, p = _problem(6, 1200, rate=0.2)
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(
        {
            "y": y,
            "p": p,
            "country": rng.choice(["FR", "DE", "US"], size=1200),
            "amount": rng.lognormal(3.0, 1.5, size=1200),
        }
    )
    frame.loc[frame["country"] == "US", "y"] = 0  # a single-class slice
    frame.loc[:9, "country"] = None  # missing values
    frame.loc[frame.index[10:15], "country"] = "LU"  # a tiny slice
    return frame


def test_slice_metrics_values_and_undefined_slices() -> None:
    frame = _slice_frame()
    results = slice_metrics(
        frame, y_col="y", p_col="p", slice_cols="country", metric="roc_auc", min_rows=20
    )
    by_value = {r.value: r for r in results}
    assert [r.value for r in results] == ["DE", "FR", "LU", "US", None]
    for value in ("DE", "FR"):
        rows = frame[frame["country"] == value]
        r = by_value[value]
        assert (r.rows, r.positives) == (len(rows), int(rows["y"].sum()))
        assert r.metric_value == metrics.roc_auc(rows["y"], rows["p"])
        assert r.reason is None
    assert by_value["US"].metric_value is None
    assert "single class" in str(by_value["US"].reason)
    assert by_value["LU"].metric_value is None
    assert "too few rows: 5" in str(by_value["LU"].reason)
    assert by_value[None].rows == 10
    assert by_value[None].label == "country=missing"
    assert sum(r.rows for r in results) == len(frame)
    for r in results:
        json.dumps(r.to_dict(), allow_nan=False)


def test_slice_metrics_with_buckets_and_several_columns() -> None:
    frame = _slice_frame()
    frame["amount_band"] = bucketize(frame["amount"], edges=[10, 100, 1000, 1e9])
    results = slice_metrics(
        frame,
        y_col="y",
        p_col="p",
        slice_cols=["amount_band", "country"],
        metric="brier",
        min_rows=1,
    )
    bands = [r for r in results if r.column == "amount_band"]
    assert [r.value for r in bands] == [
        "<10",
        "[10, 100)",
        "[100, 1000)",
        "[1000, 1e+09)",
        ">=1e+09",
    ]
    assert bands[-1].rows == 0
    assert bands[-1].reason == "too few rows: 0 < min_rows=1"
    # brier is defined on the single-class slice.
    us = next(r for r in results if r.value == "US")
    assert us.metric_value is not None
    assert us.positives == 0
    pr = slice_metrics(
        frame, y_col="y", p_col="p", slice_cols=["country"], metric="pr_auc", min_rows=1
    )
    assert next(r for r in pr if r.value == "US").reason.startswith("no positives")  # type: ignore[union-attr]


def test_slice_metrics_errors() -> None:
    frame = _slice_frame()
    with pytest.raises(SchemaError, match="'region'"):
        slice_metrics(
            frame, y_col="y", p_col="p", slice_cols=["region"], metric="roc_auc", min_rows=1
        )
    with pytest.raises(SpecError, match="min_rows"):
        slice_metrics(
            frame, y_col="y", p_col="p", slice_cols="country", metric="roc_auc", min_rows=0
        )
    with pytest.raises(SpecError, match="slice_cols is empty"):
        slice_metrics(frame, y_col="y", p_col="p", slice_cols=[], metric="roc_auc", min_rows=1)
    with pytest.raises(EmptyDataError):
        slice_metrics(
            frame.iloc[:0], y_col="y", p_col="p", slice_cols="country", metric="roc_auc", min_rows=1
        )
    with pytest.raises(DataError, match="DataFrame"):
        slice_metrics(
            {"y": [1]},  # type: ignore[arg-type]
            y_col="y",
            p_col="p",
            slice_cols="country",
            metric="roc_auc",
            min_rows=1,
        )


def test_bucketize_conventions() -> None:
    values = pd.Series([-5.0, 0.0, 9.99, 10.0, 250.0, np.nan, np.inf], index=list("abcdefg"))
    out = bucketize(values, edges=[0, 10, 100], labels=["neg", "small", "mid", "large"])
    assert list(out.index) == list("abcdefg")
    assert out.tolist()[:5] == ["neg", "small", "small", "mid", "large"]
    assert pd.isna(out["f"])
    assert out["g"] == "large"
    assert out.cat.ordered
    assert list(out.cat.categories) == ["neg", "small", "mid", "large"]
    default = bucketize([18, 30, 70], edges=[18, 25, 65])
    assert default.tolist() == ["[18, 25)", "[25, 65)", ">=65"]
    assert default.cat.categories[0] == "<18"
    with pytest.raises(SpecError, match="strictly increasing"):
        bucketize([1], edges=[10, 10])
    with pytest.raises(SpecError, match="len\\(edges\\) \\+ 1 = 3"):
        bucketize([1], edges=[1, 2], labels=["a", "b"])
    with pytest.raises(DataError, match="numbers"):
        bucketize(["x"], edges=[1])


# --------------------------------------------------------------------------------------------
# Tasks: multiclass and regression
# --------------------------------------------------------------------------------------------

MULTICLASS = ("log_loss", "top1_accuracy", "macro_f1", "min_class_recall", "roc_auc_ovr")
REGRESSION = ("rmse", "mae", "r2")


def _multiclass(seed: int, n: int, k: int, *, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += shift
    return y, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def _regression(seed: int, n: int, *, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n) * 5 + 20
    return y, y + rng.normal(size=n) * noise


def _task_data(task: str) -> tuple[np.ndarray, np.ndarray]:
    return _multiclass(0, 600, 4) if task == "multiclass" else _regression(0, 600)


TASK_METRICS = [("multiclass", m) for m in MULTICLASS] + [("regression", m) for m in REGRESSION]


@pytest.mark.parametrize(("task", "metric"), TASK_METRICS)
def test_task_interval_contains_the_estimate_and_is_deterministic(task: str, metric: str) -> None:
    y, p = _task_data(task)
    ci = bootstrap_ci(y, p, metric=metric, task=task, n_boot=200, seed=3)
    assert ci.lower <= ci.estimate <= ci.upper
    assert ci.lower < ci.upper
    assert ci.estimate == pytest.approx(tasks.metric_value(task, metric, y, p), abs=0)
    assert ci.positives is None
    assert ci.n_used == 200
    assert ci.stratified is (task == "multiclass")
    assert bootstrap_ci(y, p, metric=metric, task=task, n_boot=200, seed=3) == ci
    assert bootstrap_ci(y, p, metric=metric, task=task, n_boot=200, seed=4) != ci
    json.dumps(ci.to_dict())


@pytest.mark.parametrize("stratified", [True, False])
@pytest.mark.parametrize(("task", "metric"), TASK_METRICS)
def test_task_replicates_equal_metrics_on_the_resampled_rows(
    task: str, metric: str, stratified: bool
) -> None:
    y, p = _multiclass(1, 120, 3) if task == "multiclass" else _regression(1, 120)
    reps, valid = resampling.task_replicates(
        task, metric, y, [p], n_boot=30, seed=5, stratified=stratified
    )
    rows = np.concatenate(
        [
            np.concatenate([src[d] for src, d in parts], axis=1)
            for parts in resampling._task_draws(task, y, n_boot=30, seed=5, stratified=stratified)
        ]
    )
    assert valid.any()
    for r in np.flatnonzero(valid):
        expected = tasks.metric_value(task, metric, y[rows[r]], p[rows[r]])
        assert reps[0, r] == pytest.approx(expected, abs=1e-9, rel=0), (metric, r)


def test_multiclass_replicates_keep_the_class_counts() -> None:
    y, _ = _multiclass(0, 500, 5)
    for parts in resampling._task_draws("multiclass", y, n_boot=20, seed=0, stratified=True):
        rows = np.concatenate([src[d] for src, d in parts], axis=1)
        for row in rows:
            assert (np.bincount(y[row], minlength=5) == np.bincount(y, minlength=5)).all()


@pytest.mark.parametrize(("task", "metric"), TASK_METRICS)
def test_task_paired_bootstrap_prefers_the_better_model(task: str, metric: str) -> None:
    if task == "multiclass":
        y, good = _multiclass(2, 800, 3, shift=2.0)
        _, bad = _multiclass(2, 800, 3, shift=0.3)
    else:
        y, good = _regression(2, 800, noise=1.0)
        bad = y + np.random.default_rng(9).normal(size=800) * 3.0
    comparison = paired_bootstrap(y, good, bad, metric=metric, task=task, n_boot=200)
    assert comparison.challenger_better, comparison
    assert comparison.lower <= comparison.delta <= comparison.upper
    same = paired_bootstrap(y, good, good, metric=metric, task=task, n_boot=50)
    assert (same.delta, same.lower, same.upper, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert paired_bootstrap(y, good, bad, metric=metric, task=task, n_boot=200) == comparison


def test_task_bootstrap_errors() -> None:
    y, p = _multiclass(0, 100, 3)
    with pytest.raises(SpecError, match="metric='roc_auc' is unknown for task 'multiclass'"):
        bootstrap_ci(y, p, metric="roc_auc", task="multiclass", n_boot=20)
    with pytest.raises(SpecError, match="task='ranking'"):
        bootstrap_ci(y, p, metric="rmse", task="ranking", n_boot=20)
    with pytest.raises(DataError, match="p_champion has 2 classes but p_challenger has 3"):
        paired_bootstrap(
            y,
            p,
            p[:, :2] / p[:, :2].sum(1, keepdims=True),
            metric="log_loss",
            task="multiclass",
            n_boot=20,
        )
    with pytest.raises(DataError, match="constant target"):
        bootstrap_ci(np.ones(30), np.arange(30.0), metric="r2", task="regression", n_boot=20)
    with pytest.raises(DataError, match="single class"):
        bootstrap_ci(np.zeros(100, int), p, metric="roc_auc_ovr", task="multiclass", n_boot=20)


def test_delong_is_binary_only() -> None:
    y, p = _multiclass(0, 100, 3)
    with pytest.raises(SpecError, match=r"binary ROC AUCs only.*paired_bootstrap"):
        delong_test(y, p, p, task="multiclass")
    with pytest.raises(SpecError, match="binary ROC AUCs only"):
        delong_test(y, p, p)


def test_top_label_calibration_and_residual_summary() -> None:
    y, p = _multiclass(0, 400, 3)
    cal = stats.top_label_calibration(y, p, bins=5)
    expected = calibration((p.argmax(1) == y).astype(int), p.max(1), bins=5)
    assert cal == expected
    y_r, pred = _regression(0, 1000)
    summary = stats.residual_summary(y_r, pred, bins=4)
    residual = y_r - pred
    assert summary.mean == pytest.approx(residual.mean())
    assert summary.quantiles["p50"] == pytest.approx(np.median(residual))
    assert summary.abs_p90 == pytest.approx(np.percentile(np.abs(residual), 90))
    assert sum(b["count"] for b in summary.bins) == 1000
    json.dumps(summary.to_dict())


def test_slice_metrics_for_multiclass_and_regression() -> None:
    y, p = _multiclass(0, 300, 3)
    frame = pd.DataFrame({"y": y, "region": np.where(np.arange(300) < 200, "n", "s")})
    for c in range(3):
        frame[f"p{c}"] = p[:, c]
    got = slice_metrics(
        frame,
        y_col="y",
        p_col=["p0", "p1", "p2"],
        slice_cols="region",
        metric="macro_f1",
        min_rows=150,
        task="multiclass",
    )
    assert [(s.value, s.rows, s.positives) for s in got] == [("n", 200, None), ("s", 100, None)]
    assert got[0].metric_value == pytest.approx(metrics.macro_f1(y[:200], p[:200]))
    assert got[1].metric_value is None
    assert "too few rows" in (got[1].reason or "")
    y_r, pred = _regression(0, 100)
    y_r[:50] = 3.0
    frame_r = pd.DataFrame({"y": y_r, "pred": pred, "half": np.arange(100) < 50})
    got_r = slice_metrics(
        frame_r,
        y_col="y",
        p_col="pred",
        slice_cols="half",
        metric="r2",
        min_rows=10,
        task="regression",
    )
    assert got_r[1].metric_value is None
    assert "constant target" in (got_r[1].reason or "")
    assert got_r[0].metric_value == pytest.approx(metrics.r2(y_r[50:], pred[50:]))
    with pytest.raises(SpecError, match="multiclass slices need the list"):
        slice_metrics(
            frame,
            y_col="y",
            p_col="p0",
            slice_cols="region",
            metric="macro_f1",
            min_rows=1,
            task="multiclass",
        )
