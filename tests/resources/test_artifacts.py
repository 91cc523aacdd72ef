from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from lockgate.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ImmutableArtifactError,
)
from lockgate.lineage.hashing import canonical_json, sha256_bytes
from lockgate.lineage.lock import CodeVersion, build_lock_record
from lockgate.lineage.registry import LocalArtifactRegistry, content_id


def _lock(files: dict[str, bytes]) -> dict:
    return build_lock_record(
        pipeline="fraud",
        code=CodeVersion("c0ffee", False, "test"),
        snapshot={"frame_sha256": "a" * 64},
        trainer={"kind": "lightgbm", "seed": 1},
        features=["amount"],
        label="y",
        split={"holdout_fraction": 0.2, "timestamp_column": "ts"},
        weights_file="model.txt",
        files={n: sha256_bytes(d) for n, d in files.items()},
        environment={"python": "3.11", "packages": {}},
    )


@pytest.fixture
def registry(tmp_path) -> LocalArtifactRegistry:
    return LocalArtifactRegistry(root=str(tmp_path / "artifacts"))


def test_model_version_round_trip_and_immutability(registry: LocalArtifactRegistry) -> None:
    files = {"model.txt": b"tree", "preprocessing.json": b"{}"}
    lock = _lock(files)
    version = lock["version"]
    assert registry.put_model_version("fraud", version, files, lock) is True
    assert registry.put_model_version("fraud", version, files, lock) is False  # identical rerun
    assert registry.model_files("fraud", version) == files
    assert registry.model_versions("fraud") == [version]
    with pytest.raises(ArtifactIntegrityError, match="does not list the files"):
        registry.put_model_version("fraud", version, {**files, "model.txt": b"other"}, lock)
    with pytest.raises(ImmutableArtifactError, match="immutable"):
        registry.write_files_once(registry.model_prefix("fraud", version), {"model.txt": b"o"})
    assert registry.model_files("fraud", version)["model.txt"] == b"tree"


def test_tampered_weights_are_refused(registry: LocalArtifactRegistry) -> None:
    files = {"model.txt": b"tree", "preprocessing.json": b"{}"}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    path = os.path.join(registry.root, "models", "fraud", lock["version"], "model.txt")
    with open(path, "ab") as handle:
        handle.write(b" ")
    with pytest.raises(ArtifactIntegrityError, match="tampered"):
        registry.model_files("fraud", lock["version"])


def test_edited_lock_record_is_refused(registry: LocalArtifactRegistry) -> None:
    files = {"model.txt": b"tree"}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    path = os.path.join(registry.root, "models", "fraud", lock["version"], "lock.json")
    text = Path(path).read_text().replace('"seed":1', '"seed":2')
    with open(path, "w") as handle:
        handle.write(text)
    with pytest.raises(ArtifactIntegrityError, match="edited"):
        registry.lock_record("fraud", lock["version"])


def test_missing_versions_and_snapshots_are_named(registry: LocalArtifactRegistry) -> None:
    with pytest.raises(ArtifactNotFoundError, match="lockgate versions fraud"):
        registry.lock_record("fraud", "nope")
    with pytest.raises(ArtifactNotFoundError, match="materialize"):
        registry.snapshot_manifest("f" * 64)


def test_a_snapshot_file_is_stored_as_its_bytes_once(
    registry: LocalArtifactRegistry, tmp_path
) -> None:
    # the streamed snapshot hands the registry a file, not bytes (lineage/snapshot_stream.py)
    sha = "c" * 64
    source = tmp_path / "snapshot.parquet"
    data = bytes(range(256)) * 9000  # more than one copy block
    source.write_bytes(data)
    assert registry.put_snapshot_file(sha, source, {"rows": 7}) is True
    assert registry.read_snapshot_bytes(sha) == data
    manifest = registry.snapshot_manifest(sha)
    assert manifest["rows"] == 7
    assert manifest["file_sha256"] == hashlib.sha256(data).hexdigest()
    source.write_bytes(b"PAR1other")  # already stored: the first file is kept
    assert registry.put_snapshot_file(sha, source, {"rows": 1}) is False
    assert registry.read_snapshot_bytes(sha) == data
    assert source.exists()  # the caller's file is left in place
    # a file stored without its manifest (a writer that died between the two) must match
    other = "d" * 64
    registry.write_files_once("snapshots", {f"{other}.parquet": b"PAR1first"})
    with pytest.raises(ImmutableArtifactError, match="immutable"):
        registry.put_snapshot_file(other, source, {"rows": 1})
    assert not registry.has_snapshot(other)


