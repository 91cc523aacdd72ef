"""The gate: gold set, challenger-vs-champion evaluation, blocking verdicts, champion alias."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from lockgate.resources.artifacts import ArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.spec import ModelPipeline

__all__ = [
    "build_champion",
    "build_gate_checks",
    "build_gated_evaluation",
    "build_gold_set",
    "passing_verdict",
]


def _gate(spec: ModelPipeline) -> Any:
    if spec.gate is None:
        raise ValueError(f"pipeline {spec.name!r} has no gate")
    return spec.gate


def passing_verdict(
    artifacts: ArtifactRegistry, pipeline: str, evaluation: dict[str, Any]
) -> dict[str, Any]:
    """The passing gate verdict of the evaluation; GateFailedError if there is none."""
    from lockgate.errors import GateFailedError

    version = evaluation["version"]
    verdicts = [
        v
        for v in artifacts.verdicts(pipeline, version)
        if v["report_id"] == evaluation["report_id"]
    ]
    if not verdicts or not all(v["passed"] for v in verdicts):
        failed = [r["rule"] for v in verdicts for r in v["rules"] if not r["passed"]]
        raise GateFailedError(
            f"{pipeline} {version} has no passing gate verdict for report "
            f"{evaluation['report_id']} (failed rules: {failed or 'no verdict'}); it stays a "
            "challenger: see the evaluation_report checks"
        )
    return verdicts[-1]


def build_gold_set(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, gold_set]`` asset: the gold rows of the snapshot, content-addressed."""
    gate = _gate(spec)

    @dg.asset(
        key=spec.asset_key("gold_set"),
        group_name=spec.name,
        description=(
            f"Gold validation rows (stable {gate.gold.fraction:.0%} hash of '{gate.gold.key}'), "
            "held out of every training run."
        ),
        kinds={"parquet"},
        io_manager_key="lockgate_io",
        ins={"snapshot": dg.AssetIn(key=spec.asset_key("feature_snapshot"))},
    )
    def gold_set(
        context: dg.AssetExecutionContext, snapshot: dict[str, Any], artifacts: ArtifactRegistry
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.build import load_snapshot_frame, snapshot_parquet_bytes
        from lockgate.evaluation import gold_mask
        from lockgate.hashing import canonical_frame, frame_sha256

        frame = load_snapshot_frame(artifacts, snapshot["frame_sha256"], verify_content=False)
        manifest = artifacts.snapshot_manifest(snapshot["frame_sha256"])
        gold = canonical_frame(frame[gold_mask(frame, gate.gold)], sort_by=manifest["sort_by"])
        sha = frame_sha256(gold, sort_by=manifest["sort_by"])
        # binary: the positives; multiclass: the rows of the rarest class; regression: none
        positives = _gold_positives(gold[spec.label], spec.task)
        artifacts.put_snapshot(
            sha,
            snapshot_parquet_bytes(gold),
            {
                "kind": "gold",
                "pipeline": spec.name,
                "parent_snapshot": snapshot["frame_sha256"],
                "rows": len(gold),
                "positives": positives,
                "sort_by": manifest["sort_by"],
                "gold": gate.gold.model_dump(),
            },
        )
        context.log.info(f"gold set {sha[:12]}: {len(gold)} rows, {positives} positives")
        return dg.Output(
            {"gold_sha256": sha, "rows": len(gold), "positives": positives},
            metadata={
                "gold_sha256": sha,
                "dagster/row_count": len(gold),
                "positives": positives,
                "parent_snapshot": snapshot["frame_sha256"],
                "rule": f"sha256({gate.gold.salt!r} + {gate.gold.key}) < {gate.gold.fraction}",
            },
            data_version=dg.DataVersion(sha[:16]),
        )

    return gold_set


def _image(png: bytes, title: str) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def build_gated_evaluation(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, evaluation_report]`` asset with a gate: challenger vs champion on gold rows."""
    gate = _gate(spec)

    @dg.asset(
        key=spec.asset_key("evaluation_report"),
        group_name=spec.name,
        description=(
            "Challenger vs champion on the gold set: metrics with bootstrap intervals, paired "
            "comparison, calibration, slices, edge cases, plots and a model card."
        ),
        kinds={"json", "markdown"},
        io_manager_key="lockgate_io",
        ins={
            "weights": dg.AssetIn(key=spec.asset_key("model_weights")),
            "gold": dg.AssetIn(key=spec.asset_key("gold_set")),
        },
    )
    def evaluation_report(
        context: dg.AssetExecutionContext,
        weights: dict[str, Any],
        gold: dict[str, Any],
        artifacts: ArtifactRegistry,
    ) -> dg.Output[dict[str, Any]]:
        from lockgate import plots
        from lockgate.build import load_snapshot_frame, load_trained_model
        from lockgate.evaluation import build_report
        from lockgate.resources.artifacts import content_id

        version = weights["version"]
        # a rerun of the champion compares it with the champion: itself (every change is 0)
        champion_version = artifacts.alias(spec.name, "champion")
        frame = load_snapshot_frame(artifacts, gold["gold_sha256"])
        challenger = load_trained_model(artifacts, spec.name, version)
        champion = None
        if champion_version == version:
            champion = challenger
        elif champion_version:
            champion = load_trained_model(artifacts, spec.name, champion_version)
        report, scores = build_report(
            pipeline=spec.name,
            gate=gate,
            label=spec.label,
            gold=frame,
            gold_sha256=gold["gold_sha256"],
            challenger_version=version,
            challenger=challenger,
            champion_version=champion_version,
            champion=champion,
            task=spec.task,
        )
        # named by its content: the same inputs give the same report id in every run, and
        # the first run's report (with its run id and time) is kept
        report_id = content_id(report)
        prefix = artifacts.report_prefix(spec.name, version)
        if spec.task == "binary":
            y = frame[spec.label].to_numpy()
            named = {f"challenger {version}": scores["challenger"]}
            if champion_version and champion_version != version:
                named[f"champion {champion_version}"] = scores["champion"]
            images = {
                "roc.png": plots.roc_plot(y, named),
                "pr.png": plots.pr_plot(y, named),
                "calibration.png": plots.calibration_plot(y, named),
            }
            if report["slices"]:
                images["slices.png"] = plots.slice_delta_plot(
                    [
                        (f"{s['slice']}={s['value']}", s["champion"], s["challenger"])
                        for s in report["slices"]
                    ],
                    metric=gate.slice_metric,
                )
        else:
            images = plots.report_plots(report, frame[spec.label].to_numpy(), scores)
        # plots first, the report last: a report counts once its plots are stored; a rerun
        # keeps the first run's renderings
        artifacts.put_report(
            spec.name,
            version,
            {f"{report_id}-{k}": v for k, v in images.items()},
            keep_existing=True,
        )
        images = {k: artifacts.read_bytes(f"{prefix}/{report_id}-{k}") for k in images}
        key, report, written = artifacts.put_record_once(
            prefix,
            report | {"evaluated_at": datetime.now(UTC).isoformat(), "run_id": context.run_id},
            id_field="report_id",
        )
        assert report["report_id"] == report_id
        if not written:
            context.log.info(
                f"evaluation of {version} vs {champion_version or 'no champion'} on these gold "
                f"rows is known: report {report_id} of run {report['run_id']} reused"
            )
        mine = report["challenger"]["metrics"]
        metadata: dict[str, Any] = {
            "version": version,
            "champion": champion_version or "none (bootstrap)",
            "champion_is_challenger": champion_version == version,
            "gold_sha256": gold["gold_sha256"],
            "gold_rows": report["gold"]["rows"],
            "gold_positives": report["gold"]["positives"],
            "task": spec.task,
            "report_id": report_id,
            "report": dg.MetadataValue.path(artifacts.uri(key)),
            "reused": not written,
            "evaluated_at": str(report["evaluated_at"]),
            "evaluated_by_run": str(report["run_id"]),
        }
        for metric, interval in mine.items():
            metadata[metric] = interval["estimate"]
            metadata[f"{metric}_ci"] = f"[{interval['lower']:.4f}, {interval['upper']:.4f}]"
        for metric, comp in report["comparison"].items():
            metadata[f"{metric}_delta_vs_champion"] = comp["delta"]
        if report["largest_slice_gap"]:
            gap = report["largest_slice_gap"]
            metadata["largest_slice_gap"] = f"{gap['slice']}={gap['value']}: {gap['delta']:+.4f}"
        metadata["slices"] = dg.MetadataValue.json(report["slices"])
        metadata["edge_cases"] = dg.MetadataValue.json(report["edge_cases"])
        for name, png in images.items():
            metadata[f"plot_{name.removesuffix('.png')}"] = _image(png, name)
        context.log.info(
            f"{version} vs {champion_version or 'no champion'}"
            f"{' (itself: the champion)' if champion_version == version else ''}: "
            f"{report['policy']['primary']}={mine[report['policy']['primary']]['estimate']:.4f}"
        )
        return dg.Output(
            {
                "pipeline": spec.name,
                "version": version,
                "champion": champion_version,
                "report_id": report_id,
                "gold_sha256": gold["gold_sha256"],
            },
            metadata=metadata,
        )

    return evaluation_report


def build_gate_checks(spec: ModelPipeline) -> dg.AssetChecksDefinition:
    """Blocking checks on the evaluation report: one per gate rule, ``{metric, actual, threshold}``."""
    from lockgate.gate import GATE_RULES

    gate = _gate(spec)
    key = spec.asset_key("evaluation_report")
    specs = [
        dg.AssetCheckSpec(rule, asset=key, blocking=True, description=f"gate: {rule}")
        for rule in GATE_RULES
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{spec.name}_gate",
        ins={"evaluation": dg.AssetIn(key=key)},
        compute_kind="lockgate",
    )
    def gate_checks(
        context: dg.AssetCheckExecutionContext,
        evaluation: dict[str, Any],
        artifacts: ArtifactRegistry,
        audit: AuditTrail,
    ) -> Iterator[dg.AssetCheckResult]:
        from lockgate.build import load_trained_model
        from lockgate.evaluation import model_card
        from lockgate.gate import evaluate_gate

        version, report_id = evaluation["version"], evaluation["report_id"]
        report = artifacts.read_json(
            f"{artifacts.report_prefix(spec.name, version)}/{report_id}.json"
        )
        verdicts = evaluate_gate(report, gate)
        passed = all(v.passed for v in verdicts)
        lock = artifacts.lock_record(spec.name, version)
        load_trained_model(artifacts, spec.name, version)  # weights still match their hashes
        champion_version = report["champion"]["version"] if report["champion"] else None
        verdict_key, stored, written = artifacts.put_record_once(
            f"verdicts/{spec.name}/{version}",
            {
                "pipeline": spec.name,
                "version": version,
                "lock_record_sha256": lock["record_sha256"],
                "report_id": report_id,
                "champion": champion_version,
                "gold_sha256": report["gold"]["sha256"],
                "passed": passed,
                "rules": [v.to_dict() for v in verdicts],
                "evaluated_at": report["evaluated_at"],
                "run_id": context.run.run_id,
            },
        )
        artifacts.put_report(
            spec.name,
            version,
            {f"{report_id}-model_card.md": model_card(report, lock, verdicts).encode()},
            keep_existing=True,
        )
        if written:
            audit.record(
                "gate_verdict",
                pipeline=spec.name,
                actor=f"dagster run {context.run.run_id}",
                payload={
                    "version": version,
                    "champion": champion_version,
                    "passed": passed,
                    "failed_rules": [v.to_dict() for v in verdicts if not v.passed],
                    "verdict": verdict_key,
                },
            )
        else:  # the same verdict on the same inputs is on record (and in the audit log)
            context.log.info(
                f"gate verdict on {version} for report {report_id} is known: "
                f"{verdict_key} of run {stored['run_id']} reused"
            )
        for verdict in verdicts:
            if not verdict.passed:
                context.log.error(f"gate {verdict.rule} failed: {verdict.message}")
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=verdict.rule,
                passed=verdict.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=verdict.message,
                metadata={
                    "metric": str(verdict.metric),
                    "actual": dg.MetadataValue.json(verdict.actual)
                    if isinstance(verdict.actual, list | dict)
                    else verdict.actual,
                    "threshold": dg.MetadataValue.json(verdict.threshold)
                    if isinstance(verdict.threshold, list | dict)
                    else verdict.threshold,
                    "failures": dg.MetadataValue.json(list(verdict.failures)),
                    "challenger": version,
                    "champion": str(champion_version),
                    "verdict": verdict_key,
                    "reused": not written,
                },
            )

    return gate_checks


def build_champion(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, champion]`` asset: moves the champion alias to a version that passed the gate."""

    @dg.asset(
        key=spec.asset_key("champion"),
        group_name=spec.name,
        description="The production champion: moved only after every gate check passed.",
        kinds={"lockgate"},
        io_manager_key="lockgate_io",
        ins={"evaluation": dg.AssetIn(key=spec.asset_key("evaluation_report"))},
    )
    def champion(
        context: dg.AssetExecutionContext,
        evaluation: dict[str, Any],
        artifacts: ArtifactRegistry,
        audit: AuditTrail,
    ) -> dg.Output[dict[str, Any]]:

        version = evaluation["version"]
        passing_verdict(artifacts, spec.name, evaluation)
        previous = artifacts.alias(spec.name, "champion")
        if previous == version:  # a rerun: the alias, its history and the audit log stay
            state = artifacts.aliases(spec.name)
            since: dict[str, Any] = next(
                (
                    h
                    for h in reversed(state["history"])
                    if h["alias"] == "champion" and h["to"] == version
                ),
                {},
            )
            context.log.info(f"{spec.name} champion: {version} already (unchanged)")
            return dg.Output(
                {"pipeline": spec.name, "champion": version, "previous": previous},
                metadata={
                    "champion": version,
                    "previous": str(previous),
                    "unchanged": True,
                    "champion_since": str(since.get("at")),
                    "history": dg.MetadataValue.json(state["history"][-5:]),
                },
            )
        state = artifacts.move_alias(
            spec.name,
            "champion",
            version,
            actor=f"dagster run {context.run_id}",
            reason=(
                f"gate passed vs {evaluation['champion']}"
                if evaluation["champion"]
                else "gate passed; first champion (bootstrap rule)"
            ),
            expected=previous,
            evidence={"report_id": evaluation["report_id"], "gold": evaluation["gold_sha256"]},
        )
        audit.record(
            "promotion",
            pipeline=spec.name,
            actor=f"dagster run {context.run_id}",
            payload={"from": previous, "to": version, "reason": state["history"][-1]["reason"]},
        )
        context.log.info(f"{spec.name} champion: {previous} -> {version}")
        return dg.Output(
            {"pipeline": spec.name, "champion": version, "previous": previous},
            metadata={
                "champion": version,
                "previous": str(previous),
                "unchanged": False,
                "history": dg.MetadataValue.json(state["history"][-5:]),
            },
        )

    return champion


def _gold_positives(labels: Any, task: str) -> int | None:
    if task == "binary":
        return int(labels.sum())
    if task == "multiclass":
        return int(labels.value_counts().min()) if len(labels) else 0
    return None
