"""Tests of lockgate._util.fs: the one atomic (and optionally durable) file write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import lockgate._util.fs as fs
from lockgate._util.fs import atomic_write, mkdirs_durable


def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records what is fsynced: ``"fd"`` for a descriptor, the path for fsync_path."""
    calls: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        calls.append("fd")
        real_fsync(fd)

    def fsync_path(path: str | os.PathLike[str]) -> None:
        calls.append(str(path))
        fd = os.open(path, os.O_RDONLY)
        try:
            real_fsync(fd)
        finally:
            os.close(fd)

    monkeypatch.setattr(fs.os, "fsync", fsync)
    monkeypatch.setattr(fs, "fsync_path", fsync_path)
    return calls


@pytest.mark.parametrize("data", [b"bytes\x00\xff", "text \u00e9\n"])
@pytest.mark.parametrize("durable", [True, False])
def test_writes_whole_content_and_leaves_no_temp_file(
    tmp_path: Path, data: bytes | str, durable: bool
) -> None:
    path = tmp_path / "a" / "b" / "file.json"  # missing parents are created
    assert atomic_write(path, data, durable=durable) is True
    expected = data.encode() if isinstance(data, str) else data
    assert path.read_bytes() == expected
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.json"]


def test_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old and longer")
    assert atomic_write(path, "new") is True
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_durable_fsyncs_file_before_rename_and_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsynced(monkeypatch)
    atomic_write(tmp_path / "f", b"x")
    assert calls == ["fd", str(tmp_path)]


def test_not_durable_fsyncs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fsynced(monkeypatch)
    atomic_write(tmp_path / "new" / "f", b"x", durable=False)
    assert calls == []
    assert (tmp_path / "new" / "f").read_bytes() == b"x"


def test_mode_sets_permission_bits(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "secret", "s", mode=0o600)
        atomic_write(tmp_path / "plain", "p")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "plain").stat().st_mode) == 0o644


@pytest.mark.parametrize("durable", [True, False])
def test_no_replace_keeps_the_first_writers_content(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "key"
    assert atomic_write(path, "first", replace=False, durable=durable) is True
    assert atomic_write(path, "second", replace=False, durable=durable) is False
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["key"]


def test_failed_write_keeps_old_file_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_text("old")

    def full_disk(fd: int, data: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs.os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_mkdirs_durable_fsyncs_each_changed_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _fsynced(monkeypatch)
    mkdirs_durable(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert calls == [str(tmp_path), str(tmp_path / "a")]
    calls.clear()
    mkdirs_durable(tmp_path / "a" / "b")  # nothing to create: nothing to fsync
    assert calls == []