def test_snapshot_is_written_once_and_checked(registry: LocalArtifactRegistry) -> None:
    sha = "b" * 64
    assert registry.put_snapshot(sha, b"PAR1data", {"rows": 1}) is True
    assert registry.put_snapshot(sha, b"PAR1data", {"rows": 1}) is False
    assert registry.read_snapshot_bytes(sha) == b"PAR1data"
    with open(os.path.join(registry.root, "snapshots", f"{sha}.parquet"), "wb") as handle:
        handle.write(b"PAR1evil")
    with pytest.raises(ArtifactIntegrityError, match="changed after it was written"):
        registry.read_snapshot_bytes(sha)


def test_keys_cannot_escape_the_root(registry: LocalArtifactRegistry) -> None:
    with pytest.raises(ArtifactError, match="relative path"):
        registry.read_bytes("../outside")
    with pytest.raises(ArtifactError, match="relative path"):
        registry.lock_record("..", "x")
    with pytest.raises(ArtifactError, match="plain name"):
        registry.write_group("models/x/y", {"a/b": b""})


def test_symlinked_file_is_refused(registry: LocalArtifactRegistry, tmp_path) -> None:
    files = {"model.txt": b"tree"}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"tree")
    path = os.path.join(registry.root, "models", "fraud", lock["version"], "model.txt")
    os.remove(path)
    os.symlink(target, path)
    with pytest.raises(ArtifactIntegrityError, match="symlink"):
        registry.model_files("fraud", lock["version"])


def test_no_temp_folders_left_behind(registry: LocalArtifactRegistry) -> None:
    files = {"model.txt": b"tree"}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    leftovers = [p for p, _, _ in os.walk(registry.root) if ".tmp-" in p]
    assert leftovers == []


def _store_version(registry: LocalArtifactRegistry, payload: bytes) -> str:
    files = {"model.txt": payload}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    return lock["version"]


def test_aliases_move_atomically_with_history(registry: LocalArtifactRegistry) -> None:
    from lockgate.errors import AliasConflictError

    a, b = _store_version(registry, b"a"), _store_version(registry, b"b")
    assert registry.alias("fraud", "champion") is None
    registry.move_alias("fraud", "champion", a, actor="t", reason="first", expected=None)
    registry.move_alias("fraud", "champion", b, actor="t", reason="better", expected=a)
    with pytest.raises(AliasConflictError, match="moved it meanwhile"):
        registry.move_alias("fraud", "champion", a, actor="t", reason="stale", expected=a)
    with pytest.raises(ArtifactNotFoundError, match="no such model version"):
        registry.move_alias("fraud", "champion", "ghost", actor="t", reason="x")
    state = registry.aliases("fraud")
    assert state["aliases"] == {"champion": b}
    assert [(h["from"], h["to"], h["reason"]) for h in state["history"]] == [
        (None, a, "first"),
        (a, b, "better"),
    ]


def test_concurrent_alias_moves_lose_nothing(registry: LocalArtifactRegistry) -> None:
    from concurrent.futures import ThreadPoolExecutor

    versions = [_store_version(registry, bytes([i])) for i in range(8)]

    def move(version: str) -> None:
        registry.move_alias("fraud", "challenger", version, actor="t", reason=version)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(move, versions))
    history = registry.aliases("fraud")["history"]
    assert sorted(h["to"] for h in history) == sorted(versions)
    chain = [h["from"] for h in history[1:]]
    assert chain == [h["to"] for h in history[:-1]]  # every move saw the one before it


def test_content_id_leaves_run_provenance_out() -> None:
    first = {"passed": True, "p": 0.5, "run_id": "r1", "evaluated_at": "t1", "at": 1.0}
    rerun = {"passed": True, "p": 0.5, "run_id": "r2", "evaluated_at": "t2", "at": 2.0}
    assert content_id(first) == content_id(rerun)
    assert content_id(first) != content_id(first | {"p": 0.6})
    assert content_id(first, ignore=()) != content_id(rerun, ignore=())
    assert len(content_id(first)) == 16


