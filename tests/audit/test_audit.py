"""The hash-chained audit log: appends verify; every kind of tampering is found and located."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lockgate.audit.log import (
    ENTRY_FIELDS,
    GENESIS_HASH,
    AuditEntryError,
    AuditHead,
    AuditIntegrityError,
    AuditLog,
    entry_hash,
)
from lockgate.lineage.hashing import canonical_json


def _log(tmp_path: Path, count: int = 5) -> AuditLog:
    log = AuditLog(tmp_path / "audit" / "log.jsonl")
    kinds = ["gate_verdict", "validation", "canary_step", "rollback", "promotion"]
    for i in range(count):
        log.append(
            kinds[i % len(kinds)],
            pipeline="fraud" if i % 2 == 0 else "churn",
            actor="tester",
            payload={"i": i, "nested": {"values": [1, 2.5, None, "x"]}},
        )
    return log


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def _write(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


# appending and reading ---------------------------------------------------------------------------


def test_append_builds_a_chain_that_verifies(tmp_path: Path) -> None:
    log = _log(tmp_path)
    entries = log.entries()
    assert [e["seq"] for e in entries] == [0, 1, 2, 3, 4]
    assert entries[0]["prev"] == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after["prev"] == before["hash"]
    for entry in entries:
        assert tuple(entry) == tuple(sorted(ENTRY_FIELDS))  # canonical: sorted keys
        assert entry["hash"] == entry_hash(entry)
        assert entry["at"].endswith("+00:00")
        assert len(entry["at"].split(".")[1]) == 6 + 6
    result = log.verify()
    assert result.ok
    assert result.problem is None
    assert result.entries == 5
    assert result.head == log.head() == AuditHead(4, entries[-1]["hash"])
    assert log.verify_or_raise(expected_head=log.head()).ok
    # every line is the canonical JSON of the entry
    assert _lines(log)[2] == canonical_json(entries[2]) + b"\n"


def test_hash_is_over_every_other_field(tmp_path: Path) -> None:
    entry = _log(tmp_path, 1).entries()[0]
    body = {k: v for k, v in entry.items() if k != "hash"}
    import hashlib

    expected = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert entry["hash"] == expected


def test_append_returns_what_readers_see(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    entry = log.append(
        "promotion", pipeline="fraud", actor="alice", payload={"b": (1, 2), "a": "ünïcødé"}
    )
    assert entry == log.entries()[0]
    assert entry["payload"] == {"a": "ünïcødé", "b": [1, 2]}
    assert log.verify().ok


def test_entries_filter_by_pipeline_and_kind(tmp_path: Path) -> None:
    log = _log(tmp_path, 10)
    assert [e["seq"] for e in log.entries(pipeline="fraud")] == [0, 2, 4, 6, 8]
    assert [e["seq"] for e in log.entries(kind="rollback")] == [3, 8]
    assert [e["seq"] for e in log.entries(pipeline="churn", kind="rollback")] == [3]
    assert log.entries(pipeline="nope") == []


def test_empty_and_missing_logs(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "missing" / "log.jsonl")
    assert log.entries() == []
    assert log.head() == AuditHead(-1, GENESIS_HASH)
    result = log.verify()
    assert not result.ok  # a missing log is an error, not "0 entries verified"
    assert result.problem == "missing_log"
    assert result.entries == 0
    assert log.verify(witness=False).ok  # the chain alone: empty
    assert not (tmp_path / "missing").exists()  # reading creates nothing


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kind": "", "pipeline": "p", "actor": "a", "payload": {}}, "audit kind ''"),
        ({"kind": "k", "pipeline": " ", "actor": "a", "payload": {}}, "audit pipeline"),
        ({"kind": "k", "pipeline": "p", "actor": "", "payload": {}}, "audit actor"),
        ({"kind": "k", "pipeline": "p", "actor": "a", "payload": [1]}, "JSON object"),
        ({"kind": "k", "pipeline": "p", "actor": "a", "payload": {"x": float("nan")}}, "finite"),
        ({"kind": "k", "pipeline": "p", "actor": "a", "payload": {1: "x"}}, "must be strings"),
        ({"kind": "k", "pipeline": "p", "actor": "a", "payload": {"x": object()}}, "JSON"),
    ],
)
def test_append_rejects_bad_entries(tmp_path: Path, kwargs: dict, needle: str) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    kind = kwargs.pop("kind")
    with pytest.raises(AuditEntryError, match=needle):
        log.append(kind, **kwargs)
    assert not log.path.exists() or log.path.read_bytes() == b""


# tampering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["seq", "at", "kind", "pipeline", "actor", "payload", "prev"])
@pytest.mark.parametrize("index", [0, 2, 4])
def test_editing_any_field_of_any_entry_is_found(tmp_path: Path, field: str, index: int) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[index])
    changed = {
        "seq": entry["seq"] + 10,
        "at": "2000-01-01T00:00:00.000000+00:00",
        "kind": "promotion" if entry["kind"] != "promotion" else "rollback",
        "pipeline": "someone-else",
        "actor": "mallory",
        "payload": {**entry["payload"], "i": 99},
        "prev": "f" * 64,
    }
    entry[field] = changed[field]
    lines[index] = canonical_json(entry) + b"\n"
    _write(log, lines)

    result = log.verify()
    assert not result.ok
    assert result.problem == "hash_mismatch"
    assert result.line == index + 1
    assert result.seq == entry["seq"]
    assert result.entries == index
    assert f"line {index + 1}" in result.message
    assert "edited" in result.message
    with pytest.raises(AuditIntegrityError, match="edited") as info:
        log.verify_or_raise()
    assert info.value.verification == result


def test_editing_the_hash_too_breaks_the_next_link(tmp_path: Path) -> None:
    """Rehashing an edited entry moves the problem to the next entry's prev link."""
    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[1])
    entry["actor"] = "mallory"
    entry["hash"] = entry_hash(entry)
    lines[1] = canonical_json(entry) + b"\n"
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line, result.seq) == ("broken_link", 3, 2)
    assert "prev" in result.message


