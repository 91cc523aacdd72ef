"""model_weights asset: train, lock and store one model version."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

from collections.abc import Mapping
from typing import Any, Literal

import dagster as dg

from lockgate.assets.declare import deployed_version_key, pipeline_asset
from lockgate.lineage.registry import ArtifactRegistry
from lockgate.serving.canary_state import CanaryStateRecord
from lockgate.serving.stack import ServingStack
from lockgate.spec import ModelPipeline

__all__ = [
    "GPU_DEVICES",
    "RESOURCE_TAG",
    "build_model_registry",
    "build_model_weights",
    "model_registry_event",
    "model_registry_metadata",
    "model_registry_rows",
    "training_resource",
    "training_run_tags",
]

RESOURCE_TAG = "lockgate/resource"
"""Run and op tag naming the accelerator a pipeline trains on: ``gpu`` or ``cpu``. The queued run
coordinator limits runs tagged ``gpu`` (:func:`lockgate.dagster_instance.instance_config`)."""

GPU_DEVICES = frozenset({"cuda", "gpu"})
"""Device names (before any ``:<index>``) that mean training on an NVIDIA GPU."""


def training_resource(spec: ModelPipeline) -> Literal["cpu", "gpu"]:
    """``"gpu"`` when the pipeline's trainer trains on a GPU, else ``"cpu"``.

    A trainer trains on a GPU when it has a ``device`` setting (a field of a
    :class:`~lockgate.training.CustomTrainer`, e.g. ``device: str = "cuda"``) whose device type is
    ``cuda`` or ``gpu`` (``"cuda:1"`` and a ``torch.device`` count too). The built-in trainers
    train on the CPU (bit-identical results), so their pipelines are ``"cpu"``.

    Example:
        >>> training_resource(spec)  # doctest: +SKIP
        'cpu'
    """
    device = getattr(spec.trainer, "device", None)
    if device is None:
        return "cpu"
    kind = str(device).split(":", 1)[0].strip().lower()
    return "gpu" if kind in GPU_DEVICES else "cpu"


def training_run_tags(spec: ModelPipeline) -> dict[str, str]:
    """The tags of a pipeline's training runs: ``{RESOURCE_TAG: "gpu" | "cpu"}``."""
    return {RESOURCE_TAG: training_resource(spec)}


def _training_columns(
    spec: ModelPipeline, features: list[str], timestamp_column: str, manifest: Mapping[str, Any]
) -> list[str] | None:
    """The snapshot columns lockgate's own trainers read (the features and the label), in
    stored order; None for a team's own trainer (it may read any column) or when one of them,
    the time column or the gold key is not stored (the full read's error names it)."""
    if not type(spec.trainer).__module__.startswith("lockgate."):
        return None
    stored = manifest.get("schema", {})
    wanted = dict.fromkeys([*features, spec.label])
    also = [timestamp_column, *([spec.gate.gold.key] if spec.gate is not None else [])]
    if any(c not in stored for c in [*wanted, *also]):
        return None
    return [c for c in stored if c in wanted]


