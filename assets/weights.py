"""model_weights asset: train, lock and store one model version."""
# no `from __future__ import annotations`: Dagster reads these annotations at definition time

from typing import Any

import dagster as dg

from lockgate.resources.artifacts import ArtifactRegistry
from lockgate.spec import ModelPipeline

__all__ = ["build_model_weights"]


def build_model_weights(spec: ModelPipeline) -> dg.AssetsDefinition:
    """The ``[name, model_weights]`` asset: a model version locked to its triad."""

    @dg.asset(
        key=spec.asset_key("model_weights"),
        group_name=spec.name,
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
        io_manager_key="lockgate_io",
        ins={"snapshot": dg.AssetIn(key=spec.asset_key("feature_snapshot"))},
        metadata={"trainer": spec.trainer.kind, "seed": spec.trainer.seed},
    )
    def model_weights(
        context: dg.AssetExecutionContext, snapshot: dict[str, Any], artifacts: ArtifactRegistry
    ) -> dg.Output[dict[str, Any]]:
        from lockgate.build import load_snapshot_frame, require_validated, train_version

        frame_sha = snapshot["frame_sha256"]
        require_validated(artifacts, frame_sha)
        frame = load_snapshot_frame(artifacts, frame_sha)
        manifest = artifacts.snapshot_manifest(frame_sha)
        lock, files, _ = train_version(
            pipeline=spec.name,
            snapshot={
                k: manifest[k]
                for k in ("frame_sha256", "file_sha256", "rows", "feature_service", "feature_refs")
            }
            | {"feast": manifest["feast"], "labels_source": manifest["labels_source"]},
            frame=frame,
            trainer_config=spec.trainer.config(),
            features=[f for f in snapshot["features"] if f not in spec.exclude_features],
            label=spec.label,
            timestamp_column=snapshot["timestamp_column"],
            holdout_fraction=spec.split.holdout_fraction,
            gold=spec.gate.gold.model_dump() if spec.gate is not None else None,
            code_path=spec.project_dir,
            task=spec.task,
        )
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
                "files": dg.MetadataValue.json(lock["artifact"]["files"]),
                "environment": dg.MetadataValue.json(lock["environment"]),
                "lock_record": dg.MetadataValue.path(lock_uri),
                "reproduce": f"lockgate reproduce {spec.name} {version}",
            },
            data_version=dg.DataVersion(version),
        )

    return model_weights