def test_removing_a_middle_entry_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[2]
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line, result.seq) == ("entry_removed", 3, 3)
    assert "seq 2" in result.message
    assert "removed" in result.message
    assert result.head.seq == 1


def test_removing_several_entries_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path, 6)
    lines = _lines(log)
    del lines[1:4]
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line, result.seq) == ("entry_removed", 2, 4)
    assert "seqs 1..3" in result.message
    assert "3 entries were removed" in result.message


def test_removing_the_last_entry_is_found_by_an_anchor_too(tmp_path: Path) -> None:
    log = _log(tmp_path)
    anchor = log.head()
    _write(log, _lines(log)[:-1])
    assert log.verify(witness=False).ok  # a shorter chain is still a valid chain
    assert log.verify().problem == "truncated"  # the witness signed seq 4
    result = log.verify(expected_head=anchor, witness=False)
    assert not result.ok
    assert result.problem == "truncated"
    assert result.seq == 4
    assert result.line == 5
    assert "ends at seq 3" in result.message
    assert "published head is seq 4" in result.message
    with pytest.raises(AuditIntegrityError, match="removed from the end"):
        log.verify_or_raise(expected_head=anchor)


def test_anchor_allows_later_appends_but_not_rewrites(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    anchor = log.head()
    log.append("rollback", pipeline="fraud", actor="canary", payload={})
    assert log.verify(expected_head=anchor).ok
    assert log.verify(expected_head=(anchor.seq, anchor.hash)).ok
    result = log.verify(expected_head=(anchor.seq, "a" * 64))
    assert (result.problem, result.line, result.seq) == ("head_mismatch", 3, 2)
    assert "rewritten" in result.message


def test_rebuilt_chain_is_found_by_the_anchor_and_the_witness(tmp_path: Path) -> None:
    """An attacker who rewrites and rehashes every entry after the anchor's is caught by it."""
    log = _log(tmp_path, 4)
    anchor = log.head()
    lines = _lines(log)
    entries = [json.loads(line) for line in lines]
    entries[3]["actor"] = "mallory"
    entries[3]["hash"] = entry_hash(entries[3])
    _write(log, [canonical_json(e) + b"\n" for e in entries])
    assert log.verify(witness=False).ok
    assert log.verify(expected_head=anchor, witness=False).problem == "head_mismatch"
    assert log.verify().problem == "head_mismatch"


def test_reordering_two_entries_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line, result.seq) == ("entries_reordered", 2, 2)
    assert "seq 1 appears later at line 3" in result.message


