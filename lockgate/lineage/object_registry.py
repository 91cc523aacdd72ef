"""The artifact registry on object storage (S3 and S3-compatible servers, through fsspec/s3fs).

:class:`ObjectStoreArtifactRegistry` implements the storage primitives of
:class:`~lockgate.lineage.registry.ArtifactRegistry` over an fsspec URL such as
``s3://lockgate/artifacts``; everything else (content addressing, signed lock records, the
integrity checks on every read, ``reproduce``) is inherited unchanged. Its fields are plain
strings, so a Dagster resource binds each to an environment variable.

How a group appears at once: an object store has no rename, so a group's files are put one by
one (each PUT is atomic on its own) in a fixed order, and **a model version's ``lock.json`` is
its commit marker**: the files first, then ``lock.sig``, then ``lock.json``, which is put with
``If-None-Match: *`` (exclusive create). Every reader asks for ``lock.json`` first
(``has_model_version``, ``model_versions``, ``lock_record``), so a version whose writer died
midway is absent, not half there; writing it again skips the files already stored with the
same bytes and completes it. Snapshots follow the same rule with their manifest (the Parquet
file first, the manifest last: ``has_snapshot`` needs both). Single-document groups (reports,
verdicts, validations, run records) are one PUT each.

Mutable keys: ``aliases/<pipeline>.json`` changes by compare-and-swap
(:meth:`ObjectStoreArtifactRegistry.swap_bytes`). With ``state_url`` set, aliases live in the
shared PostgreSQL state (:class:`lockgate.state.postgres.PostgresSwapStore`, one transaction per
swap); without it, the object store's own conditional writes do it (``If-Match`` on the ETag,
``If-None-Match: *`` for a new key; AWS S3 and SeaweedFS honour both). The few other swaps
(signing an unsigned record, restoring a damaged file) always use conditional writes beside
the version's files.

Signing: an object store is shared by several machines, so this registry never creates a key
file; the key comes from ``signing_key`` (production: the secret behind
``$LOCKGATE_SIGNING_KEY``), ``$LOCKGATE_SIGNING_KEY``, or an existing ``signing_key_file``.

Example:
    >>> registry = ObjectStoreArtifactRegistry(url="s3://lockgate/artifacts/")
    >>> registry.uri("models/fraud/abc/lock.json")
    's3://lockgate/artifacts/models/fraud/abc/lock.json'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from lockgate._util.objectstore import (
    ObjectStoreLocation,
    conditional_put,
)
from lockgate.errors import ArtifactError, ArtifactNotFoundError, ImmutableArtifactError
from lockgate.lineage.registry import ArtifactRegistry, _check_key
from lockgate.lineage.signing import KEY_ENV
from lockgate.state.registry import SwapStoreKeys

__all__ = ["ObjectStoreArtifactRegistry"]

_COMMIT_ORDER = ("lock.sig", "lock.json")  # put last, in this order: lock.json commits a version


class _ObjectStorage(ObjectStoreLocation, ArtifactRegistry):
    """The storage primitives on an fsspec URL (every key in the object store)."""

    def _path(self, key: str) -> str:
        _, root = self.filesystem()
        return f"{root}/{_check_key(key)}"

    def key_file(self) -> str:
        """``signing_key_file``; an object-store registry never makes one up (see the module doc).

        Raises:
            ArtifactError: no ``signing_key``, no ``$LOCKGATE_SIGNING_KEY`` and no key file.
        """
        if self.signing_key_file:
            return self.signing_key_file
        if (self.signing_key or "").strip() or os.environ.get(KEY_ENV):
            return os.devnull  # never read: the key or the variable comes first
        raise ArtifactError(
            f"the registry at {self.url} has no signing key; rule: a registry on shared object "
            f"storage signs with a key every writer and reader shares, never a key file made up "
            f"on one machine; fix: set {KEY_ENV} (or signing_key) to that key, or "
            "signing_key_file to a mounted key file"
        )

    def uri(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{_check_key(key)}"

    def read_bytes(self, key: str) -> bytes:
        fs, _ = self.filesystem()
        try:
            data = fs.cat_file(self._path(key))
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"{self.uri(key)} does not exist in the artifact registry"
            ) from None
        except IsADirectoryError:
            raise ArtifactNotFoundError(f"{self.uri(key)} is a folder, not a file") from None
        return bytes(data)

    def exists(self, key: str) -> bool:
        fs, _ = self.filesystem()
        try:
            info = fs.info(self._path(key))
        except FileNotFoundError:
            return False
        return bool(info.get("type") == "file")

    def list_prefix(self, prefix: str) -> list[str]:
        fs, _ = self.filesystem()
        path = self._path(prefix)
        try:
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        names = {str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries}
        if str(path) in {str(e).rstrip("/") for e in entries}:
            names.discard(path.rsplit("/", 1)[-1])  # some stores list the prefix itself
        return sorted(n for n in names if n)

    def write_group(self, prefix: str, files: Mapping[str, bytes]) -> None:
        """Put ``files`` under ``prefix``, ``lock.sig`` and then ``lock.json`` last.

        A model version whose ``lock.json`` exists is complete and immutable: adding to it is
        refused. ``lock.json`` is created exclusively, so of two writers of one version the
        second finds the first's record (and accepts it only when it is the same bytes).
        """
        for name in files:
            if "/" in name or name in ("", ".", ".."):
                raise ArtifactError(f"file name {name!r} must be a plain name without '/'")
        _check_key(prefix)
        models = prefix.startswith("models/")
        if models and self.exists(f"{prefix}/lock.json"):
            raise ImmutableArtifactError(
                f"{self.uri(prefix)} already holds a committed version (lock.json); artifacts "
                "are immutable: write a new version"
            )
        fs, _ = self.filesystem()
        order = sorted(n for n in files if n not in _COMMIT_ORDER)
        order += [n for n in _COMMIT_ORDER if n in files]
        for name in order:
            path = self._path(f"{prefix}/{name}")
            if not (models and name == "lock.json"):
                fs.pipe_file(path, files[name])
                continue
            committed = conditional_put(fs, path, files[name], expected=None)
            if not committed and self.read_bytes(f"{prefix}/{name}") != files[name]:
                raise ImmutableArtifactError(
                    f"{self.uri(f'{prefix}/{name}')} was committed meanwhile with other "
                    "content; artifacts are immutable: write a new version"
                )

    def _put_file(self, key: str, path: Path, file_sha: str) -> None:
        """Uploaded by fsspec from the file (in parts, never held whole)."""
        fs, _ = self.filesystem()
        fs.put_file(str(path), self._path(key))

    def swap_bytes(self, key: str, expected: bytes | None, data: bytes) -> bool:
        fs, _ = self.filesystem()
        return conditional_put(fs, self._path(key), data, expected=expected)


class ObjectStoreArtifactRegistry(SwapStoreKeys, _ObjectStorage):
    """The artifact registry under an fsspec URL (``s3://bucket/prefix``); see the module doc.

    Attributes:
        url: Where the registry lives: ``s3://<bucket>/<prefix>``.
        endpoint_url: The S3 endpoint of an S3-compatible server (``http://host:8333``); None:
            ``$AWS_ENDPOINT_URL``, else AWS.
        key: Access key id; None: the AWS SDK's chain (``$AWS_ACCESS_KEY_ID``, roles).
        secret: Secret access key; None: the AWS SDK's chain.
        region: Region; None: the AWS SDK's chain (``$AWS_DEFAULT_REGION``).
        state_url: PostgreSQL URL of the shared state that holds the aliases
            (:class:`lockgate.state.postgres.PostgresSwapStore`, production
            ``$LOCKGATE_STATE_DB_URL``); None: the object store's conditional writes.
        state_namespace: The namespace of the aliases in that state.
    """
