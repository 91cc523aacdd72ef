"""The model registry view and the challenger-vs-champion comparison on a real Dagster instance."""

from __future__ import annotations

import dagster as dg

from lockgate.assets.weights import model_registry_event, model_registry_rows

from .test_gate import KEY_FEATURES, champion, gate_data, registry, source_data, spec, train  # noqa: F401


def _table(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[list[dict], dict]:
    event = instance.get_latest_materialization_event(key)
    assert event is not None, key
    meta = event.asset_materialization.metadata
    return [r.data for r in meta["versions"].records], meta


def test_registry_lists_every_version_with_verdict_role_and_triad(env, instance) -> None:
    strong = spec()
    assert train(strong, env, instance).success
    incumbent = champion(env)
    key = strong.asset_key("model_registry")
    rows, meta = _table(instance, key)  # the train job's last step recorded it
    assert [(r["version"], r["role"], r["verdict"]) for r in rows] == [
        (incumbent, "champion", "passed")
    ]
    assert meta["champion"].value == incumbent
    lock = registry(env).lock_record("fraud", incumbent)
    assert rows[0]["weights"] == lock["triad"]["weights_sha256"][:12]
    assert rows[0]["data_snapshot"] == lock["triad"]["data_snapshot_sha256"][:12]
    assert rows[0]["code_commit"].startswith(lock["triad"]["code_commit"][:12])

    weak = spec(exclude=KEY_FEATURES)
    blocked = train(weak, env, instance)
    assert not blocked.success
    # a blocked run never reaches model_registry; the gate recorded the registry itself
    rows, meta = _table(instance, key)
    event = instance.get_latest_materialization_event(key)
    assert event.run_id == blocked.run_id
    newest = rows[0]
    assert newest["version"] != incumbent  # newest first
    assert (newest["role"], newest["verdict"]) == ("challenger", "blocked")
    assert "gate_vs_champion" in newest["failed_rules"].split(",")
    assert newest["features"] == rows[1]["features"] - len(KEY_FEATURES)
    assert (rows[1]["version"], rows[1]["role"]) == (incumbent, "champion")
    assert meta["challenger"].value == newest["version"]
    assert "blocked" in meta["changed_because"].value
    # the weights' page lists what the model reads
    weights = instance.get_latest_materialization_event(weak.asset_key("model_weights"))
    listed = weights.asset_materialization.metadata["features"].value.split(", ")
    assert not set(KEY_FEATURES) & set(listed)
    assert weights.asset_materialization.metadata["feature_count"].value == newest["features"]

    # the evaluation report shows both models side by side
    evaluation = instance.get_latest_materialization_event(weak.asset_key("evaluation_report"))
    side = [r.data for r in evaluation.asset_materialization.metadata["vs_champion"].records]
    auc = next(r for r in side if (r["aspect"], r["name"]) == ("metric", "roc_auc"))
    assert " to " in auc["challenger"]  # an interval
    assert " to " in auc["champion"]
    assert auc["change"].startswith("-")  # the weak challenger is worse
    dropped = {r["name"] for r in side if r["change"] == "dropped"}
    assert dropped == set(KEY_FEATURES)
    assert any(r["aspect"] == "param" for r in side)

    # traffic shares follow the canary state (a served pipeline's controller passes it)
    canary = {"status": "running", "champion": incumbent, "challenger": newest["version"],
              "weight": 0.25}  # fmt: skip
    rows = model_registry_rows(registry(env), "fraud", canary=canary, served=True)
    assert {r["version"]: r["traffic_pct"] for r in rows} == {
        newest["version"]: 25.0,
        incumbent: 75.0,
    }
    # what the canary controller records on each move: a materialization of the registry
    event = model_registry_event(weak, registry(env), canary=canary, reason="advance to 25%")
    assert event.asset_key == key
    assert event.metadata["changed_because"].value == "advance to 25%"
