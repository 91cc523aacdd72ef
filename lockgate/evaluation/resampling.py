"""The vectorised bootstrap replicates behind every interval and paired comparison.

Replicates are drawn in chunks (at most 200 replicates and about two million drawn rows at a
time, which bounds memory) and evaluated without a Python loop over replicates. Binary
(:func:`replicates`, :func:`replicates_many`): a replicate becomes how often it drew each row,
the mean losses are that count vector times each row's loss, and the ranking metrics (ROC AUC,
average precision, recall at a false-positive rate) follow from how often it drew each (label,
score group) cell. Multiclass and regression (:func:`task_replicates`): macro F1 and
worst-class recall from per-replicate confusion counts, the rest from gathered sums. Both
evaluate every model on the same resampled rows, so a paired comparison keeps their
correlation. :mod:`lockgate.evaluation.bootstrap` turns the replicates into intervals.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lockgate.evaluation.metric_checks import PROBABILITY_METRICS
from lockgate.tasks import metrics as _metrics

__all__ = ["replicates", "replicates_many", "task_replicates"]

_FloatArray = npt.NDArray[np.float64]
_IntArray = npt.NDArray[np.int64]
_BoolArray = npt.NDArray[np.bool_]

_LOG_LOSS_EPS = 1e-15  # the clipping bound of lockgate.tasks.metrics.log_loss
_MAX_CHUNK = 200  # replicates evaluated together
_CHUNK_ELEMENTS = 1 << 21  # drawn rows per chunk (replicates x rows), bounds the memory


@dataclass(frozen=True)
class _RankCells:
    """One model's rows as ordered (label, score group) cells, for the ranking metrics.

    The groups keep every distinct positive score and merge the negatives that fall strictly
    between two consecutive distinct positive scores: group ``2k + 1`` holds the rows scored
    exactly ``u_k`` (the k-th distinct positive score, ascending) and group ``2k`` the negatives
    scored strictly between ``u_(k-1)`` and ``u_k``. Merging those negatives changes neither
    ROC AUC, average precision nor recall at a false-positive rate (every threshold that matters
    sits on a positive score), and with rare positives it shrinks the count arrays a hundredfold.
    ``cell = label * width + group`` with ``width = 2 * M + 1``.
    """

    cell: _IntArray
    width: int

    @classmethod
    def of(cls, y: _IntArray, p: _FloatArray) -> _RankCells:
        u = np.unique(p[y == 1])
        lo = np.searchsorted(u, p, side="left")
        tied = np.zeros(p.shape[0], dtype=np.bool_)
        inside = lo < u.shape[0]
        tied[inside] = u[lo[inside]] == p[inside]
        group = 2 * lo.astype(np.int64) + tied
        width = 2 * int(u.shape[0]) + 1
        return cls(cell=y * width + group, width=width)


_Parts = list[tuple[_IntArray, npt.NDArray[np.integer[Any]]]]


def _draws(y: _IntArray, *, n_boot: int, seed: int, stratified: bool) -> Iterator[_Parts]:
    """Yields, per chunk of replicates, ``[(source_rows, draws), ...]``.

    ``draws[r, i]`` indexes ``source_rows``: replicate ``r`` takes row ``source_rows[draws[r, i]]``.
    Stratified resampling has one part per class present, the row bootstrap a single part.
    """
    strata = None
    if stratified:
        strata = [rows for rows in (np.flatnonzero(y == 1), np.flatnonzero(y == 0)) if rows.size]
    return _draws_from(strata, n=int(y.shape[0]), n_boot=n_boot, seed=seed)


def _draws_from(
    strata: list[_IntArray] | None, *, n: int, n_boot: int, seed: int
) -> Iterator[_Parts]:
    """The replicates of :func:`_draws` over ``strata`` (row sets; None: all ``n`` rows)."""
    rng = np.random.default_rng(seed)
    sources = strata if strata is not None else [np.arange(n, dtype=np.int64)]
    chunk = max(1, min(_MAX_CHUNK, _CHUNK_ELEMENTS // n))
    dtype = np.int32 if n < 2**31 else np.int64
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        yield [
            (rows, rng.integers(0, rows.size, size=(size, rows.size), dtype=dtype))
            for rows in sources
        ]


def _cell_counts(model: _RankCells, parts: _Parts) -> _IntArray:
    """How often each replicate drew each cell: shape ``(replicates, 2, width)``."""
    width = 2 * model.width
    size = parts[0][1].shape[0]
    offsets = (np.arange(size, dtype=np.int64) * width)[:, None]
    counts = np.zeros(size * width, dtype=np.int64)
    for rows, draws in parts:
        keys = model.cell[rows][draws]
        keys += offsets
        counts += np.bincount(keys.ravel(), minlength=size * width)
    return counts.reshape(size, 2, model.width)


def _ranking_from_counts(
    metric: str, counts: _IntArray, *, max_fpr: float
) -> tuple[_FloatArray, _BoolArray]:
    """A ranking metric of each replicate from its cell counts, and whether it is defined.

    The formulas are those of :mod:`lockgate.tasks.metrics` applied to the resampled rows: a cell
    drawn ``k`` times stands for ``k`` tied rows, and an undrawn cell adds nothing.
    """
    neg = counts[:, 0, :]
    pos = counts[:, 1, :]
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    if metric == "roc_auc":
        valid = (n_pos > 0) & (n_neg > 0)
        below = np.cumsum(neg, axis=1)
        below -= neg  # negatives scored strictly below each cell
        below *= 2
        below += neg
        twice_u = np.einsum("rg,rg->r", pos, below)  # exact Mann-Whitney U, doubled
        value = twice_u / np.maximum(2 * n_pos * n_neg, 1)
    else:
        pos_desc = pos[:, ::-1]  # highest score first
        tps = np.cumsum(pos_desc, axis=1)
        fps = np.cumsum(neg[:, ::-1], axis=1)
        if metric == "pr_auc":
            valid = n_pos > 0
            precision = tps / np.maximum(tps + fps, 1)
            value = np.einsum("rg,rg->r", pos_desc, precision) / np.maximum(n_pos, 1)
        else:
            valid = (n_pos > 0) & (n_neg > 0)
            admissible = fps / np.maximum(n_neg, 1)[:, None] <= max_fpr
            value = np.where(admissible, tps, 0).max(axis=1) / np.maximum(n_pos, 1)
    return np.asarray(value, dtype=np.float64), np.asarray(valid, dtype=np.bool_)


def _row_losses(metric: str, y: _IntArray, p: _FloatArray) -> _FloatArray:
    """Per-row loss whose mean is ``brier`` or ``log_loss`` (as in :mod:`lockgate.tasks.metrics`)."""
    if metric == "brier":
        return np.square(p - y)
    clipped = np.clip(p, _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)
    return np.asarray(-np.where(y == 1, np.log(clipped), np.log1p(-clipped)), dtype=np.float64)


def replicates(
    metric: str,
    y: _IntArray,
    scores: Sequence[_FloatArray],
    *,
    n_boot: int,
    seed: int,
    stratified: bool,
    max_fpr: float,
) -> tuple[_FloatArray, _BoolArray]:
    """The metric of every model on every replicate, ``(len(scores), n_boot)``, and validity.

    All models are evaluated on the same resampled rows. The mean losses (brier, log_loss) are
    always defined; the ranking metrics go through the cell counts, and their validity depends
    only on the class counts of a replicate, the same for every model.
    """
    return replicates_many(
        [metric], y, scores, n_boot=n_boot, seed=seed, stratified=stratified, max_fpr=max_fpr
    )[metric]


def replicates_many(
    metrics: Sequence[str],
    y: _IntArray,
    scores: Sequence[_FloatArray],
    *,
    n_boot: int,
    seed: int,
    stratified: bool,
    max_fpr: float,
) -> dict[str, tuple[_FloatArray, _BoolArray]]:
    """:func:`replicates` of each of ``metrics``, from rows drawn once.

    The replicates depend only on ``y``, ``n_boot``, ``seed`` and ``stratified``, so every
    metric's replicates are those :func:`replicates` gives it alone (the ranking metrics bit for
    bit: integer counts; the mean losses to the last bits of a float sum). The rows are drawn
    once per chunk, not once per metric, and turned into how often each row was drawn: one
    random-access pass per replicate, after which every metric of every model is sequential
    (the mean losses a matrix product, the cell counts a weighted bincount of each model's cells).
    On a gold set larger than the CPU caches the random passes are most of the time.
    """
    out = {m: np.empty((len(scores), n_boot), dtype=np.float64) for m in metrics}
    valid = {m: np.ones(n_boot, dtype=np.bool_) for m in metrics}
    n = float(y.shape[0])
    unique = list(dict.fromkeys(metrics))
    ranking = [m for m in unique if m not in PROBABILITY_METRICS]
    loss_names = [(m, k) for m in unique if m in PROBABILITY_METRICS for k in range(len(scores))]
    # one row per (loss metric, model): the drawn rows' mean loss is a matrix product
    losses = (
        np.stack([_row_losses(m, y, scores[k]) for m, k in loss_names])
        if loss_names
        else np.empty((0, y.shape[0]), dtype=np.float64)
    )
    models = [_RankCells.of(y, p) for p in scores] if ranking else []
    # each stratum's losses (transposed) and cells, gathered on the first chunk: the strata are
    # the same rows in every chunk
    strata: list[tuple[_FloatArray, list[_IntArray]]] = []
    start = 0
    for parts in _draws(y, n_boot=n_boot, seed=seed, stratified=stratified):
        if not strata:
            strata = [
                (np.ascontiguousarray(losses[:, rows].T), [m.cell[rows] for m in models])
                for rows, _ in parts
            ]
        size = parts[0][1].shape[0]
        window = slice(start, start + size)
        totals = np.zeros((size, len(loss_names)), dtype=np.float64)
        cells = [np.zeros(size * 2 * model.width, dtype=np.float64) for model in models]
        for (rows, draws), (stratum_losses, stratum_cells) in zip(parts, strata, strict=True):
            m_rows = rows.shape[0]
            offsets = (np.arange(size, dtype=np.int64) * m_rows)[:, None]
            times = np.bincount((draws + offsets).ravel(), minlength=size * m_rows)
            drawn = times.reshape(size, m_rows).astype(np.float64)  # exact: counts < 2**53
            del times
            if loss_names:
                totals += drawn @ stratum_losses
            for model, cell, counts in zip(models, stratum_cells, cells, strict=True):
                width = 2 * model.width
                keys = cell[None, :] if size == 1 else cell + (np.arange(size) * width)[:, None]
                counts += np.bincount(keys.ravel(), weights=drawn.ravel(), minlength=size * width)
        for j, (m, k) in enumerate(loss_names):
            out[m][k, window] = totals[:, j] / n
        for k, (model, counts) in enumerate(zip(models, cells, strict=True)):
            whole = counts.astype(np.int64).reshape(size, 2, model.width)
            for m in ranking:
                out[m][k, window], ok = _ranking_from_counts(m, whole, max_fpr=max_fpr)
                if k == 0:
                    valid[m][window] = ok
        start += size
    return {m: (out[m], valid[m]) for m in metrics}


def _task_draws(
    task: str, y: npt.NDArray[Any], *, n_boot: int, seed: int, stratified: bool
) -> Iterator[_Parts]:
    """Like :func:`_draws`: multiclass strata are the classes (ascending), regression has none."""
    strata = None
    if task == "multiclass" and stratified:
        strata = [np.flatnonzero(y == c) for c in np.unique(y)]
    return _draws_from(strata, n=int(y.shape[0]), n_boot=n_boot, seed=seed)


def _gathered_sum(values: _FloatArray, parts: _Parts) -> _FloatArray:
    """Per replicate, the sum of ``values`` over its drawn rows."""
    size = parts[0][1].shape[0]
    total = np.zeros(size, dtype=np.float64)
    for rows, draws in parts:
        total += values[rows][draws].sum(axis=1)
    return total


def _confusion_counts(keys: _IntArray, k: int, parts: _Parts) -> _IntArray:
    """Per replicate, the confusion counts ``(replicates, k, k)`` of the drawn rows."""
    size = parts[0][1].shape[0]
    width = k * k
    offsets = (np.arange(size, dtype=np.int64) * width)[:, None]
    counts = np.zeros(size * width, dtype=np.int64)
    for rows, draws in parts:
        drawn = keys[rows][draws] + offsets
        counts += np.bincount(drawn.ravel(), minlength=size * width)
    return counts.reshape(size, k, k)


def task_replicates(
    task: str,
    metric: str,
    y: npt.NDArray[Any],
    preds: Sequence[_FloatArray],
    *,
    n_boot: int,
    seed: int,
    stratified: bool,
) -> tuple[_FloatArray, _BoolArray]:
    """:func:`replicates` for multiclass and regression: ``(len(preds), n_boot)`` and validity.

    A replicate is valid when the metric is defined on it: for multiclass every class of the
    full data must occur in it (always so when stratified), for r2 its target must not be
    constant; the other metrics are always defined.
    """
    out = np.empty((len(preds), n_boot), dtype=np.float64)
    valid = np.ones(n_boot, dtype=np.bool_)
    n = float(y.shape[0])
    present = np.unique(y) if task == "multiclass" else np.empty(0, dtype=np.int64)
    k = int(preds[0].shape[1]) if task == "multiclass" else 0
    rows_at = np.arange(y.shape[0])
    row_values: list[_FloatArray] = []
    keys: list[_IntArray] = []
    cells: list[list[_RankCells]] = []
    if metric == "log_loss":
        row_values = [
            -np.log(np.clip(p[rows_at, y], _LOG_LOSS_EPS, 1.0 - _LOG_LOSS_EPS)) for p in preds
        ]
    elif metric == "top1_accuracy":
        row_values = [(np.argmax(p, axis=1) == y).astype(np.float64) for p in preds]
    elif metric in ("macro_f1", "min_class_recall"):
        keys = [(y * k + np.argmax(p, axis=1)).astype(np.int64) for p in preds]
    elif metric == "roc_auc_ovr":
        cells = [
            [_RankCells.of((y == c).astype(np.int64), p[:, c]) for c in present] for p in preds
        ]
    elif metric in ("rmse", "r2"):
        row_values = [np.square(p - y) for p in preds]
    else:  # mae
        row_values = [np.abs(p - y) for p in preds]
    centred = y - float(np.mean(y)) if metric == "r2" else y
    start = 0
    for parts in _task_draws(task, y, n_boot=n_boot, seed=seed, stratified=stratified):
        size = parts[0][1].shape[0]
        window = slice(start, start + size)
        start += size
        ok = np.ones(size, dtype=np.bool_)
        if task == "multiclass" and not stratified:
            drawn_classes = _confusion_counts(y.astype(np.int64) * k, k, parts).sum(axis=2)
            ok &= (drawn_classes[:, present] > 0).all(axis=1)
        if metric == "r2":
            low = np.min([centred[rows][draws].min(axis=1) for rows, draws in parts], axis=0)
            high = np.max([centred[rows][draws].max(axis=1) for rows, draws in parts], axis=0)
            ok &= high > low
            first = _gathered_sum(centred, parts)
            second = _gathered_sum(np.square(centred), parts)
            ss_tot = np.maximum(second - np.square(first) / n, 0.0)
        for m, values in enumerate(row_values):
            total = _gathered_sum(values, parts)
            if metric == "rmse":
                out[m, window] = np.sqrt(total / n)
            elif metric == "r2":
                out[m, window] = 1.0 - total / np.where(ok, ss_tot, 1.0)
            else:
                out[m, window] = total / n
        for m, model_keys in enumerate(keys):
            counts = _confusion_counts(model_keys, k, parts)
            out[m, window] = (
                _metrics.f1_from_confusion(counts)
                if metric == "macro_f1"
                else _metrics.min_recall_from_confusion(counts)
            )
        for m, per_class in enumerate(cells):
            aucs = np.empty((len(per_class), size), dtype=np.float64)
            for c, model in enumerate(per_class):
                aucs[c], defined = _ranking_from_counts(
                    "roc_auc", _cell_counts(model, parts), max_fpr=0.0
                )
                ok &= defined
            out[m, window] = aucs.mean(axis=0)
        valid[window] = ok
    return out, valid
