"""The gate's UI surface on a real Dagster instance: typed check metadata, run tags, inline views."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from lockgate.evaluation.gate import GATE_RULES

from .test_gate import KEY_FEATURES, champion, gate_data, source_data, spec, train  # noqa: F401


def _check_records(instance: dg.DagsterInstance, key: dg.AssetKey, rule: str) -> list:
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(key, rule), limit=10
    )
    return [r.event.dagster_event.event_specific_data for r in records if r.event]


def test_a_blocked_run_reads_as_a_decision_with_typed_numbers(env, instance) -> None:
    strong = spec()
    first = train(strong, env, instance)
    assert first.success
    incumbent = champion(env)
    weak = spec(exclude=KEY_FEATURES)
    blocked = train(weak, env, instance)
    assert not blocked.success

    # run tags: the runs list tells pipeline, version and verdict without opening the run
    tags = instance.get_run_by_id(blocked.run_id).tags
    assert tags["lockgate/pipeline"] == "fraud"
    assert tags["lockgate/verdict"] == "blocked"
    assert tags["lockgate/version"] != incumbent
    assert "gate_vs_champion" in tags["lockgate/failed_rules"].split(",")
    assert tags["lockgate/reason"].startswith(tags["lockgate/failed_rules"].split(",")[0])
    assert instance.get_run_by_id(first.run_id).tags["lockgate/verdict"] == "passed"

    key = weak.asset_key("evaluation_report")
    for rule in GATE_RULES:
        evaluations = _check_records(instance, key, rule)
        assert len(evaluations) == 2, rule  # the passing first run and the blocked one
        metrics = {e.metadata["metric"].value for e in evaluations}
        assert len(metrics) == 1, (rule, metrics)  # one metric per check across runs
        for e in evaluations:
            head = "passed" if e.passed else "BLOCKED by"
            assert e.description.startswith(f"{head} {rule}: "), e.description
            if "actual" in e.metadata:
                assert isinstance(e.metadata["actual"], dg.FloatMetadataValue), rule
    vs = _check_records(instance, key, "gate_vs_champion")[0]  # newest first: the blocked run
    assert not vs.passed
    assert vs.metadata["actual"].value < 0
    assert vs.metadata["change_roc_auc_lower"].value < vs.metadata["change_roc_auc_upper"].value
    card = vs.metadata["model_card"].value
    assert card.endswith("-model_card.md")
    assert "# Model card: fraud" in Path(card).read_text()

    # the evaluation's asset page: numbers typed, charts and tables in place, no PNG bytes
    event = instance.get_latest_materialization_event(key)
    meta = event.asset_materialization.metadata
    assert isinstance(meta["roc_auc_lower"], dg.FloatMetadataValue)
    assert meta["roc_auc_lower"].value < meta["roc_auc"].value < meta["roc_auc_upper"].value
    for name in ("plot_roc", "plot_pr", "plot_calibration"):
        assert len(meta[name].value) < 1000, name  # Dagster renders it on the page
    assert isinstance(meta["slices"], dg.TableMetadataValue)
    dropped = meta["features_dropped_vs_champion"].value.split(", ")
    assert set(dropped) == set(KEY_FEATURES)  # why it is worse, on the page
    assert meta["features_added_vs_champion"].value == "none"
    assert meta["png_roc"].value.endswith("-roc.png")
    assert sum(len(str(v.value)) for v in meta.values()) < 30_000  # was ~270 KB of base64
