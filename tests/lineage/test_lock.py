from __future__ import annotations

import subprocess

import pytest

from lockgate.errors import ArtifactIntegrityError
from lockgate.lineage.hashing import canonical_json, sha256_json
from lockgate.lineage.lock import (
    CodeVersion,
    build_lock_record,
    check_lock_signature,
    code_version,
    environment_versions,
    files_sha256,
    model_version_id,
    sign_lock_bytes,
    verify_lock_record,
)
from lockgate.lineage.reproduce import environment_differences
from lockgate.lineage.signing import SigningKey


def _record(**over) -> dict:
    args = dict(
        pipeline="fraud",
        code=CodeVersion("abc", False, "git"),
        snapshot={"frame_sha256": "f" * 64},
        trainer={"kind": "lightgbm", "seed": 1},
        features=["amount"],
        label="y",
        split={"holdout_fraction": 0.2},
        weights_file="model.txt",
        files={"model.txt": "e" * 64, "preprocessing.json": "d" * 64},
        environment={"python": "3.11", "packages": {"numpy": "2.0"}},
    )
    args.update(over)
    return build_lock_record(**args)


def test_version_is_a_function_of_the_triad() -> None:
    a, b = _record(), _record()
    files = {"model.txt": "e" * 64, "preprocessing.json": "d" * 64}
    assert (
        a["version"]
        == b["version"]
        == model_version_id(
            code_commit="abc",
            snapshot_sha256="f" * 64,
            weights_sha256="e" * 64,
            files_sha256=files_sha256(files),
        )
    )
    assert _record(code=CodeVersion("abd", False, "git"))["version"] != a["version"]
    assert _record(files={"model.txt": "0" * 64})["version"] != a["version"]
    # every file is in the triad, not only the weights file
    other = _record(files={"model.txt": "e" * 64, "preprocessing.json": "0" * 64})
    assert other["version"] != a["version"]
    assert a["triad"] == {
        "code_commit": "abc",
        "data_snapshot_sha256": "f" * 64,
        "weights_sha256": "e" * 64,
        "files_sha256": files_sha256(files),
    }


def test_verify_detects_edits() -> None:
    record = _record()
    verify_lock_record(record)
    verify_lock_record(record, pipeline="fraud", version=record["version"])
    edited = dict(record, label="other")
    with pytest.raises(ArtifactIntegrityError, match="edited"):
        verify_lock_record(edited)


def _resealed(record: dict) -> dict:
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return dict(body, record_sha256=sha256_json(body))


def test_the_triad_is_derived_from_the_record_not_trusted() -> None:
    """A file's sha256 changed and the self-hash recomputed: the triad no longer matches."""
    record = _record()
    forged = dict(
        record, artifact={**record["artifact"], "files": dict(record["artifact"]["files"])}
    )
    forged["artifact"]["files"]["preprocessing.json"] = "0" * 64
    with pytest.raises(ArtifactIntegrityError, match=r"triad.*\['files_sha256'\]"):
        verify_lock_record(_resealed(forged))
    forged = dict(record, data={"frame_sha256": "1" * 64})
    with pytest.raises(ArtifactIntegrityError, match="data_snapshot_sha256"):
        verify_lock_record(_resealed(forged))


def test_a_record_is_checked_against_its_folder() -> None:
    record = _record()
    with pytest.raises(ArtifactIntegrityError, match=r"folder of fraud/0123.*record of fraud/"):
        verify_lock_record(record, pipeline="fraud", version="0123456789ab")
    with pytest.raises(ArtifactIntegrityError, match="folder of churn/"):
        verify_lock_record(record, pipeline="churn", version=record["version"])


def test_schema_1_records_keep_their_version_ids() -> None:
    record = _record()
    old = {k: v for k, v in record.items() if k != "record_sha256"}
    old["schema_version"] = 1
    old["triad"] = {k: v for k, v in record["triad"].items() if k != "files_sha256"}
    old["version"] = model_version_id(
        code_commit="abc", snapshot_sha256="f" * 64, weights_sha256="e" * 64
    )
    verify_lock_record(_resealed(old), pipeline="fraud", version=old["version"])


def test_lock_signature_detects_forgery_and_names_the_key() -> None:
    key = SigningKey(b"k" * 32, source="test")
    data = canonical_json(_record())
    signature = sign_lock_bytes(data, key)
    check_lock_signature(signature, data, key, where="fraud/v")
    with pytest.raises(ArtifactIntegrityError, match="forged or edited"):
        check_lock_signature(signature, data.replace(b'"y"', b'"z"'), key, where="fraud/v")
    other = SigningKey(b"o" * 32, source="LOCKGATE_SIGNING_KEY")
    with pytest.raises(ArtifactIntegrityError, match=f"signed with key {key.key_id}"):
        check_lock_signature(signature, data, other, where="fraud/v")


def test_code_version_reads_git_and_dirty_flag(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LOCKGATE_CODE_COMMIT", raising=False)
    assert code_version(tmp_path).commit == "unknown"
    git = ["git", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run(
        [*git, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], check=True
    )
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    clean = code_version(tmp_path)
    assert (clean.commit, clean.dirty) == (head.strip(), False)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path).dirty is True
    monkeypatch.setenv("LOCKGATE_CODE_COMMIT", "deadbeef-dirty")
    assert code_version(tmp_path) == CodeVersion("deadbeef", True, "LOCKGATE_CODE_COMMIT")


def test_environment_versions_and_differences() -> None:
    env = environment_versions()
    assert env["packages"]["numpy"]
    assert env["packages"]["lightgbm"] == "4.7.0"
    changed = {"python": env["python"], "packages": {**env["packages"], "numpy": "1.0"}}
    diffs = environment_differences(env, changed)
    assert diffs == [f"library numpy {env['packages']['numpy']} locked, 1.0 now"]
