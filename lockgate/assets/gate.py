"""The gate: gold set, challenger-vs-champion evaluation, blocking verdicts, champion alias."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import dagster as dg

from lockgate.assets.declare import blocking_checks, pipeline_asset
from lockgate.lineage.refs import GatedEvaluationRef
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.resources.audit import AuditTrail
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

__all__ = [
    "build_champion",
    "build_gate_checks",
    "build_gated_evaluation",
    "build_gold_set",
    "evaluation_views",
    "gate_stop",
    "link",
    "passing_verdict",
    "records_table",
    "run_verdict_tags",
    "typed_metadata",
]


def _gate(spec: ModelPipeline) -> Any:
    if spec.gate is None:
        raise ValueError(f"pipeline {spec.name!r} has no gate")
    return spec.gate


def passing_verdict(
    artifacts: ArtifactRegistry, pipeline: str, evaluation: GatedEvaluationRef
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

    @pipeline_asset(
        spec,
        "gold_set",
        description=(
            f"Gold validation rows (stable {gate.gold.fraction:.0%} hash of '{gate.gold.key}'), "
            "held out of every training run."
        ),
        kinds={"parquet"},
        ins={"snapshot": "feature_snapshot"},
    )
    def gold_set(
        context: dg.AssetExecutionContext,
        snapshot: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> dg.Output[dict[str, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from lockgate.evaluation.report import gold_mask
        from lockgate.lineage.hashing import canonical_frame, table_sha256
        from lockgate.lineage.snapshot_rows import parquet_gold_mask
        from lockgate.lineage.steps import (
            load_snapshot_frame,
            release_memory,
            snapshot_parquet_bytes,
        )

        manifest = artifacts.snapshot_manifest(snapshot["frame_sha256"])
        key = gate.gold.key
        # the gold key's Arrow values first, a row group at a time, then only the gold rows
        # (never the whole snapshot, nor a Python string per key); a key the snapshot lacks:
        # every column, and gold_mask's error names them
        if key in manifest.get("schema", {}):
            data = artifacts.read_snapshot_bytes(snapshot["frame_sha256"])
            mask = parquet_gold_mask(pq.ParquetFile(pa.BufferReader(data)), gate.gold)
            del data
        else:
            mask = gold_mask(
                load_snapshot_frame(artifacts, snapshot["frame_sha256"], verify_content=False),
                gate.gold,
            )
        rows = load_snapshot_frame(
            artifacts, snapshot["frame_sha256"], verify_content=False, rows=mask
        )
        del mask
        gold = canonical_frame(rows, sort_by=manifest["sort_by"])
        del rows
        release_memory()
        # frame_sha256(gold, sort_by=...) without its copy: gold is canonical already (and
        # canonical_frame of a canonical frame is the same frame), so its table hashes as it is
        sha = table_sha256(pa.Table.from_pandas(gold, preserve_index=False))
        # binary: the positives; multiclass: the rows of the rarest class; regression: none
        positives = _gold_positives(gold[spec.label], spec.task)
        data = snapshot_parquet_bytes(gold)
        rows_count = len(gold)
        del gold
        release_memory()  # later steps of the run start without the gold frame
        artifacts.put_snapshot(
            sha,
            data,
            {
                "kind": "gold",
                "pipeline": spec.name,
                "parent_snapshot": snapshot["frame_sha256"],
                "rows": rows_count,
                "positives": positives,
                "sort_by": manifest["sort_by"],
                "gold": gate.gold.model_dump(),
            },
        )
        del data
        context.log.info(f"gold set {sha[:12]}: {rows_count} rows, {positives} positives")
        return dg.Output(
            {"gold_sha256": sha, "rows": rows_count, "positives": positives},
            metadata={
                "gold_sha256": sha,
                "dagster/row_count": rows_count,
                "positives": positives,
                "parent_snapshot": snapshot["frame_sha256"],
                "rule": f"sha256({gate.gold.salt!r} + {gate.gold.key}) < {gate.gold.fraction}",
            },
            data_version=dg.DataVersion(sha[:16]),
        )

    return gold_set


def typed_metadata(values: dict[str, Any]) -> dict[str, Any]:
    """Plain values as typed Dagster metadata: floats as ``FloatMetadataValue`` (stored exactly),
    ints as ``IntMetadataValue``, text as ``TextMetadataValue``, booleans as ``BoolMetadataValue``.
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, bool):
            out[name] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[name] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[name] = dg.MetadataValue.float(value)
        else:
            out[name] = dg.MetadataValue.text(str(value))
    return out


