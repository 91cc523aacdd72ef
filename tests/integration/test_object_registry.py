"""The artifact registry on a real S3 server (SeaweedFS): the registry's own tests, run against
:class:`ObjectStoreArtifactRegistry` with its aliases in the object store (conditional writes)
and in PostgreSQL, plus what only an object store can get wrong (tampered objects, a version
whose writer died before its commit marker, conditional writes, ``reproduce`` from S3)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lockgate._util.services import LocalS3
from lockgate.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ImmutableArtifactError,
)
from lockgate.lineage.hashing import (
    canonical_frame,
    canonical_json,
    frame_sha256,
    sha256_bytes,
    sha256_json,
)
from lockgate.lineage.object_registry import ObjectStoreArtifactRegistry
from lockgate.lineage.reproduce import reproduce
from lockgate.lineage.steps import load_snapshot_frame, snapshot_parquet_bytes, train_version
from lockgate.training import LightGBMTrainer

# The registry's own tests that use only its interface, run here against the object store: the
# module's ``registry`` fixture below replaces theirs.
from tests.resources.test_artifacts import (  # noqa: F401
    _lock,
    _store_version,
    test_a_record_that_does_not_list_the_files_is_not_stored,
    test_a_rerun_keeps_the_first_record,
    test_a_short_key_is_refused,
    test_a_snapshot_file_is_stored_as_its_bytes_once,
    test_aliases_move_atomically_with_history,
    test_concurrent_alias_moves_lose_nothing,
    test_keys_cannot_escape_the_root,
    test_missing_versions_and_snapshots_are_named,
    test_model_version_round_trip_and_immutability,
    test_renderings_keep_the_first_file,
    test_run_records_are_per_run_and_not_immutable,
    test_the_same_verdict_from_another_run_is_stored_once,
)

KEY = "k" * 64


@pytest.fixture(params=["aliases-in-s3", "aliases-in-postgres"])
def registry(
    request: pytest.FixtureRequest,
    s3_server: LocalS3,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> ObjectStoreArtifactRegistry:
    """A registry under ``s3://<fresh bucket>/artifacts``, signing with ``$LOCKGATE_SIGNING_KEY``."""
    monkeypatch.setenv("LOCKGATE_SIGNING_KEY", KEY)
    state_url = None
    if request.param == "aliases-in-postgres":
        state_url = request.getfixturevalue("postgres_url")
    return ObjectStoreArtifactRegistry(
        url=f"s3://{s3_bucket}/artifacts",
        endpoint_url=s3_server.endpoint_url,
        key=s3_server.access_key,
        secret=s3_server.secret_key,
        region="us-east-1",
        state_url=state_url,
    )


def _object(registry: ObjectStoreArtifactRegistry, key: str) -> str:
    """The object's path in the registry's filesystem."""
    _, root = registry.filesystem()
    return f"{root}/{key}"


def _overwrite(registry: ObjectStoreArtifactRegistry, key: str, data: bytes) -> None:
    """What an attacker with write access to the bucket does: replace the object."""
    fs, _ = registry.filesystem()
    fs.pipe_file(_object(registry, key), data)


def _version(registry: ObjectStoreArtifactRegistry, files: dict[str, bytes]) -> str:
    lock = _lock(files)
    assert registry.put_model_version("fraud", lock["version"], files, lock) is True
    return str(lock["version"])


# ---- where things are -----------------------------------------------------------------------


def test_a_version_is_stored_as_objects_and_aliases_where_configured(
    registry: ObjectStoreArtifactRegistry, s3_bucket: str
) -> None:
    files = {"model.txt": b"tree", "preprocessing.json": b"{}"}
    version = _version(registry, files)
    fs, _ = registry.filesystem()
    prefix = f"{s3_bucket}/artifacts/models/fraud/{version}"
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(prefix, detail=False)) == [
        "lock.json",
        "lock.sig",
        "model.txt",
        "preprocessing.json",
    ]
    assert fs.cat_file(f"{prefix}/model.txt") == b"tree"
    assert registry.uri(f"models/fraud/{version}/lock.json") == (
        f"s3://{s3_bucket}/artifacts/models/fraud/{version}/lock.json"
    )
    registry.move_alias("fraud", "champion", version, actor="t", reason="first", expected=None)
    assert registry.alias("fraud", "champion") == version
    assert registry.list_prefix("aliases") == ["fraud.json"]
    in_bucket = fs.exists(f"{s3_bucket}/artifacts/aliases/fraud.json")
    if registry.state_url:
        assert not in_bucket  # the shared state holds them, the bucket never does
        assert registry.uri("aliases/fraud.json").startswith("postgresql://")
        assert ":***@" in registry.uri("aliases/fraud.json")  # no password in a URI
    else:
        assert in_bucket