def build_model_weights(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, model_weights]`` asset: a model version locked to its triad."""

    @pipeline_asset(
        spec,
        "model_weights",
        description=(
            f"{spec.trainer.kind} model trained on the snapshot, stored with its lock record "
            "(code commit, data snapshot hash, weights hash)."
        ),
        kinds={
            spec.trainer.kind,
            {"torch": "safetensors", "lightgbm": "lightgbm"}.get(
                spec.trainer.kind, spec.trainer.kind
            ),
        },
        ins={"snapshot": "feature_snapshot"},
        metadata={"trainer": spec.trainer.kind, "seed": spec.trainer.seed},
        op_tags=training_run_tags(spec),
    )
    def model_weights(
        context: dg.AssetExecutionContext,
        snapshot: dict[str, Any],
        artifacts: dg.ResourceParam[ArtifactRegistry],
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.lineage.steps import (
            load_snapshot_frame,
            load_training_frame,
            release_memory,
            require_validated,
            train_version,
        )

        frame_sha = snapshot["frame_sha256"]
        require_validated(artifacts, frame_sha)
        manifest = artifacts.snapshot_manifest(frame_sha)
        features = [f for f in snapshot["features"] if f not in spec.exclude_features]
        gold = spec.gate.gold.model_dump() if spec.gate is not None else None
        columns = _training_columns(spec, features, snapshot["timestamp_column"], manifest)
        selected = False
        if columns is None:  # a team's own trainer sees every column of every row, as before
            frame = load_snapshot_frame(artifacts, frame_sha)
        else:  # lockgate's trainers: the features and the label of the training rows only
            frame, selected = load_training_frame(
                artifacts,
                frame_sha,
                columns=columns,
                timestamp_column=snapshot["timestamp_column"],
                holdout_fraction=spec.split.holdout_fraction,
                gold=gold,
            )
        lock, files, _ = train_version(
            pipeline=spec.name,
            snapshot={
                k: manifest[k]
                for k in ("frame_sha256", "file_sha256", "rows", "feature_service", "feature_refs")
            }
            | {"feast": manifest["feast"], "labels_source": manifest["labels_source"]},
            frame=frame,
            trainer_config=spec.trainer.config(),
            features=features,
            label=spec.label,
            timestamp_column=snapshot["timestamp_column"],
            holdout_fraction=spec.split.holdout_fraction,
            gold=gold,
            code_path=spec.project_dir,
            task=spec.task,
            rows_selected=selected,
        )
        del frame
        release_memory()  # the frame and LightGBM's buffers: later steps start without them
        version = lock["version"]
        if artifacts.has_model_version(spec.name, version):
            context.log.info(f"model version {version} already stored: identical triad")
            lock = artifacts.lock_record(spec.name, version)
        else:
            artifacts.put_model_version(spec.name, version, files, lock)
        if spec.gate is not None:
            artifacts.move_alias(
                spec.name,
                "challenger",
                version,
                actor=f"dagster run {context.run_id}",
                reason="newly trained model version awaits the gate",
            )
        triad = lock["triad"]
        lock_uri = artifacts.uri(f"{artifacts.model_prefix(spec.name, version)}/lock.json")
        context.log.info(f"model version {version}: weights {triad['weights_sha256'][:12]}")
        return dg.Output(
            {
                "pipeline": spec.name,
                "version": version,
                "weights_sha256": triad["weights_sha256"],
                "snapshot_sha256": triad["data_snapshot_sha256"],
                "code_commit": triad["code_commit"],
            },
            metadata={
                "version": version,
                "code_commit": triad["code_commit"],
                "code_dirty": str(lock["code"]["dirty"]),
                "code_source": str(lock["code"]["source"]),
                "lockgate": dg.MetadataValue.json(lock.get("lockgate") or {}),
                "data_snapshot_sha256": triad["data_snapshot_sha256"],
                "weights_sha256": triad["weights_sha256"],
                "trainer": dg.MetadataValue.json(lock["trainer"]),
                "train_rows": lock["split"]["train_rows"],
                # what the model reads: a dropped feature is visible without opening the lock
                "feature_count": len(lock.get("features") or []),
                "features": ", ".join(lock.get("features") or []) or "none",
                "files": dg.MetadataValue.json(lock["artifact"]["files"]),
                "environment": dg.MetadataValue.json(lock["environment"]),
                "lock_record": dg.MetadataValue.path(lock_uri),
                "reproduce": f"lockgate reproduce {spec.name} {version}",
            },
            data_version=dg.DataVersion(version),
        )

    return model_weights


def _traffic(
    version: str, champion: str | None, canary: CanaryStateRecord | None, served: bool
) -> float | None:
    """The share of live requests ``version`` answers, in percent (None: not served here)."""
    if not served:
        return None
    state: Mapping[str, Any] = canary or {}
    if state.get("status") == "running" and version in (
        state.get("champion"),
        state.get("challenger"),
    ):
        weight = float(state.get("weight") or 0.0)  # shadow phase: 0, the challenger mirrors
        share = weight if version == state.get("challenger") else 1.0 - weight
        return round(100.0 * share, 2)
    return 100.0 if version == champion else 0.0


def model_registry_rows(
    artifacts: ArtifactRegistry,
    pipeline: str,
    *,
    canary: CanaryStateRecord | None = None,
    served: bool = False,
    gated: bool = True,
) -> list[dict[str, Any]]:
    """Every model version of ``pipeline``, newest first: triad, gate verdict, role, traffic.

    Args:
        artifacts: the registry (lock records, verdicts, aliases).
        pipeline: the pipeline name.
        canary: the persisted canary state (``ServingStack.canary_state``), if any.
        served: whether the pipeline serves live traffic (traffic shares are then numbers).
        gated: whether the pipeline has a gate (a version without a verdict is then
            ``pending``, else ``ungated``).

    Returns:
        One dict per version: ``version, role, traffic_pct, verdict, failed_rules, trained_at,
        code_commit, data_snapshot, weights, features``. ``role`` is ``champion``,
        ``challenger`` (the challenger alias, or the version a running canary tries),
        ``previous champion`` or empty; ``verdict`` is the latest gate verdict's ``passed`` /
        ``blocked``, or ``pending`` (not judged yet) or ``ungated``.
    """
    state = artifacts.aliases(pipeline)
    champion = state["aliases"].get("champion")
    challenger = state["aliases"].get("challenger")
    if canary and canary.get("status") == "running":
        challenger = canary.get("challenger") or challenger
    former = {h["from"] for h in state["history"] if h["alias"] == "champion" and h["from"]}
    rows = []
    created: list[str] = []
    for version in artifacts.model_versions(pipeline):
        lock = artifacts.lock_record(pipeline, version)
        verdicts = artifacts.verdicts(pipeline, version)
        if verdicts:
            latest = verdicts[-1]
            verdict = "passed" if latest.get("passed") else "blocked"
            failed = ",".join(r["rule"] for r in latest.get("rules", []) if not r.get("passed"))
        else:
            verdict = "pending" if gated else "ungated"
            failed = ""
        role = (
            "champion"
            if version == champion
            else "challenger"
            if version == challenger
            else "previous champion"
            if version in former
            else ""
        )
        triad = lock["triad"]
        created.append(str(lock.get("created_at", "")))
        rows.append(
            {
                "version": version,
                "role": role,
                "traffic_pct": _traffic(version, champion, canary, served),
                "verdict": verdict,
                "failed_rules": failed,
                # to the minute ("2026-12-02 14:05"), so the table fits the asset page
                "trained_at": str(lock.get("created_at", ""))[:16].replace("T", " "),
                "code_commit": str(triad["code_commit"])[:12]
                + ("+dirty" if (lock.get("code") or {}).get("dirty") else ""),
                "data_snapshot": str(triad["data_snapshot_sha256"])[:12],
                "weights": str(triad["weights_sha256"])[:12],
                "features": len(lock.get("features") or []),
            }
        )
    order = sorted(
        range(len(rows)), key=lambda i: (created[i], rows[i]["version"]), reverse=True
    )  # newest first by the full time, though the table shows it to the minute
    return [rows[i] for i in order]


REGISTRY_COLUMNS = [
    "version",
    "role",
    "traffic_pct",
    "verdict",
    "failed_rules",
    "trained_at",
    "code_commit",
    "data_snapshot",
    "weights",
    "features",
]


def model_registry_metadata(
    artifacts: ArtifactRegistry,
    pipeline: str,
    *,
    canary: CanaryStateRecord | None = None,
    served: bool = False,
    gated: bool = True,
    reason: str = "",
) -> dict[str, Any]:
    """The registry view as Dagster metadata: a table of versions (newest first) and the roles
    at a glance. ``reason`` says what changed (shown on the materialization)."""
    from lockgate.assets.gate import records_table

    rows = model_registry_rows(artifacts, pipeline, canary=canary, served=served, gated=gated)
    champion = next((r for r in rows if r["role"] == "champion"), None)
    challenger = next((r for r in rows if r["role"] == "challenger"), None)
    metadata: dict[str, Any] = {
        "versions": records_table(rows, REGISTRY_COLUMNS),
        "champion": champion["version"] if champion else "none",
        "challenger": challenger["version"] if challenger else "none",
        "version_count": dg.MetadataValue.int(len(rows)),
        "aliases": dg.MetadataValue.path(artifacts.uri(f"aliases/{pipeline}.json")),
    }
    if served and champion is not None and champion["traffic_pct"] is not None:
        metadata["champion_traffic_pct"] = dg.MetadataValue.float(float(champion["traffic_pct"]))
    if served and challenger is not None and challenger["traffic_pct"] is not None:
        metadata["challenger_traffic_pct"] = dg.MetadataValue.float(
            float(challenger["traffic_pct"])
        )
    if reason:
        metadata["changed_because"] = reason[:1000]
    return metadata


def model_registry_event(
    spec: ModelPipeline,
    artifacts: ArtifactRegistry,
    *,
    canary: CanaryStateRecord | None = None,
    reason: str = "",
) -> dg.AssetMaterialization:
    """A ``[name, model_registry]`` materialization of the registry as it is now.

    For whoever moves an alias or the traffic outside the train job's last step: the gate
    checks (a blocked challenger), the canary controller (advance, promotion, rollback). A
    sensor returns it in ``SensorResult(asset_events=[...])``; an op logs it with
    ``context.log_event``.

    Example:
        >>> # SensorResult(asset_events=[model_registry_event(spec, artifacts,
        >>> #     canary=stack.canary_state(spec.name), reason="promoted v2")])
    """
    return dg.AssetMaterialization(
        asset_key=spec.asset_key("model_registry"),
        description=(reason or "model registry of " + spec.name)[:2000],
        metadata=model_registry_metadata(
            artifacts,
            spec.name,
            canary=canary,
            served=spec.serving is not None,
            gated=spec.gate is not None,
            reason=reason,
        ),
    )


def build_model_registry(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, model_registry]`` asset: every version with its triad, verdict and role."""
    deployed = deployed_version_key(spec)
    deps = [spec.asset_key("model_weights"), spec.asset_key("evaluation_report")]
    deps += [deployed] if deployed is not None else []

    @pipeline_asset(
        spec,
        "model_registry",
        deps=deps,
        kinds={"lockgate"},
        description=(
            "Every model version, newest first: code commit, data snapshot and weights hashes, "
            "gate verdict, champion/challenger role and traffic share (re-recorded on every "
            "promotion and rollback)."
        ),
        stored=False,
    )
    def model_registry(
        context: dg.AssetExecutionContext,
        artifacts: dg.ResourceParam[ArtifactRegistry],
        serving_stack: dg.ResourceParam[ServingStack],
    ) -> dg.MaterializeResult[Any]:
        canary = serving_stack.canary_state(spec.name) if spec.serving is not None else None
        metadata = model_registry_metadata(
            artifacts,
            spec.name,
            canary=canary,
            served=spec.serving is not None,
            gated=spec.gate is not None,
            reason=f"train run {context.run.run_id}",
        )
        context.log.info(
            f"{spec.name} registry: {metadata['version_count'].value} versions, champion "
            f"{metadata['champion']}, challenger {metadata['challenger']}"
        )
        return dg.MaterializeResult(metadata=metadata)

    return model_registry
