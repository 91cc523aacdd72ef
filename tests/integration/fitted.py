"""A model fitted in the test and stored in a real registry as lockgate stores a version (snapshot
manifest, signed lock record, files), without a training run: what the serving tests load."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lockgate.lineage.hashing import sha256_bytes
from lockgate.lineage.lock import CodeVersion, build_lock_record
from lockgate.lineage.registry import LocalArtifactRegistry
from lockgate.training import TrainedModel


def store_fitted(
    registry: LocalArtifactRegistry,
    pipeline: str,
    trainer: Any,
    frame: pd.DataFrame,
    *,
    snapshot: str,
    features: list[str],
    label: str,
    manifest_features: list[str] | None = None,
) -> tuple[str, TrainedModel]:
    """Fits ``trainer`` on ``frame`` and stores the version under ``pipeline``, its lock naming
    snapshot ``snapshot`` (whose manifest, listing ``manifest_features`` or ``features``, the wire
    schema comes from); returns the version and the model."""
    model = trainer.fit(frame, features=features, label=label)
    files = model.files()
    registry.put_snapshot(  # the manifest the wire schema comes from
        snapshot,
        b"not read by serving",
        {
            "features": manifest_features or features,
            "schema": {c: str(t) for c, t in frame.dtypes.items()},
        },
    )
    lock = build_lock_record(
        pipeline=pipeline,
        code=CodeVersion("c0ffee", False, "test"),
        snapshot={"frame_sha256": snapshot},
        trainer=trainer.config(),
        features=features,
        label=label,
        split={"holdout_fraction": 0.2, "timestamp_column": "ts"},
        weights_file=model.weights_file,
        files={name: sha256_bytes(data) for name, data in files.items()},
        environment={"python": "3.11", "packages": {}},
    )
    registry.put_model_version(pipeline, lock["version"], files, lock)
    return lock["version"], model
