"""Challenger vs champion on the gold set: the evaluation report the gate judges (pure core).

The report scores both models on the same gold rows: every metric of the task with a bootstrap
confidence interval, a paired comparison per metric (paired bootstrap; DeLong for ROC AUC when a
binary policy asks for it), calibration, per-slice metrics with the largest slice gap, and the
edge-case suite.

Models are scored with ``model.predict(frame)`` (binary: ``(n,)`` P(label 1); multiclass:
``(n, k)`` probabilities in ``model.classes`` order; regression: ``(n,)`` values); a binary model
without ``predict`` is scored with ``predict_proba``. Report keys (:func:`build_report`):

- every task: ``pipeline``, ``task``, ``gold`` (``sha256``, ``rows``, ``positives``, ``key``,
  ``fraction``), ``challenger`` and ``champion`` (``None`` without one) model blocks with
  ``version`` and ``metrics`` (metric name to :class:`~lockgate.evaluation.stats.Interval` dict),
  ``comparison`` (metric name to :class:`~lockgate.evaluation.stats.PairedComparison` dict), ``policy``
  (the gate resolved for the task), ``slices``, ``largest_slice_gap``, ``edge_cases``;
- binary: ``gold.positives``; model blocks add ``calibration`` and ``mean_score``;
- multiclass: ``classes`` (JSON-able labels, the column order of every probability matrix),
  ``gold.class_counts`` (label to rows, every class) and ``gold.positives`` ``None``; model
  blocks add ``calibration`` (top-label), ``per_class`` (one dict per class: ``class``, ``rows``,
  ``recall``, ``precision``, ``f1``, ``predicted``), ``confusion_matrix`` (rows true, columns
  predicted) and ``prediction_summary``;
- regression: ``gold.target`` (mean, std) and ``gold.positives`` ``None``; model blocks add
  ``residuals`` (:class:`~lockgate.evaluation.stats.ResidualSummary` dict) and ``prediction_summary``.

Scoring lives in :mod:`~lockgate.evaluation.predictions` and the edge-case suite in
:mod:`~lockgate.evaluation.edge_cases` (both re-exported here); the report is rendered as a model
card (:mod:`~lockgate.evaluation.model_card`), as gate-check metadata
(:mod:`~lockgate.evaluation.check_metadata`) and as a side-by-side table
(:mod:`~lockgate.evaluation.comparison_table`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import DataError, SchemaError
from lockgate.evaluation.bootstrap import bootstrap_models
from lockgate.evaluation.delong import delong_test
from lockgate.evaluation.edge_cases import apply_edge_case, run_edge_cases
from lockgate.evaluation.gate import METRIC_HIGHER_IS_BETTER, Gate, GoldSet, SliceSpec
from lockgate.evaluation.predictions import (
    encode_labels,
    json_label,
    metric_labels,
    model_classes,
    predict,
)
from lockgate.evaluation.reliability import calibration, residual_summary, top_label_calibration
from lockgate.evaluation.results import Interval
from lockgate.evaluation.slices import bucketize, slice_metrics
from lockgate.tasks import catalog as _tasks
from lockgate.tasks import metrics as _metrics

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from lockgate.training import TrainedModel

__all__ = [
    "apply_edge_case",
    "build_report",
    "encode_labels",
    "gold_mask",
    "gold_mask_arrow",
    "predict",
    "run_edge_cases",
    "slice_table",
]

_BUCKETS = 10_000


def gold_mask(frame: pd.DataFrame, gold: GoldSet) -> np.ndarray:
    """Boolean mask of the gold rows: a stable hash of ``gold.key`` below ``gold.fraction``."""
    if gold.key not in frame.columns:
        raise SchemaError(
            f"gold set key column {gold.key!r} is not in the snapshot (columns: "
            f"{sorted(frame.columns)}); set Gate.gold.key to an entity column"
        )
    cut = round(gold.fraction * _BUCKETS)
    salted = hashlib.sha256(gold.salt.encode())
    keys = frame[gold.key].astype(str).to_numpy()
    buckets = np.fromiter(
        (_bucket(salted, k.encode()) for k in keys), dtype=np.int64, count=len(keys)
    )
    return buckets < cut


def gold_mask_arrow(column: pa.Array | pa.ChunkedArray, gold: GoldSet) -> np.ndarray:
    """:func:`gold_mask` of the key column as Arrow values, without a pandas column.

    The mask is that of ``gold_mask(pd.DataFrame({gold.key: column.to_pandas()}), gold)``.
    A string key is hashed from its UTF-8 bytes as Arrow stores them (what ``str.encode``
    gives back for the value pandas would decode; a missing key hashes as ``"None"``, as
    ``astype(str)`` spells it), one chunk at a time: no Python string per row is kept, so
    a key column of millions of rows costs its Arrow buffers only. Other key types take the
    pandas path of :func:`gold_mask`.

    Raises:
        pyarrow.ArrowInvalid: a string value is not valid UTF-8 (pandas could not decode it
            either).
    """
    import pandas as pd
    import pyarrow as pa

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return gold_mask(pd.DataFrame({gold.key: column.to_pandas()}), gold)
    cut = round(gold.fraction * _BUCKETS)
    salted = hashlib.sha256(gold.salt.encode())
    missing = _bucket(salted, b"None")
    parts = [np.zeros(0, dtype=bool)]
    for chunk in chunks:
        chunk.validate(full=True)  # UTF-8, as pandas' decoding would check it
        n = len(chunk)
        offsets_type = "<i8" if pa.types.is_large_string(chunk.type) else "<i4"
        _, offsets_buffer, data_buffer = chunk.buffers()
        if offsets_buffer is None:  # an empty or all-null array may have none
            offsets = [0] * (n + 1)
        else:
            array = np.frombuffer(offsets_buffer, dtype=offsets_type)
            offsets = array[chunk.offset : chunk.offset + n + 1].tolist()
        data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
        valid = chunk.is_valid().to_numpy(zero_copy_only=False).tolist()
        buckets = np.fromiter(
            (
                _bucket(salted, data[offsets[i] : offsets[i + 1]]) if valid[i] else missing
                for i in range(n)
            ),
            dtype=np.int64,
            count=n,
        )
        parts.append(buckets < cut)
    return np.concatenate(parts)


def _bucket(salted: Any, value: Any) -> int:
    """The gold bucket of a key's UTF-8 bytes: sha256 of the salt (the state of ``salted``)
    and ``value``, its first 8 bytes big-endian, modulo the bucket count."""
    digest = salted.copy()
    digest.update(value)
    return int.from_bytes(digest.digest()[:8], "big") % _BUCKETS


def _slice_column(gold: pd.DataFrame, spec: SliceSpec) -> pd.Series:
    if spec.column not in gold.columns:
        raise SchemaError(
            f"slice column {spec.column!r} is not in the gold set; fix Gate.slices or add the "
            "column to the feature service"
        )
    if spec.edges is None:
        return gold[spec.column]
    return bucketize(gold[spec.column], edges=spec.edges, labels=spec.labels)


def slice_table(
    gold: pd.DataFrame,
    *,
    label: str,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray | None,
    gate: Gate,
    task: str = "binary",
    y: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Per slice value: rows, positives, the slice metric for both models and the delta.

    Args:
        gold: The gold rows (slice columns).
        label: The label column (binary; other tasks pass ``y``).
        challenger_scores: The challenger's predictions in the task's shape.
        champion_scores: The champion's, or None.
        gate: The policy resolved for the task (``slices``, ``slice_metric``, ``min_slice_rows``).
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        y: The labels as metrics want them (class indices, float targets); default the label
            column.

    Returns:
        One dict per slice value; ``positives`` is ``None`` unless binary, ``delta`` is
        challenger minus champion (``None`` where either is undefined).
    """
    import pandas as pd

    labels = gold[label].to_numpy() if y is None else y
    out = []
    for spec in gate.slices:
        columns: dict[str, Any] = {spec.name: _slice_column(gold, spec).to_numpy(), "__y": labels}
        p_cols: dict[str, str | list[str]] = {}
        for model, scores in (("challenger", challenger_scores), ("champion", champion_scores)):
            if scores is None:
                continue
            if task == "multiclass":
                names = [f"__{model}_{c}" for c in range(scores.shape[1])]
                columns.update({n: scores[:, c] for c, n in enumerate(names)})
                p_cols[model] = names
            else:
                columns[f"__{model}"] = scores
                p_cols[model] = f"__{model}"
        frame = pd.DataFrame(columns)

        def by_slice(
            model: str,
            frame: pd.DataFrame = frame,
            name: str = spec.name,
            p_cols: dict[str, str | list[str]] = p_cols,
        ) -> list[Any]:
            return slice_metrics(
                frame,
                y_col="__y",
                p_col=p_cols[model],
                slice_cols=name,
                metric=gate.slice_metric,
                min_rows=gate.min_slice_rows,
                task=task,
            )

        mine = by_slice("challenger")
        theirs: list[Any] = (
            by_slice("champion") if champion_scores is not None else [None] * len(mine)
        )
        for a, b in zip(mine, theirs, strict=True):
            out.append(
                {
                    "slice": spec.name,
                    "value": a.value,
                    "rows": a.rows,
                    "positives": a.positives,
                    "metric": gate.slice_metric,
                    "challenger": a.metric_value,
                    "champion": b.metric_value if b is not None else None,
                    "delta": (
                        a.metric_value - b.metric_value
                        if b is not None and a.metric_value is not None and b.defined
                        else None
                    ),
                    "reason": a.reason or (b.reason if b is not None else None),
                }
            )
    return out


