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
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import DataError, SchemaError, SpecError
from lockgate.evaluation.gate import _HIGHER, EdgeCase, Gate, GoldSet, RuleVerdict, SliceSpec
from lockgate.tasks import catalog as _tasks
from lockgate.tasks import metrics as _metrics

if TYPE_CHECKING:
    import pandas as pd

    from lockgate.training.trainers import TrainedModel

__all__ = [
    "apply_edge_case",
    "build_report",
    "check_description",
    "comparison_rows",
    "encode_labels",
    "gate_check_values",
    "gold_mask",
    "model_card",
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
    salt = gold.salt.encode()
    keys = frame[gold.key].astype(str).to_numpy()
    buckets = np.fromiter(
        (
            int.from_bytes(hashlib.sha256(salt + k.encode()).digest()[:8], "big") % _BUCKETS
            for k in keys
        ),
        dtype=np.int64,
        count=len(keys),
    )
    return buckets < cut


def apply_edge_case(gold: pd.DataFrame, case: EdgeCase) -> pd.DataFrame:
    """The rows of one edge case: gold rows matching ``where``, then ``set`` and ``scale``."""
    import pandas as pd

    mask = pd.Series(True, index=gold.index)
    for cond in case.where:
        if cond.column not in gold.columns:
            raise SchemaError(
                f"edge case {case.name!r} filters on {cond.column!r}, which the gold set lacks; "
                "fix the edge case or add the column to the feature service"
            )
        col, value = gold[cond.column], cond.value
        if cond.op == "isnull":
            mask &= col.isna()
        elif cond.op == "notnull":
            mask &= col.notna()
        elif cond.op in ("in", "not in"):
            values = list(value) if isinstance(value, tuple) else [value]
            hit = col.isin(values)
            mask &= hit if cond.op == "in" else ~hit
        else:
            ops = {
                "<": col.lt,
                "<=": col.le,
                ">": col.gt,
                ">=": col.ge,
                "==": col.eq,
                "!=": col.ne,
            }
            mask &= ops[cond.op](value)  # type: ignore[arg-type]
    rows = gold[mask].copy()
    for column, new in case.set.items():
        if column not in rows.columns:
            raise SchemaError(f"edge case {case.name!r} sets unknown column {column!r}")
        if new is None:
            rows[column] = np.nan if rows[column].dtype.kind in "fiub" else None
        else:
            rows[column] = new
    for column, factor in case.scale.items():
        if column not in rows.columns:
            raise SchemaError(f"edge case {case.name!r} scales unknown column {column!r}")
        rows[column] = rows[column].astype("float64") * factor
    return rows


def _json_label(value: Any) -> Any:
    """A class label as a JSON scalar (numpy scalars unwrapped, other objects as text)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | int | float | bool) else str(value)


def encode_labels(labels: Any, classes: Sequence[Any]) -> np.ndarray:
    """Each label's class index: its position in ``classes`` (a multiclass model's order).

    Args:
        labels: The label column (any iterable of hashable labels).
        classes: The model's class labels, in the column order of its predictions.

    Returns:
        int64 class indices, one per label.

    Raises:
        DataError: Naming the labels that are not among ``classes``.

    Example:
        >>> encode_labels(["cat", "dog", "cat"], ("cat", "dog")).tolist()
        [0, 1, 0]
    """
    index = {c: i for i, c in enumerate(classes)}
    for c in classes:  # JSON-decoded classes (report["classes"]) must match numpy labels too
        index.setdefault(_json_label(c), index[c])
    values = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    codes = [index.get(v, -1) for v in values]
    unknown = sorted({repr(v) for v, c in zip(values, codes, strict=True) if c < 0})
    if unknown:
        raise DataError(
            f"the label column holds {sum(c < 0 for c in codes)} value(s) that are not among the "
            f"model's classes {list(classes)} (e.g. {', '.join(unknown[:5])}); rule: a multiclass "
            f"model scores only the classes it was trained on; fix: retrain on a snapshot that "
            f"has these classes, or drop or relabel those rows"
        )
    return np.asarray(codes, dtype=np.int64)


def _model_classes(model: Any, *, name: str) -> tuple[Any, ...]:
    classes = tuple(getattr(model, "classes", None) or ())
    if len(classes) < 2:
        raise DataError(
            f"the {name} model has classes {classes!r}; rule: a multiclass model lists its k >= 2 "
            f"class labels in the column order of predict(); fix: evaluate a model trained with "
            f"task='multiclass'"
        )
    return classes


def predict(
    model: Any,
    frame: pd.DataFrame,
    *,
    task: str = "binary",
    classes: Sequence[Any] | None = None,
    name: str = "model",
    check_finite: bool = True,
) -> np.ndarray:
    """A model's predictions on ``frame`` in the task's shape, checked.

    Args:
        model: Has ``predict(frame)`` (binary models without it: ``predict_proba``) and, for
            multiclass, ``classes``.
        frame: The rows to score.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        classes: Multiclass: the column order wanted (default: the model's own). A model whose
            classes are the same labels in another order has its columns reordered.
        name: The model's role in messages (``challenger``, ``champion``).
        check_finite: Whether non-finite predictions raise (edge cases report them instead).

    Returns:
        float64 ``(n,)`` (binary, regression) or ``(n, k)`` (multiclass).

    Raises:
        DataError: On a missing ``predict``, a wrong shape, other classes, or (with
            ``check_finite``) non-finite predictions.
    """
    fn = getattr(model, "predict", None)
    if fn is None and task == "binary":
        fn = getattr(model, "predict_proba", None)
    if fn is None:
        raise DataError(
            f"the {name} model ({type(model).__name__}) has no predict(frame); rule: evaluated "
            f"models predict by task (binary P(label 1), multiclass probabilities, regression "
            f"values); fix: load it with lockgate.lineage.steps.load_trained_model"
        )
    out = np.asarray(fn(frame), dtype=np.float64)
    n = len(frame)
    if task == "multiclass":
        own = _model_classes(model, name=name)
        wanted = tuple(classes) if classes is not None else own
        if out.ndim != 2 or out.shape != (n, len(own)):
            raise DataError(
                f"the {name} model predicted shape {out.shape} for {n} rows; rule: a multiclass "
                f"model predicts ({n}, {len(own)}) probabilities, one column per class {list(own)}"
                f"; fix: check that the model was trained with task='multiclass'"
            )
        if own != wanted:
            if sorted(map(repr, own)) != sorted(map(repr, wanted)):
                raise DataError(
                    f"the {name} model predicts classes {list(own)} but the report compares "
                    f"classes {list(wanted)}; rule: champion and challenger must share one set of "
                    f"classes; fix: promote the challenger by hand (lockgate promote) after "
                    f"reviewing it, since the class sets differ"
                )
            out = out[:, [own.index(c) for c in wanted]]
    else:
        if out.ndim == 2 and out.shape[1] == 1:
            out = out.reshape(-1)
        if out.shape != (n,):
            raise DataError(
                f"the {name} model predicted shape {out.shape} for {n} rows; rule: a {task} model "
                f"predicts one value per row, shape ({n},); fix: check the model's task"
            )
    if check_finite and not np.all(np.isfinite(out)):
        raise DataError(
            f"the {name} produced non-finite scores on the gold set; the model is broken: "
            "retrain it"
        )
    return out


def _labels(frame: pd.DataFrame, label: str, *, task: str, classes: Sequence[Any] | None) -> Any:
    """The label column as metrics want it: 0/1, class indices or float targets."""
    if label not in frame.columns:
        raise SchemaError(
            f"label column {label!r} is not in the gold set (columns: {sorted(frame.columns)}); "
            "fix the pipeline's label or the feature service"
        )
    values = frame[label]
    if task == "multiclass":
        assert classes is not None
        return encode_labels(values.to_numpy(), classes)
    if task == "regression":
        return values.to_numpy().astype(np.float64)
    return values.to_numpy().astype(np.int64)


def _metric_on(metric: str, y: np.ndarray, p: np.ndarray, *, task: str = "binary") -> float | None:
    """The metric on some rows, ``None`` where it is undefined there (no rows, one class, ...)."""
    if len(y) == 0:
        return None
    if task == "binary":
        if metric in ("roc_auc", "recall_at_fpr") and len(set(y.tolist())) < 2:
            return None
        if metric == "pr_auc" and not y.any():
            return None
    elif (metric == "roc_auc_ovr" and len(set(y.tolist())) < 2) or (
        metric == "r2" and float(np.min(y)) == float(np.max(y))
    ):
        return None
    return _tasks.metric_value(task, metric, y, p)


def _valid_predictions(scores: np.ndarray, task: str) -> tuple[bool, str]:
    """Whether predictions are valid for the task, and the rule in words."""
    finite = bool(np.all(np.isfinite(scores)))
    if task == "regression":
        return finite, "all predictions finite"
    in_unit = finite and bool(np.all((scores >= 0) & (scores <= 1)))
    if task == "binary":
        return in_unit, "all predictions finite in [0, 1]"
    sums = bool(in_unit and np.all(np.abs(scores.sum(axis=1) - 1.0) <= _metrics._ROW_SUM_TOLERANCE))
    return sums, "all predictions finite in [0, 1], each row summing to 1"


def _case_message(case: EdgeCase, actual: Any, threshold: str, *, passed: bool) -> str:
    """An edge case's outcome in words: the value rounded, the rule, the verdict."""
    if isinstance(actual, bool):
        shown = "valid predictions" if actual else "invalid predictions"
    elif actual is None:
        shown = f"{case.metric} undefined on these rows"
    elif case.expect == "not_worse_than_champion":
        shown = f"{case.metric} change vs champion {float(actual):+.4f}"
    elif case.expect == "min_mean_score_ratio":
        shown = f"mean score {float(actual):.3f} x gold mean"
    else:
        shown = f"{case.metric} {float(actual):.4f}"
    return (
        f"{case.description or case.name}: {shown} ({'meets' if passed else 'breaks'} {threshold})"
    )


def run_edge_cases(
    cases: Sequence[EdgeCase],
    gold: pd.DataFrame,
    *,
    label: str,
    challenger: TrainedModel,
    champion: TrainedModel | None,
    gold_mean_score: float,
    task: str = "binary",
    classes: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Run each edge case; one JSON-able result per case with passed/actual/threshold.

    Args:
        cases: The edge cases (their metrics resolved for the task, see ``Gate.for_task``).
        gold: The gold rows.
        label: The label column.
        challenger: The model judged.
        champion: The model compared with (``not_worse_than_champion``), or None.
        gold_mean_score: The challenger's mean prediction on all gold rows
            (``min_mean_score_ratio``; binary and regression).
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        classes: Multiclass: the class order of the predictions (default: the challenger's).
    """
    if task == "multiclass" and classes is None:
        classes = _model_classes(challenger, name="challenger")
    results = []
    for case in cases:
        rows = apply_edge_case(gold, case)
        base: dict[str, Any] = {"name": case.name, "expect": case.expect, "rows": len(rows)}
        if len(rows) < case.min_rows:
            results.append(
                base
                | {
                    "passed": False,
                    "actual": len(rows),
                    "threshold": f"rows >= {case.min_rows}",
                    "message": f"only {len(rows)} gold rows match; widen the case or the gold set",
                }
            )
            continue
        scores = predict(
            challenger, rows, task=task, classes=classes, name="challenger", check_finite=False
        )
        y = _labels(rows, label, task=task, classes=classes)
        valid, rule = _valid_predictions(scores, task)
        if case.expect == "finite" or not valid:
            actual: Any = valid
            passed, threshold = valid, rule
        elif case.expect == "min_metric":
            actual = _metric_on(case.metric, y, scores, task=task)
            threshold = f"{case.metric} >= {case.threshold}"
            passed = actual is not None and actual >= case.threshold
        elif case.expect == "min_mean_score_ratio":
            if task == "multiclass":
                raise SpecError(
                    f"edge case {case.name!r} expects min_mean_score_ratio on a multiclass model; "
                    "rule: a mean score exists for binary and regression models only; fix: use "
                    "expect='min_metric'"
                )
            actual = float(scores.mean() / gold_mean_score) if gold_mean_score > 0 else math.inf
            threshold = f"mean score >= {case.threshold} x gold mean"
            passed = actual >= case.threshold
        else:  # not_worse_than_champion
            mine = _metric_on(case.metric, y, scores, task=task)
            theirs = None
            if champion is not None:
                champion_scores = predict(
                    champion, rows, task=task, classes=classes, name="champion", check_finite=False
                )
                if _valid_predictions(champion_scores, task)[0]:
                    theirs = _metric_on(case.metric, y, champion_scores, task=task)
            threshold = f"{case.metric} no more than {case.threshold} worse than champion"
            if theirs is None or mine is None:
                actual, passed = mine, mine is not None
            else:
                gain = mine - theirs if _HIGHER[case.metric] else theirs - mine
                actual, passed = gain, gain >= -case.threshold
        results.append(
            base
            | {
                "passed": bool(passed),
                "actual": actual,
                "threshold": threshold,
                "message": _case_message(case, actual, threshold, passed=bool(passed)),
            }
        )
    return results


def _slice_column(gold: pd.DataFrame, spec: SliceSpec) -> pd.Series:
    from lockgate.evaluation.stats import bucketize

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

    from lockgate.evaluation.stats import slice_metrics

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
                "class": _json_label(label),
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
    gate: Gate,
    *,
    task: str = "binary",
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    from lockgate.evaluation.stats import (
        bootstrap_ci,
        calibration,
        residual_summary,
        top_label_calibration,
    )

    metrics = {
        m: bootstrap_ci(
            y, scores, metric=m, n_boot=gate.n_boot, alpha=gate.alpha, seed=gate.seed, task=task
        ).to_dict()
        for m in _tasks.task_metric_names(task)
    }
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
            str(_json_label(c)): int(n) for c, n in zip(classes, counts, strict=True)
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
    sign = 1.0 if _HIGHER[metric] else -1.0
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
    from lockgate.evaluation.stats import delong_test, paired_bootstrap

    task = _tasks.check_task(task)
    gate = gate.for_task(task)
    if gold.empty:
        raise DataError(
            f"the gold set of {pipeline!r} is empty; raise Gate.gold.fraction or snapshot more data"
        )
    classes = _model_classes(challenger, name="challenger") if task == "multiclass" else None
    y = _labels(gold, label, task=task, classes=classes)
    scores = {
        "challenger": predict(challenger, gold, task=task, classes=classes, name="challenger")
    }
    if champion is not None:
        scores["champion"] = predict(champion, gold, task=task, classes=classes, name="champion")
    report: dict[str, Any] = {
        "pipeline": pipeline,
        "task": task,
        "gold": _gold_block(gold_sha256, y, gate, task=task, classes=classes),
        "challenger": _model_block(
            challenger_version, y, scores["challenger"], gate, task=task, classes=classes
        ),
        "champion": None,
        "comparison": {},
        "policy": gate.model_dump(mode="json"),
    }
    if classes is not None:
        report["classes"] = [_json_label(c) for c in classes]
    if champion is not None and champion_version is not None:
        report["champion"] = _model_block(
            champion_version, y, scores["champion"], gate, task=task, classes=classes
        )
        for metric in _tasks.task_metric_names(task):
            paired = paired_bootstrap(
                y,
                scores["challenger"],
                scores["champion"],
                metric=metric,
                n_boot=gate.n_boot,
                alpha=gate.alpha,
                seed=gate.seed,
                task=task,
            )
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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _gold_line(report: Mapping[str, Any]) -> str:
    gold = report["gold"]
    line = f"- gold set: `{gold['sha256'][:16]}`, {gold['rows']} rows"
    task = report.get("task", "binary")
    if task == "binary":
        return line + f", {gold['positives']} positives"
    if task == "multiclass":
        counts = ", ".join(f"{c}: {n}" for c, n in gold["class_counts"].items())
        return line + f" ({counts})"
    return (
        line + f", target mean {_fmt(gold['target']['mean'])} (std {_fmt(gold['target']['std'])})"
    )


def _task_sections(report: Mapping[str, Any]) -> list[str]:
    """Per-class recall (multiclass) or residuals (regression) for the model card."""
    task = report.get("task", "binary")
    challenger, champion = report["challenger"], report.get("champion")
    lines: list[str] = []
    if task == "multiclass":
        lines += [
            "",
            "## Per class",
            "",
            "| class | rows | recall | precision | f1 | champion recall |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        theirs = champion["per_class"] if champion else [None] * len(challenger["per_class"])
        for mine, other in zip(challenger["per_class"], theirs, strict=True):
            lines.append(
                f"| {mine['class']} | {mine['rows']} | {_fmt(mine['recall'])} | "
                f"{_fmt(mine['precision'])} | {_fmt(mine['f1'])} | "
                f"{_fmt(other['recall']) if other else 'none'} |"
            )
    elif task == "regression":
        lines += [
            "",
            "## Residuals (actual - predicted)",
            "",
            "| model | mean | std | p05 | p50 | p95 | 90% abs |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for role, block in (("challenger", challenger), ("champion", champion)):
            if block is None:
                continue
            r = block["residuals"]
            q = r["quantiles"]
            lines.append(
                f"| {role} {block['version']} | {_fmt(r['mean'])} | {_fmt(r['std'])} | "
                f"{_fmt(q['p05'])} | {_fmt(q['p50'])} | {_fmt(q['p95'])} | {_fmt(r['abs_p90'])} |"
            )
    return lines


def model_card(
    report: Mapping[str, Any], lock: Mapping[str, Any], verdicts: Sequence[RuleVerdict]
) -> str:
    """A markdown model card: lineage, gold-set metrics vs champion, slices, edge cases, gate.

    Renders every task: the metrics table lists the report's metrics; multiclass cards add a
    per-class table, regression cards a residual table.
    """
    challenger, champion = report["challenger"], report.get("champion")
    lines = [
        f"# Model card: {report['pipeline']} {challenger['version']}",
        "",
        "## Lineage",
        f"- task: `{report.get('task', 'binary')}`",
        f"- code commit: `{lock['triad']['code_commit']}` (dirty: {lock['code']['dirty']})",
        f"- data snapshot: `{lock['triad']['data_snapshot_sha256']}`",
        f"- weights: `{lock['triad']['weights_sha256']}` ({lock['artifact']['weights_file']})",
        f"- trainer: `{lock['trainer']['kind']}` seed {lock['trainer']['seed']}",
        f"- features ({len(lock['features'])}): {', '.join(lock['features'])}",
        _gold_line(report),
        "",
        "## Metrics on the gold set (95% bootstrap intervals)",
        "",
        "| metric | challenger | champion | change |",
        "| --- | --- | --- | --- |",
    ]
    for metric, mine in challenger["metrics"].items():
        row = (
            f"| {metric} | {_fmt(mine['estimate'])} [{_fmt(mine['lower'])}, {_fmt(mine['upper'])}]"
        )
        if champion:
            theirs = champion["metrics"][metric]
            comp = report["comparison"][metric]
            row += (
                f" | {_fmt(theirs['estimate'])} | {comp['delta']:+.4f} (p={comp['p_value']:.3g}) |"
            )
        else:
            row += " | none | |"
        lines.append(row)
    lines += _task_sections(report)
    lines += ["", "## Slices", "", "| slice | rows | challenger | champion | delta |",
              "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for s in report["slices"]:
        lines.append(
            f"| {s['slice']}={s['value']} | {s['rows']} | {_fmt(s['challenger'])} | "
            f"{_fmt(s['champion'])} | {_fmt(s['delta'])} |"
        )
    lines += ["", "## Edge cases", ""]
    for case in report["edge_cases"]:
        lines.append(
            f"- {'PASS' if case['passed'] else 'FAIL'} `{case['name']}`: {case['message']}"
        )
    lines += ["", "## Gate", ""]
    for verdict in verdicts:
        lines.append(
            f"- {'PASS' if verdict.passed else 'FAIL'} `{verdict.rule}`: {verdict.message}"
        )
    return "\n".join(lines) + "\n"


def _improvement_interval(metric: str, comparison: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(improvement, lower, upper)`` of a paired comparison in the metric's good direction."""
    delta, lower, upper = comparison.get("delta"), comparison.get("lower"), comparison.get("upper")
    if _HIGHER[metric]:
        return delta, lower, upper
    flip = [None if v is None else -float(v) for v in (delta, upper, lower)]
    return flip[0], flip[1], flip[2]


def _put(values: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``key`` to a float (a finite number) and leaves it out otherwise."""
    if value is None or isinstance(value, bool):
        return
    number = float(value)
    if math.isfinite(number):
        values[key] = number


def gate_check_values(
    verdict: RuleVerdict, report: Mapping[str, Any], gate: Gate
) -> dict[str, float | int | str]:
    """The metadata of one gate check with one fixed schema per rule, passing or failing (pure).

    Dagster plots a check's numeric metadata across its executions, so each rule reports the
    same keys with the same types in every run: ``metric`` (text, fixed for the rule and the
    gate: never the metric that happened to fail), ``actual`` and ``threshold`` (floats, stored
    exactly), ``passed_text`` (``"passed"`` or ``"failed"``) and ``summary`` (the numbers
    rounded, for reading). Intervals are two floats (``*_lower``, ``*_upper``). A number the rule
    cannot have in this run (no champion yet, a rule the policy switches off, a metric undefined
    on the rows) is left out rather than sent as null or text.

    Per rule:

    - ``gate_sample_size``: ``actual``/``threshold`` are the gold positives (binary), the rows of
      the smallest class (multiclass) or the gold rows (regression) and their minimum;
      ``gold_rows``, ``min_gold_rows``.
    - ``gate_absolute``: the primary metric (or the first bounded one) and its bound; every
      bounded metric as ``<m>``, ``<m>_lower``, ``<m>_upper`` and ``<m>_bound``.
    - ``gate_vs_champion``: the primary metric's change in its good direction (positive: the
      challenger is better) and ``min_delta``; ``change_<m>`` and ``min_change_<m>`` per judged
      metric; ``change_<primary>_lower``/``_upper`` (the paired interval),
      ``challenger_<primary>``, ``champion_<primary>``.
    - ``gate_significance``: the lower end of the improvement's interval and 0;
      ``improvement``, ``improvement_lower``, ``improvement_upper``, ``p_value``.
    - ``gate_slices``: the largest drop of ``slice_metric`` on a slice and ``max_slice_drop``;
      ``worst_slice`` (text), ``failed_slices`` (int).
    - ``gate_edge_cases``: the number of failed cases and 0; ``edge_cases`` (int),
      ``failed_cases`` (text).

    Args:
        verdict: The rule's verdict (:func:`lockgate.evaluation.gate.evaluate_gate`).
        report: The evaluation report the verdict judged.
        gate: The pipeline's gate (resolved here for the report's task).

    Returns:
        Plain values: floats, ints and text only.

    Example:
        >>> from lockgate.evaluation.gate import evaluate_gate
        >>> gate = Gate(gold=GoldSet(key="id"), min_gold_rows=10, min_gold_positives=2)
        >>> report = {"pipeline": "p", "task": "binary",
        ...     "gold": {"rows": 100, "positives": 1},
        ...     "challenger": {"version": "v2", "metrics": {"roc_auc": {
        ...         "estimate": 0.81234, "lower": 0.7, "upper": 0.9}}},
        ...     "champion": None, "comparison": {}, "slices": [], "edge_cases": []}
        >>> size = gate_check_values(evaluate_gate(report, gate)[0], report, gate)
        >>> size["metric"], size["actual"], size["threshold"], size["passed_text"]
        ('gold_positives', 1.0, 2.0, 'failed')
    """
    task = report.get("task", "binary")
    gate = gate.for_task(task)
    rule = verdict.rule
    primary = gate.primary
    mine = report["challenger"]["metrics"]
    champion = report.get("champion")
    values: dict[str, Any] = {}
    summary: str
    if rule == "gate_sample_size":
        rows = int(report["gold"]["rows"])
        values["gold_rows"], values["min_gold_rows"] = rows, gate.min_gold_rows
        if task == "binary":
            name, actual, bound = (
                "gold_positives",
                report["gold"]["positives"],
                gate.min_gold_positives,
            )
        elif task == "multiclass":
            counts = report["gold"]["class_counts"]
            name, actual = "smallest_class_rows", min(counts.values())
            bound = gate.min_gold_rows_per_class
        else:
            name, actual, bound = "gold_rows", rows, gate.min_gold_rows
        values["metric"] = name
        _put(values, "actual", actual)
        _put(values, "threshold", bound)
        summary = f"{name} {actual} (min {bound}), gold rows {rows} (min {gate.min_gold_rows})"
    elif rule == "gate_absolute":
        bounded = sorted(gate.absolute)
        name = primary if primary in gate.absolute or not bounded else bounded[0]
        values["metric"] = name
        _put(values, "actual", (mine.get(name) or {}).get("estimate"))
        if name in gate.absolute:
            kind, limit = Gate.bound(name, gate.absolute[name])
            values["bound"] = kind
            _put(values, "threshold", limit)
        parts = []
        for metric in bounded:
            block = mine.get(metric) or {}
            kind, limit = Gate.bound(metric, gate.absolute[metric])
            _put(values, metric, block.get("estimate"))
            _put(values, f"{metric}_lower", block.get("lower"))
            _put(values, f"{metric}_upper", block.get("upper"))
            _put(values, f"{metric}_bound", limit)
            parts.append(f"{metric} {_fmt(block.get('estimate'))} ({kind} {limit:g})")
        summary = ", ".join(parts) or "no absolute bound declared"
    elif rule == "gate_vs_champion":
        values["metric"] = primary
        judged = sorted(set(gate.min_delta) | set(gate.min_relative_delta))
        if primary in gate.min_delta:
            _put(values, "threshold", gate.min_delta[primary])
        parts = []
        if champion is not None:
            theirs = champion["metrics"]
            for metric in sorted({primary, *judged}):
                comparison = report["comparison"].get(metric) or {}
                gain, low, high = _improvement_interval(metric, comparison)
                if gain is None:
                    a, b = mine[metric]["estimate"], theirs[metric]["estimate"]
                    gain = a - b if _HIGHER[metric] else b - a
                _put(values, f"change_{metric}", gain)
                if metric in gate.min_delta:
                    _put(values, f"min_change_{metric}", gate.min_delta[metric])
                if metric in gate.min_relative_delta:
                    _put(values, f"min_relative_change_{metric}", gate.min_relative_delta[metric])
                if metric == primary:
                    _put(values, "actual", gain)
                    _put(values, f"change_{metric}_lower", low)
                    _put(values, f"change_{metric}_upper", high)
                    _put(values, f"challenger_{metric}", mine[metric]["estimate"])
                    _put(values, f"champion_{metric}", theirs[metric]["estimate"])
                if metric in judged:
                    parts.append(
                        f"{metric} change {float(gain):+.4f} (min {gate.min_delta.get(metric, 0.0):g})"
                    )
            summary = f"vs champion {champion['version']}: " + (
                ", ".join(parts) or "no metric judged"
            )
        else:
            summary = f"no champion yet (bootstrap={gate.bootstrap})"
    elif rule == "gate_significance":
        values["metric"] = f"{primary}_improvement_lower"
        comparison = (report.get("comparison") or {}).get(primary)
        if gate.require_significance and champion is not None and comparison:
            gain, low, high = _improvement_interval(primary, comparison)
            _put(values, "actual", low)
            _put(values, "threshold", 0.0)
            _put(values, "improvement", gain)
            _put(values, "improvement_lower", low)
            _put(values, "improvement_upper", high)
            _put(values, "p_value", comparison.get("p_value"))
            summary = (
                f"{primary} improvement {_fmt(gain)}, {100 * (1 - gate.alpha):.0f}% interval "
                f"{_fmt(low)} to {_fmt(high)} (must exclude 0), p={_fmt(comparison.get('p_value'))}"
            )
        elif not gate.require_significance:
            summary = "significance not required by the policy"
        else:
            summary = f"no champion yet (bootstrap={gate.bootstrap})"
    elif rule == "gate_slices":
        metric = gate.slice_metric
        values["metric"] = f"{metric}_largest_slice_drop"
        worst: tuple[float, str] | None = None
        failed = 0
        if champion is not None and gate.max_slice_drop is not None:
            for item in report.get("slices") or []:
                a, b = item.get("challenger"), item.get("champion")
                if a is None or b is None:
                    continue
                drop = (b - a) if _HIGHER[metric] else (a - b)
                failed += drop > gate.max_slice_drop
                if worst is None or drop > worst[0]:
                    worst = (drop, f"{item['slice']}={item['value']}")
        if gate.max_slice_drop is not None and gate.slices:
            _put(values, "threshold", gate.max_slice_drop)
        values["failed_slices"] = failed
        values["worst_slice"] = worst[1] if worst else "none"
        if worst is not None:
            _put(values, "actual", worst[0])
            summary = (
                f"largest {metric} drop {worst[0]:+.4f} on {worst[1]} "
                f"(max {gate.max_slice_drop:g}), {failed} slices over"
            )
        elif not gate.slices or gate.max_slice_drop is None:
            summary = "no slice rule declared"
        else:
            summary = "no slice comparable with a champion"
    elif rule == "gate_edge_cases":
        cases = report.get("edge_cases") or []
        failed_names = [c["name"] for c in cases if not c["passed"]]
        values["metric"] = "edge_cases_failed"
        values["actual"] = float(len(failed_names))
        values["threshold"] = 0.0
        values["edge_cases"] = len(cases)
        values["failed_cases"] = ", ".join(failed_names) or "none"
        summary = f"{len(failed_names)} of {len(cases)} edge cases failed" + (
            f": {', '.join(failed_names)}" if failed_names else ""
        )
    else:  # a rule this function does not know: the verdict's own words
        values["metric"] = str(verdict.metric)
        summary = verdict.message
    values["passed_text"] = "passed" if verdict.passed else "failed"
    values["summary"] = summary
    return values


def check_description(verdict: RuleVerdict) -> str:
    """A gate check's description: the decision and the rule's numbers on the first line.

    Example:
        >>> v = RuleVerdict("gate_vs_champion", False, "roc_auc", -0.05, "change >= 0.0",
        ...                 "roc_auc: challenger 0.7800 vs champion 0.8300, change -0.0500")
        >>> check_description(v)
        'BLOCKED by gate_vs_champion: roc_auc: challenger 0.7800 vs champion 0.8300, change -0.0500'
    """
    head = f"BLOCKED by {verdict.rule}" if not verdict.passed else f"passed {verdict.rule}"
    return f"{head}: {verdict.message}"


def _interval_text(block: Mapping[str, Any] | None) -> str:
    if not block or block.get("estimate") is None:
        return "-"
    text = f"{float(block['estimate']):.4f}"
    if block.get("lower") is not None and block.get("upper") is not None:
        text += f" ({float(block['lower']):.4f} to {float(block['upper']):.4f})"
    return text


def _flat_params(trainer: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in trainer.items():
        if isinstance(value, Mapping):
            out.update(_flat_params(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def comparison_rows(
    report: Mapping[str, Any],
    challenger_lock: Mapping[str, Any],
    champion_lock: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Challenger and champion side by side: metrics with their intervals, features, params.

    One row per metric (``estimate (lower to upper)`` for each model, the paired change with its
    interval), per feature only one of them uses, and per trainer parameter (differing first).
    Without a champion the champion column reads ``-``.

    Example:
        >>> report = {"challenger": {"metrics": {"roc_auc": {"estimate": 0.8, "lower": 0.7,
        ...   "upper": 0.9}}}, "champion": None, "comparison": {}}
        >>> lock = {"version": "v2", "features": ["a"], "trainer": {"seed": 1}}
        >>> [(r["aspect"], r["name"], r["challenger"]) for r in comparison_rows(report, lock, None)]
        [('metric', 'roc_auc', '0.8000 (0.7000 to 0.9000)'), ('features', 'count', '1'), ('param', 'seed', '1')]
    """
    rows: list[dict[str, Any]] = []
    mine = (report.get("challenger") or {}).get("metrics", {})
    theirs = (report.get("champion") or {}).get("metrics", {})
    comparison = report.get("comparison") or {}
    for metric in sorted(set(mine) | set(theirs)):
        comp = comparison.get(metric) or {}
        change = "-"
        if comp.get("delta") is not None:
            change = f"{float(comp['delta']):+.4f}"
            if comp.get("lower") is not None and comp.get("upper") is not None:
                change += f" ({float(comp['lower']):+.4f} to {float(comp['upper']):+.4f})"
            if comp.get("p_value") is not None:
                change += f", p={float(comp['p_value']):.3g}"
        rows.append(
            {
                "aspect": "metric",
                "name": metric,
                "challenger": _interval_text(mine.get(metric)),
                "champion": _interval_text(theirs.get(metric)) if theirs else "-",
                "change": change,
            }
        )
    features = list(challenger_lock.get("features") or [])
    other = list(champion_lock.get("features") or []) if champion_lock else None
    rows.append(
        {
            "aspect": "features",
            "name": "count",
            "challenger": str(len(features)),
            "champion": "-" if other is None else str(len(other)),
            "change": "-" if other is None else f"{len(features) - len(other):+d}",
        }
    )
    if other is not None:
        for name in [f for f in other if f not in features]:
            rows.append({"aspect": "features", "name": name, "challenger": "absent",
                         "champion": "used", "change": "dropped"})  # fmt: skip
        for name in [f for f in features if f not in other]:
            rows.append({"aspect": "features", "name": name, "challenger": "used",
                         "champion": "absent", "change": "added"})  # fmt: skip
    params = _flat_params(challenger_lock.get("trainer") or {})
    before = _flat_params(champion_lock.get("trainer") or {}) if champion_lock else {}
    names = sorted(set(params) | set(before))
    differ = [n for n in names if champion_lock and params.get(n) != before.get(n)]
    for name in differ + [n for n in names if n not in differ]:
        rows.append(
            {
                "aspect": "param",
                "name": name,
                "challenger": _fmt_param(params.get(name)),
                "champion": _fmt_param(before.get(name)) if champion_lock else "-",
                "change": "differs" if name in differ else "",
            }
        )
    return rows


def _fmt_param(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
