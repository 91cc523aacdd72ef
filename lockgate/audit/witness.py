"""The audit log's witness ``<log>.head``: the head signed by every append (HMAC-SHA256 with
lockgate's signing key), read back and checked against the chain, so that a log cut short,
replaced or deleted, or appended to without lockgate, does not verify.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from lockgate._util.fs import atomic_write
from lockgate.audit.chain import (
    FIX_WITNESS,
    HEX64,
    WITNESS_FORMAT,
    AuditHead,
    Problem,
    parse_line,
    short_hash,
)
from lockgate.lineage.hashing import canonical_json
from lockgate.lineage.signing import KEY_ENV, SigningKey

__all__ = [
    "check_witness",
    "read_witness",
    "witness_document",
    "witness_problem",
    "write_witness",
]


def witness_document(head: AuditHead, key: SigningKey) -> bytes:
    """``head`` signed with ``key``: the witness document (canonical JSON)."""
    signed = canonical_json({"format": WITNESS_FORMAT, "seq": head.seq, "hash": head.hash})
    document = {
        "format": WITNESS_FORMAT,
        "seq": head.seq,
        "hash": head.hash,
        "key_id": key.key_id,
        "hmac": key.sign(WITNESS_FORMAT, signed),
    }
    return canonical_json(document)


def write_witness(witness_path: Path, head: AuditHead, key: SigningKey) -> None:
    """Sign ``head`` into the witness file (temp file + rename); caller holds the log's lock."""
    atomic_write(witness_path, witness_document(head, key) + b"\n")


def read_witness(
    witness_path: Path, *, load_key: Callable[[], SigningKey | None], key_file: Path
) -> tuple[AuditHead | None, str | None]:
    """``(signed head, None)``, ``(None, None)`` when absent, ``(None, why)`` when invalid.

    ``load_key`` gives the signing key (None when there is none); it is called only for a
    well-formed witness document. ``key_file`` is named in the message when no key exists.
    """
    try:
        raw = witness_path.read_bytes()
    except FileNotFoundError:
        return None, None
    return check_witness(
        raw,
        where=str(witness_path),
        load_key=load_key,
        no_key=f"({KEY_ENV} is unset and the key file {key_file} does not exist): set "
        f"{KEY_ENV} to the key that signed it, or restore the key file",
        key_fix=f"set {KEY_ENV} (or the key file) to the key that signed it",
    )


def check_witness(
    raw: bytes,
    *,
    where: str,
    load_key: Callable[[], SigningKey | None],
    no_key: str,
    key_fix: str,
) -> tuple[AuditHead | None, str | None]:
    """``(signed head, None)`` when the witness document ``raw`` is well formed and signed by
    the key ``load_key`` gives, else ``(None, why)``; whichever log (file or table) keeps it.

    Args:
        where: the witness in messages.
        no_key: the end of the message when there is no key (why, and the fix).
        key_fix: the fix when the document was signed with another key.
    """
    try:
        doc = parse_line(raw)
    except ValueError:
        doc = None
    seq = doc.get("seq") if isinstance(doc, dict) else None
    digest = doc.get("hash") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != WITNESS_FORMAT
        or not isinstance(seq, int)
        or isinstance(seq, bool)
        or seq < -1
        or not isinstance(digest, str)
        or not HEX64.fullmatch(digest)
    ):
        return None, f"its witness {where} is not a {WITNESS_FORMAT} document"
    key = load_key()
    if key is None:
        return None, f"no signing key checks its witness {where} {no_key}"
    if doc.get("key_id") != key.key_id:
        return None, (
            f"its witness {where} was signed with key {doc.get('key_id')}, the "
            f"signing key from {key.source} is {key.key_id}: {key_fix}"
        )
    signed = canonical_json({"format": WITNESS_FORMAT, "seq": seq, "hash": digest})
    if not key.verify(WITNESS_FORMAT, signed, doc.get("hmac")):
        return None, f"its witness {where} does not match its signature: it was forged or edited"
    return AuditHead(seq, digest), None


def witness_problem(
    data: bytes,
    head: AuditHead,
    by_seq: Mapping[int, tuple[int, str]],
    n_lines: int,
    *,
    signed: AuditHead | None,
    why: str | None,
    log_path: Path,
    witness_path: Path,
) -> tuple[Problem, int, int | None, str] | None:
    """What the witness (``signed``, or ``why`` it is invalid: :func:`read_witness`) says is
    wrong with a chain that verified, or None."""
    end = n_lines + 1
    why_fix = "restore the log and its .head file from a backup"
    if not data and not log_path.exists():
        if signed is not None or why is not None:
            return (
                "missing_log",
                1,
                None,
                f"the log does not exist, but its witness {witness_path} does: the log "
                "was deleted; fix: restore it from a backup.",
            )
        return (
            "missing_log",
            1,
            None,
            "no audit log exists at this path: nothing was recorded here yet, the path is "
            "wrong, or the log was deleted together with its witness; fix: check "
            "LOCKGATE_HOME / LOCKGATE_AUDIT_PATH, or restore the log from a backup.",
        )
    if why is not None:
        return ("witness_invalid", end, None, f"{why}; fix: {why_fix}.")
    if signed is None:
        return (
            "no_witness",
            end,
            None,
            f"the log has no witness {witness_path} (the head signed by the last "
            "append): it was written before lockgate signed the head, or the witness was "
            "deleted; fix: if the log is genuine (`lockgate audit show`), sign its head with "
            "`lockgate audit witness`.",
        )
    if signed.seq > head.seq:
        return (
            "truncated",
            end,
            signed.seq,
            f"the log ends at seq {head.seq} but its witness (the head signed by the last "
            f"append) is seq {signed.seq} (hash {short_hash(signed.hash)}): the published head "
            f"is seq {signed.seq}; entries were removed from the end or the file was "
            f"replaced; fix: {why_fix}.",
        )
    if signed.seq >= 0 and by_seq[signed.seq][1] != signed.hash:
        number, found = by_seq[signed.seq]
        return (
            "head_mismatch",
            number,
            signed.seq,
            f"has hash {short_hash(found)} but its witness signed {short_hash(signed.hash)}: the log "
            f"was rewritten or replaced after that entry was appended; fix: {why_fix}.",
        )
    if signed.seq < head.seq:
        first = by_seq[signed.seq + 1][0]
        return (
            "unwitnessed",
            first,
            signed.seq + 1,
            f"seqs {signed.seq + 1}..{head.seq} come after the head its witness signed (seq "
            f"{signed.seq}): they were appended without lockgate, or a crash hit between an "
            f"append and its witness; fix: {FIX_WITNESS}.",
        )
    return None
