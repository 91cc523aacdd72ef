"""The audit chain in PostgreSQL: :class:`PostgresAuditLog`, the same log as a table.

Same entries, same chain, same checks as :class:`lockgate.audit.log.AuditLog`: each row holds
one entry's canonical JSON line exactly as the file would (:mod:`lockgate.audit.chain` hashes and
verifies it), and the signed head (the witness, format ``lockgate-audit-head-v1``, HMAC with
lockgate's signing key) is a row beside them. Tables, created on first use::

    lockgate_audit       (log, seq, line)    one row per entry; primary key (log, seq)
    lockgate_audit_head  (log, witness)      the signed head of each log

An append is one transaction: a transaction-level advisory lock per log serializes appenders
across processes and machines, the last row and the witness are checked, and the new row and
the new witness commit together. Two writers therefore never fork the chain (and the primary
key would refuse a second entry with the same seq even without the lock), no entry is lost, and
no crash can leave an entry without its witness or a torn line. Editing, deleting or reordering
rows, or removing entries from the end, is found by :meth:`PostgresAuditLog.verify` exactly as
for the file.

All writers must share one signing key (``$LOCKGATE_SIGNING_KEY``, or the ``signing_key``
argument): a key file created per machine would make each machine's witness unreadable to the
others, so this log never creates one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from lockgate._util.urls import redact_url
from lockgate.audit.chain import (
    FIX_TAMPER,
    FIX_TORN,
    FIX_WITNESS,
    GENESIS_HASH,
    AuditEntryError,
    AuditHead,
    AuditIntegrityError,
    AuditVerification,
    Problem,
    entry_hash,
    parse_line,
    select_entries,
    shape_problem,
    verify_chain,
)
from lockgate.audit.log import AuditLog
from lockgate.audit.witness import check_witness, witness_document, witness_problem
from lockgate.lineage.hashing import canonical_json
from lockgate.lineage.signing import KEY_ENV, SigningKey, load_signing_key
from lockgate.state.postgres import ensure_schema, transaction

__all__ = ["PostgresAuditLog"]

_T = TypeVar("_T")

_DDL = """
CREATE TABLE IF NOT EXISTS lockgate_audit (
    log text NOT NULL,
    seq bigint NOT NULL,
    line bytea NOT NULL,
    PRIMARY KEY (log, seq)
);
CREATE TABLE IF NOT EXISTS lockgate_audit_head (
    log text PRIMARY KEY,
    witness bytea NOT NULL
)
"""


class PostgresAuditLog:
    """An append-only, hash-chained audit log in PostgreSQL (the interface of ``AuditLog``).

    Args:
        url: ``postgresql://user:password@host:port/database`` (production:
            ``$LOCKGATE_STATE_DB_URL``).
        log: The log's name; one database holds several logs side by side.
        signing_key: The key that signs the witness; None reads ``$LOCKGATE_SIGNING_KEY``, then
            ``key_file``.
        key_file: A key file every writer shares (never created here); None: the key must come
            from ``signing_key`` or ``$LOCKGATE_SIGNING_KEY``.
        connect_timeout_s: How long to wait for the server before failing.
    """

    def __init__(
        self,
        url: str,
        *,
        log: str = "main",
        signing_key: str | None = None,
        key_file: str | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not log or not isinstance(log, str):
            raise AuditEntryError(f"audit log name {log!r} must be a non-empty string, e.g. 'main'")
        self._url = url
        self._log = log
        self._secret = signing_key
        self._key_file = Path(key_file) if key_file else None
        self._timeout = connect_timeout_s

    def __repr__(self) -> str:
        return f"PostgresAuditLog({redact_url(self._url)!r}, log={self._log!r})"

    @property
    def path(self) -> str:
        """Where the log lives, for messages (password redacted)."""
        return f"{redact_url(self._url)}#lockgate_audit/{self._log}"

    @property
    def witness_path(self) -> str:
        """Where the signed head lives, for messages."""
        return f"{redact_url(self._url)}#lockgate_audit_head/{self._log}"

    @property
    def key_file(self) -> Path | None:
        """The shared key file, when one is configured."""
        return self._key_file

    def _run(self, work: Callable[[Any], _T]) -> _T:
        ensure_schema(self._url, "lockgate_audit", _DDL, connect_timeout_s=self._timeout)
        return transaction(self._url, work, connect_timeout_s=self._timeout)

    # writing ----------------------------------------------------------------------------------

    def append(
        self, kind: str, *, pipeline: str, actor: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Append one entry chained onto the last one and return it as written.

        Raises:
            AuditEntryError: ``kind``, ``pipeline`` or ``actor`` is empty, or ``payload`` is not
                a JSON object.
            AuditIntegrityError: the last entry or the witness does not verify; nothing is
                written.
        """
        examples = {"kind": "gate_verdict", "pipeline": "fraud", "actor": "alice"}
        for name, value in (("kind", kind), ("pipeline", pipeline), ("actor", actor)):
            if not isinstance(value, str) or not value.strip():
                raise AuditEntryError(
                    f"audit {name} {value!r} must be a non-empty string; pass a name such as "
                    f"{examples[name]!r}"
                )
        body = AuditLog._normalise_payload(payload)
        key = self._key(required=True)
        assert key is not None

        def write(cur: Any) -> dict[str, Any]:
            self._lock(cur)
            last = self._tail_head(cur)
            signed, why = self._read_witness(cur, key)
            if not (signed == last or (last.seq == -1 and signed is None and why is None)):
                check = self._verify(self._lines(cur), signed, why, expected_head=None)
                fix = "" if "; fix: " in check.message else f" Fix: {FIX_TAMPER}."
                raise AuditIntegrityError(
                    f"refusing to append to {self.path}: {check.message}{fix}", check
                )
            entry: dict[str, Any] = {
                "seq": last.seq + 1,
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "kind": kind,
                "pipeline": pipeline,
                "actor": actor,
                "payload": body,
                "prev": last.hash,
            }
            entry["hash"] = entry_hash(entry)
            cur.execute(
                "INSERT INTO lockgate_audit (log, seq, line) VALUES (%s, %s, %s)",
                (self._log, entry["seq"], canonical_json(entry)),
            )
            self._write_witness(cur, AuditHead(entry["seq"], entry["hash"]), key)
            return entry

        return self._run(write)

    def repair_torn_tail(self, *, actor: str) -> dict[str, Any] | None:
        """Nothing to repair: an entry and its witness commit together, so no line is torn.

        Returns:
            None, always (the interface of :meth:`AuditLog.repair_torn_tail`).
        """
        if not isinstance(actor, str) or not actor.strip():
            raise AuditEntryError(f"audit actor {actor!r} must be a non-empty string")
        return None

    def witness_head(self) -> AuditHead:
        """Sign the current head, after checking the whole chain (``lockgate audit witness``).

        Raises:
            AuditIntegrityError: the log is empty or its chain does not verify.
        """
        key = self._key(required=True)
        assert key is not None

        def sign(cur: Any) -> AuditHead:
            self._lock(cur)
            lines = self._lines(cur)
            if not lines:
                raise AuditIntegrityError(
                    f"there is no audit entry in {self.path} to witness; fix: restore the "
                    "table from a backup, or let the first append create the log"
                )
            check = verify_chain(_joined(lines), path=self.path, expected_head=None)
            if not check.ok:
                raise AuditIntegrityError(
                    f"refusing to sign the head of {self.path}: {check.message} Fix: {FIX_TAMPER}.",
                    check,
                )
            self._write_witness(cur, check.head, key)
            return check.head

        return self._run(sign)

    # reading ----------------------------------------------------------------------------------

    def entries(
        self, *, pipeline: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Entries in chain order, optionally only one pipeline's and/or one kind's.

        Lines are parsed without checking hashes (use :meth:`verify` for that).

        Raises:
            AuditIntegrityError: a row is not a well-formed entry.
        """
        return select_entries(
            self._run(self._lines),
            pipeline=pipeline,
            kind=kind,
            where=lambda n: f"{self.path} entry {n}",
            verify_hint="run verify()",
        )

    def head(self) -> AuditHead:
        """Seq and hash of the last entry (only that entry is checked).

        Raises:
            AuditIntegrityError: the last entry does not verify.
        """
        return self._run(self._tail_head)

    def verify(
        self, *, expected_head: AuditHead | tuple[int, str] | None = None, witness: bool = True
    ) -> AuditVerification:
        """Check every entry and link, then the signed witness; report the first problem.

        The same checks and problem codes as :meth:`AuditLog.verify` (the log's "line" is the
        entry's position in seq order).
        """
        key = self._key(required=False)

        def read(cur: Any) -> tuple[list[bytes], AuditHead | None, str | None]:
            signed, why = self._read_witness(cur, key)
            return self._lines(cur), signed, why

        lines, signed, why = self._run(read)
        if not witness:
            return verify_chain(_joined(lines), path=self.path, expected_head=expected_head)
        return self._verify(lines, signed, why, expected_head=expected_head)

    def verify_or_raise(
        self, *, expected_head: AuditHead | tuple[int, str] | None = None
    ) -> AuditVerification:
        """:meth:`verify`, raising :class:`AuditIntegrityError` when it fails."""
        result = self.verify(expected_head=expected_head)
        if not result.ok:
            if "; fix: " in result.message:
                raise AuditIntegrityError(result.message, result)
            fix = FIX_TORN if result.problem == "torn_line" else FIX_TAMPER
            raise AuditIntegrityError(f"{result.message} Fix: {fix}.", result)
        return result

    # internals --------------------------------------------------------------------------------

    def _lock(self, cur: Any) -> None:
        """Serialize the writers of this log until the transaction ends (any process, machine)."""
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lockgate-audit:{self._log}",))

    def _lines(self, cur: Any) -> list[bytes]:
        cur.execute("SELECT line FROM lockgate_audit WHERE log = %s ORDER BY seq", (self._log,))
        return [bytes(row[0]) for row in cur.fetchall()]

    def _tail_head(self, cur: Any) -> AuditHead:
        cur.execute(
            "SELECT line FROM lockgate_audit WHERE log = %s ORDER BY seq DESC LIMIT 1",
            (self._log,),
        )
        row = cur.fetchone()
        if row is None:
            return AuditHead(-1, GENESIS_HASH)
        try:
            entry = parse_line(bytes(row[0]))
        except ValueError:
            entry = None
        if (
            isinstance(entry, dict)
            and shape_problem(entry) is None
            and entry_hash(entry) == entry["hash"]
        ):
            return AuditHead(entry["seq"], entry["hash"])
        check = verify_chain(_joined(self._lines(cur)), path=self.path, expected_head=None)
        raise AuditIntegrityError(
            f"refusing to chain onto the last entry of {self.path}: {check.message} "
            f"Fix: {FIX_TAMPER}.",
            check,
        )

    def _key(self, *, required: bool) -> SigningKey | None:
        key = None
        if self._secret or os.environ.get(KEY_ENV) or self._key_file is not None:
            # the key file is read only when neither the argument nor the variable is set
            key = load_signing_key(
                key_file=self._key_file or "<no key file>", secret=self._secret, create=False
            )
        if key is None and required:
            raise AuditIntegrityError(
                f"no signing key for the audit log {self.path} ({KEY_ENV} is unset"
                + (f" and the key file {self._key_file} does not exist" if self._key_file else "")
                + "); rule: every writer of a shared audit log signs its head with one shared "
                f"key, and none is created on the fly; fix: set {KEY_ENV} to the team's signing "
                "key on every process that writes the log"
            )
        return key

    def _write_witness(self, cur: Any, head: AuditHead, key: SigningKey) -> None:
        cur.execute(
            "INSERT INTO lockgate_audit_head (log, witness) VALUES (%s, %s) "
            "ON CONFLICT (log) DO UPDATE SET witness = EXCLUDED.witness",
            (self._log, witness_document(head, key)),
        )

    def _read_witness(
        self, cur: Any, key: SigningKey | None
    ) -> tuple[AuditHead | None, str | None]:
        """``(signed head, None)``, ``(None, None)`` when absent, ``(None, why)`` when invalid."""
        cur.execute("SELECT witness FROM lockgate_audit_head WHERE log = %s", (self._log,))
        row = cur.fetchone()
        if row is None:
            return None, None
        return check_witness(
            bytes(row[0]),
            where=self.witness_path,
            load_key=lambda: key,
            no_key=f"({KEY_ENV} is unset): set {KEY_ENV} to the key that signed it",
            key_fix=f"set {KEY_ENV} to the key that signed it",
        )

    def _verify(
        self,
        lines: list[bytes],
        signed: AuditHead | None,
        why: str | None,
        *,
        expected_head: AuditHead | tuple[int, str] | None,
    ) -> AuditVerification:
        data = _joined(lines)
        if not lines:
            deleted = signed is not None or why is not None
            message = (
                f"{self.path}: the log has no entries but its witness {self.witness_path} "
                "exists: its entries were deleted; fix: restore the table from a backup."
                if deleted
                else f"{self.path}: no audit entry exists in this log: nothing was recorded "
                "yet, the URL or log name is wrong, or the log was deleted together with its "
                "witness; fix: check the state database URL and the log name, or restore the "
                "tables from a backup."
            )
            return AuditVerification(
                ok=False,
                path=self.path,
                entries=0,
                head=AuditHead(-1, GENESIS_HASH),
                problem="missing_log",
                line=1,
                message=message,
            )

        def check(
            head: AuditHead, by_seq: Mapping[int, tuple[int, str]], n_lines: int
        ) -> tuple[Problem, int, int | None, str] | None:
            problem = witness_problem(
                data,
                head,
                by_seq,
                n_lines,
                signed=signed,
                why=why,
                log_path=cast(Path, _Label(self.path)),
                witness_path=cast(Path, _Label(self.witness_path)),
            )
            if problem is not None and problem[0] == "no_witness":
                return (
                    "no_witness",
                    problem[1],
                    problem[2],
                    f"the log has no signed head in {self.witness_path}: it was deleted; fix: "
                    f"{FIX_WITNESS}.",
                )
            return problem

        return verify_chain(data, path=self.path, expected_head=expected_head, witness=check)


class _Label:
    """A location that :func:`~lockgate.audit.witness.witness_problem` only prints (a URL, which
    a ``Path`` would mangle); it never exists on disk."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        return self._text

    def __format__(self, spec: str) -> str:
        return format(self._text, spec)

    def exists(self) -> bool:
        return False


def _joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)