def run_verdict_tags(pipeline: str, version: str, verdicts: Any) -> dict[str, str]:
    """The run tags that make a gate run read as a decision in Dagster's runs list."""
    failed = [v for v in verdicts if not v.passed]
    tags = {
        "lockgate/pipeline": pipeline,
        "lockgate/version": version,
        "lockgate/verdict": "blocked" if failed else "passed",
    }
    if failed:
        tags["lockgate/failed_rules"] = ",".join(v.rule for v in failed)
        # Dagster shows a tag's value in full on the run page; the first rule's numbers
        tags["lockgate/reason"] = f"{failed[0].rule}: {failed[0].message}"[:300]
    return tags


def link(uri: str) -> dg.MetadataValue:
    """An artifact as a link: a URL where the store serves one, else its path."""
    if uri.startswith(("http://", "https://")):
        return dg.MetadataValue.url(uri)
    return dg.MetadataValue.path(uri)


def records_table(rows: list[dict[str, Any]], columns: list[str]) -> dg.MetadataValue:
    """Rows as a Dagster table (the UI renders tables in place, whatever their size); floats
    rounded to 4 digits for reading, the exact values stay in the stored report."""

    def cell(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4)
        if value is None or isinstance(value, bool | int | str):
            return value
        return str(value)

    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: cell(row.get(c)) for c in columns}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]),
    )


def evaluation_views(
    report: dict[str, Any],
    y: Any,
    scores: dict[str, Any],
    image_uris: dict[str, str],
) -> dict[str, Any]:
    """What the evaluation report shows on the asset page: small inline charts (binary: ROC,
    precision-recall, calibration zoomed to the data), the slice and edge-case tables, and links
    to the full PNGs in the artifact store. No image bytes go into Dagster's event log.
    """
    from lockgate.evaluation import plots

    views: dict[str, Any] = {}
    challenger = report["challenger"]
    champion = report.get("champion")
    named = {f"challenger {challenger['version']}": scores["challenger"]}
    if champion is not None and champion["version"] != challenger["version"]:
        named[f"champion {champion['version']}"] = scores["champion"]
    if y is not None and report.get("task", "binary") == "binary":
        roc = {
            f"{name} AUC {_metric(report, name, 'roc_auc')}": plots.roc_points(y, p)
            for name, p in named.items()
        }
        views["plot_roc"] = dg.MetadataValue.md(
            plots.inline_chart(roc, title="ROC curve", diagonal=True)
        )
        pr = {
            f"{name} AP {_metric(report, name, 'pr_auc')}": plots.pr_points(y, p)
            for name, p in named.items()
        }
        views["plot_pr"] = dg.MetadataValue.md(plots.inline_chart(pr, title="Precision-recall"))
        curves = {name: plots.calibration_points(y, p) for name, p in named.items()}
        # axes to the bins' own extent (the curve is what the chart shows): a few confident
        # predictions near 1 would otherwise leave every bin in one corner at a low base rate
        top = max((max(px, py) for pts, _ in curves.values() for px, py in pts), default=1.0)
        extent = min(1.0, max(0.01, 1.1 * top))
        views["plot_calibration"] = dg.MetadataValue.md(
            plots.inline_chart(
                {n: c for n, (c, _) in curves.items()},
                title="Calibration",
                note=f"mean predicted vs observed rate, both axes 0 to {extent:.2g}",
                x_max=extent,
                y_max=extent,
                diagonal=True,
            )
        )
    if report.get("slices"):
        views["slices"] = records_table(
            report["slices"], ["slice", "value", "rows", "challenger", "champion", "delta"]
        )
    if report.get("edge_cases"):
        views["edge_cases"] = records_table(
            [c | {"outcome": "pass" if c["passed"] else "FAIL"} for c in report["edge_cases"]],
            ["name", "outcome", "rows", "message"],
        )
    for name, uri in sorted(image_uris.items()):
        views[f"png_{name.removesuffix('.png')}"] = link(uri)
    return views


def _metric(report: dict[str, Any], name: str, metric: str) -> str:
    role = "challenger" if name.startswith("challenger") else "champion"
    block = (report.get(role) or {}).get("metrics", {}).get(metric)
    return "n/a" if block is None or block.get("estimate") is None else f"{block['estimate']:.3f}"


