"""The content-addressed artifact registry: feature snapshots and model versions (plain classes).

One interface, :class:`ArtifactRegistry`, written against four storage primitives (read a key,
write a group of keys atomically, test a key, list a prefix). :class:`LocalArtifactRegistry`
implements them on a local folder; an object-storage registry implements the same four and
inherits everything else.

Layout (keys are ``/``-separated relative paths)::

    snapshots/<frame sha256>.parquet        the canonical training frame
    snapshots/<frame sha256>.json           its manifest (rows, schema, file sha256, fingerprints)
    validations/<frame sha256>.json         the data-quality verdict on that snapshot
    models/<pipeline>/<version>/lock.json   the lock record (lists every file with its sha256)
    models/<pipeline>/<version>/lock.sig    its keyed signature (HMAC-SHA256, lockgate.lineage.signing)
    models/<pipeline>/<version>/<file>      weights and exports (LightGBM text, safetensors, ...)
    reports/<pipeline>/<version>/<name>     evaluation reports, plots, the model card
    verdicts/<pipeline>/<version>/<id>.json gate verdicts: the lock record's attestations
    verdicts/<pipeline>/<version>/<id>.sig  its keyed signature (lockgate.lineage.verdicts)
    aliases/<pipeline>.json                 champion / challenger aliases and their history
    runs/<pipeline>/<version>/<kind>/<run id>.json
                                            per-run measurements (infra validation latencies)

Every group is written at once (temp folder + rename) and never changed afterwards; reading a
model version checks its lock record's signature, self-hash, triad and folder, and re-hashes
each file against it, so a tampered file or a forged record is refused. The signing key is the
``signing_key`` field, else ``$LOCKGATE_SIGNING_KEY``, else ``signing_key_file`` (default
``<root>/../keys/signing.key``, i.e. ``<lockgate home>/keys/signing.key``, created 0600 by the
first write); see :mod:`lockgate.lineage.signing`.

Reruns on the same inputs store nothing new. Documents that carry run provenance (the run id,
the time) are named by the sha256 of their content *without* those fields
(:func:`content_id`): a rerun finds the first run's document and keeps it
(:meth:`ArtifactRegistry.put_record_once`), so reports and verdicts stay immutable and a rerun
says which run judged first. Measurements that differ from run to run by nature (latencies) are
not a version's artifacts: they go to ``runs/``, one record per Dagster run
(:meth:`ArtifactRegistry.put_run_record`).

The classes are plain (frozen pydantic models, no Dagster): the Dagster resource
:class:`lockgate.resources.artifacts.LocalArtifactRegistryResource` holds the same fields as
configuration and hands assets and sensors a :class:`LocalArtifactRegistry`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict

from lockgate.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ImmutableArtifactError,
)
from lockgate.lineage.hashing import canonical_json, sha256_bytes, sha256_file
from lockgate.lineage.lock import check_lock_signature, sign_lock_bytes, verify_lock_record
from lockgate.lineage.signing import (
    KEY_ENV,
    SigningKey,
    load_signing_key,
)

__all__ = ["PROVENANCE_FIELDS", "ArtifactRegistry", "LocalArtifactRegistry", "content_id"]

_RESERVED = ("lock.json", "lock.sig")

PROVENANCE_FIELDS = frozenset({"at", "evaluated_at", "run_id"})
"""Fields that say which run wrote a document and when, not what it says."""


def content_id(document: Mapping[str, Any], *, ignore: Iterable[str] = PROVENANCE_FIELDS) -> str:
    """The 16-hex id of a JSON document's content: sha256 of its canonical JSON, top-level
    fields in ``ignore`` (run provenance by default) left out.

    Two runs on the same inputs produce documents with the same id, whoever ran them and when.

    Example:
        >>> content_id({"passed": True, "run_id": "a"}) == content_id({"passed": True, "run_id": "b"})
        True
    """
    skip = set(ignore)
    return sha256_bytes(canonical_json({k: v for k, v in document.items() if k not in skip}))[:16]


def _check_key(key: str) -> str:
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in key:
        raise ArtifactError(
            f"artifact key {key!r} must be a relative path without '..'; use a name like "
            "'models/fraud/abc123/model.txt'"
        )
    return key


class ArtifactRegistry(BaseModel, ABC):
    """Content-addressed, immutable store of snapshots and model versions.

    Attributes:
        signing_key: The key that signs lock records (production: a secret,
            ``dg.EnvVar("LOCKGATE_SIGNING_KEY")``); None reads ``$LOCKGATE_SIGNING_KEY``, then
            the key file.
        signing_key_file: The key file when no key is given (default: ``keys/signing.key`` in
            the folder above the registry, i.e. the lockgate home's), created 0600 on first write.
    """

    model_config = ConfigDict(frozen=True)

    signing_key: str | None = None
    signing_key_file: str | None = None

    # ---- storage primitives: what an object-storage implementation provides ----------------

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Return the bytes stored at ``key``; ArtifactNotFoundError if there are none."""

    @abstractmethod
    def write_group(self, prefix: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` under ``prefix`` all at once, or nothing; refuse existing files."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a file."""

    @abstractmethod
    def list_prefix(self, prefix: str) -> list[str]:
        """Sorted names directly under ``prefix`` (files and folders)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where ``key`` lives, for people and for readers such as pyarrow."""

    @abstractmethod
    def swap_bytes(self, key: str, expected: bytes | None, data: bytes) -> bool:
        """Replace ``key`` with ``data`` only if it still holds ``expected`` (None: absent).

        The one mutable primitive (compare-and-swap; object stores: conditional put on ETag).
        """

    # ---- everything else is built on the primitives ----------------------------------------

    def read_json(self, key: str) -> Any:
        """Parse the JSON document at ``key``."""
        data = self.read_bytes(key)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ArtifactIntegrityError(
                f"{self.uri(key)} is not valid JSON ({exc}); the file was damaged or edited: "
                "restore it from a backup or rebuild the artifact"
            ) from exc

    def write_files_once(self, prefix: str, files: Mapping[str, bytes]) -> bool:
        """Write an immutable group; return False when identical content is already there.

        Raises:
            ImmutableArtifactError: ``prefix`` exists with different content.
        """
        new: dict[str, bytes] = {}
        for name, data in files.items():
            key = f"{prefix}/{name}"
            if not self.exists(key):
                new[name] = data
            elif sha256_bytes(self.read_bytes(key)) != sha256_bytes(data):
                raise ImmutableArtifactError(
                    f"{self.uri(key)} already exists with different content; artifacts are "
                    "immutable: write a new version instead of changing this one"
                )
        if not new:
            return False
        self.write_group(prefix, new)
        return True

    def put_record_once(
        self,
        prefix: str,
        document: Mapping[str, Any],
        *,
        id_field: str | None = None,
        ignore: Iterable[str] = PROVENANCE_FIELDS,
    ) -> tuple[str, dict[str, Any], bool]:
        """Store a JSON document as ``<prefix>/<content id>.json`` unless it is there already.

        The id is :func:`content_id` of the document without ``ignore`` (run provenance) and
        ``id_field`` (which, when given, is set to the id in the stored document). When a
        document with the same content is stored, the first one is kept, provenance included:
        the verdict for these inputs is already known.

        Returns:
            ``(key, stored document, written)``; ``written`` is False when the first run's
            document was kept.

        Raises:
            ArtifactIntegrityError: the stored document under that id has other content (it
                was edited after it was written).
        """
        skip = set(ignore) | ({id_field} if id_field else set())
        record_id = content_id(document, ignore=skip)
        key = f"{prefix}/{record_id}.json"
        body = dict(document)
        if id_field:
            body[id_field] = record_id
        written = False
        if not self.exists(key):
            try:
                written = self.write_files_once(prefix, {f"{record_id}.json": canonical_json(body)})
            except ImmutableArtifactError:
                written = False  # a concurrent run stored the same content first: keep theirs
        if written:
            return key, body, True
        stored: dict[str, Any] = self.read_json(key)
        if content_id(stored, ignore=skip) != record_id:
            raise ArtifactIntegrityError(
                f"{self.uri(key)} does not hash to its name {record_id} (ignoring "
                f"{sorted(skip)}): it was edited after it was written; restore it from a backup "
                "or delete it so that the next run stores it again"
            )
        return key, stored, False

    def put_run_record(
        self, pipeline: str, version: str, kind: str, run_id: str, record: Mapping[str, Any]
    ) -> str:
        """Store one run's measurement of a model version; return its key.

        Per-run and not immutable: a retried step of the same run replaces its own record, no
        other run's. For what varies between runs by nature (latencies, load times), so that it
        never changes the version's immutable artifacts.
        """
        prefix = f"runs/{_check_key(pipeline)}/{_check_key(version)}/{_check_key(kind)}"
        name = f"{_check_key(run_id)}.json"
        self.write_group(prefix, {name: canonical_json(dict(record))})
        return f"{prefix}/{name}"

    def run_records(self, pipeline: str, version: str, kind: str) -> list[dict[str, Any]]:
        """Every run's record of ``kind`` for a model version, oldest first (by ``at``)."""
        prefix = f"runs/{_check_key(pipeline)}/{_check_key(version)}/{_check_key(kind)}"
        found = [
            self.read_json(f"{prefix}/{name}")
            for name in self.list_prefix(prefix)
            if name.endswith(".json")
        ]
        return sorted(found, key=lambda r: float(r.get("at") or 0.0))

    # snapshots -----------------------------------------------------------------------------

    def snapshot_key(self, frame_sha: str) -> str:
        """Key of the Parquet file of snapshot ``frame_sha``."""
        return f"snapshots/{frame_sha}.parquet"

    def has_snapshot(self, frame_sha: str) -> bool:
        """Whether snapshot ``frame_sha`` is stored (file and manifest)."""
        return self.exists(f"snapshots/{frame_sha}.json") and self.exists(
            self.snapshot_key(frame_sha)
        )

    def snapshot_manifest(self, frame_sha: str) -> dict[str, Any]:
        """The manifest of snapshot ``frame_sha``."""
        key = f"snapshots/{frame_sha}.json"
        if not self.exists(key):
            raise ArtifactNotFoundError(
                f"snapshot {frame_sha[:12]} is not in the registry at {self.uri('snapshots')}; "
                "materialize the pipeline's feature_snapshot again on the same data, or restore "
                "the file from a backup"
            )
        manifest: dict[str, Any] = self.read_json(key)
        return manifest

    def put_snapshot(self, frame_sha: str, parquet: bytes, manifest: Mapping[str, Any]) -> bool:
        """Store a snapshot and its manifest once; False when it was already stored."""
        if self.has_snapshot(frame_sha):
            return False  # content-addressed: the first provenance record is kept
        body = dict(manifest, frame_sha256=frame_sha, file_sha256=sha256_bytes(parquet))
        # the Parquet file first, the manifest last: a snapshot counts only once both exist
        self.write_files_once("snapshots", {f"{frame_sha}.parquet": parquet})
        self.write_files_once("snapshots", {f"{frame_sha}.json": canonical_json(body)})
        return True

    def put_snapshot_file(
        self, frame_sha: str, path: str | Path, manifest: Mapping[str, Any]
    ) -> bool:
        """:meth:`put_snapshot` of the Parquet file at ``path`` (left in place).

        The file is copied or uploaded block by block where the registry can
        (:meth:`_put_file`), never held in memory whole.
        """
        if self.has_snapshot(frame_sha):
            return False  # content-addressed: the first provenance record is kept
        file_sha = sha256_file(path)
        key = self.snapshot_key(frame_sha)
        if not self.exists(key):
            self._put_file(key, Path(path), file_sha)
        elif self._stored_sha256(key) != file_sha:  # a writer died before the manifest
            raise ImmutableArtifactError(
                f"{self.uri(key)} already exists with different content; artifacts are "
                "immutable: write a new version instead of changing this one"
            )
        body = dict(manifest, frame_sha256=frame_sha, file_sha256=file_sha)
        self.write_files_once("snapshots", {f"{frame_sha}.json": canonical_json(body)})
        return True

    def _put_file(self, key: str, path: Path, file_sha: str) -> None:
        """Store the file at ``path`` as ``key`` (this default reads it whole)."""
        prefix, _, name = key.rpartition("/")
        self.write_group(prefix, {name: path.read_bytes()})

    def _stored_sha256(self, key: str) -> str:
        return sha256_bytes(self.read_bytes(key))

    def read_snapshot_bytes(self, frame_sha: str) -> bytes:
        """The Parquet bytes of snapshot ``frame_sha``, checked against the manifest."""
        manifest = self.snapshot_manifest(frame_sha)
        data = self.read_bytes(self.snapshot_key(frame_sha))
        actual = sha256_bytes(data)
        if actual != manifest["file_sha256"]:
            raise ArtifactIntegrityError(
                f"snapshot file {self.uri(self.snapshot_key(frame_sha))} has sha256 {actual[:12]}, "
                f"its manifest says {manifest['file_sha256'][:12]}: the file was changed after it "
                "was written; restore it or materialize the snapshot again"
            )
        return data

    # validations -----------------------------------------------------------------------------

    def put_validation(self, frame_sha: str, verdict: Mapping[str, Any]) -> None:
        """Record the data-quality verdict on a snapshot (the latest verdict wins)."""
        self.write_group("validations", {f"{frame_sha}.json": canonical_json(dict(verdict))})

    def validation(self, frame_sha: str) -> dict[str, Any] | None:
        """The recorded data-quality verdict on a snapshot, or None."""
        key = f"validations/{frame_sha}.json"
        if not self.exists(key):
            return None
        verdict: dict[str, Any] = self.read_json(key)
        return verdict

    # model versions --------------------------------------------------------------------------

    def model_prefix(self, pipeline: str, version: str) -> str:
        """Folder key of one model version."""
        return f"models/{_check_key(pipeline)}/{_check_key(version)}"

    # signing ---------------------------------------------------------------------------------

    def key_file(self) -> str:
        """The signing key file used when no key is configured (``signing_key_file``)."""
        if not self.signing_key_file:
            raise ArtifactError(
                f"{type(self).__name__} has no signing key file; rule: a registry reads its "
                f"signing key from signing_key, {KEY_ENV} or signing_key_file; fix: set one"
            )
        return self.signing_key_file

    def load_key(self, *, create: bool, where: str) -> SigningKey:
        """The signing key (``create``: made on the first write); ``where`` names what needs it.

        Raises:
            ArtifactIntegrityError: no key is configured and ``create`` is False.
        """
        key = load_signing_key(
            key_file=self.key_file(), secret=self.signing_key or None, create=create
        )
        if key is None:
            raise ArtifactIntegrityError(
                f"cannot check the signature of {where}: no signing key is configured "
                f"({KEY_ENV} is unset and the key file {self.key_file()} does not exist); rule: "
                f"lock records are read with the key that signed them; fix: set {KEY_ENV} to "
                "that key or restore the key file"
            )
        return key

    # model versions, continued ---------------------------------------------------------------

    def put_model_version(
        self, pipeline: str, version: str, files: Mapping[str, bytes], lock: Mapping[str, Any]
    ) -> bool:
        """Store a model version (its files, ``lock.json`` and its signature ``lock.sig``) once.

        The record must be the version's (:func:`lockgate.lineage.lock.verify_lock_record` with this
        pipeline and version) and list exactly ``files`` with their sha256.

        Returns:
            False when the identical version is already stored.

        Raises:
            ArtifactIntegrityError: the record does not verify or does not list ``files``.
            ImmutableArtifactError: the version is stored with other content.
        """
        reserved = sorted(set(files) & set(_RESERVED))
        if reserved:
            raise ArtifactError(f"a model file may not be named {reserved}; rename it")
        verify_lock_record(lock, pipeline=pipeline, version=version)
        listed = dict(lock["artifact"]["files"])
        given = {name: sha256_bytes(data) for name, data in files.items()}
        if listed != given:
            differ = sorted(n for n in set(listed) | set(given) if listed.get(n) != given.get(n))
            raise ArtifactIntegrityError(
                f"the lock record of {pipeline}/{version} does not list the files given to store "
                f"(they differ in {differ}); rule: the record lists every stored file with its "
                "sha256; fix: build the record from these files (lockgate.lineage.steps.train_version)"
            )
        group = dict(files)
        group["lock.json"] = canonical_json(dict(lock))
        key = self.load_key(create=True, where=f"{pipeline}/{version}")
        group["lock.sig"] = canonical_json(sign_lock_bytes(group["lock.json"], key))
        return self.write_files_once(self.model_prefix(pipeline, version), group)

    def sign_model_version(self, pipeline: str, version: str) -> tuple[dict[str, Any], bool]:
        """Sign a stored version that has no ``lock.sig`` (written before lock records were signed).

        Checked first: the record's self-hash, triad and folder, and every file against it. A
        version that is already signed is only verified.

        Returns:
            ``(the record, written)``; ``written`` is False when it was signed already.

        Raises:
            ArtifactIntegrityError: the record or a file does not verify; nothing is signed.
        """
        prefix = self.model_prefix(pipeline, version)
        if self.exists(f"{prefix}/lock.sig"):
            self.model_files(pipeline, version)
            return self.lock_record(pipeline, version), False
        raw = self._lock_bytes(pipeline, version)
        record = self._parse_lock(raw, pipeline, version)
        self._check_files(record, pipeline, version)
        key = self.load_key(create=True, where=f"{pipeline}/{version}")
        signature = canonical_json(sign_lock_bytes(raw, key))
        if not self.swap_bytes(f"{prefix}/lock.sig", None, signature):
            return self.lock_record(pipeline, version), False  # signed meanwhile: check that
        return record, True

    def _lock_bytes(self, pipeline: str, version: str) -> bytes:
        key = f"{self.model_prefix(pipeline, version)}/lock.json"
        if not self.exists(key):
            known = ", ".join(self.model_versions(pipeline)) or "none"
            raise ArtifactNotFoundError(
                f"model version {version!r} of pipeline {pipeline!r} is not in the registry "
                f"(known versions: {known}); list them with `lockgate versions {pipeline}`"
            )
        return self.read_bytes(key)

    def _parse_lock(self, raw: bytes, pipeline: str, version: str) -> dict[str, Any]:
        key = f"{self.model_prefix(pipeline, version)}/lock.json"
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise ArtifactIntegrityError(
                f"{self.uri(key)} is not valid JSON ({exc}); the file was damaged or edited: "
                "restore it from a backup of the registry"
            ) from exc
        if not isinstance(record, dict):
            raise ArtifactIntegrityError(
                f"{self.uri(key)} holds a JSON {type(record).__name__}, not a lock record; "
                "restore it from a backup of the registry"
            )
        verify_lock_record(record, pipeline=pipeline, version=version)
        return record

    def has_model_version(self, pipeline: str, version: str) -> bool:
        """Whether the version's lock record is stored."""
        return self.exists(f"{self.model_prefix(pipeline, version)}/lock.json")

    def lock_record(self, pipeline: str, version: str) -> dict[str, Any]:
        """The lock record of a model version, its signature and content checked.

        Raises:
            ArtifactNotFoundError: no such version.
            ArtifactIntegrityError: the record is unsigned, signed with another key, forged or
                edited, or it is another version's record.
        """
        raw = self._lock_bytes(pipeline, version)
        where = f"{pipeline}/{version}"
        sig_key = f"{self.model_prefix(pipeline, version)}/lock.sig"
        if not self.exists(sig_key):
            raise ArtifactIntegrityError(
                f"the lock record of {where} is not signed ({self.uri(sig_key)} is missing): it "
                "was written before lockgate signed lock records, or its signature was removed; "
                "rule: only signed records are read; fix: check and sign it with `lockgate sign "
                f"{pipeline} {version}` (needs the signing key), or restore lock.sig from a backup"
            )
        signature = self.read_json(sig_key)
        check_lock_signature(signature, raw, self.load_key(create=False, where=where), where=where)
        return self._parse_lock(raw, pipeline, version)

    def model_files(self, pipeline: str, version: str) -> dict[str, bytes]:
        """Every file of a model version, each checked against the sha256 in its lock record.

        Raises:
            ArtifactIntegrityError: the record does not verify, or a file is missing or its
                content changed.
        """
        return self._check_files(self.lock_record(pipeline, version), pipeline, version)

    def _check_files(
        self, record: Mapping[str, Any], pipeline: str, version: str
    ) -> dict[str, bytes]:
        prefix = self.model_prefix(pipeline, version)
        fix = (
            f"rebuild the version and write back the files that match its lock record with "
            f"`lockgate reproduce {pipeline} {version} --restore`, or restore them from a backup"
        )
        files: dict[str, bytes] = {}
        for name, expected in sorted(record["artifact"]["files"].items()):
            key = f"{prefix}/{name}"
            if not self.exists(key):
                raise ArtifactIntegrityError(
                    f"{self.uri(key)} is listed in the lock record but missing; fix: {fix}"
                )
            data = self.read_bytes(key)
            actual = sha256_bytes(data)
            if actual != expected:
                raise ArtifactIntegrityError(
                    f"{self.uri(key)} has sha256 {actual[:16]}, the lock record says "
                    f"{expected[:16]}: the file was tampered with or damaged; do not serve it; "
                    f"fix: {fix}"
                )
            files[name] = data
        return files

    def restore_model_files(
        self, pipeline: str, version: str, files: Mapping[str, bytes]
    ) -> list[str]:
        """Write back the files of a version that are missing or damaged, from ``files``.

        Only bytes whose sha256 equals the lock record's are written (a bit-identical rebuild,
        see ``lockgate reproduce --restore``); intact files are left alone.

        Returns:
            The names written back, sorted.

        Raises:
            ArtifactIntegrityError: a missing or damaged file has no replacement with the locked
                sha256 in ``files``; nothing after it is written.
        """
        record = self.lock_record(pipeline, version)
        prefix = self.model_prefix(pipeline, version)
        restored = []
        for name, expected in sorted(record["artifact"]["files"].items()):
            key = f"{prefix}/{name}"
            current = self.read_bytes(key) if self.exists(key) else None
            if current is not None and sha256_bytes(current) == expected:
                continue
            data = files.get(name)
            if data is None or sha256_bytes(data) != expected:
                got = "none" if data is None else sha256_bytes(data)[:16]
                raise ArtifactIntegrityError(
                    f"cannot restore {self.uri(key)}: the lock record says sha256 "
                    f"{expected[:16]}, the replacement has {got}; rule: only the locked bytes are "
                    "written back; fix: restore the file from a backup of the registry"
                )
            if not self.swap_bytes(key, current, data):
                raise ArtifactIntegrityError(
                    f"{self.uri(key)} changed while it was being restored; run the restore again"
                )
            restored.append(name)
        return restored

    def model_versions(self, pipeline: str) -> list[str]:
        """Versions of ``pipeline`` that have a lock record, sorted."""
        prefix = f"models/{_check_key(pipeline)}"
        return [v for v in self.list_prefix(prefix) if self.exists(f"{prefix}/{v}/lock.json")]

    # aliases ---------------------------------------------------------------------------------

    def aliases(self, pipeline: str) -> dict[str, Any]:
        """``{"aliases": {alias: version}, "history": [moves, oldest first]}``."""
        key = f"aliases/{_check_key(pipeline)}.json"
        if not self.exists(key):
            return {"aliases": {}, "history": []}
        state: dict[str, Any] = self.read_json(key)
        return state

    def alias(self, pipeline: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None."""
        value = self.aliases(pipeline)["aliases"].get(alias)
        return str(value) if value is not None else None

    def move_alias(
        self,
        pipeline: str,
        alias: str,
        version: str,
        *,
        actor: str,
        reason: str,
        expected: str | object | None = ...,
        evidence: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Point ``alias`` at ``version`` atomically and append the move to the history.

        ``expected`` (when given) is the version the caller believes the alias holds now; if it
        moved meanwhile, AliasConflictError is raised and nothing changes.
        """
        from datetime import UTC, datetime

        from lockgate.errors import AliasConflictError

        if not self.has_model_version(pipeline, version):
            raise ArtifactNotFoundError(
                f"cannot point {alias!r} of {pipeline!r} at {version!r}: no such model version "
                f"(known: {', '.join(self.model_versions(pipeline)) or 'none'})"
            )
        key = f"aliases/{_check_key(pipeline)}.json"
        for _ in range(20):
            raw = self.read_bytes(key) if self.exists(key) else None
            state = self.aliases(pipeline) if raw is not None else {"aliases": {}, "history": []}
            current = state["aliases"].get(alias)
            if expected is not ... and current != expected:
                raise AliasConflictError(
                    f"{pipeline}:{alias} is {current!r}, not the expected {expected!r}: someone "
                    "moved it meanwhile; re-read the aliases and decide again"
                )
            if current == version:
                return state
            state["aliases"][alias] = version
            state["history"].append(
                {
                    "alias": alias,
                    "from": current,
                    "to": version,
                    "at": datetime.now(UTC).isoformat(),
                    "actor": actor,
                    "reason": reason,
                    "evidence": dict(evidence or {}),
                }
            )
            if self.swap_bytes(key, raw, canonical_json(state)):
                return state
        raise AliasConflictError(f"{pipeline}:{alias} kept changing under 20 attempts; retry later")

    # verdicts (signed: lockgate.lineage.verdicts) --------------------------------------------

    def verdict_prefix(self, pipeline: str, version: str) -> str:
        """Folder key of a model version's gate verdicts (``<id>.json`` and ``<id>.sig``)."""
        return f"verdicts/{_check_key(pipeline)}/{_check_key(version)}"

    def put_verdict(self, pipeline: str, version: str, verdict: Mapping[str, Any]) -> str:
        """Store one gate verdict on a model version (immutable) and sign it; return its key.

        See :func:`lockgate.lineage.verdicts.put_signed_verdict`.
        """
        return self.put_signed_verdict(pipeline, version, verdict)[0]

    def put_signed_verdict(
        self, pipeline: str, version: str, verdict: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any], bool]:
        """:func:`lockgate.lineage.verdicts.put_signed_verdict` on this registry."""
        from lockgate.lineage.verdicts import put_signed_verdict

        return put_signed_verdict(self, pipeline, version, verdict)

    def verdicts(self, pipeline: str, version: str) -> list[dict[str, Any]]:
        """:func:`lockgate.lineage.verdicts.read_verdicts` on this registry: every gate verdict
        on a model version, oldest first, each signature checked (ArtifactIntegrityError if
        one is unsigned, forged or edited)."""
        from lockgate.lineage.verdicts import read_verdicts

        return read_verdicts(self, pipeline, version)

    def sign_verdicts(self, pipeline: str, version: str) -> int:
        """:func:`lockgate.lineage.verdicts.sign_verdicts` on this registry."""
        from lockgate.lineage.verdicts import sign_verdicts

        return sign_verdicts(self, pipeline, version)

    # reports ---------------------------------------------------------------------------------

    def report_prefix(self, pipeline: str, version: str) -> str:
        """Folder key of a model version's reports."""
        return f"reports/{_check_key(pipeline)}/{_check_key(version)}"

    def put_report(
        self,
        pipeline: str,
        version: str,
        files: Mapping[str, bytes],
        *,
        keep_existing: bool = False,
    ) -> list[str]:
        """Store report files of a model version; return the names written.

        An identical rerun is a no-op. ``keep_existing=True`` is for renderings of a stored
        document (plots, the model card, named by the document's id): a file already there is
        kept as the first run wrote it, even if today's rendering differs in its bytes.

        Raises:
            ImmutableArtifactError: without ``keep_existing``, a file exists with other content.
        """
        prefix = self.report_prefix(pipeline, version)
        absent = sorted(n for n in files if not self.exists(f"{prefix}/{n}"))
        if keep_existing:
            files = {n: files[n] for n in absent}
        if files:
            self.write_files_once(prefix, files)
        return absent


class LocalArtifactRegistry(ArtifactRegistry):
    """Artifact registry on a local folder; groups are written to a temp folder and renamed."""

    root: str

    def key_file(self) -> str:
        """``signing_key_file``, default ``keys/signing.key`` beside the registry's folder."""
        if self.signing_key_file:
            return self.signing_key_file
        parent = os.path.dirname(os.path.abspath(self.root))
        return os.path.join(parent, "keys", "signing.key")

    def swap_bytes(self, key: str, expected: bytes | None, data: bytes) -> bool:
        """Compare-and-swap under a file lock beside the file (the local swap store's)."""
        from lockgate.state.files import FileSwapStore

        return FileSwapStore(root=self.root).swap(_check_key(key), expected, data)

    def _put_file(self, key: str, path: Path, file_sha: str) -> None:
        """Copied in 1 MiB blocks into a staging folder, checked, then renamed into place."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            with open(path, "rb") as source, open(staging / target.name, "wb") as handle:
                shutil.copyfileobj(source, handle, 1 << 20)
                handle.flush()
                os.fsync(handle.fileno())
            if sha256_file(staging / target.name) != file_sha:
                raise ArtifactIntegrityError(
                    f"the copy of {path} into the registry does not match the file; rule: a "
                    "snapshot is stored exactly as written; fix: check the disk, then retry"
                )
            os.replace(staging / target.name, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _stored_sha256(self, key: str) -> str:
        return sha256_file(self._path(key))

    def _path(self, key: str) -> Path:
        return Path(self.root) / _check_key(key)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if path.is_symlink():
            raise ArtifactIntegrityError(
                f"{path} is a symlink; the registry stores plain files only: remove the link"
            )
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"{path} does not exist in the artifact registry") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_prefix(self, prefix: str) -> list[str]:
        path = self._path(prefix)
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if not p.name.startswith(".tmp-"))

    def write_group(self, prefix: str, files: Mapping[str, bytes]) -> None:
        target = self._path(prefix)
        for name in files:
            if "/" in name or name in ("", ".", ".."):
                raise ArtifactError(f"file name {name!r} must be a plain name without '/'")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and prefix.startswith("models/"):
            raise ImmutableArtifactError(
                f"{target} already exists; artifacts are immutable: write a new version"
            )
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            for name, data in files.items():
                with open(staging / name, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            if not target.exists():
                os.rename(staging, target)  # the whole group appears at once
                return
            # shared folders (snapshots/, validations/): move file by file, each atomically
            for name in files:
                os.replace(staging / name, target / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
