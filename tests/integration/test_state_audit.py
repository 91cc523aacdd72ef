"""The audit chain in PostgreSQL (lockgate.state.audit): one linear chain under concurrent
writers, the file's format and checks, tampering in the table found by verify."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from lockgate.audit.chain import GENESIS_HASH, AuditIntegrityError, entry_hash
from lockgate.audit.log import AuditLog
from lockgate.state.audit import PostgresAuditLog
from lockgate.state.postgres import close_connections
from tests.state import workers

KEY = "k" * 40


@pytest.fixture(autouse=True)
def _signing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", KEY)  # forked writers inherit it
    yield
    close_connections()


def _sql(url: str, statement: str, *args: object) -> None:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(statement, args)
    conn.close()


def _rows(url: str) -> list[bytes]:
    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("SELECT line FROM lockgate_audit WHERE log = 'main' ORDER BY seq")
        rows = [bytes(r[0]) for r in cur.fetchall()]
    conn.close()
    return rows


def test_entries_have_the_file_format_and_verify(postgres_url: str, tmp_path: Path) -> None:
    log = PostgresAuditLog(postgres_url)
    assert log.head() == (-1, GENESIS_HASH)
    assert log.verify().problem == "missing_log"
    first = log.append("promotion", pipeline="fraud", actor="alice", payload={"to": ("v2",)})
    second = log.append("rollback", pipeline="other", actor="canary", payload={"to": "v1"})
    assert first["seq"] == 0
    assert first["prev"] == GENESIS_HASH
    assert first["payload"] == {"to": ["v2"]}  # stored as canonical JSON, read back the same
    assert second["prev"] == first["hash"] == entry_hash(first)
    assert log.entries() == [first, second]
    assert log.entries(pipeline="other") == [second]
    assert log.entries(kind="promotion") == [first]
    assert log.head() == (1, second["hash"])
    result = log.verify_or_raise(expected_head=(0, first["hash"]))
    assert result.ok
    assert result.entries == 2
    # the rows are the file's lines: the same bytes verify as an AuditLog file
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"".join(r + b"\n" for r in _rows(postgres_url)))
    assert AuditLog(path).verify(witness=False).ok
    # logs in one database are separate chains
    other = PostgresAuditLog(postgres_url, log="staging")
    assert other.append("validation", pipeline="fraud", actor="job", payload={})["seq"] == 0
    assert log.head().seq == 1


def test_concurrent_writers_make_one_linear_chain(postgres_url: str) -> None:
    writers, each = 6, 15
    counts = workers.race(workers.append_many, [(postgres_url, w, each) for w in range(writers)])
    assert counts == [each] * writers
    log = PostgresAuditLog(postgres_url)
    entries = log.entries()
    assert [e["seq"] for e in entries] == list(range(writers * each))  # no fork, no gap
    for earlier, later in itertools.pairwise(entries):
        assert later["prev"] == earlier["hash"]
    for w in range(writers):  # nothing lost, each writer's entries in its own order
        mine = [e["payload"]["i"] for e in entries if e["actor"] == f"w{w}"]
        assert mine == list(range(each))
    verification = log.verify()
    assert verification.ok, verification.message
    assert verification.head.seq == writers * each - 1


def test_an_edited_row_is_found_and_appends_stop(postgres_url: str) -> None:
    log = PostgresAuditLog(postgres_url)
    for i in range(4):
        log.append("canary_step", pipeline="fraud", actor="t", payload={"i": i})
    row = _rows(postgres_url)[1]
    _sql(
        postgres_url,
        "UPDATE lockgate_audit SET line = %s WHERE log = 'main' AND seq = 1",
        row.replace(b'"i":1', b'"i":9'),
    )
    result = log.verify()
    assert (result.ok, result.problem, result.seq, result.entries) == (
        False,
        "hash_mismatch",
        1,
        1,
    )
    assert "a field was edited" in result.message
    with pytest.raises(AuditIntegrityError, match="does not match its hash"):
        log.verify_or_raise()


def test_a_removed_row_and_a_cut_tail_are_found(postgres_url: str) -> None:
    log = PostgresAuditLog(postgres_url)
    for i in range(5):
        log.append("canary_step", pipeline="fraud", actor="t", payload={"i": i})
    _sql(postgres_url, "DELETE FROM lockgate_audit WHERE log = 'main' AND seq = 4")
    result = log.verify()
    assert (result.problem, result.seq) == ("truncated", 4)
    assert log.verify(witness=False).ok  # the chain alone cannot tell; the signed head can
    with pytest.raises(AuditIntegrityError, match="refusing to append"):
        log.append("promotion", pipeline="fraud", actor="t", payload={})
    _sql(postgres_url, "DELETE FROM lockgate_audit WHERE log = 'main' AND seq = 2")
    assert log.verify().problem == "entry_removed"
    _sql(postgres_url, "DELETE FROM lockgate_audit WHERE log = 'main'")
    result = log.verify()
    assert result.problem == "missing_log"
    assert "entries were deleted" in result.message


def test_a_forged_witness_or_another_key_is_refused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PostgresAuditLog(postgres_url)
    log.append("promotion", pipeline="fraud", actor="t", payload={})
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "x" * 40)
    result = log.verify()
    assert result.problem == "witness_invalid"
    assert "was signed with key" in result.message
    with pytest.raises(AuditIntegrityError, match="refusing to append"):
        log.append("promotion", pipeline="fraud", actor="t", payload={})
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", KEY)
    _sql(
        postgres_url,
        "UPDATE lockgate_audit_head SET witness = convert_to("
        "replace(convert_from(witness, 'UTF8'), '\"seq\":0', '\"seq\":7'), 'UTF8')",
    )
    assert log.verify().problem == "witness_invalid"
    # after review, witness_head signs the current head again
    _sql(postgres_url, "DELETE FROM lockgate_audit_head")
    assert log.verify().problem == "no_witness"
    assert log.witness_head().seq == 0
    assert log.verify().ok


def test_without_a_shared_key_nothing_is_written(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCKGATE_SIGNING_KEY")
    log = PostgresAuditLog(postgres_url)
    with pytest.raises(AuditIntegrityError, match="one shared key") as caught:
        log.append("promotion", pipeline="fraud", actor="t", payload={})
    assert "LOCKGATE_SIGNING_KEY" in str(caught.value)
    assert ":***@" in str(caught.value)
    assert (
        PostgresAuditLog(postgres_url, signing_key=KEY).append(
            "promotion", pipeline="fraud", actor="t", payload={}
        )["seq"]
        == 0
    )


def test_the_audit_resource_uses_postgresql_when_given_a_url(
    postgres_url: str, tmp_path: Path
) -> None:
    from lockgate.audit.chain import AuditError
    from lockgate.resources.audit import AuditTrail

    shared = AuditTrail(url=postgres_url, log_name="prod")
    entry = shared.record("promotion", pipeline="fraud", actor="t", payload={"to": "v2"})
    assert isinstance(shared.log(), PostgresAuditLog)
    assert PostgresAuditLog(postgres_url, log="prod").entries() == [entry]
    local = AuditTrail(path=str(tmp_path / "audit" / "audit.jsonl"))
    local.record("promotion", pipeline="fraud", actor="t", payload={})
    assert isinstance(local.log(), AuditLog)
    assert local.log().verify().ok
    with pytest.raises(AuditError, match="neither a path nor a url"):
        AuditTrail().log()
