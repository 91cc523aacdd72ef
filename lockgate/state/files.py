"""The embedded :class:`~lockgate.state.swap.SwapStore`: one file per key under a folder.

Compare-and-swap holds an exclusive ``fcntl.flock`` on a hidden sidecar ``.<name>.lock`` while
it reads the file and replaces it (temp file + rename), so writers on one machine, or on a
network mount whose locks work, never lose an update. Several machines share state through
:class:`~lockgate.state.postgres.PostgresSwapStore` instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, Field

from lockgate._util.fs import atomic_write
from lockgate.state.postgres import StateStoreError

__all__ = ["FileSwapStore", "file_lease"]


class FileSwapStore(BaseModel):
    """Keys as files under ``root`` (``a/b.json`` is ``<root>/a/b.json``), written 0600.

    Attributes:
        root: The folder; created by the first write.
    """

    model_config = ConfigDict(frozen=True)

    root: str = Field(min_length=1)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        parts = PurePosixPath(key).parts
        if (
            not parts
            or key.startswith("/")
            or ".." in parts
            or "\\" in key
            or any(p.startswith(".") for p in parts)
        ):
            raise StateStoreError(
                f"state key {key!r} must be a relative path without '..' or hidden parts; use a "
                "name like 'fraud.json'"
            )
        return Path(self.root, *parts)

    def uri(self, key: str) -> str:
        """Where ``key`` lives."""
        return str(self.path(key))

    def get(self, key: str) -> bytes | None:
        """The content of ``key``'s file, or None."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def swap(self, key: str, expected: bytes | None, data: bytes) -> bool:
        """Replace ``key``'s file with ``data`` only if it holds ``expected`` (None: absent)."""
        import fcntl

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(f".{path.name}.lock"), "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes
            current = path.read_bytes() if path.exists() else None
            if current != expected:
                return False
            atomic_write(path, data, mode=0o600)
            return True

    def keys(self, prefix: str) -> list[str]:
        """Every key (file, no hidden ones) that starts with ``prefix``, sorted."""
        root = Path(self.root)
        if not root.is_dir():
            return []
        found = []
        for path in root.rglob("*"):
            rel = path.relative_to(root)
            if path.is_file() and not any(p.startswith(".") for p in rel.parts):
                key = rel.as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)


@contextmanager
def file_lease(path: str | os.PathLike[str]) -> Iterator[bool]:
    """Try to hold an exclusive ``flock`` on ``path`` for the ``with`` block; yield whether held.

    Never waits; released when the block ends or the process dies.
    """
    import fcntl

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