def _per_class(y: np.ndarray, probs: np.ndarray, classes: Sequence[Any]) -> list[dict[str, Any]]:
    counts = _metrics.confusion_matrix(y, probs)
    true, predicted = counts.sum(axis=1), counts.sum(axis=0)
    rows = []
    for c, label in enumerate(classes):
        tp = int(counts[c, c])
        rows.append(
            {
                "class": json_label(label),
                "rows": int(true[c]),
                "predicted": int(predicted[c]),
                "recall": tp / int(true[c]) if true[c] else None,
                "precision": tp / int(predicted[c]) if predicted[c] else None,
                "f1": 2 * tp / int(true[c] + predicted[c]) if true[c] + predicted[c] else None,
            }
        )
    return rows


def _summary(values: np.ndarray) -> dict[str, float]:
    p05, p50, p95 = np.percentile(values, [5, 50, 95])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "p05": float(p05),
        "p50": float(p50),
        "p95": float(p95),
        "max": float(values.max()),
    }


def _model_block(
    version: str,
    y: np.ndarray,
    scores: np.ndarray,
    intervals: Mapping[str, Interval],
    *,
    task: str = "binary",
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    metrics = {m: interval.to_dict() for m, interval in intervals.items()}
    block: dict[str, Any] = {"version": version, "metrics": metrics}
    if task == "binary":
        block["calibration"] = calibration(y, scores, bins=10, strategy="quantile").to_dict()
        block["mean_score"] = float(scores.mean())
    elif task == "multiclass":
        assert classes is not None
        block["calibration"] = top_label_calibration(
            y, scores, bins=10, strategy="quantile"
        ).to_dict()
        block["per_class"] = _per_class(y, scores, classes)
        block["confusion_matrix"] = _metrics.confusion_matrix(y, scores).tolist()
        block["prediction_summary"] = {
            "mean_probability": [float(v) for v in scores.mean(axis=0)],
            "predicted_share": [
                float(v)
                for v in np.bincount(scores.argmax(axis=1), minlength=len(classes)) / len(y)
            ],
            "mean_confidence": float(scores.max(axis=1).mean()),
        }
    else:
        block["residuals"] = residual_summary(y, scores, bins=10).to_dict()
        block["prediction_summary"] = _summary(scores)
    return block


def _gold_block(
    gold_sha256: str, y: np.ndarray, gate: Gate, *, task: str, classes: Sequence[Any] | None
) -> dict[str, Any]:
    block: dict[str, Any] = {"sha256": gold_sha256, "rows": len(y)}
    if task == "binary":
        block["positives"] = int(y.sum())
    elif task == "multiclass":
        assert classes is not None
        counts = np.bincount(y, minlength=len(classes))
        block["positives"] = None
        block["class_counts"] = {
            str(json_label(c)): int(n) for c, n in zip(classes, counts, strict=True)
        }
    else:
        block["positives"] = None
        block["target"] = {"mean": float(y.mean()), "std": float(y.std())}
    block |= {"key": gate.gold.key, "fraction": gate.gold.fraction}
    return block


def _largest_gap(slices: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any] | None:
    """The slice where the challenger loses most against the champion, by the metric's direction."""
    gaps = [s for s in slices if s["delta"] is not None]
    if not gaps:
        return None
    sign = 1.0 if METRIC_HIGHER_IS_BETTER[metric] else -1.0
    return dict(min(gaps, key=lambda s: sign * s["delta"]))


def build_report(
    *,
    pipeline: str,
    gate: Gate,
    label: str,
    gold: pd.DataFrame,
    gold_sha256: str,
    challenger_version: str,
    challenger: TrainedModel,
    champion_version: str | None,
    champion: TrainedModel | None,
    task: str = "binary",
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score both models on the gold rows; return (JSON-able report, predictions per model).

    Args:
        pipeline: The pipeline's name.
        gate: The policy; resolved for ``task`` with ``Gate.for_task``.
        label: The label column of ``gold``.
        gold: The gold rows.
        gold_sha256: The gold set's content hash.
        challenger_version: The challenger's version.
        challenger: The model judged (``predict``; ``classes`` for multiclass).
        champion_version: The champion's version, or None.
        champion: The champion model, or None.
        task: ``"binary"`` (default), ``"multiclass"`` or ``"regression"``.

    Returns:
        ``(report, predictions)``: the report (keys in the module docstring) and
        ``{"challenger": ..., "champion": ...}`` predictions on the gold rows (multiclass
        ``(n, k)`` in ``report["classes"]`` order).

    Raises:
        SpecError: When the gate does not fit the task.
        DataError: On an empty gold set, labels outside the classes, broken predictions.
    """
    task = _tasks.check_task(task)
    gate = gate.for_task(task)
    if gold.empty:
        raise DataError(
            f"the gold set of {pipeline!r} is empty; raise Gate.gold.fraction or snapshot more data"
        )
    classes = model_classes(challenger, name="challenger") if task == "multiclass" else None
    y = metric_labels(gold, label, task=task, classes=classes)
    scores = {
        "challenger": predict(challenger, gold, task=task, classes=classes, name="challenger")
    }
    if champion is not None:
        scores["champion"] = predict(champion, gold, task=task, classes=classes, name="champion")
    compared = champion is not None and champion_version is not None
    # every metric's intervals and paired comparisons from one set of replicates
    boot = bootstrap_models(
        y,
        scores["challenger"],
        scores["champion"] if compared else None,
        metrics=_tasks.task_metric_names(task),
        n_boot=gate.n_boot,
        alpha=gate.alpha,
        seed=gate.seed,
        task=task,
    )
    report: dict[str, Any] = {
        "pipeline": pipeline,
        "task": task,
        "gold": _gold_block(gold_sha256, y, gate, task=task, classes=classes),
        "challenger": _model_block(
            challenger_version, y, scores["challenger"], boot.challenger, task=task, classes=classes
        ),
        "champion": None,
        "comparison": {},
        "policy": gate.model_dump(mode="json"),
    }
    if classes is not None:
        report["classes"] = [json_label(c) for c in classes]
    if champion_version is not None and boot.champion is not None and boot.paired is not None:
        report["champion"] = _model_block(
            champion_version, y, scores["champion"], boot.champion, task=task, classes=classes
        )
        for metric, paired in boot.paired.items():
            report["comparison"][metric] = paired.to_dict()
        if gate.comparison == "delong":
            report["comparison"]["roc_auc"] = delong_test(
                y, scores["challenger"], scores["champion"], alpha=gate.alpha
            ).to_dict()
    report["slices"] = slice_table(
        gold,
        label=label,
        challenger_scores=scores["challenger"],
        champion_scores=scores.get("champion"),
        gate=gate,
        task=task,
        y=y,
    )
    report["largest_slice_gap"] = _largest_gap(report["slices"], gate.slice_metric)
    report["edge_cases"] = run_edge_cases(
        gate.edge_cases,
        gold,
        label=label,
        challenger=challenger,
        champion=champion,
        gold_mean_score=float(scores["challenger"].mean()),
        task=task,
        classes=classes,
    )
    return report, scores