def test_reordering_the_last_two_entries_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[3], lines[4] = lines[4], lines[3]
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line, result.seq) == ("entries_reordered", 4, 4)


@pytest.mark.parametrize(("source", "insert_at"), [(2, 3), (1, 4), (4, 5)])
def test_duplicating_an_entry_is_found(tmp_path: Path, source: int, insert_at: int) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines.insert(insert_at, lines[source])
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line, result.seq) == ("duplicate_entry", insert_at + 1, source)
    assert f"repeats line {source + 1}" in result.message


def test_renumbered_entry_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[2])
    entry["seq"] = 7
    entry["hash"] = entry_hash(entry)
    lines[2] = canonical_json(entry) + b"\n"
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line, result.seq) == ("seq_mismatch", 3, 7)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not json\n", "invalid_json"),
        (b"\n", "invalid_json"),
        (b"[1, 2]\n", "malformed"),
        (b'{"seq": 2}\n', "malformed"),
    ],
)
def test_garbage_lines_are_found(tmp_path: Path, content: bytes, problem: str) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[2] = content
    _write(log, lines)
    result = log.verify()
    assert (result.problem, result.line) == (problem, 3)
    with pytest.raises(AuditIntegrityError, match="line 3"):
        log.entries()
    with pytest.raises(AuditIntegrityError, match="never edit the log by hand"):
        log.verify_or_raise()


# crashes -----------------------------------------------------------------------------------------


def _tear(log: AuditLog, keep: int) -> bytes:
    """Simulate a crash mid-append: the last line loses all but ``keep`` bytes and its newline.

    The crash hit before that append signed its head: the witness stays at the entry before.
    """
    lines = _lines(log)
    torn = lines[-1][:keep]
    _write(log, lines[:-1])
    log.witness_head()
    _write(log, [*lines[:-1], torn])
    return torn