def build_gated_evaluation(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, evaluation_report]`` asset with a gate: challenger vs champion on gold rows."""
    gate = _gate(spec)

    @pipeline_asset(
        spec,
        "evaluation_report",
        description=(
            "Challenger vs champion on the gold set: metrics with bootstrap intervals, paired "
            "comparison, calibration, slices, edge cases, plots and a model card."
        ),
        kinds={"json", "markdown"},
        ins={"weights": "model_weights", "gold": "gold_set"},
    )
    def evaluation_report(
        context: dg.AssetExecutionContext,
        weights: dict[str, Any],
        gold: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.evaluation import plots
        from lockgate.evaluation.comparison_table import comparison_rows
        from lockgate.evaluation.report import build_report
        from lockgate.lineage.registry import content_id
        from lockgate.lineage.steps import load_snapshot_frame, load_trained_model, release_memory

        version = weights["version"]
        # a rerun of the champion compares it with the champion: itself (every change is 0)
        champion_version = artifacts.alias(spec.name, "champion")
        context.instance.add_run_tags(
            context.run.run_id,
            {
                "lockgate/pipeline": spec.name,
                "lockgate/version": version,
                "lockgate/champion": champion_version or "none",
            },
        )
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
        labels = frame[spec.label].to_numpy()  # all the rest needs of the gold rows
        del frame
        release_memory()
        if spec.task == "binary":
            y = labels
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
            images = plots.report_plots(report, labels, scores)
        # plots first, the report last: a report counts once its plots are stored; a rerun
        # keeps the first run's renderings
        artifacts.put_report(
            spec.name,
            version,
            {f"{report_id}-{k}": v for k, v in images.items()},
            keep_existing=True,
        )
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
        # what the challenger was trained on, against the champion: a dropped feature is the
        # first thing to see when a challenger is blocked
        features = list(artifacts.lock_record(spec.name, version).get("features", []))
        theirs = (
            list(artifacts.lock_record(spec.name, champion_version).get("features", []))
            if champion_version and champion_version != version
            else features
        )
        metadata["features"] = len(features)
        metadata["features_dropped_vs_champion"] = (
            ", ".join(f for f in theirs if f not in features) or "none"
        )
        metadata["features_added_vs_champion"] = (
            ", ".join(f for f in features if f not in theirs) or "none"
        )
        # challenger and champion side by side: metrics with intervals, features, params
        metadata["vs_champion"] = records_table(
            comparison_rows(
                report,
                artifacts.lock_record(spec.name, version),
                artifacts.lock_record(spec.name, champion_version) if champion_version else None,
            ),
            ["aspect", "name", "challenger", "champion", "change"],
        )
        numbers: dict[str, Any] = {}
        for metric, interval in mine.items():  # intervals as two numbers: Dagster plots them
            for part, suffix in (("estimate", ""), ("lower", "_lower"), ("upper", "_upper")):
                if interval.get(part) is not None:
                    numbers[f"{metric}{suffix}"] = float(interval[part])
        for metric, comp in report["comparison"].items():
            for part, suffix in (("delta", ""), ("lower", "_lower"), ("upper", "_upper")):
                if comp.get(part) is not None:
                    numbers[f"{metric}_delta_vs_champion{suffix}"] = float(comp[part])
        metadata.update(typed_metadata(numbers))
        if report["largest_slice_gap"]:
            gap = report["largest_slice_gap"]
            metadata["largest_slice_gap"] = f"{gap['slice']}={gap['value']}: {gap['delta']:+.4f}"
            metadata["largest_slice_gap_delta"] = dg.MetadataValue.float(float(gap["delta"]))
        metadata.update(
            evaluation_views(
                report,
                labels if spec.task == "binary" else None,
                scores,
                {name: artifacts.uri(f"{prefix}/{report_id}-{name}") for name in images},
            )
        )
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
    from lockgate.evaluation.gate import GATE_RULES

    gate = _gate(spec)
    key = spec.asset_key("evaluation_report")

    @blocking_checks(
        spec,
        "evaluation_report",
        GATE_RULES,
        name=f"{spec.name}_gate",
        param="evaluation",
        label="gate",
        compute_kind="lockgate",
    )
    def gate_checks(
        context: dg.AssetCheckExecutionContext,
        evaluation: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        audit: AuditTrail,
        serving_stack: dg.ResourceParam[ServingStack],
    ) -> Iterator[dg.AssetCheckResult]:
        from lockgate.assets.weights import model_registry_event
        from lockgate.evaluation.check_metadata import check_description, gate_check_values
        from lockgate.evaluation.gate import evaluate_gate
        from lockgate.evaluation.model_card import model_card
        from lockgate.lineage.steps import load_trained_model

        version, report_id = evaluation["version"], evaluation["report_id"]
        report = artifacts.read_json(
            f"{artifacts.report_prefix(spec.name, version)}/{report_id}.json"
        )
        verdicts = evaluate_gate(report, gate)
        passed = all(v.passed for v in verdicts)
        lock = artifacts.lock_record(spec.name, version)
        load_trained_model(artifacts, spec.name, version)  # weights still match their hashes
        champion_version = report["champion"]["version"] if report["champion"] else None
        verdict_key, stored, written = artifacts.put_signed_verdict(
            spec.name,
            version,
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
        card_key = f"{artifacts.report_prefix(spec.name, version)}/{report_id}-model_card.md"
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
        failed = [v for v in verdicts if not v.passed]
        # the run reads as a decision in the runs list: pipeline, version and verdict as tags
        context.instance.add_run_tags(
            context.run.run_id,
            run_verdict_tags(spec.name, version, verdicts),
        )
        if failed:
            context.log.warning(  # the numbers are in each check's description
                f"gate verdict: {spec.name} {version} BLOCKED by "
                f"{', '.join(v.rule for v in failed)}; it stays a challenger, champion "
                f"{champion_version or 'none'} keeps serving"
            )
        else:
            context.log.info(f"gate verdict: {spec.name} {version} passed every rule")
        # the registry view shows the verdict now: a blocked run never reaches model_registry
        context.op_execution_context.log_event(
            model_registry_event(
                spec,
                artifacts,
                canary=serving_stack.canary_state(spec.name) if spec.serving else None,
                reason=f"gate verdict on {version}: {'passed' if passed else 'blocked'}",
            )
        )
        for verdict in verdicts:
            values = gate_check_values(verdict, report, gate)
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=verdict.rule,
                passed=verdict.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=check_description(verdict),
                metadata={
                    **typed_metadata(values),
                    "failures": dg.MetadataValue.json(list(verdict.failures)),
                    "challenger": version,
                    "champion": str(champion_version or "none"),
                    "verdict": verdict_key,
                    "model_card": link(artifacts.uri(card_key)),
                    "reused": not written,
                },
            )
        if failed:
            # every check is recorded (failed, with its numbers); the step then stops as a
            # decision: the run's failure reads as the verdict, and downstream never starts
            raise gate_stop(
                spec.name,
                version,
                champion_version,
                [(v, gate_check_values(v, report, gate)) for v in failed],
                verdict=artifacts.uri(verdict_key),
                model_card=artifacts.uri(card_key),
            )

    return gate_checks


def gate_stop(
    pipeline: str,
    version: str,
    champion: str | None,
    failed: list[tuple[Any, dict[str, Any]]],
    *,
    verdict: str,
    model_card: str,
) -> dg.Failure:
    """The failure that ends a blocked gate step: the verdict, not a crash.

    Raised after the step has yielded its checks (the failed evaluations are recorded with their
    metadata), it replaces Dagster's generic blocking-check error: the step's failure carries the
    verdict as its description (``BLOCKED by <rules>: <first rule's numbers>; ...``) and the failed
    rules' numbers as typed metadata, which the run page shows above the stack. Retries are off: a
    verdict on the same inputs does not change.

    Args:
        pipeline: The pipeline's name.
        version: The blocked challenger.
        champion: The champion that keeps serving (None: no champion yet).
        failed: Each failed rule's verdict with its check values
            (:func:`lockgate.evaluation.check_metadata.gate_check_values`).
        verdict: Where the verdict record is stored.
        model_card: Where the model card is stored.
    """
    rules = [v.rule for v, _ in failed]
    first = failed[0][0]
    more = f" (and {len(failed) - 1} more: see each check)" if len(failed) > 1 else ""
    keeps = f"champion {champion} keeps serving" if champion else "there is no champion yet"
    metadata: dict[str, Any] = {
        "decision": dg.MetadataValue.text("blocked"),
        "pipeline": dg.MetadataValue.text(pipeline),
        "challenger": dg.MetadataValue.text(version),
        "champion": dg.MetadataValue.text(str(champion or "none")),
        "failed_rules": dg.MetadataValue.text(", ".join(rules)),
    }
    for rule_verdict, values in failed:
        shown = {k: values[k] for k in ("metric", "actual", "threshold", "summary") if k in values}
        metadata.update(typed_metadata({f"{rule_verdict.rule}.{k}": v for k, v in shown.items()}))
    metadata["verdict"] = link(verdict)
    metadata["model_card"] = link(model_card)
    return dg.Failure(
        description=(
            f"BLOCKED by {', '.join(rules)}: {first.message}{more}; {pipeline} {version} stays "
            f"a challenger, {keeps}"
        ),
        metadata=metadata,
        allow_retries=False,
    )


def build_champion(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, champion]`` asset: moves the champion alias to a version that passed the gate."""

    @pipeline_asset(
        spec,
        "champion",
        description="The production champion: moved only after every gate check passed.",
        kinds={"lockgate"},
        ins={"evaluation": "evaluation_report"},
    )
    def champion(
        context: dg.AssetExecutionContext,
        evaluation: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
        audit: AuditTrail,
    ) -> dg.Output[dict[str, Any]]:

        version = evaluation["version"]
        passing_verdict(artifacts, spec.name, cast(GatedEvaluationRef, evaluation))
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
