"""Lock records: what exactly made a model version (the triad and everything around it).

A model version is locked to its **triad**: the code commit, the data snapshot hash and the
weights hash. The lock record adds what a rebuild needs (trainer config and seed, features,
label, split) and what explains a difference (library versions, Feast fingerprints). Records are
pure data built by pure functions; the registry stores them immutably beside the weights.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from lockgate.errors import ArtifactIntegrityError
from lockgate.hashing import sha256_json
from lockgate.project import CodeVersion, code_version

__all__ = [
    "LOCK_SCHEMA_VERSION",
    "TRACKED_PACKAGES",
    "CodeVersion",
    "build_lock_record",
    "code_version",
    "environment_versions",
    "model_version_id",
    "verify_lock_record",
]

LOCK_SCHEMA_VERSION = 1
TRACKED_PACKAGES = (
    "lockgate",
    "lightgbm",
    "torch",
    "safetensors",
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "feast",
    "great-expectations",
    "dagster",
)


def environment_versions(packages: Sequence[str] = TRACKED_PACKAGES) -> dict[str, Any]:
    """Python, platform and the installed version of each tracked package (None if absent)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "packages": versions,
    }


def model_version_id(*, code_commit: str, snapshot_sha256: str, weights_sha256: str) -> str:
    """The version id of a model: derived from its triad, so a rebuild gets the same id."""
    return sha256_json([code_commit, snapshot_sha256, weights_sha256])[:12]


def build_lock_record(
    *,
    pipeline: str,
    code: CodeVersion,
    snapshot: Mapping[str, Any],
    trainer: Mapping[str, Any],
    features: Sequence[str],
    label: str,
    split: Mapping[str, Any],
    weights_file: str,
    files: Mapping[str, str],
    environment: Mapping[str, Any],
    created_at: datetime | None = None,
    project_dir: str | None = None,
    lockgate: Mapping[str, Any] | None = None,
    task: str = "binary",
) -> dict[str, Any]:
    """Build a lock record (pure). ``files`` maps file name -> sha256.

    ``code`` is the commit of the user's project (the repository that defines the pipeline,
    found from ``project_dir``); ``lockgate`` is lockgate's own version and, when it runs from a
    checkout, its commit (:func:`lockgate.project.lockgate_code`).

    Example:
        >>> rec = build_lock_record(pipeline="fraud", code=CodeVersion("abc", False, "git"),
        ...     snapshot={"frame_sha256": "f" * 64}, trainer={"kind": "lightgbm", "seed": 1},
        ...     features=["amount"], label="is_fraud", split={"holdout_fraction": 0.2},
        ...     weights_file="model.txt", files={"model.txt": "e" * 64},
        ...     environment={"python": "3.11"})
        >>> rec["triad"]["weights_sha256"] == "e" * 64
        True
    """
    weights_sha = files[weights_file]
    triad = {
        "code_commit": code.commit,
        "data_snapshot_sha256": snapshot["frame_sha256"],
        "weights_sha256": weights_sha,
    }
    version = model_version_id(
        code_commit=code.commit,
        snapshot_sha256=snapshot["frame_sha256"],
        weights_sha256=weights_sha,
    )
    body: dict[str, Any] = {
        "schema_version": LOCK_SCHEMA_VERSION,
        "pipeline": pipeline,
        "version": version,
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
        "triad": triad,
        "code": {**code.as_dict(), "project_dir": project_dir},
        "lockgate": dict(lockgate) if lockgate is not None else None,
        "data": dict(snapshot),
        "trainer": dict(trainer),
        "features": list(features),
        "label": label,
        "task": task,
        "split": dict(split),
        "artifact": {"weights_file": weights_file, "files": dict(sorted(files.items()))},
        "environment": dict(environment),
    }
    body["record_sha256"] = sha256_json(body)
    return body


def verify_lock_record(record: Mapping[str, Any]) -> None:
    """Check a lock record's self-hash and that its version matches its triad.

    Raises:
        ArtifactIntegrityError: the record was edited after it was written.
    """
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    actual = sha256_json(body)
    if actual != record.get("record_sha256"):
        raise ArtifactIntegrityError(
            f"lock record of {record.get('pipeline')}/{record.get('version')} has content hash "
            f"{actual[:12]} but records {str(record.get('record_sha256'))[:12]}: it was edited "
            "after it was written; restore it from a backup"
        )
    triad = record["triad"]
    expected = model_version_id(
        code_commit=triad["code_commit"],
        snapshot_sha256=triad["data_snapshot_sha256"],
        weights_sha256=triad["weights_sha256"],
    )
    if expected != record.get("version"):
        raise ArtifactIntegrityError(
            f"lock record version {record.get('version')!r} does not match its triad "
            f"(expected {expected!r}); the record was edited: restore it from a backup"
        )
