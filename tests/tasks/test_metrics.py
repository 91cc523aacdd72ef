"""Tests of lockgate.tasks.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from lockgate.errors import DataError, EmptyDataError, SpecError
from lockgate.tasks.metrics import (
    brier,
    classification_metrics,
    log_loss,
    pr_auc,
    recall_at_fpr,
    roc_auc,
)


def _fixture(seed: int, n: int, *, ties: bool, rate: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(np.int64)
    if y.sum() == 0:
        y[0] = 1
    if y.sum() == n:
        y[0] = 0
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.5 * y)))
    if ties:
        p = np.round(p, 1)  # heavy ties, including across classes
    p = np.clip(p, 0.001, 0.999)
    return y, p


FIXTURES = [
    (seed, n, ties, rate)
    for seed, (n, ties, rate) in enumerate(
        [
            (50, False, 0.3),
            (50, True, 0.3),
            (1000, False, 0.02),
            (1000, True, 0.02),
            (5000, True, 0.5),
            (3, False, 0.5),
            (7, True, 0.5),
        ]
    )
]


@pytest.mark.parametrize(("seed", "n", "ties", "rate"), FIXTURES)
def test_metrics_equal_sklearn(seed: int, n: int, ties: bool, rate: float) -> None:
    y, p = _fixture(seed, n, ties=ties, rate=rate)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12, rel=0)
    assert pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12, rel=0)
    assert log_loss(y, p) == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), abs=1e-12, rel=0)
    assert brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12, rel=0)


def test_all_tied_scores_give_half_auc_and_base_rate_ap() -> None:
    y = np.array([0, 1, 0, 1, 0])
    p = np.full(5, 0.3)
    assert roc_auc(y, p) == 0.5
    assert pr_auc(y, p) == pytest.approx(0.4, abs=1e-15)
    assert pr_auc(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


def test_inputs_may_be_bool_float_lists_and_column_vectors() -> None:
    y = [True, False, True, False]
    p = [0.9, 0.1, 0.4, 0.6]
    assert roc_auc(y, p) == 0.75
    assert roc_auc(np.array([1.0, 0.0, 1.0, 0.0]), np.array(p).reshape(-1, 1)) == 0.75


def test_recall_at_fpr_by_hand() -> None:
    # 4 positives, 10 negatives; sorted by score (descending):
    # 0.95 P, 0.90 N, 0.85 P, 0.80 P, 0.70 N, 0.60 N, 0.50 P, 0.40..0.05 N (7 negatives)
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.95, 0.90, 0.85, 0.80, 0.70, 0.60, 0.50, 0.40, 0.30, 0.25, 0.2, 0.15, 0.1, 0.05])
    assert recall_at_fpr(y, p, max_fpr=0.0) == 0.25  # only the top positive before any negative
    assert recall_at_fpr(y, p, max_fpr=0.05) == 0.25
    assert recall_at_fpr(y, p, max_fpr=0.1) == 0.75  # 1 false positive allowed: 3 of 4
    assert recall_at_fpr(y, p, max_fpr=0.2) == 0.75
    assert recall_at_fpr(y, p, max_fpr=0.3) == 1.0  # 3 false positives: all 4 positives
    assert recall_at_fpr(y, p, max_fpr=1.0) == 1.0


def test_recall_at_fpr_cannot_split_ties() -> None:
    # The top score is shared by one positive and one negative out of two negatives.
    y = np.array([1, 0, 0, 1])
    p = np.array([0.9, 0.9, 0.1, 0.1])
    assert recall_at_fpr(y, p, max_fpr=0.49) == 0.0
    assert recall_at_fpr(y, p, max_fpr=0.5) == 0.5
    assert recall_at_fpr(y, p, max_fpr=1.0) == 1.0


def test_recall_at_fpr_matches_roc_curve() -> None:
    y, p = _fixture(11, 2000, ties=True, rate=0.1)
    fpr, tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    for max_fpr in (0.0, 0.001, 0.01, 0.05, 0.2, 0.5):
        assert recall_at_fpr(y, p, max_fpr=max_fpr) == pytest.approx(
            float(tpr[fpr <= max_fpr].max()), abs=1e-15
        )


def test_log_loss_clips_at_eps() -> None:
    y = np.array([1, 0])
    p = np.array([0.0, 1.0])
    # 1 - eps is rounded to the nearest float, so the second term is not exactly log(eps).
    expected = -(np.log(1e-15) + np.log1p(-(1.0 - 1e-15))) / 2
    assert log_loss(y, p) == pytest.approx(expected, rel=1e-12)
    assert log_loss(y, p, eps=1e-6) == pytest.approx(-np.log(1e-6), rel=1e-9)
    assert np.isfinite(log_loss(np.array([1, 0]), np.array([1.0, 0.0])))


def test_classification_metrics_keys_and_values() -> None:
    y, p = _fixture(3, 500, ties=False, rate=0.2)
    out = classification_metrics(y, p)
    assert set(out) == {
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "recall_at_fpr",
        "n",
        "positives",
        "positive_rate",
    }
    assert out["n"] == 500
    assert out["positives"] == int(y.sum())
    assert out["positive_rate"] == y.sum() / 500
    assert out["roc_auc"] == roc_auc(y, p)
    assert out["recall_at_fpr"] == recall_at_fpr(y, p, max_fpr=0.01)
    assert classification_metrics(y, p, max_fpr=0.2)["recall_at_fpr"] == recall_at_fpr(
        y, p, max_fpr=0.2
    )


@pytest.mark.parametrize(
    "fn", [roc_auc, pr_auc, log_loss, brier, recall_at_fpr, classification_metrics]
)
def test_errors(fn: object) -> None:
    f = fn  # type: ignore[assignment]
    with pytest.raises(EmptyDataError, match="empty"):
        f([], [])
    with pytest.raises(DataError, match="same length"):
        f([0, 1, 1], [0.1, 0.2])
    with pytest.raises(DataError, match="other than 0 and 1"):
        f([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="other than 0 and 1"):
        f([0, np.nan, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="non-finite"):
        f([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(DataError, match="non-finite"):
        f([0, 1, 1], [0.1, np.inf, 0.3])
    with pytest.raises(DataError, match="1-D"):
        f([[0, 1], [1, 0]], [[0.1, 0.2], [0.3, 0.4]])


@pytest.mark.parametrize("fn", [roc_auc, recall_at_fpr, classification_metrics])
def test_single_class_is_undefined(fn: object) -> None:
    f = fn  # type: ignore[assignment]
    with pytest.raises(DataError, match=r"single class: y has 3 positive\(s\) and 0 negative"):
        f([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="single class"):
        f([0, 0], [0.1, 0.2])


def test_pr_auc_needs_a_positive_only() -> None:
    with pytest.raises(DataError, match="without positives"):
        pr_auc([0, 0], [0.1, 0.2])
    assert pr_auc([1, 1], [0.1, 0.2]) == 1.0


def test_probability_range_for_loss_metrics() -> None:
    for fn in (log_loss, brier, classification_metrics):
        with pytest.raises(DataError, match=r"outside \[0, 1\]"):
            fn([0, 1], [-0.1, 0.5])
    assert roc_auc([0, 1], [-3.0, 7.0]) == 1.0  # ranking metrics accept raw scores


def test_bad_parameters() -> None:
    with pytest.raises(SpecError, match="max_fpr"):
        recall_at_fpr([0, 1], [0.1, 0.2], max_fpr=1.5)
    with pytest.raises(SpecError, match="eps"):
        log_loss([0, 1], [0.1, 0.2], eps=0.0)


def test_module_imports_no_torch_or_lightgbm() -> None:
    code = (
        "import sys, lockgate.tasks.metrics; "
        "bad = [m for m in ('torch', 'lightgbm') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --------------------------------------------------------------------------------------------
# Tasks: multiclass, regression and the catalog
# --------------------------------------------------------------------------------------------


def _multiclass(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    y[:k] = np.arange(k)  # every class occurs
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.0
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return y, p


@pytest.mark.parametrize(("seed", "n", "k"), [(0, 500, 3), (1, 60, 5), (2, 2000, 4), (3, 8, 2)])
def test_multiclass_metrics_equal_sklearn(seed: int, n: int, k: int) -> None:
    from lockgate.tasks.metrics import multiclass_metrics, per_class_recall

    y, p = _multiclass(seed, n, k)
    got = multiclass_metrics(y, p)
    predicted = p.argmax(axis=1)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=list(range(k))), abs=1e-12)
    assert got["top1_accuracy"] == pytest.approx(skm.accuracy_score(y, predicted), abs=1e-15)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"), abs=1e-12)
    recalls = skm.recall_score(y, predicted, average=None, labels=list(range(k)))
    assert per_class_recall(y, p) == pytest.approx(list(recalls), abs=1e-12)
    assert got["min_class_recall"] == pytest.approx(recalls.min(), abs=1e-12)
    sk_auc = (
        skm.roc_auc_score(y, p[:, 1])
        if k == 2
        else skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    )
    assert got["roc_auc_ovr"] == pytest.approx(sk_auc, abs=1e-12)


def test_multiclass_macro_f1_and_auc_with_a_class_absent_from_y() -> None:
    from lockgate.tasks.metrics import macro_f1, roc_auc_ovr

    y, p = _multiclass(4, 300, 4)
    keep = y != 3
    y, p = y[keep], p[keep]
    predicted = p.argmax(axis=1)
    # sklearn's default label set: classes in y or among the predictions
    assert macro_f1(y, p) == pytest.approx(skm.f1_score(y, predicted, average="macro"), abs=1e-12)
    expected = np.mean([skm.roc_auc_score(y == c, p[:, c]) for c in range(3)])
    assert roc_auc_ovr(y, p) == pytest.approx(expected, abs=1e-12)


def test_regression_metrics_equal_sklearn() -> None:
    from lockgate.tasks.metrics import interval_coverage, regression_metrics

    rng = np.random.default_rng(0)
    y = rng.normal(size=700) * 10 + 50
    pred = y + rng.normal(size=700) * 3
    got = regression_metrics(y, pred)
    assert list(got) == ["rmse", "mae", "r2"]
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), abs=1e-12)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), abs=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), abs=1e-12)
    assert interval_coverage(y, pred - 3, pred + 3) == pytest.approx(np.mean(np.abs(y - pred) <= 3))


def test_catalog_directions_and_primaries() -> None:
    from lockgate.tasks.catalog import (
        TASKS,
        default_primary,
        higher_is_better,
        metric_direction,
        task_metric_names,
    )

    assert TASKS == ("binary", "multiclass", "regression")
    assert task_metric_names("binary") == (
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "recall_at_fpr",
    )
    assert set(task_metric_names("multiclass")) == {
        "log_loss",
        "top1_accuracy",
        "macro_f1",
        "min_class_recall",
        "roc_auc_ovr",
    }
    assert task_metric_names("regression") == ("rmse", "mae", "r2")
    assert [default_primary(t) for t in TASKS] == ["roc_auc", "log_loss", "rmse"]
    assert metric_direction("regression", "rmse") == "lower"
    assert metric_direction("regression", "r2") == "higher"
    assert metric_direction("multiclass", "macro_f1") == "higher"
    directions: dict[str, bool] = {}
    for task in TASKS:
        for metric in task_metric_names(task):
            assert directions.setdefault(metric, higher_is_better(task, metric)) is (
                higher_is_better(task, metric)
            ), metric  # one name, one direction, in every task
    with pytest.raises(SpecError, match=r"metric='roc_auc' is unknown for task 'regression'"):
        metric_direction("regression", "roc_auc")
    with pytest.raises(SpecError, match=r"task='ranking' is unknown"):
        task_metric_names("ranking")


def test_task_metrics_dispatches_per_task() -> None:
    from lockgate.tasks.catalog import task_metrics

    y, p = _fixture(0, 200, ties=False, rate=0.3)
    assert task_metrics("binary", y, p) == {
        k: v for k, v in classification_metrics(y, p).items() if k in task_metrics("binary", y, p)
    }
    ym, pm = _multiclass(0, 100, 3)
    assert set(task_metrics("multiclass", ym, pm)) == {
        "log_loss",
        "top1_accuracy",
        "macro_f1",
        "min_class_recall",
        "roc_auc_ovr",
    }


def test_multiclass_and_regression_input_errors() -> None:
    from lockgate.tasks.metrics import macro_f1, multiclass_log_loss, r2, rmse, roc_auc_ovr

    y, p = _multiclass(0, 50, 3)
    with pytest.raises(DataError, match="sums to"):
        multiclass_log_loss(y, p * 0.9)
    with pytest.raises(DataError, match=r"not class indices 0\.\.2"):
        macro_f1(np.where(y == 0, 3, y), p)
    with pytest.raises(DataError, match=r"\(n, k\)"):
        macro_f1(y, p[:, 0])
    with pytest.raises(DataError, match="y has 49 values but p has 50 rows"):
        macro_f1(y[:-1], p)
    with pytest.raises(DataError, match="single class"):
        roc_auc_ovr(np.zeros(50, dtype=int), p)
    with pytest.raises(DataError, match="constant target"):
        r2([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="non-finite"):
        rmse([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(EmptyDataError):
        rmse([], [])
