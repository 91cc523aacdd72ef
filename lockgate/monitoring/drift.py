"""Drift engine: how far a current sample has moved from its reference, per feature.

Pure and vectorised (numpy/scipy only). For a numeric feature each sample is sorted once and
the sorted arrays are reused for everything:

* **PSI** (population stability index) on quantile bins of the reference: ``bins`` quantiles of
  the reference (numpy's ``"linear"`` method) give the inner edges, duplicates are removed and
  the outer edges are ``-inf``/``+inf``. Bins are half-open ``[e_i, e_{i+1})`` like
  ``np.histogram``. Proportions are clipped from below to ``eps`` (an empty bin counts as
  ``eps``) with **no renormalisation**; ``PSI = sum((a - e) * ln(a / e))`` with ``e`` the
  reference and ``a`` the current proportions.
* **Kolmogorov-Smirnov** two-sample statistic ``D``, bit-identical to
  ``scipy.stats.ks_2samp(ref, cur).statistic`` (default ``method="auto"``, which for samples
  of at most 10,000 values snaps ``D`` onto the lattice ``h / lcm(n1, n2)``, as done here too).
  Its two-sided p-value is always scipy's asymptotic one, bit-identical to
  ``ks_2samp(ref, cur, method="asymp").pvalue``:
  ``scipy.stats.kstwo.sf(D, round(n1 * n2 / (n1 + n2)))`` with the un-snapped ``D``.
* **Jensen-Shannon distance** (natural log, base ``e``) between the *unclipped* binned
  proportions on the same bins, equal to ``scipy.spatial.distance.jensenshannon(p, q)``.
* **Wasserstein-1** distance, the integral of ``|F_ref - F_cur|`` over the merged sorted sample,
  equal to ``scipy.stats.wasserstein_distance(ref, cur)``.

A categorical feature gets PSI and JSD over the union of categories (``eps`` for a category one
side lacks) and the p-value of ``scipy.stats.chi2_contingency`` on the 2 x k table of counts
(scipy's defaults, so Yates' correction applies when k == 2).

Both kinds report the missing-value (NaN/None) share of each sample and its absolute
difference. Missing values are left out of every distribution metric.

`DriftAccumulator` streams the current sample in batches (for a log larger than memory) and
keeps only counts and sums per reference value; its results equal `frame_drift` on all rows.

This module is the engine's public face: frames and predictions here, one feature's measures in
:mod:`~lockgate.monitoring.drift_measures`, streaming in :mod:`~lockgate.monitoring.drift_stream`.

Prediction drift is feature drift of one column, ``prediction``, whose values follow the task
(:func:`prediction_values`): binary, P(label 1) (numeric); regression, the predicted value
(numeric: quantile bins of the reference predictions); multiclass, the predicted class
(categorical: PSI, JSD and chi-square over the classes).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from lockgate.errors import DataError, SchemaError, SpecError
from lockgate.monitoring.drift_measures import (
    DEFAULT_BINS,
    DEFAULT_EPS,
    DriftThresholds,
    FeatureDrift,
    Kind,
    PValueMethod,
    check_params,
    feature_drift,
    kind_of,
    severity,
)
from lockgate.monitoring.drift_stream import DriftAccumulator

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_EPS",
    "DriftAccumulator",
    "DriftThresholds",
    "FeatureDrift",
    "feature_drift",
    "frame_drift",
    "prediction_kind",
    "prediction_values",
    "severity",
]


def prediction_kind(task: str) -> Kind:
    """How prediction drift treats a task's predictions: ``"categorical"`` for multiclass (the
    predicted class), ``"numeric"`` for binary and regression.

    Raises:
        SpecError: For an unknown task.
    """
    if task not in ("binary", "multiclass", "regression"):
        raise SpecError(
            f"task {task!r} is unknown; rule: 'binary', 'multiclass' or 'regression'; fix: pass "
            "the pipeline's ModelPipeline.task"
        )
    return "categorical" if task == "multiclass" else "numeric"


def prediction_values(task: str, outputs: Any, classes: Sequence[Any] = ()) -> np.ndarray:
    """What prediction drift compares, from a model's outputs (in-process or served).

    Args:
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        outputs: ``(n,)`` or ``(n, 1)`` values (binary P(label 1), regression values), or the
            ``(n, k)`` class probabilities of a multiclass model; NaN marks an unknown output.
        classes: The multiclass model's class labels in column order.

    Returns:
        float64 ``(n,)`` for binary and regression (NaN kept: a missing value); for multiclass
        an object array of the predicted class (argmax) as a string (``str(label)``, so integer
        and string classes compare alike), None for a row holding NaN.

    Raises:
        SpecError: For an unknown task.
        DataError: When the outputs' width does not fit the task or the classes.

    Example:
        >>> prediction_values("multiclass", [[0.2, 0.8], [0.9, 0.1]], ("a", "b")).tolist()
        ['b', 'a']
        >>> prediction_values("regression", [[3.5], [1.0]]).tolist()
        [3.5, 1.0]
    """
    kind = prediction_kind(task)
    arr = np.asarray(outputs, dtype=np.float64)
    if kind == "numeric":
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise DataError(
                f"{task} outputs have shape {arr.shape}; rule: one value per row; fix: pass the "
                "model's predict() output or the served OUTPUT__0 rows"
            )
        return arr
    k = len(classes)
    if arr.ndim != 2 or k < 2 or arr.shape[1] != k:
        raise DataError(
            f"multiclass outputs have shape {arr.shape} for classes {list(classes)}; rule: one "
            "probability per class and row, k >= 2; fix: pass the model's predict() output and "
            "its classes"
        )
    names = np.asarray([str(c) for c in classes], dtype=object)
    out = np.full(arr.shape[0], None, dtype=object)
    if arr.shape[0] == 0:
        return out
    known = ~np.isnan(arr).any(axis=1)
    out[known] = names[np.argmax(arr[known], axis=1)]
    return out


def frame_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
    eps: float = DEFAULT_EPS,
    thresholds: DriftThresholds = DriftThresholds(),
    workers: int | None = None,
    ks_pvalue_method: PValueMethod = "asymp",
) -> list[FeatureDrift]:
    """Measures the drift of every feature of two frames; the kind comes from the dtype.

    Numeric (non-bool) columns are numeric; bool, string, object and category columns are
    categorical. Features run on a thread pool (numpy releases the GIL while sorting).

    Args:
        reference: Reference frame.
        current: Current frame.
        features: Columns to compare, in order; ``None`` means every reference column.
        bins: Reference-quantile bins for numeric PSI/JSD.
        eps: Floor for a proportion in PSI.
        thresholds: Severity thresholds.
        ks_pvalue_method: See `feature_drift`.
        workers: Threads; ``None`` means ``min(len(features), os.cpu_count())``.

    Returns:
        One result per feature, in ``features`` order.

    Raises:
        SchemaError: A feature is missing from a frame, has an unsupported dtype, or is
            numeric on one side and categorical on the other.
        EmptyDataError: A frame has no rows or a feature is entirely missing.
    """
    check_params(bins, eps)
    names = list(reference.columns) if features is None else list(features)
    kinds: list[Kind] = []
    for name in names:
        for frame, side in ((reference, "reference"), (current, "current")):
            if name not in frame.columns:
                raise SchemaError(
                    f"feature {name!r} is missing from the {side} frame; drift compares the "
                    f"same columns on both sides; add it or leave it out of features."
                )
        k_ref = kind_of(reference[name], "reference")
        k_cur = kind_of(current[name], "current")
        if k_ref != k_cur:
            raise SchemaError(
                f"feature {name!r} is {k_ref} in the reference frame but {k_cur} in the "
                f"current one; both sides need the same kind; cast one column to match."
            )
        kinds.append(k_ref)

    def one(i: int) -> FeatureDrift:
        name, kind = names[i], kinds[i]
        if kind == "numeric":
            ref: Any = reference[name].to_numpy(dtype=np.float64, na_value=np.nan)
            cur: Any = current[name].to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            ref, cur = reference[name], current[name]
        return feature_drift(
            ref,
            cur,
            feature=str(name),
            kind=kind,
            bins=bins,
            eps=eps,
            thresholds=thresholds,
            ks_pvalue_method=ks_pvalue_method,
        )

    n_workers = workers if workers is not None else min(len(names), os.cpu_count() or 1)
    if n_workers <= 1 or len(names) <= 1:
        return [one(i) for i in range(len(names))]
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        return list(pool.map(one, range(len(names))))