def test_a_rerun_keeps_the_first_record(registry: LocalArtifactRegistry) -> None:
    doc = {"metric": 0.91, "champion": "v1"}
    key, stored, written = registry.put_record_once(
        "reports/fraud/v1", doc | {"run_id": "r1", "evaluated_at": "t1"}, id_field="report_id"
    )
    assert written is True
    assert stored["report_id"] == content_id(doc)
    assert key == f"reports/fraud/v1/{content_id(doc)}.json"
    again, kept, written = registry.put_record_once(
        "reports/fraud/v1", doc | {"run_id": "r2", "evaluated_at": "t2"}, id_field="report_id"
    )
    assert (again, written) == (key, False)
    assert kept["run_id"] == "r1"  # the first run's document, provenance included
    assert registry.read_json(key)["run_id"] == "r1"
    other, _, written = registry.put_record_once(
        "reports/fraud/v1", doc | {"metric": 0.5, "run_id": "r3"}, id_field="report_id"
    )
    assert other != key
    assert written is True
    assert registry.list_prefix("reports/fraud/v1") == sorted(
        [key.rsplit("/", 1)[1], other.rsplit("/", 1)[1]]
    )


def test_an_edited_record_is_refused(registry: LocalArtifactRegistry) -> None:
    key, _, _ = registry.put_record_once("verdicts/fraud/v1", {"passed": False, "run_id": "r1"})
    Path(registry.uri(key)).write_text('{"passed": true, "run_id": "r1"}')
    with pytest.raises(ArtifactIntegrityError, match="edited after it was written"):
        registry.put_record_once("verdicts/fraud/v1", {"passed": False, "run_id": "r2"})


def test_the_same_verdict_from_another_run_is_stored_once(
    registry: LocalArtifactRegistry,
) -> None:
    verdict = {"report_id": "abc", "passed": True, "rules": [], "evaluated_at": "t1"}
    first = registry.put_verdict("fraud", "v1", verdict | {"run_id": "r1"})
    second = registry.put_verdict("fraud", "v1", verdict | {"run_id": "r2"})
    assert first == second
    assert [v["run_id"] for v in registry.verdicts("fraud", "v1")] == ["r1"]


def test_a_verdict_written_without_the_key_never_counts(registry: LocalArtifactRegistry) -> None:
    # a verdict is what lets a version serve: a file with "passed": true that anyone who can
    # write the registry could add must not be one (it was, until verdicts were signed)
    verdict = {"report_id": "abc", "passed": False, "rules": [], "evaluated_at": "t1"}
    key = registry.put_verdict("fraud", "v1", verdict | {"run_id": "r1"})
    assert Path(registry.uri(key.removesuffix(".json") + ".sig")).is_file()
    assert [v["passed"] for v in registry.verdicts("fraud", "v1")] == [False]
    folder = Path(registry.uri("verdicts/fraud/v1"))
    # a forged pass beside it, named by its content as the gate names verdicts
    forged = verdict | {"passed": True, "evaluated_at": "t2", "run_id": "evil"}
    (folder / f"{content_id(forged, ignore={'run_id', 'evaluated_at'})}.json").write_bytes(
        canonical_json(forged)
    )
    with pytest.raises(ArtifactIntegrityError, match=r"is unsigned.*lockgate sign"):
        registry.verdicts("fraud", "v1")
    # the forger copies a real signature: it does not match the forged bytes
    sig = next(folder.glob("*.sig")).read_bytes()
    (folder / f"{content_id(forged, ignore={'run_id', 'evaluated_at'})}.sig").write_bytes(sig)
    with pytest.raises(ArtifactIntegrityError, match="does not match its signature"):
        registry.verdicts("fraud", "v1")
    for path in folder.glob(f"{content_id(forged, ignore={'run_id', 'evaluated_at'})}.*"):
        path.unlink()
    # the real verdict edited after it was signed
    Path(registry.uri(key)).write_bytes(canonical_json(verdict | {"passed": True, "run_id": "r1"}))
    with pytest.raises(ArtifactIntegrityError, match="forged or edited"):
        registry.verdicts("fraud", "v1")


