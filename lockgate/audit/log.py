"""A tamper-evident, append-only audit log: one hash-chained JSON entry per line.

Every decision that moves a model (gate verdicts, validations, canary steps, rollbacks,
promotions, retrain requests) is appended to a JSON-lines file. Each entry holds:

``seq``       0, 1, 2, ... without gaps;
``at``        UTC time of the append, ISO 8601 with microseconds
              (``2025-01-31T12:00:00.123456+00:00``);
``kind``      what happened, e.g. ``"gate_verdict"`` or ``"rollback"`` (see :data:`AUDIT_KINDS`);
``pipeline``  the pipeline the entry is about (``"*"`` for log-wide entries such as a repair);
``actor``     who or what acted: a user, a sensor, a job run;
``payload``   a JSON object with the details;
``prev``      the ``hash`` of the previous entry; the first entry links to :data:`GENESIS_HASH`
              (64 zeros);
``hash``      hex sha256 of the canonical JSON (sorted keys, no whitespace, UTF-8, no NaN; see
              :func:`lockgate.lineage.hashing.canonical_json`) of all the other fields.

Each line is the canonical JSON of the whole entry followed by ``\\n``. Editing any field breaks
that entry's ``hash``; removing, reordering or duplicating entries breaks a ``prev`` link or the
``seq`` sequence, so :meth:`AuditLog.verify` finds it and says where.

A chain cannot show on its own that entries were dropped **from the end**, that the whole file
was replaced by another valid chain, or that it was deleted. So every append also publishes the
new head in a **witness** file beside the log, ``<log>.head``, signed with lockgate's signing key
(HMAC-SHA256, :mod:`lockgate.lineage.signing`: ``$LOCKGATE_SIGNING_KEY`` or ``<home>/keys/signing.key``,
by default the ``keys/signing.key`` two folders above the log). :meth:`AuditLog.verify` checks it
by default: a log that ends before the witnessed head (``truncated``), whose entry at that seq
has another hash (``head_mismatch``, a rewritten or replaced log), that is missing
(``missing_log``), that has no witness (``no_witness``) or a witness the key did not sign
(``witness_invalid``), or that has entries after the witnessed head (``unwitnessed``: appended
without lockgate) does not verify; appends refuse to chain onto such a log. After review,
:meth:`AuditLog.witness_head` (``lockgate audit witness``) signs the current head, e.g. for a
log written before witnesses existed. A witness cannot tell a log rolled back *together with*
an older copy of its witness: for that, publish the head elsewhere too and check it with
``verify(expected_head=...)``; entries appended after that anchor are fine, losing the anchored
entry or changing it is reported.

Appends are safe across threads and processes: each takes an exclusive ``fcntl.flock`` on a
sidecar file ``<log>.lock``, reads the last entry and the witness, writes the new line with a
single ``write`` on an ``O_APPEND`` descriptor, ``fsync``\\ s it, then replaces the witness
(temp file + rename) before releasing the lock. A crash mid-write leaves
a last line without its newline (a *torn* line): :meth:`AuditLog.verify` reports it,
:meth:`AuditLog.append` refuses to chain onto it and :meth:`AuditLog.repair_torn_tail` fixes it.

Example:
    >>> import tempfile, pathlib
    >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl", signing_key="k" * 32)
    >>> entry = log.append("promotion", pipeline="fraud", actor="alice", payload={"version": "v2"})
    >>> entry["seq"], entry["prev"] == GENESIS_HASH
    (0, True)
    >>> log.verify().ok
    True

The entry format and the chain's verification are :mod:`~lockgate.audit.chain`, the witness
:mod:`~lockgate.audit.witness`; the public names are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lockgate.audit.chain import (
    AUDIT_KINDS,
    ENTRY_FIELDS,
    FIX_TAMPER,
    FIX_TORN,
    GENESIS_HASH,
    WITNESS_FORMAT,
    AuditEntryError,
    AuditError,
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
from lockgate.audit.witness import read_witness, witness_problem, write_witness
from lockgate.lineage.hashing import canonical_json
from lockgate.lineage.signing import SigningKey, load_signing_key

__all__ = [
    "AUDIT_KINDS",
    "ENTRY_FIELDS",
    "GENESIS_HASH",
    "WITNESS_FORMAT",
    "AuditEntryError",
    "AuditError",
    "AuditHead",
    "AuditIntegrityError",
    "AuditLog",
    "AuditVerification",
    "entry_hash",
]


class AuditLog:
    """An append-only, hash-chained JSON-lines audit log at ``path``.

    The file and its parent folder are created by the first :meth:`append`; reading a log that
    does not exist yet gives no entries, verifying it reports ``missing_log``.

    Args:
        path: The log file.
        signing_key: The key that signs the witness; None reads ``$LOCKGATE_SIGNING_KEY``, then
            ``key_file``.
        key_file: Default ``<log folder>/../keys/signing.key`` (``<home>/keys/signing.key`` for
            ``<home>/audit/audit.jsonl``), created 0600 by the first append when missing.

    Example:
        >>> import tempfile, pathlib
        >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "audit.jsonl", signing_key="k" * 32)
        >>> _ = log.append("rollback", pipeline="fraud", actor="canary", payload={"to": "v1"})
        >>> [e["kind"] for e in log.entries(pipeline="fraud")]
        ['rollback']
        >>> log.head().seq
        0
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        signing_key: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._path = Path(path)
        self._secret = signing_key
        self._key_file = (
            Path(key_file)
            if key_file is not None
            else self._path.absolute().parent.parent / "keys" / "signing.key"
        )

    def __repr__(self) -> str:
        return f"AuditLog({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    @property
    def lock_path(self) -> Path:
        """The sidecar file that appends lock (``<log>.lock``)."""
        return self._path.with_name(f"{self._path.name}.lock")

    @property
    def witness_path(self) -> Path:
        """The signed head, replaced by every append (``<log>.head``)."""
        return self._path.with_name(f"{self._path.name}.head")

    @property
    def key_file(self) -> Path:
        """The signing key file used when no key is given and ``$LOCKGATE_SIGNING_KEY`` is unset."""
        return self._key_file

    # writing ----------------------------------------------------------------------------------

    def append(
        self, kind: str, *, pipeline: str, actor: str, payload: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Append one entry chained onto the last one and return it as written.

        The payload is stored as canonical JSON, so the returned entry holds what a reader will
        see (tuples become lists, keys are sorted).

        Args:
            kind: what happened, e.g. ``"gate_verdict"``; any non-empty string.
            pipeline: the pipeline the entry is about.
            actor: who or what acted (user, sensor, run id).
            payload: a JSON object (string keys; no NaN or infinity).

        Returns:
            The entry with all fields, ``seq``, ``prev`` and ``hash`` included.

        Raises:
            AuditEntryError: ``kind``, ``pipeline`` or ``actor`` is empty, or ``payload`` is not
                a JSON object.
            AuditIntegrityError: the last line is torn or does not verify; nothing is written.

        Example:
            >>> import tempfile, pathlib
            >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "a.jsonl")
            >>> log.append("validation", pipeline="fraud", actor="job", payload={"ok": True})["seq"]
            0
        """
        examples = {"kind": "gate_verdict", "pipeline": "fraud", "actor": "alice"}
        for name, value in (("kind", kind), ("pipeline", pipeline), ("actor", actor)):
            if not isinstance(value, str) or not value.strip():
                raise AuditEntryError(
                    f"audit {name} {value!r} must be a non-empty string; pass a name such as "
                    f"{examples[name]!r}"
                )
        body = self._normalise_payload(payload)
        with self._locked():
            return self._append_locked(kind, pipeline=pipeline, actor=actor, payload=body)

    def repair_torn_tail(self, *, actor: str) -> dict[str, Any] | None:
        """Fix a last line that a crash cut short, so that appends can go on.

        Only a torn last line (no trailing newline) is repaired, and only when every complete
        line before it verifies; anything else is tampering and is refused. When the torn line is
        in fact a whole, valid entry that lost only its newline, the newline is added and that
        entry is returned. Otherwise the partial bytes are removed (the append that wrote them
        never returned, so no caller saw that entry) and an ``audit_repair`` entry for pipeline
        ``"*"`` records how many bytes were dropped and their sha256.

        Args:
            actor: who repairs the log; recorded in the ``audit_repair`` entry.

        Returns:
            The completed or the ``audit_repair`` entry; None when the log was not torn.

        Raises:
            AuditIntegrityError: a complete line does not verify; nothing is changed.

        Example:
            >>> import tempfile, pathlib
            >>> log = AuditLog(pathlib.Path(tempfile.mkdtemp()) / "a.jsonl")
            >>> log.repair_torn_tail(actor="ops") is None
            True
        """
        if not isinstance(actor, str) or not actor.strip():
            raise AuditEntryError(f"audit actor {actor!r} must be a non-empty string")
        with self._locked():
            data = self._read_all()
            if not data or data.endswith(b"\n"):
                return None
            cut = data.rfind(b"\n") + 1
            complete, tail = data[:cut], data[cut:]
            check = self._verify_bytes(complete, expected_head=None)
            if check.ok and (complete or self.witness_path.exists()):
                check = self._verify_bytes(complete, expected_head=None, witness=True)
            if not check.ok:
                raise AuditIntegrityError(
                    f"cannot repair {self._path}: {check.message} Only a torn last line is "
                    f"repaired automatically (a crash leaves the witness at the entry before "
                    f"it); {FIX_TAMPER}",
                    check,
                )
            with_newline = self._verify_bytes(data + b"\n", expected_head=None)
            if with_newline.ok:
                self._write_line(b"\n")
                entry = parse_line(tail)
                assert isinstance(entry, dict)
                self._write_witness(AuditHead(entry["seq"], entry["hash"]))
                return entry
            with open(self._path, "r+b") as handle:
                handle.truncate(cut)
                handle.flush()
                os.fsync(handle.fileno())
            payload = {
                "line": complete.count(b"\n") + 1,
                "removed_bytes": len(tail),
                "removed_sha256": hashlib.sha256(tail).hexdigest(),
                "reason": "torn last line (no trailing newline): a write was cut short",
            }
            return self._append_locked("audit_repair", pipeline="*", actor=actor, payload=payload)

    # reading ----------------------------------------------------------------------------------

    def entries(
        self, *, pipeline: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        """Entries in log order, optionally only one pipeline's and/or one kind's.

        This parses lines without checking hashes (use :meth:`verify` for that). A torn last line
        is skipped: the append that wrote it never returned.

        Raises:
            AuditIntegrityError: a complete line is not a well-formed entry.

        Example:
            >>> AuditLog("/nonexistent/audit.jsonl").entries()
            []
        """
        with self._locked(shared=True):
            data = self._read_all()
        lines = data.split(b"\n")[:-1]  # the piece after the last newline is empty or torn
        return select_entries(
            lines,
            pipeline=pipeline,
            kind=kind,
            where=lambda n: f"{self._path} line {n}",
            verify_hint="run AuditLog(path).verify()",
        )

    def head(self) -> AuditHead:
        """Seq and hash of the last entry: the anchor to publish elsewhere.

        Only the last line is checked (well-formed, hash matches its content); :meth:`verify`
        checks the whole chain.

        Raises:
            AuditIntegrityError: the last line is torn or does not verify.

        Example:
            >>> AuditLog("/nonexistent/audit.jsonl").head() == (-1, GENESIS_HASH)
            True
        """
        with self._locked(shared=True):
            return self._tail_head()

    def verify(
        self, *, expected_head: AuditHead | tuple[int, str] | None = None, witness: bool = True
    ) -> AuditVerification:
        """Check every line and link, then the signed witness; report the first problem.

        Args:
            expected_head: a head published elsewhere (see :meth:`head`). The entry with that
                seq must still be in the log with that hash; entries appended since are fine.
            witness: check the witness file (``<log>.head``): the log must exist and end at the
                head the last append signed. False checks the chain alone.

        Example:
            >>> AuditLog("/nonexistent/audit.jsonl").verify().problem
            'missing_log'
        """
        with self._locked(shared=True):
            data = self._read_all()
            return self._verify_bytes(data, expected_head=expected_head, witness=witness)

    def witness_head(self) -> AuditHead:
        """Sign the current head into the witness file, after checking the whole chain.

        For a log written before lockgate signed its head, or after reviewing entries that were
        appended without updating the witness (``unwitnessed``). Needs the signing key.

        Raises:
            AuditIntegrityError: the log is missing, torn or its chain does not verify.
        """
        with self._locked():
            if not self._path.exists():
                raise AuditIntegrityError(
                    f"there is no audit log at {self._path} to witness; fix: restore it from a "
                    "backup, or let the first append create it"
                )
            check = self._verify_bytes(self._read_all(), expected_head=None)
            if not check.ok:
                fix = FIX_TORN if check.problem == "torn_line" else FIX_TAMPER
                raise AuditIntegrityError(
                    f"refusing to sign the head of {self._path}: {check.message} Fix: {fix}.",
                    check,
                )
            self._write_witness(check.head)
            return check.head

    def verify_or_raise(
        self, *, expected_head: AuditHead | tuple[int, str] | None = None
    ) -> AuditVerification:
        """:meth:`verify`, raising when it fails.

        Raises:
            AuditIntegrityError: carrying the :class:`AuditVerification` as ``verification``.

        Example:
            >>> AuditLog("/nonexistent/audit.jsonl").verify_or_raise().entries
            0
        """
        result = self.verify(expected_head=expected_head)
        if not result.ok:
            if "; fix: " in result.message:  # the witness problems name their own fix
                raise AuditIntegrityError(result.message, result)
            fix = FIX_TORN if result.problem == "torn_line" else FIX_TAMPER
            raise AuditIntegrityError(f"{result.message} Fix: {fix}.", result)
        return result

    # internals --------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, *, shared: bool = False) -> Iterator[None]:
        """Exclusive lock for writers, shared for readers (who then never see a half-written line).

        Not re-entrant: flock locks belong to the open file, so code holding the lock must not
        take it again (the internal helpers below never do).
        """
        import fcntl

        with ExitStack() as stack:
            if not shared:
                self._path.parent.mkdir(parents=True, exist_ok=True)
            if not shared or self._path.exists():  # readers of a missing log wait for nothing
                try:
                    lock = stack.enter_context(open(self.lock_path, "a+b"))
                except OSError:
                    if not shared:
                        raise
                    lock = None  # a read-only copy of the log: read it without locking
                if lock is not None:  # released when the file closes
                    fcntl.flock(lock.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield

    def _read_all(self) -> bytes:
        try:
            return self._path.read_bytes()
        except FileNotFoundError:
            return b""

    @staticmethod
    def _normalise_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(payload, Mapping):
            raise AuditEntryError(
                f"audit payload {payload!r} must be a JSON object (a mapping); wrap the value, "
                "e.g. payload={'value': ...}"
            )
        bad = [k for k in payload if not isinstance(k, str)]
        if bad:
            raise AuditEntryError(
                f"audit payload keys {bad!r} must be strings; convert them with str()"
            )
        try:
            body = json.loads(canonical_json(dict(payload)))
        except (TypeError, ValueError) as exc:
            raise AuditEntryError(
                f"audit payload {payload!r} is not JSON-serialisable without loss ({exc}); "
                "pass only str/int/float/bool/None, lists and objects, with finite numbers"
            ) from None
        assert isinstance(body, dict)
        return body

    def _append_locked(
        self, kind: str, *, pipeline: str, actor: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        last = self._tail_head()
        self._check_tail_witness(last)
        entry: dict[str, Any] = {
            "seq": last.seq + 1,
            "at": datetime.now(UTC).isoformat(timespec="microseconds"),
            "kind": kind,
            "pipeline": pipeline,
            "actor": actor,
            "payload": payload,
            "prev": last.hash,
        }
        entry["hash"] = entry_hash(entry)
        self._write_line(canonical_json(entry) + b"\n")
        self._write_witness(AuditHead(entry["seq"], entry["hash"]))
        return entry

    # the witness ------------------------------------------------------------------------------

    def _key(self, *, create: bool) -> SigningKey | None:
        return load_signing_key(key_file=self._key_file, secret=self._secret, create=create)

    def _write_witness(self, head: AuditHead) -> None:
        """Sign ``head`` into the witness file (temp file + rename); caller holds the lock."""
        key = self._key(create=True)
        assert key is not None
        write_witness(self.witness_path, head, key)

    def _read_witness(self) -> tuple[AuditHead | None, str | None]:
        """``(signed head, None)``, ``(None, None)`` when absent, ``(None, why)`` when invalid."""
        return read_witness(
            self.witness_path, load_key=lambda: self._key(create=False), key_file=self._key_file
        )

    def _check_tail_witness(self, last: AuditHead) -> None:
        """Refuse to append unless the witness signs exactly the last entry (or the log is new)."""
        signed, why = self._read_witness()
        if signed is not None and signed == last:
            return
        if signed is None and why is None and last.seq == -1 and not self._read_all():
            return  # a new log: its first append writes the first witness
        check = self._verify_bytes(self._read_all(), expected_head=None, witness=True)
        fix = "" if "; fix: " in check.message else f" Fix: {FIX_TAMPER}."
        raise AuditIntegrityError(
            f"refusing to append to {self._path}: {check.message}{fix}", check
        )

    def _write_line(self, line: bytes) -> None:
        created = not self._path.exists()
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # make the new directory entry durable too
            dir_fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _read_last_lines(self) -> bytes:
        """The end of the file, from just after the newline before its last line (or all of it)."""
        with open(self._path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            block = 1 << 16
            start = size
            while start > 0:
                start = max(0, start - block)
                handle.seek(start)
                chunk = handle.read(size - start)
                cut = chunk.rfind(b"\n", 0, len(chunk) - 1)
                if cut >= 0:
                    return chunk[cut + 1 :]
                block *= 2
            handle.seek(0)
            return handle.read(size)

    def _tail_head(self) -> AuditHead:
        """Head from the last line alone; raise when it is torn or does not verify."""
        try:
            chunk = self._read_last_lines()
        except FileNotFoundError:
            return AuditHead(-1, GENESIS_HASH)
        if not chunk:
            return AuditHead(-1, GENESIS_HASH)
        entry: object = None
        if chunk.endswith(b"\n"):
            try:
                entry = parse_line(chunk[:-1])
            except ValueError:
                entry = None
        if (
            entry is not None
            and shape_problem(entry) is None
            and isinstance(entry, dict)
            and entry_hash(entry) == entry["hash"]
        ):
            return AuditHead(entry["seq"], entry["hash"])
        check = self._verify_bytes(self._read_all(), expected_head=None)
        fix = FIX_TORN if check.problem == "torn_line" else FIX_TAMPER
        raise AuditIntegrityError(
            f"refusing to chain onto the last entry of {self._path}: {check.message} Fix: {fix}.",
            check,
        )

    def _verify_bytes(
        self,
        data: bytes,
        *,
        expected_head: AuditHead | tuple[int, str] | None,
        witness: bool = False,
    ) -> AuditVerification:
        def check(
            head: AuditHead, by_seq: Mapping[int, tuple[int, str]], n_lines: int
        ) -> tuple[Problem, int, int | None, str] | None:
            return self._witness_problem(data, head, by_seq, n_lines)

        return verify_chain(
            data,
            path=str(self._path),
            expected_head=expected_head,
            witness=check if witness else None,
        )

    def _witness_problem(
        self, data: bytes, head: AuditHead, by_seq: Mapping[int, tuple[int, str]], n_lines: int
    ) -> tuple[Problem, int, int | None, str] | None:
        """What the witness says is wrong with a chain that verified, or None."""
        signed, why = self._read_witness()
        return witness_problem(
            data,
            head,
            by_seq,
            n_lines,
            signed=signed,
            why=why,
            log_path=self._path,
            witness_path=self.witness_path,
        )