# ---- integrity: every read checks the objects -----------------------------------------------


def test_a_tampered_object_is_refused(registry: ObjectStoreArtifactRegistry) -> None:
    version = _version(registry, {"model.txt": b"tree", "preprocessing.json": b"{}"})
    _overwrite(registry, f"models/fraud/{version}/model.txt", b"tree ")
    with pytest.raises(ArtifactIntegrityError, match="tampered"):
        registry.model_files("fraud", version)


def test_an_edited_lock_record_is_refused(registry: ObjectStoreArtifactRegistry) -> None:
    version = _version(registry, {"model.txt": b"tree"})
    key = f"models/fraud/{version}/lock.json"
    edited = registry.read_bytes(key).replace(b'"seed":1', b'"seed":2')
    _overwrite(registry, key, edited)
    with pytest.raises(ArtifactIntegrityError, match="edited"):
        registry.lock_record("fraud", version)


def test_a_forged_file_with_a_rehashed_record_is_refused(
    registry: ObjectStoreArtifactRegistry,
) -> None:
    version = _version(registry, {"model.txt": b"tree", "preprocessing.json": b'{"s": 1}'})
    prefix = f"models/fraud/{version}"
    record = json.loads(registry.read_bytes(f"{prefix}/lock.json"))
    record["artifact"]["files"]["preprocessing.json"] = sha256_bytes(b'{"s": 1000}')
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    record["record_sha256"] = sha256_json(body)
    _overwrite(registry, f"{prefix}/preprocessing.json", b'{"s": 1000}')
    _overwrite(registry, f"{prefix}/lock.json", canonical_json(record))
    with pytest.raises(ArtifactIntegrityError, match="does not match its signature"):
        registry.model_files("fraud", version)


def test_a_record_copied_into_another_versions_folder_is_refused(
    registry: ObjectStoreArtifactRegistry,
) -> None:
    a, b = _store_version(registry, b"a"), _store_version(registry, b"b")
    for name in ("lock.json", "lock.sig", "model.txt"):
        _overwrite(
            registry, f"models/fraud/{b}/{name}", registry.read_bytes(f"models/fraud/{a}/{name}")
        )
    assert registry.lock_record("fraud", a)["version"] == a
    with pytest.raises(ArtifactIntegrityError, match=f"folder of fraud/{b} is the record of"):
        registry.lock_record("fraud", b)


def test_a_tampered_snapshot_is_refused(registry: ObjectStoreArtifactRegistry) -> None:
    sha = "b" * 64
    assert registry.put_snapshot(sha, b"PAR1data", {"rows": 1}) is True
    assert registry.put_snapshot(sha, b"PAR1data", {"rows": 1}) is False
    assert registry.read_snapshot_bytes(sha) == b"PAR1data"
    _overwrite(registry, f"snapshots/{sha}.parquet", b"PAR1evil")
    with pytest.raises(ArtifactIntegrityError, match="changed after it was written"):
        registry.read_snapshot_bytes(sha)


