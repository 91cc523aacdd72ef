"""Lock records: what exactly made a model version (the triad and everything around it).

A model version is locked to its **triad**: the code commit, the data snapshot hash and the
model's files: the weights hash and ``files_sha256``, the hash of every stored file's sha256
(weights, preprocessing, exports), so that every file that is served is part of the version id.
The lock record adds what a rebuild needs (trainer config and seed, features, label, split) and
what explains a difference (library versions, Feast fingerprints). Records are pure data built by
pure functions; the registry stores them immutably beside the weights, with a keyed signature
(:func:`sign_lock_bytes`, ``lock.sig``) so that an edited record whose hashes were recomputed is
refused too.

Checks on every read (:func:`verify_lock_record`): the record's self-hash; its triad derived
from the record itself (the code commit, the snapshot, the weights file's and every file's
sha256); the version id derived from the triad; the pipeline and version of the folder it was
read from. Records of schema 1 (before ``files_sha256``) keep their version ids, derived from the
weights hash alone; their signature covers the other files.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from lockgate.errors import ArtifactIntegrityError
from lockgate.lineage.hashing import sha256_json
from lockgate.lineage.project import CodeVersion, code_version

if TYPE_CHECKING:
    from lockgate.lineage.signing import SigningKey

__all__ = [
    "LOCK_SCHEMA_VERSION",
    "LOCK_SIGNATURE_FORMAT",
    "TRACKED_PACKAGES",
    "CodeVersion",
    "build_lock_record",
    "check_lock_signature",
    "code_version",
    "environment_versions",
    "files_sha256",
    "model_version_id",
    "sign_lock_bytes",
    "verify_lock_record",
]

LOCK_SCHEMA_VERSION = 2
LOCK_SIGNATURE_FORMAT = "lockgate-lock-signature-v1"
"""The ``format`` of ``lock.sig``: HMAC-SHA256 over the exact bytes of ``lock.json``."""
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


def files_sha256(files: Mapping[str, str]) -> str:
    """The hash of a model's files: sha256 of the canonical JSON of ``{name: sha256}``."""
    return sha256_json(dict(sorted(files.items())))


def model_version_id(
    *,
    code_commit: str,
    snapshot_sha256: str,
    weights_sha256: str,
    files_sha256: str | None = None,
) -> str:
    """The version id of a model: derived from its triad, so a rebuild gets the same id.

    ``files_sha256`` (:func:`files_sha256` of every file) is part of it since lock schema 2;
    None gives the id of a schema-1 record (weights only).
    """
    if files_sha256 is None:
        return sha256_json([code_commit, snapshot_sha256, weights_sha256])[:12]
    return sha256_json([code_commit, snapshot_sha256, weights_sha256, files_sha256])[:12]


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
    checkout, its commit (:func:`lockgate.lineage.project.lockgate_code`).

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
        "files_sha256": files_sha256(files),
    }
    version = model_version_id(
        code_commit=code.commit,
        snapshot_sha256=snapshot["frame_sha256"],
        weights_sha256=weights_sha,
        files_sha256=triad["files_sha256"],
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


def _edited(record: Mapping[str, Any], what: str) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"lock record of {record.get('pipeline')}/{record.get('version')} {what}: it was edited "
        "after it was written; restore lock.json from a backup of the registry, or retrain the "
        "version"
    )


def verify_lock_record(
    record: Mapping[str, Any], *, pipeline: str | None = None, version: str | None = None
) -> None:
    """Check a lock record (pure): its self-hash, its triad, its version id and its folder.

    The triad is derived from the record itself (code commit, snapshot hash, the weights file's
    sha256 and, from schema 2, the hash of every file's sha256), the version id from the triad;
    ``pipeline`` and ``version`` (when given) are the folder the record was read from.

    Raises:
        ArtifactIntegrityError: the record was edited after it was written, or it belongs to
            another folder.
    """
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    actual = sha256_json(body)
    if actual != record.get("record_sha256"):
        raise _edited(
            record,
            f"has content hash {actual[:12]} but records {str(record.get('record_sha256'))[:12]}",
        )
    try:
        schema = record["schema_version"]
        triad = record["triad"]
        files = record["artifact"]["files"]
        derived = {
            "code_commit": record["code"]["commit"],
            "data_snapshot_sha256": record["data"]["frame_sha256"],
            "weights_sha256": files[record["artifact"]["weights_file"]],
        }
        if schema >= 2:
            derived["files_sha256"] = files_sha256(files)
    except (KeyError, TypeError) as exc:
        raise _edited(record, f"lacks a field of the lock format ({exc!r})") from exc
    if schema not in (1, LOCK_SCHEMA_VERSION):
        raise ArtifactIntegrityError(
            f"lock record of {record.get('pipeline')}/{record.get('version')} has schema "
            f"{schema!r}; rule: this lockgate reads schemas 1..{LOCK_SCHEMA_VERSION}; fix: "
            "upgrade lockgate"
        )
    if dict(triad) != derived:
        differ = sorted(k for k in set(triad) | set(derived) if triad.get(k) != derived.get(k))
        raise _edited(record, f"has a triad that does not match its own content ({differ})")
    expected = model_version_id(
        code_commit=triad["code_commit"],
        snapshot_sha256=triad["data_snapshot_sha256"],
        weights_sha256=triad["weights_sha256"],
        files_sha256=triad.get("files_sha256"),
    )
    if expected != record.get("version"):
        raise _edited(
            record, f"has version {record.get('version')!r} but its triad gives {expected!r}"
        )
    wrong_pipeline = pipeline is not None and record.get("pipeline") != pipeline
    if wrong_pipeline or (version is not None and expected != version):
        raise ArtifactIntegrityError(
            f"the lock record in the folder of {pipeline}/{version} is the record of "
            f"{record.get('pipeline')}/{expected}; rule: a version's folder holds its own record; "
            f"fix: restore models/{pipeline}/{version}/ from a backup of the registry, or retrain"
        )


def sign_lock_bytes(lock_bytes: bytes, key: SigningKey) -> dict[str, Any]:
    """The signature document (``lock.sig``) of a stored lock record's exact bytes (pure).

    Example:
        >>> from lockgate.lineage.signing import SigningKey
        >>> sig = sign_lock_bytes(b"{}", SigningKey(b"k" * 32, source="a test"))
        >>> sig["format"], sig["scheme"]
        ('lockgate-lock-signature-v1', 'hmac-sha256')
    """
    from lockgate.lineage.signing import signature_document

    return signature_document(LOCK_SIGNATURE_FORMAT, lock_bytes, key, digest_field="lock_sha256")


def check_lock_signature(
    signature: Mapping[str, Any], lock_bytes: bytes, key: SigningKey, *, where: str
) -> None:
    """Check ``lock.sig`` against the stored lock record's bytes (pure).

    Raises:
        ArtifactIntegrityError: another key signed it (named by key id) or the signature does
            not match: the record or its signature was forged or edited.
    """
    from lockgate.lineage.signing import check_signed_bytes

    check_signed_bytes(
        signature,
        lock_bytes,
        key,
        fmt=LOCK_SIGNATURE_FORMAT,
        what=f"the lock record of {where}",
        fix="restore lock.json and lock.sig from a backup of the registry, or retrain the version",
    )
