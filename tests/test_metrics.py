"""Tests of lockgate.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from lockgate.errors import DataError, EmptyDataError, SpecError
from lockgate.metrics import (
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
        "import sys, lockgate.metrics; "
        "bad = [m for m in ('torch', 'lightgbm') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