def test_without_a_shared_key_nothing_is_signed(
    registry: ObjectStoreArtifactRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOCKGATE_SIGNING_KEY")
    files = {"model.txt": b"tree"}
    with pytest.raises(ArtifactError, match="LOCKGATE_SIGNING_KEY"):
        registry.put_model_version("fraud", _lock(files)["version"], files, _lock(files))
    assert registry.model_versions("fraud") == []


# ---- groups appear at once; immutability -----------------------------------------------------


def test_a_version_without_its_commit_marker_is_absent_and_a_rewrite_completes_it(
    registry: ObjectStoreArtifactRegistry,
) -> None:
    files = {"model.txt": b"tree", "preprocessing.json": b"{}"}
    lock = _lock(files)
    version = lock["version"]
    prefix = registry.model_prefix("fraud", version)
    # a writer that died after its files and signature, before lock.json
    for name, data in files.items():
        _overwrite(registry, f"{prefix}/{name}", data)
    _overwrite(registry, f"{prefix}/lock.sig", b"{}")
    assert registry.has_model_version("fraud", version) is False
    assert registry.model_versions("fraud") == []
    with pytest.raises(ArtifactNotFoundError, match="not in the registry"):
        registry.lock_record("fraud", version)
    with pytest.raises(ImmutableArtifactError, match="different content"):
        registry.put_model_version("fraud", version, files, lock)  # its lock.sig is not ours
    fs, _ = registry.filesystem()
    fs.rm_file(_object(registry, f"{prefix}/lock.sig"))
    assert registry.put_model_version("fraud", version, files, lock) is True  # completes it
    assert registry.model_files("fraud", version) == files
    assert registry.model_versions("fraud") == [version]


def test_a_committed_version_takes_no_new_file(registry: ObjectStoreArtifactRegistry) -> None:
    version = _version(registry, {"model.txt": b"tree"})
    prefix = registry.model_prefix("fraud", version)
    with pytest.raises(ImmutableArtifactError, match="committed version"):
        registry.write_files_once(prefix, {"extra.bin": b"x"})
    with pytest.raises(ImmutableArtifactError, match="immutable"):
        registry.write_files_once(prefix, {"model.txt": b"other"})
    assert registry.model_files("fraud", version) == {"model.txt": b"tree"}


def test_conditional_writes_refuse_a_stale_expectation(
    registry: ObjectStoreArtifactRegistry,
) -> None:
    key = "runs/fraud/v1/probe/cas.json"
    assert registry.swap_bytes(key, None, b"1") is True
    assert registry.swap_bytes(key, None, b"2") is False  # exists already
    assert registry.swap_bytes(key, b"0", b"2") is False  # not what it holds
    assert registry.swap_bytes(key, b"1", b"2") is True
    assert registry.read_bytes(key) == b"2"
    assert registry.swap_bytes("runs/fraud/v1/probe/absent.json", b"1", b"2") is False


def test_an_unsigned_record_can_be_signed_and_a_damaged_file_restored(
    registry: ObjectStoreArtifactRegistry,
) -> None:
    files = {"model.txt": b"tree", "preprocessing.json": b"{}"}
    version = _version(registry, files)
    prefix = registry.model_prefix("fraud", version)
    fs, _ = registry.filesystem()
    fs.rm_file(_object(registry, f"{prefix}/lock.sig"))
    with pytest.raises(ArtifactIntegrityError, match=f"lockgate sign fraud {version}"):
        registry.lock_record("fraud", version)
    assert registry.sign_model_version("fraud", version)[1] is True
    assert registry.sign_model_version("fraud", version)[1] is False
    _overwrite(registry, f"{prefix}/model.txt", b"damaged")
    with pytest.raises(ArtifactIntegrityError, match="only the locked bytes"):
        registry.restore_model_files("fraud", version, {"model.txt": b"other"})
    assert registry.restore_model_files("fraud", version, files) == ["model.txt"]
    assert registry.model_files("fraud", version) == files


# ---- reproduce from S3 ------------------------------------------------------------------------


def test_reproduce_rebuilds_and_restores_a_version_stored_on_s3(
    registry: ObjectStoreArtifactRegistry,
) -> None:
    rng = np.random.default_rng(5)
    n = 600
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "customer_id": np.arange(n, dtype="int64"),
            "amount": rng.gamma(2.0, 40.0, n),
            "hour": rng.integers(0, 24, n).astype(float),
        }
    )
    frame["y"] = ((frame["amount"] > 80) ^ (rng.random(n) < 0.1)).astype("int64")
    sort_by = ["ts", "customer_id"]
    canonical = canonical_frame(frame, sort_by=sort_by)
    sha = frame_sha256(canonical, sort_by=sort_by)
    registry.put_snapshot(sha, snapshot_parquet_bytes(canonical), {"rows": n, "sort_by": sort_by})
    stored = load_snapshot_frame(registry, sha)  # read back from S3, hashes checked
    lock, files, _ = train_version(
        pipeline="fraud",
        snapshot={"frame_sha256": sha},
        frame=stored,
        trainer_config=LightGBMTrainer(seed=3, num_boost_round=12).config(),
        features=["amount", "hour"],
        label="y",
        timestamp_column="ts",
        holdout_fraction=0.2,
    )
    version = lock["version"]
    assert registry.put_model_version("fraud", version, files, lock) is True
    report = reproduce(registry, "fraud", version)
    assert report.verified, report.render()
    assert report.rebuilt_weights_sha256 == lock["triad"]["weights_sha256"]
    weights = lock["artifact"]["weights_file"]
    _overwrite(registry, f"{registry.model_prefix('fraud', version)}/{weights}", b"damaged")
    with pytest.raises(ArtifactIntegrityError, match="tampered"):
        registry.model_files("fraud", version)
    restored = reproduce(registry, "fraud", version, restore=True)
    assert restored.verified, restored.render()
    assert restored.restored == [weights]
    assert registry.model_files("fraud", version) == files