def test_unsigned_verdicts_of_a_trusted_registry_can_be_signed(
    registry: LocalArtifactRegistry,
) -> None:
    verdict = {"report_id": "abc", "passed": True, "rules": [], "evaluated_at": "t1"}
    key = registry.put_verdict("fraud", "v1", verdict | {"run_id": "r1"})
    sig = Path(registry.uri(key.removesuffix(".json") + ".sig"))
    sig.unlink()  # as a verdict written before verdicts were signed
    with pytest.raises(ArtifactIntegrityError, match="unsigned"):
        registry.verdicts("fraud", "v1")
    assert registry.sign_verdicts("fraud", "v1") == 1
    assert [v["run_id"] for v in registry.verdicts("fraud", "v1")] == ["r1"]
    assert registry.sign_verdicts("fraud", "v1") == 0  # signed already: verified only
    # a rerun of the gate keeps the first verdict and its signature
    assert registry.put_verdict("fraud", "v1", verdict | {"run_id": "r2"}) == key
    # one edited before it was signed is not signed
    sig.unlink()
    Path(registry.uri(key)).write_bytes(canonical_json(verdict | {"passed": False, "run_id": "r1"}))
    with pytest.raises(ArtifactIntegrityError, match="does not hash to its name"):
        registry.sign_verdicts("fraud", "v1")
    assert not sig.exists()


def test_run_records_are_per_run_and_not_immutable(registry: LocalArtifactRegistry) -> None:
    key = registry.put_run_record("fraud", "v1", "infra_validation", "r1", {"p99_ms": 9, "at": 2})
    assert key == "runs/fraud/v1/infra_validation/r1.json"
    # a retried step of the same run replaces its own measurement
    registry.put_run_record("fraud", "v1", "infra_validation", "r1", {"p99_ms": 7, "at": 2})
    registry.put_run_record("fraud", "v1", "infra_validation", "r0", {"p99_ms": 8, "at": 1})
    records = registry.run_records("fraud", "v1", "infra_validation")
    assert [r["p99_ms"] for r in records] == [8, 7]  # oldest first
    assert registry.run_records("fraud", "v2", "infra_validation") == []
    with pytest.raises(ArtifactError, match="relative path"):
        registry.put_run_record("fraud", "v1", "infra_validation", "../x", {})


def test_renderings_keep_the_first_file(registry: LocalArtifactRegistry) -> None:
    assert registry.put_report("fraud", "v1", {"r-roc.png": b"first"}) == ["r-roc.png"]
    assert registry.put_report("fraud", "v1", {"r-roc.png": b"first"}) == []  # identical
    with pytest.raises(ImmutableArtifactError, match="different content"):
        registry.put_report("fraud", "v1", {"r-roc.png": b"re-rendered"})
    written = registry.put_report(
        "fraud", "v1", {"r-roc.png": b"re-rendered", "r-pr.png": b"pr"}, keep_existing=True
    )
    assert written == ["r-pr.png"]
    assert registry.read_bytes("reports/fraud/v1/r-roc.png") == b"first"


# signed lock records (issue 13, item 5) -------------------------------------------------------


def _forge(registry: LocalArtifactRegistry, version: str, name: str, data: bytes) -> dict:
    """Replace a model file, update its sha256 in the record and recompute the self-hash."""
    from lockgate.lineage.hashing import sha256_json

    folder = Path(registry.uri(registry.model_prefix("fraud", version)))
    (folder / name).write_bytes(data)
    record = json.loads((folder / "lock.json").read_bytes())
    record["artifact"]["files"][name] = sha256_bytes(data)
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    record["record_sha256"] = sha256_json(body)
    (folder / "lock.json").write_bytes(canonical_json(record))
    return record


def test_a_forged_file_with_a_rehashed_record_is_refused(registry: LocalArtifactRegistry) -> None:
    files = {"model.txt": b"tree", "preprocessing.json": b'{"scale": 1}'}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    _forge(registry, lock["version"], "preprocessing.json", b'{"scale": 1000}')
    with pytest.raises(ArtifactIntegrityError, match="does not match its signature"):
        registry.model_files("fraud", lock["version"])


