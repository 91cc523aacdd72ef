"""Statistics of a champion-vs-challenger evaluation: bootstrap intervals, paired tests,
calibration and per-slice metrics. Pure functions over numpy arrays (pandas only for slices).

Conventions:

- **Stratified bootstrap.** By default every replicate resamples the positives and the negatives
  separately, each with replacement and to its own original count, so every replicate keeps the
  class balance of the data. Rare-positive sets (fraud, 0.1 % positives) therefore never yield a
  replicate without positives, and the interval describes the sampling variability of the
  metric at the observed prevalence. Pass ``stratified=False`` for the classic row bootstrap;
  its replicates with a single class (where the metric is undefined) are skipped and counted.
- **Percentile intervals.** The ``1 - alpha`` interval is the ``alpha / 2`` and
  ``1 - alpha / 2`` quantiles (numpy's default linear interpolation) of the usable replicates;
  the point estimate is the metric on the full data, from :mod:`lockgate.tasks.metrics`.
- **Vectorised replicates.** Replicates are drawn and evaluated in chunks (at most 200, and at
  most about two million drawn rows, at a time), which bounds memory; there is no Python loop
  over replicates. The mean losses (``brier``, ``log_loss``) are gathered and averaged per
  replicate. For the ranking metrics a replicate is reduced to how often it drew each (label,
  score group) cell, and ROC AUC, average precision and recall at a false-positive rate follow
  from cumulative sums of those counts without sorting again; every replicate value equals
  :mod:`lockgate.tasks.metrics` on the resampled rows (exactly for ROC AUC and recall, to rounding
  for the others).
- **Tasks.** Every function takes ``task`` (``"binary"`` by default, see
  :data:`lockgate.tasks.catalog.TASKS`). Multiclass replicates are stratified by class (each class
  resampled to its own count, so no class vanishes) and regression replicates are plain row
  resamples (``stratified`` has no effect: there are no classes). Their metrics are vectorised
  the same way: mean losses and hit rates are gathered per replicate, macro F1 and the worst
  class recall follow from per-replicate confusion counts, the one-vs-rest AUC from the rank
  cells of each class, and r2 from gathered sums (a replicate with a constant target is skipped
  and counted, like a single-class replicate). DeLong's test is binary-only.
- **Determinism.** The same data, options and ``seed`` give the same result; two calls with the
  same ``seed`` on the same rows draw the same replicates, so :func:`bootstrap_ci` on either
  model and :func:`paired_bootstrap` see identical resamples.

The statistics live by role: :mod:`~lockgate.evaluation.bootstrap` (intervals and the paired
bootstrap, over the replicates of :mod:`~lockgate.evaluation.resampling`),
:mod:`~lockgate.evaluation.delong`, :mod:`~lockgate.evaluation.reliability` (calibration,
residuals), :mod:`~lockgate.evaluation.slices` and :mod:`~lockgate.evaluation.results` (the records
they return); this module is their one public face.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(2000) < 0.1).astype(int)
    >>> p = 1 / (1 + np.exp(-(rng.normal(size=2000) + 2 * y - 2)))
    >>> ci = bootstrap_ci(y, p, metric="roc_auc", n_boot=200)
    >>> ci.lower < ci.estimate < ci.upper
    True
"""

from __future__ import annotations

from lockgate.evaluation.bootstrap import bootstrap_ci, paired_bootstrap
from lockgate.evaluation.delong import delong_test
from lockgate.evaluation.metric_checks import HIGHER_IS_BETTER
from lockgate.evaluation.reliability import calibration, residual_summary, top_label_calibration
from lockgate.evaluation.results import (
    Calibration,
    CalibrationBin,
    Interval,
    PairedComparison,
    ResidualSummary,
    SliceResult,
)
from lockgate.evaluation.slices import bucketize, slice_metrics

__all__ = [
    "HIGHER_IS_BETTER",
    "Calibration",
    "CalibrationBin",
    "Interval",
    "PairedComparison",
    "ResidualSummary",
    "SliceResult",
    "bootstrap_ci",
    "bucketize",
    "calibration",
    "delong_test",
    "paired_bootstrap",
    "residual_summary",
    "slice_metrics",
    "top_label_calibration",
]
