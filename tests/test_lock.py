from __future__ import annotations

import subprocess

import pytest

from lockgate.errors import ArtifactIntegrityError
from lockgate.lock import (
    CodeVersion,
    build_lock_record,
    code_version,
    environment_versions,
    model_version_id,
    verify_lock_record,
)
from lockgate.reproduce import environment_differences


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
    assert (
        a["version"]
        == b["version"]
        == model_version_id(code_commit="abc", snapshot_sha256="f" * 64, weights_sha256="e" * 64)
    )
    assert _record(code=CodeVersion("abd", False, "git"))["version"] != a["version"]
    assert _record(files={"model.txt": "0" * 64})["version"] != a["version"]
    assert a["triad"] == {
        "code_commit": "abc",
        "data_snapshot_sha256": "f" * 64,
        "weights_sha256": "e" * 64,
    }


def test_verify_detects_edits() -> None:
    record = _record()
    verify_lock_record(record)
    edited = dict(record, label="other")
    with pytest.raises(ArtifactIntegrityError, match="edited"):
        verify_lock_record(edited)


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