def test_torn_last_line_is_reported(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _tear(log, 40)
    result = log.verify()
    assert not result.ok
    assert (result.problem, result.line, result.seq) == ("torn_line", 5, None)
    assert result.entries == 4
    assert result.head.seq == 3
    assert "cut short" in result.message
    assert "40 bytes" in result.message
    with pytest.raises(AuditIntegrityError, match="repair_torn_tail"):
        log.verify_or_raise()
    # readers skip it: the append that wrote it never returned
    assert [e["seq"] for e in log.entries()] == [0, 1, 2, 3]


def test_append_refuses_to_chain_onto_a_torn_line(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _tear(log, 40)
    before = log.path.read_bytes()
    with pytest.raises(AuditIntegrityError, match=r"refusing to chain.*line 5.*repair_torn_tail"):
        log.append("rollback", pipeline="fraud", actor="canary", payload={})
    with pytest.raises(AuditIntegrityError, match="cut short"):
        log.head()
    assert log.path.read_bytes() == before


def test_append_refuses_to_chain_onto_an_edited_last_entry(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    entry = json.loads(lines[-1])
    entry["actor"] = "mallory"
    lines[-1] = canonical_json(entry) + b"\n"
    _write(log, lines)
    with pytest.raises(AuditIntegrityError, match=r"line 5 \(seq 4\).*edited.*backup") as info:
        log.append("rollback", pipeline="fraud", actor="canary", payload={})
    assert info.value.verification is not None
    assert info.value.verification.problem == "hash_mismatch"


def test_repair_removes_a_torn_line_and_records_it(tmp_path: Path) -> None:
    log = _log(tmp_path)
    torn = _tear(log, 40)
    repair = log.repair_torn_tail(actor="ops")
    assert repair is not None
    assert repair["kind"] == "audit_repair"
    assert repair["pipeline"] == "*"
    assert repair["seq"] == 4
    assert repair["payload"]["removed_bytes"] == len(torn)
    assert log.verify().ok
    log.append("rollback", pipeline="fraud", actor="canary", payload={})
    assert log.verify().entries == 6
    assert log.repair_torn_tail(actor="ops") is None  # nothing to do now


def test_repair_completes_an_entry_that_lost_only_its_newline(tmp_path: Path) -> None:
    log = _log(tmp_path)
    whole = _lines(log)[-1]
    _tear(log, len(whole) - 1)
    completed = log.repair_torn_tail(actor="ops")
    assert completed == json.loads(whole)
    assert log.verify().ok
    assert log.verify().entries == 5


def test_repair_refuses_a_tampered_log(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _tear(log, 10)
    lines = _lines(log)
    del lines[1]
    _write(log, lines)
    before = log.path.read_bytes()
    with pytest.raises(AuditIntegrityError, match="removed"):
        log.repair_torn_tail(actor="ops")
    assert log.path.read_bytes() == before


# concurrency -------------------------------------------------------------------------------------


def _append_many(path: str, worker: int, count: int) -> None:
    log = AuditLog(path)
    for i in range(count):
        log.append("canary_step", pipeline=f"p{worker}", actor=f"w{worker}", payload={"i": i})


def _check_concurrent(log: AuditLog, workers: int, count: int) -> None:
    result = log.verify()
    assert result.ok, result.message
    assert result.entries == workers * count
    for worker in range(workers):
        mine = log.entries(pipeline=f"p{worker}")
        assert [e["payload"]["i"] for e in mine] == list(range(count))  # each writer's order kept


def test_concurrent_appends_from_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "log.jsonl")
    context = multiprocessing.get_context("spawn")
    workers, count = 4, 40
    processes = [
        context.Process(target=_append_many, args=(path, w, count)) for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    _check_concurrent(AuditLog(path), workers, count)


def test_concurrent_appends_from_threads(tmp_path: Path) -> None:
    path = str(tmp_path / "log.jsonl")
    workers, count = 8, 40
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            _append_many(path, worker, count)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _check_concurrent(AuditLog(path), workers, count)


def test_shared_log_object_across_threads(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "log.jsonl")
    threads = [
        threading.Thread(
            target=lambda w=w: [
                log.append("validation", pipeline=f"p{w}", actor="t", payload={"i": i})
                for i in range(25)
            ]
        )
        for w in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.verify().entries == 200


# the published head: a witness signed with the lockgate key (issue 13, item 7) -------------------


def _lockgate(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOCKGATE_SIGNING_KEY"}
    return subprocess.run(
        [sys.executable, "-m", "lockgate.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _home_log(tmp_path: Path, count: int = 5) -> AuditLog:
    """A log in a lockgate home's layout: <home>/audit/audit.jsonl, key in <home>/keys."""
    home = tmp_path / "home"
    log = AuditLog(home / "audit" / "audit.jsonl")
    for i in range(count):
        log.append("promotion", pipeline="fraud", actor="tester", payload={"i": i})
    return log


def test_truncating_the_tail_is_found_without_an_anchor(tmp_path: Path) -> None:
    log = _log(tmp_path)
    _write(log, _lines(log)[:-2])
    result = log.verify()
    assert not result.ok
    assert result.problem == "truncated"
    assert "ends at seq 2" in result.message
    assert "witness" in result.message


def test_rechaining_to_the_end_is_found_without_an_anchor(tmp_path: Path) -> None:
    log = _log(tmp_path)
    entries = [json.loads(line) for line in _lines(log)]
    entries[2]["actor"] = "mallory"
    prev = entries[1]["hash"]
    for entry in entries[2:]:
        entry["prev"] = prev
        entry["hash"] = prev = entry_hash(entry)
    _write(log, [canonical_json(e) + b"\n" for e in entries])
    result = log.verify()
    assert (result.problem, result.seq) == ("head_mismatch", 4)
    assert "rewritten" in result.message


def test_replacing_the_file_is_found(tmp_path: Path) -> None:
    log = _log(tmp_path / "a")
    other = _log(tmp_path / "b", 7)
    log.path.write_bytes(other.path.read_bytes())
    assert log.verify().problem == "head_mismatch"
    log.path.write_bytes(b"")
    assert log.verify().problem == "truncated"


def test_a_deleted_or_missing_log_is_an_error(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.path.unlink()
    result = log.verify()
    assert (result.ok, result.problem) == (False, "missing_log")
    assert "deleted" in result.message
    never = AuditLog(tmp_path / "never" / "audit.jsonl").verify()
    assert (never.ok, never.problem) == (False, "missing_log")
    with pytest.raises(AuditIntegrityError, match="missing"):
        AuditLog(tmp_path / "never" / "audit.jsonl").verify_or_raise()


def test_a_forged_witness_is_refused(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    _write(log, lines[:-1])
    head = json.loads(lines[-2])
    witness = json.loads(log.witness_path.read_bytes())
    witness.update(seq=head["seq"], hash=head["hash"])  # the head of the shorter log, no key
    log.witness_path.write_bytes(canonical_json(witness))
    result = log.verify()
    assert result.problem == "witness_invalid"
    assert "signature" in result.message
    with pytest.raises(AuditIntegrityError, match="witness"):
        log.append("rollback", pipeline="fraud", actor="mallory", payload={})


def test_entries_appended_without_lockgate_are_found_and_refused(tmp_path: Path) -> None:
    log = _log(tmp_path)
    entries = [json.loads(line) for line in _lines(log)]
    extra = {**entries[-1], "seq": 5, "prev": entries[-1]["hash"], "actor": "mallory"}
    extra["hash"] = entry_hash(extra)
    _write(log, [*_lines(log), canonical_json(extra) + b"\n"])
    result = log.verify()
    assert (result.problem, result.seq) == ("unwitnessed", 5)
    with pytest.raises(AuditIntegrityError, match="lockgate audit witness"):
        log.append("rollback", pipeline="fraud", actor="canary", payload={})
    assert log.witness_head() == AuditHead(5, extra["hash"])  # after review: accepted
    assert log.verify().ok


def test_a_log_without_witness_names_the_fix(tmp_path: Path) -> None:
    log = _log(tmp_path)
    log.witness_path.unlink()
    result = log.verify()
    assert result.problem == "no_witness"
    assert "lockgate audit witness" in result.message
    log.witness_head()
    assert log.verify().ok


def test_cli_verify_finds_truncation_and_deletion(tmp_path: Path) -> None:
    log = _home_log(tmp_path)
    home = tmp_path / "home"
    ok = _lockgate("audit", "verify", home=home)
    assert ok.returncode == 0, ok.stderr
    assert "5 entries verified" in ok.stdout
    _write(log, _lines(log)[:-1])
    cut = _lockgate("audit", "verify", home=home)
    assert cut.returncode == 1
    assert "published head is seq 4" in cut.stderr
    log.path.unlink()
    gone = _lockgate("audit", "verify", home=home)
    assert gone.returncode == 1
    assert "0 entries verified" not in gone.stdout
    assert "deleted" in gone.stderr


def test_cli_expected_head_garbage_is_named(tmp_path: Path) -> None:
    _home_log(tmp_path, 2)
    for garbage in ("garbage", "x:abc", "1:nothex"):
        result = _lockgate("audit", "verify", "--expected-head", garbage, home=tmp_path / "home")
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "SEQ:HASH" in result.stderr