def test_a_forger_who_also_fixes_the_triad_and_version_is_refused(
    registry: LocalArtifactRegistry,
) -> None:
    """Every file is in the triad: a changed preprocessing file changes the version id."""
    from lockgate.lineage.lock import files_sha256, model_version_id, verify_lock_record

    files = {"model.txt": b"tree", "preprocessing.json": b'{"scale": 1}'}
    lock = _lock(files)
    forged = dict(lock, artifact=dict(lock["artifact"], files=dict(lock["artifact"]["files"])))
    forged["artifact"]["files"]["preprocessing.json"] = sha256_bytes(b'{"scale": 1000}')
    with pytest.raises(ArtifactIntegrityError, match=r"triad.*\['files_sha256'\]"):
        verify_lock_record(forged | {"record_sha256": _rehash(forged)})
    triad = dict(lock["triad"], files_sha256=files_sha256(forged["artifact"]["files"]))
    forged["triad"] = triad
    forged["version"] = model_version_id(
        code_commit=triad["code_commit"],
        snapshot_sha256=triad["data_snapshot_sha256"],
        weights_sha256=triad["weights_sha256"],
        files_sha256=triad["files_sha256"],
    )
    assert forged["version"] != lock["version"]
    forged["record_sha256"] = _rehash(forged)
    verify_lock_record(forged)  # self-consistent, but not the record of lock's folder:
    with pytest.raises(ArtifactIntegrityError, match=f"record of fraud/{forged['version']}"):
        verify_lock_record(forged, pipeline="fraud", version=lock["version"])


def _rehash(record: dict) -> str:
    from lockgate.lineage.hashing import sha256_json

    return sha256_json({k: v for k, v in record.items() if k != "record_sha256"})


def test_a_record_in_another_versions_folder_is_refused(registry: LocalArtifactRegistry) -> None:
    a, b = _store_version(registry, b"a"), _store_version(registry, b"b")
    root = Path(registry.root) / "models" / "fraud"
    for name in ("lock.json", "lock.sig", "model.txt"):  # a's signed record and file into b's
        (root / b / name).write_bytes((root / a / name).read_bytes())
    assert registry.lock_record("fraud", a)["version"] == a
    with pytest.raises(ArtifactIntegrityError, match=f"folder of fraud/{b} is the record of"):
        registry.lock_record("fraud", b)
    with pytest.raises(ArtifactIntegrityError, match="folder"):
        registry.model_files("fraud", b)


def test_signing_key_file_is_created_0600_beside_the_registry(
    registry: LocalArtifactRegistry, monkeypatch
) -> None:
    monkeypatch.delenv("LOCKGATE_SIGNING_KEY", raising=False)
    files = {"model.txt": b"a"}
    lock = _lock(files)
    version = lock["version"]
    assert registry.put_model_version("fraud", version, files, lock) is True
    key_file = Path(registry.root).parent / "keys" / "signing.key"
    assert key_file.exists()
    assert key_file.stat().st_mode & 0o777 == 0o600
    signature = json.loads(
        (Path(registry.root) / "models" / "fraud" / version / "lock.sig").read_bytes()
    )
    assert signature["scheme"] == "hmac-sha256"
    # the rebuild of the same version signs the same bytes: an identical rerun stays a no-op
    assert registry.put_model_version("fraud", version, files, lock) is False


def test_another_key_or_no_key_is_named(registry: LocalArtifactRegistry, monkeypatch) -> None:
    monkeypatch.delenv("LOCKGATE_SIGNING_KEY", raising=False)
    version = _store_version(registry, b"a")
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "x" * 40)
    with pytest.raises(
        ArtifactIntegrityError, match=r"signed with key \w{16}.*LOCKGATE_SIGNING_KEY"
    ):
        registry.lock_record("fraud", version)
    monkeypatch.delenv("LOCKGATE_SIGNING_KEY")
    (Path(registry.root).parent / "keys" / "signing.key").unlink()
    with pytest.raises(ArtifactIntegrityError, match="no signing key is configured"):
        registry.lock_record("fraud", version)


