"""Atomic and durable file writes: the one write-temp-then-rename every writer of lockgate uses.

:func:`atomic_write` writes a whole file under a hidden temp name in the target's folder and
renames it over the target (or, with ``replace=False``, links it there only when the target does
not exist yet: the first writer wins), so readers see the old file or the new one, never a torn
one; with ``durable`` it also fsyncs the file before the rename and the folder after it, so that
"written" means "kept" across a crash. :func:`mkdirs_durable` creates folders durably and
:func:`fsync_path` fsyncs one file or folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["atomic_write", "fsync_path", "mkdirs_durable"]


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file or a folder (a folder: so that a rename or a new name in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    durable: bool = True,
    mode: int = 0o644,
    replace: bool = True,
) -> bool:
    """Write ``data`` as the whole content of ``path`` at once.

    The data goes to a hidden temp file beside ``path`` (``.tmp-<name>.<pid>.<random>.tmp``,
    created exclusively with ``mode``, less the umask), which is then renamed over ``path``;
    missing parent folders are created. The temp file is removed whatever happens.

    Args:
        path: the file to write.
        data: its content (``str`` is written as UTF-8).
        durable: fsync the file before the rename, and the folder after it (parents created
            durably too); False: the OS write only (survives a process crash, not power loss).
        mode: permission bits of a new file (e.g. ``0o600`` for a secret).
        replace: False: create ``path`` only when it does not exist yet (a hard link, so two
            processes racing agree on the first one's content) and leave an existing one alone.

    Returns:
        True when ``path`` now holds ``data``; False when ``replace=False`` found it existing.
    """
    target = Path(path)
    if durable:
        mkdirs_durable(target.parent)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    # ".tmp-" first: listings skip such names (lineage.registry); ".tmp" last: leftover checks
    tmp = target.with_name(f".tmp-{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, target)
            written = True
        else:
            try:
                os.link(tmp, target)
                written = True
            except FileExistsError:
                written = False
    finally:
        tmp.unlink(missing_ok=True)
    if durable and written:
        fsync_path(target.parent)
    return written
