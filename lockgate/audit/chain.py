"""The audit chain: the entry format, its hash and checks, and the verification of a whole log.

An entry is one canonical-JSON line whose ``hash`` covers every other field and whose ``prev`` is
the hash of the entry before it (:data:`GENESIS_HASH` for the first); :func:`verify_chain` reads a
log's bytes and names the first problem (edited, removed, reordered, duplicated or torn entries,
a truncated or rewritten head). The file itself, its lock and its witness are
:class:`lockgate.audit.log.AuditLog`'s.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from lockgate.errors import LockgateError
from lockgate.lineage.hashing import canonical_json

__all__ = [
    "AUDIT_KINDS",
    "ENTRY_FIELDS",
    "FIX_TAMPER",
    "FIX_TORN",
    "FIX_WITNESS",
    "GENESIS_HASH",
    "HEX64",
    "WITNESS_FORMAT",
    "AuditEntryError",
    "AuditError",
    "AuditHead",
    "AuditIntegrityError",
    "AuditVerification",
    "Problem",
    "WitnessCheck",
    "entry_hash",
    "parse_line",
    "select_entries",
    "shape_problem",
    "short_hash",
    "verify_chain",
]


GENESIS_HASH = "0" * 64
"""The ``prev`` of the first entry."""

WITNESS_FORMAT = "lockgate-audit-head-v1"
"""The ``format`` of the witness file ``<log>.head``: the signed seq and hash of the head."""

ENTRY_FIELDS = ("seq", "at", "kind", "pipeline", "actor", "payload", "prev", "hash")
"""The fields of every entry, in the order they are documented."""

AUDIT_KINDS = (
    "audit_repair",
    "canary_step",
    "gateway_admin",
    "gate_verdict",
    "promotion",
    "retrain_requested",
    "rollback",
    "serving_refused",
    "serving_restored",
    "validation",
)
"""The kinds lockgate itself writes; other non-empty kinds are accepted too."""

Problem = Literal[
    "torn_line",
    "invalid_json",
    "malformed",
    "hash_mismatch",
    "duplicate_entry",
    "entries_reordered",
    "entry_removed",
    "broken_link",
    "seq_mismatch",
    "truncated",
    "head_mismatch",
    "missing_log",
    "no_witness",
    "witness_invalid",
    "unwitnessed",
]

HEX64 = re.compile(r"[0-9a-f]{64}")
FIX_TAMPER = (
    "never edit the log by hand: restore it from a backup whose chain verifies, "
    "or move it aside and start a new log"
)
FIX_TORN = "call AuditLog(path).repair_torn_tail(actor=...) and append again"
FIX_WITNESS = (
    "review the entries with `lockgate audit show`; if they are genuine, sign the current head "
    "with `lockgate audit witness` (AuditLog.witness_head), otherwise restore the log and its "
    ".head file from a backup"
)


class AuditError(LockgateError):
    """The audit log refused an operation."""


class AuditEntryError(AuditError, ValueError):
    """An entry to append is invalid (empty kind, payload not a JSON object, ...)."""


class AuditIntegrityError(AuditError):
    """The log does not verify: it was edited, cut short or torn by a crash.

    Attributes:
        verification: the :class:`AuditVerification` naming the first problem, when known.
    """

    def __init__(self, message: str, verification: AuditVerification | None = None) -> None:
        super().__init__(message)
        self.verification = verification


class AuditHead(NamedTuple):
    """The last entry of a log: publish it elsewhere to detect a truncated tail later.

    An empty log's head is ``AuditHead(-1, GENESIS_HASH)``.

    Example:
        >>> AuditHead(seq=3, hash="ab" * 32).seq
        3
    """

    seq: int
    hash: str


@dataclass(frozen=True)
class AuditVerification:
    """Outcome of :meth:`AuditLog.verify`.

    Attributes:
        ok: True when every line verifies (and the anchor, when one was given).
        path: the log file.
        entries: entries that verified before the first problem (all of them when ``ok``).
        head: seq and hash of the last entry that verified (``(-1, GENESIS_HASH)`` if none).
        problem: machine-readable code of the first problem, None when ``ok``.
        line: 1-based line number of the first problem.
        seq: the seq found on that line, when it could be read.
        message: one sentence on what is wrong and what to do; ``"ok: ..."`` when ``ok``.

    Problem codes: ``torn_line`` (last line cut short, no newline), ``invalid_json``,
    ``malformed`` (missing/extra fields or wrong types), ``hash_mismatch`` (content edited),
    ``duplicate_entry``, ``entries_reordered``, ``entry_removed``, ``broken_link`` (``prev``
    does not match the previous entry's hash), ``seq_mismatch`` (seq renumbered),
    ``truncated`` and ``head_mismatch`` (the witness or the published anchor is beyond the end,
    or differs), ``missing_log`` (no log file), ``no_witness``, ``witness_invalid`` (not signed
    by the configured key) and ``unwitnessed`` (entries after the witnessed head).
    """

    ok: bool
    path: str
    entries: int
    head: AuditHead
    problem: Problem | None = None
    line: int | None = None
    seq: int | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the head as ``{"seq", "hash"}``)."""
        return {
            "ok": self.ok,
            "path": self.path,
            "entries": self.entries,
            "head": {"seq": self.head.seq, "hash": self.head.hash},
            "problem": self.problem,
            "line": self.line,
            "seq": self.seq,
            "message": self.message,
        }


def entry_hash(entry: Mapping[str, Any]) -> str:
    """Hex sha256 of the canonical JSON of every field of ``entry`` except ``hash``.

    Example:
        >>> e = {"seq": 0, "at": "t", "kind": "k", "pipeline": "p", "actor": "a",
        ...      "payload": {}, "prev": GENESIS_HASH}
        >>> len(entry_hash(e))
        64
    """
    return hashlib.sha256(
        canonical_json({k: v for k, v in entry.items() if k != "hash"})
    ).hexdigest()


def short_hash(digest: object) -> str:
    return f"{str(digest)[:12]}…"


def shape_problem(entry: object) -> str | None:
    """Why a parsed line is not a well-formed entry, or None."""
    if not isinstance(entry, dict):
        return f"is JSON {type(entry).__name__}, not an object"
    missing = [f for f in ENTRY_FIELDS if f not in entry]
    extra = sorted(set(entry) - set(ENTRY_FIELDS))
    if missing or extra:
        return f"has missing fields {missing} / unexpected fields {extra}"
    seq = entry["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return f"has seq {seq!r}, not a non-negative integer"
    for name in ("at", "kind", "pipeline", "actor"):
        if not isinstance(entry[name], str) or not entry[name]:
            return f"has {name} {entry[name]!r}, not a non-empty string"
    if not isinstance(entry["payload"], dict):
        return f"has payload of type {type(entry['payload']).__name__}, not a JSON object"
    for name in ("prev", "hash"):
        if not isinstance(entry[name], str) or not HEX64.fullmatch(entry[name]):
            return f"has {name} {entry[name]!r}, not 64 lowercase hex digits"
    return None


def parse_line(raw: bytes) -> object:
    """The JSON value of a line; raises ValueError when it is not JSON."""
    return json.loads(raw.decode("utf-8"))


WitnessCheck = Callable[
    [AuditHead, Mapping[int, tuple[int, str]], int], tuple[Problem, int, int | None, str] | None
]
"""What the witness says of a chain that verified (its head, line and hash per seq, line count)."""


def verify_chain(
    data: bytes,
    *,
    path: str,
    expected_head: AuditHead | tuple[int, str] | None,
    witness: WitnessCheck | None = None,
) -> AuditVerification:
    """Verify the bytes of a log: every line's shape, hash, ``prev`` link and ``seq``, a torn last
    line, then (when given) the ``witness`` check of the chain that verified and the published
    ``expected_head``; the first problem found is reported (see :class:`AuditVerification`).
    """
    pieces = data.split(b"\n")
    lines, torn = pieces[:-1], pieces[-1]
    parsed: list[object] = []
    seq_lines: dict[int, list[int]] = {}
    for number, raw in enumerate(lines, start=1):
        try:
            value = parse_line(raw)
        except ValueError:
            value = None
        parsed.append(value)
        if isinstance(value, dict) and isinstance(value.get("seq"), int):
            seq_lines.setdefault(value["seq"], []).append(number)

    head = AuditHead(-1, GENESIS_HASH)
    hashes: dict[str, int] = {}  # hash -> line
    by_seq: dict[int, tuple[int, str]] = {}  # seq -> (line, hash)

    def fail(problem: Problem, line: int, seq: int | None, message: str) -> AuditVerification:
        return AuditVerification(
            ok=False,
            path=path,
            entries=len(hashes),
            head=head,
            problem=problem,
            line=line,
            seq=seq,
            message=f"{path} line {line}"
            + (f" (seq {seq})" if seq is not None else "")
            + f": {message}",
        )

    for number, value in enumerate(parsed, start=1):
        if value is None:
            return fail("invalid_json", number, None, "is not valid JSON.")
        why = shape_problem(value)
        if why is not None:
            seq = value.get("seq") if isinstance(value, dict) else None
            return fail("malformed", number, seq if isinstance(seq, int) else None, f"{why}.")
        assert isinstance(value, dict)
        seq, prev, digest = value["seq"], value["prev"], value["hash"]
        if entry_hash(value) != digest:
            return fail(
                "hash_mismatch",
                number,
                seq,
                f"the content does not match its hash {short_hash(digest)}: a field was edited "
                "after the entry was written.",
            )
        expected = head.seq + 1
        if seq != expected or prev != head.hash:
            if digest in hashes:
                return fail(
                    "duplicate_entry",
                    number,
                    seq,
                    f"repeats line {hashes[digest]} exactly: an entry was duplicated.",
                )
            if seq == expected:
                return fail(
                    "broken_link",
                    number,
                    seq,
                    f"prev {short_hash(prev)} does not match the hash {short_hash(head.hash)} of the "
                    "entry before it: that entry was replaced or the chain was rebuilt.",
                )
            if prev == head.hash:
                return fail(
                    "seq_mismatch",
                    number,
                    seq,
                    f"links to the entry before it but has seq {seq} where {expected} was "
                    "expected: the entry was renumbered.",
                )
            if seq > expected:
                later = [
                    (s, n) for s in range(expected, seq) for n in seq_lines.get(s, []) if n > number
                ]
                if later:
                    s, n = later[0]
                    return fail(
                        "entries_reordered",
                        number,
                        seq,
                        f"comes where seq {expected} was expected, and seq {s} appears later "
                        f"at line {n}: entries were reordered.",
                    )
                missing = seq - expected
                gone = f"seq {expected} is" if missing == 1 else f"seqs {expected}..{seq - 1} are"
                return fail(
                    "entry_removed",
                    number,
                    seq,
                    f"comes where seq {expected} was expected and {gone} nowhere in the log; "
                    f"its prev "
                    f"{short_hash(prev)} does not match the entry before it: "
                    f"{missing} entr{'y was' if missing == 1 else 'ies were'} removed.",
                )
            return fail(
                "seq_mismatch",
                number,
                seq,
                f"has seq {seq} where {expected} was expected and does not link to the entry "
                "before it: entries were reordered or forged.",
            )
        hashes[digest] = number
        by_seq[seq] = (number, digest)
        head = AuditHead(seq, digest)

    if torn:
        try:
            value = parse_line(torn)
        except ValueError:
            value = None
        seq = value.get("seq") if isinstance(value, dict) else None
        return fail(
            "torn_line",
            len(lines) + 1,
            seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            f"is incomplete ({len(torn)} bytes without a trailing newline): a write was cut "
            "short, e.g. by a crash.",
        )

    if witness is not None:
        problem = witness(head, by_seq, len(lines))
        if problem is not None:
            return fail(*problem)

    if expected_head is not None:
        want_seq, want_hash = int(expected_head[0]), str(expected_head[1])
        if want_seq > head.seq:
            return fail(
                "truncated",
                len(lines) + 1,
                want_seq,
                f"the log ends at seq {head.seq} but the published head is seq {want_seq} "
                f"(hash {short_hash(want_hash)}): entries were removed from the end.",
            )
        if want_seq >= 0:
            number, found = by_seq[want_seq]
            if found != want_hash:
                return fail(
                    "head_mismatch",
                    number,
                    want_seq,
                    f"has hash {short_hash(found)} but the published head says "
                    f"{short_hash(want_hash)}: the log was rewritten after the head was published.",
                )
    return AuditVerification(
        ok=True,
        path=path,
        entries=len(hashes),
        head=head,
        message=f"ok: {len(hashes)} entries, head seq {head.seq} hash {short_hash(head.hash)}",
    )


def select_entries(
    lines: list[bytes],
    *,
    pipeline: str | None,
    kind: str | None,
    where: Callable[[int], str],
    verify_hint: str,
) -> list[dict[str, Any]]:
    """The entries of ``lines`` of ``pipeline`` and ``kind`` (None: any), oldest first.

    Lines are parsed without checking hashes (verification does that).

    Args:
        where: names line ``n`` (1-based) in a message (``"<file> line n"``).
        verify_hint: how to find the first problem (``"run AuditLog(path).verify()"``).

    Raises:
        AuditIntegrityError: a line is not a well-formed entry.
    """
    found: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, start=1):
        try:
            entry = parse_line(raw)
        except ValueError:
            entry = None
        why = shape_problem(entry) if entry is not None else "is not valid JSON"
        if why is not None:
            raise AuditIntegrityError(
                f"{where(number)} {why}; {verify_hint} for the first problem; {FIX_TAMPER}"
            )
        assert isinstance(entry, dict)
        if (pipeline is None or entry["pipeline"] == pipeline) and (
            kind is None or entry["kind"] == kind
        ):
            found.append(entry)
    return found