def test_a_short_key_is_refused(registry: LocalArtifactRegistry, monkeypatch) -> None:
    from lockgate.errors import SpecError

    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", "short")
    with pytest.raises(SpecError, match="at least 32"):
        _store_version(registry, b"a")


def test_an_unsigned_record_names_the_fix_and_can_be_signed(
    registry: LocalArtifactRegistry,
) -> None:
    version = _store_version(registry, b"a")
    sig = Path(registry.root) / "models" / "fraud" / version / "lock.sig"
    sig.unlink()
    with pytest.raises(ArtifactIntegrityError, match=f"not signed.*lockgate sign fraud {version}"):
        registry.lock_record("fraud", version)
    _, written = registry.sign_model_version("fraud", version)
    assert written is True
    assert registry.model_files("fraud", version) == {"model.txt": b"a"}
    assert registry.sign_model_version("fraud", version)[1] is False
    # a record that was edited before it was signed is not signed
    sig.unlink()
    _forge(registry, version, "model.txt", b"evil")
    with pytest.raises(ArtifactIntegrityError, match="triad"):
        registry.sign_model_version("fraud", version)
    assert not sig.exists()


def test_a_record_that_does_not_list_the_files_is_not_stored(
    registry: LocalArtifactRegistry,
) -> None:
    files = {"model.txt": b"tree"}
    with pytest.raises(ArtifactIntegrityError, match=r"differ in \['model.txt'\]"):
        registry.put_model_version(
            "fraud", _lock(files)["version"], {"model.txt": b"x"}, _lock(files)
        )
    with pytest.raises(ArtifactIntegrityError, match="record of fraud/"):
        registry.put_model_version("fraud", "0" * 12, files, _lock(files))


def test_restore_writes_back_only_the_locked_bytes(registry: LocalArtifactRegistry) -> None:
    files = {"model.txt": b"tree", "preprocessing.json": b"{}"}
    lock = _lock(files)
    registry.put_model_version("fraud", lock["version"], files, lock)
    path = Path(registry.uri(f"{registry.model_prefix('fraud', lock['version'])}/model.txt"))
    path.write_bytes(b"damaged")
    with pytest.raises(ArtifactIntegrityError, match=r"reproduce fraud .* --restore"):
        registry.model_files("fraud", lock["version"])
    with pytest.raises(ArtifactIntegrityError, match="only the locked bytes"):
        registry.restore_model_files("fraud", lock["version"], {"model.txt": b"other"})
    assert registry.restore_model_files("fraud", lock["version"], files) == ["model.txt"]
    assert registry.model_files("fraud", lock["version"]) == files
    assert registry.restore_model_files("fraud", lock["version"], files) == []


def test_cli_sign_signs_unsigned_records_of_a_home(tmp_path) -> None:
    import subprocess
    import sys

    home = tmp_path / "home"
    registry = LocalArtifactRegistry(root=str(home / "artifacts"))
    a, b = _store_version(registry, b"a"), _store_version(registry, b"b")
    (home / "artifacts" / "models" / "fraud" / a / "lock.sig").unlink()
    verdict = registry.put_verdict("fraud", b, {"passed": True, "rules": [], "run_id": "r"})
    Path(registry.uri(verdict.removesuffix(".json") + ".sig")).unlink()  # an unsigned verdict
    env = {k: v for k, v in os.environ.items() if k != "LOCKGATE_SIGNING_KEY"}
    cmd = [sys.executable, "-m", "lockgate.cli"]
    refused = subprocess.run(
        [*cmd, "verify", "fraud", a, "--home", str(home)], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 2
    assert f"lockgate sign fraud {a}" in refused.stderr
    signed = subprocess.run(
        [*cmd, "sign", "fraud", "--home", str(home)], capture_output=True, text=True, env=env
    )
    assert signed.returncode == 0, signed.stderr
    assert f"fraud/{a}: signed" in signed.stdout
    assert f"fraud/{b}: already signed, verified; 1 gate verdict(s) signed" in signed.stdout
    assert [v["passed"] for v in registry.verdicts("fraud", b)] == [True]
    assert registry.model_files("fraud", a) == {"model.txt": b"a"}
