"""Signed gate verdicts in an :class:`~lockgate.lineage.registry.ArtifactRegistry`.

A gate verdict (``verdicts/<pipeline>/<version>/<id>.json``) is what lets a version serve, so it
is signed like a lock record: ``<id>.sig`` beside it holds the HMAC-SHA256 of its exact bytes
with the registry's signing key (:mod:`lockgate.lineage.signing`). A verdict file written
without the key (a forged pass beside a failed verdict), edited after signing, or unsigned never
counts: :func:`read_verdicts` refuses it by name. The registry's ``put_verdict``,
``put_signed_verdict``, ``verdicts`` and ``sign_verdicts`` call these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lockgate.errors import ArtifactIntegrityError
from lockgate.lineage.hashing import canonical_json
from lockgate.lineage.signing import SigningKey, check_signed_bytes, signature_document

if TYPE_CHECKING:
    from lockgate.lineage.registry import ArtifactRegistry

__all__ = ["VERDICT_SIGNATURE_FORMAT", "put_signed_verdict", "read_verdicts", "sign_verdicts"]

VERDICT_SIGNATURE_FORMAT = "lockgate-verdict-signature-v1"
"""The ``format`` of a gate verdict's signature document (``<id>.sig``)."""


def _signature(raw: bytes, key: SigningKey) -> bytes:
    """The signature document of a stored verdict's exact bytes."""
    return canonical_json(
        signature_document(VERDICT_SIGNATURE_FORMAT, raw, key, digest_field="verdict_sha256")
    )


def _sig_key(record_key: str) -> str:
    return record_key.removesuffix(".json") + ".sig"


def _names(registry: ArtifactRegistry, prefix: str) -> list[str]:
    """The verdict files under ``prefix`` (not their signatures)."""
    return [n for n in registry.list_prefix(prefix) if n.endswith(".json")]


def put_signed_verdict(
    registry: ArtifactRegistry, pipeline: str, version: str, verdict: Mapping[str, Any]
) -> tuple[str, dict[str, Any], bool]:
    """Store one gate verdict and its keyed signature (``<id>.sig``) once.

    The verdict is named by its content without run provenance (``run_id``,
    ``evaluated_at``): the same verdict from a rerun keeps the first run's file (and its
    signature).

    Returns:
        ``(key, stored verdict, written)`` as ``ArtifactRegistry.put_record_once``.
    """
    key = registry.load_key(create=True, where=f"the gate verdicts of {pipeline}/{version}")
    record_key, stored, written = registry.put_record_once(
        registry.verdict_prefix(pipeline, version), verdict
    )
    # put_record_once wrote the canonical JSON of what it returns; a kept file is read back
    raw = canonical_json(stored) if written else registry.read_bytes(record_key)
    sig_key = _sig_key(record_key)
    if not registry.exists(sig_key) and registry.swap_bytes(sig_key, None, _signature(raw, key)):
        return record_key, stored, written
    _check(registry, record_key, raw, key)  # signed before (a rerun, a concurrent run)
    return record_key, stored, written


def read_verdicts(registry: ArtifactRegistry, pipeline: str, version: str) -> list[dict[str, Any]]:
    """Every gate verdict on a model version, oldest first, each signature checked.

    Raises:
        ArtifactIntegrityError: a verdict is unsigned (written by hand, or before verdicts
            were signed: ``lockgate sign`` signs those you trust), signed with another key,
            or edited after it was signed. None of the version's verdicts is returned then:
            a forged pass must not let a version serve.
    """
    prefix = registry.verdict_prefix(pipeline, version)
    names = _names(registry, prefix)
    if not names:
        return []
    key = registry.load_key(create=False, where=f"the gate verdicts of {pipeline}/{version}")
    found = []
    for name in names:
        record_key = f"{prefix}/{name}"
        raw = registry.read_bytes(record_key)
        _check(registry, record_key, raw, key)
        found.append(_parse(registry, record_key, raw))
    return sorted(found, key=lambda v: str(v.get("evaluated_at", "")))


def sign_verdicts(registry: ArtifactRegistry, pipeline: str, version: str) -> int:
    """Sign a version's verdicts written before verdicts were signed; return how many.

    Each unsigned verdict is checked first: valid JSON named by its content
    (:func:`~lockgate.lineage.registry.content_id` without provenance), so an edited one is not
    signed. Signing says that you trust these files: run it on a registry you know was not
    written by others.

    Raises:
        ArtifactIntegrityError: a verdict does not match its name, or a signed one does not
            verify; nothing more is signed.
    """
    from lockgate.lineage.registry import PROVENANCE_FIELDS, content_id

    prefix = registry.verdict_prefix(pipeline, version)
    names = _names(registry, prefix)
    if not names:
        return 0
    key = registry.load_key(create=True, where=f"the gate verdicts of {pipeline}/{version}")
    signed = 0
    for name in names:
        record_key = f"{prefix}/{name}"
        raw = registry.read_bytes(record_key)
        if registry.exists(_sig_key(record_key)):
            _check(registry, record_key, raw, key)
            continue
        document = _parse(registry, record_key, raw)
        if content_id(document, ignore=PROVENANCE_FIELDS) != name.removesuffix(".json"):
            raise ArtifactIntegrityError(
                f"{registry.uri(record_key)} does not hash to its name: it was edited after it "
                "was written; it is not signed. fix: delete it and rerun the gate"
            )
        if registry.swap_bytes(_sig_key(record_key), None, _signature(raw, key)):
            signed += 1
        else:
            _check(registry, record_key, raw, key)
    return signed


def _parse(registry: ArtifactRegistry, record_key: str, raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise ArtifactIntegrityError(
            f"{registry.uri(record_key)} is not valid JSON ({exc}); the file was damaged or "
            "edited: delete it and rerun the gate"
        ) from exc
    if not isinstance(document, dict):
        raise ArtifactIntegrityError(
            f"{registry.uri(record_key)} holds a JSON {type(document).__name__}, not a gate "
            "verdict: delete it and rerun the gate"
        )
    return document


def _check(registry: ArtifactRegistry, record_key: str, raw: bytes, key: SigningKey) -> None:
    """The verdict's ``.sig`` must be this key's signature of exactly ``raw``."""
    sig_key = _sig_key(record_key)
    where = registry.uri(record_key)
    if not registry.exists(sig_key):
        raise ArtifactIntegrityError(
            f"gate verdict {where} is unsigned: it was written by hand, or before lockgate "
            "signed verdicts; rule: only verdicts the gate signed count, so a version "
            "cannot be let into serving by a file; fix: `lockgate sign <pipeline> "
            "<version>` signs the stored verdicts of a registry you trust, or delete the "
            "file and rerun the gate"
        )
    try:
        signature = json.loads(registry.read_bytes(sig_key))
    except ValueError:
        signature = None
    check_signed_bytes(
        signature,
        raw,
        key,
        fmt=VERDICT_SIGNATURE_FORMAT,
        what=f"gate verdict {where}",
        fix="delete both files and rerun the gate",
    )
