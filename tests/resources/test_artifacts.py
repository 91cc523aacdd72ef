from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockgate.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ImmutableArtifactError,
)
from lockgate.hashing import sha256_bytes
from lockgate.lock import CodeVersion, build_lock_record
from lockgate.resources.artifacts import LocalArtifactRegistry, content_id


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
    with pytest.raises(ImmutableArtifactError, match="immutable"):
        registry.put_model_version("fraud", version, {**files, "model.txt": b"other"}, lock)
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
