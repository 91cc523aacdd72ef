"""live_performance asset: delayed labels joined to the gateway's log, judged against the gold set."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from lockgate.assets.declare import deployed_version_key, pipeline_asset
from lockgate.features.store import FeastStore
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

__all__ = [
    "build_live_performance",
    "compute_live_performance",
    "gold_estimate",
    "live_performance_metadata",
    "live_vs_gold",
    "version_classes",
]


def _policy(spec: ModelPipeline) -> Any:
    if spec.feedback is None:
        raise ValueError(
            f"pipeline {spec.name!r} has no feedback policy; add feedback=FeedbackPolicy(...) "
            "to the spec to get live_performance"
        )
    return spec.feedback


def gold_estimate(
    artifacts: ArtifactRegistry, pipeline: str, version: str, metric: str
) -> tuple[float | None, str | None]:
    """The version's ``metric`` estimated on the gold set, and the report it comes from.

    The gold estimate is the challenger block of the evaluation report its latest passing gate
    verdict names (``reports/<pipeline>/<version>/<report_id>.json``); an ungated version
    falls back on its held-out ``evaluation.json``.

    Returns:
        ``(estimate, report key)``, or ``(None, None)`` when the version has neither.
    """
    passing = [v for v in artifacts.verdicts(pipeline, version) if v.get("passed")]
    if passing:
        key = f"reports/{pipeline}/{version}/{passing[-1]['report_id']}.json"
        report = artifacts.read_json(key)
        block = (report.get("challenger") or {}).get("metrics", {}).get(metric)
        if block is not None:
            return float(block["estimate"]), key
    key = f"reports/{pipeline}/{version}/evaluation.json"
    if artifacts.exists(key):
        value = (artifacts.read_json(key).get("metrics") or {}).get(metric)
        if value is not None:
            return float(value), key
    return None, None


def version_classes(artifacts: ArtifactRegistry, pipeline: str, version: str) -> tuple[Any, ...]:
    """A version's class labels in output column order (empty for binary and regression), read
    from its ``preprocessing.json`` in the registry."""
    import json

    from lockgate.training import model_output

    files = artifacts.model_files(pipeline, version)
    return tuple(model_output(json.loads(files["preprocessing.json"])).classes)


def compute_live_performance(
    spec: ModelPipeline,
    *,
    stack: ServingStack,
    artifacts: ArtifactRegistry,
    data_dir: str | Path,
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """Live performance of the pipeline's versions, the champion judged, the report stored.

    Reads the gateway's prediction log (``stack.prediction_log_dir``) and the label files under
    ``<data_dir>/<feedback.dataset>`` (labels of the pipeline's task), measures every version
    with the task's metrics (:func:`lockgate.monitoring.feedback.live_performance`; a multiclass model's
    outputs are read in the champion's class order), judges the champion against its gold-set
    estimate in the metric's direction (:func:`lockgate.monitoring.feedback.judge`) and stores the whole
    document in the registry
    as ``reports/<pipeline>/<champion>/live_performance-<id>.json`` (no champion:
    ``reports/<pipeline>/live_performance-<id>.json``). The id hashes everything but
    ``computed_at``, so the same labels and log give the same report key.

    Returns:
        ``{pipeline, computed_at, champion, gold: {estimate, report}, level, reason, evidence,
        performance, report_id, report_key, report_uri}``.
    """
    from lockgate.monitoring.feedback import judge, live_performance

    policy = _policy(spec)
    feedback_dir = Path(data_dir) / policy.dataset
    champion = artifacts.alias(spec.name, "champion")
    classes: tuple[Any, ...] = ()
    if spec.task == "multiclass" and champion is not None:
        classes = version_classes(artifacts, spec.name, champion)
    if spec.task == "multiclass" and not classes:
        return _no_champion_document(spec, artifacts, feedback_dir, stack, policy)
    performance = live_performance(
        stack.prediction_log_dir,
        feedback_dir,
        spec.name,
        window=policy.window,
        min_labels=policy.min_labels,
        metric=policy.metric,
        as_of=as_of,
        since=(as_of or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=policy.lookback_seconds),
        task=spec.task,
        classes=classes,
    )
    estimate, source = (
        gold_estimate(artifacts, spec.name, champion, policy.metric) if champion else (None, None)
    )
    if champion is None:
        level, reason = "ok", f"{spec.name} has no champion: nothing to judge"
        evidence: dict[str, Any] = {"model": spec.name, "champion": None}
    else:
        level, reason, evidence = judge(performance, champion, estimate, policy, task=spec.task)
    evidence["gold_report"] = source
    return _store(spec, artifacts, feedback_dir, stack, policy, performance, champion, level,
                  reason, evidence, estimate, source)  # fmt: skip


def _no_champion_document(
    spec: ModelPipeline,
    artifacts: ArtifactRegistry,
    feedback_dir: Path,
    stack: ServingStack,
    policy: Any,
) -> dict[str, Any]:
    """A multiclass pipeline without a champion: no class order to read outputs in."""
    performance = {
        "model": spec.name,
        "task": spec.task,
        "as_of": None,
        "metric": policy.metric,
        "window": policy.window,
        "min_labels": policy.min_labels,
        "labels": {"files": 0, "rows": 0, "duplicates": 0, "unique": 0, "matched": 0,
                   "unknown_trace_ids": 0},
        "predictions": {"live": 0, "skipped_shadow": 0, "skipped_errors": 0, "labelled": 0,
                        "unlabelled": 0, "duplicate_trace_ids": 0},
        "versions": {},
    }  # fmt: skip
    evidence: dict[str, Any] = {"model": spec.name, "champion": None, "gold_report": None}
    reason = f"{spec.name} has no champion: nothing to judge"
    return _store(spec, artifacts, feedback_dir, stack, policy, performance, None, "ok", reason,
                  evidence, None, None)  # fmt: skip


def _store(
    spec: ModelPipeline,
    artifacts: ArtifactRegistry,
    feedback_dir: Path,
    stack: ServingStack,
    policy: Any,
    performance: dict[str, Any],
    champion: str | None,
    level: str,
    reason: str,
    evidence: dict[str, Any],
    estimate: float | None,
    source: str | None,
) -> dict[str, Any]:
    from lockgate.lineage.hashing import canonical_json, sha256_json

    document: dict[str, Any] = {
        "pipeline": spec.name,
        "champion": champion,
        "gold": {"metric": policy.metric, "estimate": estimate, "report": source},
        "level": level,
        "reason": reason,
        "evidence": evidence,
        "policy": policy.model_dump(mode="json"),
        "feedback_dir": str(feedback_dir),
        "log_dir": str(stack.prediction_log_dir),
        "performance": performance,
    }
    report_id = sha256_json(document)[:16]
    prefix = f"reports/{spec.name}/{champion}" if champion else f"reports/{spec.name}"
    name = f"live_performance-{report_id}.json"
    key = f"{prefix}/{name}"
    document["report_id"] = report_id
    document["computed_at"] = dt.datetime.now(dt.UTC).isoformat()
    if not artifacts.exists(key):  # the same evidence was stored by an earlier tick
        artifacts.write_files_once(prefix, {name: canonical_json(document)})
    document["report_key"] = key
    document["report_uri"] = artifacts.uri(key)
    return document


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def live_performance_metadata(document: dict[str, Any]) -> dict[str, Any]:
    """Materialization metadata: a markdown table per version, champion live vs gold, level."""
    from lockgate.monitoring.feedback import live_metrics

    performance = document["performance"]
    metric = performance["metric"]
    champion = document["champion"]
    names = live_metrics(performance.get("task", "binary"))
    # narrow enough to read without scrolling (coverage and mean score stay in the report)
    lines = [
        "| version | role | labelled / predictions | positives | "
        + " | ".join(names)
        + f" | {metric} 95% interval |",
        "|---|---|---:|---:|" + "---:|" * (len(names) + 1),
    ]
    for version, block in performance["versions"].items():
        role = "champion" if version == champion else ""
        m = block["metrics"]
        interval = block.get("interval")
        span = f"{interval[0]:.3f} to {interval[1]:.3f}" if interval else "-"
        lines.append(
            f"| {version} | {role} | {block['labelled']} / {block['predictions']} | "
            f"{block['positives']} | "
            + " | ".join(_fmt(m.get(name)) for name in names)
            + f" | {span} |"
        )
    undefined = [
        f"- {version} {name}: {why}"
        for version, block in performance["versions"].items()
        for name, why in block["undefined"].items()
    ]
    table = "\n".join(lines) + ("\n\nUndefined:\n" + "\n".join(undefined) if undefined else "")
    evidence = document["evidence"]
    labels = performance["labels"]
    extra: dict[str, Any] = {}
    live_interval = evidence.get("live_interval")
    if live_interval:  # an interval as two numbers: Dagster plots them
        extra[f"champion_live_{metric}_lower"] = dg.MetadataValue.float(float(live_interval[0]))
        extra[f"champion_live_{metric}_upper"] = dg.MetadataValue.float(float(live_interval[1]))
    return {
        "level": document["level"],
        "live_vs_gold": live_vs_gold(evidence),
        "reason": document["reason"],
        "champion": str(champion),
        "metric": metric,
        f"champion_live_{metric}": evidence.get("live"),
        f"champion_gold_{metric}": document["gold"]["estimate"],
        f"champion_{metric}_drop": evidence.get("drop"),
        f"champion_{metric}_direction": "higher is better"
        if evidence.get("higher_is_better", True)
        else "lower is better",
        "champion_window_labels": int(evidence.get("n") or 0),
        "labels_rows": labels["rows"],
        "labels_matched": labels["matched"],
        "labels_duplicates": labels["duplicates"],
        "labels_unknown_trace_ids": labels["unknown_trace_ids"],
        "predictions_live": performance["predictions"]["live"],
        "predictions_unlabelled": performance["predictions"]["unlabelled"],
        "versions": dg.MetadataValue.md(table),
        "report": dg.MetadataValue.path(document["report_uri"]),
        **extra,
    }


def live_vs_gold(evidence: dict[str, Any]) -> str:
    """The champion's live metric against its gold-set estimate in words, by the metric's
    direction: "better by" when the live value is better, "worse by" when it is worse.

    Example:
        >>> live_vs_gold({"metric": "roc_auc", "live": 0.80, "gold": 0.74, "drop": -0.06,
        ...               "higher_is_better": True, "n": 5000, "positives": 37})
        'live roc_auc 0.8000 vs gold 0.7400: better by 0.0600 (5000 labels, 37 positives)'
    """
    metric, live, gold = evidence.get("metric"), evidence.get("live"), evidence.get("gold")
    if live is None:
        return f"no live {metric} yet ({int(evidence.get('n') or 0)} labels in the window)"
    text = f"live {metric} {float(live):.4f}"
    interval = evidence.get("live_interval")
    if interval:
        text += f" (95% interval {interval[0]:.4f} to {interval[1]:.4f})"
    if gold is not None:
        drop = evidence.get("drop")
        if drop is None:
            higher = evidence.get("higher_is_better", True)
            drop = (gold - live) if higher else (live - gold)
        word = "worse" if drop > 0 else "better" if drop < 0 else "no different"
        change = "" if drop == 0 else f" by {abs(float(drop)):.4f}"
        text += f" vs gold {float(gold):.4f}: {word}{change}"
    counts = f"{int(evidence.get('n') or 0)} labels"
    if evidence.get("positives"):
        counts += f", {int(evidence['positives'])} positives"
    return f"{text} ({counts})"


def build_live_performance(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, live_performance]`` asset: per-version live metrics from delayed labels."""
    policy = _policy(spec)
    # what it reads: the champion's gold estimate (evaluation_report), the gateway's
    # prediction log of the served versions (rollout) and the user's label asset, if any
    deps = [spec.asset_key("evaluation_report")]
    deps += [k for k in (deployed_version_key(spec), spec.labels_asset_key) if k is not None]

    @pipeline_asset(
        spec,
        "live_performance",
        deps=deps,
        description=(
            f"Live {policy.metric} of each served version: delayed labels joined to the "
            "gateway's prediction log by trace id, the champion judged against its gold set."
        ),
        kinds={"json", "markdown"},
        stored=False,
    )
    def live_performance(
        context: dg.AssetExecutionContext,
        serving_stack: dg.ResourceParam[ServingStack],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        feast: dg.ResourceParam[FeastStore],
    ) -> dg.MaterializeResult:
        document = compute_live_performance(
            spec,
            stack=serving_stack,
            artifacts=artifacts,
            data_dir=str(feast.for_pipeline(spec).data_path),
        )
        context.log.info(f"{spec.name}: {document['level']}: {document['reason']}")
        return dg.MaterializeResult(metadata=live_performance_metadata(document))

    return live_performance
