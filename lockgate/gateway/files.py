"""Durable file writes of the gateway: folders and whole files that survive a crash.

:func:`mkdirs_durable` creates missing folders and fsyncs each parent it changed;
:func:`atomic_write` writes a temp file, fsyncs it, renames it over the target and fsyncs the
folder (routes, the routing key, the ready file).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from lockgate._util.fs import fsync_path

__all__ = ["atomic_write", "mkdirs_durable"]


def mkdirs_durable(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each parent whose entries changed."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        fsync_path(d.parent)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    mkdirs_durable(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_path(path.parent)
