"""Challenger vs champion on the gold set: the evaluation report the gate judges (pure core).

The report scores both models on the same gold rows: every metric with a bootstrap confidence
interval, a paired comparison per metric (paired bootstrap; DeLong for ROC AUC when the policy
asks for it), calibration, per-slice metrics with the largest slice gap, and the edge-case suite.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lockgate.errors import DataError, SchemaError
from lockgate.gate import METRICS, EdgeCase, Gate, GoldSet, RuleVerdict, SliceSpec

if TYPE_CHECKING:
    import pandas as pd

    from lockgate.trainers import TrainedModel

__all__ = [
    "apply_edge_case",
    "build_report",
    "gold_mask",
    "model_card",
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


def _metric_on(metric: str, y: np.ndarray, p: np.ndarray) -> float | None:
    from lockgate import metrics

    if len(y) == 0 or (metric in ("roc_auc", "recall_at_fpr") and len(set(y.tolist())) < 2):
        return None
    if metric == "pr_auc" and not y.any():
        return None
    fn = {
        "roc_auc": metrics.roc_auc,
        "pr_auc": metrics.pr_auc,
        "log_loss": metrics.log_loss,
        "brier": metrics.brier,
        "recall_at_fpr": metrics.recall_at_fpr,
    }[metric]
    return float(fn(y, p))


def run_edge_cases(
    cases: Sequence[EdgeCase],
    gold: pd.DataFrame,
    *,
    label: str,
    challenger: TrainedModel,
    champion: TrainedModel | None,
    gold_mean_score: float,
) -> list[dict[str, Any]]:
    """Run each edge case; one JSON-able result per case with passed/actual/threshold."""
    from lockgate.gate import _HIGHER

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
        scores = challenger.predict_proba(rows)
        y = rows[label].to_numpy()
        finite = bool(np.all(np.isfinite(scores)) and np.all((scores >= 0) & (scores <= 1)))
        if case.expect == "finite" or not finite:
            actual: Any = finite
            passed, threshold = finite, "all predictions finite in [0, 1]"
        elif case.expect == "min_metric":
            actual = _metric_on(case.metric, y, scores)
            threshold = f"{case.metric} >= {case.threshold}"
            passed = actual is not None and actual >= case.threshold
        elif case.expect == "min_mean_score_ratio":
            actual = float(scores.mean() / gold_mean_score) if gold_mean_score > 0 else math.inf
            threshold = f"mean score >= {case.threshold} x gold mean"
            passed = actual >= case.threshold
        else:  # not_worse_than_champion
            mine = _metric_on(case.metric, y, scores)
            theirs = _metric_on(case.metric, y, champion.predict_proba(rows)) if champion else None
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
                "message": f"{case.description or case.name}: {actual} vs {threshold}",
            }
        )
    return results


def _slice_column(gold: pd.DataFrame, spec: SliceSpec) -> pd.Series:
    from lockgate.stats import bucketize

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
) -> list[dict[str, Any]]:
    """Per slice value: rows, positives, the slice metric for both models and the delta."""
    import pandas as pd

    from lockgate.stats import slice_metrics

    out = []
    for spec in gate.slices:
        frame = pd.DataFrame(
            {
                spec.name: _slice_column(gold, spec).to_numpy(),
                "y": gold[label].to_numpy(),
                "challenger": challenger_scores,
            }
        )
        if champion_scores is not None:
            frame["champion"] = champion_scores

        def by_slice(model: str, frame: pd.DataFrame = frame, name: str = spec.name) -> list[Any]:
            return slice_metrics(
                frame,
                y_col="y",
                p_col=model,
                slice_cols=name,
                metric=gate.slice_metric,
                min_rows=gate.min_slice_rows,
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


def _model_block(version: str, y: np.ndarray, scores: np.ndarray, gate: Gate) -> dict[str, Any]:
    from lockgate.stats import bootstrap_ci, calibration

    metrics = {
        m: bootstrap_ci(
            y, scores, metric=m, n_boot=gate.n_boot, alpha=gate.alpha, seed=gate.seed
        ).to_dict()
        for m in METRICS
    }
    return {
        "version": version,
        "metrics": metrics,
        "calibration": calibration(y, scores, bins=10, strategy="quantile").to_dict(),
        "mean_score": float(scores.mean()),
    }


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
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score both models on the gold rows; return (JSON-able report, scores per model)."""
    from lockgate.stats import delong_test, paired_bootstrap

    if gold.empty:
        raise DataError(
            f"the gold set of {pipeline!r} is empty; raise Gate.gold.fraction or snapshot more data"
        )
    y = gold[label].to_numpy().astype(np.int64)
    scores = {"challenger": challenger.predict_proba(gold)}
    if champion is not None:
        scores["champion"] = champion.predict_proba(gold)
    for name, values in scores.items():
        if not np.all(np.isfinite(values)):
            raise DataError(
                f"the {name} produced non-finite scores on the gold set; the model is broken: "
                "retrain it"
            )
    report: dict[str, Any] = {
        "pipeline": pipeline,
        "gold": {
            "sha256": gold_sha256,
            "rows": len(gold),
            "positives": int(y.sum()),
            "key": gate.gold.key,
            "fraction": gate.gold.fraction,
        },
        "challenger": _model_block(challenger_version, y, scores["challenger"], gate),
        "champion": None,
        "comparison": {},
        "policy": gate.model_dump(mode="json"),
    }
    if champion is not None and champion_version is not None:
        report["champion"] = _model_block(champion_version, y, scores["champion"], gate)
        for metric in METRICS:
            paired = paired_bootstrap(
                y,
                scores["challenger"],
                scores["champion"],
                metric=metric,
                n_boot=gate.n_boot,
                alpha=gate.alpha,
                seed=gate.seed,
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
    )
    gaps = [s for s in report["slices"] if s["delta"] is not None]
    report["largest_slice_gap"] = min(gaps, key=lambda s: s["delta"]) if gaps else None
    report["edge_cases"] = run_edge_cases(
        gate.edge_cases,
        gold,
        label=label,
        challenger=challenger,
        champion=champion,
        gold_mean_score=float(scores["challenger"].mean()),
    )
    return report, scores


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def model_card(
    report: Mapping[str, Any], lock: Mapping[str, Any], verdicts: Sequence[RuleVerdict]
) -> str:
    """A markdown model card: lineage, gold-set metrics vs champion, slices, edge cases, gate."""
    challenger, champion = report["challenger"], report.get("champion")
    lines = [
        f"# Model card: {report['pipeline']} {challenger['version']}",
        "",
        "## Lineage",
        f"- code commit: `{lock['triad']['code_commit']}` (dirty: {lock['code']['dirty']})",
        f"- data snapshot: `{lock['triad']['data_snapshot_sha256']}`",
        f"- weights: `{lock['triad']['weights_sha256']}` ({lock['artifact']['weights_file']})",
        f"- trainer: `{lock['trainer']['kind']}` seed {lock['trainer']['seed']}",
        f"- features ({len(lock['features'])}): {', '.join(lock['features'])}",
        f"- gold set: `{report['gold']['sha256'][:16]}`, {report['gold']['rows']} rows, "
        f"{report['gold']['positives']} positives",
        "",
        "## Metrics on the gold set (95% bootstrap intervals)",
        "",
        "| metric | challenger | champion | change |",
        "| --- | --- | --- | --- |",
    ]
    for metric in METRICS:
        mine = challenger["metrics"][metric]
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
