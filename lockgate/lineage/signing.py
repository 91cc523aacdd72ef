"""The signing key: HMAC-SHA256 signatures over lock records and the audit log's head.

A content hash shows an accident; anyone who can write a file can recompute it. A keyed
signature shows a forgery too: without the key, an edited lock record or a rewritten audit log
cannot be signed again. lockgate signs two things with one key:

- each model version's lock record (``lock.sig`` beside ``lock.json``), checked on every read;
- the audit log's head (``<log>.head``), so that a truncated, replaced or deleted log is found.

Where the key comes from, first match wins:

1. the resource's ``signing_key`` field (production binds it to the secret
   ``dg.EnvVar("LOCKGATE_SIGNING_KEY")``);
2. the ``LOCKGATE_SIGNING_KEY`` environment variable (at least 32 characters);
3. a key file, ``<lockgate home>/keys/signing.key``, created with mode 0600 (32 random bytes,
   hex) when lockgate first signs something. Copy its content into ``LOCKGATE_SIGNING_KEY`` to
   use the same key elsewhere: the text is the key.

Example:
    >>> key = SigningKey(b"k" * 32, source="a test")
    >>> mac = key.sign("lockgate-example", b"data")
    >>> key.verify("lockgate-example", b"data", mac), key.verify("lockgate-example", b"x", mac)
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate._util.fs import atomic_write
from lockgate.errors import ArtifactIntegrityError, SpecError

__all__ = [
    "KEY_ENV",
    "KEY_FILE",
    "MIN_SECRET_CHARS",
    "SigningKey",
    "check_signed_bytes",
    "key_file_for_home",
    "load_signing_key",
    "signature_document",
]

KEY_ENV = "LOCKGATE_SIGNING_KEY"
"""The environment variable that holds the signing key (production: from a secret)."""

KEY_FILE = Path("keys") / "signing.key"
"""The key file, relative to the lockgate home."""

MIN_SECRET_CHARS = 32
"""The shortest key accepted."""

_GENERATE = "python -c 'import secrets; print(secrets.token_hex(32))'"


@dataclass(frozen=True)
class SigningKey:
    """An HMAC-SHA256 key and where it was found (for error messages)."""

    secret: bytes
    source: str

    @property
    def key_id(self) -> str:
        """16 hex digits that name the key without revealing it."""
        return hashlib.sha256(b"lockgate-key-id\0" + self.secret).hexdigest()[:16]

    def sign(self, purpose: str, data: bytes) -> str:
        """Hex HMAC-SHA256 of ``data``, bound to ``purpose`` (a lock record is not a log head)."""
        return hmac.new(self.secret, purpose.encode() + b"\0" + data, hashlib.sha256).hexdigest()

    def verify(self, purpose: str, data: bytes, mac: object) -> bool:
        """Whether ``mac`` is this key's signature of ``data`` for ``purpose`` (constant time)."""
        return isinstance(mac, str) and hmac.compare_digest(self.sign(purpose, data), mac)


def key_file_for_home(home: str | os.PathLike[str]) -> Path:
    """The key file of a lockgate home: ``<home>/keys/signing.key``."""
    return Path(home) / KEY_FILE


def _from_secret(secret: str, source: str) -> SigningKey:
    text = secret.strip()
    if len(text) < MIN_SECRET_CHARS:
        raise SpecError(
            f"the signing key from {source} has {len(text)} characters; rule: at least "
            f"{MIN_SECRET_CHARS}; fix: generate one with {_GENERATE}"
        )
    return SigningKey(text.encode("utf-8"), source=source)


def _read_key_file(path: Path) -> SigningKey:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SpecError(
            f"signing key file {path} has mode {mode:04o}; rule: only its owner may read it "
            f"(0600); fix: chmod 600 {path}"
        )
    return _from_secret(path.read_text(encoding="utf-8"), f"key file {path}")


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # never replaces a key another process created meanwhile
    atomic_write(path, secrets.token_hex(32) + "\n", mode=0o600, replace=False)


def load_signing_key(
    *,
    key_file: str | os.PathLike[str],
    secret: str | None = None,
    create: bool = False,
    environ: Mapping[str, str] | None = None,
) -> SigningKey | None:
    """The signing key: ``secret``, else ``$LOCKGATE_SIGNING_KEY``, else ``key_file``.

    Args:
        key_file: The key file to read (and to create when ``create``).
        secret: An explicit key (a resource's ``signing_key`` field), used first.
        create: Create ``key_file`` (mode 0600, 32 random bytes) when no key is found; for
            writers. Readers pass False: a new key cannot verify old signatures.
        environ: The environment to read (default ``os.environ``).

    Returns:
        The key, or None when there is none and ``create`` is False.

    Raises:
        SpecError: The key is shorter than 32 characters, or the key file is readable by others.
    """
    if secret:
        return _from_secret(secret, "the resource's signing_key")
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV):
        return _from_secret(env[KEY_ENV], KEY_ENV)
    path = Path(key_file)
    if not path.exists():
        if not create:
            return None
        _create_key_file(path)
    return _read_key_file(path)


def signature_document(
    fmt: str, data: bytes, key: SigningKey, *, digest_field: str
) -> dict[str, Any]:
    """The signature document of a stored file's exact bytes (``lock.sig``, a verdict's
    ``.sig``): its format, the scheme, the key id, the file's sha256 and the HMAC (pure).

    Example:
        >>> doc = signature_document("x-v1", b"{}", SigningKey(b"k" * 32, source="a test"),
        ...                          digest_field="data_sha256")
        >>> sorted(doc)
        ['data_sha256', 'format', 'hmac', 'key_id', 'scheme']
    """
    return {
        "format": fmt,
        "scheme": "hmac-sha256",
        "key_id": key.key_id,
        digest_field: hashlib.sha256(data).hexdigest(),
        "hmac": key.sign(fmt, data),
    }


def check_signed_bytes(
    signature: Any, data: bytes, key: SigningKey, *, fmt: str, what: str, fix: str
) -> None:
    """Check a :func:`signature_document` against the stored file's bytes (pure).

    Args:
        what: the signed thing, for the messages (e.g. ``the lock record of fraud/v1``).
        fix: what to do when it was forged or edited.

    Raises:
        ArtifactIntegrityError: not such a document, another key signed it (named by key id),
            or the HMAC does not match: the file or its signature was forged or edited.
    """
    if not isinstance(signature, Mapping) or signature.get("format") != fmt:
        raise ArtifactIntegrityError(
            f"the signature of {what} is not a {fmt} document; it was edited; fix: {fix}"
        )
    if signature.get("key_id") != key.key_id:
        raise ArtifactIntegrityError(
            f"{what} was signed with key {signature.get('key_id')}, but the signing key from "
            f"{key.source} is {key.key_id}; rule: records verify with the key that signed them; "
            f"fix: set {KEY_ENV} (or the key file) to the key that signed this registry"
        )
    if not key.verify(fmt, data, signature.get("hmac")):
        raise ArtifactIntegrityError(
            f"{what} does not match its signature (key {key.key_id}): it was forged or edited "
            f"after it was signed; do not serve it; fix: {fix}"
        )
